//! rota's HTTP API (axum): the contract's `/v1` routes for jobs, executions,
//! workflows and their runs, and the linearizable KV space, plus `/v1/health`, the `/healthz` and `/readyz` probes, `/metrics`, `/v1/openapi.json` and `/`.
//!
//! [`router`] builds the whole API from [`ApiState`] (the Raft [`Node`], the
//! [`SchedulerHandle`] and the node's worker [`rota_background::Runner`]). Writes become [`rota_core::Command`]s committed through
//! [`Node::write`], tagged with the session headers (`Rota-Client-Id`,
//! `Rota-Request-Seq`) so that a retried request is answered from the state
//! machine's stored [`rota_core::Response`] and applied once; every HTTP answer of a
//! write is therefore built from that response. Reads come from the local store,
//! behind a ReadIndex barrier for KV reads unless `?stale=true`. Every failure is an
//! [`ApiError`], turned into a status and a `{"error": {...}}` body in `error.rs`.
//! The route table lives in one list (`routes.rs`) that builds the router and
//! that the OpenAPI drift test checks against `openapi.json`.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use rota_cluster::Node;
use rota_core::{ClientRequest, Command, Response, Timestamp};
use rota_scheduler::SchedulerHandle;

mod auth;
mod error;
mod extract;
mod handlers;
mod host;
mod limits;
mod metrics;
mod routes;
mod trace;
mod view;
mod watch;

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod docs_tests;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod targets_tests;
#[cfg(test)]
mod workflow_tests;

pub use auth::{hash_token, Caller};
pub use error::ApiError;
pub use extract::{BODY_LIMIT, CLIENT_ID_HEADER, REQUEST_SEQ_HEADER};
pub use handlers::config::StaticSetting;
pub use limits::MAX_HEADER_BYTES;
pub use watch::{WatchHub, DEFAULT_MAX_WATCHERS, DEFAULT_WATCH_BUFFER};

/// What the API serves from.
pub struct ApiState {
    pub node: Arc<Node>,
    pub scheduler: Arc<SchedulerHandle>,
    /// When the server started (for `uptime_s`).
    pub started_at: Timestamp,
    /// The node's background workers, listed by health and metrics.
    pub workers: rota_background::Runner,
    /// The node's live watchers, fed by its `watch` worker
    /// ([`WatchHub::spawn_worker`]).
    pub watch: Arc<WatchHub>,
    /// Counters and histograms that `/metrics` reports beside the gauges.
    pub telemetry: Arc<rota_scheduler::telemetry::Telemetry>,
    /// This node's static settings, as `GET /v1/config` lists them.
    pub settings: Vec<StaticSetting>,
    /// The hash of the configured first admin token (`auth_admin_token`): while
    /// the store holds no token yet, requests need it (as admin) instead of being
    /// let through.
    pub admin_token_hash: Option<String>,
}

/// The state handlers get: the caller's [`ApiState`] plus what the API keeps for
/// itself (request counters).
/// One pointer: the router hands a copy to every middleware and handler of
/// every request, and each copy is a reference count taken and dropped.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    api: ApiState,
    pub(crate) http: metrics::HttpCounters,
    /// Failed sign-ins per client address.
    pub(crate) auth_failures: auth::Failures,
}

impl Deref for AppState {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0.api
    }
}

impl AppState {
    pub(crate) fn shared(&self) -> &Shared {
        &self.0
    }

    /// Makes the read that follows linearizable (this node first catches up with
    /// the leader's commit index, confirmed by a quorum), unless `?stale=true` asks
    /// for this node's state as it is.
    pub(crate) async fn read_barrier(&self, params: &extract::Params) -> Result<(), ApiError> {
        if !params.flag("stale")? {
            self.node.read_barrier().await?;
        }
        Ok(())
    }

    /// Commits one command with the request's session and the current time.
    pub(crate) async fn commit(
        &self,
        session: &extract::Session,
        command: Command,
    ) -> Result<Response, ApiError> {
        let req = ClientRequest {
            session: session.0.clone(),
            at: chrono::Utc::now(),
            command: session.attribute(command),
        };
        let (index, response) = self.node.write(req).await?;
        tracing::debug!(index, "request committed");
        // Handlers read their answer from this node's store: a write a follower
        // forwarded is there once the follower applied it too.
        self.node.wait_applied(index).await?;
        Ok(response)
    }
}

/// The API's router, state applied. The binary merges the node's peer router into
/// it and serves it.
pub fn router(state: ApiState) -> Router {
    let app = AppState(Arc::new(Shared {
        api: state,
        http: metrics::HttpCounters::default(),
        auth_failures: auth::Failures::default(),
    }));
    let mut router = Router::new();
    for route in routes::routes() {
        let auth = axum::middleware::from_fn_with_state((app.clone(), route.need), auth::require);
        router = router.route(route.path, route.handler.route_layer(auth));
    }
    router
        .fallback(handlers::system::no_route)
        .method_not_allowed_fallback(handlers::system::method_not_allowed)
        .layer(axum::middleware::from_fn(limits::check_headers))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::count_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            trace::trace_requests,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}
