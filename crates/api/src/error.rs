//! The one place where failures become HTTP answers.
//!
//! Every handler returns `Result<_, ApiError>`; [`ApiError::into_response`] picks the
//! status code and writes the contract's body,
//! `{"error": {"code", "message", "field"?, ...}}`. Refusals of the state machine
//! ([`rota_core::Response`] variants such as `NotFound` or `RevisionMismatch`) and
//! failures of the write path ([`WriteError`]) are mapped here too, so a route never
//! chooses a status code by itself.

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use rota_cluster::{MembershipError, WriteError};
use rota_core::{ExecStatus, Response, ValidationError};
use rota_store::StoreError;
use serde_json::{json, Map, Value};
use ulid::Ulid;

/// Why a request was not answered with success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field, parameter or header was wrong; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The body is not well-formed JSON. The parser's message says where, and the
    /// client needs it, so it is part of this message rather than a source.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(serde_json::Error),
    /// The body could not be read (client went away, bad transfer encoding, ...).
    /// axum's rejection already ends its own text with its cause, so it is shown
    /// here and not chained as a source (that would say the cause twice).
    #[error("the request body could not be read: {0}")]
    UnreadableBody(BytesRejection),
    /// The body is larger than the server accepts.
    #[error("the request body is larger than {limit} bytes, the most one request may carry")]
    PayloadTooLarge { limit: usize },
    /// The request's headers are larger than the server accepts.
    #[error(
        "the request headers are {bytes} bytes, more than the {limit} bytes one request may carry"
    )]
    HeadersTooLarge { bytes: usize, limit: usize },
    /// The named thing (`job "x"`, `execution 01H...`, `key "k"`) does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// No route matches the request's path.
    #[error("no route for {method} {path}; the API is described at /v1/openapi.json")]
    NoRoute { method: String, path: String },
    /// The path exists but not with this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// A compare-and-set on a key failed; `current` is the key's `mod_revision`
    /// (0 when it does not exist).
    #[error("key {key:?} is at mod_revision {current}, not the expected one")]
    RevisionMismatch { key: String, current: u64 },
    /// A session write older than the last one seen from that client.
    #[error("request {seq} of client {client_id:?} is older than its last one ({last_seq})")]
    StaleRequest {
        client_id: String,
        seq: u64,
        last_seq: u64,
    },
    /// A cancel came after the execution had ended.
    #[error("execution {id} already finished ({})", status.as_str())]
    AlreadyFinished { id: Ulid, status: ExecStatus },
    /// This node cannot take the write; `leader_url` is where to send it.
    #[error("this node is not the leader and could not forward the request")]
    NotLeader { leader_url: Option<String> },
    /// The write did not commit in time (no quorum reachable, overloaded).
    #[error("the request did not commit within {0:?}; it may still apply: retry with the same Rota-Request-Seq")]
    Timeout(Duration),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node serves as many watch connections as it may (`watch_max_connections`).
    #[error(
        "this node already serves {limit} watch connections, its limit \
         (watch_max_connections); retry later, or watch through another node"
    )]
    TooManyWatchers { limit: usize },
    /// A cluster route needs the cluster secret and the request lacks it.
    #[error("this route needs the cluster secret in the Rota-Cluster-Secret header")]
    Unauthorized,

    /// No token, or one that is not valid, where tokens are required.
    #[error("{0}")]
    TokenRequired(&'static str),

    /// A valid token whose role is too small for the route.
    #[error("this needs the {need} role; token {token:?} has {have}")]
    Forbidden {
        need: rota_core::auth::Role,
        have: rota_core::auth::Role,
        token: String,
    },

    /// A client session opened by another token.
    #[error(
        "client session {client_id:?} belongs to another token; use a Rota-Client-Id of your own"
    )]
    SessionNotYours { client_id: String },

    /// Too many failed sign-ins from one address.
    #[error("too many requests with a bad token from this address; wait {retry_after_s}s")]
    TooManyAttempts { retry_after_s: u64 },
    /// A membership change was refused for a reason the caller can act on
    /// (`InProgress`: retry later; `LastVoter`); the cluster's own message.
    #[error(transparent)]
    Membership(rota_cluster::MembershipError),
    /// Raft failed in a way that is neither a timeout nor a leadership change.
    #[error("consensus failed")]
    Consensus(#[source] WriteError),
    /// A watch asked for events after a revision the event log no longer holds.
    #[error(
        "events after revision {requested} are no longer kept; the log starts after \
         revision {compact_revision}: watch from there (or without since) and reload state"
    )]
    Compacted {
        requested: u64,
        compact_revision: u64,
    },
    /// A file is kept on another node, which is not registered with an API address
    /// (it never registered as a worker, or left the cluster).
    #[error("{what} is kept on node {node:?}, whose API address is not known")]
    NodeUnknown { what: String, node: String },
    /// A file is kept on another node, which did not answer. The node and the cause
    /// are in the message: they are what the client can act on.
    #[error("{what} is kept on node {node:?}, which could not be reached at {url}: {reason}")]
    NodeUnreachable {
        what: String,
        node: String,
        url: String,
        reason: String,
    },
    /// A file this node keeps (an artifact) could not be read.
    #[error("reading {} failed", path.display())]
    ArtifactUnreadable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading the local state machine failed.
    #[error("target set {set:?} has not been discovered yet; try again once discovery reported (GET /v1/targets/{set})")]
    NotDiscovered { set: String },
    #[error("reading the store failed")]
    Store(#[from] StoreError),
    /// An answer could not be serialized (a bug).
    #[error("serializing the answer failed")]
    Serialize(#[source] serde_json::Error),
    /// A blocking store scan panicked or was cancelled.
    #[error("a store scan did not complete")]
    TaskFailed(#[source] tokio::task::JoinError),
    /// The state machine answered something this route never expects (a bug).
    #[error("unexpected answer from the state machine to {route}: {response:?}")]
    UnexpectedResponse {
        route: &'static str,
        response: Box<Response>,
    },
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound { what: what.into() }
    }

    /// Maps a state-machine refusal that any write route may get (`NotFound`,
    /// `RevisionMismatch`, `StaleSession`); anything else is unexpected for `route`.
    pub fn from_refusal(route: &'static str, seq: Option<u64>, response: Response) -> Self {
        match response {
            Response::NotFound { what } => ApiError::NotFound { what },
            Response::RevisionMismatch { key, current } => {
                ApiError::RevisionMismatch { key, current }
            }
            Response::StaleSession {
                client_id,
                last_seq,
            } => ApiError::StaleRequest {
                client_id,
                seq: seq.unwrap_or_default(),
                last_seq,
            },
            Response::SessionNotYours { client_id } => ApiError::SessionNotYours { client_id },
            Response::AlreadyFinished { execution } => ApiError::AlreadyFinished {
                id: execution.id,
                status: execution.status,
            },
            other => ApiError::UnexpectedResponse {
                route,
                response: Box::new(other),
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::InvalidJson(_) | ApiError::UnreadableBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::Compacted { .. } => StatusCode::GONE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RevisionMismatch { .. }
            | ApiError::StaleRequest { .. }
            | ApiError::AlreadyFinished { .. } => StatusCode::CONFLICT,
            ApiError::NotLeader { .. }
            | ApiError::Timeout(_)
            | ApiError::ShuttingDown
            | ApiError::TooManyWatchers { .. }
            | ApiError::NodeUnknown { .. }
            | ApiError::NotDiscovered { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NodeUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Membership(MembershipError::LastVoter { .. }) => StatusCode::CONFLICT,
            ApiError::Membership(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized | ApiError::TokenRequired(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::SessionNotYours { .. } => StatusCode::FORBIDDEN,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Consensus(_)
            | ApiError::Store(_)
            | ApiError::ArtifactUnreadable { .. }
            | ApiError::TaskFailed(_)
            | ApiError::Serialize(_)
            | ApiError::UnexpectedResponse { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The contract's machine-readable `code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnreadableBody(_) => "invalid_body",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::HeadersTooLarge { .. } => "headers_too_large",
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::RevisionMismatch { .. } => "revision_mismatch",
            ApiError::Compacted { .. } => "compacted",
            ApiError::StaleRequest { .. } => "stale_request",
            ApiError::AlreadyFinished { .. } => "already_finished",
            ApiError::NotLeader { .. } => "not_leader",
            ApiError::Timeout(_) => "timeout",
            ApiError::ShuttingDown => "unavailable",
            ApiError::Unauthorized | ApiError::TokenRequired(_) => "unauthorized",
            ApiError::Forbidden { .. } | ApiError::SessionNotYours { .. } => "forbidden",
            ApiError::TooManyAttempts { .. } => "too_many_requests",
            ApiError::TooManyWatchers { .. } => "too_many_watchers",
            ApiError::NodeUnknown { .. } => "node_unknown",
            ApiError::NotDiscovered { .. } => "not_discovered",
            ApiError::NodeUnreachable { .. } => "node_unreachable",
            ApiError::Membership(MembershipError::LastVoter { .. }) => "last_voter",
            ApiError::Membership(_) => "membership_in_progress",
            ApiError::Consensus(_)
            | ApiError::Store(_)
            | ApiError::ArtifactUnreadable { .. }
            | ApiError::TaskFailed(_)
            | ApiError::Serialize(_)
            | ApiError::UnexpectedResponse { .. } => "internal",
        }
    }

    /// The error object (the value of the body's `error` key).
    pub fn body(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), json!(self.code()));
        let message = match self {
            ApiError::Invalid { message, .. } => message.clone(),
            // Internal details go to the log, not to the client.
            ApiError::Consensus(_)
            | ApiError::Store(_)
            | ApiError::ArtifactUnreadable { .. }
            | ApiError::TaskFailed(_)
            | ApiError::Serialize(_)
            | ApiError::UnexpectedResponse { .. } => {
                "internal error; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        obj.insert("message".into(), json!(message));
        match self {
            ApiError::Invalid { field, .. } => {
                obj.insert("field".into(), json!(field));
            }
            ApiError::RevisionMismatch { key, current } => {
                obj.insert("key".into(), json!(key));
                obj.insert("mod_revision".into(), json!(current));
            }
            ApiError::StaleRequest { last_seq, .. } => {
                obj.insert("last_seq".into(), json!(last_seq));
            }
            ApiError::AlreadyFinished { id, status } => {
                obj.insert("id".into(), json!(id.to_string()));
                obj.insert("status".into(), json!(status.as_str()));
            }
            ApiError::NotLeader { leader_url } => {
                obj.insert("leader".into(), json!(leader_url));
            }
            ApiError::Compacted {
                compact_revision, ..
            } => {
                obj.insert("compact_revision".into(), json!(compact_revision));
            }
            ApiError::PayloadTooLarge { limit }
            | ApiError::TooManyWatchers { limit }
            | ApiError::HeadersTooLarge { limit, .. } => {
                obj.insert("limit".into(), json!(limit));
            }
            _ => {}
        }
        json!({ "error": obj })
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotLeader { leader_url } | WriteError::LeaderMoved { leader_url } => {
                ApiError::NotLeader { leader_url }
            }
            WriteError::Timeout(d) => ApiError::Timeout(d),
            WriteError::ShuttingDown => ApiError::ShuttingDown,
            #[allow(unreachable_patterns)]
            other => ApiError::Consensus(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        let status = self.status();
        if status.is_server_error() {
            // The causes go to the log only; the client gets `body()`.
            let error = rota_core::error::chain(&self);
            tracing::error!(code = self.code(), %error, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let mut resp = (status, Json(self.body())).into_response();
        if let ApiError::NotLeader {
            leader_url: Some(url),
        } = &self
        {
            // Lets generic HTTP clients find the leader without parsing the body.
            if let Ok(v) = HeaderValue::from_str(url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(e: ApiError) -> (StatusCode, Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json body"))
    }

    #[tokio::test]
    async fn invalid_names_the_field() {
        let (status, body) =
            parts(ValidationError::new("schedule.cron", "hour 25 is out of range").into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"error": {"code": "invalid", "message": "hour 25 is out of range", "field": "schedule.cron"}})
        );
    }

    #[tokio::test]
    async fn revision_mismatch_carries_the_current_revision() {
        let (status, body) = parts(ApiError::from_refusal(
            "kv put",
            None,
            Response::RevisionMismatch {
                key: "a".into(),
                current: 7,
            },
        ))
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "revision_mismatch");
        assert_eq!(body["error"]["mod_revision"], 7);
        assert_eq!(body["error"]["key"], "a");
    }

    #[tokio::test]
    async fn stale_session_is_a_conflict() {
        let (status, body) = parts(ApiError::from_refusal(
            "kv put",
            Some(3),
            Response::StaleSession {
                client_id: "c".into(),
                last_seq: 5,
            },
        ))
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "stale_request");
        assert_eq!(body["error"]["last_seq"], 5);
    }

    #[tokio::test]
    async fn not_leader_names_the_leader() {
        let resp = ApiError::from(WriteError::NotLeader {
            leader_url: Some("http://10.0.0.2:7700".into()),
        })
        .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers().get(header::LOCATION).map(|v| v.as_bytes()),
            Some(&b"http://10.0.0.2:7700"[..])
        );
        let (_, body) = parts(ApiError::NotLeader { leader_url: None }).await;
        assert_eq!(
            body,
            json!({"error": {"code": "not_leader", "message": "this node is not the leader and could not forward the request", "leader": null}})
        );
    }

    #[tokio::test]
    async fn write_failures_map_to_unavailable_or_internal() {
        let (status, body) = parts(WriteError::Timeout(Duration::from_secs(10)).into()).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (StatusCode::SERVICE_UNAVAILABLE, json!("timeout"))
        );
        let (status, body) = parts(WriteError::ShuttingDown.into()).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (StatusCode::SERVICE_UNAVAILABLE, json!("unavailable"))
        );
        let (status, body) = parts(
            WriteError::Leader {
                message: "disk on fire".into(),
            }
            .into(),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        // Internal details stay in the log.
        assert!(!body.to_string().contains("disk on fire"), "{body}");
    }

    #[tokio::test]
    async fn unexpected_answers_are_internal() {
        let (status, body) = parts(ApiError::from_refusal("job put", None, Response::Ok)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
    }

    #[tokio::test]
    async fn simple_codes_and_statuses() {
        let cases = [
            (
                ApiError::InvalidJson(serde_json::from_str::<Value>("").unwrap_err()),
                400,
                "invalid_json",
            ),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (
                ApiError::TooManyWatchers { limit: 3 },
                503,
                "too_many_watchers",
            ),
            (ApiError::not_found("job \"x\""), 404, "not_found"),
            (
                ApiError::NoRoute {
                    method: "GET".into(),
                    path: "/nope".into(),
                },
                404,
                "not_found",
            ),
            (
                ApiError::MethodNotAllowed {
                    method: "PATCH".into(),
                    path: "/v1/jobs".into(),
                },
                405,
                "method_not_allowed",
            ),
        ];
        for (err, status, code) in cases {
            let (s, body) = parts(err).await;
            assert_eq!(s.as_u16(), status, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(body["error"]["message"].as_str().is_some(), "{body}");
            assert!(body["error"].get("field").is_none(), "{body}");
        }
    }
}
