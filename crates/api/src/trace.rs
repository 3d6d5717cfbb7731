//! The span of every API request, exported as an OpenTelemetry server span when the
//! node sends traces (see [`rota_core::TRACE_TARGET`]); without an exporter the
//! span is disabled and costs a callsite check.
//!
//! It is named by the matched route, never the concrete path (`HTTP GET
//! /v1/jobs/{name}`), so traces group by endpoint, and it is the current span while
//! the handler runs: a Raft commit the request makes is its child.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::Instrument;

use crate::AppState;

/// Middleware wrapping every request in its `http.request` span.
pub async fn trace_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let span = tracing::info_span!(
        target: rota_core::TRACE_TARGET,
        "http.request",
        otel.name = %match &route {
            Some(route) => format!("HTTP {method} {}", route.as_str()),
            None => format!("HTTP {method}"),
        },
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route.as_ref().map(MatchedPath::as_str),
        http.response.status_code = Empty,
        node = %state.node.config().node_name,
    );
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    // Server spans are errors on 5xx only; a 4xx is the client's mistake.
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    resp
}
