//! `sluice decode FILE`: print the object references an event decodes to.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Decode `file` and print one JSON line per object. Exits non-zero if the
/// event (or any message in an SQS batch) cannot be decoded.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let payload: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let decoded =
        sluice::trigger::decode(&payload).with_context(|| format!("{}", file.display()))?;
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for d in decoded.deliveries {
        for s in &d.skipped {
            eprintln!("skipped: {s}");
        }
        match d.objects {
            Ok(objects) => {
                for o in objects {
                    let line = serde_json::json!({
                        "bucket": o.bucket,
                        "key": o.key,
                        "version_id": o.version_id,
                        "etag": o.etag,
                        "size": o.size,
                        "sequencer": o.sequencer,
                        "event_time": o.event_time,
                    });
                    writeln!(out, "{line}")?;
                }
            }
            Err(e) => {
                failed = true;
                let id = d.message_id.as_deref().unwrap_or("-");
                eprintln!("sluice: {}: message {id}: {e}", file.display());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
