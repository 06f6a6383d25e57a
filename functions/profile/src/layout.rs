//! The key layout the pipeline writes, `<prefix><dataset>/v<major>/dt=.../<id>.parquet`,
//! read back: which dataset, major version and partition a key belongs to,
//! where its profile goes, and where a bucket's prefix ends.

use sluice::{Error, Result};

/// What a curated key says about its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Dataset (first segment after the input prefix).
    pub dataset: String,
    /// Major version (`v<major>` segment).
    pub major: u64,
    /// The `dt=...` segment, if any.
    pub partition: Option<String>,
    /// The key relative to the input prefix.
    pub relative: String,
}

impl Target {
    /// Parse `key` (under `input_prefix`); `location` names it in errors.
    pub fn parse(input_prefix: &str, key: &str, location: &str) -> Result<Self> {
        let relative = key.strip_prefix(input_prefix).unwrap_or(key);
        let segments: Vec<&str> = relative.split('/').collect();
        let malformed = || {
            Error::invalid_input(
                location,
                "the key is not <dataset>/v<major>/[dt=<partition>/]<id>.parquet",
            )
        };
        let (dataset, version, middle) = match segments.as_slice() {
            [dataset, version, middle @ .., _file] if !dataset.is_empty() => {
                (*dataset, *version, middle)
            }
            _ => return Err(malformed()),
        };
        let major = version
            .strip_prefix('v')
            .and_then(|m| m.parse().ok())
            .ok_or_else(malformed)?;
        Ok(Target {
            dataset: dataset.to_string(),
            major,
            partition: middle
                .iter()
                .find(|s| s.starts_with("dt="))
                .map(|s| s.to_string()),
            relative: relative.to_string(),
        })
    }

    /// The profile's key relative to the output prefix.
    pub fn profile_relative(&self) -> String {
        let stem = self
            .relative
            .strip_suffix(".parquet")
            .unwrap_or(&self.relative);
        format!("{stem}.profile.json")
    }

    /// Where every profile of this dataset and major version lives, relative
    /// to the output prefix.
    pub fn series_relative(&self) -> String {
        format!("{}/v{}/", self.dataset, self.major)
    }
}

/// The partition segment (`dt=...`) of a key, if any.
pub fn partition_of(key: &str) -> Option<&str> {
    key.split('/').find(|s| s.starts_with("dt="))
}

/// The prefix before `<dataset>/v<major>/` in a key written by a stage
/// (the stage's output prefix), or `""` if the key does not show it.
pub fn prefix_before_dataset(key: &str, dataset: &str) -> String {
    let segments: Vec<&str> = key.split('/').collect();
    let found = (0..segments.len().saturating_sub(1)).rev().find(|&i| {
        segments[i] == dataset
            && segments[i + 1]
                .strip_prefix('v')
                .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
    });
    match found {
        Some(0) | None => String::new(),
        Some(i) => format!("{}/", segments[..i].join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_layout() {
        let t =
            Target::parse("cur/", "cur/trips/v1/dt=2024-01-15/abc.parquet", "s3://b/k").unwrap();
        assert_eq!(t.dataset, "trips");
        assert_eq!(t.major, 1);
        assert_eq!(t.partition.as_deref(), Some("dt=2024-01-15"));
        assert_eq!(
            t.profile_relative(),
            "trips/v1/dt=2024-01-15/abc.profile.json"
        );
        assert_eq!(t.series_relative(), "trips/v1/");
        let flat = Target::parse("", "trips/v2/abc.parquet", "s3://b/k").unwrap();
        assert_eq!((flat.major, flat.partition), (2, None));
        for bad in [
            "abc.parquet",
            "trips/abc.parquet",
            "trips/x1/abc.parquet",
            "/v1/a.parquet",
        ] {
            let err = Target::parse("", bad, "s3://b/k").unwrap_err().to_string();
            assert!(err.contains("s3://b/k"), "{err}");
        }
    }

    #[test]
    fn finds_prefixes_and_partitions() {
        assert_eq!(
            prefix_before_dataset("trips/v1/dt=x/a.parquet", "trips"),
            ""
        );
        assert_eq!(
            prefix_before_dataset("val/x/trips/v1/dt=x/a.parquet", "trips"),
            "val/x/"
        );
        assert_eq!(
            prefix_before_dataset("trips/v1/trips/v2/a.parquet", "trips"),
            "trips/v1/"
        );
        assert_eq!(prefix_before_dataset("other/a.parquet", "trips"), "");
        assert_eq!(
            partition_of("p/trips/v1/dt=2024-01/a.json"),
            Some("dt=2024-01")
        );
    }
}
