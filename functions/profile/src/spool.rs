//! Spooling the input object to an anonymous temporary file: the object
//! store streams without range reads, and Parquet needs random access (the
//! footer is at the end), so the body goes to local disk first, in chunks,
//! never whole in memory. The file disappears when it is dropped.

use futures::StreamExt;
use sluice::error::ErrorKind;
use sluice::{Error, ObjectContext, Result};
use tokio::io::AsyncWriteExt;

/// Stream the input of `ctx` to a temporary file, refusing objects larger
/// than the configured limit. Returns the file and its size.
pub async fn spool_input(ctx: &ObjectContext) -> Result<(std::fs::File, u64)> {
    let location = ctx.location();
    let limit = ctx.config.max_object_bytes;
    if ctx.input.size > limit {
        return Err(Error::invalid_input(
            &location,
            format!(
                "object is {} bytes, above the limit of {limit} (SLUICE_MAX_OBJECT_BYTES)",
                ctx.input.size
            ),
        ));
    }
    let disk = |e: std::io::Error| {
        // A full or failing /tmp is worth another try (possibly elsewhere).
        Error::other(
            ErrorKind::Transient,
            format!("{location}: cannot spool to a temporary file"),
            Some(Box::new(e)),
        )
    };
    let file = tempfile::tempfile().map_err(disk)?;
    let mut out = tokio::fs::File::from_std(file);
    let mut body = ctx.open_input().await?.body;
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Error::invalid_input(
                &location,
                format!(
                    "object is larger than the limit of {limit} bytes (SLUICE_MAX_OBJECT_BYTES)"
                ),
            ));
        }
        out.write_all(&chunk).await.map_err(disk)?;
    }
    out.flush().await.map_err(disk)?;
    Ok((out.into_std().await, size))
}
