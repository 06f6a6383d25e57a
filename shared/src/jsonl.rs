//! JSON Lines files shared between processes: appending one record,
//! rewriting the file (removing lines), and reading it back, all under one
//! lock so that concurrent writers never interleave lines and a rewrite never
//! loses an append. Used for the local DLQ and the local alerts file.
//!
//! The lock is a file beside the data (`<name>.lock`), never removed or
//! replaced. It cannot be the data file itself: a rewrite renames a new file
//! over the old one, and an appender waiting for a lock on the old one would
//! then write into a file no longer there.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// The lock file of `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Run `f` holding `path`'s lock: exclusive for writers, shared for readers.
fn locked<R>(
    path: &Path,
    exclusive: bool,
    f: impl FnOnce() -> std::io::Result<R>,
) -> std::io::Result<R> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(path))?;
    if exclusive {
        lock.lock()?;
    } else {
        lock.lock_shared()?;
    }
    let result = f();
    // Closing the file releases the lock too; this only makes it prompt.
    let _ = lock.unlock();
    result
}

/// Append `record` as one line to `path` (created with its folder if
/// missing). `what` names the record in errors ("DLQ envelope", "alert").
pub async fn append<T: Serialize>(path: &Path, record: &T, what: &str) -> Result<()> {
    let mut line = serde_json::to_vec(record).map_err(|e| {
        Error::other(
            ErrorKind::Internal,
            format!("cannot encode {what}"),
            Some(Box::new(e)),
        )
    })?;
    line.push(b'\n');
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if let Some(parent) = owned.parent() {
            std::fs::create_dir_all(parent)?;
        }
        locked(&owned, true, || {
            // Opened under the lock: the file a rewrite may just have put in place.
            let mut f = OpenOptions::new().create(true).append(true).open(&owned)?;
            f.write_all(&line)
        })
    })
    .await
    .map_err(|e| Error::from_join(&path.display().to_string(), e))?
    .map_err(|e| {
        Error::other(
            ErrorKind::Transient,
            format!("cannot append {what} to {}", path.display()),
            Some(Box::new(e)),
        )
    })
}

/// Read every record of `path`; a missing file has none. A line that does
/// not parse is an error naming the file and line.
pub fn read_all<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::other(
                    ErrorKind::Internal,
                    format!("{} line {}: not a valid {what}", path.display(), i + 1),
                    Some(Box::new(e)),
                )
            })
        })
        .collect()
}

/// Every line of `path`, without line ends, read under the shared lock (so
/// never half of an append); a missing file has none.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let read = || match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.lines().map(String::from).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e),
    };
    let lines = if path.exists() {
        locked(path, false, read)
    } else {
        // Nothing to read; no lock file is made for a file that is not there.
        Ok(vec![])
    };
    lines.map_err(|e| {
        Error::other(
            ErrorKind::Internal,
            format!("cannot read {}", path.display()),
            Some(Box::new(e)),
        )
    })
}

/// Replace the lines of `path` with what `edit` makes of them, as one step
/// under the appenders' lock: read, edit, write a temporary file beside it,
/// rename it over the old one. A concurrent append lands before the read or
/// after the rename, never in between; a crash leaves the old or the new
/// file, never half of one. A missing file has no lines.
pub async fn rewrite<F>(path: &Path, what: &str, edit: F) -> Result<()>
where
    F: FnOnce(Vec<String>) -> Vec<String> + Send + 'static,
{
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let dir = match owned.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        locked(&owned, true, || {
            let (lines, existed) = match std::fs::read_to_string(&owned) {
                Ok(t) => (t.lines().map(String::from).collect(), true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (vec![], false),
                Err(e) => return Err(e),
            };
            let kept = edit(lines);
            if kept.is_empty() && !existed {
                return Ok(());
            }
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
            for l in &kept {
                tmp.write_all(l.as_bytes())?;
                tmp.write_all(b"\n")?;
            }
            tmp.as_file().sync_all()?;
            tmp.persist(&owned).map_err(|e| e.error)?;
            Ok(())
        })
    })
    .await
    .map_err(|e| Error::from_join(&path.display().to_string(), e))?
    .map_err(|e| {
        Error::other(
            ErrorKind::Transient,
            format!("cannot rewrite the {what} file {}", path.display()),
            Some(Box::new(e)),
        )
    })
}
