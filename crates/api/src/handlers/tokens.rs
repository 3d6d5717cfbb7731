//! `/v1/tokens`: API tokens (admin), and `/v1/whoami`: the caller's own.
//!
//! A token's secret is made here, shown once in the answer to its creation, and
//! only its SHA-256 goes through Raft.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use rota_core::auth::{Role, TokenRecord};
use rota_core::{validate_name, Command, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{hash_token, new_token_secret, Caller};
use crate::error::ApiError;
use crate::extract::{body_bytes, parse_json, ApiPath, Params, Session};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    role: String,
}

/// `GET /v1/tokens`: `{"items": [{name, role, created_at, created_by, revision}]}`.
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["limit", "after", "stale"])?;
    s.read_barrier(&params).await?;
    let tokens = s.node.store().tokens()?;
    let (page, next) = super::name_page(&params, tokens, |t| t.name.as_str())?;
    let items: Vec<Value> = page.iter().map(TokenRecord::view).collect();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `POST /v1/tokens` with `{"name", "role"}`: 201 with the token's view and
/// `token`, the secret, which is not shown again; 409 `exists` for a taken name.
pub(crate) async fn create(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    let CreateBody { name, role } = parse_json(&body_bytes(body)?)?;
    validate_name("name", &name)?;
    let role: Role = role.parse()?;
    let secret = new_token_secret()?;
    let record = TokenRecord {
        name: name.clone(),
        role,
        hash: hash_token(&secret),
        created_at: chrono::Utc::now(),
        created_by: caller.token.clone(),
        revision: 0,
    };
    let command = Command::PutToken {
        record,
        only_if_none: false,
    };
    match s.commit(&session, command).await? {
        Response::TokenPut { created: true } => {
            tracing::info!(token = %name, role = %role, by = ?caller.token, "token created");
            let mut view = s
                .node
                .store()
                .tokens()?
                .into_iter()
                .find(|t| t.name == name)
                .map(|t| t.view())
                .unwrap_or_else(|| json!({"name": name, "role": role}));
            view["token"] = Value::from(secret);
            Ok((StatusCode::CREATED, Json(view)))
        }
        Response::TokenExists { name } => Err(ApiError::Invalid {
            field: "name".into(),
            message: format!(
                "a token named {name:?} exists; revoke it first or choose another name"
            ),
        }),
        other => Err(ApiError::from_refusal(
            "POST /v1/tokens",
            session.seq(),
            other,
        )),
    }
}

/// `DELETE /v1/tokens/{name}`: 204, or 404. Requests with it fail from then on.
pub(crate) async fn revoke(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.only(&[])?;
    let command = Command::RevokeToken { name: name.clone() };
    match s.commit(&session, command).await? {
        Response::TokenRevoked { existed: true } => {
            tracing::info!(token = %name, by = ?caller.token, "token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Response::TokenRevoked { existed: false } => {
            Err(ApiError::not_found(format!("token {name:?}")))
        }
        other => Err(ApiError::from_refusal(
            "DELETE /v1/tokens/{name}",
            session.seq(),
            other,
        )),
    }
}

/// `GET /v1/whoami`: `{"token", "role", "auth"}`; `auth` is false while the
/// server holds no token (every caller acts as admin, on loopback).
pub(crate) async fn whoami(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    let (stored, _) = s.node.store().auth_lookup(None)?;
    let auth = stored || s.admin_token_hash.is_some();
    Ok(Json(json!({
        "token": caller.token,
        "role": caller.role,
        "auth": auth,
    })))
}
