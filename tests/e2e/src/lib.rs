//! Helpers for the end-to-end tests: the deployment under test (read from
//! `terraform output -json` of `infra/envs/local`), SDK clients pointed at
//! LocalStack, waits on the pipeline's commit points (manifests), and a
//! fault-injecting S3 proxy ([`FlakyS3`]) and a seeded one for every AWS
//! call ([`fault::FaultProxy`]).
//!
//! Run by `make e2e` (part of `make test`), which starts LocalStack, deploys
//! the real bootstrap binaries with Terraform and sets `SLUICE_E2E_OUTPUTS`.
//! Without a deployment the tests fail: they are never skipped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::lineage::SourceIdentity;
use sluice::runner::{manifest_key_in, Manifest};
use sluice::store::s3::S3Store;
use sluice::store::{ObjectMeta, ObjectStore, ObjectStoreExt, DEFAULT_PART_SIZE};

pub mod fault;
pub use fault::{Fault, FaultFigures, FaultProxy};

/// A key prefix under `raw/trips/` no earlier run against the same
/// LocalStack has used.
pub fn run_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("raw/trips/e2e-{test}-{nanos:x}/")
}

/// How long a file may take to flow through a stage in LocalStack.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(90);

pub use sluice::deployment::{Buckets, GhostOut, StageOut};

/// What `terraform output -json` of `infra/envs/local` says.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// LocalStack's endpoint.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Buckets.
    pub buckets: Buckets,
    /// Prod stages by name.
    pub stages: BTreeMap<String, StageOut>,
    /// The ghost stages, if deployed.
    pub ghost: Option<GhostOut>,
}

impl Deployment {
    /// Read the deployment from the file named by `SLUICE_E2E_OUTPUTS`.
    pub fn load() -> Result<Self> {
        let path = std::env::var("SLUICE_E2E_OUTPUTS").map_err(|_| {
            anyhow!("SLUICE_E2E_OUTPUTS is not set: run the end-to-end tests with `make e2e`, which deploys to LocalStack first")
        })?;
        let d = sluice::deployment::Deployment::load(std::path::Path::new(&path))?;
        Ok(Deployment {
            endpoint: d.endpoint.ok_or_else(|| {
                anyhow!("{path}: no endpoint output: not a LocalStack deployment")
            })?,
            region: d.region.unwrap_or_else(|| "us-east-1".into()),
            buckets: d.buckets,
            stages: d.stages,
            ghost: d.ghost,
        })
    }

    /// A prod stage.
    pub fn stage(&self, name: &str) -> &StageOut {
        &self.stages[name]
    }
}

/// Clients for one test.
pub struct Ctx {
    /// The deployment.
    pub dep: Deployment,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// Lambda.
    pub lambda: aws_sdk_lambda::Client,
    /// The same object-store code the stages use, over LocalStack S3.
    pub store: Arc<dyn ObjectStore>,
}

impl Ctx {
    /// Connect to the deployment (and say what it is, once per process).
    pub async fn new() -> Result<Self> {
        let dep = Deployment::load()?;
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(sluice::aws::http_client())
            .endpoint_url(&dep.endpoint)
            .region(aws_config::Region::new(dep.region.clone()))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "e2e",
            ))
            .load()
            .await;
        let s3 = sluice::aws::s3_client(&conf, true);
        let ctx = Ctx {
            store: Arc::new(S3Store::new(s3.clone(), DEFAULT_PART_SIZE)),
            s3,
            sqs: aws_sdk_sqs::Client::new(&conf),
            lambda: aws_sdk_lambda::Client::new(&conf),
            dep,
        };
        Ok(ctx)
    }

    /// Replace a function's environment ($LATEST) and wait for the update.
    pub async fn set_env(
        &self,
        name: &str,
        vars: std::collections::HashMap<String, String>,
    ) -> Result<()> {
        self.lambda
            .update_function_configuration()
            .function_name(name)
            .environment(
                aws_sdk_lambda::types::Environment::builder()
                    .set_variables(Some(vars))
                    .build(),
            )
            .send()
            .await?;
        self.wait_updated(name).await
    }

    /// A function's environment ($LATEST).
    pub async fn get_env(&self, name: &str) -> Result<std::collections::HashMap<String, String>> {
        let conf = self
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await?;
        Ok(conf
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default())
    }

    /// Wait until a function's configuration update has finished.
    pub async fn wait_updated(&self, name: &str) -> Result<()> {
        for _ in 0..100 {
            let c = self
                .lambda
                .get_function_configuration()
                .function_name(name)
                .send()
                .await?;
            if c.last_update_status() != Some(&aws_sdk_lambda::types::LastUpdateStatus::InProgress)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("{name}: configuration update did not finish")
    }

    /// The version the `live` alias points at.
    pub async fn live_version(&self, name: &str) -> Result<String> {
        let alias = self
            .lambda
            .get_alias()
            .function_name(name)
            .name("live")
            .send()
            .await?;
        alias
            .function_version()
            .map(String::from)
            .ok_or_else(|| anyhow!("{name}: live alias without a version"))
    }

    /// Point `live` at `version`.
    pub async fn point_live(&self, name: &str, version: &str) -> Result<()> {
        self.lambda
            .update_alias()
            .function_name(name)
            .name("live")
            .function_version(version)
            .send()
            .await?;
        Ok(())
    }

    /// Deploy a configuration the way a release does: set it on $LATEST,
    /// publish a version, move `live` to it. Returns the new version.
    pub async fn release_env(
        &self,
        name: &str,
        vars: std::collections::HashMap<String, String>,
    ) -> Result<String> {
        self.set_env(name, vars).await?;
        let published = self
            .lambda
            .publish_version()
            .function_name(name)
            .send()
            .await?;
        let version = published
            .version()
            .map(String::from)
            .ok_or_else(|| anyhow!("{name}: publish returned no version"))?;
        self.point_live(name, &version).await?;
        Ok(version)
    }

    /// LocalStack's version and edition, from its health endpoint.
    pub async fn localstack_info(&self) -> Result<String> {
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let uri: hyper::Uri = format!("{}/_localstack/health", self.dep.endpoint).parse()?;
        let resp = client
            .get(uri)
            .await
            .with_context(|| format!("LocalStack is not reachable at {}", self.dep.endpoint))?;
        let body = resp.into_body().collect().await?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        Ok(format!(
            "LocalStack {} ({} edition) at {}",
            v["version"].as_str().unwrap_or("?"),
            v["edition"].as_str().unwrap_or("?"),
            self.dep.endpoint
        ))
    }

    /// Upload bytes with the SDK, as a producer would; returns the new etag.
    pub async fn upload(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<String> {
        let out = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .with_context(|| format!("uploading s3://{bucket}/{key}"))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    /// The manifest `stage` commits for an input, once it is there.
    pub async fn wait_manifest(
        &self,
        stage: &str,
        input_bucket: &str,
        input_key: &str,
        want: impl Fn(&Manifest) -> bool,
    ) -> Result<Manifest> {
        let st = self.stage_like(stage)?;
        let (bucket, prefix) = split_uri(&st.output)?;
        let source = SourceIdentity::of_key(input_bucket, input_key);
        let key = manifest_key_in(&prefix, stage_name(stage), &source);
        let started = Instant::now();
        loop {
            if let Ok(bytes) = self.store.get_bytes(&bucket, &key).await {
                let m: Manifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("manifest s3://{bucket}/{key}"))?;
                if want(&m) {
                    return Ok(m);
                }
            }
            if started.elapsed() > STAGE_TIMEOUT {
                let dlq = self.dlq_messages(stage).await.unwrap_or_default();
                bail!(
                    "{stage}: no manifest s3://{bucket}/{key} for s3://{input_bucket}/{input_key} after {:?}; its DLQ holds {} message(s): {:?}",
                    STAGE_TIMEOUT,
                    dlq.len(),
                    dlq
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// A prod stage (`curate`) or a ghost one (`ghost:curate`).
    pub fn stage_like(&self, stage: &str) -> Result<&StageOut> {
        match stage.strip_prefix("ghost:") {
            Some(name) => self
                .dep
                .ghost
                .as_ref()
                .and_then(|g| g.stages.get(name))
                .ok_or_else(|| {
                    anyhow!("no ghost {name} deployed (make deploy-local GHOST_STAGES={name})")
                }),
            None => self
                .dep
                .stages
                .get(stage)
                .ok_or_else(|| anyhow!("no stage {stage}")),
        }
    }

    /// Everything in a stage's DLQ right now (received, then made visible
    /// again at once so other readers still see it).
    pub async fn dlq_messages(&self, stage: &str) -> Result<Vec<serde_json::Value>> {
        let url = self.stage_like(stage)?.dlq_url.clone();
        let mut seen = BTreeMap::new();
        for _ in 0..5 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .wait_time_seconds(0)
                .send()
                .await?;
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let body = m.body.unwrap_or_default();
                let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                seen.insert(m.message_id.unwrap_or_default(), v);
            }
        }
        Ok(seen.into_values().collect())
    }

    /// Wait until a queue has no visible or in-flight messages.
    pub async fn wait_queue_drained(&self, url: &str) -> Result<()> {
        self.wait_queue_drained_within(url, STAGE_TIMEOUT).await
    }

    /// A queue's visibility timeout: how long a message that was received
    /// and neither deleted nor given back stays in flight.
    pub async fn visibility_timeout(&self, url: &str) -> Result<Duration> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
            .send()
            .await?;
        let secs = out
            .attributes
            .unwrap_or_default()
            .get(&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{url} has no VisibilityTimeout"))?;
        Ok(Duration::from_secs(secs))
    }

    /// What the stage functions and LocalStack's event source mappings said
    /// in the last `minutes` (`scripts/e2e-diagnose.py`), printed to stderr.
    pub fn diagnose(&self, minutes: u32) {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let outputs = std::env::var("SLUICE_E2E_OUTPUTS").unwrap_or_default();
        let run = std::process::Command::new(repo.join(".venv/localstack/bin/python"))
            .arg(repo.join("scripts/e2e-diagnose.py"))
            .arg(&outputs)
            .arg(minutes.to_string())
            .status();
        if let Err(e) = run {
            eprintln!("e2e: could not run scripts/e2e-diagnose.py: {e}");
        }
    }

    /// Wait until a queue has no visible or in-flight messages, at most `limit`.
    pub async fn wait_queue_drained_within(&self, url: &str, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let out = self
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                )
                .send()
                .await?;
            let attrs = out.attributes.unwrap_or_default();
            let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
                attrs
                    .get(&name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let visible =
                count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages);
            let in_flight = count(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            );
            if visible + in_flight == 0 {
                return Ok(());
            }
            if started.elapsed() > limit {
                // In flight: received and neither deleted nor given back (a
                // batch item failure, or an invocation the event source
                // mapping saw fail); visible: not received at all.
                bail!(
                    "{url} still holds {} message(s) after {limit:?}: {visible} visible, {in_flight} in flight",
                    visible + in_flight
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Objects under a prefix, keyed by key.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<BTreeMap<String, ObjectMeta>> {
        Ok(self
            .store
            .list(bucket, prefix)
            .await?
            .into_iter()
            .map(|m| (m.key.clone(), m))
            .collect())
    }

    /// Rows of a Parquet object, with its Arrow schema.
    pub async fn read_parquet(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(arrow::datatypes::SchemaRef, usize)> {
        let bytes = self.store.get_bytes(bucket, key).await?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        let schema = reader.schema().clone();
        let mut rows = 0;
        for batch in reader.build()? {
            rows += batch?.num_rows();
        }
        Ok((schema, rows))
    }
}

fn stage_name(stage: &str) -> &str {
    stage.strip_prefix("ghost:").unwrap_or(stage)
}

/// `s3://bucket/prefix` → (bucket, prefix).
pub fn split_uri(uri: &str) -> Result<(String, String)> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| anyhow!("not an s3:// URI: {uri}"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Generated trips data (pickups over 3 days from 2024-01-01).
pub fn trips(
    rows: u64,
    seed: u64,
    bad_ratio: f64,
    jsonl: bool,
) -> Result<(Vec<u8>, sluice::sample::GenStats)> {
    trips_over(rows, seed, bad_ratio, jsonl, 3)
}

/// Generated trips data with pickups over `days` days from 2024-01-01 (one
/// validated partition per day).
pub fn trips_over(
    rows: u64,
    seed: u64,
    bad_ratio: f64,
    jsonl: bool,
    days: u32,
) -> Result<(Vec<u8>, sluice::sample::GenStats)> {
    let opts = sluice::sample::TripsOptions {
        rows,
        seed,
        bad_ratio,
        format: if jsonl {
            sluice::sample::Format::Jsonl
        } else {
            sluice::sample::Format::Csv
        },
        days,
        ..Default::default()
    };
    let mut out = Vec::new();
    let stats = sluice::sample::write_trips(&mut out, &opts, &mut |_| {})?;
    Ok((out, stats))
}

/// Gzip bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

/// An S3 proxy in front of LocalStack that answers the first `failures`
/// PUTs into one bucket with `503 SlowDown`, then forwards everything.
pub struct FlakyS3 {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// 503s sent so far.
    pub injected: Arc<AtomicUsize>,
    /// PUTs into the bucket forwarded so far.
    pub forwarded_puts: Arc<AtomicUsize>,
}

impl FlakyS3 {
    /// Start the proxy on a free loopback port.
    pub async fn start(upstream: &str, bucket: &str, failures: usize) -> Result<FlakyS3> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let injected = Arc::new(AtomicUsize::new(0));
        let forwarded_puts = Arc::new(AtomicUsize::new(0));
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let upstream = upstream.trim_end_matches('/').to_string();
        let prefix = format!("/{bucket}/");
        let (inj, fwd) = (injected.clone(), forwarded_puts.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, prefix) = (client.clone(), upstream.clone(), prefix.clone());
                let (inj, fwd) = (inj.clone(), fwd.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (client, upstream, prefix) =
                            (client.clone(), upstream.clone(), prefix.clone());
                        let (inj, fwd) = (inj.clone(), fwd.clone());
                        async move {
                            forward(req, &client, &upstream, &prefix, failures, &inj, &fwd).await
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(FlakyS3 {
            url: format!("http://{addr}"),
            injected,
            forwarded_puts,
        })
    }
}

async fn forward(
    req: Request<Incoming>,
    client: &HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: &str,
    prefix: &str,
    failures: usize,
    injected: &AtomicUsize,
    forwarded_puts: &AtomicUsize,
) -> std::result::Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let is_put = parts.method == hyper::Method::PUT && parts.uri.path().starts_with(prefix);
    if is_put {
        let n = injected.fetch_add(1, Ordering::SeqCst);
        if n < failures {
            return Ok(Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("content-type", "application/xml")
                .body(Full::new(Bytes::from_static(
                    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate (injected by the e2e test).</Message></Error>",
                )))
                .expect("static response"));
        }
        injected.fetch_sub(1, Ordering::SeqCst);
        forwarded_puts.fetch_add(1, Ordering::SeqCst);
    }
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{upstream}{pq}"));
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let sent = match out.body(Full::new(body)) {
        Ok(req) => client.request(req).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match sent {
        Ok(resp) => {
            let (p, b) = resp.into_parts();
            let b = b.collect().await?.to_bytes();
            Ok(Response::from_parts(p, Full::new(b)))
        }
        Err(e) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Full::new(Bytes::from(format!("proxy: {e}"))))
            .expect("static response")),
    }
}
