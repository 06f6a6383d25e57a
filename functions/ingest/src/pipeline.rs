//! The synchronous heart of ingest: detect compression, parse CSV or JSON
//! Lines, validate every row against the contract, and encode good rows as
//! partitioned zstd Parquet and bad rows as quarantine JSON lines. Encoded
//! bytes leave through a bounded channel, so memory does not grow with input.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sluice::config::ParquetCompression;
use sluice::contract::{Contract, Field, FieldType, Granularity, ValueRef};
use sluice::{Error, ErrorKind};
use tokio::sync::mpsc::Sender;

use crate::columns::Column;
use crate::json_row::{Bad, JsonRow};

mod parquet_input;
use crate::records::{cap_raw, CsvRecords, Lines, MAX_HELD_FIELDS, RAW_CAP};

/// Rows per Arrow batch.
const BATCH_ROWS: usize = 16 * 1024;
/// Rows per Parquet row group (smaller groups are cut by the memory budget).
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Quarantine bytes buffered before they are sent on.
const QUARANTINE_CHUNK: usize = 1024 * 1024;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet, read by column name.
    Parquet,
}

impl Format {
    /// The format of a key, and whether it claims to be gzip.
    pub fn of_key(key: &str) -> Option<(Format, bool)> {
        let lower = key.to_ascii_lowercase();
        let (stem, gz) = match lower.strip_suffix(".gz") {
            Some(s) => (s.to_string(), true),
            None => (lower, false),
        };
        let f = if stem.ends_with(".csv") {
            Format::Csv
        } else if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") || stem.ends_with(".json") {
            Format::Jsonl
        } else if stem.ends_with(".parquet") {
            Format::Parquet
        } else {
            return None;
        };
        Some((f, gz))
    }
}

/// What the pipeline sends to the uploader.
#[derive(Debug)]
pub enum Msg {
    /// Parquet bytes for a partition's output key (`last` closes it).
    Data {
        /// Output key relative to the output prefix.
        key: String,
        /// Bytes to append.
        bytes: Bytes,
        /// Whether the output is complete.
        last: bool,
    },
    /// Quarantine JSON lines (appended to the one quarantine output).
    Quarantine(Bytes),
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Data rows read.
    pub rows_in: u64,
    /// Rows written to Parquet.
    pub rows_out: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Bytes after decompression.
    pub decompressed_bytes: u64,
    /// Parquet bytes produced.
    pub bytes_out: u64,
    /// Validated rows spilled to the ephemeral disk while they waited.
    pub spilled_rows: u64,
}

/// Everything the pipeline needs, fixed before it starts.
pub struct Pipeline {
    /// The dataset's contract.
    pub contract: Arc<Contract>,
    /// `s3://bucket/key` of the input, for `_source` and messages.
    pub source_uri: String,
    /// Seed for record ids of datasets without a natural key (source identity).
    pub record_seed: String,
    /// Input format.
    pub format: Format,
    /// Whether the key ends in `.gz`.
    pub named_gz: bool,
    /// Compressed object size, for the decompression-bomb check.
    pub object_size: u64,
    /// Largest decompressed:compressed ratio.
    pub max_ratio: u64,
    /// Largest record (CSV record or JSON line) read whole, in bytes.
    pub max_record_bytes: usize,
    /// File name of every output (`<object id>.parquet`).
    pub file_name: String,
    /// Parquet compression (zstd level 1 unless the simulation asks for none).
    pub compression: ParquetCompression,
    /// Threads to use: more than one encodes Parquet on a thread of its
    /// own while rows are parsed (the output bytes are the same).
    pub threads: usize,
    /// Arrow bytes of validated rows waiting, across all partitions, to be
    /// encoded as a row group; past it, the partition holding the most is
    /// encoded (a smaller row group, not more memory).
    ///
    /// Rows wait as Arrow batches and are encoded one whole row group at a
    /// time, so only one partition has open column writers at any moment.
    /// Keeping a row group open per partition instead costs a zstd context
    /// per column per partition (65 MB for a month of days) and grows with
    /// the partition count.
    pub pending_budget: usize,
}

fn input_error(uri: &str, reason: impl Into<String>) -> Error {
    Error::invalid_input(uri, reason)
}

/// An I/O error while reading: a storage error carried through the bridge
/// keeps its kind (a dropped connection is transient); anything else means
/// the bytes themselves are bad.
fn read_error(uri: &str, what: &str, e: &io::Error) -> Error {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return Error::other(inner.kind(), format!("{uri}: {inner}"), None);
    }
    input_error(uri, format!("{what}: {e}"))
}

/// Counts bytes read and stops a decompression bomb.
struct Guard<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                BombError(self.limit),
            ));
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct BombError(u64);

impl std::fmt::Display for BombError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "decompression bomb: more than {} bytes after decompression",
            self.0
        )
    }
}

impl std::error::Error for BombError {}

struct PartitionWriter {
    key: String,
    writer: ArrowWriter<Vec<u8>>,
}

/// Rows of one partition waiting to become a row group: in memory, and
/// (past the pending budget, for a partition with too few rows for a row
/// group of its own yet) spilled to the ephemeral disk as an Arrow IPC
/// stream, read back batch by batch when the row group is encoded.
#[derive(Default)]
struct Pending {
    batches: Vec<RecordBatch>,
    /// Every pending row, spilled ones included.
    rows: usize,
    /// Arrow bytes in memory.
    bytes: usize,
    spill: Option<StreamWriter<io::BufWriter<std::fs::File>>>,
}

/// A partition's spilled rows, finished and rewound: an Arrow IPC stream.
struct Spilled(std::fs::File);

impl Spilled {
    fn finish(mut w: StreamWriter<io::BufWriter<std::fs::File>>, uri: &str) -> Result<Self, Error> {
        w.finish().map_err(|e| spill_error(uri, e))?;
        let mut file = w
            .into_inner()
            .map_err(|e| spill_error(uri, e))?
            .into_inner()
            .map_err(|e| spill_error(uri, e.into_error()))?;
        file.seek(io::SeekFrom::Start(0))
            .map_err(|e| spill_error(uri, e))?;
        Ok(Spilled(file))
    }
}

/// The ephemeral disk full or failing is not the input's fault: retried.
fn spill_error(uri: &str, e: impl std::fmt::Display) -> Error {
    Error::other(
        ErrorKind::Transient,
        format!("{uri}: spilling rows to the ephemeral disk: {e}"),
        None,
    )
}

/// Accumulates validated rows and writes them out, partitioned.
struct Sink<'a> {
    p: &'a Pipeline,
    tx: Sender<Msg>,
    /// The schema of pending rows: the output schema less `_source`, which
    /// is the same on every row and added when a row group is encoded.
    pending_schema: SchemaRef,
    /// Where batches are partitioned, wait and are encoded: here, or on a
    /// thread of their own.
    batching: Batching,
    columns: Vec<Column>,
    record_ids: Column,
    lines: Column,
    row_partition: Vec<u32>,
    partition_keys: Vec<String>,
    /// How many of `partition_keys` the batcher has been sent.
    keys_sent: usize,
    partition_index: BTreeMap<i64, u32>,
    /// The day and partition of the last row (rows come in runs of a day).
    last_partition: Option<(i64, u32)>,
    quarantine: Vec<u8>,
    /// The bytes a record id is hashed from (reused row to row).
    key_buf: Vec<u8>,
    stats: Stats,
}

impl<'a> Sink<'a> {
    fn new(p: &'a Pipeline, tx: Sender<Msg>) -> Result<Self, Error> {
        let c = &p.contract;
        let mut fields: Vec<ArrowField> = c
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(ArrowField::new(
            "_record_id",
            DataType::FixedSizeBinary(16),
            false,
        ));
        fields.push(ArrowField::new("_line", DataType::Int64, false));
        let pending_schema = Arc::new(Schema::new(fields.clone()));
        fields.insert(
            fields.len() - 1,
            ArrowField::new("_source", DataType::Utf8, false),
        );
        let compression = match p.compression {
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::try_new(1).map_err(|e| {
                Error::other(ErrorKind::Internal, format!("zstd level: {e}"), None)
            })?),
            ParquetCompression::Uncompressed => Compression::UNCOMPRESSED,
        };
        // Dictionary encoding pays off for low-cardinality columns only; for
        // timestamps, floats, record ids and line numbers it costs CPU and
        // memory and then falls back to plain anyway.
        let mut props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Chunk);
        // Interning every value costs more CPU than the whole CSV parse, so
        // only strings and enumerated columns (an `allowed` list) get a
        // dictionary; zstd compresses the other plain columns well.
        for f in &c.fields {
            if f.ty != FieldType::String && f.allowed.is_none() {
                props =
                    props.set_column_dictionary_enabled(ColumnPath::from(f.name.as_str()), false);
            }
        }
        for name in ["_record_id", "_line"] {
            props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
        }
        // Record ids are hashes: zstd finds nothing to take out of them.
        let props = props
            .set_column_encoding(ColumnPath::from("_line"), Encoding::DELTA_BINARY_PACKED)
            .set_column_compression(ColumnPath::from("_record_id"), Compression::UNCOMPRESSED)
            .build();
        let encoder = Encoder {
            source_uri: p.source_uri.clone(),
            schema: Arc::new(Schema::new(fields)),
            props,
            writers: BTreeMap::new(),
            sources: StringArray::from(Vec::<&str>::new()),
            tx: tx.clone(),
            held: None,
            bytes_out: 0,
            rows_out: 0,
        };
        let batcher = Batcher {
            source_uri: p.source_uri.clone(),
            pending_schema: pending_schema.clone(),
            pending_budget: p.pending_budget,
            partition_keys: Vec::new(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            spilled_rows: 0,
            encoder,
        };
        Ok(Sink {
            p,
            tx,
            pending_schema,
            batching: Batching::start(batcher, p.threads > 1)?,
            columns: c
                .fields
                .iter()
                .map(|f| Column::for_field(f, BATCH_ROWS))
                .collect(),
            record_ids: Column::id(BATCH_ROWS),
            lines: Column::int(BATCH_ROWS),
            row_partition: Vec::with_capacity(BATCH_ROWS),
            partition_keys: Vec::new(),
            keys_sent: 0,
            partition_index: BTreeMap::new(),
            last_partition: None,
            quarantine: Vec::new(),
            key_buf: Vec::new(),
            stats: Stats::default(),
        })
    }

    fn send(&self, msg: Msg) -> Result<(), Error> {
        self.tx.blocking_send(msg).map_err(|_| {
            Error::other(
                ErrorKind::Internal,
                format!("{}: uploader stopped", self.p.source_uri),
                None,
            )
        })
    }

    /// The partition of the row just validated (the last in the columns).
    fn partition_of(&mut self) -> u32 {
        let c = &self.p.contract;
        let Some(part) = &c.partition else { return 0 };
        let days = match self.columns[part.field].last() {
            ValueRef::Timestamp(us) => us.div_euclid(86_400_000_000),
            ValueRef::Date(d) => i64::from(d),
            _ => 0,
        };
        // Rows come in runs of the same day: look up by day number and
        // format a label only when a partition is first seen.
        if let Some((d, i)) = self.last_partition {
            if d == days {
                return i;
            }
        }
        if let Some(&i) = self.partition_index.get(&days) {
            self.last_partition = Some((days, i));
            return i;
        }
        let date = chrono::DateTime::from_timestamp(days * 86_400, 0).map(|t| t.date_naive());
        let label = match (part.granularity, date) {
            (Granularity::Day, Some(d)) => d.format("dt=%Y-%m-%d").to_string(),
            (Granularity::Month, Some(d)) => d.format("dt=%Y-%m").to_string(),
            (_, None) => "dt=unknown".to_string(),
        };
        let key = format!("{}/v{}/{label}/{}", c.name, c.major(), self.p.file_name);
        // Days of one month share a partition: reuse its index.
        let i = match self.partition_keys.iter().position(|k| *k == key) {
            Some(i) => i as u32,
            None => {
                self.partition_keys.push(key);
                (self.partition_keys.len() - 1) as u32
            }
        };
        self.partition_index.insert(days, i);
        self.last_partition = Some((days, i));
        i
    }

    /// The rows validated so far in this batch.
    fn batch_rows(&self) -> usize {
        self.row_partition.len()
    }

    /// Keep the row just validated into the columns (see
    /// [`Pipeline::validate_into`]), with its record id and line.
    fn accept(&mut self, line: u64) -> Result<(), Error> {
        let part = self.partition_of();
        let record_id = self.p.record_id(&self.columns, line, &mut self.key_buf);
        self.record_ids.push_id(record_id);
        self.lines.push_int(line as i64);
        self.row_partition.push(part);
        self.stats.rows_out += 1;
        if self.row_partition.len() >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Quarantine a row; `truncated` says `raw` is only the record's start.
    fn reject(
        &mut self,
        line: u64,
        raw: &[u8],
        reasons: &[String],
        truncated: bool,
    ) -> Result<(), Error> {
        self.stats.rows_quarantined += 1;
        let mut entry = serde_json::json!({
            "line": line,
            "source": self.p.source_uri,
            "reasons": reasons,
            "raw": String::from_utf8_lossy(raw),
        });
        if truncated {
            entry["raw_truncated"] = serde_json::Value::Bool(true);
        }
        serde_json::to_writer(&mut self.quarantine, &entry).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "quarantine encoding",
                Some(Box::new(e)),
            )
        })?;
        self.quarantine.push(b'\n');
        if self.quarantine.len() >= QUARANTINE_CHUNK {
            let bytes = Bytes::from(std::mem::take(&mut self.quarantine));
            self.send(Msg::Quarantine(bytes))?;
        }
        Ok(())
    }

    fn parquet_error(&self, e: impl std::fmt::Display) -> Error {
        parquet_error(&self.p.source_uri, e)
    }

    /// Turn the buffered rows into an Arrow batch and hand it, with each
    /// row's partition, to the batcher.
    fn flush_batch(&mut self) -> Result<(), Error> {
        let n = self.row_partition.len();
        if n == 0 {
            return Ok(());
        }
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::take_array).collect();
        arrays.push(self.record_ids.take_array());
        arrays.push(self.lines.take_array());
        let batch = RecordBatch::try_new(self.pending_schema.clone(), arrays)
            .map_err(|e| self.parquet_error(e))?;
        let parts = std::mem::replace(&mut self.row_partition, Vec::with_capacity(BATCH_ROWS));
        let new_keys = self.partition_keys[self.keys_sent..].to_vec();
        self.keys_sent = self.partition_keys.len();
        self.batching.batch(Batch {
            rows: Rows::Whole { batch, parts },
            new_keys,
        })
    }

    fn finish(mut self) -> Result<Stats, Error> {
        self.flush_batch()?;
        let encoded = self.batching.finish()?;
        self.stats.bytes_out = encoded.bytes;
        self.stats.spilled_rows = encoded.spilled_rows;
        // The counts are kept as rows are validated; this is what reached the
        // Parquet writers. A difference is a bug on the way (the spill, the
        // queues): fail the file rather than commit it short.
        if encoded.rows != self.stats.rows_out {
            return Err(internal(
                &self.p.source_uri,
                &format!(
                    "{} rows were validated but {} were encoded",
                    self.stats.rows_out, encoded.rows
                ),
            ));
        }
        if !self.quarantine.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut self.quarantine));
            self.send(Msg::Quarantine(bytes))?;
        }
        Ok(self.stats)
    }
}

/// A batch of validated rows, with the partition keys first named since
/// the last batch.
struct Batch {
    rows: Rows,
    new_keys: Vec<String>,
}

/// The rows of a batch: as parsed, with each row's partition, or already
/// split by partition (see [`Batching::batch`] for where and why).
enum Rows {
    Whole { batch: RecordBatch, parts: Vec<u32> },
    Split(Vec<(u32, RecordBatch)>),
}

impl Rows {
    /// The rows split by partition, in order of partition.
    fn split(
        self,
        schema: &SchemaRef,
    ) -> Result<Vec<(u32, RecordBatch)>, arrow::error::ArrowError> {
        match self {
            Rows::Whole { batch, parts } => split_by_partition(schema, batch, &parts),
            Rows::Split(pieces) => Ok(pieces),
        }
    }
}

/// Split a batch into one batch per partition (`parts` gives each row's),
/// in order of partition, keeping the rows' order within each.
fn split_by_partition(
    schema: &SchemaRef,
    batch: RecordBatch,
    parts: &[u32],
) -> Result<Vec<(u32, RecordBatch)>, arrow::error::ArrowError> {
    let Some(&first) = parts.first() else {
        return Ok(Vec::new());
    };
    if parts.iter().all(|p| *p == first) {
        return Ok(vec![(first, batch)]);
    }
    let mut by_part: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (row, p) in parts.iter().enumerate() {
        by_part.entry(*p).or_default().push(row as u32);
    }
    by_part
        .into_iter()
        .map(|(p, rows)| {
            let idx = UInt32Array::from(rows);
            let cols = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((p, RecordBatch::try_new(schema.clone(), cols)?))
        })
        .collect()
}

/// Splits batches by partition (unless that was done already), keeps each
/// partition's rows waiting (in memory within the pending budget, else
/// spilled) and hands a partition's rows to the encoder as a row group when
/// it has a row group's worth, or when the budget says so.
struct Batcher {
    source_uri: String,
    pending_schema: SchemaRef,
    pending_budget: usize,
    partition_keys: Vec<String>,
    pending: BTreeMap<u32, Pending>,
    pending_bytes: usize,
    spilled_rows: u64,
    encoder: Encoder,
}

impl Batcher {
    /// Queue each partition's rows of a batch; encode whatever is due.
    fn batch(&mut self, b: Batch) -> Result<(), Error> {
        let Batch { rows, new_keys } = b;
        self.partition_keys.extend(new_keys);
        let pieces = rows
            .split(&self.pending_schema)
            .map_err(|e| parquet_error(&self.source_uri, e))?;
        for (p, rows) in pieces {
            self.queue(p, rows)?;
        }
        // Over budget: the partition holding the most bytes is encoded if it
        // has a batch's worth of rows (a smaller row group, not more
        // memory); else its rows are spilled, so that many partitions do not
        // make many tiny row groups (each costs metadata held until the file
        // is closed, and compresses worse).
        while self.pending_bytes > self.pending_budget {
            let Some((&part, p)) = self
                .pending
                .iter()
                .filter(|(_, p)| p.bytes > 0)
                .max_by_key(|(_, p)| p.bytes)
            else {
                break;
            };
            if p.rows >= BATCH_ROWS {
                self.encode(part)?;
            } else {
                self.spill(part)?;
            }
        }
        Ok(())
    }

    /// Move a partition's rows in memory to its spill file, as one batch.
    fn spill(&mut self, part: u32) -> Result<(), Error> {
        let uri = &self.source_uri;
        let Some(p) = self.pending.get_mut(&part) else {
            return Ok(());
        };
        let batches = std::mem::take(&mut p.batches);
        self.pending_bytes -= p.bytes;
        p.bytes = 0;
        let one = arrow::compute::concat_batches(&self.pending_schema, &batches)
            .map_err(|e| internal(uri, &format!("joining rows to spill: {e}")))?;
        drop(batches);
        if p.spill.is_none() {
            let file = tempfile::tempfile().map_err(|e| spill_error(uri, e))?;
            let w = StreamWriter::try_new(io::BufWriter::new(file), &self.pending_schema)
                .map_err(|e| spill_error(uri, e))?;
            p.spill = Some(w);
        }
        if let Some(w) = p.spill.as_mut() {
            w.write(&one).map_err(|e| spill_error(uri, e))?;
        }
        self.spilled_rows += one.num_rows() as u64;
        Ok(())
    }

    /// Queue a partition's rows; a full row group is encoded at once.
    fn queue(&mut self, part: u32, batch: RecordBatch) -> Result<(), Error> {
        let bytes = batch.get_array_memory_size();
        let p = self.pending.entry(part).or_default();
        p.rows += batch.num_rows();
        p.bytes += bytes;
        p.batches.push(batch);
        self.pending_bytes += bytes;
        if p.rows >= ROW_GROUP_ROWS {
            self.encode(part)?;
        }
        Ok(())
    }

    /// Hand a partition's pending rows over to be encoded as one row group.
    fn encode(&mut self, part: u32) -> Result<(), Error> {
        match self.take_group(part)? {
            Some(group) => self.encoder.row_group(group),
            None => Ok(()),
        }
    }

    /// A partition's pending rows, as one row group to encode.
    fn take_group(&mut self, part: u32) -> Result<Option<RowGroup>, Error> {
        let Some(pending) = self.pending.remove(&part) else {
            return Ok(None);
        };
        self.pending_bytes -= pending.bytes;
        if pending.rows == 0 {
            return Ok(None);
        }
        let Some(key) = self.partition_keys.get(part as usize).cloned() else {
            return Err(internal(&self.source_uri, "a partition without a key"));
        };
        let spilled = match pending.spill {
            Some(w) => Some(Spilled::finish(w, &self.source_uri)?),
            None => None,
        };
        Ok(Some(RowGroup {
            part,
            key,
            spilled,
            batches: pending.batches,
        }))
    }

    /// Encode every partition's waiting rows and close the files. On a
    /// thread of its own, the batcher shares those partitions with the
    /// parsing thread (`help`), which by now has nothing left to do.
    fn finish(mut self, help: Option<SyncSender<Help>>) -> Result<Encoded, Error> {
        let pending: Vec<u32> = self.pending.keys().copied().collect();
        let mut groups = Vec::with_capacity(pending.len());
        for part in pending {
            groups.extend(self.take_group(part)?);
        }
        let mut encoded = match help {
            Some(help) if groups.len() > 1 => self.encoder.finish_on_two(groups, help)?,
            _ => {
                for group in groups {
                    self.encoder.row_group(group)?;
                }
                self.encoder.finish()?
            }
        };
        encoded.spilled_rows = self.spilled_rows;
        Ok(encoded)
    }
}

/// Work for the batching thread. Files are closed only on `Finish`: when
/// the parse side stops without it (an error, a panic), the thread drops
/// its writers and sends nothing more, so no output is ever completed from
/// part of an input.
enum Job {
    Batch(Batch),
    /// The end of the rows, with where to send work for the parsing thread.
    Finish(SyncSender<Help>),
}

/// Work handed to the parsing thread once it has parsed everything.
type Help = Box<dyn FnOnce() + Send>;

/// What the parsing thread hands back while it encodes row groups for the
/// batching thread: each row group's messages in turn, then how it ended
/// (bytes and rows written, and the files' tails).
enum Handback {
    Group(Vec<(u32, Msg)>),
    Done(Result<Helped, Error>),
}

/// What the parsing thread encoded at the end.
struct Helped {
    bytes: u64,
    rows: u64,
    tails: Vec<(u32, Msg)>,
}

/// The rows of one row group of one partition.
struct RowGroup {
    part: u32,
    key: String,
    /// Rows spilled to disk, which come first.
    spilled: Option<Spilled>,
    batches: Vec<RecordBatch>,
}

/// Encodes row groups into each partition's Parquet file and sends the
/// bytes on as they come.
struct Encoder {
    source_uri: String,
    /// The output schema.
    schema: SchemaRef,
    props: WriterProperties,
    writers: BTreeMap<u32, PartitionWriter>,
    /// `_source` repeated, sliced for each batch.
    sources: StringArray,
    tx: Sender<Msg>,
    /// Where the messages go instead of `tx`, with their partition, while
    /// two encoders share the last row groups (see [`Encoder::finish_on_two`]).
    held: Option<Vec<(u32, Msg)>>,
    bytes_out: u64,
    /// Rows written to the Parquet writers.
    rows_out: u64,
}

/// What the encoder wrote in all.
#[derive(Debug, Clone, Copy)]
struct Encoded {
    bytes: u64,
    rows: u64,
    /// Rows spilled to the ephemeral disk on the way (set by the batcher).
    spilled_rows: u64,
}

fn parquet_error(uri: &str, e: impl std::fmt::Display) -> Error {
    Error::other(
        ErrorKind::Internal,
        format!("{uri}: writing Parquet: {e}"),
        None,
    )
}

impl Encoder {
    fn send(&mut self, part: u32, msg: Msg) -> Result<(), Error> {
        if let Some(held) = self.held.as_mut() {
            held.push((part, msg));
            return Ok(());
        }
        self.tx.blocking_send(msg).map_err(|_| {
            Error::other(
                ErrorKind::Internal,
                format!("{}: uploader stopped", self.source_uri),
                None,
            )
        })
    }

    /// Encode one row group and send the bytes.
    fn row_group(&mut self, group: RowGroup) -> Result<(), Error> {
        let RowGroup {
            part,
            key,
            spilled,
            batches,
        } = group;
        if batches.is_empty() && spilled.is_none() {
            return Ok(());
        }
        let uri = self.source_uri.clone();
        let reread = match spilled {
            Some(Spilled(file)) => Some(
                StreamReader::try_new(BufReader::new(file), None)
                    .map_err(|e| spill_error(&uri, e))?,
            ),
            None => None,
        };
        let batches = reread
            .into_iter()
            .flatten()
            .map(|b| b.map_err(|e| spill_error(&uri, e)))
            .chain(batches.into_iter().map(Ok));
        if !self.writers.contains_key(&part) {
            let writer =
                ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(self.props.clone()))
                    .map_err(|e| parquet_error(&self.source_uri, e))?;
            self.writers.insert(part, PartitionWriter { key, writer });
        }
        // The batches are written one after another into one row group (no
        // copy into one batch first), with `_source` added as a slice of one
        // column of repeats. The row group is then closed at once: its
        // column writers (and their zstd contexts) live only for this call.
        for rows in batches {
            let rows = rows?;
            let n = rows.num_rows();
            self.rows_out += n as u64;
            if self.sources.len() < n {
                self.sources = StringArray::from_iter_values(std::iter::repeat_n(
                    self.source_uri.as_str(),
                    n.max(BATCH_ROWS),
                ));
            }
            let mut arrays = rows.columns().to_vec();
            arrays.insert(arrays.len() - 1, Arc::new(self.sources.slice(0, n)));
            let batch = RecordBatch::try_new(self.schema.clone(), arrays)
                .map_err(|e| parquet_error(&self.source_uri, e))?;
            let Some(pw) = self.writers.get_mut(&part) else {
                return Err(internal(&self.source_uri, "partition writer vanished"));
            };
            pw.writer
                .write(&batch)
                .map_err(|e| parquet_error(&self.source_uri, e))?;
        }
        let Some(pw) = self.writers.get_mut(&part) else {
            return Err(internal(&self.source_uri, "partition writer vanished"));
        };
        pw.writer
            .flush()
            .map_err(|e| parquet_error(&self.source_uri, e))?;
        let mut buf = std::mem::take(pw.writer.inner_mut());
        if buf.is_empty() {
            return Ok(());
        }
        // The buffer grew by doubling: what waits to be sent is counted by
        // its length, so do not keep up to as much again behind it.
        if buf.capacity() - buf.len() > 64 * 1024 {
            buf.shrink_to_fit();
        }
        self.bytes_out += buf.len() as u64;
        let key = pw.key.clone();
        self.send(
            part,
            Msg::Data {
                key,
                bytes: Bytes::from(buf),
                last: false,
            },
        )
    }

    /// Close every partition's file (each file's tail goes out last).
    fn close(&mut self) -> Result<(), Error> {
        for (part, pw) in std::mem::take(&mut self.writers) {
            let tail = pw
                .writer
                .into_inner()
                .map_err(|e| parquet_error(&self.source_uri, format!("closing: {e}")))?;
            self.bytes_out += tail.len() as u64;
            self.send(
                part,
                Msg::Data {
                    key: pw.key,
                    bytes: Bytes::from(tail),
                    last: true,
                },
            )?;
        }
        Ok(())
    }

    /// Close every partition's file; the Parquet bytes and rows written in all.
    fn finish(mut self) -> Result<Encoded, Error> {
        self.close()?;
        Ok(Encoded {
            bytes: self.bytes_out,
            rows: self.rows_out,
            spilled_rows: 0,
        })
    }

    /// An encoder for other partitions of the same output (none yet).
    fn sibling(&self) -> Encoder {
        Encoder {
            source_uri: self.source_uri.clone(),
            schema: self.schema.clone(),
            props: self.props.clone(),
            writers: BTreeMap::new(),
            sources: self.sources.clone(),
            tx: self.tx.clone(),
            held: None,
            bytes_out: 0,
            rows_out: 0,
        }
    }

    /// Run `f` with the messages it sends held, and return them.
    fn holding(
        &mut self,
        f: impl FnOnce(&mut Encoder) -> Result<(), Error>,
    ) -> Result<Vec<(u32, Msg)>, Error> {
        self.held = Some(Vec::new());
        let r = f(self);
        let msgs = self.held.take().unwrap_or_default();
        r.map(|()| msgs)
    }

    /// Encode the last row groups (in order of partition) on this thread
    /// and on the parsing thread (through `help`), alternately, and close
    /// the files. Each file gets the same row groups as on one thread, so
    /// the same bytes, and the messages go out in the order one thread
    /// sends them (the row groups by partition, then the tails by
    /// partition), so the outputs are completed in the same order too: the
    /// parsing thread hands each row group's bytes back through a queue of
    /// two, and this thread sends them in their turn. Only the tails (the
    /// footers) wait until the end. The parsing thread is used rather than
    /// a new one because its allocator arena is warm: a third thread's
    /// arena cost about 15 MB of peak RSS.
    fn finish_on_two(
        mut self,
        groups: Vec<RowGroup>,
        help: SyncSender<Help>,
    ) -> Result<Encoded, Error> {
        let uri = self.source_uri.clone();
        let mut other = self.sibling();
        let theirs: Vec<bool> = (0..groups.len()).map(|i| i % 2 == 1).collect();
        let mut their_groups = Vec::new();
        let mut my_groups = Vec::new();
        for (g, theirs) in groups.into_iter().zip(&theirs) {
            if *theirs {
                if let Some(w) = self.writers.remove(&g.part) {
                    other.writers.insert(g.part, w);
                }
                their_groups.push(g);
            } else {
                my_groups.push(g);
            }
        }
        let (handback, from_other) = std::sync::mpsc::sync_channel::<Handback>(2);
        let helper_uri = uri.clone();
        let work: Help = Box::new(move || {
            let done = (|| {
                for g in their_groups {
                    let msgs = other.holding(|e| e.row_group(g))?;
                    if handback.send(Handback::Group(msgs)).is_err() {
                        return Err(stopped_early(&helper_uri));
                    }
                }
                let tails = other.holding(Encoder::close)?;
                Ok(Helped {
                    bytes: other.bytes_out,
                    rows: other.rows_out,
                    tails,
                })
            })();
            let _ = handback.send(Handback::Done(done));
        });
        if help.send(work).is_err() {
            return Err(internal(&uri, "the parsing thread stopped before the end"));
        }
        drop(help);
        let mut my_groups = my_groups.into_iter();
        for theirs in &theirs {
            if !*theirs {
                match my_groups.next() {
                    Some(g) => self.row_group(g)?,
                    None => return Err(internal(&uri, "a row group went missing")),
                }
                continue;
            }
            match from_other.recv() {
                Ok(Handback::Group(msgs)) => {
                    for (part, msg) in msgs {
                        self.send(part, msg)?;
                    }
                }
                Ok(Handback::Done(Err(e))) => return Err(e),
                Ok(Handback::Done(Ok(_))) | Err(_) => return Err(stopped_early(&uri)),
            }
        }
        let mut tails = self.holding(Encoder::close)?;
        let (bytes, rows) = match from_other.recv() {
            Ok(Handback::Done(Ok(helped))) => {
                tails.extend(helped.tails);
                (helped.bytes, helped.rows)
            }
            Ok(Handback::Done(Err(e))) => return Err(e),
            Ok(Handback::Group(_)) | Err(_) => return Err(stopped_early(&uri)),
        };
        tails.sort_by_key(|(part, _)| *part);
        for (part, msg) in tails {
            self.send(part, msg)?;
        }
        Ok(Encoded {
            bytes: self.bytes_out + bytes,
            rows: self.rows_out + rows,
            spilled_rows: 0,
        })
    }
}

/// Batches partitioned and encoded where the rows are parsed (one core),
/// or on a thread of their own, so that parsing and validation go on while
/// zstd and the Parquet encoders work (more than one core); the partition
/// split is done on whichever thread is less busy, and the last row groups
/// are encoded on both. The batcher gets the same rows in the same order
/// either way, so it makes the same row groups and the bytes are the same.
enum Batching {
    Inline(Box<Batcher>),
    Thread {
        jobs: std::sync::mpsc::SyncSender<Job>,
        /// The schema of the pending rows (to split batches here).
        schema: SchemaRef,
        done: std::thread::JoinHandle<Result<Encoded, Error>>,
        uri: String,
    },
    Finished,
}

impl Batching {
    fn start(batcher: Batcher, threaded: bool) -> Result<Self, Error> {
        if !threaded {
            return Ok(Batching::Inline(Box::new(batcher)));
        }
        // One batch queued while one is split and encoded: at most two
        // batches beyond the pending budget.
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1);
        let uri = batcher.source_uri.clone();
        let schema = batcher.pending_schema.clone();
        let thread_uri = uri.clone();
        let spawned = std::thread::Builder::new()
            .name("ingest-encode".into())
            .spawn(move || {
                let mut batcher = batcher;
                for job in queue {
                    match job {
                        Job::Batch(b) => batcher.batch(b)?,
                        Job::Finish(help) => return batcher.finish(Some(help)),
                    }
                }
                Err(internal(
                    &thread_uri,
                    "the rows stopped before the end of the input",
                ))
            });
        match spawned {
            Ok(done) => Ok(Batching::Thread {
                jobs,
                schema,
                done,
                uri,
            }),
            Err(e) => Err(Error::other(
                ErrorKind::Transient,
                format!("{uri}: starting the Parquet encoder thread: {e}"),
                None,
            )),
        }
    }

    fn batch(&mut self, b: Batch) -> Result<(), Error> {
        match self {
            Batching::Inline(batcher) => batcher.batch(b),
            // The batching thread splits a batch by partition when it keeps
            // up (the queue has room); when it is behind, this thread splits
            // the batch before it waits. Where the split is done changes
            // nothing in the output.
            Batching::Thread {
                jobs, schema, uri, ..
            } => {
                let b = match jobs.try_send(Job::Batch(b)) {
                    Ok(()) => return Ok(()),
                    Err(TrySendError::Full(Job::Batch(b))) => b,
                    Err(TrySendError::Full(_)) => {
                        return Err(internal(uri, "a batch went missing"))
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(self.stopped()),
                };
                let pieces = b.rows.split(schema).map_err(|e| parquet_error(uri, e))?;
                let split = Batch {
                    rows: Rows::Split(pieces),
                    new_keys: b.new_keys,
                };
                if jobs.send(Job::Batch(split)).is_err() {
                    return Err(self.stopped());
                }
                Ok(())
            }
            Batching::Finished => Err(internal("", "the Parquet encoder is not running")),
        }
    }

    /// The batching thread's error, once it has stopped early.
    fn stopped(&mut self) -> Error {
        match std::mem::replace(self, Batching::Finished) {
            Batching::Thread { done, uri, .. } => match join(done, &uri) {
                Err(e) => e,
                Ok(_) => internal(&uri, "the Parquet encoder stopped early"),
            },
            _ => internal("", "the Parquet encoder stopped early"),
        }
    }

    fn finish(&mut self) -> Result<Encoded, Error> {
        match std::mem::replace(self, Batching::Finished) {
            Batching::Inline(batcher) => batcher.finish(None),
            Batching::Thread {
                jobs, done, uri, ..
            } => {
                // A failed send means the thread has stopped: join says why.
                let (help, work) = std::sync::mpsc::sync_channel::<Help>(1);
                let _ = jobs.send(Job::Finish(help));
                drop(jobs);
                // Encode what the batching thread hands over until it is done.
                for w in work {
                    w();
                }
                join(done, &uri)
            }
            Batching::Finished => Err(internal("", "the Parquet encoder is not running")),
        }
    }
}

fn stopped_early(uri: &str) -> Error {
    internal(uri, "the parsing thread stopped encoding early")
}

fn internal(uri: &str, what: &str) -> Error {
    let what = if uri.is_empty() {
        what.to_string()
    } else {
        format!("{uri}: {what}")
    };
    Error::other(ErrorKind::Internal, what, None)
}

fn join(
    done: std::thread::JoinHandle<Result<Encoded, Error>>,
    uri: &str,
) -> Result<Encoded, Error> {
    done.join().unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(internal(
            uri,
            &format!("the Parquet encoder panicked: {why}"),
        ))
    })
}

impl Pipeline {
    /// Run over the raw object bytes, sending output through `tx`.
    pub fn run<R: Read + 'static>(&self, input: R, tx: Sender<Msg>) -> Result<Stats, Error> {
        let uri = &self.source_uri;
        let mut buffered = BufReader::with_capacity(256 * 1024, input);
        let head = buffered
            .fill_buf()
            .map_err(|e| read_error(uri, "reading", &e))?;
        if head.is_empty() {
            return Err(input_error(uri, "empty file"));
        }
        let is_gzip = head.starts_with(&[0x1f, 0x8b]);
        if self.named_gz && !is_gzip {
            return Err(input_error(
                uri,
                "the name says .gz but the content is not gzip",
            ));
        }
        let limit = self
            .object_size
            .max(1)
            .saturating_mul(self.max_ratio)
            .max(64 * 1024);
        let decoded: Box<dyn BufRead> = if is_gzip {
            let mut gz = BufReader::with_capacity(
                256 * 1024,
                Guard {
                    inner: MultiGzDecoder::new(buffered),
                    read: 0,
                    limit,
                },
            );
            let head = gz.fill_buf().map_err(|e| read_error(uri, "reading", &e))?;
            if head.is_empty() {
                return Err(input_error(
                    uri,
                    "empty after decompression: the gzip stream holds no data",
                ));
            }
            Box::new(gz)
        } else {
            Box::new(buffered)
        };
        if self.format == Format::Parquet && is_gzip {
            return Err(input_error(
                uri,
                "a Parquet file is not gzipped (Parquet compresses its own pages)",
            ));
        }
        let mut sink = Sink::new(self, tx)?;
        let decompressed = match self.format {
            Format::Csv => self.csv(decoded, &mut sink)?,
            Format::Jsonl => self.jsonl(decoded, &mut sink, is_gzip)?,
            Format::Parquet => self.parquet(decoded, &mut sink)?,
        };
        let mut stats = sink.finish()?;
        stats.decompressed_bytes = decompressed;
        Ok(stats)
    }

    /// The record id: a hash of the parsed natural-key values (so `2` and
    /// `2.0`, CSV and JSON, agree), else of the source identity and line.
    /// The hashed bytes are gathered in `buf` (reused: no allocation per
    /// row) and hashed at once, which gives the digest a streaming hash of
    /// the same bytes would.
    fn record_id(&self, row: &[Column], line: u64, buf: &mut Vec<u8>) -> u128 {
        let key = &self.contract.natural_key;
        buf.clear();
        if key.is_empty() {
            buf.extend_from_slice(self.record_seed.as_bytes());
            buf.extend_from_slice(&line.to_le_bytes());
        } else {
            for &i in key {
                match row[i].last() {
                    ValueRef::Null => buf.push(0),
                    ValueRef::Str(s) => {
                        buf.push(1);
                        buf.extend_from_slice(s.as_bytes());
                    }
                    ValueRef::Int(v) | ValueRef::Timestamp(v) => {
                        buf.extend_from_slice(&v.to_le_bytes())
                    }
                    ValueRef::Float(v) => buf.extend_from_slice(&v.to_bits().to_le_bytes()),
                    ValueRef::Bool(v) => buf.push(2 + u8::from(v)),
                    ValueRef::Date(v) => buf.extend_from_slice(&v.to_le_bytes()),
                    ValueRef::Decimal(v) => buf.extend_from_slice(&v.to_le_bytes()),
                }
                buf.push(0x1f);
            }
        }
        xxhash_rust::xxh3::xxh3_128(buf)
    }

    /// Validate one row into the sink's columns: `value` parses, checks and
    /// appends field `i` to its column, or says why it cannot. Then the
    /// contract's rules are checked on the row's values. `Err(reasons)` if
    /// the row is bad, and then it is rolled back out of the columns; on
    /// `Ok` it is the last row of every column, for [`Sink::accept`].
    fn validate_into(
        &self,
        sink: &mut Sink,
        mut value: impl FnMut(usize, &Field, &mut Column) -> Result<(), String>,
    ) -> Result<(), Vec<String>> {
        let n = sink.batch_rows();
        let mut reasons = Vec::new();
        let fields = self.contract.fields.iter();
        for (i, (field, col)) in fields.zip(sink.columns.iter_mut()).enumerate() {
            if let Err(reason) = value(i, field, col) {
                reasons.push(reason);
            }
        }
        if reasons.is_empty() {
            for rule in &self.contract.rules {
                let (l, r) = (
                    sink.columns[rule.left].last(),
                    sink.columns[rule.right].last(),
                );
                if let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) {
                    if !rule.op.holds(a, b) {
                        reasons.push(format!("rule {} failed", rule.name));
                    }
                }
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            for col in &mut sink.columns {
                col.truncate(n);
            }
            Err(reasons)
        }
    }

    /// Each contract field's column among a file's column `names`, after
    /// checking that no column is named twice (ambiguous: which one holds
    /// the data?) and that every required field has one. `whose` names the
    /// names in the error ("the header"), `shown` heads the names listed.
    fn match_columns(
        &self,
        names: &[&str],
        whose: &str,
        shown: &str,
    ) -> Result<Vec<Option<usize>>, Error> {
        let uri = &self.source_uri;
        let mut seen = std::collections::BTreeSet::new();
        let mut twice: Vec<&str> = Vec::new();
        for &h in names.iter().filter(|h| !h.is_empty()) {
            if !seen.insert(h) && !twice.contains(&h) {
                twice.push(h);
            }
        }
        if !twice.is_empty() {
            return Err(input_error(
                uri,
                format!(
                    "{whose} names column(s) {} more than once (ambiguous: which one holds the data?)",
                    twice.join(", ")
                ),
            ));
        }
        let mut missing = Vec::new();
        let cols: Vec<Option<usize>> = self
            .contract
            .fields
            .iter()
            .map(|f| {
                let i = names.iter().position(|h| *h == f.name);
                if i.is_none() && !f.nullable {
                    missing.push(f.name.as_str());
                }
                i
            })
            .collect();
        if !missing.is_empty() {
            let listed: Vec<&str> = names.iter().take(30).copied().collect();
            return Err(input_error(
                uri,
                format!(
                    "missing required column(s) {} ({shown}: {})",
                    missing.join(", "),
                    listed.join(",")
                ),
            ));
        }
        Ok(cols)
    }

    /// The reason a record over `SLUICE_MAX_RECORD_BYTES` is quarantined.
    fn over_limit_reason(&self) -> String {
        format!(
            "record of more than {} bytes exceeds SLUICE_MAX_RECORD_BYTES (raw text cut to its first {RAW_CAP} bytes)",
            self.max_record_bytes
        )
    }

    fn csv(&self, input: Box<dyn BufRead>, sink: &mut Sink) -> Result<u64, Error> {
        let uri = &self.source_uri;
        let limit = self.max_record_bytes;
        let mut rdr = CsvRecords::new(input, limit);
        let io_err = |e: io::Error| read_error(uri, "reading", &e);
        if !rdr.read().map_err(io_err)? {
            return Err(input_error(uri, "empty file (no header line)"));
        }
        if let Some(at) = rdr.unclosed_quote() {
            return Err(input_error(
                uri,
                format!("the header line has an unclosed quote starting at line {at}"),
            ));
        }
        if rdr.over_limit() {
            return Err(input_error(
                uri,
                format!(
                    "the header line is longer than {limit} bytes and exceeds SLUICE_MAX_RECORD_BYTES"
                ),
            ));
        }
        if rdr.is_cut() {
            return Err(input_error(
                uri,
                format!("the header line names more than {MAX_HELD_FIELDS} columns"),
            ));
        }
        let header: Vec<String> = (0..rdr.len())
            .map(|i| {
                let h = rdr.get(i).unwrap_or_default();
                let h = if i == 0 {
                    h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h)
                } else {
                    h
                };
                std::str::from_utf8(h).map(|s| s.trim().to_string())
            })
            .collect::<Result<_, _>>()
            .map_err(|_| input_error(uri, "the header line is not UTF-8 text (not a CSV file?)"))?;
        let width = header.len();
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        let cols = self.match_columns(&names, "the header", "header")?;
        let mut rejected_text = Vec::new();
        while rdr.read().map_err(io_err)? {
            let line = rdr.line();
            let open = rdr.unclosed_quote().is_some();
            if rdr.len() == 1 && rdr.get(0).is_some_and(<[u8]>::is_empty) && !open {
                continue; // a blank line (or `""`) is not a row
            }
            sink.stats.rows_in += 1;
            let mut problems = Vec::new();
            if let Some(at) = rdr.unclosed_quote() {
                problems.push(format!(
                    "unclosed quote starting at line {at}: the field runs to the end of the file"
                ));
            }
            if rdr.over_limit() {
                problems.push(self.over_limit_reason());
            }
            let verdict = if !problems.is_empty() {
                Err(problems)
            } else if rdr.len() != width {
                Err(vec![format!(
                    "expected {width} fields, found {}",
                    rdr.len()
                )])
            } else {
                self.validate_into(sink, |f, field, col| {
                    col.parse_push(field, cols[f].and_then(|i| rdr.get(i)).unwrap_or(b""))
                })
            };
            match verdict {
                Ok(()) => sink.accept(line)?,
                Err(reasons) => {
                    let cut = rdr.is_cut();
                    rejected_text.clear();
                    {
                        let mut w = csv::WriterBuilder::new()
                            .terminator(csv::Terminator::Any(b'\n'))
                            .from_writer(&mut rejected_text);
                        if cut {
                            // Only the start: enough fields for the cap.
                            let mut room = RAW_CAP + 1;
                            let head = rdr.held().map_while(|f| {
                                if room == 0 {
                                    return None;
                                }
                                let f = &f[..f.len().min(room)];
                                room = room.saturating_sub(f.len() + 1);
                                Some(f)
                            });
                            let _ = w.write_record(head);
                        } else {
                            let _ = w.write_record(rdr.held());
                        }
                        let _ = w.flush();
                    }
                    if rejected_text.last() == Some(&b'\n') {
                        rejected_text.pop();
                    }
                    let raw = if cut {
                        cap_raw(&rejected_text, RAW_CAP)
                    } else {
                        &rejected_text
                    };
                    sink.reject(line, raw, &reasons, cut)?;
                }
            }
        }
        Ok(rdr.consumed())
    }

    fn jsonl(&self, input: Box<dyn BufRead>, sink: &mut Sink, gzip: bool) -> Result<u64, Error> {
        let uri = &self.source_uri;
        let mut lines = Lines::new(input, self.max_record_bytes);
        let mut json = JsonRow::new(
            self.contract
                .fields
                .iter()
                .map(|f| f.name.clone())
                .collect(),
        );
        while lines.read().map_err(|e| read_error(uri, "reading", &e))? {
            let line_no = lines.line();
            if lines.over_limit() {
                sink.stats.rows_in += 1;
                let raw = cap_raw(lines.text(), RAW_CAP);
                sink.reject(line_no, raw, &[self.over_limit_reason()], true)?;
                continue;
            }
            let mut text = lines.text();
            if line_no == 1 {
                // A UTF-8 byte order mark (Windows tools write one) is not
                // part of the first object, as it is not of a CSV header.
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            let text = text.trim_ascii();
            if text.is_empty() {
                continue;
            }
            sink.stats.rows_in += 1;
            let verdict = match json.read(text) {
                Err(Bad::Syntax(e)) => Err(vec![format!("not a JSON object: {e}")]),
                Err(Bad::Reasons(reasons)) => Err(reasons),
                Ok(()) => {
                    self.validate_into(sink, |f, field, col| col.parse_push(field, json.text(f)))
                }
            };
            match verdict {
                Ok(()) => sink.accept(line_no)?,
                Err(reasons) => sink.reject(line_no, text, &reasons, false)?,
            }
        }
        if sink.stats.rows_in == 0 {
            // Like an empty file: nothing but blank lines.
            let after = if gzip { " after decompression" } else { "" };
            return Err(input_error(
                uri,
                format!("empty file{after} (only blank lines, no JSON)"),
            ));
        }
        Ok(lines.consumed())
    }
}
