//! `/v1/kv`: the linearizable key/value space. Reads wait for a ReadIndex barrier
//! (so they see every write acknowledged before them) unless `?stale=true`, which
//! any node answers from its local state.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use rota_core::{Command, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::blocking;
use crate::error::ApiError;
use crate::extract::{body_bytes, parse_json, validate_key, ApiPath, Params, Session};
use crate::AppState;

/// `PUT /v1/kv/{key}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    value: String,
}

fn key_not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("key {key:?}"))
}

/// `GET /v1/kv/{key}[?stale=true]`: `{"key", "value", "mod_revision",
/// "create_revision", "version"}`, or 404.
pub(crate) async fn get(
    State(s): State<AppState>,
    ApiPath(key): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    validate_key(&key)?;
    s.read_barrier(&params).await?;
    let entry = s
        .node
        .store()
        .kv_get(&key)?
        .ok_or_else(|| key_not_found(&key))?;
    Ok(Json(json!(entry)))
}

/// `GET /v1/kv[?prefix=&limit=&after=&stale=true]`: one page of entries in key
/// order, `{"items": [entry, ...], "next": KEY|null}`.
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["prefix", "stale", "limit", "after"])?;
    let prefix = params.get("prefix").unwrap_or_default().to_string();
    // At most 1000, so the conversion cannot truncate.
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    let after = params.get("after").map(str::to_owned);
    s.read_barrier(&params).await?;
    let node = s.node.clone();
    // One entry beyond the page says whether there is a next one.
    let mut items =
        blocking(move || Ok(node.store().kv_page(&prefix, after.as_deref(), limit + 1)?)).await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more.then(|| items.last().map(|e| e.key.clone())).flatten();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `PUT /v1/kv/{key}[?if_revision=N]` with `{"value": "..."}`: `{"key", "revision"}`;
/// 409 `revision_mismatch` (with the current `mod_revision`) when the CAS fails.
pub(crate) async fn put(
    State(s): State<AppState>,
    ApiPath(key): ApiPath<String>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    params.only(&["if_revision"])?;
    validate_key(&key)?;
    let if_revision = params.u64("if_revision")?;
    let PutBody { value } = parse_json(&body_bytes(body)?)?;
    let command = Command::KvPut {
        key,
        value,
        if_revision,
    };
    match s.commit(&session, command).await? {
        Response::KvPut { key, revision } => Ok(Json(json!({ "key": key, "revision": revision }))),
        other => Err(ApiError::from_refusal(
            "PUT /v1/kv/{key}",
            session.seq(),
            other,
        )),
    }
}

/// `DELETE /v1/kv/{key}[?if_revision=N]`: `{"key", "revision", "deleted"}`.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ApiPath(key): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["if_revision"])?;
    validate_key(&key)?;
    let if_revision = params.u64("if_revision")?;
    match s
        .commit(&session, Command::KvDelete { key, if_revision })
        .await?
    {
        Response::KvDeleted {
            key,
            revision,
            deleted,
        } => Ok(Json(
            json!({ "key": key, "revision": revision, "deleted": deleted }),
        )),
        other => Err(ApiError::from_refusal(
            "DELETE /v1/kv/{key}",
            session.seq(),
            other,
        )),
    }
}
