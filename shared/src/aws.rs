//! AWS SDK plumbing: building clients once at cold start (endpoint override,
//! path-style addressing for LocalStack) and classifying SDK errors by meaning.
//!
//! The SDK half is behind the `aws` feature (on by default): a build without
//! it (the CLI's demo build) keeps the local and memory stores and the file
//! DLQ, and refuses an S3 store or SQS DLQ with a configuration error.

use crate::error::ErrorKind;

/// Why a build without the `aws` feature refuses an S3 store, an SQS DLQ or
/// an SNS topic: every such error says this.
pub const WITHOUT_SDK: &str = "this build has no AWS SDK (built without the `aws` feature)";

#[cfg(feature = "aws")]
pub use sdk::*;

/// Whether a custom endpoint is configured (LocalStack, MinIO): such
/// endpoints need path-style S3 addressing.
pub fn custom_endpoint_configured() -> bool {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
        .iter()
        .any(|v| std::env::var(v).map(|s| !s.is_empty()).unwrap_or(false))
}

#[cfg(feature = "aws")]
mod sdk {
    use std::time::Duration;

    use aws_config::timeout::TimeoutConfig;
    use aws_config::{BehaviorVersion, SdkConfig};
    use aws_sdk_s3::error::ProvideErrorMetadata;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::SdkError;

    use super::classify_http;
    use crate::error::{Error, ErrorKind};

    /// The shared SDK configuration a stage's clients are built from, read
    /// from the environment a Lambda is given: credentials from
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`,
    /// the region from `AWS_REGION` (or `AWS_DEFAULT_REGION`), an endpoint
    /// from `AWS_ENDPOINT_URL` (LocalStack, MinIO), with timeouts suited to
    /// a Lambda and the SDK's standard retries.
    ///
    /// It deliberately skips aws-config's default chain (profile files, SSO,
    /// web identity through STS, the container and instance metadata
    /// services): a Lambda never needs them, and linking them cost each
    /// zipped stage about 0.35 MB (ingest 8.13 MB before, 7.77 MB after). The CLI and the end-to-end
    /// harness, which run on a workstation, build their clients from the
    /// full chain.
    pub async fn load_sdk_config() -> SdkConfig {
        sdk_config_from(&|name| std::env::var(name).ok())
    }

    /// [`load_sdk_config`] over any variable lookup (a test gives a map).
    pub fn sdk_config_from(var: &dyn Fn(&str) -> Option<String>) -> SdkConfig {
        use aws_config::environment::EnvironmentVariableCredentialsProvider;
        use aws_config::retry::RetryConfig;
        use aws_config::Region;
        use aws_sdk_s3::config::SharedCredentialsProvider;
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build();
        let credentials = EnvironmentVariableCredentialsProvider::new();
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client())
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard())
            .time_source(aws_smithy_async::time::SystemTimeSource::new())
            .credentials_provider(SharedCredentialsProvider::new(credentials));
        if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
            builder = builder.sleep_impl(sleep);
        }
        if let Some(region) = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION")) {
            builder = builder.region(Region::new(region));
        }
        if let Some(url) = set("AWS_ENDPOINT_URL") {
            builder = builder.endpoint_url(url);
        }
        builder.build()
    }

    /// The HTTPS client every SDK config is given: the SDK's own hyper client
    /// with rustls on ring (the workspace leaves out the SDK's default, rustls
    /// on aws-lc, for smaller binaries and builds). Certificates are the
    /// platform's, as with the default. A config loaded without it has no
    /// HTTP client and fails its first request.
    pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https()
    }

    /// An S3 client from the shared config.
    /// `AWS_ENDPOINT_URL_S3`, when set, is the endpoint for S3 alone.
    pub fn s3_client(config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
        let mut conf = aws_sdk_s3::config::Builder::from(config).force_path_style(force_path_style);
        if let Some(url) = std::env::var("AWS_ENDPOINT_URL_S3")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            conf = conf.endpoint_url(url);
        }
        aws_sdk_s3::Client::from_conf(conf.build())
    }

    /// An SQS client from the shared config.
    pub fn sqs_client(config: &SdkConfig) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(config)
    }

    /// Classify an SDK error: timeouts, dispatch (connection) failures and
    /// unparseable responses are transient; service errors go by status and code.
    pub fn classify_sdk<E>(err: &SdkError<E, HttpResponse>) -> (ErrorKind, String)
    where
        E: ProvideErrorMetadata + std::error::Error,
    {
        match err {
            SdkError::TimeoutError(_) => (ErrorKind::Transient, "timed out".into()),
            SdkError::DispatchFailure(d) => (
                ErrorKind::Transient,
                format!(
                    "dispatch failure ({})",
                    if d.is_timeout() {
                        "timeout"
                    } else {
                        "connection"
                    }
                ),
            ),
            SdkError::ResponseError(_) => (ErrorKind::Transient, "unreadable response".into()),
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code();
                let msg = se.err().message().unwrap_or("");
                (
                    classify_http(status, code),
                    format!("HTTP {status} {} {msg}", code.unwrap_or(""))
                        .trim()
                        .to_string(),
                )
            }
            SdkError::ConstructionFailure(_) => {
                (ErrorKind::Internal, "request could not be built".into())
            }
            _ => (ErrorKind::Internal, "unknown SDK error".into()),
        }
    }

    /// Turn an SDK error into a storage error about `location`.
    pub fn storage_error<E>(
        op: &'static str,
        location: String,
        err: SdkError<E, HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (kind, message) = classify_sdk(&err);
        Error::Storage {
            op,
            location,
            kind,
            message,
            source: Some(Box::new(err)),
        }
    }
}

/// Error codes that mean "slow down or try again", whatever the status.
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ConditionalRequestConflict",
];

/// Classify an HTTP status and error code from an AWS service. Pure, so it
/// can be table-tested.
pub fn classify_http(status: u16, code: Option<&str>) -> ErrorKind {
    if code.is_some_and(|c| RETRYABLE_CODES.contains(&c)) {
        return ErrorKind::Transient;
    }
    match status {
        404 => ErrorKind::NotFound,
        // 409 on S3 is ConditionalRequestConflict: a concurrent conditional
        // write; deciding again is the fix.
        409 | 412 => ErrorKind::Precondition,
        408 | 429 => ErrorKind::Transient,
        500..=599 => ErrorKind::Transient,
        400..=499 => ErrorKind::Rejected,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "aws")]
    #[test]
    fn the_sdk_config_is_read_from_the_lambda_environment() {
        use std::time::Duration;
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let conf = sdk_config_from(&env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://localhost:4566"),
        ]));
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(conf.endpoint_url(), Some("http://localhost:4566"));
        assert!(conf.credentials_provider().is_some());
        assert!(
            conf.http_client().is_some(),
            "no HTTP client: every request would fail"
        );
        assert!(
            conf.sleep_impl().is_some(),
            "no sleep: timeouts would not work"
        );
        let timeouts = conf.timeout_config().expect("timeouts");
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(3)));

        let conf = sdk_config_from(&env(&[
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ENDPOINT_URL", " "),
        ]));
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert_eq!(conf.endpoint_url(), None, "a blank endpoint is no endpoint");
        assert_eq!(sdk_config_from(&env(&[])).region(), None);
    }

    #[test]
    fn http_classification_table() {
        use ErrorKind::*;
        let table: &[(u16, Option<&str>, ErrorKind)] = &[
            (503, Some("SlowDown"), Transient),
            (400, Some("ThrottlingException"), Transient),
            (400, Some("RequestTimeout"), Transient),
            (500, None, Transient),
            (502, None, Transient),
            (429, None, Transient),
            (404, Some("NoSuchKey"), NotFound),
            (404, Some("NoSuchBucket"), NotFound),
            (412, Some("PreconditionFailed"), Precondition),
            (409, Some("ConditionalRequestConflict"), Transient),
            (409, Some("OperationAborted"), Precondition),
            (403, Some("AccessDenied"), Rejected),
            (400, Some("InvalidArgument"), Rejected),
            (400, Some("EntityTooSmall"), Rejected),
            (301, Some("PermanentRedirect"), Internal),
        ];
        for (status, code, want) in table {
            assert_eq!(classify_http(*status, *code), *want, "{status} {code:?}");
        }
    }
}
