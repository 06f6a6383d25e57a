//! Many streamed outputs under one memory budget.
//!
//! A stage that writes many outputs at once cannot hold a part buffer per
//! upload: on S3 a part is at least 5 MiB, and ingest writes one file per
//! partition, so a file spanning a year of days would hold 365 of them. An
//! [`OutputSet`] keeps what each output has not sent yet, in memory up to one
//! budget shared by all of them; past the budget, the output holding the most
//! is spilled to a file on the ephemeral disk (`TMPDIR`, the Lambda's
//! `/tmp`). Bytes go to an upload only in whole parts, and the rest at
//! completion, so the uploads themselves hold nothing back. Memory is then
//! the budget plus the one part being sent, whatever the number of outputs.
//!
//! An upload that takes writes of any size without holding them (the local
//! and memory stores: [`MultipartUpload::part_size`] is 0) is written
//! through.
//!
//! [`MultipartUpload::part_size`]: crate::store::MultipartUpload::part_size

use std::collections::{BTreeMap, VecDeque};
use std::io::SeekFrom;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::{Error, ErrorKind, Result};
use crate::idempotent::StreamedOutput;
use crate::runner::ObjectContext;
use crate::store::Metadata;

/// Streamed outputs by key, holding at most `budget` bytes in memory
/// between them. See the [module documentation](self).
pub struct OutputSet {
    budget: usize,
    held: usize,
    peak: usize,
    spilled: u64,
    open: BTreeMap<String, Slot>,
}

/// One output: its upload (`None`: it already exists for this input
/// version, and its bytes are discarded) and what it has not sent yet, the
/// spilled bytes first, then those in memory.
struct Slot {
    location: String,
    out: Option<StreamedOutput>,
    part: usize,
    mem: VecDeque<Bytes>,
    mem_len: usize,
    spill: Option<tokio::fs::File>,
    spill_len: usize,
}

fn spill_error(location: &str, e: std::io::Error) -> Error {
    // The ephemeral disk full or failing is not the input's fault.
    Error::other(
        ErrorKind::Transient,
        format!("{location}: spilling to the ephemeral disk: {e}"),
        Some(Box::new(e)),
    )
}

impl Slot {
    fn pending(&self) -> usize {
        self.spill_len + self.mem_len
    }

    /// The first `n` pending bytes (spilled ones first) as one buffer, and
    /// how many of them were in memory.
    async fn take(&mut self, n: usize) -> Result<(Bytes, usize)> {
        let mut buf = BytesMut::with_capacity(n);
        if self.spill_len > 0 {
            let Some(file) = self.spill.as_mut() else {
                return Err(Error::other(
                    ErrorKind::Internal,
                    format!("{}: spilled bytes without a spill file", self.location),
                    None,
                ));
            };
            let loc = &self.location;
            // Whatever is spilled is less than a part (a part's worth is sent
            // at once), so it all goes into this one.
            buf.resize(self.spill_len, 0);
            file.seek(SeekFrom::Start(0))
                .await
                .map_err(|e| spill_error(loc, e))?;
            file.read_exact(&mut buf[..])
                .await
                .map_err(|e| spill_error(loc, e))?;
            file.set_len(0).await.map_err(|e| spill_error(loc, e))?;
            file.seek(SeekFrom::Start(0))
                .await
                .map_err(|e| spill_error(loc, e))?;
            self.spill_len = 0;
        }
        let mut from_mem = 0;
        while buf.len() < n {
            let Some(front) = self.mem.front_mut() else {
                break;
            };
            let want = n - buf.len();
            if front.len() <= want {
                let b = self.mem.pop_front().unwrap_or_default();
                from_mem += b.len();
                buf.extend_from_slice(&b);
            } else {
                from_mem += want;
                buf.extend_from_slice(&front[..want]);
                // A copy of the tail, so that the rest of the chunk's buffer
                // (counted as sent) is freed, not kept alive by the tail.
                *front = Bytes::copy_from_slice(&front[want..]);
            }
        }
        self.mem_len -= from_mem;
        Ok((buf.freeze(), from_mem))
    }

    /// Move the bytes held in memory to the spill file; how many.
    async fn spill_out(&mut self) -> Result<usize> {
        let loc = &self.location;
        if self.spill.is_none() {
            let f = tempfile::tempfile().map_err(|e| spill_error(loc, e))?;
            self.spill = Some(tokio::fs::File::from_std(f));
        }
        let Some(file) = self.spill.as_mut() else {
            return Ok(0);
        };
        let n = self.mem_len;
        for b in self.mem.drain(..) {
            file.write_all(&b).await.map_err(|e| spill_error(loc, e))?;
        }
        file.flush().await.map_err(|e| spill_error(loc, e))?;
        self.spill_len += n;
        self.mem_len = 0;
        Ok(n)
    }
}

impl OutputSet {
    /// A set that holds at most `budget` bytes in memory across its outputs
    /// (plus the part being sent).
    pub fn new(budget: usize) -> Self {
        OutputSet {
            budget,
            held: 0,
            peak: 0,
            spilled: 0,
            open: BTreeMap::new(),
        }
    }

    /// Append `bytes` to the output `bucket`/`key`, starting it (a claim and
    /// the idempotency check, [`ObjectContext::begin_output`]) on its first
    /// bytes.
    pub async fn write(
        &mut self,
        ctx: &mut ObjectContext,
        bucket: &str,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<()> {
        if !self.open.contains_key(key) {
            let out = ctx
                .begin_output(bucket, key, Some(content_type), &Metadata::new())
                .await?;
            let part = out.as_ref().map_or(0, StreamedOutput::part_size);
            self.open.insert(
                key.to_string(),
                Slot {
                    location: format!("s3://{bucket}/{key}"),
                    out,
                    part,
                    mem: VecDeque::new(),
                    mem_len: 0,
                    spill: None,
                    spill_len: 0,
                },
            );
        }
        let Some(slot) = self.open.get_mut(key) else {
            return Ok(());
        };
        if slot.part == 0 {
            return match slot.out.as_mut() {
                Some(out) => out.write(bytes).await,
                None => Ok(()),
            };
        }
        slot.mem_len += bytes.len();
        self.held += bytes.len();
        slot.mem.push_back(bytes);
        self.peak = self.peak.max(self.held);
        while slot.pending() >= slot.part {
            let (chunk, from_mem) = slot.take(slot.part).await?;
            self.held -= from_mem;
            if let Some(out) = slot.out.as_mut() {
                out.write(chunk).await?;
            }
        }
        while self.held > self.budget {
            let Some(largest) = self
                .open
                .values_mut()
                .filter(|s| s.mem_len > 0)
                .max_by_key(|s| s.mem_len)
            else {
                break;
            };
            let n = largest.spill_out().await?;
            self.held -= n;
            self.spilled += n as u64;
        }
        Ok(())
    }

    /// Send what the output has left and make it visible. An output never
    /// written to, or one being discarded, is a no-op.
    pub async fn complete(&mut self, key: &str) -> Result<()> {
        let Some(mut slot) = self.open.remove(key) else {
            return Ok(());
        };
        self.held -= slot.mem_len;
        let Some(mut out) = slot.out.take() else {
            return Ok(());
        };
        let rest = slot.pending();
        if rest > 0 {
            let sent = match slot.take(rest).await {
                Ok((chunk, _)) => out.write(chunk).await,
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                let _ = out.abort().await;
                return Err(e);
            }
        }
        out.complete().await?;
        Ok(())
    }

    /// Discard every output still open.
    pub async fn abort_all(&mut self) {
        for (_, slot) in std::mem::take(&mut self.open) {
            if let Some(out) = slot.out {
                let _ = out.abort().await;
            }
        }
        self.held = 0;
    }

    /// Bytes held in memory now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The most bytes held in memory at once (before spilling).
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Bytes moved to the ephemeral disk in all.
    pub fn spilled(&self) -> u64 {
        self.spilled
    }
}
