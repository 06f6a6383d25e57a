//! S3 object store over aws-sdk-s3: streamed gets, conditional puts
//! (`If-None-Match: *`, `If-Match`), and multipart uploads that buffer at most
//! one part and apply the same condition at `CompleteMultipartUpload`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::stream;

use super::{
    location, storage_error, validate_bucket, validate_key, GetResult, Metadata, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutOptions, PutResult, DEFAULT_PART_SIZE, MIN_PART_SIZE,
};
use crate::aws;
use crate::error::{Error, ErrorKind, Result};

/// An object store on S3 (or anything that speaks its API).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    part_size: usize,
}

impl S3Store {
    /// A store using this client, uploading in parts of `part_size` bytes
    /// (at least S3's 5 MiB minimum).
    pub fn new(client: Client, part_size: usize) -> Self {
        S3Store {
            client,
            part_size: part_size.max(MIN_PART_SIZE),
        }
    }

    /// A store with the default part size.
    pub fn with_client(client: Client) -> Self {
        Self::new(client, DEFAULT_PART_SIZE)
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

fn quote(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

fn to_utc(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
}

fn metadata_of(m: Option<&HashMap<String, String>>) -> Metadata {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

/// A failed create-only write comes back as 412 (or 409 on a race); both mean
/// the key is taken.
fn adjust_for_mode(err: Error, mode: &PutMode) -> Error {
    match (err, mode) {
        (
            Error::Storage {
                op,
                location,
                kind: ErrorKind::Precondition,
                message,
                source,
            },
            PutMode::Create,
        ) => Error::Storage {
            op,
            location,
            kind: ErrorKind::AlreadyExists,
            message: format!("object already exists (If-None-Match: *): {message}"),
            source,
        },
        (e, _) => e,
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, bucket: &str, key: &str) -> Result<GetResult> {
        validate_key("get", bucket, key)?;
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws::storage_error("get", location(bucket, key), e))?;
        let meta = ObjectMeta {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: out
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            etag: unquote(out.e_tag()),
            version_id: out.version_id().map(str::to_string),
            last_modified: to_utc(out.last_modified()),
            metadata: metadata_of(out.metadata()),
        };
        let loc = location(bucket, key);
        let body = stream::unfold((out.body, loc), |(mut body, loc)| async move {
            match body.next().await {
                None => None,
                Some(Ok(b)) => Some((Ok(b), (body, loc))),
                Some(Err(e)) => {
                    let err = Error::Storage {
                        op: "read",
                        location: loc.clone(),
                        kind: ErrorKind::Transient,
                        message: "body stream interrupted".into(),
                        source: Some(Box::new(e)),
                    };
                    Some((Err(err), (body, loc)))
                }
            }
        });
        Ok(GetResult {
            meta,
            body: Box::pin(body),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key("head", bucket, key)?;
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                bucket: bucket.to_string(),
                key: key.to_string(),
                size: out
                    .content_length()
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
                etag: unquote(out.e_tag()),
                version_id: out.version_id().map(str::to_string),
                last_modified: to_utc(out.last_modified()),
                metadata: metadata_of(out.metadata()),
            })),
            Err(e) => {
                let err = aws::storage_error("head", location(bucket, key), e);
                if err.kind() == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        validate_key("put", bucket, key)?;
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(SdkByteStream::from(body))
            .set_metadata(Some(opts.metadata.clone().into_iter().collect()))
            .set_content_type(opts.content_type.clone());
        req = match &opts.mode {
            PutMode::Overwrite => req,
            PutMode::Create => req.if_none_match("*"),
            PutMode::Update { etag } => req.if_match(quote(etag)),
        };
        let out = req.send().await.map_err(|e| {
            adjust_for_mode(
                aws::storage_error("put", location(bucket, key), e),
                &opts.mode,
            )
        })?;
        Ok(PutResult {
            etag: unquote(out.e_tag()),
            version_id: out.version_id().map(str::to_string),
            sequencer: None,
        })
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: PutOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        validate_bucket("put", bucket)?;
        validate_key("put", bucket, key)?;
        Ok(Box::new(S3Upload {
            store: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            opts,
            upload_id: None,
            parts: Vec::new(),
            buf: BytesMut::new(),
        }))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws::storage_error("list", location(bucket, prefix), e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectMeta {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: unquote(o.e_tag()),
                    version_id: None,
                    last_modified: to_utc(o.last_modified()),
                    metadata: Metadata::new(),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        validate_key("delete", bucket, key)?;
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws::storage_error("delete", location(bucket, key), e))?;
        Ok(())
    }
}

/// A streamed upload: small bodies become one conditional PutObject; larger
/// ones a multipart upload created lazily when the first part fills.
struct S3Upload {
    store: S3Store,
    bucket: String,
    key: String,
    opts: PutOptions,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    buf: BytesMut,
}

impl S3Upload {
    async fn flush_part(&mut self) -> Result<()> {
        let body = self.buf.split().freeze();
        self.send_part(body).await
    }

    async fn send_part(&mut self, body: Bytes) -> Result<()> {
        let client = &self.store.client;
        let loc = location(&self.bucket, &self.key);
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .set_metadata(Some(self.opts.metadata.clone().into_iter().collect()))
                    .set_content_type(self.opts.content_type.clone())
                    .send()
                    .await
                    .map_err(|e| aws::storage_error("start upload of", loc.clone(), e))?;
                let id = out
                    .upload_id()
                    .ok_or_else(|| {
                        storage_error(
                            "start upload of",
                            &self.bucket,
                            &self.key,
                            ErrorKind::Transient,
                            "no upload id returned",
                        )
                    })?
                    .to_string();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let part_number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let out = client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| aws::storage_error("upload part of", loc, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }
}

#[async_trait]
impl MultipartUpload for S3Upload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.buf.is_empty() && data.len() == self.store.part_size {
            // A whole part (what an OutputSet sends): no copy into the buffer.
            return self.send_part(data).await;
        }
        self.buf.extend_from_slice(&data);
        while self.buf.len() >= self.store.part_size {
            // Send exactly one part's worth; keep the remainder buffered.
            let rest = self.buf.split_off(self.store.part_size);
            self.flush_part().await?;
            self.buf = rest;
        }
        Ok(())
    }

    fn part_size(&self) -> usize {
        self.store.part_size
    }

    async fn complete(mut self: Box<Self>) -> Result<PutResult> {
        let Some(upload_id) = self.upload_id.clone() else {
            // Never reached one part: a single conditional put is cheaper.
            let body = self.buf.split().freeze();
            return self
                .store
                .put(&self.bucket, &self.key, body, self.opts.clone())
                .await;
        };
        if !self.buf.is_empty() {
            self.flush_part().await?;
        }
        let mut req = self
            .store
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            );
        req = match &self.opts.mode {
            PutMode::Overwrite => req,
            PutMode::Create => req.if_none_match("*"),
            PutMode::Update { etag } => req.if_match(quote(etag)),
        };
        match req.send().await {
            Ok(out) => Ok(PutResult {
                etag: unquote(out.e_tag()),
                version_id: out.version_id().map(str::to_string),
                sequencer: None,
            }),
            Err(e) => {
                let err = adjust_for_mode(
                    aws::storage_error("complete upload of", location(&self.bucket, &self.key), e),
                    &self.opts.mode,
                );
                // A failed condition is final for this upload: release the parts.
                let _ = self
                    .store
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(err)
            }
        }
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        if let Some(upload_id) = &self.upload_id {
            self.store
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|e| {
                    aws::storage_error("abort upload of", location(&self.bucket, &self.key), e)
                })?;
        }
        Ok(())
    }
}
