//! The `[curate]` section of a data contract: parsed and validated once at
//! cold start into a [`CurationPlan`] per dataset, with the reference tables
//! it joins loaded and indexed. Every error names the contract file and the
//! entry (`curate.derived[1] (avg_speed_mph)`), so a bad section fails the
//! cold start with a message that says where to look.
//!
//! The section (all keys optional; a contract without one is curated as-is):
//!
//! ```toml
//! [curate]
//! dedup = true                  # drop (and quarantine) rows already seen in the same file ...
//! dedup_on = "row"              # ... by: "record_id" (the default: ingest's _record_id, which is the
//!                               # natural key when the contract has one), "row" (every contract
//!                               # field: exact duplicates), or a list of contract fields
//!
//! [[curate.derived]]            # Float64, nullable; evaluated in order, so later entries may use earlier ones
//! name = "trip_duration_min"
//! kind = "duration"             # end - start, in `unit` (seconds | minutes | hours | days)
//! start = "tpep_pickup_datetime"
//! end = "tpep_dropoff_datetime"
//! unit = "minutes"
//!
//! [[curate.derived]]
//! name = "avg_speed_mph"
//! kind = "ratio"                # numerator * scale / denominator; null when the denominator is 0 or null
//! numerator = "trip_distance"
//! denominator = "trip_duration_min"
//! scale = 60.0
//!
//! [[curate.joins]]              # Utf8, nullable (null when the id is not in the table)
//! reference = "taxi_zones"      # contracts/reference/taxi_zones.csv
//! key = "LocationID"            # the table's key column
//! on = "PULocationID"           # the contract field (int or string) matched against it
//! columns = ["Borough", "Zone"] # table columns to add ...
//! prefix = "pickup_"            # ... named prefix + column
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use sluice::contract::{Contract, FieldType, Registry};
use sluice::{Error, Result};

use crate::reference::{reference_path, ReferenceTable};

/// Columns every validated file carries after the contract's fields.
pub const RECORD_ID: &str = "_record_id";
/// The landing object a row came from.
pub const SOURCE: &str = "_source";
/// The row's line number in the decompressed landing file.
pub const LINE: &str = "_line";

/// The unit of a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
    /// Days (of 24 hours).
    Days,
}

impl DurationUnit {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "seconds" => DurationUnit::Seconds,
            "minutes" => DurationUnit::Minutes,
            "hours" => DurationUnit::Hours,
            "days" => DurationUnit::Days,
            _ => return None,
        })
    }

    /// Microseconds in one unit.
    pub fn micros(self) -> f64 {
        match self {
            DurationUnit::Seconds => 1e6,
            DurationUnit::Minutes => 60e6,
            DurationUnit::Hours => 3_600e6,
            DurationUnit::Days => 86_400e6,
        }
    }
}

/// How a derived column is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum DerivedExpr {
    /// `end - start` of two timestamp/date columns, in `unit`.
    Duration {
        /// Start column.
        start: String,
        /// End column.
        end: String,
        /// Unit of the result.
        unit: DurationUnit,
    },
    /// `numerator * scale / denominator` of two numeric columns (contract
    /// fields or earlier derived columns); null when the denominator is 0 or
    /// null. Decimals are converted to f64 using their scale.
    Ratio {
        /// Numerator column.
        numerator: String,
        /// Denominator column.
        denominator: String,
        /// Multiplier.
        scale: f64,
    },
}

/// One derived column.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// Output column name.
    pub name: String,
    /// Formula.
    pub expr: DerivedExpr,
}

/// A join key index over a reference table.
#[derive(Debug, Clone)]
pub enum KeyIndex {
    /// Integer keys (the `on` field is an int).
    Int(HashMap<i64, usize>),
    /// Text keys (the `on` field is a string).
    Text(HashMap<String, usize>),
}

/// One column added by a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinColumn {
    /// Column in the reference table.
    pub source: String,
    /// Output column name (`prefix + source`).
    pub output: String,
    /// Position of `source` in the table.
    pub position: usize,
}

/// One reference join.
#[derive(Debug, Clone)]
pub struct Join {
    /// Reference table name.
    pub reference: String,
    /// The table's key column.
    pub key: String,
    /// The contract field matched against the key.
    pub on: String,
    /// Columns added.
    pub columns: Vec<JoinColumn>,
    /// The table, shared by every join that names it.
    pub table: Arc<ReferenceTable>,
    /// Key -> row.
    pub index: Arc<KeyIndex>,
}

/// What makes two rows duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupOn {
    /// The same `_record_id` (ingest hashes the natural key into it when the
    /// contract has one; without one, every row's id is unique).
    RecordId,
    /// The same values in these contract fields (`"row"`: all of them).
    Columns(Vec<String>),
}

impl DedupOn {
    /// The quarantine reason for a duplicate.
    pub fn reason(&self, all_fields: usize) -> String {
        match self {
            DedupOn::RecordId => "duplicate record id".into(),
            DedupOn::Columns(c) if c.len() == all_fields => "duplicate row".into(),
            DedupOn::Columns(c) => format!("duplicate of an earlier row on {}", c.join(", ")),
        }
    }
}

/// What curate does to one dataset.
#[derive(Debug, Clone)]
pub struct CurationPlan {
    /// Dataset name.
    pub dataset: String,
    /// The contract file, for messages.
    pub contract_source: String,
    /// Drop rows already seen in the same file (quarantined as duplicates).
    pub dedup: bool,
    /// What makes two rows duplicates.
    pub dedup_on: DedupOn,
    /// The quarantine reason for a duplicate.
    pub dedup_reason: String,
    /// Derived columns, in output order.
    pub derived: Vec<Derived>,
    /// Joins, in output order.
    pub joins: Vec<Join>,
}

impl CurationPlan {
    /// The names of the columns curate adds, in output order.
    pub fn added_columns(&self) -> Vec<String> {
        self.derived
            .iter()
            .map(|d| d.name.clone())
            .chain(
                self.joins
                    .iter()
                    .flat_map(|j| j.columns.iter().map(|c| c.output.clone())),
            )
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    #[serde(default)]
    dedup: bool,
    #[serde(default)]
    dedup_on: Option<toml::Value>,
    #[serde(default)]
    derived: Vec<toml::Value>,
    #[serde(default)]
    joins: Vec<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDuration {
    name: String,
    start: String,
    end: String,
    #[serde(default = "minutes")]
    unit: String,
}

fn minutes() -> String {
    "minutes".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRatio {
    name: String,
    numerator: String,
    denominator: String,
    #[serde(default = "one")]
    scale: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoin {
    reference: String,
    key: String,
    on: String,
    columns: Vec<String>,
    #[serde(default)]
    prefix: String,
}

fn bad(source: &str, place: &str, reason: impl Into<String>) -> Error {
    Error::config(format!("contract {source}: {place}"), reason)
}

/// Put an error about a reference table in the context of the contract
/// entry that uses it.
fn within(source: &str, place: &str, err: Error) -> Error {
    match err {
        Error::Config { var, reason } => bad(source, &format!("{place}: {var}"), reason),
        other => other,
    }
}

/// A column name curate may add: non-empty, not bookkeeping (`_...`), no `/`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('_') && !name.contains(['/', '\n'])
}

/// Loads each reference table once, however many joins name it.
pub(crate) struct ReferenceCache<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    tables: BTreeMap<String, Arc<ReferenceTable>>,
}

impl<'a> ReferenceCache<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        ReferenceCache {
            lookup,
            tables: BTreeMap::new(),
        }
    }

    fn get(&mut self, name: &str) -> std::result::Result<Arc<ReferenceTable>, Result<String>> {
        if let Some(t) = self.tables.get(name) {
            return Ok(t.clone());
        }
        let text = (self.lookup)(name).ok_or_else(|| {
            Ok(format!(
                "reference table {} does not exist",
                reference_path(name)
            ))
        })?;
        let table = Arc::new(ReferenceTable::parse(name, &text).map_err(Err)?);
        self.tables.insert(name.to_string(), table.clone());
        Ok(table)
    }
}

/// Parse and validate the `[curate]` section of `contract`.
pub(crate) fn plan_for(contract: &Contract, refs: &mut ReferenceCache<'_>) -> Result<CurationPlan> {
    let source = contract.source.as_str();
    let mut plan = CurationPlan {
        dataset: contract.name.clone(),
        contract_source: contract.source.clone(),
        dedup: false,
        dedup_on: DedupOn::RecordId,
        dedup_reason: DedupOn::RecordId.reason(contract.fields.len()),
        derived: Vec::new(),
        joins: Vec::new(),
    };
    let Some(section) = &contract.curate else {
        return Ok(plan);
    };
    let raw: RawSection = section
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| bad(source, "curate", e.message().to_string()))?;
    plan.dedup = raw.dedup;
    if let Some(on) = &raw.dedup_on {
        let fail = |reason: String| bad(source, "curate.dedup_on", reason);
        if !raw.dedup {
            return Err(fail("is set but dedup is not true".into()));
        }
        plan.dedup_on = match on {
            toml::Value::String(s) if s == "record_id" => DedupOn::RecordId,
            toml::Value::String(s) if s == "row" => {
                DedupOn::Columns(contract.fields.iter().map(|f| f.name.clone()).collect())
            }
            toml::Value::Array(items) if !items.is_empty() => {
                let mut cols: Vec<String> = Vec::with_capacity(items.len());
                for item in items {
                    let name = item
                        .as_str()
                        .ok_or_else(|| fail(format!("{item} is not a field name")))?;
                    if contract.field_index(name).is_none() {
                        return Err(fail(format!("names unknown field {name:?}")));
                    }
                    if cols.iter().any(|c| c == name) {
                        return Err(fail(format!("names {name:?} twice")));
                    }
                    cols.push(name.to_string());
                }
                DedupOn::Columns(cols)
            }
            other => {
                return Err(fail(format!(
                    "{other} is not \"record_id\", \"row\" or a non-empty list of fields"
                )))
            }
        };
        plan.dedup_reason = plan.dedup_on.reason(contract.fields.len());
    }

    // Names already taken: the input columns, then everything added so far.
    let mut taken: Vec<String> = contract.fields.iter().map(|f| f.name.clone()).collect();
    taken.extend([RECORD_ID, SOURCE, LINE].map(String::from));
    let field_type = |name: &str| {
        contract
            .field_index(name)
            .map(|i| contract.fields[i].ty.clone())
    };

    for (i, entry) in raw.derived.into_iter().enumerate() {
        let name = entry
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or("?")
            .to_string();
        let place = format!("curate.derived[{i}] ({name})");
        let fail = |reason: String| bad(source, &place, reason);
        let toml::Value::Table(mut table) = entry else {
            return Err(fail("must be a table".into()));
        };
        let kind = match table.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(_) => return Err(fail("kind must be a string".into())),
            None => return Err(fail("kind is required (duration or ratio)".into())),
        };
        let de = |e: toml::de::Error| fail(e.message().to_string());
        let derived_names: Vec<&str> = plan.derived.iter().map(|d| d.name.as_str()).collect();
        let (name, expr) = match kind.as_str() {
            "duration" => {
                let r: RawDuration = toml::Value::Table(table).try_into().map_err(de)?;
                for (what, col) in [("start", &r.start), ("end", &r.end)] {
                    match field_type(col) {
                        Some(FieldType::Timestamp { .. } | FieldType::Date { .. }) => {}
                        Some(_) => {
                            return Err(fail(format!(
                                "{what} {col:?} must be a timestamp or date field"
                            )))
                        }
                        None => return Err(fail(format!("{what} names unknown field {col:?}"))),
                    }
                }
                let unit = DurationUnit::parse(&r.unit).ok_or_else(|| {
                    fail(format!(
                        "unit {:?} is not seconds, minutes, hours or days",
                        r.unit
                    ))
                })?;
                (
                    r.name,
                    DerivedExpr::Duration {
                        start: r.start,
                        end: r.end,
                        unit,
                    },
                )
            }
            "ratio" => {
                let r: RawRatio = toml::Value::Table(table).try_into().map_err(de)?;
                for (what, col) in [("numerator", &r.numerator), ("denominator", &r.denominator)] {
                    if derived_names.contains(&col.as_str()) {
                        continue;
                    }
                    match field_type(col) {
                        Some(FieldType::Int | FieldType::Float | FieldType::Decimal { .. }) => {}
                        Some(_) => {
                            return Err(fail(format!(
                                "{what} {col:?} must be a numeric field (int, float or decimal) or an earlier derived column"
                            )))
                        }
                        None => {
                            return Err(fail(format!(
                                "{what} names unknown field {col:?} (derived columns must be defined before use)"
                            )))
                        }
                    }
                }
                if !r.scale.is_finite() || r.scale == 0.0 {
                    return Err(fail(format!(
                        "scale {} must be finite and non-zero",
                        r.scale
                    )));
                }
                (
                    r.name,
                    DerivedExpr::Ratio {
                        numerator: r.numerator,
                        denominator: r.denominator,
                        scale: r.scale,
                    },
                )
            }
            other => return Err(fail(format!("kind {other:?} is not duration or ratio"))),
        };
        if !valid_name(&name) {
            return Err(fail(format!(
                "name {name:?} must be non-empty, not start with '_' and not contain '/'"
            )));
        }
        if taken.contains(&name) {
            return Err(fail(format!("name {name:?} is already a column")));
        }
        taken.push(name.clone());
        plan.derived.push(Derived { name, expr });
    }

    for (i, entry) in raw.joins.into_iter().enumerate() {
        let describe = |k: &str| entry.get(k).and_then(toml::Value::as_str).unwrap_or("?");
        let place = format!(
            "curate.joins[{i}] ({} on {})",
            describe("reference"),
            describe("on")
        );
        let fail = |reason: String| bad(source, &place, reason);
        let r: RawJoin = entry
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| fail(e.message().to_string()))?;
        let on_type =
            field_type(&r.on).ok_or_else(|| fail(format!("on names unknown field {:?}", r.on)))?;
        let table = refs.get(&r.reference).map_err(|e| match e {
            Ok(reason) => fail(reason),
            Err(err) => within(source, &place, err),
        })?;
        let key_pos = table.column(&r.key).ok_or_else(|| {
            fail(format!(
                "key {:?} is not a column of {} (columns: {})",
                r.key,
                reference_path(&r.reference),
                table.columns.join(", ")
            ))
        })?;
        let index = match on_type {
            FieldType::Int => KeyIndex::Int(
                table
                    .int_index(key_pos)
                    .map_err(|e| within(source, &place, e))?,
            ),
            FieldType::String => KeyIndex::Text(
                table
                    .text_index(key_pos)
                    .map_err(|e| within(source, &place, e))?,
            ),
            _ => {
                return Err(fail(format!(
                    "on {:?} must be an int or string field",
                    r.on
                )))
            }
        };
        if r.columns.is_empty() {
            return Err(fail("columns is empty".into()));
        }
        let mut columns = Vec::with_capacity(r.columns.len());
        for c in &r.columns {
            let position = table.column(c).ok_or_else(|| {
                fail(format!(
                    "column {c:?} is not in {} (columns: {})",
                    reference_path(&r.reference),
                    table.columns.join(", ")
                ))
            })?;
            let output = format!("{}{c}", r.prefix);
            if !valid_name(&output) {
                return Err(fail(format!(
                    "output column {output:?} must not start with '_' or contain '/'"
                )));
            }
            if taken.contains(&output) {
                return Err(fail(format!(
                    "output column {output:?} is already a column (set a prefix)"
                )));
            }
            taken.push(output.clone());
            columns.push(JoinColumn {
                source: c.clone(),
                output,
                position,
            });
        }
        plan.joins.push(Join {
            reference: r.reference,
            key: r.key,
            on: r.on,
            columns,
            table,
            index: Arc::new(index),
        });
    }
    Ok(plan)
}

/// Plans for every contract in `registry`, reading reference tables through
/// `lookup` (each parsed once).
pub(crate) fn plans(
    registry: &Registry,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Arc<CurationPlan>>> {
    let mut refs = ReferenceCache::new(lookup);
    let mut out = BTreeMap::new();
    for name in registry.names() {
        if let Some(contract) = registry.get(name) {
            out.insert(name.to_string(), Arc::new(plan_for(contract, &mut refs)?));
        }
    }
    Ok(out)
}
