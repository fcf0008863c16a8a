//! The HTTP floor for the AuthZEN benchmark: the same stack (tokio, one worker per core,
//! hyper through axum, mimalloc) answering the same wrk script with no authentication, no
//! middleware and no decision — it parses the body into the AuthZEN shape and answers a fixed
//! `{"decision":true}`. No PDP served over this stack on this machine can beat it, so the
//! ratio Wardkey / floor says how much of the gap to a goal is Wardkey's own work and how
//! much is HTTP and the load generator sharing the same cores.

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
