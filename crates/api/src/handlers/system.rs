//! Health and readiness, metrics, the API description and the fallbacks.

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::Params;
use crate::{host, metrics as prom, AppState};

/// How many committed log entries a node may still have to apply and yet count as
/// ready (`GET /readyz`). A follower under steady writes is always a few entries
/// behind the commit index it has heard of; more than this means it is catching up
/// (after a restart, a partition, a snapshot install) and would answer stale reads.
pub(crate) const READY_MAX_APPLY_LAG: u64 = 100;

/// The hand-written OpenAPI 3.1 description of every route.
pub(crate) const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /v1/health`: who this node is and what it knows of the cluster.
pub(crate) async fn health(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    let node = s.node.status();
    let now = chrono::Utc::now();
    let uptime_s = (now - s.started_at).num_seconds().max(0);
    let mut body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "node": node.node,
        "node_id": node.node_id,
        "role": node.role,
        "leader": node.leader,
        "leader_url": node.leader_url,
        "term": node.term,
        "last_log_index": node.last_log_index,
        "last_applied": node.last_applied,
        "snapshot_index": node.snapshot_index,
        "uptime_s": uptime_s,
        "scheduler": s.scheduler.stats(),
        "workers": s.workers.statuses(),
    });
    // Unreadable figures are left out, never reported as zero.
    if let Some(load) = host::load() {
        body["load"] = json!(load);
    }
    let memory = host::memory();
    if memory != host::Memory::default() {
        body["memory"] = json!(memory);
    }
    Ok(Json(body))
}

/// `GET /healthz`: the process serves HTTP (a liveness probe).
pub(crate) async fn healthz(params: Params) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    Ok(Json(json!({"status": "ok"})))
}

/// `GET /readyz`: 200 when this node is a member of a cluster with a known leader
/// and has applied what it knows to be committed (within [`READY_MAX_APPLY_LAG`]);
/// otherwise 503 with the reason (a readiness probe: a load balancer sends it no
/// traffic meanwhile).
pub(crate) async fn readyz(
    State(s): State<AppState>,
    params: Params,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    let (not_ready, mut body) = match s.node.readiness().await {
        Ok(r) => {
            let lag = r.commit_index.saturating_sub(r.last_applied);
            let not_ready = if s.scheduler.is_draining() {
                Some("stopping: this node takes no new runs".to_string())
            } else if !r.member {
                Some("not a cluster member".to_string())
            } else if r.leader.is_none() {
                Some("no leader known".to_string())
            } else {
                (lag > READY_MAX_APPLY_LAG).then(|| format!("applying behind by {lag} entries"))
            };
            let body = json!({
                "status": "ready",
                "leader": r.leader,
                "commit_index": r.commit_index,
                "last_applied": r.last_applied,
            });
            (not_ready, body)
        }
        Err(_) => {
            let status = s.node.status();
            let body = json!({
                "status": "ready",
                "leader": status.leader,
                "commit_index": null,
                "last_applied": status.last_applied,
            });
            (Some("raft is not running".to_string()), body)
        }
    };
    let code = match not_ready {
        None => StatusCode::OK,
        Some(reason) => {
            body["status"] = json!("not_ready");
            body["reason"] = json!(reason);
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    Ok((code, Json(body)))
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // Target counts come from the replicated store (every node answers the same);
    // a read error leaves the family empty rather than failing the scrape.
    let targets: Vec<(String, usize)> = s
        .node
        .store()
        .target_sets()
        .map(|sets| {
            sets.iter()
                .map(|t| (t.spec.name.clone(), t.targets.len()))
                .collect()
        })
        .unwrap_or_default();
    let commit_index = s.node.commit_index().await.ok();
    let counts = s.telemetry.counts();
    let text = prom::render(&prom::Sources {
        node: &s.node.status(),
        sched: &s.scheduler.stats(),
        workers: &s.workers.statuses(),
        http: &s.shared().http,
        telemetry: &counts,
        targets: &targets,
        commit_index,
    });
    drop(counts);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}
