//! `/v1/cluster`: the members, the leader and the indexes as this node sees them;
//! joining (`POST /v1/cluster/members`, what `rota server --join` and `rota cluster
//! join` send) and leaving (`DELETE /v1/cluster/members/{id}`). Any node answers:
//! a follower hands membership changes to the leader. When the cluster has a
//! secret, changes must carry it in the `Rota-Cluster-Secret` header.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use bytes::Bytes;
use rota_cluster::{MembershipError, VerifiedPeer, CLUSTER_SECRET_HEADER};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{body_bytes, parse_json, ApiPath, Params};
use crate::AppState;

/// `POST /v1/cluster/members` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    id: u64,
    url: String,
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::Write(e) => e.into(),
            MembershipError::UnknownMember { id } => ApiError::not_found(format!("member {id}")),
            MembershipError::InvalidMember { id, message } => {
                let field = if id == 0 { "id" } else { "url" };
                ApiError::invalid(field, message)
            }
            e @ (MembershipError::InProgress | MembershipError::LastVoter { .. }) => {
                ApiError::Membership(e)
            }
            MembershipError::CatchUpTimeout { timeout, .. } => ApiError::Timeout(timeout),
        }
    }
}

impl AppState {
    fn check_cluster_secret(
        &self,
        headers: &HeaderMap,
        peer: Option<Extension<VerifiedPeer>>,
    ) -> Result<(), ApiError> {
        let given = headers.get(CLUSTER_SECRET_HEADER).map(|v| v.as_bytes());
        if self.node.admits_peer(given, peer.is_some()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    async fn cluster_view(&self) -> Result<Json<Value>, ApiError> {
        let status = self.node.cluster_status().await?;
        let mut view = json!(status);
        // Registered workers, from this node's copy of the state (as stale as
        // `last_applied`): where runs may be placed.
        let workers: Vec<Value> = self
            .node
            .store()
            .nodes()?
            .into_iter()
            .map(|n| {
                json!({
                    "node": n.node,
                    "tags": n.tags,
                    "max_running": n.max_running,
                    "incarnation": n.incarnation.to_string(),
                    "registered_at": n.registered_at,
                })
            })
            .collect();
        view["workers"] = Value::Array(workers);
        Ok(Json(view))
    }
}

/// `GET /v1/cluster`: `{node_id, leader, leader_url, term, members: [{id, url,
/// role, matched_index}], commit_index, last_applied, workers: [{node, tags,
/// max_running, incarnation, registered_at}]}`.
pub(crate) async fn status(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    s.cluster_view().await
}

/// `POST /v1/cluster/members` with `{"id": N, "url": "http://..."}`: adds the node
/// as a learner, waits until it caught up, promotes it to voter; answers the new
/// cluster status.
pub(crate) async fn join(
    State(s): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<VerifiedPeer>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    s.check_cluster_secret(&headers, peer)?;
    let JoinBody { id, url } = parse_json(&body_bytes(body)?)?;
    rota_cluster::check_node_id(id).map_err(|message| ApiError::invalid("id", message))?;
    s.node.add_member(id, &url).await?;
    s.cluster_view().await
}

/// `DELETE /v1/cluster/members/{id}`: removes a voter or learner; answers the new
/// cluster status.
pub(crate) async fn leave(
    State(s): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<VerifiedPeer>>,
    ApiPath(id): ApiPath<u64>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    s.check_cluster_secret(&headers, peer)?;
    s.node.remove_member(id).await?;
    s.cluster_view().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use rota_cluster::WriteError;

    use super::*;

    #[test]
    fn membership_refusals_map_to_their_statuses() {
        let cases = [
            (MembershipError::UnknownMember { id: 7 }, 404, "not_found"),
            (
                MembershipError::InvalidMember {
                    id: 4,
                    message: "taken".into(),
                },
                400,
                "invalid",
            ),
            (MembershipError::InProgress, 503, "membership_in_progress"),
            (
                MembershipError::CatchUpTimeout {
                    id: 4,
                    timeout: Duration::from_secs(1),
                },
                503,
                "timeout",
            ),
            (MembershipError::LastVoter { id: 1 }, 409, "last_voter"),
            (
                MembershipError::Write(WriteError::NotLeader { leader_url: None }),
                503,
                "not_leader",
            ),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status(), StatusCode::from_u16(status).unwrap(), "{api}");
            assert_eq!(api.code(), code, "{api}");
        }
        assert_eq!(ApiError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
    }
}
