//! The HTTP floor for the AuthZEN benchmark: the same stack (tokio, one worker per core,
//! hyper through axum, mimalloc) answering the same wrk script with no authentication, no
//! middleware and no decision — it parses the body into the AuthZEN shape and answers a fixed
//! `{"decision":true}`. No PDP served over this stack on this machine can beat it, so the
//! ratio Wardkey / floor says how much of the gap to a goal is Wardkey's own work and how
//! much is HTTP and the load generator sharing the same cores.
//!
//! `WK_BENCH_FLOOR_PERCORE=1` serves the floor another way, to measure what it would be worth
//! to Wardkey: connections dealt round-robin to one current-thread runtime per core (hyper's
//! HTTP/1 connection driver directly) instead of axum's `serve` on tokio's work-stealing
//! runtime.

use crate::authzen_http::{WrkResult, wrk_median};
use axum::Json;
use axum::routing::post;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[allow(dead_code)] // parsed for the cost of parsing; the answer is fixed
struct Entity {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ActionName {
    name: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Req {
    subject: Entity,
    action: ActionName,
    resource: Entity,
}

async fn answer(Json(_req): Json<Req>) -> &'static str {
    "{\"decision\":true}"
}

/// Serves the floor on its own runtime, runs wrk against it, stops it.
pub(crate) async fn run(script: &Path, secs: u64, runs: usize) -> WrkResult {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<std::net::SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("floor runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
            let _ = ready_tx.send(listener.local_addr().expect("addr"));
            let app = axum::Router::new().route("/access/v1/evaluation", post(answer));
            if std::env::var("WK_BENCH_FLOOR_PERCORE").is_ok_and(|v| v == "1") {
                per_core(listener, app, stop_rx).await;
                return;
            }
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
                .expect("floor serves");
        });
    });
    let addr = ready_rx.await.expect("floor ready");
    let url = format!("http://{addr}/access/v1/evaluation");
    let script = script.to_owned();
    let r = tokio::task::spawn_blocking(move || wrk_median(&url, &script, secs, runs)).await.expect("wrk");
    let _ = stop_tx.send(());
    tokio::task::spawn_blocking(move || thread.join().expect("floor thread")).await.expect("join");
    r
}

/// `WK_BENCH_FLOOR_PERCORE=1`: connections dealt round-robin to one current-thread runtime per
/// core. No work stealing and no wake-ups across threads; a slow request holds up the others on
/// its thread, which is why the server has not adopted it.
async fn per_core(listener: tokio::net::TcpListener, app: axum::Router, stop_rx: tokio::sync::oneshot::Receiver<()>) {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut handles = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..n {
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stx, srx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            htx.send(rt.handle().clone()).expect("handle");
            rt.block_on(async move {
                let _ = srx.await;
            });
        });
        handles.push(hrx.recv().expect("handle"));
        stops.push(stx);
    }
    let mut k = 0usize;
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let Ok(std_stream) = stream.into_std() else { continue };
            let app = app.clone();
            handles[k % n].spawn(async move {
                let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else { return };
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
            k += 1;
        }
    };
    tokio::select! {
        () = accept => {}
        _ = stop_rx => {}
    }
    for s in stops {
        let _ = s.send(());
    }
}
