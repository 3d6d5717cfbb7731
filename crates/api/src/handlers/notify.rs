//! `/v1/webhooks` (global webhooks) and `/v1/deliveries` (the delivery log).

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use rota_core::notify::{delivery_id_revision, parse_webhook_json, DeliveryStatus};
use rota_core::{validate_name, Command, Response};
use rota_store::DeliveryFilter;
use serde_json::{json, Value};

use super::blocking;
use crate::error::ApiError;
use crate::extract::{body_bytes, ApiPath, Params, Session};
use crate::AppState;

fn webhook_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("webhook {name:?}"))
}

/// `GET /v1/webhooks?limit=&after=`: by name, `after` a name.
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["limit", "after", "stale"])?;
    s.read_barrier(&params).await?;
    let webhooks = s.node.store().webhooks()?;
    let (items, next) = super::name_page(&params, webhooks, |w| w.name.as_str())?;
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `GET /v1/webhooks/{name}`.
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
        .get_webhook(&name)?
        .ok_or_else(|| webhook_not_found(&name))?;
    Ok(Json(json!(record)))
}

/// `PUT /v1/webhooks/{name}`: create (201) or replace (200).
pub(crate) async fn put(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    validate_name("name", &name)?;
    let spec = parse_webhook_json(&body_bytes(body)?)?;
    spec.validate()?;
    let command = Command::PutWebhook {
        name: name.clone(),
        spec,
    };
    match s.commit(&session, command).await? {
        Response::WebhookPut { created, webhook } => {
            tracing::info!(webhook = %name, created, url = %webhook.spec.url, "webhook stored");
            let status = super::created_or_ok(created);
            Ok((status, Json(json!(webhook))))
        }
        other => Err(ApiError::from_refusal(
            "PUT /v1/webhooks",
            session.seq(),
            other,
        )),
    }
}

/// `DELETE /v1/webhooks/{name}`: 204, or 404 when there was none.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.only(&[])?;
    let command = Command::DeleteWebhook { name: name.clone() };
    match s.commit(&session, command).await? {
        Response::WebhookDeleted { existed: true } => {
            tracing::info!(webhook = %name, "webhook deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Response::WebhookDeleted { existed: false } => Err(webhook_not_found(&name)),
        other => Err(ApiError::from_refusal(
            "DELETE /v1/webhooks",
            session.seq(),
            other,
        )),
    }
}

/// `GET /v1/deliveries?job=&webhook=&status=&limit=&after=`: recorded outcomes in
/// event order; `after` is the `next` of the previous page (a delivery id).
pub(crate) async fn deliveries(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["job", "webhook", "status", "limit", "after", "stale"])?;
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    let status = match params.get("status") {
        None => None,
        Some("delivered") => Some(DeliveryStatus::Delivered),
        Some("failed") => Some(DeliveryStatus::Failed),
        Some(other) => {
            return Err(ApiError::invalid(
                "status",
                format!("{other:?} is not a delivery status; accepted: delivered, failed"),
            ))
        }
    };
    let after = match params.get("after") {
        None => None,
        Some(id) => {
            let revision = delivery_id_revision(id).ok_or_else(|| {
                ApiError::invalid(
                    "after",
                    format!("{id:?} is not a delivery id; pass the `next` of the previous page"),
                )
            })?;
            Some((revision, id.to_string()))
        }
    };
    let filter = DeliveryFilter {
        job: params.get("job").map(str::to_owned),
        target: params.get("webhook").map(str::to_owned),
        status,
    };
    s.read_barrier(&params).await?;
    let node = s.node.clone();
    blocking(move || {
        let after = after.as_ref().map(|(r, id)| (*r, id.as_str()));
        let (items, more) = node.store().deliveries(&filter, after, limit)?;
        let next = more.then(|| items.last().map(|d| d.id.clone())).flatten();
        Ok(Json(json!({ "items": items, "next": next })))
    })
    .await
}
