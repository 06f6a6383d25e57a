//! The whole prod pipeline in LocalStack with every AWS call of its three
//! functions (S3, SQS, SNS) going through a seeded fault proxy that fails
//! 20% of them (503 SlowDown, 500 InternalError, connection reset, response
//! lost after the request took effect, 3 s delay): once the system is quiet,
//! every landed key's outputs at every stage are exactly what
//! `sluice run --local` makes of its final version, the counts balance,
//! nothing of a replaced version or a lost race is left, and the DLQ holds
//! exactly the corrupt files.
//!
//! `FAULT_SEED` picks another fault schedule (the default is fixed);
//! `FAULT_RATE` another share of failing requests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use sluice::commit::ManifestState;
use sluice::lineage::{keys, short_hash, SourceIdentity};
use sluice::runner::{manifest_key_in, Manifest};
use sluice::store::{LocalStore, ObjectStore, ObjectStoreExt};
use sluice_e2e::{gzip, run_prefix, split_uri, trips_over, Ctx, Fault, FaultFigures, FaultProxy};

/// The stages whose functions are routed through the proxy, in order.
const STAGES: [&str; 3] = ["ingest", "curate", "profile"];
/// The default fault schedule.
const DEFAULT_SEED: u64 = 20_240_101;
/// How long the pipeline may take to become quiet before the test fails
/// (a bound, not a measurement: the figures print how long it took).
const QUIET_DEADLINE: Duration = Duration::from_secs(25 * 60);
/// Consecutive quiet polls (every [`POLL`]) that count as quiet.
const QUIET_POLLS: usize = 4;
const POLL: Duration = Duration::from_secs(3);

/// What one upload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A file seen once.
    Good,
    /// The same bytes as an earlier upload of the same key.
    Duplicate,
    /// The same bytes as another key.
    Copy,
    /// The first of two versions of one key.
    Older,
    /// The second, with fewer partitions.
    Newer,
    /// A file the ingest stage must dead-letter.
    Corrupt,
}

#[derive(Debug, Clone)]
struct Upload {
    key: String,
    body: Vec<u8>,
    role: Role,
    /// Generator figures of the body (None for corrupt files).
    stats: Option<sluice::sample::GenStats>,
}

/// The 30 uploads, in order, and the number of seconds to wait before each.
fn uploads(prefix: &str) -> Result<Vec<(u64, Upload)>> {
    let mut good = Vec::new();
    for i in 0..21u64 {
        let (ext, jsonl, gz) = match i % 3 {
            0 => ("csv", false, false),
            1 => ("csv.gz", false, true),
            _ => ("jsonl", true, false),
        };
        // One file with half its rows bad: its profiles breach the
        // quarantine-ratio check, so profile publishes alerts (SNS).
        let bad = if i == 7 { 0.5 } else { 0.03 };
        let days = 1 + (i % 3) as u32;
        let (body, stats) = trips_over(150 + 37 * i, 1000 + i, bad, jsonl, days)?;
        let body = if gz { gzip(&body) } else { body };
        good.push(Upload {
            key: format!("{prefix}f{i:02}.{ext}"),
            body,
            role: Role::Good,
            stats: Some(stats),
        });
    }
    let overlap = format!("{prefix}overlap.csv");
    let (v1, s1) = trips_over(900, 77, 0.05, false, 3)?;
    let (v2, s2) = trips_over(400, 78, 0.05, false, 1)?;
    let (full, _) = trips_over(300, 79, 0.0, false, 3)?;
    let full = gzip(&full);
    let corrupt = [
        (
            format!("{prefix}corrupt-not-gzip.csv.gz"),
            b"VendorID,tpep_pickup_datetime\n1,2024-01-01 00:00:00\n".to_vec(),
        ),
        (
            format!("{prefix}corrupt-header.csv"),
            b"foo,bar,baz\n1,2,3\n4,5,6\n".to_vec(),
        ),
        (
            format!("{prefix}corrupt-truncated.csv.gz"),
            full[..full.len() / 3].to_vec(),
        ),
    ]
    .map(|(key, body)| Upload {
        key,
        body,
        role: Role::Corrupt,
        stats: None,
    });
    let again = |u: &Upload, role: Role| Upload { role, ..u.clone() };
    let mut plan = vec![(
        0,
        Upload {
            key: overlap.clone(),
            body: v1,
            role: Role::Older,
            stats: Some(s1),
        },
    )];
    for (i, u) in good.iter().enumerate().take(10) {
        plan.push((0, u.clone()));
        if i == 0 {
            plan.push((0, again(u, Role::Duplicate)));
        }
    }
    plan.push((0, corrupt[0].clone()));
    // Seconds after the first: v1 is in flight somewhere in the pipeline.
    plan.push((
        3,
        Upload {
            key: overlap,
            body: v2,
            role: Role::Newer,
            stats: Some(s2),
        },
    ));
    for u in good.iter().skip(10) {
        plan.push((0, u.clone()));
    }
    plan.push((0, corrupt[1].clone()));
    plan.push((0, again(&good[1], Role::Duplicate)));
    plan.push((
        0,
        Upload {
            key: format!("{prefix}copy-of-f03.csv"),
            role: Role::Copy,
            ..good[3].clone()
        },
    ));
    plan.push((0, corrupt[2].clone()));
    // Later: the first copy has long been processed.
    plan.push((5, again(&good[2], Role::Duplicate)));
    ensure!(plan.len() == 30, "the plan has {} uploads", plan.len());
    Ok(plan)
}

/// A function's configuration before the test routed it through the proxy.
struct Saved {
    name: String,
    env: HashMap<String, String>,
    live: String,
}

/// Route a stage's function through `url`: its environment with
/// `AWS_ENDPOINT_URL` set (no per-service override left to bypass it),
/// published, with `live` moved to it.
async fn route(ctx: &Ctx, stage: &str, url: &str, saved: &mut Vec<Saved>) -> Result<String> {
    let name = ctx.dep.stage(stage).function_name.clone();
    let env = ctx.get_env(&name).await?;
    let live = ctx.live_version(&name).await?;
    saved.push(Saved {
        name: name.clone(),
        env: env.clone(),
        live,
    });
    let mut vars: HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ENDPOINT_URL"))
        .collect();
    vars.insert("AWS_ENDPOINT_URL".into(), url.to_string());
    ctx.release_env(&name, vars).await
}

/// Put every function back as it was (`live` first: that is what the
/// queues invoke), whatever happened.
async fn restore(ctx: &Ctx, saved: &[Saved]) -> Result<()> {
    let mut errors = Vec::new();
    for s in saved {
        if let Err(e) = ctx.point_live(&s.name, &s.live).await {
            errors.push(format!("{}: live -> {}: {e:#}", s.name, s.live));
        }
        if let Err(e) = ctx.set_env(&s.name, s.env.clone()).await {
            errors.push(format!("{}: environment: {e:#}", s.name));
        }
    }
    ensure!(errors.is_empty(), "restoring the functions: {errors:?}");
    Ok(())
}

/// Every message in a queue, by message id, with its receive count before
/// this look (received, then made visible again at once).
async fn queue_contents(ctx: &Ctx, url: &str) -> Result<BTreeMap<String, (Value, u64)>> {
    let mut seen = BTreeMap::new();
    let mut receipts = Vec::new();
    loop {
        let out = ctx
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(0)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await?;
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let body = m.body.unwrap_or_default();
            let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
            let received = m
                .attributes
                .as_ref()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(1);
            if let Some(r) = m.receipt_handle {
                receipts.push(r);
            }
            seen.insert(
                m.message_id.unwrap_or_default(),
                (v, received.saturating_sub(1)),
            );
        }
    }
    for chunk in receipts.chunks(10) {
        let mut req = ctx.sqs.change_message_visibility_batch().queue_url(url);
        for (i, r) in chunk.iter().enumerate() {
            req = req.entries(
                aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(0)
                    .build()?,
            );
        }
        req.send().await?;
    }
    Ok(seen)
}

/// Messages visible, in flight or delayed.
async fn queue_depth(ctx: &Ctx, url: &str) -> Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = ctx
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?;
    Ok(out
        .attributes
        .unwrap_or_default()
        .values()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum())
}

/// Where one pipeline keeps things: a store and the bucket (and prefix) of
/// each stage's outputs, plus how its bucket names map to the roles
/// (`landing`, `validated`, ...) the comparison uses.
struct Layout {
    store: Arc<dyn ObjectStore>,
    landing: String,
    /// (bucket, prefix) of each stage's output, in [`STAGES`] order.
    outputs: [(String, String); 3],
    /// Bucket name -> role.
    roles: BTreeMap<String, String>,
}

/// One stage's commit for one input, as the comparison sees it: every name
/// an environment chooses (bucket names, the ids in keys, ETags,
/// correlation ids) replaced by its role or a placeholder.
#[derive(Debug, Clone, PartialEq)]
struct Commit {
    state: ManifestState,
    clean: bool,
    rows_in: u64,
    rows_out: u64,
    rows_quarantined: u64,
    /// Normalised output name -> (rows or lines, digest of the normalised content).
    outputs: BTreeMap<String, (u64, String)>,
}

/// Everything derived from one landed key.
#[derive(Debug, Clone, PartialEq)]
struct Derived {
    ingest: Commit,
    /// By normalised validated output.
    curate: BTreeMap<String, Commit>,
    /// By normalised curated output.
    profile: BTreeMap<String, Commit>,
}

/// What was read on the way: the raw manifests and output refs.
#[derive(Debug, Default)]
struct Seen {
    /// Every output a commit in the tree lists, as (bucket, key).
    committed: BTreeSet<(String, String)>,
    /// Problems found (missing manifests, unbalanced counts...).
    problems: Vec<String>,
}

impl Layout {
    fn role(&self, bucket: &str, key: &str) -> String {
        let role = self
            .roles
            .get(bucket)
            .cloned()
            .unwrap_or_else(|| bucket.to_string());
        // The local layout keeps quarantines inside the output bucket.
        match key.strip_prefix("_quarantine/") {
            Some(rest) => format!("quarantine/{rest}"),
            None => format!("{role}/{key}"),
        }
    }

    /// Replace this layout's names in `text` with the roles and `stems`
    /// with `<id>`.
    fn normalise(&self, text: &str, stems: &[String]) -> String {
        let mut t = text.to_string();
        for s in stems {
            t = t.replace(s.as_str(), "<id>");
        }
        for (bucket, role) in &self.roles {
            t = t.replace(&format!("s3://{bucket}/"), &format!("s3://{role}/"));
        }
        t
    }

    async fn manifest(
        &self,
        stage: usize,
        input_bucket: &str,
        input_key: &str,
    ) -> Result<Option<Manifest>> {
        let (bucket, prefix) = &self.outputs[stage];
        let key = manifest_key_in(
            prefix,
            STAGES[stage],
            &SourceIdentity::of_key(input_bucket, input_key),
        );
        match self.store.head(bucket, &key).await? {
            None => Ok(None),
            Some(_) => {
                let bytes = self.store.get_bytes(bucket, &key).await?;
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} manifest s3://{bucket}/{key}", STAGES[stage])
                })?))
            }
        }
    }

    /// Rows (Parquet) or lines (JSONL) and a digest of the normalised
    /// content; a profile's JSON without its object reference and
    /// correlation id (they name this environment's buckets and ETags).
    async fn content(&self, bucket: &str, key: &str, stems: &[String]) -> Result<(u64, String)> {
        let bytes = self
            .store
            .get_bytes(bucket, key)
            .await
            .with_context(|| format!("reading s3://{bucket}/{key}"))?;
        if key.ends_with(".parquet") {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .with_context(|| format!("s3://{bucket}/{key} is not Parquet"))?
                    .build()?;
            let mut rows = Vec::new();
            for batch in reader {
                let batch = batch?;
                let opts = arrow::util::display::FormatOptions::default();
                let cols: Vec<_> = batch
                    .columns()
                    .iter()
                    .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts))
                    .collect::<std::result::Result<_, _>>()?;
                for i in 0..batch.num_rows() {
                    let cells: Vec<String> = cols.iter().map(|c| c.value(i).to_string()).collect();
                    rows.push(self.normalise(&cells.join("\u{1f}"), stems));
                }
            }
            let text = rows.join("\n");
            return Ok((rows.len() as u64, short_hash(&[text.as_bytes()], 16)));
        }
        if key.ends_with(".json") {
            let mut v: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("s3://{bucket}/{key} is not JSON"))?;
            if let Some(o) = v.as_object_mut() {
                o.remove("object");
                o.remove("correlation_id");
                // The volume check compares with the profiles already in
                // the bucket (other tests', earlier runs', and those of this
                // run written first): a function of the bucket's history,
                // not of this input.
                // So does the overall status, which a volume breach sets
                // (every other check is compared one by one).
                if let Some(checks) = o.get_mut("checks").and_then(|c| c.as_array_mut()) {
                    checks.retain(|c| c["check"] != "volume");
                }
                o.remove("status");
            }
            let rows = v["row_count"].as_u64().unwrap_or(0);
            let text = self.normalise(&v.to_string(), stems);
            return Ok((rows, short_hash(&[text.as_bytes()], 16)));
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| self.normalise(l, stems))
            .collect();
        Ok((
            lines.len() as u64,
            short_hash(&[lines.join("\n").as_bytes()], 16),
        ))
    }

    /// A stage's commit for an input, normalised; the manifest itself.
    async fn commit(
        &self,
        stage: usize,
        input_bucket: &str,
        input_key: &str,
        stems: &[String],
        seen: &mut Seen,
    ) -> Result<Option<(Commit, Manifest)>> {
        let Some(m) = self.manifest(stage, input_bucket, input_key).await? else {
            seen.problems.push(format!(
                "{}: no manifest for s3://{input_bucket}/{input_key}",
                STAGES[stage]
            ));
            return Ok(None);
        };
        let c = &m.counts;
        if c.rows_in != c.rows_out + c.rows_quarantined {
            seen.problems.push(format!(
                "{}: s3://{input_bucket}/{input_key}: rows in {} != out {} + quarantined {}",
                STAGES[stage], c.rows_in, c.rows_out, c.rows_quarantined
            ));
        }
        let mut stems = stems.to_vec();
        stems.push(m.source.output_id());
        stems.push(m.source.object_id());
        let mut outputs = BTreeMap::new();
        let (mut out_rows, mut q_rows) = (0, 0);
        for o in &m.outputs {
            let (n, digest) = self.content(&o.bucket, &o.key, &stems).await?;
            let name = self.normalise(&self.role(&o.bucket, &o.key), &stems);
            if name.starts_with("quarantine/") {
                q_rows += n;
            } else if !o.key.ends_with(".html") {
                out_rows += n;
            }
            seen.committed.insert((o.bucket.clone(), o.key.clone()));
            outputs.insert(name, (n, digest));
        }
        // Profiles count rows they read, not rows they write.
        if STAGES[stage] != "profile" && out_rows != c.rows_out {
            seen.problems.push(format!(
                "{}: s3://{input_bucket}/{input_key}: its outputs hold {out_rows} rows, the manifest says {}",
                STAGES[stage], c.rows_out
            ));
        }
        if q_rows != c.rows_quarantined {
            seen.problems.push(format!(
                "{}: s3://{input_bucket}/{input_key}: its quarantine holds {q_rows} lines, the manifest says {}",
                STAGES[stage], c.rows_quarantined
            ));
        }
        let commit = Commit {
            state: m.state,
            clean: m.clean,
            rows_in: c.rows_in,
            rows_out: c.rows_out,
            rows_quarantined: c.rows_quarantined,
            outputs,
        };
        Ok(Some((commit, m)))
    }

    /// Everything the three stages committed for a landed key.
    async fn derived(&self, key: &str, seen: &mut Seen) -> Result<Option<Derived>> {
        let Some((ingest, im)) = self.commit(0, &self.landing, key, &[], seen).await? else {
            return Ok(None);
        };
        let stems = vec![im.source.output_id(), im.source.object_id()];
        let mut curate = BTreeMap::new();
        let mut profile = BTreeMap::new();
        let (mut curate_in, mut profile_in) = (0, 0);
        for v in im.outputs.iter().filter(|o| o.key.ends_with(".parquet")) {
            let Some((c, cm)) = self.commit(1, &v.bucket, &v.key, &stems, seen).await? else {
                continue;
            };
            curate_in += c.rows_in;
            let mut cstems = stems.clone();
            cstems.extend([cm.source.output_id(), cm.source.object_id()]);
            for cu in cm.outputs.iter().filter(|o| o.key.ends_with(".parquet")) {
                let Some((p, _)) = self.commit(2, &cu.bucket, &cu.key, &cstems, seen).await? else {
                    continue;
                };
                profile_in += p.rows_in;
                profile.insert(self.normalise(&self.role(&cu.bucket, &cu.key), &cstems), p);
            }
            curate.insert(self.normalise(&self.role(&v.bucket, &v.key), &stems), c);
        }
        let curate_out: u64 = curate.values().map(|c| c.rows_out).sum();
        if curate_in != ingest.rows_out {
            seen.problems.push(format!(
                "{key}: ingest wrote {} rows, curate read {curate_in}",
                ingest.rows_out
            ));
        }
        if profile_in != curate_out {
            seen.problems.push(format!(
                "{key}: curate wrote {curate_out} rows, profile read {profile_in}"
            ));
        }
        Ok(Some(Derived {
            ingest,
            curate,
            profile,
        }))
    }
}

/// The final version of every key, processed by `sluice run --local` in a
/// fresh directory: the oracle.
async fn oracle(dir: &Path, finals: &BTreeMap<String, Upload>) -> Result<(Layout, String)> {
    let bin = std::env::var("SLUICE_BIN")
        .map_err(|_| anyhow!("SLUICE_BIN is not set (make e2e sets it to the sluice binary)"))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    for (key, u) in finals {
        let path = dir.join("landing").join(key);
        std::fs::create_dir_all(path.parent().context("a key with a folder")?)?;
        std::fs::write(&path, &u.body)?;
    }
    let out = std::process::Command::new(&bin)
        .args(["run", "--local"])
        .arg(dir)
        .output()
        .with_context(|| format!("running {bin} run --local"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "sluice run --local failed: {text}");
    let roles = ["landing", "validated", "curated", "profiles"]
        .map(|b| (b.to_string(), b.to_string()))
        .into_iter()
        .collect();
    let layout = Layout {
        store: Arc::new(LocalStore::new(dir)?),
        landing: "landing".into(),
        outputs: [
            ("validated".into(), String::new()),
            ("curated".into(), String::new()),
            ("profiles".into(), String::new()),
        ],
        roles,
    };
    Ok((layout, text))
}

fn localstack_layout(ctx: &Ctx) -> Result<Layout> {
    let b = &ctx.dep.buckets;
    let mut outputs = Vec::new();
    for s in STAGES {
        outputs.push(split_uri(&ctx.dep.stage(s).output)?);
    }
    let outputs: [(String, String); 3] = outputs.try_into().map_err(|_| anyhow!("three stages"))?;
    let roles = [
        (&b.landing, "landing"),
        (&b.validated, "validated"),
        (&b.curated, "curated"),
        (&b.profiles, "profiles"),
        (&b.quarantine, "quarantine"),
    ]
    .into_iter()
    .map(|(n, r)| (n.clone(), r.to_string()))
    .collect();
    Ok(Layout {
        store: ctx.store.clone(),
        landing: b.landing.clone(),
        outputs,
        roles,
    })
}

/// Whether the pipeline is done with every landed key: each final version
/// has its ingest commit, and every commit below it has its downstream ones.
async fn pending(
    layout: &Layout,
    finals: &BTreeMap<String, (Upload, String)>,
) -> Result<Vec<String>> {
    let mut waiting = Vec::new();
    for (key, (_, etag)) in finals {
        let Some(m) = layout.manifest(0, &layout.landing, key).await? else {
            waiting.push(format!("{key}: no ingest commit"));
            continue;
        };
        if m.source.etag.as_deref() != Some(etag.as_str()) || !m.clean {
            waiting.push(format!(
                "{key}: ingest commit of {:?} (clean {}), want {etag}",
                m.source.etag, m.clean
            ));
            continue;
        }
        for v in m.outputs.iter().filter(|o| o.key.ends_with(".parquet")) {
            match layout.manifest(1, &v.bucket, &v.key).await? {
                Some(c) if c.clean => {
                    for cu in c.outputs.iter().filter(|o| o.key.ends_with(".parquet")) {
                        match layout.manifest(2, &cu.bucket, &cu.key).await? {
                            Some(p) if p.clean => {}
                            _ => waiting
                                .push(format!("{key}: no clean profile commit of {}", cu.key)),
                        }
                    }
                }
                _ => waiting.push(format!("{key}: no clean curate commit of {}", v.key)),
            }
        }
    }
    Ok(waiting)
}

/// Wait until nothing is in flight: every queue empty (visible, in flight,
/// delayed) and every commit in place, for [`QUIET_POLLS`] polls in a row.
/// Queues that stay empty while commits are missing mean those inputs are
/// neither committed nor in flight: that fails at once, naming what the
/// DLQs received meanwhile.
async fn wait_quiet(
    ctx: &Ctx,
    layout: &Layout,
    finals: &BTreeMap<String, (Upload, String)>,
    proxy: &FaultProxy,
    dlqs_before: &BTreeMap<&str, BTreeSet<String>>,
) -> Result<Duration> {
    let started = Instant::now();
    let mut idle = 0;
    let mut last_report = Instant::now();
    loop {
        let mut depths = Vec::new();
        for s in STAGES {
            depths.push((s, queue_depth(ctx, &ctx.dep.stage(s).queue_url).await?));
        }
        let in_queues: u64 = depths.iter().map(|(_, n)| n).sum();
        let waiting = if in_queues == 0 {
            pending(layout, finals).await?
        } else {
            Vec::new()
        };
        idle = if in_queues == 0 { idle + 1 } else { 0 };
        if idle >= QUIET_POLLS {
            if waiting.is_empty() {
                return Ok(started.elapsed());
            }
            bail!(
                "after {:.0} s every queue is empty, but {} input(s) are neither committed nor in flight: {waiting:#?}\nmessages the DLQs received meanwhile (body, earlier receives):\n{}",
                started.elapsed().as_secs_f64(),
                waiting.len(),
                new_dlq_messages(ctx, dlqs_before).await?.join("\n")
            );
        }
        if started.elapsed() > QUIET_DEADLINE {
            bail!(
                "the pipeline was not quiet after {QUIET_DEADLINE:?}: queues {depths:?}; waiting for {waiting:?}; proxy so far: {}\nmessages the DLQs received meanwhile:\n{}",
                proxy.figures(),
                new_dlq_messages(ctx, dlqs_before).await?.join("\n")
            );
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            let f = proxy.figures();
            eprintln!(
                "faults: {:>4.0} s: queues {depths:?}, {} requests, {} faults so far",
                started.elapsed().as_secs_f64(),
                f.total_requests(),
                f.total_injected()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The messages each stage's DLQ received since `before`, one line each:
/// an envelope by its key and reason, a message SQS moved there after
/// `maxReceiveCount` deliveries by the object its event names.
async fn new_dlq_messages(
    ctx: &Ctx,
    before: &BTreeMap<&str, BTreeSet<String>>,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for s in STAGES {
        for (id, (m, received)) in queue_contents(ctx, &ctx.dep.stage(s).dlq_url).await? {
            if before.get(s).is_some_and(|b| b.contains(&id)) {
                continue;
            }
            let line = if m["envelope_version"].is_u64() {
                format!(
                    "{s} DLQ: envelope for {}: {}",
                    m["source"]["key"], m["error"]["message"]
                )
            } else {
                format!(
                    "{s} DLQ: no envelope (moved by SQS after {received} receives): {} {}",
                    m["detail-type"].as_str().unwrap_or("?"),
                    m["detail"]["object"]["key"]
                )
            };
            lines.push(line);
        }
    }
    Ok(lines)
}

/// Every non-bookkeeping object in the output buckets that descends from
/// one of `versions` (by correlation id, or by an id in its key).
async fn descendants(
    ctx: &Ctx,
    versions: &[SourceIdentity],
) -> Result<BTreeMap<(String, String), String>> {
    let b = &ctx.dep.buckets;
    let by_correlation: BTreeMap<String, &SourceIdentity> = versions
        .iter()
        .map(|v| (v.derived_correlation_id(), v))
        .collect();
    let by_stem: Vec<(String, &SourceIdentity)> =
        versions.iter().map(|v| (v.output_id(), v)).collect();
    let mut out = BTreeMap::new();
    for bucket in [&b.validated, &b.curated, &b.profiles, &b.quarantine] {
        for (key, meta) in ctx.list(bucket, "").await? {
            if key.starts_with("_sluice/") || key.contains("/_sluice/") {
                continue;
            }
            let meta = match ctx.store.head(bucket, &key).await? {
                Some(m) => m,
                None => meta,
            };
            let owner = meta
                .metadata
                .get(keys::CORRELATION_ID)
                .and_then(|c| by_correlation.get(c).copied())
                .or_else(|| {
                    by_stem
                        .iter()
                        .find(|(s, _)| key.contains(s.as_str()))
                        .map(|(_, v)| *v)
                });
            if let Some(v) = owner {
                out.insert(
                    (bucket.clone(), key),
                    format!("{} @ {}", v.key, v.etag.as_deref().unwrap_or("?")),
                );
            }
        }
    }
    Ok(out)
}

fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn rate() -> f64 {
    std::env::var("FAULT_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_files_through_a_fault_proxy_on_every_aws_call_converge_exactly_once() {
    let ctx = match Ctx::new().await {
        Ok(c) => c,
        Err(e) => panic!("cannot set up the e2e clients: {e:#}"),
    };
    match ctx.localstack_info().await {
        Ok(info) => eprintln!("e2e: talking to {info}"),
        Err(e) => panic!("{e:#}"),
    }
    let proxy = FaultProxy::new(&ctx.dep.endpoint, seed(), rate());
    let mut saved = Vec::new();
    let result = async {
        let mut urls = Vec::new();
        for s in STAGES {
            let url = proxy.listen(s).await?;
            let version = route(&ctx, s, &url, &mut saved).await?;
            urls.push(format!("{s} v{version} -> {url}"));
        }
        eprintln!(
            "faults: seed {}, {:.0}% of requests fail; {}",
            proxy.seed(),
            100.0 * proxy.rate(),
            urls.join(", ")
        );
        run(&ctx, &proxy).await
    }
    .await;
    let restored = restore(&ctx, &saved).await;
    let figures = proxy.figures();
    eprintln!("faults: proxy (seed {}): {figures}", proxy.seed());
    if let Err(e) = restored {
        panic!("{e:#}");
    }
    if let Err(e) = result {
        panic!(
            "{e:#}\n(fault seed {}; rerun with FAULT_SEED={})",
            proxy.seed(),
            proxy.seed()
        );
    }
}

async fn run(ctx: &Ctx, proxy: &FaultProxy) -> Result<()> {
    let prefix = run_prefix("faults");
    let landing = ctx.dep.buckets.landing.clone();
    let dlqs_before = {
        let mut m = BTreeMap::new();
        for s in STAGES {
            let ids: BTreeSet<String> = queue_contents(ctx, &ctx.dep.stage(s).dlq_url)
                .await?
                .into_keys()
                .collect();
            m.insert(s, ids);
        }
        m
    };

    // Upload, as producers would; remember every version's identity.
    let plan = uploads(&prefix)?;
    let started = Instant::now();
    let mut versions: Vec<SourceIdentity> = Vec::new();
    let mut finals: BTreeMap<String, (Upload, String)> = BTreeMap::new();
    let mut older = None;
    for (wait, u) in &plan {
        if *wait > 0 {
            tokio::time::sleep(Duration::from_secs(*wait)).await;
        }
        ctx.upload(&landing, &u.key, u.body.clone()).await?;
        let meta = ctx
            .store
            .head(&landing, &u.key)
            .await?
            .with_context(|| format!("s3://{landing}/{} vanished after its upload", u.key))?;
        let mut id = SourceIdentity::of_key(&landing, &u.key);
        id.etag = Some(meta.etag.clone());
        if u.role == Role::Older {
            older = Some(id.clone());
        }
        if !versions.contains(&id) {
            versions.push(id);
        }
        finals.insert(u.key.clone(), (u.clone(), meta.etag));
    }
    let older = older.context("the plan has an older version")?;
    let count = |r: Role| plan.iter().filter(|(_, u)| u.role == r).count();
    eprintln!(
        "faults: uploaded {} files ({} good, {} duplicates, {} copy, 2 versions of one key, {} corrupt) to {} keys under {prefix} in {:.1} s",
        plan.len(),
        count(Role::Good),
        count(Role::Duplicate),
        count(Role::Copy),
        count(Role::Corrupt),
        finals.len(),
        started.elapsed().as_secs_f64()
    );

    // The oracle: the final versions alone, locally.
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "sluice-e2e-faults-{}",
        prefix
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("run")
    ));
    let local_finals: BTreeMap<String, Upload> = finals
        .iter()
        .map(|(k, (u, _))| (k.clone(), u.clone()))
        .collect();
    let (local, local_summary) = oracle(&dir, &local_finals).await?;
    for line in local_summary.lines().filter(|l| {
        ["stage ", "ingest ", "curate ", "profile "]
            .iter()
            .any(|p| l.starts_with(p))
    }) {
        eprintln!("faults: oracle: {line}");
    }

    let ls = localstack_layout(ctx)?;
    let took = wait_quiet(ctx, &ls, &finals, proxy, &dlqs_before).await?;
    eprintln!(
        "faults: quiet {:.0} s after the last upload",
        took.as_secs_f64()
    );

    let mut problems = Vec::new();
    let (mut got_seen, mut want_seen) = (Seen::default(), Seen::default());
    let (mut outputs, mut rows) = (0usize, 0u64);
    for (key, (u, etag)) in &finals {
        let got = ls.derived(key, &mut got_seen).await?;
        let want = local.derived(key, &mut want_seen).await?;
        match (&got, &want) {
            (Some(g), Some(w)) => {
                for d in differences(g, w) {
                    problems.push(format!("{key}: {d}"));
                }
                outputs += g.ingest.outputs.len()
                    + g.curate.values().map(|c| c.outputs.len()).sum::<usize>()
                    + g.profile.values().map(|p| p.outputs.len()).sum::<usize>();
                rows += g.ingest.rows_in;
                let expect_state = if u.role == Role::Corrupt {
                    ManifestState::DeadLettered
                } else {
                    ManifestState::Committed
                };
                if g.ingest.state != expect_state {
                    problems.push(format!(
                        "{key}: ingest state {:?}, want {expect_state:?}",
                        g.ingest.state
                    ));
                }
                if let Some(s) = &u.stats {
                    if (
                        g.ingest.rows_in,
                        g.ingest.rows_out,
                        g.ingest.rows_quarantined,
                    ) != (s.rows, s.good, s.bad)
                    {
                        problems.push(format!(
                            "{key} ({etag}): ingest counted {} in, {} out, {} quarantined; the file has {} rows, {} good, {} bad",
                            g.ingest.rows_in, g.ingest.rows_out, g.ingest.rows_quarantined, s.rows, s.good, s.bad
                        ));
                    }
                }
            }
            _ => problems.push(format!(
                "{key}: LocalStack {}, locally {}",
                if got.is_some() {
                    "committed"
                } else {
                    "has no commit"
                },
                if want.is_some() {
                    "committed"
                } else {
                    "no commit"
                }
            )),
        }
    }
    problems.extend(got_seen.problems.iter().map(|p| format!("LocalStack: {p}")));
    problems.extend(
        want_seen
            .problems
            .iter()
            .map(|p| format!("local oracle: {p}")),
    );

    // No orphans: what descends from any version we uploaded is exactly
    // what the final commits list; nothing of the older version is left.
    let found = descendants(ctx, &versions).await?;
    let found_keys: BTreeSet<(String, String)> = found.keys().cloned().collect();
    for (b, k) in found_keys.difference(&got_seen.committed) {
        problems.push(format!(
            "orphan: s3://{b}/{k} (from {}) is listed by no commit",
            found[&(b.clone(), k.clone())]
        ));
    }
    for (b, k) in got_seen.committed.difference(&found_keys) {
        problems.push(format!(
            "s3://{b}/{k} is committed but not found as a descendant of the uploads"
        ));
    }
    let from_older: Vec<_> = found
        .iter()
        .filter(|(_, v)| v.ends_with(older.etag.as_deref().unwrap_or("?")))
        .map(|((b, k), _)| format!("s3://{b}/{k}"))
        .collect();
    if !from_older.is_empty() {
        problems.push(format!(
            "the older version of {} left {from_older:?}",
            older.key
        ));
    }

    // The DLQs: exactly the corrupt files, at ingest; nothing downstream.
    let corrupt: BTreeSet<String> = finals
        .iter()
        .filter(|(_, (u, _))| u.role == Role::Corrupt)
        .map(|(k, _)| k.clone())
        .collect();
    let mut envelopes = BTreeMap::<String, usize>::new();
    let mut dlq_new = BTreeMap::new();
    for s in STAGES {
        let now = queue_contents(ctx, &ctx.dep.stage(s).dlq_url).await?;
        let new: Vec<Value> = now
            .into_iter()
            .filter(|(id, _)| !dlqs_before[s].contains(id))
            .map(|(_, (v, _))| v)
            .collect();
        dlq_new.insert(s, new.len());
        for m in new {
            let named = m["source"]["key"].as_str().map(String::from);
            match (s, named) {
                ("ingest", Some(k))
                    if m["envelope_version"].is_u64() && corrupt.contains(&k) =>
                {
                    if m["stage"] != "ingest" || m["error"]["kind"] != "invalid_input" {
                        problems.push(format!("the envelope of {k}: {m}"));
                    }
                    *envelopes.entry(k).or_default() += 1;
                }
                (_, Some(k)) if m["envelope_version"].is_u64() => problems.push(format!(
                    "{s} DLQ: an envelope for {k}, which is not corrupt: {}",
                    m["error"]["message"]
                )),
                _ => problems.push(format!(
                    "{s} DLQ: a message with no envelope (SQS moved it after maxReceiveCount deliveries): {} {}",
                    m["detail-type"].as_str().unwrap_or("?"),
                    m["detail"]["object"]["key"]
                )),
            }
        }
    }
    let named: BTreeSet<String> = envelopes.keys().cloned().collect();
    if named != corrupt {
        problems.push(format!(
            "the ingest DLQ names {named:?}, the corrupt files are {corrupt:?}"
        ));
    }
    let duplicates: usize = envelopes.values().map(|n| n - 1).sum();

    // The faults reached every stage, every service they use, every kind.
    let f = proxy.figures();
    for s in STAGES {
        if f.requests_from(s) == 0 || f.injected_into(s) == 0 {
            problems.push(format!(
                "{s}: {} requests through the proxy, {} faults: it was not exercised",
                f.requests_from(s),
                f.injected_into(s)
            ));
        }
    }
    for k in Fault::ALL {
        if f.of_kind(k) == 0 {
            problems.push(format!("no {} was injected", k.name()));
        }
    }
    if f.requests_to("sqs") == 0 {
        problems.push("no SQS request went through the proxy (the DLQ sends)".into());
    }
    let alerts_expected = std::fs::read_to_string(dir.join("alerts").join("alerts.jsonl"))
        .is_ok_and(|t| !t.trim().is_empty());
    if alerts_expected && f.requests_to("sns") == 0 {
        problems.push(
            "profile raised alerts locally, but no SNS request went through the proxy".into(),
        );
    }
    report(&f, &finals, outputs, rows, &envelopes, duplicates, &dlq_new);

    ensure!(
        problems.is_empty(),
        "{} problem(s) after quiescence:\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Where LocalStack's commits for a key differ from the oracle's, one line
/// per differing commit or output.
fn differences(got: &Derived, want: &Derived) -> Vec<String> {
    fn commit(stage: &str, input: &str, g: Option<&Commit>, w: Option<&Commit>) -> Vec<String> {
        match (g, w) {
            (Some(g), Some(w)) => {
                let mut out = Vec::new();
                let counts =
                    |c: &Commit| (c.state, c.clean, c.rows_in, c.rows_out, c.rows_quarantined);
                if counts(g) != counts(w) {
                    out.push(format!(
                        "{stage} of {input}: (state, clean, in, out, quarantined) {:?} in LocalStack, {:?} locally",
                        counts(g),
                        counts(w)
                    ));
                }
                let names: BTreeSet<&String> = g.outputs.keys().chain(w.outputs.keys()).collect();
                for n in names {
                    let (a, b) = (g.outputs.get(n), w.outputs.get(n));
                    if a != b {
                        out.push(format!(
                            "{stage} of {input}: output {n}: (rows, digest) {a:?} in LocalStack, {b:?} locally"
                        ));
                    }
                }
                out
            }
            (g, w) => vec![format!(
                "{stage} of {input}: {} in LocalStack, {} locally",
                if g.is_some() { "a commit" } else { "no commit" },
                if w.is_some() { "a commit" } else { "no commit" }
            )],
        }
    }
    let mut out = commit(
        "ingest",
        "the landed file",
        Some(&got.ingest),
        Some(&want.ingest),
    );
    for (stage, g, w) in [
        ("curate", &got.curate, &want.curate),
        ("profile", &got.profile, &want.profile),
    ] {
        let inputs: BTreeSet<&String> = g.keys().chain(w.keys()).collect();
        for i in inputs {
            out.extend(commit(stage, i, g.get(i), w.get(i)));
        }
    }
    out
}

fn report(
    f: &FaultFigures,
    finals: &BTreeMap<String, (Upload, String)>,
    outputs: usize,
    rows: u64,
    envelopes: &BTreeMap<String, usize>,
    duplicates: usize,
    dlq_new: &BTreeMap<&str, usize>,
) {
    eprintln!(
        "faults: {} keys converged; {outputs} outputs over 3 stages match sluice run --local; {rows} rows in at ingest",
        finals.len()
    );
    eprintln!(
        "faults: DLQ: {} envelope(s) naming {} corrupt file(s) ({duplicates} duplicate envelope(s); {} SendMessage answers lost after the send); new DLQ messages by stage {dlq_new:?}",
        envelopes.values().sum::<usize>(),
        envelopes.len(),
        f.injected_into_op("sqs", "SendMessage", Fault::Dropped)
    );
}
