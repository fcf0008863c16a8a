//! The decision hot path. `POST /access/v1/evaluation` is nearly all of a PDP's traffic, tens
//! of thousands of requests a second from every application that holds PHI, and its work (a
//! token check and an index lookup of a few microseconds) is small beside what a generic
//! request costs in routing and middleware. So [`Edge`], in front of the router, answers that
//! one route itself when the request is in its common form: a bearer token and a JSON body.
//!
//! It keeps every promise the generic path makes: the same authentication, scope check and
//! audit events (the service does those), the same body limits (413) and problem documents,
//! a request id on every answer, a panic answered as a 500, the request counted in the
//! metrics and logged at debug level. What it leaves out is what the route never needs: the
//! route table, a tracing span per request, and the wait for the index after a write (a
//! decision writes nothing the index holds). Anything else (a session cookie, another method,
//! another content type) goes to the router, which answers as it always has.

use crate::AppState;
use crate::extract::payload_too_large;
use crate::observe::{self, REQUEST_ID_HEADER};
use crate::problem::Problem;
use crate::respond::ApiResult;
use crate::routes::authzen;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Either};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use std::time::Instant;
use wardkey_service::{Pdp, RequestMeta};

/// The one route served here.
pub const HOT_PATH: &str = "/access/v1/evaluation";
/// How the route is named in `auth.denied` events, as the router's extractor names it.
const HOT_OPERATION: &str = "POST /access/v1/evaluation";

/// The server's service: the hot path, and the router for everything else.
#[derive(Clone)]
pub struct Edge {
    router: Router,
    state: AppState,
}

impl Edge {
    pub(crate) fn new(router: Router, state: AppState) -> Edge {
        Edge { router, state }
    }
}

/// Whether the hot path takes the request: the route, a bearer credential, a JSON body.
fn is_hot<B>(req: &axum::http::Request<B>) -> bool {
    req.method() == Method::POST
        && req.uri().path() == HOT_PATH
        && req.headers().contains_key(header::AUTHORIZATION)
        && crate::extract::is_json(req.headers())
}

impl<B> tower::Service<axum::http::Request<B>> for Edge
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<RouteFuture<Infallible>, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready, and so is the hot path.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        if is_hot(&req) {
            let state = self.state.clone();
            Either::Right(Box::pin(async move { Ok(serve(state, req.map(Body::new)).await) }))
        } else {
            Either::Left(tower::Service::call(&mut self.router, req))
        }
    }
}

async fn serve(state: AppState, req: Request) -> Response {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let request_id = parts
        .headers
        .get(REQUEST_ID_HEADER)
        .and_then(observe::valid_request_id)
        .unwrap_or_else(observe::new_request_id);
    let source_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip().to_canonical().to_string());
    let meta = RequestMeta { source_ip, request_id: Some(request_id.clone()), operation: None };

    let answered = AssertUnwindSafe(answer(&state, &parts.headers, body, meta)).catch_unwind().await;
    let mut res = match answered {
        Ok(Ok(res)) => res,
        Ok(Err(problem)) => problem.into_response(),
        Err(_) => {
            tracing::error!(path = HOT_PATH, request_id = %request_id, "handler panicked");
            Problem::internal().into_response()
        }
    };
    let status = res.status();
    let elapsed = start.elapsed();
    if status.is_server_error() {
        tracing::warn!(method = "POST", path = HOT_PATH, request_id = %request_id, status = status.as_u16(), latency_ms = elapsed.as_secs_f64() * 1000.0, "request failed");
    } else {
        tracing::debug!(method = "POST", path = HOT_PATH, request_id = %request_id, status = status.as_u16(), latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    }
    state.metrics.observe_hot(status, elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

/// Authenticate, read the body, decide; in the order the router's extractors use.
async fn answer(state: &AppState, headers: &HeaderMap, body: Body, meta: RequestMeta) -> ApiResult {
    let declared_len =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(payload_too_large());
    }
    let token = crate::extract::bearer_token(headers)?;
    let caller = state.services.authenticate(token, meta).await?;
    let authorized = state.services.authorize_owned::<Pdp>(caller, HOT_OPERATION).await?;
    let header_rev = authzen::min_revision_header(headers)?;
    let bytes = match Limited::new(body, state.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(payload_too_large()),
        Err(_) => return Err(Problem::malformed("the request body could not be read")),
    };
    authzen::decide(state, &authorized, header_rev, &bytes).await
}
