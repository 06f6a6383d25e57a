//! A store decorator that records every completed write (and every removal)
//! as the event S3 would emit, so a local run can trigger the next stage exactly as
//! S3 → EventBridge would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;

use super::{GetResult, MultipartUpload, ObjectMeta, ObjectStore, PutOptions, PutResult};
use crate::error::Result;
use crate::trigger::ObjectRef;

/// Wraps a store; every successful put or completed upload queues an event.
#[derive(Debug, Clone)]
pub struct NotifyingStore {
    inner: Arc<dyn ObjectStore>,
    events: Arc<Mutex<VecDeque<ObjectRef>>>,
}

impl NotifyingStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        NotifyingStore {
            inner,
            events: Arc::default(),
        }
    }

    /// Take the events queued so far, oldest first.
    pub fn drain_events(&self) -> Vec<ObjectRef> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    fn record(
        events: &Mutex<VecDeque<ObjectRef>>,
        bucket: &str,
        key: &str,
        size: u64,
        r: &PutResult,
    ) {
        let mut o = ObjectRef::new(bucket, key);
        o.etag = Some(r.etag.clone());
        o.version_id = r.version_id.clone();
        o.sequencer = r.sequencer.clone();
        o.size = Some(size);
        o.event_time = Some(Utc::now());
        events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(o);
    }
}

#[async_trait]
impl ObjectStore for NotifyingStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<GetResult> {
        self.inner.get(bucket, key).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(bucket, key).await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let size = body.len() as u64;
        let r = self.inner.put(bucket, key, body, opts).await?;
        Self::record(&self.events, bucket, key, size, &r);
        Ok(r)
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: PutOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart(bucket, key, opts).await?;
        Ok(Box::new(NotifyingUpload {
            inner,
            events: self.events.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: 0,
        }))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(bucket, prefix).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        // Only a removal of something that was there is news downstream.
        let existed = self.inner.head(bucket, key).await?.is_some();
        self.inner.delete(bucket, key).await?;
        if existed {
            let mut o = ObjectRef::removal(bucket, key);
            o.event_time = Some(Utc::now());
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(o);
        }
        Ok(())
    }
}

struct NotifyingUpload {
    inner: Box<dyn MultipartUpload>,
    events: Arc<Mutex<VecDeque<ObjectRef>>>,
    bucket: String,
    key: String,
    size: u64,
}

#[async_trait]
impl MultipartUpload for NotifyingUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        self.inner.write(data).await
    }

    fn part_size(&self) -> usize {
        self.inner.part_size()
    }

    async fn complete(self: Box<Self>) -> Result<PutResult> {
        let this = *self;
        let r = this.inner.complete().await?;
        NotifyingStore::record(&this.events, &this.bucket, &this.key, this.size, &r);
        Ok(r)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, ObjectStoreExt, PutMode};

    #[tokio::test]
    async fn completed_writes_become_events_and_failed_ones_do_not() {
        let store = NotifyingStore::new(Arc::new(MemoryStore::new()));
        store
            .put(
                "bucket",
                "a key",
                Bytes::from_static(b"abc"),
                PutOptions::new(PutMode::Create),
            )
            .await
            .unwrap();
        assert!(store
            .put(
                "bucket",
                "a key",
                Bytes::from_static(b"x"),
                PutOptions::new(PutMode::Create)
            )
            .await
            .is_err());
        let mut up = store
            .put_multipart("bucket", "b", PutOptions::new(PutMode::Create))
            .await
            .unwrap();
        up.write(Bytes::from_static(b"12345")).await.unwrap();
        up.complete().await.unwrap();
        let aborted = store
            .put_multipart("bucket", "c", PutOptions::new(PutMode::Create))
            .await
            .unwrap();
        aborted.abort().await.unwrap();
        let events = store.drain_events();
        let keys: Vec<(&str, Option<u64>)> =
            events.iter().map(|e| (e.key.as_str(), e.size)).collect();
        assert_eq!(keys, vec![("a key", Some(3)), ("b", Some(5))]);
        assert!(events
            .iter()
            .all(|e| e.etag.is_some() && e.sequencer.is_some()));
        assert!(store.drain_events().is_empty());
        assert_eq!(
            store.get_bytes("bucket", "b").await.unwrap(),
            Bytes::from_static(b"12345")
        );
    }
}
