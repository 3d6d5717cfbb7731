//! `/v1/jobs`: create-or-replace, read, list, delete, run now, pause, resume, history.
//!
//! The internal jobs of workflows (`{workflow}:{job}`, `{workflow}:@trigger`) are
//! left out of the list and cannot be changed, run, paused or resumed here: their
//! workflow owns them. Reading one and its executions works, for debugging.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use bytes::Bytes;
use rota_core::job::APPLY_SET_KEY;
use rota_core::validate::parse_job_json;
use rota_core::workflow::split_job_name;
use rota_core::{validate_name, Command, Fire, JobRecord, JobSpec, Response, Trigger};
use serde_json::{json, Value};
use ulid::Ulid;

use super::blocking;
use crate::error::ApiError;
use crate::extract::{body_bytes, parse_json, ApiPath, Params, Session};
use crate::view::JobView;
use crate::AppState;

fn job_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("job {name:?}"))
}

/// Refuses to change, run, pause or resume a workflow's internal job.
fn refuse_internal(name: &str) -> Result<(), ApiError> {
    match split_job_name(name) {
        Some((workflow, _)) => Err(ApiError::invalid(
            "name",
            format!(
                "job {name:?} belongs to workflow {workflow:?}; change, run or delete the \
                 workflow instead (/v1/workflows/{workflow})"
            ),
        )),
        None => Ok(()),
    }
}

impl AppState {
    /// The full job view: re-reads the job's newest execution.
    fn job_view(&self, record: &JobRecord) -> Result<Value, ApiError> {
        let last = self
            .node
            .store()
            .list_executions(&record.spec.name, 1, None)?
            .into_iter()
            .next();
        let view = JobView::full(record, chrono::Utc::now(), last);
        serde_json::to_value(view).map_err(ApiError::Serialize)
    }
}

/// `GET /v1/jobs[?prefix=][&last_execution=true][&limit=&after=]`: one page of jobs
/// (optionally those whose name starts with `prefix`), by name, as
/// `{"items": [view], "next": NAME|null}`; workflows' internal jobs are left out. Listed views omit `last_execution` so that a
/// listing is one pass over the jobs table, unless it is asked for (one more read
/// per job).
pub(crate) async fn list(
    State(s): State<AppState>,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    params.only(&["prefix", "last_execution", "stale", "limit", "after"])?;
    let prefix = params.get("prefix").unwrap_or_default().to_string();
    let with_last = params.flag("last_execution")?;
    // At most 1000, so the conversion cannot truncate.
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    let after = params.get("after").map(str::to_owned);
    s.read_barrier(&params).await?;
    let node = s.node.clone();
    let body = blocking(move || {
        let now = chrono::Utc::now();
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"items\":[");
        let mut first = true;
        let mut failed = None;
        let mut listed = 0usize;
        let mut last_name: Option<String> = None;
        let mut next: Option<String> = None;
        let store = node.store();
        store.for_each_job_from(after.as_deref(), &prefix, &mut |record| {
            if split_job_name(&record.spec.name).is_some() {
                return true;
            }
            if listed == limit {
                // One more exists: the page ends at the last one listed.
                next = last_name.take();
                return false;
            }
            listed += 1;
            last_name = Some(record.spec.name.clone());
            if !first {
                out.push(b',');
            }
            first = false;
            let view = if with_last {
                match store.list_executions(&record.spec.name, 1, None) {
                    Ok(last) => JobView::full(&record, now, last.into_iter().next()),
                    Err(e) => {
                        failed = Some(ApiError::from(e));
                        return false;
                    }
                }
            } else {
                JobView::brief(&record, now)
            };
            if let Err(e) = serde_json::to_writer(&mut out, &view) {
                failed = Some(ApiError::Serialize(e));
                return false;
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        out.extend_from_slice(b"],\"next\":");
        serde_json::to_writer(&mut out, &next).map_err(ApiError::Serialize)?;
        out.push(b'}');
        Ok(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /v1/jobs/{name}`.
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
        .get_job(&name)?
        .ok_or_else(|| job_not_found(&name))?;
    Ok(Json(s.job_view(&record)?))
}

/// `PUT /v1/jobs/{name}`: create (201) or replace (200) a job.
pub(crate) async fn put(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    refuse_internal(&name)?;
    validate_name("name", &name)?;
    let spec = job_from_body(&name, &body_bytes(body)?)?;
    spec.validate()?;
    match s.commit(&session, Command::PutJob { spec }).await? {
        Response::JobPut { created, job } => {
            tracing::info!(job = %name, created, revision = job.revision, "job stored");
            let status = super::created_or_ok(created);
            Ok((status, Json(s.job_view(&job)?)))
        }
        other => Err(ApiError::from_refusal("PUT /v1/jobs", session.seq(), other)),
    }
}

/// Parses a job document whose `name` may be omitted (then the path's) but must
/// not contradict the path.
fn job_from_body(name: &str, bytes: &[u8]) -> Result<JobSpec, ApiError> {
    let mut doc: Value = parse_json(bytes)?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(ApiError::invalid(
            "",
            "a job document is a JSON object, e.g. {\"schedule\": {...}, \"executor\": {...}}",
        ));
    };
    match obj.get("name") {
        None => {
            obj.insert("name".into(), Value::String(name.to_string()));
        }
        Some(Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "name",
                format!("the body names the job {other} but the path names it {name:?}; omit it or make them match"),
            ));
        }
    }
    let bytes = serde_json::to_vec(&doc).map_err(ApiError::Serialize)?;
    Ok(parse_job_json(&bytes)?)
}

/// Most jobs one `POST /v1/jobs` may carry: one log entry holds them all.
pub(crate) const MAX_JOBS_PER_APPLY: usize = 1000;

/// The keys of a `POST /v1/jobs` body.
const APPLY_KEYS: &[&str] = &["jobs", "apply_set", "prune"];

/// What a `POST /v1/jobs` body asks for, checked.
#[derive(Debug)]
struct ApplyRequest {
    specs: Vec<JobSpec>,
    apply_set: Option<String>,
    prune: bool,
}

/// Checks a `POST /v1/jobs` body: every job valid, names unique, at most
/// [`MAX_JOBS_PER_APPLY`]; with `apply_set`, each job is marked as one of that set
/// (its `metadata` key [`APPLY_SET_KEY`]); `prune` needs `apply_set`.
fn apply_request(bytes: &[u8]) -> Result<ApplyRequest, ApiError> {
    let doc: Value = parse_json(bytes)?;
    let Some(obj) = doc.as_object() else {
        return Err(ApiError::invalid(
            "",
            "expected {\"jobs\": [job, ...]}: a JSON object with a list of job documents",
        ));
    };
    if let Some(key) = obj.keys().find(|k| !APPLY_KEYS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            key.as_str(),
            format!("unknown key {key:?}; accepted: jobs, apply_set, prune"),
        ));
    }
    let apply_set = match obj.get("apply_set") {
        None | Some(Value::Null) => None,
        Some(Value::String(set)) => {
            validate_name("apply_set", set)?;
            Some(set.clone())
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "apply_set",
                format!(
                    "{other} is not a name; accepted: a string matching [a-z0-9][a-z0-9_-]{{0,62}}"
                ),
            ))
        }
    };
    let prune = match obj.get("prune") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::invalid(
                "prune",
                format!("{other} is not a boolean; accepted: true or false"),
            ))
        }
    };
    if prune && apply_set.is_none() {
        return Err(ApiError::invalid(
            "prune",
            "prune deletes the jobs of an apply set that the request leaves out: name the set \
             in apply_set",
        ));
    }
    let Some(docs) = obj.get("jobs").and_then(Value::as_array) else {
        return Err(ApiError::invalid(
            "jobs",
            "expected {\"jobs\": [job, ...]}: a list of job documents, each with its name",
        ));
    };
    // With prune, an empty list is the way to delete every job of the set.
    let least = usize::from(!prune);
    if docs.len() < least || docs.len() > MAX_JOBS_PER_APPLY {
        return Err(ApiError::invalid(
            "jobs",
            format!(
                "{} jobs; accepted: {least} to {MAX_JOBS_PER_APPLY} (the limit of jobs in one apply)",
                docs.len()
            ),
        ));
    }
    let mut specs = Vec::with_capacity(docs.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, doc) in docs.iter().enumerate() {
        let at = |e: rota_core::ValidationError| ApiError::from(e.within(&format!("jobs[{i}]")));
        let bytes = serde_json::to_vec(doc).map_err(ApiError::Serialize)?;
        let mut spec = parse_job_json(&bytes).map_err(at)?;
        refuse_internal(&spec.name)?;
        if let Some(set) = &apply_set {
            // The last file to apply a job owns it: a job moved from one set's file
            // to another's changes sets.
            spec.metadata
                .insert(APPLY_SET_KEY.to_string(), Value::String(set.clone()));
        }
        spec.validate().map_err(at)?;
        if !seen.insert(spec.name.clone()) {
            return Err(ApiError::invalid(
                format!("jobs[{i}].name"),
                format!("job {:?} is listed twice; names are unique", spec.name),
            ));
        }
        specs.push(spec);
    }
    Ok(ApplyRequest {
        specs,
        apply_set,
        prune,
    })
}

/// `POST /v1/jobs` `{"jobs": [job, ...], "apply_set"?: NAME, "prune"?: bool}`:
/// creates or replaces every job in one log entry, all or nothing: any invalid job
/// (400 naming `jobs[i].field`) and nothing is written. With `apply_set`, every job
/// is marked as one of that set; with `prune` as well, the same entry deletes the
/// jobs of the set that the request leaves out (never a job of another set or of
/// none). Answers `{"revision", "items": [{"name", "action":
/// "created|updated|unchanged", "job": view}], "deleted": [name]}`, items in the
/// order given.
pub(crate) async fn apply(
    State(s): State<AppState>,
    session: Session,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    let request = apply_request(&body_bytes(body)?)?;
    let keep: Vec<String> = request.specs.iter().map(|s| s.name.clone()).collect();
    let mut commands: Vec<Command> = request
        .specs
        .into_iter()
        .map(|spec| Command::PutJob { spec })
        .collect();
    if let (true, Some(apply_set)) = (request.prune, request.apply_set) {
        commands.push(Command::PruneJobs { apply_set, keep });
    }
    let req = rota_core::ClientRequest {
        session: session.0.clone(),
        at: chrono::Utc::now(),
        command: session.attribute(Command::Batch { commands }),
    };
    let (revision, response) = s.node.write(req).await?;
    s.node.wait_applied(revision).await?;
    let Response::Batch { responses } = response else {
        return Err(ApiError::from_refusal(
            "POST /v1/jobs",
            session.seq(),
            response,
        ));
    };
    let mut items = Vec::with_capacity(responses.len());
    let mut deleted = Vec::new();
    for response in responses {
        let (created, job) = match response {
            Response::JobPut { created, job } => (created, job),
            Response::JobsPruned { deleted: names } => {
                deleted = names;
                continue;
            }
            other => {
                return Err(ApiError::from_refusal(
                    "POST /v1/jobs",
                    session.seq(),
                    other,
                ))
            }
        };
        // A job this entry did not write kept its earlier revision.
        let action = match (created, job.revision == revision) {
            (true, _) => "created",
            (false, true) => "updated",
            (false, false) => "unchanged",
        };
        items.push(json!({"name": job.spec.name, "action": action, "job": s.job_view(&job)?}));
    }
    tracing::info!(
        jobs = items.len(),
        deleted = deleted.len(),
        revision,
        "jobs applied"
    );
    Ok(Json(
        json!({"revision": revision, "items": items, "deleted": deleted}),
    ))
}

/// `DELETE /v1/jobs/{name}`: 204, or 404 when there was no such job.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.only(&[])?;
    refuse_internal(&name)?;
    match s
        .commit(
            &session,
            Command::DeleteJob {
                name: name.clone(),
                if_revision: None,
            },
        )
        .await?
    {
        Response::JobDeleted { existed: true } => {
            tracing::info!(job = %name, "job deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Response::JobDeleted { existed: false } => Err(job_not_found(&name)),
        other => Err(ApiError::from_refusal(
            "DELETE /v1/jobs",
            session.seq(),
            other,
        )),
    }
}

/// `POST /v1/jobs/{name}/run`: fires a manual run now; 202 with the execution.
pub(crate) async fn run(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    params.only(&[])?;
    let execution = run_job(&s, &session, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(execution)))
}

/// Fires `name` now (`POST /v1/jobs/{name}/run`, and `run` on a WebSocket watch):
/// the new execution.
pub(crate) async fn run_job(
    s: &AppState,
    session: &Session,
    name: &str,
) -> Result<Value, ApiError> {
    refuse_internal(name)?;
    let fire = Fire {
        ahead: false,
        id: Ulid::generate(),
        job: name.to_string(),
        scheduled_at: chrono::Utc::now(),
        trigger: Trigger::Manual,
        start: None,
        skip_reason: None,
        event_revision: None,
        event_seq: 0,
    };
    let response = s
        .commit(session, Command::Fire { fires: vec![fire] })
        .await?;
    let outcome = match response {
        Response::Fired { outcomes } if outcomes.len() == 1 => outcomes.into_iter().next(),
        other => {
            return Err(ApiError::from_refusal(
                "POST /v1/jobs/{name}/run",
                session.seq(),
                other,
            ))
        }
    };
    // A manual fire is refused only for an unknown job.
    let Some(outcome) = outcome.filter(|o| o.created) else {
        return Err(job_not_found(name));
    };
    let execution = s
        .node
        .store()
        .get_execution(outcome.id)?
        .ok_or_else(|| ApiError::not_found(format!("execution {}", outcome.id)))?;
    tracing::info!(job = %name, execution = %outcome.id, "manual run fired");
    Ok(json!(execution))
}

pub(crate) async fn pause(
    state: State<AppState>,
    name: ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, name, session, params, true).await
}

pub(crate) async fn resume(
    state: State<AppState>,
    name: ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, name, session, params, false).await
}

async fn set_paused(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    session: Session,
    params: Params,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    Ok(Json(set_job_paused(&s, &session, &name, paused).await?))
}

/// Pauses or resumes `name` (`POST /v1/jobs/{name}/pause|resume`, and `pause` or
/// `resume` on a WebSocket watch): the job's view.
pub(crate) async fn set_job_paused(
    s: &AppState,
    session: &Session,
    name: &str,
    paused: bool,
) -> Result<Value, ApiError> {
    refuse_internal(name)?;
    let command = Command::SetPaused {
        name: name.to_string(),
        paused,
    };
    match s.commit(session, command).await? {
        Response::JobPut { job, .. } => {
            tracing::info!(job = %name, paused, "job pause state set");
            s.job_view(&job)
        }
        Response::NotFound { .. } => Err(job_not_found(name)),
        other => Err(ApiError::from_refusal(
            "POST /v1/jobs/{name}/pause",
            session.seq(),
            other,
        )),
    }
}

/// `GET /v1/jobs/{name}/executions?limit=&before=`: newest first, as
/// `{"items": [...], "next_before": ID|null}`; `next_before` is the `before` that
/// fetches the following page (null on the last one).
pub(crate) async fn executions(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["limit", "before", "stale"])?;
    s.read_barrier(&params).await?;
    let limit = params.bounded("limit", 1, 1000, 20)?;
    let before = params.ulid("before")?;
    let node = s.node.clone();
    blocking(move || {
        let store = node.store();
        if store.get_job(&name)?.is_none() {
            return Err(job_not_found(&name));
        }
        // `limit` <= 1000, so the conversion cannot truncate.
        let items = store.list_executions(&name, limit as usize, before)?;
        let next_before = (items.len() as u64 == limit)
            .then(|| items.last().map(|e| e.id.to_string()))
            .flatten();
        Ok(Json(json!({ "items": items, "next_before": next_before })))
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
        let err = job_from_body("a", br#"{"name": "b"}"#).unwrap_err();
        assert_eq!(field(err), "name");
        let err = job_from_body("a", br#"{"name": 5}"#).unwrap_err();
        assert_eq!(field(err), "name");
    }

    #[test]
    fn internal_jobs_belong_to_their_workflow() {
        assert!(refuse_internal("backup").is_ok());
        for name in ["ci:lint", "ci:@trigger"] {
            match refuse_internal(name).unwrap_err() {
                ApiError::Invalid { field, message } => {
                    assert_eq!(field, "name");
                    assert!(message.contains("belongs to workflow \"ci\""), "{message}");
                }
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_body_must_be_a_json_object() {
        let err = job_from_body("a", b"[1, 2]").unwrap_err();
        assert_eq!(field(err), "");
        assert!(matches!(
            job_from_body("a", b"{nope").unwrap_err(),
            ApiError::InvalidJson(_)
        ));
    }
}
