//! Stage configuration from the environment: a raw struct parsed from
//! `SLUICE_*` variables (unknown ones rejected, so typos are caught), then
//! validated once at cold start into [`Config`], including the loop guard
//! and the ghost-mode guard.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Prefix of every Sluice environment variable.
pub const ENV_PREFIX: &str = "SLUICE_";

/// Default of `SLUICE_MAX_RECORD_BYTES`: 4 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 4 << 20;
/// Smallest `SLUICE_MAX_RECORD_BYTES` accepted.
pub const MIN_MAX_RECORD_BYTES: usize = 64;

/// Default of `SLUICE_MEMORY_BUDGET_BYTES`: 48 MiB, which leaves room for
/// the runtime and the binary in a 128 MB Lambda.
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 48 << 20;
/// Smallest `SLUICE_MEMORY_BUDGET_BYTES` accepted.
pub const MIN_MEMORY_BUDGET_BYTES: usize = 1 << 20;

/// The environment as given: every value a string, every field optional.
/// Field names are the variable names without `SLUICE_`, lower-cased.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `prod` (default) or `ghost`.
    pub mode: Option<String>,
    /// `s3` (default) or `local:<dir>`.
    pub store: Option<String>,
    /// Input location, `s3://bucket/prefix` (required).
    pub input: Option<String>,
    /// Output location, `s3://bucket/prefix` (required).
    pub output: Option<String>,
    /// Quarantine location; default `<output bucket>/_quarantine/<stage>/`.
    pub quarantine: Option<String>,
    /// DLQ: an SQS queue URL, or `file:<path>` for a JSONL file (required).
    pub dlq: Option<String>,
    /// Alerts: an SNS topic ARN, or `file:<path>`.
    pub alerts: Option<String>,
    /// Comma-separated prod bucket names; required in ghost mode.
    pub prod_buckets: Option<String>,
    /// Attempts per object within one invocation (default 4).
    pub retry_max_attempts: Option<String>,
    /// First backoff ceiling in ms (default 200).
    pub retry_base_delay_ms: Option<String>,
    /// Largest backoff ceiling in ms (default 5000).
    pub retry_max_delay_ms: Option<String>,
    /// Largest input object accepted, in bytes (default 10 GiB).
    pub max_object_bytes: Option<String>,
    /// Largest decompressed/compressed ratio accepted (default 200).
    pub max_decompression_ratio: Option<String>,
    /// Largest single record (CSV record or JSON line) read whole, in bytes
    /// (default 4 MiB, at least 64); a longer one is quarantined, not read.
    pub max_record_bytes: Option<String>,
    /// Multipart part size in bytes (default 8 MiB, at least 5 MiB).
    pub part_size_bytes: Option<String>,
    /// Memory one input file's processing may hold, in bytes (default
    /// 48 MiB, at least 1 MiB; ingest shares it out between waiting rows
    /// and unsent output, spilling to the ephemeral disk past it).
    pub memory_budget_bytes: Option<String>,
    /// `true`/`false`; default true when `AWS_ENDPOINT_URL` is set.
    pub s3_force_path_style: Option<String>,
    /// Code version stamped on outputs (default: the crate version).
    pub code_version: Option<String>,
    /// `emf` (default) or `off`.
    pub metrics: Option<String>,
    /// The stage whose committed outputs are this stage's input (unset for
    /// a stage fed by producers, such as ingest).
    pub upstream: Option<String>,
    /// The stage's own input queue URL: a message deferred for lack of time
    /// is sent back to it as a new message instead of failing, so deferrals
    /// do not use up its receives (unset: it is reported as failed).
    pub queue: Option<String>,
}

impl RawConfig {
    /// Collect `SLUICE_*` pairs.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut map = serde_json::Map::new();
        for (k, v) in vars {
            if let Some(name) = k.as_ref().strip_prefix(ENV_PREFIX) {
                map.insert(
                    name.to_ascii_lowercase(),
                    serde_json::Value::String(v.as_ref().to_string()),
                );
            }
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            let msg = e.to_string();
            // serde says "unknown field `foo`, expected one of ..."; name the variable.
            let var = msg
                .split('`')
                .nth(1)
                .map(|f| format!("{ENV_PREFIX}{}", f.to_ascii_uppercase()))
                .unwrap_or_else(|| "SLUICE_*".into());
            Error::config(
                var,
                format!(
                    "unknown variable (typo?); known: {}",
                    known_vars().join(", ")
                ),
            )
        })
    }

    /// Collect from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(std::env::vars())
    }
}

fn known_vars() -> Vec<String> {
    [
        "MODE",
        "STORE",
        "INPUT",
        "OUTPUT",
        "QUARANTINE",
        "DLQ",
        "ALERTS",
        "PROD_BUCKETS",
        "RETRY_MAX_ATTEMPTS",
        "RETRY_BASE_DELAY_MS",
        "RETRY_MAX_DELAY_MS",
        "MAX_OBJECT_BYTES",
        "MAX_DECOMPRESSION_RATIO",
        "MAX_RECORD_BYTES",
        "PART_SIZE_BYTES",
        "MEMORY_BUDGET_BYTES",
        "S3_FORCE_PATH_STYLE",
        "CODE_VERSION",
        "METRICS",
    ]
    .iter()
    .map(|v| format!("{ENV_PREFIX}{v}"))
    .collect()
}

/// Prod, or a ghost deployment that must never write prod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The real pipeline.
    Prod,
    /// A branch build fed by a fork of prod events.
    Ghost,
}

/// Which object store backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Amazon S3 (or LocalStack).
    S3,
    /// A directory.
    Local(PathBuf),
}

/// A bucket and a key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Bucket.
    pub bucket: String,
    /// Key prefix, possibly empty; ends with `/` when not empty.
    pub prefix: String,
}

impl Location {
    /// Parse `s3://bucket/prefix` (or `bucket/prefix`).
    pub fn parse(var: &str, s: &str) -> Result<Self> {
        let rest = s.strip_prefix("s3://").unwrap_or(s);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(Error::config(
                var,
                format!("{s:?} is not s3://<bucket>/<prefix> with a valid bucket name"),
            ));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Location {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// Whether writing here could trigger a stage reading `other`.
    pub fn overlaps(&self, other: &Location) -> bool {
        self.bucket == other.bucket
            && (self.prefix.starts_with(&other.prefix) || other.prefix.starts_with(&self.prefix))
    }

    /// Whether a key falls under this location's prefix.
    pub fn contains(&self, bucket: &str, key: &str) -> bool {
        self.bucket == bucket && key.starts_with(&self.prefix)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Where dead letters or alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// An SQS queue URL (DLQ) or SNS topic ARN (alerts).
    Aws(String),
    /// A JSONL file.
    File(PathBuf),
}

fn parse_sink(var: &str, s: &str, aws_prefixes: &[&str]) -> Result<Sink> {
    if let Some(p) = s.strip_prefix("file:") {
        if p.is_empty() {
            return Err(Error::config(var, "file: needs a path"));
        }
        return Ok(Sink::File(PathBuf::from(p)));
    }
    if aws_prefixes.iter().any(|p| s.starts_with(p)) {
        return Ok(Sink::Aws(s.to_string()));
    }
    Err(Error::config(
        var,
        format!("{s:?} must start with one of {aws_prefixes:?} or file:"),
    ))
}

/// How a stage compresses the Parquet it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetCompression {
    /// zstd at the stage's own fixed level (ingest 1, curate 3): what every
    /// deployed stage writes, and the only setting the environment gives.
    #[default]
    Zstd,
    /// No compression. Not reachable from the environment: the simulation
    /// (`tests/sim`) sets it, because its files are a few hundred rows and
    /// creating a zstd context per column chunk would cost most of its CPU.
    Uncompressed,
}

/// Validated configuration, built once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Stage name.
    pub stage: String,
    /// Prod or ghost.
    pub mode: Mode,
    /// Object store backend.
    pub store: StoreKind,
    /// What the stage reads.
    pub input: Location,
    /// Where it writes.
    pub output: Location,
    /// Where rejected rows go.
    pub quarantine: Location,
    /// Where permanent failures go.
    pub dlq: Sink,
    /// Where alerts go, if anywhere.
    pub alerts: Option<Sink>,
    /// Prod buckets (ghost guard).
    pub prod_buckets: Vec<String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Largest input accepted.
    pub max_object_bytes: u64,
    /// Largest decompression ratio accepted.
    pub max_decompression_ratio: u64,
    /// Largest record (CSV record or JSON line, without its line terminator)
    /// a stage reads whole; a longer one is quarantined while its bytes are
    /// skipped, so memory stays bounded.
    pub max_record_bytes: usize,
    /// Multipart part size.
    pub part_size_bytes: usize,
    /// Memory one input file's processing may hold (`SLUICE_MEMORY_BUDGET_BYTES`).
    pub memory_budget_bytes: usize,
    /// Parquet compression of outputs: always [`ParquetCompression::Zstd`]
    /// from the environment.
    pub parquet_compression: ParquetCompression,
    /// Path-style S3 addressing.
    pub s3_force_path_style: bool,
    /// Stamped on outputs.
    pub code_version: String,
    /// Emit EMF metrics.
    pub emf_metrics: bool,
    /// The stage whose committed outputs this stage consumes (`SLUICE_UPSTREAM`);
    /// `None` for a stage fed by producers. A stage with an upstream acts only
    /// on outputs its upstream has committed, and retracts what it derived
    /// from an input its upstream deletes.
    pub upstream: Option<String>,
    /// The stage's own SQS queue (`SLUICE_QUEUE`), for deferred messages.
    pub queue: Option<String>,
}

fn parse_num<T>(var: &str, v: Option<&str>, default: T, min: T) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(v) = v else { return Ok(default) };
    let n: T = v
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| Error::config(var, format!("{v:?} is not a whole number")))?;
    if n < min {
        return Err(Error::config(
            var,
            format!("{n} is below the minimum {min}"),
        ));
    }
    Ok(n)
}

fn parse_bool(var: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::config(var, format!("{v:?} is not true or false"))),
    }
}

impl Config {
    /// Validate a raw configuration for `stage`.
    pub fn from_raw(stage: &str, raw: RawConfig) -> Result<Self> {
        let mode = match raw.mode.as_deref().unwrap_or("prod") {
            "prod" => Mode::Prod,
            "ghost" => Mode::Ghost,
            other => {
                return Err(Error::config(
                    "SLUICE_MODE",
                    format!("{other:?} is not prod or ghost"),
                ))
            }
        };
        let store = match raw.store.as_deref().unwrap_or("s3") {
            "s3" => StoreKind::S3,
            s => match s.strip_prefix("local:") {
                Some(dir) if !dir.is_empty() => StoreKind::Local(PathBuf::from(dir)),
                _ => {
                    return Err(Error::config(
                        "SLUICE_STORE",
                        format!("{s:?} is not s3 or local:<dir>"),
                    ))
                }
            },
        };
        let required = |var: &str, v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .ok_or_else(|| Error::config(var, "is required"))
        };
        let input = Location::parse("SLUICE_INPUT", &required("SLUICE_INPUT", &raw.input)?)?;
        let output = Location::parse("SLUICE_OUTPUT", &required("SLUICE_OUTPUT", &raw.output)?)?;
        let quarantine = match &raw.quarantine {
            Some(q) => Location::parse("SLUICE_QUARANTINE", q)?,
            None => Location {
                bucket: output.bucket.clone(),
                prefix: format!("_quarantine/{stage}/"),
            },
        };
        let dlq = parse_sink(
            "SLUICE_DLQ",
            &required("SLUICE_DLQ", &raw.dlq)?,
            &["https://", "http://"],
        )?;
        let alerts = raw
            .alerts
            .as_deref()
            .map(|a| parse_sink("SLUICE_ALERTS", a, &["arn:"]))
            .transpose()?;
        let prod_buckets: Vec<String> = raw
            .prod_buckets
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let retry = RetryPolicy {
            max_attempts: parse_num(
                "SLUICE_RETRY_MAX_ATTEMPTS",
                raw.retry_max_attempts.as_deref(),
                4u32,
                1,
            )?,
            base_delay: Duration::from_millis(parse_num(
                "SLUICE_RETRY_BASE_DELAY_MS",
                raw.retry_base_delay_ms.as_deref(),
                200u64,
                1,
            )?),
            max_delay: Duration::from_millis(parse_num(
                "SLUICE_RETRY_MAX_DELAY_MS",
                raw.retry_max_delay_ms.as_deref(),
                5000u64,
                1,
            )?),
            ..RetryPolicy::default()
        };
        if retry.max_delay < retry.base_delay {
            return Err(Error::config(
                "SLUICE_RETRY_MAX_DELAY_MS",
                "is smaller than SLUICE_RETRY_BASE_DELAY_MS",
            ));
        }
        let s3_force_path_style = match raw.s3_force_path_style.as_deref() {
            Some(v) => parse_bool("SLUICE_S3_FORCE_PATH_STYLE", v)?,
            None => crate::aws::custom_endpoint_configured(),
        };
        let emf_metrics = match raw.metrics.as_deref().unwrap_or("emf") {
            "emf" => true,
            "off" => false,
            other => {
                return Err(Error::config(
                    "SLUICE_METRICS",
                    format!("{other:?} is not emf or off"),
                ))
            }
        };
        let config = Config {
            stage: stage.to_string(),
            mode,
            store,
            input,
            output,
            quarantine,
            dlq,
            alerts,
            prod_buckets,
            retry,
            max_object_bytes: parse_num(
                "SLUICE_MAX_OBJECT_BYTES",
                raw.max_object_bytes.as_deref(),
                10u64 << 30,
                1,
            )?,
            max_decompression_ratio: parse_num(
                "SLUICE_MAX_DECOMPRESSION_RATIO",
                raw.max_decompression_ratio.as_deref(),
                200u64,
                2,
            )?,
            max_record_bytes: parse_num(
                "SLUICE_MAX_RECORD_BYTES",
                raw.max_record_bytes.as_deref(),
                DEFAULT_MAX_RECORD_BYTES,
                MIN_MAX_RECORD_BYTES,
            )?,
            part_size_bytes: parse_num(
                "SLUICE_PART_SIZE_BYTES",
                raw.part_size_bytes.as_deref(),
                crate::store::DEFAULT_PART_SIZE,
                crate::store::MIN_PART_SIZE,
            )?,
            memory_budget_bytes: parse_num(
                "SLUICE_MEMORY_BUDGET_BYTES",
                raw.memory_budget_bytes.as_deref(),
                DEFAULT_MEMORY_BUDGET_BYTES,
                MIN_MEMORY_BUDGET_BYTES,
            )?,
            parquet_compression: ParquetCompression::Zstd,
            s3_force_path_style,
            code_version: raw
                .code_version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            emf_metrics,
            queue: match raw.queue.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(q) if q.starts_with("https://") || q.starts_with("http://") => {
                    Some(q.to_string())
                }
                Some(q) => {
                    return Err(Error::config(
                        "SLUICE_QUEUE",
                        format!("{q:?} is not an SQS queue URL (https://…)"),
                    ))
                }
            },
            upstream: match raw.upstream.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(u) if u == stage => {
                    return Err(Error::config(
                        "SLUICE_UPSTREAM",
                        format!("{u:?} is this stage itself"),
                    ))
                }
                Some(u)
                    if u.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    Some(u.to_string())
                }
                Some(u) => {
                    return Err(Error::config(
                        "SLUICE_UPSTREAM",
                        format!("{u:?} is not a stage name (letters, digits, - and _)"),
                    ))
                }
            },
        };
        config.check_guards()?;
        Ok(config)
    }

    /// Validate the process environment for `stage`.
    pub fn from_env(stage: &str) -> Result<Self> {
        Self::from_raw(stage, RawConfig::from_env()?)
    }

    /// The loop guard and the ghost guard.
    pub fn check_guards(&self) -> Result<()> {
        for (var, loc) in [
            ("SLUICE_OUTPUT", &self.output),
            ("SLUICE_QUARANTINE", &self.quarantine),
        ] {
            if loc.overlaps(&self.input) {
                return Err(Error::config(
                    var,
                    format!("{loc} overlaps the input {}: every write would re-trigger this stage (loop guard)", self.input),
                ));
            }
        }
        if self.mode == Mode::Ghost {
            if self.prod_buckets.is_empty() {
                return Err(Error::config(
                    "SLUICE_PROD_BUCKETS",
                    "is required in ghost mode, to prove no output is in prod",
                ));
            }
            for (var, loc) in [
                ("SLUICE_OUTPUT", &self.output),
                ("SLUICE_QUARANTINE", &self.quarantine),
            ] {
                if self.prod_buckets.contains(&loc.bucket) {
                    return Err(Error::config(
                        var,
                        format!("{loc} is a prod bucket; a ghost stage may only write its own ghost bucket (ghost guard)"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("SLUICE_INPUT", "s3://landing/raw/"),
            ("SLUICE_OUTPUT", "s3://validated"),
            ("SLUICE_DLQ", "file:/tmp/dlq.jsonl"),
            ("PATH", "/usr/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, val) in extra {
            v.retain(|(name, _)| name != k);
            v.push((k.to_string(), val.to_string()));
        }
        v
    }

    fn parse(extra: &[(&str, &str)]) -> Result<Config> {
        Config::from_raw("ingest", RawConfig::from_vars(vars(extra))?)
    }

    #[test]
    fn parses_a_complete_config_with_defaults() {
        let c = parse(&[
            ("SLUICE_RETRY_MAX_ATTEMPTS", "7"),
            ("SLUICE_S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::Prod);
        assert_eq!(c.store, StoreKind::S3);
        assert_eq!(
            c.input,
            Location {
                bucket: "landing".into(),
                prefix: "raw/".into()
            }
        );
        assert_eq!(
            c.output,
            Location {
                bucket: "validated".into(),
                prefix: "".into()
            }
        );
        assert_eq!(c.quarantine.prefix, "_quarantine/ingest/");
        assert_eq!(c.dlq, Sink::File("/tmp/dlq.jsonl".into()));
        assert_eq!(c.retry.max_attempts, 7);
        assert!(c.s3_force_path_style);
        assert_eq!(c.part_size_bytes, 8 * 1024 * 1024);
        assert_eq!(c.max_record_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn memory_budget_is_parsed_and_bounded_below() {
        assert_eq!(parse(&[]).unwrap().memory_budget_bytes, 48 << 20);
        let c = parse(&[("SLUICE_MEMORY_BUDGET_BYTES", "16777216")]).unwrap();
        assert_eq!(c.memory_budget_bytes, 16 << 20);
        let err = parse(&[("SLUICE_MEMORY_BUDGET_BYTES", "1000")]).unwrap_err();
        assert!(
            err.to_string().contains("SLUICE_MEMORY_BUDGET_BYTES"),
            "{err}"
        );
    }

    #[test]
    fn max_record_bytes_is_parsed_and_bounded_below() {
        let c = parse(&[("SLUICE_MAX_RECORD_BYTES", "1_048_576")]).unwrap();
        assert_eq!(c.max_record_bytes, 1 << 20);
        for bad in ["0", "63", "-1", "4MiB"] {
            let err = parse(&[("SLUICE_MAX_RECORD_BYTES", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("SLUICE_MAX_RECORD_BYTES"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            parse(&[("SLUICE_MAX_RECORD_BYTES", "64")])
                .unwrap()
                .max_record_bytes,
            64
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("SLUICE_OUTPT", "x")], "SLUICE_OUTPT"),
            (&[("SLUICE_MODE", "staging")], "SLUICE_MODE"),
            (&[("SLUICE_STORE", "gcs")], "SLUICE_STORE"),
            (&[("SLUICE_OUTPUT", "s3://Bad_Bucket/x")], "SLUICE_OUTPUT"),
            (&[("SLUICE_DLQ", "queue-name")], "SLUICE_DLQ"),
            (
                &[("SLUICE_RETRY_MAX_ATTEMPTS", "three")],
                "SLUICE_RETRY_MAX_ATTEMPTS",
            ),
            (
                &[("SLUICE_RETRY_MAX_ATTEMPTS", "0")],
                "SLUICE_RETRY_MAX_ATTEMPTS",
            ),
            (
                &[("SLUICE_PART_SIZE_BYTES", "1024")],
                "SLUICE_PART_SIZE_BYTES",
            ),
            (
                &[("SLUICE_S3_FORCE_PATH_STYLE", "maybe")],
                "SLUICE_S3_FORCE_PATH_STYLE",
            ),
            (&[("SLUICE_ALERTS", "topic")], "SLUICE_ALERTS"),
            (&[("SLUICE_QUEUE", "sluice-ingest")], "SLUICE_QUEUE"),
        ];
        for (extra, var) in cases {
            let err = parse(extra).unwrap_err();
            assert!(err.to_string().contains(var), "{extra:?}: {err}");
        }
        let err = Config::from_raw(
            "ingest",
            RawConfig::from_vars([("SLUICE_OUTPUT", "s3://out")]).unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("SLUICE_INPUT: is required"),
            "{err}"
        );
    }

    #[test]
    fn loop_guard_refuses_self_triggering_output() {
        let err = parse(&[("SLUICE_OUTPUT", "s3://landing/raw/validated/")]).unwrap_err();
        assert!(err.to_string().contains("loop guard"), "{err}");
        let err = parse(&[("SLUICE_QUARANTINE", "s3://landing/")]).unwrap_err();
        assert!(err.to_string().contains("SLUICE_QUARANTINE"), "{err}");
        // Same bucket, disjoint prefixes: fine.
        parse(&[("SLUICE_OUTPUT", "s3://landing/validated/")]).unwrap();
    }

    #[test]
    fn ghost_guard_refuses_prod_outputs() {
        let err = parse(&[("SLUICE_MODE", "ghost")]).unwrap_err();
        assert!(err.to_string().contains("SLUICE_PROD_BUCKETS"), "{err}");
        let err = parse(&[
            ("SLUICE_MODE", "ghost"),
            ("SLUICE_PROD_BUCKETS", "landing, validated"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("ghost guard"), "{err}");
        let ok = parse(&[
            ("SLUICE_MODE", "ghost"),
            ("SLUICE_PROD_BUCKETS", "landing,validated"),
            ("SLUICE_OUTPUT", "s3://ghost-validated/"),
        ])
        .unwrap();
        assert_eq!(ok.mode, Mode::Ghost);
    }
}
