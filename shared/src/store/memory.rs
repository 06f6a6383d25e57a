//! In-memory object store: a real backend (not a mock) for unit tests, with
//! injectable transient failures to exercise retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::stream;

use super::{
    storage_error, validate_bucket, validate_key, GetResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutOptions, PutResult,
};
use crate::error::{ErrorKind, Result};

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<(String, String), (Bytes, ObjectMeta)>,
    sequencer: u64,
    /// Remaining injected failures per operation name.
    failures: HashMap<&'static str, u32>,
    /// Number of calls per operation name.
    calls: HashMap<&'static str, u32>,
    /// With a part size: the size of every write each upload received.
    upload_writes: BTreeMap<(String, String), Vec<usize>>,
}

/// An object store held in memory. Cloning shares the contents.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    part_size: usize,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose uploads report parts of `part_size` bytes, as S3's do
    /// ([`MultipartUpload::part_size`]), so that writers that feed whole
    /// parts take that path; the bytes are kept the same way.
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size;
        self
    }

    /// With a part size set: the sizes of the writes the uploads of
    /// `bucket`/`key` received, in order.
    pub fn upload_writes(&self, bucket: &str, key: &str) -> Vec<usize> {
        self.lock()
            .upload_writes
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Make the next `count` calls of `op` ("get", "head", "put", "complete",
    /// "list", "delete") fail with a transient (retryable) error.
    pub fn inject_transient_failures(&self, op: &'static str, count: u32) {
        self.lock().failures.insert(op, count);
    }

    /// How many times `op` has been called.
    pub fn calls(&self, op: &'static str) -> u32 {
        self.lock().calls.get(op).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every mutation is a single insert), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, op: &'static str, bucket: &str, key: &str) -> Result<MutexGuard<'_, State>> {
        validate_bucket(op, bucket)?;
        if !key.is_empty() {
            validate_key(op, bucket, key)?;
        }
        let mut st = self.lock();
        *st.calls.entry(op).or_default() += 1;
        if let Some(n) = st.failures.get_mut(op) {
            if *n > 0 {
                *n -= 1;
                return Err(storage_error(
                    op,
                    bucket,
                    key,
                    ErrorKind::Transient,
                    "injected transient failure (503 SlowDown)",
                ));
            }
        }
        Ok(st)
    }

    fn commit(
        &self,
        op: &'static str,
        bucket: &str,
        key: &str,
        data: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let mut st = self.enter(op, bucket, key)?;
        let id = (bucket.to_string(), key.to_string());
        let current = st.objects.get(&id).map(|(_, m)| m.etag.clone());
        match (&opts.mode, current) {
            (PutMode::Create, Some(_)) => {
                return Err(storage_error(
                    op,
                    bucket,
                    key,
                    ErrorKind::AlreadyExists,
                    "object already exists (If-None-Match: *)",
                ));
            }
            (PutMode::Update { .. }, None) => {
                return Err(storage_error(
                    op,
                    bucket,
                    key,
                    ErrorKind::NotFound,
                    "object to replace no longer exists",
                ));
            }
            (PutMode::Update { etag }, Some(cur)) if *etag != cur => {
                return Err(storage_error(
                    op,
                    bucket,
                    key,
                    ErrorKind::Precondition,
                    format!("If-Match {etag} failed: current etag is {cur}"),
                ));
            }
            _ => {}
        }
        st.sequencer += 1;
        let sequencer = format!("{:016X}", st.sequencer);
        let etag = super::local::etag_of(&data);
        let meta = ObjectMeta {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: data.len() as u64,
            etag: etag.clone(),
            version_id: None,
            last_modified: Some(Utc::now()),
            metadata: opts.metadata,
        };
        st.objects.insert(id, (data, meta));
        Ok(PutResult {
            etag,
            version_id: None,
            sequencer: Some(sequencer),
        })
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<GetResult> {
        let st = self.enter("get", bucket, key)?;
        let (data, meta) = st
            .objects
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .ok_or_else(|| storage_error("get", bucket, key, ErrorKind::NotFound, "no such key"))?;
        // Serve in small chunks so consumers are exercised on chunk boundaries.
        let chunks: Vec<Result<Bytes>> = data
            .chunks(64 * 1024)
            .map(|c| Ok(data.slice_ref(c)))
            .collect();
        Ok(GetResult {
            meta,
            body: Box::pin(stream::iter(chunks)),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>> {
        let st = self.enter("head", bucket, key)?;
        Ok(st
            .objects
            .get(&(bucket.to_string(), key.to_string()))
            .map(|(_, m)| m.clone()))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.commit("put", bucket, key, body, opts)
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: PutOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        validate_bucket("put", bucket)?;
        validate_key("put", bucket, key)?;
        Ok(Box::new(MemoryUpload {
            store: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            opts,
            buf: BytesMut::new(),
            part_size: self.part_size,
        }))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let st = self.enter("list", bucket, "")?;
        Ok(st
            .objects
            .range((bucket.to_string(), prefix.to_string())..)
            .take_while(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|(_, (_, m))| m.clone())
            .collect())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let mut st = self.enter("delete", bucket, key)?;
        st.objects.remove(&(bucket.to_string(), key.to_string()));
        Ok(())
    }
}

struct MemoryUpload {
    store: MemoryStore,
    bucket: String,
    key: String,
    opts: PutOptions,
    buf: BytesMut,
    part_size: usize,
}

#[async_trait]
impl MultipartUpload for MemoryUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.part_size > 0 {
            self.store
                .lock()
                .upload_writes
                .entry((self.bucket.clone(), self.key.clone()))
                .or_default()
                .push(data.len());
        }
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    fn part_size(&self) -> usize {
        self.part_size
    }

    async fn complete(self: Box<Self>) -> Result<PutResult> {
        let this = *self;
        this.store.commit(
            "complete",
            &this.bucket,
            &this.key,
            this.buf.freeze(),
            this.opts,
        )
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
