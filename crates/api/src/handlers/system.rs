//! Health, metrics, the API description, the landing page and the fallbacks.

use axum::extract::State;
use axum::http::{header, Method, Uri};
use axum::response::{Html, IntoResponse};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::Params;
use crate::{metrics as prom, AppState};

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
    Ok(Json(json!({
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
    })))
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
        http: &s.http,
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

/// `GET /`: a pointer to the API until the web UI exists.
pub(crate) async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>rota</title></head>\n",
        "<body><h1>rota</h1><ul>\n",
        "<li><a href=\"/v1/health\">health</a></li>\n",
        "<li><a href=\"/v1/jobs\">jobs</a></li>\n",
        "<li><a href=\"/v1/openapi.json\">API description (OpenAPI)</a></li>\n",
        "<li><a href=\"/metrics\">metrics</a></li>\n",
        "</ul></body></html>\n"
    ))
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
