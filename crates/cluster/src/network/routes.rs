//! The peer routes a node serves (`/raft/...`, described in the parent module): openraft's
//! RPCs, a follower's forwarded writes, ReadIndex requests and membership changes,
//! and a leader's handoff call, behind the cluster secret and the identity check.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use rota_core::ClientRequest;
use serde::de::DeserializeOwned;

use super::{
    ElectRequest, ForwardedWrite, MemberChange, SnapshotChunk, Transport, VerifiedPeer, WireError,
    CLUSTER_SECRET_HEADER, MAX_RPC_BYTES,
};
use crate::identity;
use crate::types::TypeConfig;
use crate::Node;

/// A peer RPC's JSON body. Unlike axum's `Json`, it decodes without tracking the
/// path to every field (about 7 % of a follower's CPU under write load went to that
/// for AppendEntries); only a body that fails to decode is decoded again with the
/// path, for the error message. A body that is not JSON is a 400 naming what failed.
struct Wire<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Wire<T> {
    type Rejection = (StatusCode, String);

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| (e.status(), e.body_text()))?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Wire(value)),
            Err(_) => {
                let de = &mut serde_json::Deserializer::from_slice(&bytes);
                let message = match serde_path_to_error::deserialize::<_, T>(de) {
                    Err(e) => format!("invalid request body at `{}`: {}", e.path(), e.inner()),
                    Ok(_) => "invalid request body".to_string(),
                };
                Err((StatusCode::BAD_REQUEST, message))
            }
        }
    }
}

async fn append(
    State(node): State<Arc<Node>>,
    Wire(rpc): Wire<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    Json(node.raft.append_entries(rpc).await)
}

async fn vote(
    State(node): State<Arc<Node>>,
    Wire(rpc): Wire<VoteRequest<u64>>,
) -> Json<Result<VoteResponse<u64>, RaftError<u64>>> {
    Json(node.raft.vote(rpc).await)
}

async fn snapshot(State(node): State<Arc<Node>>, Wire(chunk): Wire<SnapshotChunk>) -> HttpResponse {
    match chunk.into_request() {
        Ok(rpc) => Json(node.raft.install_snapshot(rpc).await).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a snapshot chunk's data is not base64");
            (StatusCode::BAD_REQUEST, "snapshot chunk data is not base64").into_response()
        }
    }
}

async fn forward(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Wire(req): Wire<ClientRequest>,
) -> Json<Result<ForwardedWrite, WireError>> {
    let traceparent = headers
        .get(rota_core::trace::TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok());
    let written = node
        .write_local(req, traceparent)
        .await
        .map(|(index, response)| ForwardedWrite { index, response });
    Json(written.map_err(WireError::from))
}

async fn read_index(State(node): State<Arc<Node>>) -> Json<Result<u64, WireError>> {
    Json(node.read_index_local().await.map_err(WireError::from))
}

async fn members(
    State(node): State<Arc<Node>>,
    Wire(change): Wire<MemberChange>,
) -> Json<Result<(), WireError>> {
    let done = match change {
        MemberChange::Add { id, url } => node.add_member_local(id, &url).await,
        MemberChange::Remove { id } => node.remove_member_local(id).await,
    };
    Json(done.map_err(WireError::from))
}

async fn elect(
    State(node): State<Arc<Node>>,
    Wire(req): Wire<ElectRequest>,
) -> Json<Result<bool, WireError>> {
    Json(
        node.elect_on_handoff(req.from, req.term)
            .await
            .map_err(WireError::from),
    )
}

async fn check_secret(
    State(transport): State<Transport>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> HttpResponse {
    let given = headers.get(CLUSTER_SECRET_HEADER).map(|v| v.as_bytes());
    let verified = request.extensions().get::<VerifiedPeer>().is_some();
    if !transport.admits(given, verified) {
        tracing::warn!(
            path = %request.uri().path(),
            "peer call refused: missing or wrong cluster secret"
        );
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": {
                "code": "unauthorized",
                "message": "peer routes need the cluster secret in the Rota-Cluster-Secret header",
            }})),
        )
            .into_response();
    }
    if let Err(refusal) = transport.admit_identity(&headers) {
        let (status, code, message) = match &refusal {
            identity::Refusal::OtherNode { meant } => (
                StatusCode::MISDIRECTED_REQUEST,
                "other_node",
                format!(
                    "this is node {}, not node {meant}: the address now belongs to another node",
                    transport.inner.node_id
                ),
            ),
            identity::Refusal::OtherCluster { theirs } => (
                StatusCode::CONFLICT,
                "other_cluster",
                format!(
                    "this node belongs to cluster {}, the call comes from cluster {theirs}: give every node of a cluster the same --peers (a node that replaces a member takes the member's cluster-id file, or joins with --join)",
                    transport.cluster_id().unwrap_or_default()
                ),
            ),
        };
        if transport.log_refusal_now() {
            tracing::warn!(path = %request.uri().path(), %message, "peer call refused");
        }
        return (
            status,
            Json(serde_json::json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
    }
    next.run(request).await
}

/// The peer endpoints of a node, behind the cluster secret when one is set.
pub(crate) fn router(node: Arc<Node>) -> Router {
    let transport = node.transport.clone();
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/forward", post(forward))
        .route("/raft/read_index", post(read_index))
        .route("/raft/members", post(members))
        .route("/raft/elect", post(elect))
        .layer(middleware::from_fn_with_state(transport, check_secret))
        .layer(DefaultBodyLimit::max(MAX_RPC_BYTES))
        .with_state(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_body_decodes_or_is_refused_with_the_failing_field() {
        let request = |body: &str| {
            Request::builder()
                .method("POST")
                .uri("/raft/elect")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .expect("request")
        };
        let Wire(elect) =
            Wire::<ElectRequest>::from_request(request(r#"{"from":2,"term":7}"#), &())
                .await
                .expect("a well-formed body decodes");
        assert_eq!((elect.from, elect.term), (2, 7));

        let Err((status, message)) =
            Wire::<ElectRequest>::from_request(request(r#"{"from":2,"term":"seven"}"#), &()).await
        else {
            panic!("a mistyped field is refused");
        };
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("`term`"), "{message}");
        assert!(message.contains("invalid type"), "{message}");

        let Err((status, _)) = Wire::<ElectRequest>::from_request(request("not json"), &()).await
        else {
            panic!("a body that is not JSON is refused");
        };
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
