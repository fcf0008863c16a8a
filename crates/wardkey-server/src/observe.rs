//! Per-request plumbing: request id, source address, early body-size refusal, a tracing span
//! and Prometheus metrics.
//!
//! Logged per request: method, route template, status, latency, request id. Never headers
//! (so never `Authorization`), bodies, query strings or tokens.

use crate::AppState;
use crate::extract::{RequestContext, payload_too_large};
use crate::problem::Problem;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    path: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    path: String,
}

/// The server's Prometheus registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    audit_tree_size: Gauge,
    /// The hot path's series, looked up once: its common answer costs two atomic updates.
    hot_ok: Counter,
    hot_latency: Histogram,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wardkey");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let audit_tree_size = Gauge::default();
        registry.register("http_requests", "HTTP requests by method, route template and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            latency.clone(),
        );
        registry.register(
            "audit_tree_size",
            "Number of events in the audit log (Merkle tree size)",
            audit_tree_size.clone(),
        );
        let hot = crate::hot::HOT_PATH.to_owned();
        let hot_ok = requests.get_or_create(&RequestLabels { method: "POST", path: hot.clone(), status: 200 }).clone();
        let hot_latency = latency.get_or_create(&RouteLabels { method: "POST", path: hot }).clone();
        Metrics { registry, requests, latency, audit_tree_size, hot_ok, hot_latency }
    }

    fn observe(&self, method: &Method, path: &str, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        self.requests.get_or_create(&RequestLabels { method, path: path.to_owned(), status: status.as_u16() }).inc();
        self.latency.get_or_create(&RouteLabels { method, path: path.to_owned() }).observe(elapsed.as_secs_f64());
    }

    /// A request the hot path answered (`POST /access/v1/evaluation`).
    pub(crate) fn observe_hot(&self, status: StatusCode, elapsed: Duration) {
        if status == StatusCode::OK {
            self.hot_ok.inc();
        } else {
            let path = crate::hot::HOT_PATH.to_owned();
            self.requests.get_or_create(&RequestLabels { method: "POST", path, status: status.as_u16() }).inc();
        }
        self.hot_latency.observe(elapsed.as_secs_f64());
    }

    pub fn set_audit_tree_size(&self, size: u64) {
        self.audit_tree_size.set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Bounded label values: unknown methods collapse to `OTHER`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A fresh request id: a UUIDv7, so ids sort by time in the logs.
pub(crate) fn new_request_id() -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf).to_owned()
}

/// A client-supplied request id is kept when it is 1–128 printable ASCII characters.
pub(crate) fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > MAX_REQUEST_ID || !b.iter().all(|c| (0x20..=0x7e).contains(c)) {
        return None;
    }
    v.to_str().ok().map(str::to_owned)
}

/// The middleware around every route and the fallback.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req.headers().get(REQUEST_ID_HEADER).and_then(valid_request_id).unwrap_or_else(new_request_id);
    let source_ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip().to_canonical().to_string());
    let method = req.method().clone();
    let path =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    req.extensions_mut().insert(RequestContext { request_id: request_id.clone(), source_ip });

    // Decisions are tens of thousands a second and each PHI decision is an audit event of its
    // own: their request lines are debug, not info, so the log does not grow with traffic.
    let quiet = path.starts_with("/access/v1/");
    let span = if quiet {
        tracing::debug_span!("request", method = %method, path = %path, request_id = %request_id)
    } else {
        tracing::info_span!("request", method = %method, path = %path, request_id = %request_id)
    };

    let declared_len =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = declared_len.is_some_and(|n| n > state.max_body_bytes as u64);

    let mut res = if too_large {
        payload_too_large().into_response()
    } else {
        // A panic is a bug, but it must still answer as a problem, not drop the connection.
        match AssertUnwindSafe(next.run(req).instrument(span.clone())).catch_unwind().await {
            Ok(res) => res,
            Err(_) => {
                tracing::error!(parent: &span, "handler panicked");
                Problem::internal().into_response()
            }
        }
    };

    // A write is acknowledged only once the decision index has applied it, which the service
    // layer guarantees (its store writes wait for the index), whatever the handler returns.

    let status = res.status();
    let elapsed = start.elapsed();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(parent: &span, status = status.as_u16(), latency_ms, "request failed");
    } else if quiet {
        tracing::debug!(parent: &span, status = status.as_u16(), latency_ms, "request");
    } else {
        tracing::info!(parent: &span, status = status.as_u16(), latency_ms, "request");
    }
    state.metrics.observe(&method, &path, status, elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_and_printable() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(valid_request_id(&HeaderValue::from_static("")).is_none());
        let long = "a".repeat(129);
        assert!(valid_request_id(&HeaderValue::from_str(&long).expect("ascii")).is_none());
        let max = "a".repeat(128);
        assert!(valid_request_id(&HeaderValue::from_str(&max).expect("ascii")).is_some());
        assert!(valid_request_id(&HeaderValue::from_bytes(b"a\tb").expect("tab allowed in header")).is_none());
    }

    #[test]
    fn metrics_encode_counter() {
        let m = Metrics::new();
        m.observe(&Method::GET, "/healthz", StatusCode::OK, Duration::from_millis(3));
        m.set_audit_tree_size(7);
        let text = m.encode().expect("encodes");
        assert!(text.contains("wardkey_http_requests_total"), "{text}");
        assert!(text.contains("wardkey_audit_tree_size 7"), "{text}");
    }
}
