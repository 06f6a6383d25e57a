//! The object-store abstraction every stage reads and writes through: a narrow
//! async trait ([`ObjectStore`]) with S3, local-directory and in-memory
//! backends side by side, plus conveniences built on top of it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncRead;

use crate::error::{Error, ErrorKind, Result};

pub mod local;
pub mod memory;
pub mod notify;
#[cfg(feature = "aws")]
pub mod s3;

pub mod conformance;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use notify::NotifyingStore;
#[cfg(feature = "aws")]
pub use s3::S3Store;

/// User metadata attached to an object (`x-amz-meta-*` on S3). Keys are
/// lower-case ASCII; values must be ASCII (S3 headers), see [`crate::lineage`].
pub type Metadata = BTreeMap<String, String>;

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes. Changes whenever the content does.
    pub etag: String,
    /// Version id, where the backend versions objects.
    pub version_id: Option<String>,
    /// Last modification time.
    pub last_modified: Option<DateTime<Utc>>,
    /// User metadata.
    pub metadata: Metadata,
}

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A streamed read: metadata first, then the body in chunks.
pub struct GetResult {
    /// The object's metadata.
    pub meta: ObjectMeta,
    /// The body, never buffered whole.
    pub body: ByteStream,
}

impl GetResult {
    /// The body as an `AsyncRead` (for decompressors and parsers).
    pub fn into_async_read(self) -> Pin<Box<dyn AsyncRead + Send>> {
        let stream = self.body.map_err(std::io::Error::other);
        Box::pin(tokio_util::io::StreamReader::new(stream))
    }

    /// Collect the whole body. Only for small objects (manifests, tests).
    pub async fn bytes(self) -> Result<Bytes> {
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(chunks.concat().into())
    }
}

impl Debug for GetResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// How a put treats an existing object at the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Write whatever is there.
    Overwrite,
    /// Write only if nothing is there (`If-None-Match: *`); otherwise
    /// [`ErrorKind::AlreadyExists`].
    Create,
    /// Replace only if the current ETag is this one (`If-Match`); otherwise
    /// [`ErrorKind::Precondition`] (or [`ErrorKind::NotFound`] if it is gone).
    Update {
        /// The ETag the object must still have.
        etag: String,
    },
}

/// Options for a put.
#[derive(Debug, Clone)]
pub struct PutOptions {
    /// Conditional behaviour.
    pub mode: PutMode,
    /// User metadata to store with the object.
    pub metadata: Metadata,
    /// Content type, e.g. `application/vnd.apache.parquet`.
    pub content_type: Option<String>,
}

impl PutOptions {
    /// Options with a mode and no metadata.
    pub fn new(mode: PutMode) -> Self {
        PutOptions {
            mode,
            metadata: Metadata::new(),
            content_type: None,
        }
    }
}

/// The result of a successful put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// ETag of the new object, without quotes.
    pub etag: String,
    /// Version id, if the backend versions objects.
    pub version_id: Option<String>,
    /// The ordering token of this write, where the backend issues one (the
    /// local and memory stores do; on S3 it arrives in the event instead).
    pub sequencer: Option<String>,
}

/// A streamed upload in bounded parts. Dropping it without `complete` leaves
/// nothing visible; call `abort` to release server-side parts promptly.
#[async_trait]
pub trait MultipartUpload: Send {
    /// Append data. Buffers at most one part before sending it.
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// The size of the parts it sends (S3: at least 5 MiB), or 0 if it
    /// holds nothing back (a local file, memory). A writer that feeds it
    /// whole parts leaves nothing buffered in it
    /// ([`crate::spool::OutputSet`] does).
    fn part_size(&self) -> usize {
        0
    }
    /// Make the object visible, honouring the put mode of the upload.
    async fn complete(self: Box<Self>) -> Result<PutResult>;
    /// Discard everything written.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// The narrow trait every backend implements.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug + 'static {
    /// Stream an object.
    async fn get(&self, bucket: &str, key: &str) -> Result<GetResult>;
    /// Metadata of an object, or `None` if it does not exist.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>>;
    /// Write a small object in one request.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult>;
    /// Start a streamed upload; conditions are checked at `complete`.
    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: PutOptions,
    ) -> Result<Box<dyn MultipartUpload>>;
    /// All objects under a prefix, sorted by key.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Delete an object; deleting a missing object is not an error.
    async fn delete(&self, bucket: &str, key: &str) -> Result<()>;
}

/// Conveniences available on every store.
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// Read a whole (small) object.
    async fn get_bytes(&self, bucket: &str, key: &str) -> Result<Bytes> {
        self.get(bucket, key).await?.bytes().await
    }

    /// Stream a body into a multipart upload, aborting it on failure.
    async fn put_stream(
        &self,
        bucket: &str,
        key: &str,
        mut body: ByteStream,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let mut upload = self.put_multipart(bucket, key, opts).await?;
        while let Some(chunk) = body.next().await {
            let res = match chunk {
                Ok(c) => upload.write(c).await,
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        upload.complete().await
    }
}

impl<T: ObjectStore + ?Sized> ObjectStoreExt for T {}

/// The default size of a multipart part: well above S3's 5 MiB minimum,
/// small enough that buffering one is cheap.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// S3's minimum part size (except for the last part).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

pub(crate) fn location(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

pub(crate) fn storage_error(
    op: &'static str,
    bucket: &str,
    key: &str,
    kind: ErrorKind,
    message: impl Into<String>,
) -> Error {
    Error::Storage {
        op,
        location: location(bucket, key),
        kind,
        message: message.into(),
        source: None,
    }
}

/// Keys a store refuses: empty, absurdly long, or (for the local backend)
/// able to escape the bucket folder.
pub(crate) fn validate_key(op: &'static str, bucket: &str, key: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(storage_error(
            op,
            bucket,
            key,
            ErrorKind::Rejected,
            format!("invalid key: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    Ok(())
}

/// Check a bucket name the way S3 does (roughly): 3-63 lower-case letters,
/// digits, dots and hyphens. Keeps local paths safe, too.
pub(crate) fn validate_bucket(op: &'static str, bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with('.')
        && !bucket.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::Storage {
            op,
            location: format!("s3://{bucket}"),
            kind: ErrorKind::Rejected,
            message: "invalid bucket name".into(),
            source: None,
        })
    }
}
