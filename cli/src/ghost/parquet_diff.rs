//! Comparison of one prod Parquet file with its ghost counterpart: schema
//! changes, row counts, per-column statistics of each side, and records
//! matched by record id (only in prod, only in ghost, changed).
//!
//! Both files are read batch by batch in step. Rows whose ids line up are
//! compared at once; a row whose partner has not been seen yet is held
//! (with its batch) until the partner arrives. Output is deterministic, so
//! in practice the ids line up and memory stays at a batch or two per side;
//! in the worst case (every row moved) it is one decoded file, never more.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{make_comparator, Array, ArrayRef, AsArray, DynComparator, UInt32Array};
use arrow::compute::{cast, take, SortOptions};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;
/// Distinct strings are counted exactly up to this many per column.
pub const DISTINCT_CAP: usize = 100_000;

/// What to compare and how much to keep.
#[derive(Debug, Clone)]
pub struct Options {
    /// The record id column (`_record_id`).
    pub record_id: String,
    /// How many differing records to keep as samples.
    pub sample: usize,
    /// Columns left out of the schema and value comparisons.
    pub ignore: Vec<String>,
}

/// One change between the prod and the ghost schema.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SchemaChange {
    /// A column only the ghost has.
    Added {
        /// Column.
        column: String,
        /// Its type.
        ty: String,
    },
    /// A column only prod has.
    Removed {
        /// Column.
        column: String,
        /// Its type.
        ty: String,
    },
    /// Same column, another type.
    TypeChanged {
        /// Column.
        column: String,
        /// Prod's type.
        prod: String,
        /// The ghost's type.
        ghost: String,
    },
    /// Same column and type, nullable on one side only.
    Nullability {
        /// Column.
        column: String,
        /// Whether prod's is nullable.
        prod: bool,
    },
    /// Same columns, another order.
    Reordered {
        /// Prod's order.
        prod: String,
        /// The ghost's order.
        ghost: String,
    },
}

impl std::fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nullable = |n: bool| if n { "nullable" } else { "not null" };
        match self {
            SchemaChange::Added { column, ty } => write!(f, "added column {column} ({ty})"),
            SchemaChange::Removed { column, ty } => write!(f, "removed column {column} ({ty})"),
            SchemaChange::TypeChanged {
                column,
                prod,
                ghost,
            } => write!(f, "column {column}: type {prod} → {ghost}"),
            SchemaChange::Nullability { column, prod } => write!(
                f,
                "column {column}: {} → {}",
                nullable(*prod),
                nullable(!*prod)
            ),
            SchemaChange::Reordered { prod, ghost } => {
                write!(f, "columns reordered: {prod} → {ghost}")
            }
        }
    }
}

/// The changes from `prod` to `ghost`, leaving out the `ignore`d columns.
pub fn schema_changes(prod: &Schema, ghost: &Schema, ignore: &[String]) -> Vec<SchemaChange> {
    let keep = |s: &Schema| {
        Schema::new(
            s.fields()
                .iter()
                .filter(|f| !ignore.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let (prod, ghost) = (&keep(prod), &keep(ghost));
    let ty = |f: &arrow::datatypes::Field| {
        format!(
            "{}{}",
            f.data_type(),
            if f.is_nullable() { ", nullable" } else { "" }
        )
    };
    let mut out = Vec::new();
    for p in prod.fields() {
        match ghost.field_with_name(p.name()) {
            Err(_) => out.push(SchemaChange::Removed {
                column: p.name().clone(),
                ty: ty(p),
            }),
            Ok(g) if g.data_type() != p.data_type() => out.push(SchemaChange::TypeChanged {
                column: p.name().clone(),
                prod: p.data_type().to_string(),
                ghost: g.data_type().to_string(),
            }),
            Ok(g) if g.is_nullable() != p.is_nullable() => out.push(SchemaChange::Nullability {
                column: p.name().clone(),
                prod: p.is_nullable(),
            }),
            Ok(_) => {}
        }
    }
    for g in ghost.fields() {
        if prod.field_with_name(g.name()).is_err() {
            out.push(SchemaChange::Added {
                column: g.name().clone(),
                ty: ty(g),
            });
        }
    }
    if out.is_empty() {
        let names = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (p, g) = (names(prod), names(ghost));
        if p != g {
            out.push(SchemaChange::Reordered { prod: p, ghost: g });
        }
    }
    out
}

/// Statistics of one column on one side, mergeable across files.
#[derive(Debug, Clone)]
pub struct ColumnStats {
    /// The column's type (of the first file seen).
    pub data_type: DataType,
    /// Non-null values.
    pub non_null: u64,
    /// Null values.
    pub nulls: u64,
    min: Option<ArrayRef>,
    max: Option<ArrayRef>,
    sum: f64,
    summed: u64,
    distinct: Option<HashSet<u64>>,
    distinct_overflow: bool,
}

impl ColumnStats {
    /// Empty statistics for a column of this type.
    pub fn new(data_type: &DataType) -> Self {
        ColumnStats {
            data_type: data_type.clone(),
            non_null: 0,
            nulls: 0,
            min: None,
            max: None,
            sum: 0.0,
            summed: 0,
            distinct: is_string(data_type).then(HashSet::new),
            distinct_overflow: false,
        }
    }

    /// Add the values of one batch.
    pub fn update(&mut self, array: &dyn Array) {
        let nulls = array.logical_null_count() as u64;
        self.nulls += nulls;
        self.non_null += array.len() as u64 - nulls;
        if array.len() as u64 == nulls {
            return;
        }
        // Dictionaries are compared and kept by value: a one-value take of a
        // dictionary array would keep the whole dictionary alive.
        let values: ArrayRef = match array.data_type() {
            DataType::Dictionary(_, v) => match cast(array, v) {
                Ok(a) => a,
                Err(_) => return,
            },
            _ => arrow::array::make_array(array.to_data()),
        };
        if let Some((lo, hi)) = extremes(values.as_ref()) {
            if let Ok(v) = one(values.as_ref(), lo) {
                keep(&mut self.min, v, std::cmp::Ordering::Less);
            }
            if let Ok(v) = one(values.as_ref(), hi) {
                keep(&mut self.max, v, std::cmp::Ordering::Greater);
            }
        }
        if values.data_type().is_numeric() {
            if let Ok(f) = cast(values.as_ref(), &DataType::Float64) {
                let f = f.as_primitive::<arrow::datatypes::Float64Type>();
                for v in f.iter().flatten() {
                    if v.is_finite() {
                        self.sum += v;
                        self.summed += 1;
                    }
                }
            }
        }
        if self.distinct.is_some() {
            if let Ok(s) = cast(values.as_ref(), &DataType::Utf8) {
                let set = self.distinct.as_mut().expect("checked above");
                for v in s.as_string::<i32>().iter().flatten() {
                    set.insert(hash_str(v));
                }
                self.check_cap();
            }
        }
    }

    /// Fold another file's statistics into these.
    pub fn merge(&mut self, other: &ColumnStats) {
        self.non_null += other.non_null;
        self.nulls += other.nulls;
        if let Some(v) = &other.min {
            keep(&mut self.min, v.clone(), std::cmp::Ordering::Less);
        }
        if let Some(v) = &other.max {
            keep(&mut self.max, v.clone(), std::cmp::Ordering::Greater);
        }
        self.sum += other.sum;
        self.summed += other.summed;
        match (&mut self.distinct, &other.distinct) {
            (Some(a), Some(b)) => {
                a.extend(b.iter().copied());
                self.check_cap();
            }
            (Some(_), None) => {
                self.distinct = None;
                self.distinct_overflow = true;
            }
            _ => {}
        }
        self.distinct_overflow |= other.distinct_overflow;
    }

    fn check_cap(&mut self) {
        if self
            .distinct
            .as_ref()
            .is_some_and(|s| s.len() > DISTINCT_CAP)
        {
            self.distinct = None;
            self.distinct_overflow = true;
        }
    }

    /// The smallest value, formatted.
    pub fn min_text(&self) -> String {
        self.min
            .as_ref()
            .map(|a| format_value(a, 0))
            .unwrap_or_default()
    }

    /// The largest value, formatted.
    pub fn max_text(&self) -> String {
        self.max
            .as_ref()
            .map(|a| format_value(a, 0))
            .unwrap_or_default()
    }

    /// The mean of the finite values of a numeric column.
    pub fn mean(&self) -> Option<f64> {
        (self.summed > 0).then(|| self.sum / self.summed as f64)
    }

    /// Distinct values of a string column: exact, `>N` past the cap, empty
    /// for other types.
    pub fn distinct_text(&self) -> String {
        match (&self.distinct, self.distinct_overflow) {
            (Some(s), false) => s.len().to_string(),
            (_, true) => format!(">{DISTINCT_CAP}"),
            (None, false) => String::new(),
        }
    }
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

fn hash_str(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Indexes of the smallest and largest non-null values.
fn extremes(array: &dyn Array) -> Option<(usize, usize)> {
    let cmp = make_comparator(array, array, SortOptions::default()).ok()?;
    let (mut lo, mut hi): (Option<usize>, Option<usize>) = (None, None);
    for i in 0..array.len() {
        if array.is_null(i) {
            continue;
        }
        if lo.is_none_or(|l| cmp(i, l).is_lt()) {
            lo = Some(i);
        }
        if hi.is_none_or(|h| cmp(i, h).is_gt()) {
            hi = Some(i);
        }
    }
    Some((lo?, hi?))
}

/// A fresh one-value array (not a slice holding the batch's buffers).
fn one(array: &dyn Array, i: usize) -> Result<ArrayRef, arrow::error::ArrowError> {
    take(array, &UInt32Array::from(vec![i as u32]), None)
}

/// Replace `cur` by `cand` when `cand` compares as `want` to it.
fn keep(cur: &mut Option<ArrayRef>, cand: ArrayRef, want: std::cmp::Ordering) {
    match cur {
        None => *cur = Some(cand),
        Some(c) => {
            if let Ok(cmp) = make_comparator(cand.as_ref(), c.as_ref(), SortOptions::default()) {
                if cmp(0, 0) == want {
                    *cur = Some(cand);
                }
            }
        }
    }
}

/// One value as text, as Arrow displays it, shortened for a report cell.
pub fn format_value(array: &dyn Array, i: usize) -> String {
    let opts = FormatOptions::default().with_null("null");
    match ArrayFormatter::try_new(array, &opts) {
        Ok(f) => super::shorten(&f.value(i).to_string()),
        Err(e) => format!("<unprintable: {e}>"),
    }
}

/// Records of a file pair, by how they compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// In both, every common column equal.
    pub same: u64,
    /// In both, some column different.
    pub changed: u64,
    /// Only in prod.
    pub only_prod: u64,
    /// Only in the ghost.
    pub only_ghost: u64,
}

impl RecordCounts {
    /// Records compared: the union of both sides.
    pub fn total(&self) -> u64 {
        self.same + self.changed + self.only_prod + self.only_ghost
    }

    /// Records that differ in any way.
    pub fn differing(&self) -> u64 {
        self.changed + self.only_prod + self.only_ghost
    }

    /// Add another file's counts.
    pub fn add(&mut self, o: &RecordCounts) {
        self.same += o.same;
        self.changed += o.changed;
        self.only_prod += o.only_prod;
        self.only_ghost += o.only_ghost;
    }
}

/// How a sampled record differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SampleKind {
    /// Present in both, some values differ.
    Changed,
    /// Missing from the ghost.
    OnlyProd,
    /// Missing from prod.
    OnlyGhost,
}

/// One differing value of a sampled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Column.
    pub column: String,
    /// Prod's value.
    pub prod: String,
    /// The ghost's value.
    pub ghost: String,
}

/// A differing record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Its record id (or `row N` when matched by position).
    pub record: String,
    /// How it differs.
    pub kind: SampleKind,
    /// The differing values.
    pub cells: Vec<Cell>,
}

/// The comparison of one file pair.
#[derive(Debug, Clone)]
pub struct FileDiff {
    /// Schema changes from prod to ghost.
    pub schema_changes: Vec<SchemaChange>,
    /// Rows in prod's file.
    pub prod_rows: u64,
    /// Rows in the ghost's file.
    pub ghost_rows: u64,
    /// Column statistics of prod's file, in schema order.
    pub prod_stats: Vec<(String, ColumnStats)>,
    /// Column statistics of the ghost's file, in schema order.
    pub ghost_stats: Vec<(String, ColumnStats)>,
    /// Records by outcome.
    pub records: RecordCounts,
    /// Changed records per column.
    pub changed_columns: BTreeMap<String, u64>,
    /// The first differing records.
    pub samples: Vec<Sample>,
    /// Whether records were matched by the record id column (or by position,
    /// when one side lacks it).
    pub by_record_id: bool,
    /// Whether the two files are byte for byte the same.
    pub identical_bytes: bool,
}

/// A file being read batch by batch.
struct Side {
    name: String,
    reader: ParquetRecordBatchReader,
    current: Option<Arc<Batch>>,
    pos: usize,
    seq: u64,
    rows: u64,
    id_col: Option<usize>,
    stats: Vec<(String, ColumnStats)>,
}

struct Batch {
    seq: u64,
    data: RecordBatch,
    /// Record ids as text, when matching by id.
    ids: Option<ArrayRef>,
    first_row: u64,
}

#[derive(Clone)]
struct Row {
    batch: Arc<Batch>,
    idx: usize,
}

impl Row {
    fn id(&self) -> String {
        match &self.batch.ids {
            Some(ids) => {
                let s = ids.as_string::<i32>();
                if s.is_null(self.idx) {
                    format!("null id at row {}", self.batch.first_row + self.idx as u64)
                } else {
                    s.value(self.idx).to_string()
                }
            }
            None => format!("row {}", self.batch.first_row + self.idx as u64),
        }
    }
}

fn open(name: &str, data: Bytes) -> anyhow::Result<(SchemaRef, ParquetRecordBatchReader)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .with_context(|| format!("{name}: cannot read its record batches"))?;
    Ok((schema, reader))
}

impl Side {
    fn new(name: &str, data: Bytes, record_id: Option<&str>) -> anyhow::Result<(Self, SchemaRef)> {
        let (schema, reader) = open(name, data)?;
        let id_col = record_id.and_then(|c| schema.index_of(c).ok());
        let stats = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), ColumnStats::new(f.data_type())))
            .collect();
        Ok((
            Side {
                name: name.to_string(),
                reader,
                current: None,
                pos: 0,
                seq: 0,
                rows: 0,
                id_col,
                stats,
            },
            schema,
        ))
    }

    fn next_row(&mut self) -> anyhow::Result<Option<Row>> {
        loop {
            if let Some(b) = &self.current {
                if self.pos < b.data.num_rows() {
                    self.pos += 1;
                    return Ok(Some(Row {
                        batch: b.clone(),
                        idx: self.pos - 1,
                    }));
                }
            }
            let Some(batch) = self.next_batch()? else {
                self.current = None;
                return Ok(None);
            };
            let ids = match self.id_col {
                Some(i) => Some(Arc::new(
                    sluice::lineage::record_ids_as_text(batch.column(i)).with_context(|| {
                        format!("{}: the record id column is not text", self.name)
                    })?,
                ) as ArrayRef),
                None => None,
            };
            self.seq += 1;
            self.current = Some(Arc::new(Batch {
                seq: self.seq,
                data: batch,
                ids,
                first_row: self.rows,
            }));
            self.rows += self
                .current
                .as_ref()
                .map_or(0, |b| b.data.num_rows() as u64);
            self.pos = 0;
        }
    }

    /// The next batch, with the statistics updated.
    fn next_batch(&mut self) -> anyhow::Result<Option<RecordBatch>> {
        match self.reader.next() {
            None => Ok(None),
            Some(Err(e)) => {
                Err(e).with_context(|| format!("{}: reading a record batch", self.name))
            }
            Some(Ok(batch)) => {
                for (i, (_, s)) in self.stats.iter_mut().enumerate() {
                    s.update(batch.column(i).as_ref());
                }
                Ok(Some(batch))
            }
        }
    }
}

/// The columns both sides have, and how to compare them.
struct Comparer {
    columns: Vec<(String, usize, usize, bool)>,
    cache: Option<(u64, u64, Vec<Option<DynComparator>>)>,
}

impl Comparer {
    fn new(prod: &Schema, ghost: &Schema, record_id: Option<&str>, ignore: &[String]) -> Self {
        let columns = prod
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| Some(f.name().as_str()) != record_id && !ignore.contains(f.name()))
            .filter_map(|(pi, f)| {
                let gi = ghost.index_of(f.name()).ok()?;
                let same = ghost.field(gi).data_type() == f.data_type();
                Some((f.name().clone(), pi, gi, same))
            })
            .collect();
        Comparer {
            columns,
            cache: None,
        }
    }

    /// The indexes (into `columns`) of the values that differ.
    fn differing(&mut self, p: &Row, g: &Row) -> Vec<usize> {
        let key = (p.batch.seq, g.batch.seq);
        if self.cache.as_ref().map(|c| (c.0, c.1)) != Some(key) {
            let cmps = self
                .columns
                .iter()
                .map(|(_, pi, gi, same)| {
                    if !*same {
                        return None;
                    }
                    make_comparator(
                        p.batch.data.column(*pi).as_ref(),
                        g.batch.data.column(*gi).as_ref(),
                        SortOptions::default(),
                    )
                    .ok()
                })
                .collect();
            self.cache = Some((key.0, key.1, cmps));
        }
        let cmps = &self.cache.as_ref().expect("filled above").2;
        let mut out = Vec::new();
        for (c, (_, pi, gi, _)) in self.columns.iter().enumerate() {
            let equal = match &cmps[c] {
                Some(cmp) => cmp(p.idx, g.idx).is_eq(),
                // Different types (reported as a schema change) or a type
                // without an order: compare as displayed.
                None => {
                    format_value(p.batch.data.column(*pi).as_ref(), p.idx)
                        == format_value(g.batch.data.column(*gi).as_ref(), g.idx)
                }
            };
            if !equal {
                out.push(c);
            }
        }
        out
    }
}

/// Tallies of one file pair while rows are matched.
struct Tally {
    comparer: Comparer,
    limit: usize,
    records: RecordCounts,
    changed_columns: BTreeMap<String, u64>,
    samples: Vec<Sample>,
    held_prod: HashMap<String, VecDeque<Row>>,
    held_ghost: HashMap<String, VecDeque<Row>>,
}

impl Tally {
    fn pair(&mut self, id: String, p: &Row, g: &Row) {
        let diff = self.comparer.differing(p, g);
        if diff.is_empty() {
            self.records.same += 1;
            return;
        }
        self.records.changed += 1;
        for &c in &diff {
            *self
                .changed_columns
                .entry(self.comparer.columns[c].0.clone())
                .or_default() += 1;
        }
        if self.samples.len() < self.limit {
            let cells = diff
                .iter()
                .map(|&c| {
                    let (name, pi, gi, _) = &self.comparer.columns[c];
                    Cell {
                        column: name.clone(),
                        prod: format_value(p.batch.data.column(*pi).as_ref(), p.idx),
                        ghost: format_value(g.batch.data.column(*gi).as_ref(), g.idx),
                    }
                })
                .collect();
            self.samples.push(Sample {
                record: id,
                kind: SampleKind::Changed,
                cells,
            });
        }
    }

    /// A prod row whose ghost partner was not at the same position.
    fn prod(&mut self, p: Row) {
        let id = p.id();
        match pop(&mut self.held_ghost, &id) {
            Some(g) => self.pair(id, &p, &g),
            None => self.held_prod.entry(id).or_default().push_back(p),
        }
    }

    /// A ghost row whose prod partner was not at the same position.
    fn ghost(&mut self, g: Row) {
        let id = g.id();
        match pop(&mut self.held_prod, &id) {
            Some(p) => self.pair(id, &p, &g),
            None => self.held_ghost.entry(id).or_default().push_back(g),
        }
    }

    /// Rows still held have no partner.
    fn finish(&mut self) {
        let mut leftovers: Vec<(String, SampleKind)> = Vec::new();
        for (id, rows) in self.held_prod.drain() {
            self.records.only_prod += rows.len() as u64;
            leftovers.extend(rows.iter().map(|_| (id.clone(), SampleKind::OnlyProd)));
        }
        for (id, rows) in self.held_ghost.drain() {
            self.records.only_ghost += rows.len() as u64;
            leftovers.extend(rows.iter().map(|_| (id.clone(), SampleKind::OnlyGhost)));
        }
        leftovers.sort();
        for (id, kind) in leftovers {
            if self.samples.len() >= self.limit {
                break;
            }
            let (prod, ghost) = match kind {
                SampleKind::OnlyProd => ("present", "missing"),
                _ => ("missing", "present"),
            };
            self.samples.push(Sample {
                record: id,
                kind,
                cells: vec![Cell {
                    column: "(whole record)".into(),
                    prod: prod.into(),
                    ghost: ghost.into(),
                }],
            });
        }
    }
}

fn pop(held: &mut HashMap<String, VecDeque<Row>>, id: &str) -> Option<Row> {
    let q = held.get_mut(id)?;
    let row = q.pop_front();
    if q.is_empty() {
        held.remove(id);
    }
    row
}

/// Compare prod's file with the ghost's. `prod_name` and `ghost_name` name
/// the objects in error messages.
pub fn compare(
    prod_name: &str,
    prod: Bytes,
    ghost_name: &str,
    ghost: Bytes,
    opts: &Options,
) -> anyhow::Result<FileDiff> {
    if prod == ghost {
        return identical(prod_name, prod, opts);
    }
    let (_, prod_schema) = Side::new(prod_name, prod.clone(), None)?;
    let (_, ghost_schema) = Side::new(ghost_name, ghost.clone(), None)?;
    let by_id = prod_schema.index_of(&opts.record_id).is_ok()
        && ghost_schema.index_of(&opts.record_id).is_ok();
    let id_col = by_id.then_some(opts.record_id.as_str());
    let (mut p, _) = Side::new(prod_name, prod, id_col)?;
    let (mut g, _) = Side::new(ghost_name, ghost, id_col)?;
    let mut tally = Tally {
        comparer: Comparer::new(&prod_schema, &ghost_schema, id_col, &opts.ignore),
        limit: opts.sample,
        records: RecordCounts::default(),
        changed_columns: BTreeMap::new(),
        samples: Vec::new(),
        held_prod: HashMap::new(),
        held_ghost: HashMap::new(),
    };
    loop {
        match (p.next_row()?, g.next_row()?) {
            (None, None) => break,
            (Some(pr), Some(gr)) => {
                let (pid, gid) = (pr.id(), gr.id());
                if pid == gid {
                    tally.pair(pid, &pr, &gr);
                } else {
                    tally.prod(pr);
                    tally.ghost(gr);
                }
            }
            (Some(pr), None) => tally.prod(pr),
            (None, Some(gr)) => tally.ghost(gr),
        }
    }
    tally.finish();
    Ok(FileDiff {
        schema_changes: schema_changes(&prod_schema, &ghost_schema, &opts.ignore),
        prod_rows: p.rows,
        ghost_rows: g.rows,
        prod_stats: p.stats,
        ghost_stats: g.stats,
        records: tally.records,
        changed_columns: tally.changed_columns,
        samples: tally.samples,
        by_record_id: by_id,
        identical_bytes: false,
    })
}

/// Byte-identical files: read once, every record the same.
fn identical(name: &str, data: Bytes, opts: &Options) -> anyhow::Result<FileDiff> {
    let (mut side, schema) = Side::new(name, data, None)?;
    while let Some(b) = side.next_batch()? {
        side.rows += b.num_rows() as u64;
    }
    Ok(FileDiff {
        schema_changes: Vec::new(),
        prod_rows: side.rows,
        ghost_rows: side.rows,
        prod_stats: side.stats.clone(),
        ghost_stats: side.stats,
        records: RecordCounts {
            same: side.rows,
            ..Default::default()
        },
        changed_columns: BTreeMap::new(),
        samples: Vec::new(),
        by_record_id: schema.index_of(&opts.record_id).is_ok(),
        identical_bytes: true,
    })
}
