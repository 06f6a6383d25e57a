//! The crate's one error type, its classification into kinds, and the pure
//! `disposition` decision (retry, dead-letter, quarantine) the runner acts on.

use std::fmt;

/// A boxed error source, kept so the full chain reaches logs and DLQ envelopes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by meaning. The runner decides what to do from this alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Throttling, 5xx, timeouts, connection failures: worth trying again.
    Transient,
    /// The object (or bucket) does not exist.
    NotFound,
    /// A create-only write found the key already present.
    AlreadyExists,
    /// A conditional write's precondition (`If-Match`) did not hold.
    Precondition,
    /// Access denied, invalid request, other 4xx: retrying will not help.
    Rejected,
    /// The trigger event could not be understood.
    InvalidEvent,
    /// The input file as a whole is unusable (format, compression, header, size).
    InvalidInput,
    /// One row of input is bad; the row is quarantined and the file goes on.
    InvalidRow,
    /// Configuration is invalid; raised at cold start.
    Config,
    /// The stage panicked while processing an object (a bug).
    Panic,
    /// Anything else that is not retryable.
    Internal,
}

impl ErrorKind {
    /// Stable snake_case name used in logs, metrics and DLQ envelopes.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Precondition => "precondition",
            ErrorKind::Rejected => "rejected",
            ErrorKind::InvalidEvent => "invalid_event",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::InvalidRow => "invalid_row",
            ErrorKind::Config => "config",
            ErrorKind::Panic => "panic",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of the shared crate. Each variant carries the context a
/// reader needs ("failed to get s3://bucket/key").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object-store operation failed.
    #[error("failed to {op} {location}: {message}")]
    Storage {
        /// The operation, e.g. "get", "put", "head".
        op: &'static str,
        /// `s3://bucket/key` or `s3://bucket` for bucket-level operations.
        location: String,
        /// Classification of the failure.
        kind: ErrorKind,
        /// Short human explanation (HTTP status, error code).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The invocation payload is not an event Sluice understands.
    #[error("unrecognised event: {reason} (received: {received})")]
    InvalidEvent {
        /// Why it was rejected.
        reason: String,
        /// A truncated rendering of what was received.
        received: String,
    },
    /// The input object as a whole cannot be processed.
    #[error("{location}: {reason}")]
    InvalidInput {
        /// The object, as `s3://bucket/key`.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A single row is invalid.
    #[error("{location} line {line}: {reason}")]
    InvalidRow {
        /// The object, as `s3://bucket/key`.
        location: String,
        /// 1-based line number in the decompressed input.
        line: u64,
        /// What is wrong with the row.
        reason: String,
    },
    /// A configuration value is missing or wrong.
    #[error("invalid configuration: {var}: {reason}")]
    Config {
        /// The environment variable (or setting) at fault.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The stage panicked.
    #[error("stage panicked while processing {location}: {message}")]
    Panic {
        /// The object being processed.
        location: String,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// A failure with an explicit kind and a source, for stage-specific errors.
    #[error("{message}")]
    Other {
        /// Classification.
        kind: ErrorKind,
        /// Context.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The meaning of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Storage { kind, .. } | Error::Other { kind, .. } => *kind,
            Error::InvalidEvent { .. } => ErrorKind::InvalidEvent,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::InvalidRow { .. } => ErrorKind::InvalidRow,
            Error::Config { .. } => ErrorKind::Config,
            Error::Panic { .. } => ErrorKind::Panic,
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        disposition(self) == Disposition::Retry
    }

    /// Shorthand for a configuration error.
    pub fn config(var: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            var: var.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for a file-level input error.
    pub fn invalid_input(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            location: location.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an error with an explicit kind.
    pub fn other(kind: ErrorKind, message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Other {
            kind,
            message: message.into(),
            source,
        }
    }

    /// The error for a blocking task that did not finish: a panic becomes
    /// [`Error::Panic`] (permanent), a cancellation a transient error.
    pub fn from_join(location: &str, e: tokio::task::JoinError) -> Self {
        if e.is_panic() {
            return Error::Panic {
                location: location.to_string(),
                message: panic_message(e.into_panic().as_ref()),
            };
        }
        Error::other(
            ErrorKind::Transient,
            format!("{location}: task cancelled"),
            Some(Box::new(e)),
        )
    }

    /// The message of this error followed by every source, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.to_string()];
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            let s = e.to_string();
            if out.last() != Some(&s) {
                out.push(s);
            }
            cur = e.source();
        }
        out
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    /// Lambda reports `errorType` as `sluice.<kind>`, so failures can be told
    /// apart in the console and in on-failure destinations.
    fn from(e: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: format!("sluice.{}", e.kind()),
            error_message: e.chain().join(": "),
        }
    }
}

/// The text of a panic payload (`&str` or `String`), for error messages.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// What the runner does with a failed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Retry in process with backoff; if it still fails, let the queue redeliver.
    Retry,
    /// Permanent failure of the whole object: send an envelope to the DLQ.
    DeadLetter,
    /// Permanent failure of one row: write it to quarantine and go on.
    Quarantine,
}

/// The whole failure-routing policy, as one pure function.
pub fn disposition(err: &Error) -> Disposition {
    disposition_of(err.kind())
}

/// [`disposition`] on a bare kind.
pub fn disposition_of(kind: ErrorKind) -> Disposition {
    match kind {
        ErrorKind::Transient => Disposition::Retry,
        // A conditional-write race: re-reading the current state and deciding
        // again is the fix, so it is retried.
        ErrorKind::Precondition => Disposition::Retry,
        ErrorKind::InvalidRow => Disposition::Quarantine,
        ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::Rejected
        | ErrorKind::InvalidEvent
        | ErrorKind::InvalidInput
        | ErrorKind::Config
        | ErrorKind::Panic
        | ErrorKind::Internal => Disposition::DeadLetter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_table() {
        use Disposition::*;
        use ErrorKind::*;
        let table = [
            (Transient, Retry),
            (Precondition, Retry),
            (NotFound, DeadLetter),
            (AlreadyExists, DeadLetter),
            (Rejected, DeadLetter),
            (InvalidEvent, DeadLetter),
            (InvalidInput, DeadLetter),
            (InvalidRow, Quarantine),
            (Config, DeadLetter),
            (Panic, DeadLetter),
            (Internal, DeadLetter),
        ];
        for (kind, want) in table {
            assert_eq!(disposition_of(kind), want, "kind {kind}");
        }
    }

    #[test]
    fn variants_map_to_kinds() {
        let e = Error::invalid_input("s3://b/k", "not gzip");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "s3://b/k: not gzip");
        let e = Error::config("SLUICE_OUTPUT_BUCKET", "is required");
        assert_eq!(
            e.to_string(),
            "invalid configuration: SLUICE_OUTPUT_BUCKET: is required"
        );
        let e = Error::other(ErrorKind::Transient, "slow down", None);
        assert!(e.is_retryable());
    }

    #[test]
    fn chain_lists_sources_outermost_first() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::Storage {
            op: "get",
            location: "s3://b/k".into(),
            kind: ErrorKind::Transient,
            message: "dispatch failure".into(),
            source: Some(Box::new(inner)),
        };
        assert_eq!(
            e.chain(),
            vec![
                "failed to get s3://b/k: dispatch failure".to_string(),
                "reset by peer".to_string()
            ]
        );
    }
}
