//! Retention of the verify events, one file per UTC day (`requests-YYYY-MM-DD.ndjson`). Day
//! files older than the retention are removed — but first the lines of keys under a legal hold
//! are copied to `requests-YYYY-MM-DD.held.ndjson`, which stays while any of its keys is held.
//! Every removal is audited before it happens; if the audit entry cannot be written, the file
//! stays (and the next run tries again).

use keysentinel_registry::Registry;
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::Date;

pub fn iso(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// A day file (or a held file) past the retention, with its day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub path: PathBuf,
    pub held_file: bool,
}

/// The files in `dir` whose day is more than `days` days before `today`, oldest first.
pub fn expired(dir: &Path, days: u32, today: Date) -> std::io::Result<Vec<Expired>> {
    let cutoff = today - time::Duration::days(i64::from(days));
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(rest) = name.strip_prefix("requests-") else { continue };
        let (day, held_file) = match (rest.strip_suffix(".held.ndjson"), rest.strip_suffix(".ndjson")) {
            (Some(day), _) => (day, true),
            (None, Some(day)) => (day, false),
            _ => continue,
        };
        if Date::parse(day, &format).is_ok_and(|d| d < cutoff) {
            found.push(Expired { path, held_file });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// What keeping the held keys' lines of an expired day file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preserved {
    pub removed: u64,
    pub kept: u64,
    pub kept_in: Option<PathBuf>,
}

fn held_path(day_file: &Path) -> PathBuf {
    day_file.with_extension("held.ndjson")
}

/// Copies the lines of `held` keys from an expired day file into its `.held` file (written to
/// a temporary file, synced, then renamed into place), and counts the rest. The day file itself
/// is left for the caller to remove once the removal is audited.
pub fn preserve(day_file: &Path, held: &HashSet<String>) -> std::io::Result<Preserved> {
    let reader = std::io::BufReader::new(std::fs::File::open(day_file)?);
    let target = held_path(day_file);
    let tmp = target.with_extension("tmp");
    let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
    let (mut removed, mut kept) = (0u64, 0u64);
    for line in reader.lines() {
        let line = line?;
        let key = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("key_id").and_then(|k| k.as_str()).map(str::to_owned));
        if key.is_some_and(|k| held.contains(&k)) {
            let w = match out.as_mut() {
                Some(w) => w,
                None => out.insert(std::io::BufWriter::new(std::fs::File::create(&tmp)?)),
            };
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
            kept += 1;
        } else {
            removed += 1;
        }
    }
    let kept_in = match out {
        Some(w) => {
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &target)?;
            Some(target)
        }
        None => None,
    };
    Ok(Preserved { removed, kept, kept_in })
}

/// Whether any line of a held file still belongs to a held key.
fn still_held(held_file: &Path, held: &HashSet<String>) -> std::io::Result<bool> {
    let reader = std::io::BufReader::new(std::fs::File::open(held_file)?);
    for line in reader.lines() {
        let v: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if v.get("key_id").and_then(|k| k.as_str()).is_some_and(|k| held.contains(k)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One retention pass over `dir`: each expired day file is preserved for its held keys, its
/// removal audited, then removed; each expired held file none of whose keys is held any more
/// is audited and removed.
pub async fn run_once(registry: &Registry, dir: &Path, days: u32) -> Result<usize, String> {
    let today = registry.now().date();
    let held: HashSet<String> =
        registry.held_keys().map_err(|e| e.to_string())?.into_iter().map(|k| k.to_string()).collect();
    let mut removed_files = 0;
    for file in expired(dir, days, today).map_err(|e| e.to_string())? {
        let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let (removed, kept, kept_in) = if file.held_file {
            if still_held(&file.path, &held).map_err(|e| e.to_string())? {
                continue;
            }
            (0, 0, None)
        } else {
            let p = preserve(&file.path, &held).map_err(|e| format!("{}: {e}", file.path.display()))?;
            let kept_in = p.kept_in.and_then(|k| k.file_name().and_then(|n| n.to_str()).map(str::to_owned));
            (p.removed, p.kept, kept_in)
        };
        registry.record_purge(name, removed, kept, kept_in, days).await.map_err(|e| e.to_string())?;
        std::fs::remove_file(&file.path).map_err(|e| format!("{}: {e}", file.path.display()))?;
        removed_files += 1;
    }
    Ok(removed_files)
}

/// Runs retention now and then every `every`.
pub fn spawn(
    registry: Arc<Registry>,
    dir: PathBuf,
    days: u32,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match run_once(&registry, &dir, days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, days, "events past retention removed"),
                Err(e) => tracing::error!(error = %e, "events retention failed; nothing more removed this pass"),
            }
            tokio::time::sleep(every).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn expired_day_files_keep_the_held_keys_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write =
            |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap_or_else(|e| panic!("{e}"));
        write("requests-2026-10-01.ndjson", "{\"key_id\":\"ksk_a\"}\n{\"key_id\":\"ksk_b\"}\n{\"key_id\":null}\n");
        write("requests-2026-11-27.ndjson", "{\"key_id\":\"ksk_a\"}\n");
        write("notes.txt", "");
        let today = date!(2026 - 11 - 28);
        let found = expired(dir.path(), 30, today).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].held_file);
        let held: HashSet<String> = ["ksk_b".to_owned()].into();
        let p = preserve(&found[0].path, &held).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.removed, p.kept), (2, 1));
        let kept = std::fs::read_to_string(p.kept_in.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, "{\"key_id\":\"ksk_b\"}\n");
        let nothing_held = preserve(&found[0].path, &HashSet::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((nothing_held.removed, nothing_held.kept, nothing_held.kept_in), (3, 0, None));
    }
}
