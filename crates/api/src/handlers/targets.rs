//! `/v1/targets`: target sets (create-or-replace, read, list, delete). The leader's
//! discovery fills in their targets; every node answers from its replicated store.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use rota_core::targets::{parse_target_set_value, TargetSet};
use rota_core::{validate_name, Command, Response};
use serde_json::{json, Value};

use super::blocking;
use crate::error::ApiError;
use crate::extract::{body_bytes, named_document, ApiPath, Params, Session};
use crate::AppState;

fn set_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("target set {name:?}"))
}

/// The set as served: its spec, with a Kubernetes `token` shown as `"***"` (it
/// is kept for discovery, never read back), and what discovery found.
fn view(set: &TargetSet) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(set).map_err(ApiError::Serialize)?;
    if let Some(token) = value.get_mut("token").filter(|t| t.is_string()) {
        *token = Value::String("***".into());
    }
    Ok(value)
}

/// `GET /v1/targets?limit=&after=&prefix=`: by name, `after` a name.
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["limit", "after", "prefix", "stale"])?;
    // At most 1000, so the conversion cannot truncate.
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    let after = params.get("after").map(str::to_owned);
    let prefix = params.get("prefix").unwrap_or_default().to_owned();
    s.read_barrier(&params).await?;
    let node = s.node.clone();
    blocking(move || {
        let mut sets = node.store().target_sets()?;
        sets.retain(|t| {
            t.spec.name.starts_with(&prefix)
                && after.as_deref().is_none_or(|a| t.spec.name.as_str() > a)
        });
        let more = sets.len() > limit;
        sets.truncate(limit);
        let next = more
            .then(|| sets.last().map(|t| t.spec.name.clone()))
            .flatten();
        let items = sets.iter().map(view).collect::<Result<Vec<_>, _>>()?;
        Ok(Json(json!({ "items": items, "next": next })))
    })
    .await
}

/// `GET /v1/targets/{set}`.
pub(crate) async fn get(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    s.read_barrier(&params).await?;
    let set = s
        .node
        .store()
        .get_target_set(&name)?
        .ok_or_else(|| set_not_found(&name))?;
    Ok(Json(view(&set)?))
}

/// `PUT /v1/targets/{set}`: create (201) or replace (200) a set's spec.
pub(crate) async fn put(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    validate_name("name", &name)?;
    let doc = named_document(
        "target set",
        &name,
        &body_bytes(body)?,
        "{\"provider\": \"static\", \"groups\": [{\"targets\": [\"host:port\"]}]}",
    )?;
    let spec = parse_target_set_value(&doc)?;
    match s.commit(&session, Command::PutTargetSet { spec }).await? {
        Response::TargetSetPut { created, set } => {
            tracing::info!(set = %name, created, generation = set.generation, "target set stored");
            let status = super::created_or_ok(created);
            Ok((status, Json(view(&set)?)))
        }
        other => Err(ApiError::from_refusal(
            "PUT /v1/targets",
            session.seq(),
            other,
        )),
    }
}

/// `DELETE /v1/targets/{set}`: 204, or 404 when there was no such set.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.only(&[])?;
    let command = Command::DeleteTargetSet { name: name.clone() };
    match s.commit(&session, command).await? {
        Response::TargetSetDeleted { existed: true } => {
            tracing::info!(set = %name, "target set deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Response::TargetSetDeleted { existed: false } => Err(set_not_found(&name)),
        other => Err(ApiError::from_refusal(
            "DELETE /v1/targets",
            session.seq(),
            other,
        )),
    }
}
