//! `/v1/sinks`: where jobs send their records (InfluxDB). Secrets are stored
//! (every node writes with them) but never shown: `password` and `token` read
//! back as `"***"`.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use rota_core::sink::parse_sink_json;
use rota_core::{validate_name, Command, Response};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{body_bytes, named_document, ApiPath, Params, Session};
use crate::AppState;

fn sink_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("sink {name:?}"))
}

/// `GET /v1/sinks`: every sink by name (a handful; one page).
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["limit", "after", "stale"])?;
    s.read_barrier(&params).await?;
    let sinks = s.node.store().sinks()?;
    let (page, next) = super::name_page(&params, sinks, |r| r.name.as_str())?;
    let items: Vec<Value> = page.iter().map(|r| r.redacted_view()).collect();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `GET /v1/sinks/{name}`.
pub(crate) async fn get(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    s.read_barrier(&params).await?;
    let record = s
        .node
        .store()
        .get_sink(&name)?
        .ok_or_else(|| sink_not_found(&name))?;
    Ok(Json(record.redacted_view()))
}

/// `PUT /v1/sinks/{name}`: create (201) or replace (200).
pub(crate) async fn put(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    validate_name("name", &name)?;
    let mut doc = named_document(
        "sink",
        &name,
        &body_bytes(body)?,
        "{\"type\": \"influxdb\", \"url\": \"http://influxdb:8086\", \"database\": \"ci\"}",
    )?;
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("name");
    }
    let spec = parse_sink_json(doc.to_string().as_bytes())?;
    spec.validate()?;
    let command = Command::PutSink {
        name: name.clone(),
        spec,
    };
    match s.commit(&session, command).await? {
        Response::SinkPut { created, sink } => {
            tracing::info!(sink = %name, created, revision = sink.revision, "sink stored");
            let status = super::created_or_ok(created);
            Ok((status, Json(sink.redacted_view())))
        }
        other => Err(ApiError::from_refusal(
            "PUT /v1/sinks",
            session.seq(),
            other,
        )),
    }
}

/// `DELETE /v1/sinks/{name}`: 204, or 404.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.only(&[])?;
    let command = Command::DeleteSink { name: name.clone() };
    match s.commit(&session, command).await? {
        Response::SinkDeleted { existed: true } => {
            tracing::info!(sink = %name, "sink deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Response::SinkDeleted { existed: false } => Err(sink_not_found(&name)),
        other => Err(ApiError::from_refusal(
            "DELETE /v1/sinks",
            session.seq(),
            other,
        )),
    }
}
