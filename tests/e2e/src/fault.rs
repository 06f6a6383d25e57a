//! A seeded fault-injecting proxy for every AWS call of a deployed function.
//!
//! Point a function at it with `AWS_ENDPOINT_URL` (the SDK then sends S3,
//! SQS and SNS requests to it) and it forwards each request to LocalStack,
//! except that a share of them (`rate`) fail, spread evenly over the kinds
//! of [`Fault`]: a `503 SlowDown`, a `500 InternalError`, a connection reset
//! before the request reaches LocalStack, a connection dropped after
//! LocalStack has acted on the request (the response is lost: a write that
//! succeeded looks failed to the caller), and a 3 s delay before an
//! otherwise normal answer.
//!
//! The decision for the n-th request is a pure function of the seed and n,
//! so a seed names one fault schedule (which request gets which fault; the
//! order in which concurrent requests arrive is up to the functions). Each
//! listener ([`FaultProxy::listen`]) is labelled, so one proxy in front of
//! several functions counts per function and per service.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// One way a request can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `503 SlowDown` (S3's throttling answer; `ServiceUnavailable` elsewhere).
    SlowDown,
    /// `500 InternalError`.
    InternalError,
    /// The connection is reset (RST) before the request is forwarded.
    Reset,
    /// The request is forwarded and acted on, then the connection is closed
    /// without an answer.
    Dropped,
    /// The answer comes after 3 s (forwarded normally otherwise).
    Delay,
}

impl Fault {
    /// Every kind, in the order the schedule picks from.
    pub const ALL: [Fault; 5] = [
        Fault::SlowDown,
        Fault::InternalError,
        Fault::Reset,
        Fault::Dropped,
        Fault::Delay,
    ];

    /// A short name for the figures.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SlowDown => "503_slowdown",
            Fault::InternalError => "500_internal_error",
            Fault::Reset => "connection_reset",
            Fault::Dropped => "dropped_after_forward",
            Fault::Delay => "delay_3s",
        }
    }
}

/// How long [`Fault::Delay`] holds an answer.
pub const DELAY: Duration = Duration::from_secs(3);

/// What the proxy saw and did, by (listener label, AWS service, operation).
#[derive(Debug, Default, Clone)]
pub struct FaultFigures {
    /// Requests received, by (label, service).
    pub requests: BTreeMap<(String, String), u64>,
    /// Faults injected, by (label, service, operation, fault).
    pub injected: BTreeMap<(String, String, String, Fault), u64>,
    /// Requests that LocalStack did not answer (the proxy answered 502).
    pub upstream_errors: u64,
}

impl FaultFigures {
    /// Requests received in all.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Faults injected in all.
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }

    /// Faults of one kind.
    pub fn of_kind(&self, fault: Fault) -> u64 {
        self.injected
            .iter()
            .filter(|((_, _, _, f), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests received for one service (any label).
    pub fn requests_to(&self, service: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((_, s), _)| s == service)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests received through one label (any service).
    pub fn requests_from(&self, label: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((l, _), _)| l == label)
            .map(|(_, n)| n)
            .sum()
    }

    /// Faults injected into one label's requests.
    pub fn injected_into(&self, label: &str) -> u64 {
        self.injected
            .iter()
            .filter(|((l, _, _, _), _)| l == label)
            .map(|(_, n)| n)
            .sum()
    }

    /// Faults of one kind injected into one operation (e.g. `sqs`,
    /// `SendMessage`), any label.
    pub fn injected_into_op(&self, service: &str, op: &str, fault: Fault) -> u64 {
        self.injected
            .iter()
            .filter(|((_, s, o, f), _)| s == service && o == op && *f == fault)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for FaultFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut by_kind = String::new();
        for k in Fault::ALL {
            by_kind.push_str(&format!(" {} {},", k.name(), self.of_kind(k)));
        }
        writeln!(
            f,
            "{} requests, {} faults injected ({:.1}%):{}",
            self.total_requests(),
            self.total_injected(),
            100.0 * self.total_injected() as f64 / self.total_requests().max(1) as f64,
            by_kind.trim_end_matches(',')
        )?;
        let mut per: BTreeMap<(String, String), BTreeMap<Fault, u64>> = BTreeMap::new();
        for ((l, s, _, k), n) in &self.injected {
            *per.entry((l.clone(), s.clone()))
                .or_default()
                .entry(*k)
                .or_default() += n;
        }
        for ((l, s), n) in &self.requests {
            let faults = per.remove(&(l.clone(), s.clone())).unwrap_or_default();
            let list: Vec<String> = faults
                .iter()
                .map(|(k, n)| format!("{} {n}", k.name()))
                .collect();
            writeln!(
                f,
                "  {l:>8} {s:<4} {n:>6} requests, faults: {}",
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            )?;
        }
        write!(
            f,
            "  upstream errors (LocalStack did not answer): {}",
            self.upstream_errors
        )
    }
}

struct Shared {
    upstream: String,
    seed: u64,
    /// Parts per million of requests that get a fault.
    rate_ppm: u64,
    next: AtomicU64,
    figures: Mutex<FaultFigures>,
    client: HttpClient<HttpConnector, Full<Bytes>>,
}

/// The proxy: one fault schedule, any number of labelled listeners.
#[derive(Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` that fails `rate` (0..=1) of the
    /// requests, chosen by `seed`. It listens nowhere until [`listen`](Self::listen).
    pub fn new(upstream: &str, seed: u64, rate: f64) -> FaultProxy {
        FaultProxy {
            shared: Arc::new(Shared {
                upstream: upstream.trim_end_matches('/').to_string(),
                seed,
                rate_ppm: (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u64,
                next: AtomicU64::new(0),
                figures: Mutex::new(FaultFigures::default()),
                client: HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>(),
            }),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// The share of requests that fail.
    pub fn rate(&self) -> f64 {
        self.shared.rate_ppm as f64 / 1_000_000.0
    }

    /// What happened so far.
    pub fn figures(&self) -> FaultFigures {
        self.shared
            .figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The fault (if any) for the `n`-th request of a schedule.
    pub fn decide(seed: u64, rate_ppm: u64, n: u64) -> Option<Fault> {
        let r = splitmix64(seed ^ splitmix64(n));
        if r % 1_000_000 >= rate_ppm {
            return None;
        }
        let pick = (splitmix64(r) % Fault::ALL.len() as u64) as usize;
        Some(Fault::ALL[pick])
    }

    /// Start a listener on a free loopback port whose requests are counted
    /// under `label`; its `http://127.0.0.1:<port>` URL.
    pub async fn listen(&self, label: &str) -> Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let shared = self.shared.clone();
        let label = label.to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let reset = Arc::new(AtomicBool::new(false));
                let io = ResettableStream {
                    stream,
                    reset: reset.clone(),
                };
                let (shared, label) = (shared.clone(), label.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (shared, label, reset) = (shared.clone(), label.clone(), reset.clone());
                        async move { handle(req, &shared, &label, &reset).await }
                    });
                    // A service error (an injected reset or drop) ends the
                    // connection without an answer.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Ok(format!("http://{addr}"))
    }
}

/// What ends a proxied connection: an injected reset or drop (hyper then
/// closes it unanswered), or a failure reading the request.
#[derive(Debug)]
enum ProxyError {
    Injected(Fault),
    Hyper(hyper::Error),
    Http(hyper::http::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Injected(k) => write!(f, "injected {}", k.name()),
            ProxyError::Hyper(e) => write!(f, "{e}"),
            ProxyError::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl From<hyper::Error> for ProxyError {
    fn from(e: hyper::Error) -> Self {
        ProxyError::Hyper(e)
    }
}

impl From<hyper::http::Error> for ProxyError {
    fn from(e: hyper::http::Error) -> Self {
        ProxyError::Http(e)
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    label: &str,
    reset: &AtomicBool,
) -> std::result::Result<Response<Full<Bytes>>, ProxyError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let service = service_of(&parts.headers);
    let op = operation_of(&service, &parts, &body);
    let n = shared.next.fetch_add(1, Ordering::SeqCst);
    let fault = FaultProxy::decide(shared.seed, shared.rate_ppm, n);
    {
        let mut fig = shared.figures.lock().unwrap_or_else(|p| p.into_inner());
        *fig.requests
            .entry((label.to_string(), service.clone()))
            .or_default() += 1;
        if let Some(f) = fault {
            *fig.injected
                .entry((label.to_string(), service.clone(), op.clone(), f))
                .or_default() += 1;
        }
    }
    match fault {
        Some(f @ (Fault::SlowDown | Fault::InternalError)) => {
            return Ok(error_response(&service, f));
        }
        Some(Fault::Reset) => {
            reset.store(true, Ordering::SeqCst);
            return Err(ProxyError::Injected(Fault::Reset));
        }
        Some(Fault::Delay) => tokio::time::sleep(DELAY).await,
        Some(Fault::Dropped) | None => {}
    }
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{pq}", shared.upstream));
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let sent = match out.body(Full::new(body)) {
        Ok(req) => shared.client.request(req).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let resp = match sent {
        Ok(resp) => {
            let (p, b) = resp.into_parts();
            let b = b.collect().await?.to_bytes();
            Response::from_parts(p, Full::new(b))
        }
        Err(e) => {
            shared
                .figures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .upstream_errors += 1;
            Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Full::new(Bytes::from(format!("proxy: {e}"))))?
        }
    };
    if fault == Some(Fault::Dropped) {
        // LocalStack has acted on it; the caller never learns.
        return Err(ProxyError::Injected(Fault::Dropped));
    }
    Ok(resp)
}

/// The AWS service a request is for, from its SigV4 credential scope
/// (`Credential=<key>/<date>/<region>/<service>/aws4_request`).
fn service_of(headers: &hyper::HeaderMap) -> String {
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unsigned")
        .to_string()
}

/// The operation: `X-Amz-Target` (JSON protocols), `Action=` (query
/// protocol), else the HTTP method (S3).
fn operation_of(service: &str, parts: &hyper::http::request::Parts, body: &[u8]) -> String {
    if let Some(t) = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    if service != "s3" {
        let text = String::from_utf8_lossy(body);
        if let Some(a) = text
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .map(String::from)
        {
            return a;
        }
    }
    parts.method.to_string()
}

/// The error answer each service's protocol gives for `fault`.
fn error_response(service: &str, fault: Fault) -> Response<Full<Bytes>> {
    let (status, s3_code, other_code) = match fault {
        Fault::SlowDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "ServiceUnavailable",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "InternalFailure",
        ),
    };
    let msg = "injected by the e2e fault proxy";
    let (content_type, body, query_error) = match service {
        "s3" => (
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3_code}</Code><Message>{msg}</Message><RequestId>fault-proxy</RequestId></Error>"),
            None,
        ),
        // SQS speaks JSON (awsJson1_0); SNS the query protocol (XML).
        "sqs" => (
            "application/x-amz-json-1.0",
            format!("{{\"__type\":\"com.amazonaws.sqs#{other_code}\",\"message\":\"{msg}\"}}"),
            Some(format!("AWS.SimpleQueueService.{other_code};Receiver")),
        ),
        _ => (
            "text/xml",
            format!("<ErrorResponse><Error><Type>Receiver</Type><Code>{other_code}</Code><Message>{msg}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"),
            None,
        ),
    };
    let mut b = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "fault-proxy");
    if let Some(q) = query_error {
        b = b.header("x-amzn-query-error", q);
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A TCP stream that closes with a reset (RST, zero linger) instead of an
/// orderly FIN once its flag is set.
struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        // A reset connection is not shut down in order: the drop resets it.
        if self.reset.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed_and_hits_the_rate() {
        let rate = 200_000;
        let a: Vec<_> = (0..20_000)
            .map(|n| FaultProxy::decide(7, rate, n))
            .collect();
        let b: Vec<_> = (0..20_000)
            .map(|n| FaultProxy::decide(7, rate, n))
            .collect();
        let c: Vec<_> = (0..20_000)
            .map(|n| FaultProxy::decide(8, rate, n))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let faults = a.iter().flatten().count();
        assert!((3_600..4_400).contains(&faults), "{faults} of 20000");
        for k in Fault::ALL {
            let n = a.iter().flatten().filter(|f| **f == k).count();
            assert!((600..1_000).contains(&n), "{k:?}: {n}");
        }
        assert!((0..1000).all(|n| FaultProxy::decide(7, 0, n).is_none()));
    }
}
