//! A deployed pipeline as Terraform describes it: the JSON of
//! `terraform output -json` for `infra/envs/<env>` (what `scripts/infra.sh
//! output <env>` prints). The CLI's AWS commands and the end-to-end tests
//! read it, so neither needs names spelled out by hand.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The buckets of the pipeline.
#[derive(Debug, Clone, Deserialize)]
pub struct Buckets {
    /// Producers write `raw/<dataset>/...` here.
    pub landing: String,
    /// Ingest's output.
    pub validated: String,
    /// Curate's output.
    pub curated: String,
    /// Profile's output.
    pub profiles: String,
    /// Rejected rows.
    pub quarantine: String,
}

/// One deployed stage.
#[derive(Debug, Clone, Deserialize)]
pub struct StageOut {
    /// Function name.
    pub function_name: String,
    /// Its trigger queue.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
    /// `s3://bucket/prefix` it reads.
    pub input: String,
    /// `s3://bucket/prefix` it writes.
    pub output: String,
    /// `s3://bucket/prefix` of its quarantined rows.
    #[serde(default)]
    pub quarantine: Option<String>,
}

/// The ghost deployment beside prod.
#[derive(Debug, Clone, Deserialize)]
pub struct GhostOut {
    /// The ghost bucket.
    pub bucket: String,
    /// Ghost stages by name.
    pub stages: BTreeMap<String, StageOut>,
}

/// A deployed pipeline.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Where it was read from (for messages).
    pub source: String,
    /// The service endpoint (LocalStack); `None` on AWS.
    pub endpoint: Option<String>,
    /// Region, when the environment states one.
    pub region: Option<String>,
    /// Buckets.
    pub buckets: Buckets,
    /// Prod stages by name.
    pub stages: BTreeMap<String, StageOut>,
    /// The ghost stages, if deployed.
    pub ghost: Option<GhostOut>,
}

impl Deployment {
    /// Read `terraform output -json` saved in `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse `terraform output -json`; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> anyhow::Result<Self> {
        let raw: BTreeMap<String, Value> = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("{source}: not the JSON of `terraform output -json`: {e}")
        })?;
        let value = |name: &str| -> Value {
            raw.get(name)
                .and_then(|o| o.get("value"))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let required = |name: &str| -> anyhow::Result<Value> {
            match value(name) {
                Value::Null => Err(anyhow::anyhow!(
                    "{source}: no output {name:?} (is this `terraform output -json` of infra/envs/<env>?)"
                )),
                v => Ok(v),
            }
        };
        fn field<T: serde::de::DeserializeOwned>(
            source: &str,
            name: &str,
            v: Value,
        ) -> anyhow::Result<T> {
            serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{source}: output {name:?}: {e}"))
        }
        let ghost = value("ghost");
        Ok(Deployment {
            source: source.to_string(),
            endpoint: field(source, "endpoint", value("endpoint"))?,
            region: field(source, "region", value("region"))?,
            buckets: field(source, "buckets", required("buckets")?)?,
            stages: field(source, "stages", required("stages")?)?,
            ghost: if ghost.is_null() {
                None
            } else {
                Some(field(source, "ghost", ghost)?)
            },
        })
    }

    /// A prod stage, or an error naming the deployed ones.
    pub fn stage(&self, name: &str) -> anyhow::Result<&StageOut> {
        self.stages.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no stage {name:?} (deployed: {})",
                self.source,
                self.stages.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// A ghost stage, or an error saying none is deployed.
    pub fn ghost_stage(&self, name: &str) -> anyhow::Result<&StageOut> {
        self.ghost
            .as_ref()
            .and_then(|g| g.stages.get(name))
            .ok_or_else(|| anyhow::anyhow!("{}: no ghost stage {name:?} is deployed", self.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(v: Value) -> String {
        let m: serde_json::Map<String, Value> = v
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!({"value": v})))
            .collect();
        Value::Object(m).to_string()
    }

    fn stage() -> Value {
        serde_json::json!({"function_name": "f", "queue_url": "q", "dlq_url": "d",
            "input": "s3://a/", "output": "s3://b/", "alias_arn": "ignored"})
    }

    #[test]
    fn parses_local_and_aws_outputs() {
        let buckets = serde_json::json!({"landing": "l", "validated": "v", "curated": "c",
            "profiles": "p", "quarantine": "q"});
        let local = out(
            serde_json::json!({"endpoint": "http://127.0.0.1:4566", "region": "us-east-1",
            "buckets": buckets, "stages": {"ingest": stage()},
            "ghost": {"bucket": "g", "stages": {"curate": stage()}}}),
        );
        let d = Deployment::parse(&local, "local.json").unwrap();
        assert_eq!(d.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(d.stage("ingest").unwrap().function_name, "f");
        assert_eq!(d.ghost_stage("curate").unwrap().output, "s3://b/");
        let e = d.stage("curate").unwrap_err().to_string();
        assert!(e.contains("no stage \"curate\" (deployed: ingest)"), "{e}");

        let aws = out(serde_json::json!({"buckets": buckets, "stages": {}, "ghost": null}));
        let d = Deployment::parse(&aws, "dev.json").unwrap();
        assert!(d.endpoint.is_none() && d.ghost.is_none());
        assert!(d.ghost_stage("curate").is_err());
    }

    #[test]
    fn names_the_file_and_the_missing_output() {
        let e = Deployment::parse("{}", "x.json").unwrap_err().to_string();
        assert!(e.contains("x.json: no output \"buckets\""), "{e}");
        let e = Deployment::parse("not json", "x.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.json: not the JSON"), "{e}");
    }
}
