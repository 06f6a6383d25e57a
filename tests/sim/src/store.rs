//! The simulated S3: [`FaultyStore`] wraps a [`MemoryStore`] and turns every
//! operation of a simulated invocation into a *turn* granted by the
//! scheduler ([`crate::sim`]): the operation waits at a gate, the scheduler
//! decides its latency (simulated) and its fault, and lets exactly one
//! invocation run at a time. Faults are transient S3 failures, either before
//! the operation (throttling, 5xx, timeouts, resets, a spurious 409 on a
//! conditional write) or after it took effect (the response was lost).
//! Every committed write, completed upload and deletion is recorded as an
//! S3 event for the bus.
//!
//! Also here: the sim's dead-letter queue ([`SimDlq`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use sluice::dlq::{DeadLetterSink, Envelope};
use sluice::store::{
    GetResult, MemoryStore, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutOptions,
    PutResult,
};
use sluice::{Error, ErrorKind, ObjectRef, Result};
use tokio::sync::{mpsc, oneshot};

tokio::task_local! {
    /// The id of the simulated invocation the current task runs. Store calls
    /// outside an invocation (there should be none) pass through ungated.
    pub static INVOCATION: u64;
}

/// Lock a mutex, ignoring poisoning (a panicking test thread reports itself).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The kinds of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// 503 SlowDown.
    Throttle,
    /// 500 InternalError.
    ServerError,
    /// No response within the attempt timeout (the request did not arrive).
    Timeout,
    /// Connection reset (before the request, or in the middle of a body).
    Reset,
    /// The operation took effect but its response was lost.
    LostResponse,
    /// A spurious 409 ConditionalRequestConflict on a conditional write.
    Conflict,
}

impl FaultKind {
    /// All kinds, in summary order.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::Timeout,
        FaultKind::Reset,
        FaultKind::LostResponse,
        FaultKind::Conflict,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::ServerError => "5xx",
            FaultKind::Timeout => "timeout",
            FaultKind::Reset => "reset",
            FaultKind::LostResponse => "lost-response",
            FaultKind::Conflict => "conflict",
        }
    }

    fn message(self) -> &'static str {
        match self {
            FaultKind::Throttle => "503 SlowDown: Please reduce your request rate (injected)",
            FaultKind::ServerError => {
                "500 InternalError: We encountered an internal error. Please try again. (injected)"
            }
            FaultKind::Timeout => "timeout: no response within the attempt timeout (injected)",
            FaultKind::Reset => "connection reset by peer (injected)",
            FaultKind::LostResponse => {
                "connection closed before the response arrived; the request took effect (injected)"
            }
            FaultKind::Conflict => {
                "409 ConditionalRequestConflict: a conflicting conditional operation is in progress (injected)"
            }
        }
    }

    /// The transient storage error this fault surfaces as.
    pub fn error(self, op: &'static str, bucket: &str, key: &str) -> Error {
        Error::Storage {
            op,
            location: format!("s3://{bucket}/{key}"),
            kind: ErrorKind::Transient,
            message: self.message().to_string(),
            source: None,
        }
    }
}

/// What an operation is, as the scheduler sees it at the gate.
#[derive(Debug, Clone)]
pub struct OpInfo {
    /// get, head, put, list, delete, create_multipart, upload_part, complete, abort.
    pub op: &'static str,
    /// Bucket.
    pub bucket: String,
    /// Key (the prefix for a list).
    pub key: String,
    /// A conditional write (`If-None-Match` / `If-Match`).
    pub conditional: bool,
}

impl OpInfo {
    /// Whether the operation changes the store.
    pub fn is_write(&self) -> bool {
        matches!(self.op, "put" | "complete" | "delete")
    }
}

/// The scheduler's ruling on one operation.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Fail before the operation takes effect.
    pub before: Option<FaultKind>,
    /// Fail after the operation took effect (writes only).
    pub after: Option<FaultKind>,
    /// For a get: reset the body stream after this many (1 KiB) chunks,
    /// modulo the number of chunks.
    pub cut_body: Option<u64>,
}

/// What an invocation tells the scheduler.
pub enum Notice {
    /// It reached a store operation and waits for its turn.
    Parked {
        /// Invocation id.
        inv: u64,
        /// The operation.
        op: OpInfo,
        /// Where the ruling goes.
        grant: oneshot::Sender<Decision>,
    },
    /// It finished.
    Done {
        /// Invocation id.
        inv: u64,
        /// What `handle` returned.
        result: Result<sluice::runner::InvocationReport>,
    },
}

/// A committed change, as the S3 event it produces.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// `ObjectRemoved:Delete` rather than `ObjectCreated:*`.
    pub removed: bool,
    /// The object (etag, size and sequencer for creations).
    pub obj: ObjectRef,
}

/// The gating, fault-injecting, event-recording store.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: MemoryStore,
    notices: mpsc::UnboundedSender<Notice>,
    events: Arc<Mutex<Vec<StoreEvent>>>,
    ungated: Arc<Mutex<u64>>,
    parts: Arc<Mutex<u64>>,
}

impl FaultyStore {
    /// Wrap `inner`; gated operations notify `notices`.
    pub fn new(inner: MemoryStore, notices: mpsc::UnboundedSender<Notice>) -> Self {
        FaultyStore {
            inner,
            notices,
            events: Arc::default(),
            ungated: Arc::default(),
            parts: Arc::default(),
        }
    }

    /// Parts written to multipart uploads so far.
    pub fn parts_written(&self) -> u64 {
        *lock(&self.parts)
    }

    /// The events recorded since the last call, in commit order.
    pub fn drain_events(&self) -> Vec<StoreEvent> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// Record an event (also used for the producers' direct writes).
    pub fn record(&self, ev: StoreEvent) {
        lock(&self.events).push(ev);
    }

    /// Where gated operations send their notices.
    pub fn notices(&self) -> mpsc::UnboundedSender<Notice> {
        self.notices.clone()
    }

    /// Store calls made outside any simulated invocation (must stay 0, or
    /// the schedule is not under the scheduler's control).
    pub fn ungated_calls(&self) -> u64 {
        *lock(&self.ungated)
    }

    async fn gate(&self, op: &'static str, bucket: &str, key: &str, conditional: bool) -> Decision {
        let Ok(inv) = INVOCATION.try_with(|i| *i) else {
            *lock(&self.ungated) += 1;
            return Decision::default();
        };
        let (tx, rx) = oneshot::channel();
        let info = OpInfo {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            conditional,
        };
        if self
            .notices
            .send(Notice::Parked {
                inv,
                op: info,
                grant: tx,
            })
            .is_err()
        {
            return Decision::default();
        }
        // A dropped sender means the scheduler is gone: the run is over and
        // this task is about to be dropped; any answer will do.
        rx.await.unwrap_or_default()
    }

    fn created(&self, bucket: &str, key: &str, size: u64, r: &PutResult) {
        let mut o = ObjectRef::new(bucket, key);
        o.etag = Some(r.etag.clone());
        o.version_id = r.version_id.clone();
        o.sequencer = r.sequencer.clone();
        o.size = Some(size);
        self.record(StoreEvent {
            removed: false,
            obj: o,
        });
    }
}

/// Re-chunk a body into 1 KiB pieces and, if asked, reset it mid-way.
fn cut_body(
    body: sluice::store::ByteStream,
    cut: Option<u64>,
    bucket: &str,
    key: &str,
    size: u64,
) -> sluice::store::ByteStream {
    const CHUNK: usize = 1024;
    let chunks = size.div_ceil(CHUNK as u64).max(1);
    let at = cut.map(|c| c % chunks);
    let location = format!("s3://{bucket}/{key}");
    let rechunked = body
        .flat_map(|piece| {
            let parts: Vec<Result<Bytes>> = match piece {
                Ok(b) => (0..b.len())
                    .step_by(CHUNK)
                    .map(|i| Ok(b.slice(i..(i + CHUNK).min(b.len()))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(parts)
        })
        .enumerate()
        .map(move |(i, piece)| match at {
            Some(a) if i as u64 == a => Err(Error::Storage {
                op: "get",
                location: location.clone(),
                kind: ErrorKind::Transient,
                message: "connection reset while reading the body (injected)".into(),
                source: None,
            }),
            _ => piece,
        });
    // Nothing after the reset.
    let mut failed = false;
    Box::pin(rechunked.take_while(move |r| {
        let go = !failed;
        failed |= r.is_err();
        futures::future::ready(go)
    }))
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<GetResult> {
        let d = self.gate("get", bucket, key, false).await;
        if let Some(f) = d.before {
            return Err(f.error("get", bucket, key));
        }
        let got = self.inner.get(bucket, key).await?;
        if d.cut_body.is_none() {
            return Ok(got);
        }
        let size = got.meta.size;
        Ok(GetResult {
            body: cut_body(got.body, d.cut_body, bucket, key, size),
            meta: got.meta,
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>> {
        let d = self.gate("head", bucket, key, false).await;
        if let Some(f) = d.before {
            return Err(f.error("head", bucket, key));
        }
        self.inner.head(bucket, key).await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let conditional = opts.mode != PutMode::Overwrite;
        let d = self.gate("put", bucket, key, conditional).await;
        if let Some(f) = d.before {
            return Err(f.error("put", bucket, key));
        }
        let size = body.len() as u64;
        let r = self.inner.put(bucket, key, body, opts).await?;
        self.created(bucket, key, size, &r);
        if let Some(f) = d.after {
            return Err(f.error("put", bucket, key));
        }
        Ok(r)
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: PutOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let conditional = opts.mode != PutMode::Overwrite;
        let d = self.gate("create_multipart", bucket, key, false).await;
        if let Some(f) = d.before {
            return Err(f.error("put", bucket, key));
        }
        let inner = self.inner.put_multipart(bucket, key, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            store: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: 0,
            conditional,
        }))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let d = self.gate("list", bucket, prefix, false).await;
        if let Some(f) = d.before {
            return Err(f.error("list", bucket, prefix));
        }
        self.inner.list(bucket, prefix).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let d = self.gate("delete", bucket, key, false).await;
        if let Some(f) = d.before {
            return Err(f.error("delete", bucket, key));
        }
        let existed = self.inner.head(bucket, key).await?.is_some();
        self.inner.delete(bucket, key).await?;
        if existed {
            self.record(StoreEvent {
                removed: true,
                obj: ObjectRef::new(bucket, key),
            });
        }
        if let Some(f) = d.after {
            return Err(f.error("delete", bucket, key));
        }
        Ok(())
    }
}

struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    store: FaultyStore,
    bucket: String,
    key: String,
    size: u64,
    conditional: bool,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let d = self
            .store
            .gate("upload_part", &self.bucket, &self.key, false)
            .await;
        if let Some(f) = d.before {
            return Err(f.error("upload_part", &self.bucket, &self.key));
        }
        self.size += data.len() as u64;
        self.inner.write(data).await?;
        *lock(&self.store.parts) += 1;
        Ok(())
    }

    fn part_size(&self) -> usize {
        self.inner.part_size()
    }

    async fn complete(self: Box<Self>) -> Result<PutResult> {
        let this = *self;
        let d = this
            .store
            .gate("complete", &this.bucket, &this.key, this.conditional)
            .await;
        if let Some(f) = d.before {
            return Err(f.error("complete", &this.bucket, &this.key));
        }
        let r = this.inner.complete().await?;
        this.store.created(&this.bucket, &this.key, this.size, &r);
        if let Some(f) = d.after {
            return Err(f.error("complete", &this.bucket, &this.key));
        }
        Ok(r)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let this = *self;
        let d = this
            .store
            .gate("abort", &this.bucket, &this.key, false)
            .await;
        if let Some(f) = d.before {
            return Err(f.error("abort", &this.bucket, &this.key));
        }
        this.inner.abort().await
    }
}

/// One message in a sim DLQ. (A run holds a handful, so the unboxed raw
/// variant's size does not matter.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Letter {
    /// An envelope the stage sent (permanent failure).
    Envelope(Box<Envelope>),
    /// A message the bus moved after too many receives ("retries_exhausted"),
    /// kept as it was.
    Raw {
        /// The object it names.
        obj: ObjectRef,
        /// Whether it was an object-removed event.
        removed: bool,
        /// The message body (an S3 notification).
        body: Value,
        /// Receives before the bus gave up.
        receive_count: u32,
        /// Its `sluice-reprocess` attribute (SQS keeps message attributes
        /// when it moves a message to the DLQ).
        reprocess: Option<u64>,
    },
}

impl Letter {
    /// The input version it is about: (bucket, key, etag), if it names one.
    pub fn version(&self) -> Option<(String, String, Option<String>)> {
        match self {
            Letter::Envelope(e) => e
                .source
                .as_ref()
                .map(|s| (s.bucket.clone(), s.key.clone(), s.etag.clone())),
            Letter::Raw { obj, removed, .. } if !removed => {
                Some((obj.bucket.clone(), obj.key.clone(), obj.etag.clone()))
            }
            Letter::Raw { .. } => None,
        }
    }

    /// The reason: the envelope's error kind, or `retries_exhausted`.
    pub fn reason(&self) -> String {
        match self {
            Letter::Envelope(e) => e.error.kind.as_str().to_string(),
            Letter::Raw { .. } => "retries_exhausted".to_string(),
        }
    }

    /// Whether the failure came from the weather (transient faults), so an
    /// operator would redrive it once the incident is over.
    pub fn is_transient(&self) -> bool {
        match self {
            Letter::Envelope(e) => {
                matches!(e.error.kind, ErrorKind::Transient | ErrorKind::Precondition)
            }
            Letter::Raw { .. } => true,
        }
    }

    /// One line for logs.
    pub fn describe(&self) -> String {
        match self {
            Letter::Envelope(e) => format!(
                "envelope {} {}: {}",
                e.source
                    .as_ref()
                    .map(|s| format!(
                        "s3://{}/{}@{}",
                        s.bucket,
                        s.key,
                        short(s.etag.as_deref().unwrap_or("-"))
                    ))
                    .unwrap_or_else(|| "(no object)".into()),
                e.error.kind.as_str(),
                e.error.message
            ),
            Letter::Raw {
                obj,
                removed,
                receive_count,
                ..
            } => format!(
                "retries_exhausted s3://{}/{}@{}{} after {receive_count} receives",
                obj.bucket,
                obj.key,
                short(obj.etag.as_deref().unwrap_or("-")),
                if *removed { " (removed event)" } else { "" }
            ),
        }
    }
}

/// The first 8 characters of an etag, for logs.
pub fn short(etag: &str) -> &str {
    etag.get(..8).unwrap_or(etag)
}

/// A per-stage in-memory DLQ owned by the sim.
#[derive(Debug, Clone, Default)]
pub struct SimDlq {
    letters: Arc<Mutex<Vec<Letter>>>,
    sent: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl SimDlq {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a letter.
    pub fn push(&self, l: Letter) {
        let k = match l {
            Letter::Envelope(_) => "envelope",
            Letter::Raw { .. } => "raw",
        };
        *lock(&self.sent).entry(k).or_default() += 1;
        lock(&self.letters).push(l);
    }

    /// Everything in the queue, oldest first.
    pub fn letters(&self) -> Vec<Letter> {
        lock(&self.letters).clone()
    }

    /// Take out the letters `which` selects (a redrive), keeping the rest.
    pub fn take(&self, which: impl Fn(&Letter) -> bool) -> Vec<Letter> {
        let mut all = lock(&self.letters);
        let (out, keep): (Vec<Letter>, Vec<Letter>) = all.drain(..).partition(|l| which(l));
        *all = keep;
        out
    }
}

#[async_trait]
impl DeadLetterSink for SimDlq {
    async fn send(&self, envelope: &Envelope) -> Result<()> {
        self.push(Letter::Envelope(Box::new(envelope.clone())));
        Ok(())
    }
}
