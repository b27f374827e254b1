//! The HTTP front: one single-threaded runtime per core, each accepting on its own
//! `SO_REUSEPORT` socket bound to the same address, the way nginx runs one worker per core.
//!
//! Why not one multi-threaded runtime: every gateway request is small and independent, and with
//! work stealing a connection's wake-ups and its task often land on different threads. With a
//! runtime per core the kernel spreads connections over the sockets and each request is read,
//! verified and answered on one thread. `scripts/bench-http` measures the difference.

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use tokio::sync::watch;

/// Listening sockets, one per serving thread, all bound to `addr`.
pub struct Front {
    pub addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

impl Front {
    /// Binds `threads` sockets to `listen` (the first one picks the port when it is 0).
    pub async fn bind(listen: &str, threads: usize) -> std::io::Result<Front> {
        let mut addr = tokio::net::lookup_host(listen)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing"))?;
        let mut sockets = Vec::with_capacity(threads);
        for _ in 0..threads.max(1) {
            let socket =
                if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(addr)?;
            let listener = socket.listen(1024)?;
            addr = listener.local_addr()?;
            sockets.push(listener.into_std()?);
        }
        Ok(Front { addr, sockets })
    }

    /// Serves `app` on every socket, each on its own thread and runtime, until `stop` turns true
    /// (in-flight requests finish). Returns when every thread has stopped.
    pub fn serve(self, app: axum::Router, stop: watch::Receiver<bool>) -> std::io::Result<()> {
        let threads = self
            .sockets
            .into_iter()
            .enumerate()
            .map(|(i, socket)| {
                let (app, mut stop) = (app.clone(), stop.clone());
                std::thread::Builder::new().name(format!("http-{i}")).spawn(move || -> std::io::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(socket)?.tap_io(|tcp| {
                            // Answers are one small write: send it now rather than wait for an ACK.
                            let _ = tcp.set_nodelay(true);
                        });
                        axum::serve(listener, app)
                            .with_graceful_shutdown(async move {
                                let _ = stop.wait_for(|s| *s).await;
                            })
                            .await
                    })
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        for t in threads {
            t.join().map_err(|_| std::io::Error::other("an HTTP serving thread panicked"))??;
        }
        Ok(())
    }
}
