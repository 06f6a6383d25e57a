//! JSON Lines files shared between processes: appending one record under an
//! exclusive lock (so concurrent writers never interleave lines) and reading
//! them all back. Used for the local DLQ and the local alerts file.

use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

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
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&owned)?;
        f.lock()?;
        f.write_all(&line)?;
        f.unlock()
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
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => {
            return Err(Error::other(
                ErrorKind::Internal,
                format!("cannot read {}", path.display()),
                Some(Box::new(e)),
            ))
        }
    };
    text.lines()
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

/// Every line of `path`, without line ends; a missing file has none.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.lines().map(String::from).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(Error::other(
            ErrorKind::Internal,
            format!("cannot read {}", path.display()),
            Some(Box::new(e)),
        )),
    }
}

/// Replace the lines of `path` with what `edit` makes of them: written to a
/// temporary file and renamed over it, so a crash leaves the old or the new
/// file, never half of one.
pub async fn rewrite<F>(path: &Path, what: &str, edit: F) -> Result<()>
where
    F: FnOnce(Vec<String>) -> Vec<String> + Send + 'static,
{
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let text = std::fs::read_to_string(&owned)?;
        let kept: String = edit(text.lines().map(String::from).collect())
            .into_iter()
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = owned.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept)?;
        std::fs::rename(&tmp, &owned)
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
