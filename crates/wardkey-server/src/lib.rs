//! Wardkey's HTTP edge: the `/api/v1` REST API, health, readiness, metrics and the OpenAPI
//! document, served over HTTP (loopback) or HTTPS (rustls).
//!
//! Handlers are thin: parse, authenticate, call one service method, map the result. Errors are
//! RFC 9457 problem documents ([`problem`]). A background task signs audit checkpoints while the
//! server runs; shutdown drains requests and closes the store, which writes the final one.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod extract;
pub mod hot;
pub mod listen;
pub mod observe;
pub mod openapi;
pub mod problem;
pub mod respond;
pub mod routes;
pub mod witness;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use observe::Metrics;
use routes::{access, audit, authn, authzen, directory, ops, pages, policy, tokens};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use wardkey_service::Services;

/// How long shutdown waits for in-flight requests before closing the store anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// TLS certificate chain and private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// HTTPS when set; required for a non-loopback `listen` unless `insecure_http`.
    pub tls: Option<TlsConfig>,
    /// Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub insecure_http: bool,
    /// Sign an audit checkpoint at least this often (when the log grew).
    pub checkpoint_interval: Duration,
    /// ... or as soon as this many events were appended since the last one.
    pub checkpoint_every_events: u64,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Connection cap and header, body and idle timeouts (`[http]` in the config file).
    pub http: listen::HttpLimits,
    /// Copies of every signed checkpoint outside the store (file and/or URL); see [`witness`].
    pub witness: witness::WitnessConfig,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            insecure_http: false,
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_every_events: 1000,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            http: listen::HttpLimits::default(),
            witness: witness::WitnessConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {addr} over plain HTTP: bearer tokens and directory data would cross the network in clear. \
         Configure TLS (--tls-cert and --tls-key, or `cert` and `key` in the [tls] section of the config file), \
         listen on a loopback address, or pass --insecure-http if a TLS-terminating proxy on a trusted network sits in front"
    )]
    InsecureBind { addr: SocketAddr },
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS configuration ({path}): {message}")]
    Tls { path: String, message: String },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("the server task failed: {0}")]
    Task(String),
}

/// Refuses a non-loopback address without TLS unless `insecure_http` is set.
pub fn check_bind_policy(config: &ServerConfig) -> Result<(), ServerError> {
    let loopback = config.listen.ip().to_canonical().is_loopback();
    if loopback || config.tls.is_some() || config.insecure_http {
        Ok(())
    } else {
        Err(ServerError::InsecureBind { addr: config.listen })
    }
}

/// What every handler shares. axum clones the state for every extractor of every request, so
/// it is one `Arc` (one reference count to touch) rather than a handful.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

pub struct SharedState {
    pub(crate) services: Services,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_body_bytes: usize,
    pub(crate) openapi: Bytes,
    /// Health of the audit witness sinks, for `/readyz` (`None` when none is configured).
    pub(crate) witness: Option<Arc<witness::WitnessStatus>>,
}

/// The application with the default body limit (1 MiB).
pub fn router(services: Services) -> Router {
    router_with_limit(services, DEFAULT_MAX_BODY_BYTES)
}

fn shared_state(services: Services, max_body_bytes: usize, witness: Option<Arc<witness::WitnessStatus>>) -> AppState {
    AppState(Arc::new(SharedState {
        services,
        metrics: Arc::new(Metrics::new()),
        max_body_bytes,
        openapi: Bytes::from(openapi::document()),
        witness,
    }))
}

/// The application: every route, the middleware, and the state.
pub fn router_with_limit(services: Services, max_body_bytes: usize) -> Router {
    routes_with_state(shared_state(services, max_body_bytes, None))
}

/// What the server serves: the decision hot path in front of the router (see [`hot`]).
pub fn app(services: Services, max_body_bytes: usize, witness: Option<Arc<witness::WitnessStatus>>) -> hot::Edge {
    let state = shared_state(services, max_body_bytes, witness);
    hot::Edge::new(routes_with_state(state.clone()), state)
}

fn routes_with_state(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        // users
        .route("/api/v1/users", post(directory::create_user).get(directory::list_users))
        .route(
            "/api/v1/users/{id}",
            get(directory::get_user).patch(directory::update_user).delete(directory::delete_user),
        )
        .route("/api/v1/users/{id}/status", post(directory::set_user_status))
        .route("/api/v1/users/{id}/verify-identity", post(directory::verify_identity))
        // groups
        .route("/api/v1/groups", post(directory::create_group).get(directory::list_groups))
        .route(
            "/api/v1/groups/{id}",
            get(directory::get_group).patch(directory::update_group).delete(directory::delete_group),
        )
        .route("/api/v1/groups/{id}/members", get(directory::list_members).post(directory::add_member))
        .route("/api/v1/groups/{id}/members/{kind}/{member_id}", axum::routing::delete(directory::remove_member))
        // service accounts
        .route(
            "/api/v1/service-accounts",
            post(directory::create_service_account).get(directory::list_service_accounts),
        )
        .route(
            "/api/v1/service-accounts/{id}",
            get(directory::get_service_account)
                .patch(directory::update_service_account)
                .delete(directory::delete_service_account),
        )
        // access model
        .route("/api/v1/resource-types", post(access::create_resource_type).get(access::list_resource_types))
        .route(
            "/api/v1/resource-types/{id}",
            get(access::get_resource_type).patch(access::update_resource_type).delete(access::delete_resource_type),
        )
        .route("/api/v1/resources", post(access::create_resource).get(access::list_resources))
        .route(
            "/api/v1/resources/{id}",
            get(access::get_resource).patch(access::update_resource).delete(access::delete_resource),
        )
        .route("/api/v1/roles", post(access::create_role).get(access::list_roles))
        .route("/api/v1/roles/{id}", get(access::get_role).patch(access::update_role).delete(access::delete_role))
        .route("/api/v1/role-templates", post(access::create_role_template).get(access::list_role_templates))
        .route(
            "/api/v1/role-templates/{id}",
            get(access::get_role_template).patch(access::update_role_template).delete(access::delete_role_template),
        )
        .route("/api/v1/sod-rules", post(access::create_sod_rule).get(access::list_sod_rules))
        .route(
            "/api/v1/sod-rules/{id}",
            get(access::get_sod_rule).patch(access::update_sod_rule).delete(access::delete_sod_rule),
        )
        .route("/api/v1/grants", post(access::create_grant).get(access::list_grants))
        .route("/api/v1/grants/{id}", get(access::get_grant).delete(access::revoke_grant))
        // tokens
        .route("/api/v1/tokens", post(tokens::create_token).get(tokens::list_tokens))
        .route("/api/v1/tokens/{id}", axum::routing::delete(tokens::revoke_token))
        // audit
        .route("/api/v1/audit/events", get(audit::list_events))
        .route("/api/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/api/v1/audit/proof/inclusion", get(audit::inclusion_proof))
        .route("/api/v1/audit/proof/consistency", get(audit::consistency_proof))
        .route("/api/v1/forbid-rules", post(policy::create_forbid_rule).get(policy::list_forbid_rules))
        .route("/api/v1/forbid-rules/{id}", get(policy::get_forbid_rule).delete(policy::delete_forbid_rule))
        .route("/api/v1/break-glass", post(policy::break_glass))
        // authorization (OpenID AuthZEN 1.0)
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/access/v1/search/subject", post(authzen::search_subject))
        .route("/access/v1/search/resource", post(authzen::search_resource))
        .route("/access/v1/search/action", post(authzen::search_action))
        .route("/.well-known/authzen-configuration", get(authzen::configuration))
        .route("/api/v1/access/subjects", get(authzen::who_has_access))
        .route("/api/v1/access/resources", get(authzen::what_can_they_reach))
        // authentication
        .route("/api/v1/auth/login", post(authn::login))
        .route("/api/v1/auth/totp", post(authn::totp))
        .route("/api/v1/auth/recovery", post(authn::recovery))
        .route("/api/v1/auth/webauthn/challenge", post(authn::webauthn_challenge))
        .route("/api/v1/auth/webauthn", post(authn::webauthn))
        .route("/api/v1/auth/logout", post(authn::logout))
        .route("/api/v1/me", get(authn::me))
        .route("/api/v1/me/password", post(authn::change_password))
        .route("/api/v1/me/factors", get(authn::my_factors))
        .route("/api/v1/me/factors/totp", post(authn::totp_begin))
        .route("/api/v1/me/factors/totp/{id}/confirm", post(authn::totp_confirm))
        .route("/api/v1/me/factors/webauthn/challenge", post(authn::passkey_begin))
        .route("/api/v1/me/factors/webauthn", post(authn::passkey_finish))
        .route("/api/v1/me/factors/{id}", axum::routing::delete(authn::remove_factor))
        .route("/api/v1/me/recovery-codes", post(authn::recovery_codes))
        .route("/api/v1/me/sessions", get(authn::my_sessions))
        .route("/api/v1/me/sessions/{id}", axum::routing::delete(authn::end_my_session))
        .route("/api/v1/sessions", get(authn::list_sessions))
        .route("/api/v1/sessions/{id}", axum::routing::delete(authn::revoke_session))
        .route("/api/v1/users/{id}/sessions/revoke", post(authn::revoke_user_sessions))
        .route("/api/v1/users/{id}/password", post(authn::set_password))
        .route("/api/v1/users/{id}/password/compromised", post(authn::password_compromised))
        .route("/api/v1/users/{id}/unlock", post(authn::unlock))
        .route("/api/v1/users/{id}/factors/reset", post(authn::reset_factors))
        .route("/api/v1/users/{id}/authn", get(authn::authn_status))
        // HTML pages (sign-in, second factor, enrolment, account)
        .merge(pages::routes())
        .merge(routes::scim::routes())
        .merge(routes::hr::routes())
        // operations
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

enum Listener {
    Plain(tokio::net::TcpListener),
    Tls(std::net::TcpListener, axum_server::tls_rustls::RustlsConfig),
}

/// A listening socket (and loaded TLS configuration), not serving yet.
struct Bound {
    listener: Listener,
    addr: SocketAddr,
}

async fn bind(config: &ServerConfig) -> Result<Bound, ServerError> {
    check_bind_policy(config)?;
    let tls = match &config.tls {
        Some(t) => Some(load_tls(t).await?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let listener = match tls {
        None => Listener::Plain(listener),
        Some(tls) => {
            let std = listener.into_std().map_err(|source| ServerError::Bind { addr, source })?;
            Listener::Tls(std, tls)
        }
    };
    Ok(Bound { listener, addr })
}

async fn load_tls(t: &TlsConfig) -> Result<axum_server::tls_rustls::RustlsConfig, ServerError> {
    // One crypto provider for the process (aws-lc-rs); ignore "already installed".
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert_path, &t.key_path).await.map_err(|e| {
        ServerError::Tls {
            path: format!("{} / {}", t.cert_path.display(), t.key_path.display()),
            message: e.to_string(),
        }
    })
}

/// Serves until `shutdown` completes, then drains, stops the checkpointer and closes the store.
async fn serve(
    bound: Bound,
    config: ServerConfig,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (revision, took) = services
        .start_decision_point()
        .await
        .map_err(|e| ServerError::Task(format!("building the decision index: {e}")))?;
    tracing::info!(revision, millis = took.as_millis() as u64, "decision index built");
    // Witness copies of the checkpoints, delivered apart from the write path.
    let witness =
        witness::Witness::start(config.witness.clone(), services.store_unchecked_for_operator_and_tests().clone());
    let app = app(services.clone(), config.max_body_bytes, witness.as_ref().map(|w| w.status.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let checkpointer = tokio::spawn(checkpointer(
        services.clone(),
        config.checkpoint_interval,
        config.checkpoint_every_events,
        stop_rx.clone(),
        witness.as_ref().map(witness::Witness::waker),
    ));
    // Contractor/HR end dates: disables people whose end date passed in their time zone.
    tokio::spawn(wardkey_service::hr::end_date_job(services.clone(), stop_rx.clone()));
    let sweeper = tokio::spawn(session_sweeper(services.clone(), stop_rx));
    tracing::info!(addr = %bound.addr, tls = matches!(bound.listener, Listener::Tls(..)), "serving");

    // The shutdown signal, seen by the accept loop.
    let (signal_tx, signal_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_tx.send(true);
    });
    // One accept loop for HTTP and HTTPS, with the connection cap and timeouts (listen.rs).
    let served = match bound.listener {
        Listener::Plain(listener) => {
            listen::serve(listener, None, app, config.http, signal_rx, DRAIN_TIMEOUT).await;
            Ok(())
        }
        Listener::Tls(listener, tls) => match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                // HTTP/1.1 only (what the server speaks): no ALPN offer of h2.
                let mut server_config = (*tls.get_inner()).clone();
                server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
                listen::serve(listener, Some(acceptor), app, config.http, signal_rx, DRAIN_TIMEOUT).await;
                Ok(())
            }
            Err(e) => Err(ServerError::Serve(e)),
        },
    };
    tracing::info!("stopped accepting requests; closing the store");

    let _ = stop_tx.send(true);
    if let Err(e) = checkpointer.await {
        tracing::error!(error = %e, "checkpointer task failed");
    }
    if let Err(e) = sweeper.await {
        tracing::error!(error = %e, "session sweeper task failed");
    }
    services.drain_decision_audit().await;
    if let Some(w) = witness {
        // Sign the last checkpoint here rather than in `close`, so the witness gets it too.
        if let Err(e) = services.checkpoint_now().await {
            tracing::warn!(error = %e, "final audit checkpoint before the witness flush failed");
        }
        w.finish().await;
    }
    services.close().await;
    served
}

/// Runs the server until `shutdown` completes. Refuses an insecure bind (see
/// [`check_bind_policy`]); on shutdown drains in-flight requests (up to [`DRAIN_TIMEOUT`]) and
/// closes the store, which signs the final checkpoint.
pub async fn run(
    config: ServerConfig,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let bound = bind(&config).await?;
    serve(bound, config, services, shutdown).await
}

/// A server started by [`spawn`].
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port` (or `https://`).
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops accepting, drains, closes the store and waits for all of it.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Task(e.to_string())),
        }
    }
}

/// Binds (port 0 picks a free port) and serves in a background task. Dropping the handle
/// also shuts the server down.
pub async fn spawn(config: ServerConfig, services: Services) -> Result<RunningServer, ServerError> {
    let bound = bind(&config).await?;
    let addr = bound.addr;
    let tls = matches!(bound.listener, Listener::Tls(..));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let task = tokio::spawn(serve(bound, config, services, shutdown));
    Ok(RunningServer { addr, tls, stop: Some(stop_tx), task })
}

/// Signs a checkpoint every `interval`, or sooner once `every_events` events were appended
/// since the last one. Errors are logged; the next round tries again.
/// How often sessions past their deadlines are looked for and ended.
const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Ends sessions that ran out without being presented again, so listings stay true.
async fn session_sweeper(services: Services, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SESSION_SWEEP_INTERVAL) => {}
            _ = stop.changed() => break,
        }
        match services.sweep_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ended = n, "ended sessions past their timeouts"),
            Err(e) => tracing::error!(error = %e, "sweeping sessions failed"),
        }
    }
}

async fn checkpointer(
    services: Services,
    interval: Duration,
    every_events: u64,
    mut stop: watch::Receiver<bool>,
    witness: Option<Arc<tokio::sync::Notify>>,
) {
    let interval = interval.max(Duration::from_millis(10));
    // How often the tree size is looked at, to notice `every_events` early.
    let tick = (interval / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let store = services.store_unchecked_for_operator_and_tests().clone();
    let mut last_size: Option<u64> = None;
    let mut last_time = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.changed() => break,
        }
        let size = match store.read().await {
            Ok(mut r) => r.audit_tree_size().await.ok(),
            Err(_) => None,
        };
        let due_by_count = match (size, last_size) {
            (Some(now), Some(then)) => now.saturating_sub(then) >= every_events.max(1),
            (Some(now), None) => now >= every_events.max(1),
            _ => false,
        };
        let due_by_time = last_time.elapsed() >= interval;
        if !(due_by_count || due_by_time) {
            continue;
        }
        last_time = tokio::time::Instant::now();
        match store.checkpoint_now().await {
            Ok(signed) => {
                last_size = size;
                if let (Some(_), Some(w)) = (signed, &witness) {
                    w.notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "signing an audit checkpoint failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_nothing_and_others_need_tls_or_consent() {
        let mut c = ServerConfig::default();
        assert!(check_bind_policy(&c).is_ok());
        c.listen = "[::1]:8080".parse().expect("addr");
        assert!(check_bind_policy(&c).is_ok());
        c.listen = "0.0.0.0:8080".parse().expect("addr");
        let err = check_bind_policy(&c).expect_err("refused").to_string();
        assert!(err.contains("--insecure-http") && err.contains("--tls-cert") && err.contains("[tls]"), "{err}");
        c.insecure_http = true;
        assert!(check_bind_policy(&c).is_ok());
        c.insecure_http = false;
        c.tls = Some(TlsConfig { cert_path: "c.pem".into(), key_path: "k.pem".into() });
        assert!(check_bind_policy(&c).is_ok());
    }
}
