//! `/v1/config`: every setting of the node answering, with its effective value and
//! where it came from, and the dynamic settings the whole cluster shares.
//!
//! A static setting (flag, `ROTA_*` variable, `rota.toml`, default) is the node's
//! own; a dynamic one (`PUT /v1/config/{key}`) is replicated, survives restarts
//! and reaches members that join later. A dynamic value wins over the static one;
//! `DELETE` hands the key back to it.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use rota_core::config::{check_dynamic, dynamic_key, ConfigEntry, DYNAMIC_KEYS};
use rota_core::{Command, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{body_bytes, parse_json, ApiPath, Params, Session};
use crate::AppState;

/// One static setting of this node, as its configuration resolved it.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticSetting {
    pub key: &'static str,
    /// As `rota server --print-config` shows it (secrets hidden).
    pub value: String,
    /// `default`, `file`, `env` or `flag`.
    pub source: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    value: Value,
}

/// The item of `key` given the dynamic entries and this node's static settings.
fn item(key: &str, dynamic: Option<&ConfigEntry>, statics: &[StaticSetting]) -> Value {
    let is_dynamic = dynamic_key(key).is_some();
    if let Some(entry) = dynamic {
        return json!({
            "key": key,
            "value": entry.value,
            "source": "dynamic",
            "dynamic": true,
            "updated_at": entry.updated_at,
            "revision": entry.revision,
        });
    }
    match statics.iter().find(|s| s.key == key) {
        Some(s) => {
            // The typed form where the key is also dynamic ("64" → 64), so that a
            // client reads one shape whichever source a value has.
            let value = if is_dynamic {
                check_dynamic(key, &Value::from(s.value.clone()))
                    .unwrap_or_else(|_| Value::from(s.value.clone()))
            } else {
                Value::from(s.value.clone())
            };
            json!({"key": key, "value": value, "source": s.source, "dynamic": is_dynamic})
        }
        None => {
            let default = dynamic_key(key).map_or(Value::Null, |k| (k.default)());
            json!({"key": key, "value": default, "source": "default", "dynamic": is_dynamic})
        }
    }
}

/// Every key: the static ones in their table order, then the dynamic-only ones.
fn keys(statics: &[StaticSetting]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = statics.iter().map(|s| s.key).collect();
    for k in &DYNAMIC_KEYS {
        if !keys.contains(&k.name) {
            keys.push(k.name);
        }
    }
    keys
}

/// A key `PUT`/`DELETE` may change, or 400 saying what it is.
fn dynamic_only(key: &str, statics: &[StaticSetting]) -> Result<(), ApiError> {
    if dynamic_key(key).is_some() {
        return Ok(());
    }
    let dynamic: Vec<&str> = DYNAMIC_KEYS.iter().map(|k| k.name).collect();
    let what = if statics.iter().any(|s| s.key == key) {
        format!(
            "is a static setting of each node (its flag, ROTA_{} or rota.toml, then a restart)",
            key.to_ascii_uppercase().replace(['.', '-'], "_")
        )
    } else {
        "is not a setting".to_string()
    };
    Err(ApiError::invalid(
        key,
        format!("{what}; the dynamic settings are {}", dynamic.join(", ")),
    ))
}

/// `GET /v1/config`: `{"node", "items": [{"key", "value", "source", "dynamic"}]}`.
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    s.read_barrier(&params).await?;
    let entries = s.node.store().config_entries()?;
    let items: Vec<Value> = keys(&s.settings)
        .into_iter()
        .map(|key| item(key, entries.iter().find(|e| e.key == key), &s.settings))
        .collect();
    Ok(Json(
        json!({"node": s.node.config().node_name, "items": items}),
    ))
}

/// `GET /v1/config/{key}`: one item.
pub(crate) async fn get(
    State(s): State<AppState>,
    ApiPath(key): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    if !keys(&s.settings).contains(&key.as_str()) {
        return Err(ApiError::not_found(format!("setting {key:?}")));
    }
    s.read_barrier(&params).await?;
    let entries = s.node.store().config_entries()?;
    Ok(Json(item(
        &key,
        entries.iter().find(|e| e.key == key),
        &s.settings,
    )))
}

/// `PUT /v1/config/{key}` with `{"value": V}`: sets a dynamic key cluster-wide;
/// answers the item with `previous` (the dynamic value it replaced, if any).
pub(crate) async fn put(
    State(s): State<AppState>,
    ApiPath(key): ApiPath<String>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    dynamic_only(&key, &s.settings)?;
    let PutBody { value } = parse_json(&body_bytes(body)?)?;
    let value = check_dynamic(&key, &value)?;
    let command = Command::SetConfig {
        key: key.clone(),
        value,
    };
    match s.commit(&session, command).await? {
        Response::ConfigSet { entry, previous } => {
            tracing::info!(key = %key, value = %entry.value, "dynamic setting changed");
            let mut out = item(&key, Some(&entry), &s.settings);
            out["previous"] = previous.unwrap_or(Value::Null);
            Ok(Json(out))
        }
        other => Err(ApiError::from_refusal(
            "PUT /v1/config/{key}",
            session.seq(),
            other,
        )),
    }
}

/// `DELETE /v1/config/{key}`: the key takes its static value again; answers the
/// item now in force.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ApiPath(key): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    dynamic_only(&key, &s.settings)?;
    let command = Command::ResetConfig {
        key: Some(key.clone()),
    };
    match s.commit(&session, command).await? {
        Response::ConfigReset { keys } => {
            if !keys.is_empty() {
                tracing::info!(key = %key, "dynamic setting reset");
            }
            let mut out = item(&key, None, &s.settings);
            out["reset"] = Value::Bool(!keys.is_empty());
            Ok(Json(out))
        }
        other => Err(ApiError::from_refusal(
            "DELETE /v1/config/{key}",
            session.seq(),
            other,
        )),
    }
}

/// `POST /v1/config/reset`: every dynamic key back to its static value;
/// `{"reset": [keys that had a dynamic value]}`.
pub(crate) async fn reset(
    State(s): State<AppState>,
    session: Session,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    match s
        .commit(&session, Command::ResetConfig { key: None })
        .await?
    {
        Response::ConfigReset { keys } => {
            tracing::info!(keys = ?keys, "dynamic settings reset");
            Ok(Json(json!({ "reset": keys })))
        }
        other => Err(ApiError::from_refusal(
            "POST /v1/config/reset",
            session.seq(),
            other,
        )),
    }
}
