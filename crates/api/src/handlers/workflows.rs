//! `/v1/workflows`: create-or-replace, read, list, delete, run now, and a
//! workflow's runs. The runs themselves are under `/v1/runs` ([`super::runs`]).

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use rota_core::workflow::{parse_workflow_value, trigger_name, WorkflowRecord, WorkflowSpec};
use rota_core::{validate_name, Command, Response};
use rota_store::Store;
use serde_json::{json, Value};
use ulid::Ulid;

use super::blocking;
use crate::error::ApiError;
use crate::extract::{body_bytes, named_document, ApiPath, Params, Session};
use crate::view::{RunView, WorkflowView};
use crate::AppState;

pub(crate) fn workflow_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("workflow {name:?}"))
}

/// The workflow view, with its trigger job's next instant.
fn workflow_view(store: &Store, record: &WorkflowRecord) -> Result<Value, ApiError> {
    let trigger = store.get_job(&trigger_name(&record.spec.name))?;
    let view = WorkflowView::new(record, trigger.as_ref(), chrono::Utc::now());
    serde_json::to_value(view).map_err(ApiError::Serialize)
}

/// `GET /v1/workflows?limit=&after=`: by name, `after` a name.
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["limit", "after", "stale"])?;
    // At most 1000, so the conversion cannot truncate.
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    let after = params.get("after").map(str::to_owned);
    s.read_barrier(&params).await?;
    let node = s.node.clone();
    blocking(move || {
        let store = node.store();
        let mut records = store.workflows()?;
        if let Some(after) = &after {
            records.retain(|w| w.spec.name.as_str() > after.as_str());
        }
        let more = records.len() > limit;
        records.truncate(limit);
        let next = more
            .then(|| records.last().map(|w| w.spec.name.clone()))
            .flatten();
        let items = records
            .iter()
            .map(|r| workflow_view(store, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(json!({ "items": items, "next": next })))
    })
    .await
}

/// `GET /v1/workflows/{name}`.
pub(crate) async fn get(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    s.read_barrier(&params).await?;
    let store = s.node.store();
    let record = store
        .get_workflow(&name)?
        .ok_or_else(|| workflow_not_found(&name))?;
    Ok(Json(workflow_view(store, &record)?))
}

/// `PUT /v1/workflows/{name}`: create (201) or replace (200) a workflow and its
/// internal jobs.
pub(crate) async fn put(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    validate_name("name", &name)?;
    let spec = workflow_from_body(&name, &body_bytes(body)?)?;
    spec.validate()?;
    match s.commit(&session, Command::PutWorkflow { spec }).await? {
        Response::WorkflowPut { created, workflow } => {
            tracing::info!(workflow = %name, created, revision = workflow.revision, "workflow stored");
            let status = super::created_or_ok(created);
            Ok((status, Json(workflow_view(s.node.store(), &workflow)?)))
        }
        other => Err(ApiError::from_refusal(
            "PUT /v1/workflows",
            session.seq(),
            other,
        )),
    }
}

/// Parses a workflow document whose `name` may be omitted (then the path's).
fn workflow_from_body(name: &str, bytes: &[u8]) -> Result<WorkflowSpec, ApiError> {
    let doc = named_document(
        "workflow",
        name,
        bytes,
        "{\"schedule\": {...}, \"jobs\": {...}}",
    )?;
    Ok(parse_workflow_value(&doc)?)
}

/// `DELETE /v1/workflows/{name}`: 204 (its internal jobs and runs go with it), or
/// 404 when there was no such workflow.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.only(&[])?;
    let command = Command::DeleteWorkflow { name: name.clone() };
    match s.commit(&session, command).await? {
        Response::WorkflowDeleted { existed: true } => {
            tracing::info!(workflow = %name, "workflow deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Response::WorkflowDeleted { existed: false } => Err(workflow_not_found(&name)),
        other => Err(ApiError::from_refusal(
            "DELETE /v1/workflows",
            session.seq(),
            other,
        )),
    }
}

/// `POST /v1/workflows/{name}/run`: starts a run now (or queues or skips it, per
/// the workflow's `concurrency`); 202 with the run.
pub(crate) async fn run(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    let command = Command::RunWorkflow {
        id: Ulid::generate(),
        workflow: name.clone(),
    };
    match s.commit(&session, command).await? {
        Response::Run { run } => {
            tracing::info!(workflow = %name, run = %run.id, status = run.status.as_str(), "workflow run asked for");
            let view = serde_json::to_value(RunView::new(&run)).map_err(ApiError::Serialize)?;
            Ok((StatusCode::ACCEPTED, Json(view)))
        }
        Response::NotFound { .. } => Err(workflow_not_found(&name)),
        other => Err(ApiError::from_refusal(
            "POST /v1/workflows/{name}/run",
            session.seq(),
            other,
        )),
    }
}

/// `GET /v1/workflows/{name}/runs?limit=&before=`: newest first, as
/// `{"items": [run], "next": ID|null}`; `next` is the `before` (or `after`) that
/// fetches the following page.
pub(crate) async fn runs(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["limit", "before", "after", "stale"])?;
    // At most 1000, so the conversion cannot truncate.
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    // `after` is the Lists convention's name for the cursor; in this newest-first
    // list it means the same as `before`.
    let before = match (params.ulid("before")?, params.ulid("after")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "after",
                "give either before or after (the same cursor), not both",
            ))
        }
        (before, after) => before.or(after),
    };
    s.read_barrier(&params).await?;
    let node = s.node.clone();
    blocking(move || {
        let store = node.store();
        if store.get_workflow(&name)?.is_none() {
            return Err(workflow_not_found(&name));
        }
        let mut runs = store.list_runs(&name, limit + 1, before)?;
        let more = runs.len() > limit;
        runs.truncate(limit);
        let next = more
            .then(|| runs.last().map(|r| r.id.to_string()))
            .flatten();
        let items: Vec<RunView> = runs.iter().map(RunView::new).collect();
        Ok(Json(json!({ "items": items, "next": next })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ApiError) -> String {
        match e {
            ApiError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_body_name_must_match_the_path() {
        let err = workflow_from_body("a", br#"{"name": "b"}"#).unwrap_err();
        assert_eq!(field(err), "name");
        let err = workflow_from_body("a", br#"{"name": 5}"#).unwrap_err();
        assert_eq!(field(err), "name");
    }

    #[test]
    fn a_body_must_be_a_json_object() {
        assert_eq!(field(workflow_from_body("a", b"[1]").unwrap_err()), "");
        assert!(matches!(
            workflow_from_body("a", b"{nope").unwrap_err(),
            ApiError::InvalidJson(_)
        ));
    }

    #[test]
    fn the_path_names_a_workflow_without_a_name() {
        let spec = workflow_from_body(
            "ci",
            br#"{"schedule": {"manual": true}, "jobs": {"a": {"executor": {"type": "shell", "command": "true"}}}}"#,
        )
        .unwrap();
        assert_eq!(spec.name, "ci");
        assert!(spec.validate().is_ok());
    }
}
