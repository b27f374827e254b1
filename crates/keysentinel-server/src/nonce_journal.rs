//! The nonce journal: accepted one-time nonces (Upbit, Bithumb, Coinone) written to
//! `DATA_DIR/nonces/` so that a restart — clean or `kill -9` — does not accept them again.
//!
//! - **What is written.** Each accepted nonce as one fixed-size record: its 128-bit keyed digest
//!   (the verifier's SipHash of access key and nonce, keyed with the journal's own key in
//!   `nonces/key`, so digests computed after a restart match) and when it was seen (ms). No
//!   nonce or access key appears in the file.
//! - **When.** With one `write(2)` under the nonce's shard lock, before the request is allowed:
//!   once the answer leaves, the record is in the kernel, which survives the process dying.
//! - **fsync policy.** The segment is `fdatasync`ed once a second ([`spawn_syncer`]) and at a
//!   clean stop, not per nonce (an fsync per request would cost more than the verify): a power
//!   loss or kernel crash can forget the nonces of the last second, nothing else can.
//! - **Pruning.** Records live in segments of one window each (`segment-<start ms>.log`); a
//!   segment is deleted once its newest record is older than the window, at start and on
//!   rotation, so the journal holds at most two windows.
//! - **Torn writes.** Records have a fixed size; a partial record at a segment's end (the
//!   process died mid-write, or the machine lost power) is ignored. A garbled record can only
//!   make some unrelated digest look seen, never make a seen nonce look fresh.
//!
//! Several nodes sharing nonces later would put a shared store behind
//! `keysentinel_verify::replay::Nonces` instead; this journal is the single-node store.

use keysentinel_verify::replay::{NonceCache, NonceLog, NonceLogError};
use parking_lot::RwLock;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const RECORD: usize = 24;
const KEY_FILE: &str = "key";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("nonce journal {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("nonce journal key {0} is not 16 bytes: the journal cannot be trusted (move the nonces directory aside to start afresh, accepting that nonces of the last window may be replayed)")]
    BadKey(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.to_owned(), source }
}

struct Segment {
    start_ms: i64,
    file: File,
}

struct Inner {
    dir: PathBuf,
    window_ms: i64,
    current: RwLock<Segment>,
    /// Appends that failed (each refused its request `NONCE_UNAVAILABLE`): logged at powers of
    /// two, so that a full disk under load does not also flood the log.
    failures: std::sync::atomic::AtomicU64,
}

/// A handle on the journal (cheap to clone).
#[derive(Clone)]
pub struct NonceJournal(Arc<Inner>);

impl NonceJournal {
    /// Opens (or creates) the journal in `dir` and builds the nonce cache from it: every nonce
    /// accepted within the window before `now_ms` is remembered again, and every nonce accepted
    /// from now on is journaled first.
    pub fn open(dir: &Path, window_ms: i64, now_ms: i64) -> Result<(NonceJournal, NonceCache), JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        let window_ms = window_ms.max(1000);
        let cache = NonceCache::with_key(window_ms, key);
        let mut restored = 0usize;
        for (start_ms, path) in segments(dir)? {
            if start_ms + 2 * window_ms <= now_ms {
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let mut bytes = Vec::new();
            File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(&path))?;
            if bytes.len() % RECORD != 0 {
                // Cut the torn record off, so records appended after it stay aligned.
                let whole = (bytes.len() - bytes.len() % RECORD) as u64;
                tracing::warn!(segment = %path.display(), "nonce journal segment ends in a partial record (torn write); ignoring it");
                OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(whole)).map_err(io(&path))?;
            }
            for record in bytes.chunks_exact(RECORD) {
                let (digest, at) = record.split_at(16);
                let digest = u128::from_le_bytes(digest.try_into().unwrap_or_default());
                let at_ms = i64::from_le_bytes(at.try_into().unwrap_or_default());
                cache.restore(digest, at_ms, now_ms);
                restored += 1;
            }
        }
        let start_ms = segment_start(now_ms, window_ms);
        let current = open_segment(dir, start_ms)?;
        tracing::info!(dir = %dir.display(), records = restored, "nonce journal loaded");
        let journal = NonceJournal(Arc::new(Inner {
            dir: dir.to_owned(),
            window_ms,
            current: RwLock::new(Segment { start_ms, file: current }),
            failures: std::sync::atomic::AtomicU64::new(0),
        }));
        let cache = cache.with_log(Box::new(journal.clone()));
        Ok((journal, cache))
    }

    /// Flushes the current segment to the disk (the once-a-second and clean-stop sync).
    pub fn sync(&self) -> std::io::Result<()> {
        // A second handle, so the fsync runs without the lock: appends never wait for a disk.
        let file = self.0.current.read().file.try_clone()?;
        file.sync_data()
    }

    fn rotate(&self, at_ms: i64) -> Result<(), std::io::Error> {
        let mut current = self.0.current.write();
        let start_ms = segment_start(at_ms, self.0.window_ms);
        if current.start_ms >= start_ms {
            return Ok(()); // another thread rotated first
        }
        let file = open_segment(&self.0.dir, start_ms).map_err(std::io::Error::other)?;
        // The old segment's records must be on disk before anything relies on the new one.
        let _ = current.file.sync_data();
        *current = Segment { start_ms, file };
        drop(current);
        for (start, path) in segments(&self.0.dir).map_err(std::io::Error::other)? {
            if start + 2 * self.0.window_ms <= at_ms {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }
}

impl NonceJournal {
    fn try_append(&self, digest: u128, at_ms: i64) -> std::io::Result<()> {
        let due = self.0.current.read().start_ms + self.0.window_ms <= at_ms;
        if due {
            self.rotate(at_ms)?;
        }
        let mut record = [0u8; RECORD];
        record[..16].copy_from_slice(&digest.to_le_bytes());
        record[16..].copy_from_slice(&at_ms.to_le_bytes());
        // One write of the whole record on an O_APPEND file: concurrent appends never interleave.
        let current = self.0.current.read();
        (&current.file).write_all(&record)
    }

    /// Appends that failed since the start.
    pub fn failures(&self) -> u64 {
        self.0.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl NonceLog for NonceJournal {
    fn append(&self, digest: u128, at_ms: i64) -> Result<(), NonceLogError> {
        self.try_append(digest, at_ms).map_err(|e| {
            let n = self.0.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(error = %e, dir = %self.0.dir.display(), failures = n,
                    "cannot journal a nonce: refusing its request NONCE_UNAVAILABLE until the journal can be written");
            }
            NonceLogError(e)
        })
    }
}

/// Syncs the journal every `every`, off the request path.
pub fn spawn_syncer(journal: NonceJournal, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let j = journal.clone();
            match tokio::task::spawn_blocking(move || j.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot sync the nonce journal"),
                Err(_) => return,
            }
        }
    })
}

fn segment_start(at_ms: i64, window_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(window_ms)
}

fn open_segment(dir: &Path, start_ms: i64) -> Result<File, JournalError> {
    let path = dir.join(format!("segment-{start_ms}.log"));
    OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))
}

/// The segments in `dir`, by start time.
fn segments(dir: &Path) -> Result<Vec<(i64, PathBuf)>, JournalError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let start = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<i64>().ok());
        if let Some(start) = start {
            found.push((start, path));
        }
    }
    found.sort();
    Ok(found)
}

fn load_or_create_key(path: &Path) -> Result<[u8; 16], JournalError> {
    match std::fs::read(path) {
        Ok(bytes) => bytes.as_slice().try_into().map_err(|_| JournalError::BadKey(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 16] = rand::random();
            let tmp = path.with_extension("tmp");
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp).map_err(io(&tmp))?;
            f.write_all(&key).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
            std::fs::rename(&tmp, path).map_err(io(path))?;
            if let Some(dir) = path.parent() {
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(key)
        }
        Err(e) => Err(JournalError::Io { path: path.to_owned(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reopened_journal_refuses_what_it_accepted_within_the_window_and_prunes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let window = 10_000;
        {
            let (_j, cache) = NonceJournal::open(dir.path(), window, 100_000).unwrap();
            assert!(cache.check_and_insert("k", "old", 100_000).unwrap());
            assert!(cache.check_and_insert("k", "new", 125_000).unwrap(), "rotates into a new segment");
        }
        let (_j, cache) = NonceJournal::open(dir.path(), window, 126_000).unwrap();
        assert!(!cache.check_and_insert("k", "new", 126_000).unwrap(), "remembered across the restart");
        assert!(cache.check_and_insert("k", "old", 126_000).unwrap(), "outside the window");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!names.iter().any(|n| n == "segment-100000.log"), "old segment pruned: {names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_nonce_the_journal_cannot_take_is_refused_and_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, cache) = NonceJournal::open(dir.path(), 10_000, 1_000).unwrap();
        assert!(cache.check_and_insert("k", "a", 1_000).unwrap());
        // The next segment is a full disk: every write to it fails (ENOSPC).
        std::os::unix::fs::symlink("/dev/full", dir.path().join("segment-10000.log")).unwrap();
        assert!(cache.check_and_insert("k", "b", 10_500).is_err(), "refused, not taken as fresh");
        assert!(cache.check_and_insert("k", "b", 10_600).is_err());
        assert_eq!(journal.failures(), 2);
        assert!(!cache.check_and_insert("k", "a", 10_700).unwrap(), "what was recorded is still a replay");
        // The next segment can be written: the refused nonce was never remembered, so its
        // request may be retried (on a real disk that fills up, once space is freed).
        assert!(cache.check_and_insert("k", "b", 20_500).unwrap());
        assert!(!cache.check_and_insert("k", "b", 20_600).unwrap());
    }

    #[test]
    fn a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_j, cache) = NonceJournal::open(dir.path(), 10_000, 1_000).unwrap();
            assert!(cache.check_and_insert("k", "a", 1_000).unwrap());
        }
        let seg = dir.path().join("segment-0.log");
        OpenOptions::new().append(true).open(&seg).unwrap().write_all(&[1, 2, 3]).unwrap();
        {
            let (_j, cache) = NonceJournal::open(dir.path(), 10_000, 2_000).unwrap();
            assert!(!cache.check_and_insert("k", "a", 2_000).unwrap());
            assert!(cache.check_and_insert("k", "b", 2_000).unwrap());
        }
        let (_j, cache) = NonceJournal::open(dir.path(), 10_000, 3_000).unwrap();
        assert!(!cache.check_and_insert("k", "b", 3_000).unwrap(), "records after the torn one stay readable");
    }
}
