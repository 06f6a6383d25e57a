//! The operations commands (`sluice replay`, `trace`, `status`) against the
//! LocalStack deployment, through the real `sluice` binary (`SLUICE_BIN`,
//! set by `make e2e`): a file dead-lettered for a cause that is then fixed is
//! redriven through the stage's queue; a raw message moved by SQS redrive is
//! replayed; replays of keys and prefixes change nothing already done.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sluice::lineage::SourceIdentity;
use sluice::runner::dead_letter_marker_key_in;
use sluice_e2e::{run_prefix, split_uri, trips, Ctx, STAGE_TIMEOUT};

async fn connect() -> Ctx {
    match Ctx::new().await {
        Ok(c) => c,
        Err(e) => panic!("cannot set up the e2e clients: {e:#}"),
    }
}

/// Run the sluice binary against the deployment; (exit code, stdout, stderr).
fn cli(args: &[&str]) -> Result<(i32, String, String)> {
    let bin = std::env::var("SLUICE_BIN")
        .context("SLUICE_BIN is not set: run the end-to-end tests with `make e2e`")?;
    let outputs = std::env::var("SLUICE_E2E_OUTPUTS").context("SLUICE_E2E_OUTPUTS is not set")?;
    let out = Command::new(&bin)
        .args(args)
        .env("SLUICE_DEPLOYMENT", outputs)
        .output()
        .with_context(|| format!("running {bin}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    eprintln!("e2e: sluice {}\n{}", args.join(" "), text(&out.stdout));
    Ok((
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    ))
}

/// Run, expect `code`, parse JSON.
fn cli_json(args: &[&str], code: i32) -> Result<Value> {
    let (rc, stdout, stderr) = cli(args)?;
    if rc != code {
        bail!("sluice {args:?} exited {rc}, not {code}: {stdout} {stderr}");
    }
    serde_json::from_str(&stdout).with_context(|| format!("sluice {args:?}: not JSON: {stdout}"))
}

/// Wait until ingest has dead-lettered `key` (its marker is written).
async fn wait_dead_lettered(ctx: &Ctx, key: &str) -> Result<()> {
    let ingest = ctx.dep.stage("ingest");
    let (bucket, prefix) = split_uri(&ingest.output)?;
    let source = SourceIdentity::of_key(&ctx.dep.buckets.landing, key);
    let marker = dead_letter_marker_key_in(&prefix, "ingest", &source);
    let started = Instant::now();
    while ctx.store.head(&bucket, &marker).await?.is_none() {
        if started.elapsed() > STAGE_TIMEOUT {
            bail!("ingest did not dead-letter {key} within {STAGE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_dead_lettered_file_is_redriven_after_its_cause_is_fixed() {
    let ctx = connect().await;
    let since = chrono::Utc::now().to_rfc3339();
    let name = ctx.dep.stage("ingest").function_name.clone();
    let original = ctx.get_env(&name).await.unwrap();
    let good_version = ctx.live_version(&name).await.unwrap();
    // The cause: a release with a size limit far too small.
    let mut bad = original.clone();
    bad.insert("SLUICE_MAX_OBJECT_BYTES".into(), "1000".into());
    let bad_version = ctx.release_env(&name, bad).await.unwrap();
    eprintln!("e2e: released {name} version {bad_version} with SLUICE_MAX_OBJECT_BYTES=1000");
    let key = format!("{}too big for the limit.csv", run_prefix("redrive"));
    let uri = format!("s3://{}/{key}", ctx.dep.buckets.landing);
    let result = async {
        let (body, stats) = trips(1500, 61, 0.02, false)?;
        ctx.upload(&ctx.dep.buckets.landing, &key, body).await?;
        wait_dead_lettered(&ctx, &key).await?;
        anyhow::Ok(stats)
    }
    .await;
    // The fix: roll `live` back to the good release.
    ctx.point_live(&name, &good_version).await.unwrap();
    ctx.set_env(&name, original).await.unwrap();
    let stats = result.unwrap();

    let status = cli_json(&["status", "--json"], 3).unwrap();
    assert!(
        status["stages"][0]["dlq_depth"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let dry = cli_json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--since",
            &since,
            "--dry-run",
            "--json",
        ],
        0,
    )
    .unwrap();
    assert_eq!(dry["counts"]["would_replay"], 1, "{dry}");
    assert_eq!(dry["objects"][0]["object"], uri.as_str());

    let redrive = cli_json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--since",
            &since,
            "--kind",
            "invalid_input",
            "--rate",
            "5",
            "--wait",
            "120",
            "--json",
        ],
        0,
    )
    .unwrap();
    assert_eq!(redrive["counts"]["new"], 1, "{redrive}");
    assert_eq!(redrive["objects"][0]["dlq"], "deleted", "{redrive}");
    let m = ctx
        .wait_manifest("ingest", &ctx.dep.buckets.landing, &key, |_| true)
        .await
        .unwrap();
    assert_eq!(m.counts.rows_in, stats.rows);
    assert_eq!(m.counts.rows_quarantined, stats.bad);
    assert_eq!(m.code_version, "local");

    // Done is done. The redriven message left the DLQ once its input
    // settled (its manifest): the DLQ no longer holds it, so nothing is
    // left to redrive, and replaying the key is a no-op.
    let again = cli_json(
        &[
            "replay", "dlq", "--stage", "ingest", "--since", &since, "--json",
        ],
        0,
    )
    .unwrap();
    let left: Vec<&Value> = again["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["object"] == uri.as_str())
        .collect();
    assert!(
        left.is_empty(),
        "the settled message is still in the DLQ: {again}"
    );
    assert_eq!(again["counts"]["new"], 0, "{again}");
    assert_eq!(again["counts"]["failed_again"], 0, "{again}");
    let (rc, empty, _) = cli(&["replay", "dlq", "--stage", "ingest", "--since", &since]).unwrap();
    assert_eq!(rc, 0);
    assert!(empty.contains("new                     0"), "{empty}");
    let keys = cli_json(&["replay", "keys", "--stage", "ingest", "--json", &uri], 0).unwrap();
    assert_eq!(keys["counts"]["already_processed"], 1, "{keys}");

    // The whole flow, traced by the landed key.
    let (rc, _, err) = cli(&["status", "--wait-idle", "120"]).unwrap();
    assert!(rc == 0 || rc == 3, "status --wait-idle: {rc} {err}");
    let trace = cli_json(&["trace", "--key", &uri, "--json"], 0).unwrap();
    let stages: Vec<&str> = trace["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages[0], "ingest", "{trace}");
    assert!(
        stages.contains(&"curate") && stages.contains(&"profile"),
        "{trace}"
    );
    assert_eq!(trace["correlation_id"], m.correlation_id.as_str());
    assert!(trace["end_to_end_lag_ms"].as_i64().unwrap() > 0);
}

/// The event source mapping of a function.
async fn esm(ctx: &Ctx, function: &str) -> Result<String> {
    let out = ctx
        .lambda
        .list_event_source_mappings()
        .function_name(function)
        .send()
        .await?;
    out.event_source_mappings()
        .iter()
        .find_map(|m| m.uuid().map(String::from))
        .with_context(|| format!("{function} has no event source mapping"))
}

async fn set_esm(ctx: &Ctx, uuid: &str, enabled: bool) -> Result<()> {
    ctx.lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .enabled(enabled)
        .send()
        .await?;
    let want = if enabled { "Enabled" } else { "Disabled" };
    for _ in 0..100 {
        let m = ctx
            .lambda
            .get_event_source_mapping()
            .uuid(uuid)
            .send()
            .await?;
        if m.state() == Some(want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("event source mapping {uuid} did not become {want}")
}

#[tokio::test]
async fn a_raw_message_moved_by_sqs_redrive_is_replayed_and_backfill_changes_nothing() {
    let ctx = connect().await;
    let ingest = ctx.dep.stage("ingest").clone();
    let function = format!("{}:live", ingest.function_name);
    let uuid = match esm(&ctx, &function).await {
        Ok(u) => u,
        Err(_) => esm(&ctx, &ingest.function_name).await.unwrap(),
    };
    let prefix = run_prefix("raw-redrive");
    let key = format!("{prefix}never delivered.csv");
    // Stop the stage's consumer, so the event stays in the queue; then do
    // what SQS redrive does after maxReceiveCount: move the message, body
    // unchanged, to the DLQ.
    set_esm(&ctx, &uuid, false).await.unwrap();
    let moved = async {
        let (body, stats) = trips(800, 62, 0.0, false)?;
        ctx.upload(&ctx.dep.buckets.landing, &key, body).await?;
        let started = Instant::now();
        loop {
            let out = ctx
                .sqs
                .receive_message()
                .queue_url(&ingest.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(2)
                .visibility_timeout(30)
                .send()
                .await?;
            for msg in out.messages.unwrap_or_default() {
                let body = msg.body.clone().unwrap_or_default();
                // The key is URL-encoded in the event; the run prefix is not.
                if body.contains(prefix.trim_end_matches('/')) {
                    ctx.sqs
                        .send_message()
                        .queue_url(&ingest.dlq_url)
                        .message_body(&body)
                        .send()
                        .await?;
                    ctx.sqs
                        .delete_message()
                        .queue_url(&ingest.queue_url)
                        .receipt_handle(msg.receipt_handle.unwrap_or_default())
                        .send()
                        .await?;
                    return anyhow::Ok(stats);
                }
                // Someone else's event: back to the queue at once.
                ctx.sqs
                    .change_message_visibility()
                    .queue_url(&ingest.queue_url)
                    .receipt_handle(msg.receipt_handle.unwrap_or_default())
                    .visibility_timeout(0)
                    .send()
                    .await?;
            }
            if started.elapsed() > STAGE_TIMEOUT {
                bail!("the event for {key} never reached {}", ingest.queue_url);
            }
        }
    }
    .await;
    set_esm(&ctx, &uuid, true).await.unwrap();
    let stats = moved.unwrap();

    let redrive = cli_json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--kind",
            "retries_exhausted",
            "--wait",
            "120",
            "--json",
        ],
        0,
    )
    .unwrap();
    let uri = format!("s3://{}/{key}", ctx.dep.buckets.landing);
    let ours: Vec<&Value> = redrive["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["object"] == uri.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{redrive}");
    assert_eq!(ours[0]["outcome"], "new", "{redrive}");
    assert_eq!(ours[0]["dlq"], "deleted", "{redrive}");
    let m = ctx
        .wait_manifest("ingest", &ctx.dep.buckets.landing, &key, |_| true)
        .await
        .unwrap();
    assert_eq!(m.counts.rows_in, stats.rows);
    // Settled, so no longer in the DLQ.
    let after = cli_json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--kind",
            "retries_exhausted",
            "--dry-run",
            "--json",
        ],
        0,
    )
    .unwrap();
    assert!(
        !after["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["object"] == uri.as_str()),
        "the settled raw message is still in the DLQ: {after}"
    );

    // A backfill of the prefix finds it done.
    let backfill = cli_json(
        &[
            "replay",
            "backfill",
            "--stage",
            "ingest",
            "--json",
            "--prefix",
            &format!("s3://{}/{prefix}", ctx.dep.buckets.landing),
        ],
        0,
    )
    .unwrap();
    assert_eq!(backfill["counts"]["already_processed"], 1, "{backfill}");
    assert_eq!(backfill["counts"]["new"], 0, "{backfill}");
}

#[tokio::test]
async fn ghost_diff_matches_prod_then_names_a_deliberately_changed_record() {
    let ctx = connect().await;
    let ghost = ctx.stage_like("ghost:curate").unwrap().clone();
    let (gb, gp) = split_uri(&ghost.output).unwrap();
    // Give the ghost something to have seen, and let everything settle.
    let key = format!("{}for the ghost.csv", run_prefix("ghost-diff"));
    let (body, _) = trips(1200, 63, 0.0, false).unwrap();
    ctx.upload(&ctx.dep.buckets.landing, &key, body)
        .await
        .unwrap();
    let m = ctx
        .wait_manifest("ingest", &ctx.dep.buckets.landing, &key, |_| true)
        .await
        .unwrap();
    for out in m.outputs.iter().filter(|o| o.key.ends_with(".parquet")) {
        ctx.wait_manifest("ghost:curate", &out.bucket, &out.key, |_| true)
            .await
            .unwrap();
    }
    let (rc, _, err) = cli(&["status", "--wait-idle", "120"]).unwrap();
    assert!(rc == 0 || rc == 3, "status --wait-idle: {rc} {err}");

    let (rc, md, err) = cli(&["ghost", "diff", "--stage", "curate", "--markdown"]).unwrap();
    assert_eq!(rc, 0, "same code, same inputs: {md} {err}");
    assert!(md.starts_with("✅"), "{md}");

    // A deliberate change in one ghost output: one record's fare doubled.
    let listed = ctx.list(&gb, &gp).await.unwrap();
    let (victim, _) = listed
        .iter()
        .find(|(k, _)| k.ends_with(".parquet") && !k.split('/').any(|s| s.starts_with('_')))
        .expect("a ghost Parquet output");
    let original = ctx
        .s3
        .get_object()
        .bucket(&gb)
        .key(victim)
        .send()
        .await
        .unwrap();
    let metadata = original.metadata().cloned();
    let bytes = original.body.collect().await.unwrap().into_bytes();
    let (changed, record_id) = double_first_fare(&bytes).unwrap();
    ctx.s3
        .put_object()
        .bucket(&gb)
        .key(victim)
        .body(changed.into())
        .send()
        .await
        .unwrap();
    let diff = cli(&["ghost", "diff", "--stage", "curate", "--markdown"]);
    // Put the ghost's own output back before judging, metadata and all.
    ctx.s3
        .put_object()
        .bucket(&gb)
        .key(victim)
        .body(bytes.into())
        .set_metadata(metadata)
        .send()
        .await
        .unwrap();
    let (rc, md, err) = diff.unwrap();
    assert_eq!(rc, 1, "a changed record is a difference: {md} {err}");
    assert!(md.starts_with("❌"), "{md}");
    assert!(
        md.lines()
            .any(|l| l.contains(&record_id) && l.contains("fare_amount")),
        "the record and column are named: {md}"
    );
    let (rc, _, _) = cli(&["ghost", "diff", "--stage", "curate"]).unwrap();
    assert_eq!(rc, 0, "restored");
}

/// The Parquet file with the first row's `fare_amount` doubled, and that
/// row's record id.
fn double_first_fare(bytes: &bytes::Bytes) -> Result<(Vec<u8>, String)> {
    use arrow::array::{Array, AsArray, Decimal128Array, RecordBatch};
    use arrow::datatypes::Decimal128Type;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?
            .build()?;
    let mut batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    let first = batches.first_mut().context("an empty file")?;
    let schema = first.schema();
    let idx = schema.index_of("fare_amount")?;
    let ids = sluice::lineage::record_ids_as_text(first.column(schema.index_of("_record_id")?))?;
    let record_id = ids.value(0).to_string();
    let fares = first.column(idx).as_primitive::<Decimal128Type>();
    let doubled: Decimal128Array = (0..fares.len())
        .map(|i| {
            (!fares.is_null(i)).then(|| {
                if i == 0 {
                    fares.value(i) * 2
                } else {
                    fares.value(i)
                }
            })
        })
        .collect::<Decimal128Array>()
        .with_precision_and_scale(fares.precision(), fares.scale())?;
    let mut columns = first.columns().to_vec();
    columns[idx] = std::sync::Arc::new(doubled);
    *first = RecordBatch::try_new(schema.clone(), columns)?;
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None)?;
    for b in &batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok((out, record_id))
}
