//! The HTTP front: one single-threaded runtime per core, each accepting on its own
//! `SO_REUSEPORT` socket bound to the same address, the way nginx runs one worker per core.
//!
//! Why not one multi-threaded runtime: every gateway request is small and independent, and with
//! work stealing a connection's wake-ups and its task often land on different threads. With a
//! runtime per core the kernel spreads connections over the sockets and each request is read,
//! verified and answered on one thread. `scripts/bench-http` measures the difference.
//!
//! `SO_REUSEPORT` would also let a *second* keysentinel (another data directory, another key
//! store) join the same address, and the kernel would split requests between the two. So the
//! address is first claimed by a plain socket without it: if anything listens there already,
//! that bind fails and so does `serve`. (Two starts in the same instant could both pass the
//! probe; a start after a running server cannot.)

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
        // The probe: a socket without SO_REUSEPORT cannot bind where any socket listens (ours or
        // another process's reuse-port group). Its port is kept when the address asked for 0.
        {
            let probe =
                if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            // SO_REUSEADDR so a port left in TIME_WAIT by a stopped server can be bound again;
            // on Linux it still refuses an address where a socket listens.
            probe.set_reuseaddr(true)?;
            probe.bind(addr).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    std::io::Error::new(
                        e.kind(),
                        format!("{e}: another process (perhaps another keysentinel) listens there"),
                    )
                } else {
                    e
                }
            })?;
            addr = probe.local_addr()?;
        }
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
                        // With the peer's address: forward-auth trusts headers only from
                        // configured proxies, and must know who the peer is to tell.
                        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
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
