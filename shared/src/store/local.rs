//! Local-directory object store, the embedded default: one folder per bucket
//! under a root. Writes land in a temp file and become visible atomically
//! (hard link for create-only, rename for replace); a cross-process file lock
//! makes conditional writes safe between concurrent `sluice` processes.
//!
//! Layout under the root:
//! - `<bucket>/<key>`: object bodies, exactly as written (open them with any tool);
//! - `.sluice/meta/<bucket>/<key>`: JSON sidecar (etag, metadata, sequencer);
//! - `.sluice/tmp/`: uploads in progress; `.sluice/lock`, `.sluice/sequencer`
//!   (the commit counter, rewritten in place).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;

use super::{
    storage_error, validate_bucket, validate_key, GetResult, Metadata, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutOptions, PutResult,
};
use crate::error::{Error, ErrorKind, Result};

/// An object store backed by a directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    etag: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    sequencer: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The ETag the local and memory stores give content: the first 128 bits of
/// its SHA-256, in hex (the length of an S3 MD5 ETag).
pub fn etag_of(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    hex::encode(&digest[..16])
}

fn io_error(op: &'static str, bucket: &str, key: &str, e: io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        io::ErrorKind::PermissionDenied => ErrorKind::Rejected,
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ErrorKind::Transient
        }
        _ => ErrorKind::Internal,
    };
    Error::Storage {
        op,
        location: super::location(bucket, key),
        kind,
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

impl LocalStore {
    /// A store rooted at `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root: PathBuf = root.into();
        for d in [root.join(".sluice/tmp"), root.join(".sluice/meta")] {
            fs::create_dir_all(&d).map_err(|e| {
                Error::config(
                    "local store root",
                    format!("cannot create {}: {e}", d.display()),
                )
            })?;
        }
        Ok(LocalStore {
            root: Arc::new(root),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding an object's body.
    pub fn path_of(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        validate_bucket("resolve", bucket)?;
        Ok(self
            .root
            .join(bucket)
            .join(safe_relative("resolve", bucket, key)?))
    }

    fn meta_path(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join(".sluice/meta")
            .join(bucket)
            .join(safe_relative("resolve", bucket, key)?))
    }

    /// Hold the store-wide lock (shared or exclusive) for the duration of `f`.
    fn locked<T>(&self, exclusive: bool, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".sluice/lock"))?;
        if exclusive {
            lock.lock()?;
        } else {
            lock.lock_shared()?;
        }
        let out = f();
        let _ = lock.unlock();
        out
    }

    /// Bump the commit counter, under the exclusive lock. It is rewritten in
    /// place (the same 16 characters at offset 0), not replaced by a new
    /// file: creating an inode per commit is most of the cost of a commit on
    /// ext4 when many files were just deleted (a bench run, a `--fresh` run).
    fn next_sequencer(&self) -> io::Result<String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.root.join(".sluice/sequencer"))?;
        let mut cur = String::new();
        file.read_to_string(&mut cur)?;
        let cur = u64::from_str_radix(cur.trim(), 16).unwrap_or(0);
        let next = format!("{:016X}", cur + 1);
        file.write_all_at(next.as_bytes(), 0)?;
        if file.metadata()?.len() != next.len() as u64 {
            file.set_len(next.len() as u64)?;
        }
        Ok(next)
    }

    fn read_meta(
        &self,
        bucket: &str,
        key: &str,
        data_path: &Path,
    ) -> io::Result<Option<ObjectMeta>> {
        let stat = match fs::metadata(data_path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let sidecar: Option<Sidecar> = self
            .meta_path(bucket, key)
            .ok()
            .and_then(|p| fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (etag, metadata) = match sidecar {
            Some(s) => (s.etag, s.metadata),
            // A file dropped in by hand: derive a cheap, change-sensitive etag
            // from its size, inode and modification time.
            None => {
                let fingerprint = format!(
                    "{}:{}:{}:{}",
                    stat.len(),
                    stat.ino(),
                    stat.mtime(),
                    stat.mtime_nsec()
                );
                (etag_of(fingerprint.as_bytes()), Metadata::new())
            }
        };
        let last_modified = stat.modified().ok().map(DateTime::<Utc>::from);
        Ok(Some(ObjectMeta {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: stat.len(),
            etag,
            version_id: None,
            last_modified,
            metadata,
        }))
    }

    /// The commit point of every write: check the condition, move the temp
    /// file into place, write the sidecar, all under the exclusive lock.
    fn commit(
        &self,
        op: &'static str,
        bucket: &str,
        key: &str,
        tmp: &Path,
        etag: String,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let dest = self.path_of(bucket, key)?;
        let meta_dest = self.meta_path(bucket, key)?;
        let res = self.locked(true, || {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            let current = self.read_meta(bucket, key, &dest)?;
            match (&opts.mode, &current) {
                (PutMode::Create, Some(_)) => return Ok(Err(ErrorKind::AlreadyExists)),
                (PutMode::Update { .. }, None) => return Ok(Err(ErrorKind::NotFound)),
                (PutMode::Update { etag }, Some(cur)) if *etag != cur.etag => {
                    return Ok(Err(ErrorKind::Precondition))
                }
                _ => {}
            }
            match opts.mode {
                // Exclusive create: link fails if anything is there, even a
                // writer that does not take the lock.
                PutMode::Create => match fs::hard_link(tmp, &dest) {
                    Ok(()) => fs::remove_file(tmp)?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Ok(Err(ErrorKind::AlreadyExists))
                    }
                    Err(e) => return Err(e),
                },
                _ => fs::rename(tmp, &dest)?,
            }
            let sequencer = self.next_sequencer()?;
            let sidecar = Sidecar {
                etag: etag.clone(),
                metadata: opts.metadata.clone(),
                sequencer: Some(sequencer.clone()),
                content_type: opts.content_type.clone(),
            };
            if let Some(parent) = meta_dest.parent() {
                fs::create_dir_all(parent)?;
            }
            let body = serde_json::to_vec(&sidecar).map_err(io::Error::other)?;
            write_atomically(&self.root.join(".sluice/tmp"), &meta_dest, &body)?;
            Ok(Ok(sequencer))
        });
        let _ = fs::remove_file(tmp);
        match res {
            Ok(Ok(sequencer)) => Ok(PutResult {
                etag,
                version_id: None,
                sequencer: Some(sequencer),
            }),
            Ok(Err(kind)) => {
                let msg = match kind {
                    ErrorKind::AlreadyExists => {
                        "object already exists (create-only write)".to_string()
                    }
                    ErrorKind::NotFound => "object to replace no longer exists".to_string(),
                    _ => format!(
                        "If-Match {} failed: the object has changed",
                        etag_in_mode(&opts.mode)
                    ),
                };
                Err(storage_error(op, bucket, key, kind, msg))
            }
            Err(e) => Err(io_error(op, bucket, key, e)),
        }
    }

    fn temp_path(&self) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root.join(".sluice/tmp").join(format!(
            "upload-{}-{}-{n}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ))
    }
}

fn etag_in_mode(mode: &PutMode) -> &str {
    match mode {
        PutMode::Update { etag } => etag,
        _ => "",
    }
}

/// Write a small file so that readers see the old or the new content, never a mix.
fn write_atomically(tmp_dir: &Path, dest: &Path, body: &[u8]) -> io::Result<()> {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = tmp_dir.join(format!("small-{}-{n}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
    }
    fs::rename(&tmp, dest)
}

/// Turn a key into a relative path that cannot leave the bucket folder.
fn safe_relative(op: &'static str, bucket: &str, key: &str) -> Result<PathBuf> {
    validate_key(op, bucket, key)?;
    let reject = |why: &str| {
        Err(storage_error(
            op,
            bucket,
            key,
            ErrorKind::Rejected,
            format!("key cannot be stored in a local directory: {why}"),
        ))
    };
    let mut out = PathBuf::new();
    for part in key.split('/') {
        if part.is_empty() {
            return reject("empty path segment (leading, trailing or double '/')");
        }
        if part.len() > 255 {
            return reject("path segment longer than 255 bytes");
        }
        match Path::new(part).components().next() {
            Some(Component::Normal(_)) if part != "." && part != ".." => out.push(part),
            _ => return reject("'.' or '..' segment would escape the bucket"),
        }
    }
    Ok(out)
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<GetResult> {
        let path = self.path_of(bucket, key)?;
        let this = self.clone();
        let (b, k) = (bucket.to_string(), key.to_string());
        // Open and read the metadata under one shared lock, so the pair is consistent;
        // the open handle keeps this version readable even if it is replaced next.
        let (file, meta) = tokio::task::spawn_blocking(move || {
            this.locked(false, || {
                let meta = this.read_meta(&b, &k, &path)?;
                match meta {
                    Some(m) => Ok(Some((File::open(&path)?, m))),
                    None => Ok(None),
                }
            })
        })
        .await
        .map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "local get task failed",
                Some(Box::new(e)),
            )
        })?
        .map_err(|e| io_error("get", bucket, key, e))?
        .ok_or_else(|| storage_error("get", bucket, key, ErrorKind::NotFound, "no such key"))?;
        let (b, k) = (bucket.to_string(), key.to_string());
        let body = ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024)
            .map(move |r| r.map_err(|e| io_error("read", &b, &k, e)));
        Ok(GetResult {
            meta,
            body: Box::pin(body),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path_of(bucket, key)?;
        let this = self.clone();
        let (b, k) = (bucket.to_string(), key.to_string());
        tokio::task::spawn_blocking(move || this.locked(false, || this.read_meta(&b, &k, &path)))
            .await
            .map_err(|e| {
                Error::other(
                    ErrorKind::Internal,
                    "local head task failed",
                    Some(Box::new(e)),
                )
            })?
            .map_err(|e| io_error("head", bucket, key, e))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let mut upload = self.put_multipart(bucket, key, opts).await?;
        upload.write(body).await?;
        upload.complete().await
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: PutOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.path_of(bucket, key)?;
        let tmp = self.temp_path();
        let file = File::create(&tmp).map_err(|e| io_error("put", bucket, key, e))?;
        Ok(Box::new(LocalUpload {
            store: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            opts,
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
        }))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_bucket("list", bucket)?;
        let this = self.clone();
        let (b, p) = (bucket.to_string(), prefix.to_string());
        tokio::task::spawn_blocking(move || {
            let base = this.root.join(&b);
            let mut keys = Vec::new();
            walk(&base, "", &p, &mut keys)?;
            keys.sort();
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(m) = this.read_meta(&b, &k, &base.join(&k))? {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "local list task failed",
                Some(Box::new(e)),
            )
        })?
        .map_err(|e| io_error("list", bucket, prefix, e))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let path = self.path_of(bucket, key)?;
        let meta = self.meta_path(bucket, key)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.locked(true, || {
                for p in [&path, &meta] {
                    match fs::remove_file(p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "local delete task failed",
                Some(Box::new(e)),
            )
        })?
        .map_err(|e| io_error("delete", bucket, key, e))
    }
}

/// Collect keys (relative paths with '/') under `dir` that start with `prefix`.
fn walk(dir: &Path, rel: &str, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue; // not UTF-8: not a key this store could have written
        };
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            // Descend only where a matching key could be.
            let dir_prefix = format!("{key}/");
            if dir_prefix.starts_with(prefix) || prefix.starts_with(&dir_prefix) {
                walk(&entry.path(), &key, prefix, out)?;
            }
        } else if ft.is_file() && key.starts_with(prefix) {
            out.push(key);
        }
    }
    Ok(())
}

struct LocalUpload {
    store: LocalStore,
    bucket: String,
    key: String,
    opts: PutOptions,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.hasher.update(&data);
        let file = self.file.as_mut().ok_or_else(|| {
            storage_error(
                "put",
                &self.bucket,
                &self.key,
                ErrorKind::Internal,
                "upload already finished",
            )
        })?;
        // Local disk writes are fast and bounded by the chunk size; doing them
        // inline avoids a task hop per chunk.
        file.write_all(&data)
            .map_err(|e| io_error("put", &self.bucket, &self.key, e))
    }

    async fn complete(mut self: Box<Self>) -> Result<PutResult> {
        drop(self.file.take());
        let digest = std::mem::take(&mut self.hasher).finalize();
        let etag = hex::encode(&digest[..16]);
        let (store, bucket, key, tmp) = (
            self.store.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.tmp.clone(),
        );
        let opts = self.opts.clone();
        tokio::task::spawn_blocking(move || store.commit("put", &bucket, &key, &tmp, etag, opts))
            .await
            .map_err(|e| {
                Error::other(
                    ErrorKind::Internal,
                    "local commit task failed",
                    Some(Box::new(e)),
                )
            })?
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        let _ = fs::remove_file(&self.tmp);
        Ok(())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // An upload dropped without complete/abort leaves no temp file behind.
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
