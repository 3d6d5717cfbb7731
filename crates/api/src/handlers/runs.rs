//! `/v1/runs/{id}`: a workflow run, cancelling it, its artifacts, and their files.
//!
//! An artifact's files stay on the node that produced them; only their names,
//! sizes, hashes and node go through Raft. Any node answers a file: its own from
//! its data directory, another node's by passing the request on to that node's API
//! (marked with `Rota-Proxied`, so that it is never passed on again).

use std::path::{Component, Path};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response as HttpResponse;
use axum::Json;
use rota_core::workflow::{ArtifactFile, ArtifactRecord, RunStatus, WorkflowRun};
use rota_core::{Command, Response};
use serde_json::{json, Value};
use tokio_util::io::ReaderStream;
use ulid::Ulid;

use super::executions::PROXIED_HEADER;
use crate::error::ApiError;
use crate::extract::{parse_ulid, ApiPath, Params, Session};
use crate::view::RunView;
use crate::AppState;

/// Why a run ends when cancelled through the API.
pub(crate) const CANCEL_REASON: &str = "cancelled by request";
/// How long a node waits for the node holding an artifact to start answering
/// (the body then streams as long as it takes).
const PEER_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn run_not_found(id: Ulid) -> ApiError {
    ApiError::not_found(format!("run {id}"))
}

fn run_view(run: &WorkflowRun) -> Result<Value, ApiError> {
    serde_json::to_value(RunView::new(run)).map_err(ApiError::Serialize)
}

impl AppState {
    /// The run as of a read barrier (unless `?stale=true`).
    async fn run(&self, id: Ulid, params: &Params) -> Result<WorkflowRun, ApiError> {
        self.read_barrier(params).await?;
        self.node
            .store()
            .get_run(id)?
            .ok_or_else(|| run_not_found(id))
    }
}

/// `GET /v1/runs/{id}`.
pub(crate) async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    let id = parse_ulid("id", &id)?;
    Ok(Json(run_view(&s.run(id, &params).await?)?))
}

/// `POST /v1/runs/{id}/cancel`: 200 with the run as it stands. Queued jobs are
/// cancelled at once; running ones are asked to stop, and until they have, the run
/// stays `running` with `ending: cancelled`. A run that had ended already is
/// answered unchanged.
pub(crate) async fn cancel(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    session: Session,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    let id = parse_ulid("id", &id)?;
    let command = Command::CancelRun {
        id,
        status: RunStatus::Cancelled,
        reason: Some(CANCEL_REASON.to_string()),
    };
    match s.commit(&session, command).await? {
        Response::Run { run } => {
            tracing::info!(run = %id, status = run.status.as_str(), "run cancel requested");
            Ok(Json(run_view(&run)?))
        }
        Response::NotFound { .. } => Err(run_not_found(id)),
        other => Err(ApiError::from_refusal(
            "POST /v1/runs/{id}/cancel",
            session.seq(),
            other,
        )),
    }
}

/// `GET /v1/runs/{id}/artifacts`: `{"items": [artifact], "next": null}` in the
/// order they were recorded. A run holds at most 100 jobs of 50 artifacts each,
/// so the list is one page.
pub(crate) async fn artifacts(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&["stale"])?;
    let id = parse_ulid("id", &id)?;
    let run = s.run(id, &params).await?;
    Ok(Json(json!({ "items": run.artifacts, "next": null })))
}

/// `GET /v1/runs/{id}/artifacts/{name}/{*path}`: one file of an artifact, as
/// `application/octet-stream` with `Content-Length` and its sha256 as `ETag`.
/// Only the files the run's record lists are served.
pub(crate) async fn artifact_file(
    State(s): State<AppState>,
    ApiPath((id, name, path)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    params.only(&["stale"])?;
    let id = parse_ulid("id", &id)?;
    check_relative("path", &path)?;
    let run = s.run(id, &params).await?;
    let (artifact, file) = find_file(&run, &name, &path)?;
    let what = format!("file {path:?} of artifact {name:?} of run {id}");
    if artifact.node == s.node.config().node_name {
        return serve_local(&s, id, artifact, file, &what).await;
    }
    if headers.contains_key(PROXIED_HEADER) {
        // The record says another node has it; passing it on again could loop.
        return Err(ApiError::not_found(format!(
            "{what} (this node is not {:?}, which keeps it)",
            artifact.node
        )));
    }
    from_peer(&s, id, artifact, file, what, &headers).await
}

/// Refuses a path that is absolute or leaves its directory. Recorded paths never
/// do; checking the request too means no path can reach outside the artifact's
/// directory whatever a record holds.
fn check_relative(field: &str, path: &str) -> Result<(), ApiError> {
    let ok = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "{path:?} is not a relative file path inside the artifact (no .., no leading /)"
            ),
        ))
    }
}

/// The artifact named `name` that lists `path`, and that file. When two jobs of
/// the run kept an artifact of the same name, the one recorded last wins.
fn find_file<'a>(
    run: &'a WorkflowRun,
    name: &str,
    path: &str,
) -> Result<(&'a ArtifactRecord, &'a ArtifactFile), ApiError> {
    let mut named = run.artifacts.iter().filter(|a| a.name == name).peekable();
    if named.peek().is_none() {
        return Err(ApiError::not_found(format!(
            "artifact {name:?} of run {}",
            run.id
        )));
    }
    named
        .rev()
        .find_map(|a| a.files.iter().find(|f| f.path == path).map(|f| (a, f)))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "file {path:?} of artifact {name:?} of run {}",
                run.id
            ))
        })
}

async fn serve_local(
    s: &AppState,
    run: Ulid,
    artifact: &ArtifactRecord,
    file: &ArtifactFile,
    what: &str,
) -> Result<HttpResponse, ApiError> {
    let full = rota_scheduler::artifacts_dir(&s.node.config().data_dir, run)
        .join(&artifact.name)
        .join(&file.path);
    let opened = match tokio::fs::File::open(&full).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "{what} (recorded, but no longer on node {:?})",
                artifact.node
            )))
        }
        Err(e) => {
            return Err(ApiError::ArtifactUnreadable {
                path: full,
                source: e,
            })
        }
    };
    let size = match opened.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            return Err(ApiError::ArtifactUnreadable {
                path: full,
                source: e,
            })
        }
    };
    let body = Body::from_stream(ReaderStream::new(opened));
    let mut resp = HttpResponse::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        h.insert(header::ETAG, etag);
    }
    Ok(resp)
}

/// Passes the request on to the node that keeps the file and streams its answer
/// back (whatever it is: the file, or that node's error document).
async fn from_peer(
    s: &AppState,
    run: Ulid,
    artifact: &ArtifactRecord,
    file: &ArtifactFile,
    what: String,
    headers: &HeaderMap,
) -> Result<HttpResponse, ApiError> {
    let unknown = || ApiError::NodeUnknown {
        what: what.clone(),
        node: artifact.node.clone(),
    };
    let base = s
        .node
        .store()
        .nodes()?
        .into_iter()
        .find(|n| n.node == artifact.node)
        .and_then(|n| n.url)
        .ok_or_else(unknown)?;
    let unreachable = |url: &str, reason: String| ApiError::NodeUnreachable {
        what: what.clone(),
        node: artifact.node.clone(),
        url: url.to_string(),
        reason,
    };
    let mut url = reqwest::Url::parse(&base)
        .map_err(|e| unreachable(&base, format!("its registered address is not a URL ({e})")))?;
    {
        let run = run.to_string();
        let Ok(mut segments) = url.path_segments_mut() else {
            return Err(unreachable(
                &base,
                "its registered address cannot take a path".into(),
            ));
        };
        segments
            .pop_if_empty()
            .extend([
                "v1",
                "runs",
                run.as_str(),
                "artifacts",
                artifact.name.as_str(),
            ])
            .extend(file.path.split('/'));
    }
    let http = s.node.peer_http().ok_or_else(unknown)?;
    let request = http
        .get(url.clone())
        .header(PROXIED_HEADER, "1")
        .headers(super::executions::caller_credentials(headers));
    let response = match tokio::time::timeout(PEER_ANSWER_TIMEOUT, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(unreachable(url.as_str(), rota_core::error::chain(&e))),
        Err(_) => {
            return Err(unreachable(
                url.as_str(),
                format!("no answer within {PEER_ANSWER_TIMEOUT:?}"),
            ))
        }
    };
    let status = response_status(response.status().as_u16());
    let mut passed = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ETAG] {
        if let Some(v) = response.headers().get(name.as_str()) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                passed.insert(name, v);
            }
        }
    }
    let mut resp = HttpResponse::new(Body::from_stream(response.bytes_stream()));
    *resp.status_mut() = status;
    *resp.headers_mut() = passed;
    Ok(resp)
}

/// The peer's status as this crate's type (reqwest and axum may use different
/// `http` versions).
fn response_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(artifacts: Vec<ArtifactRecord>) -> WorkflowRun {
        serde_json::from_value(json!({
            "id": Ulid::nil(), "workflow": "ci", "workflow_revision": 1, "status": "succeeded",
            "trigger": "manual", "created_at": "2030-01-01T00:00:00Z", "jobs": {},
            "artifacts": artifacts,
        }))
        .expect("run")
    }

    fn artifact(name: &str, job: &str, paths: &[&str]) -> ArtifactRecord {
        ArtifactRecord {
            name: name.into(),
            job: job.into(),
            node: "n1".into(),
            size: 0,
            files: paths
                .iter()
                .map(|p| ArtifactFile {
                    path: p.to_string(),
                    size: 0,
                    sha256: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_recorded_files_are_found() {
        let run = run_with(vec![
            artifact("report", "a", &["index.html", "css/site.css"]),
            artifact("report", "b", &["index.html"]),
        ]);
        let (a, f) = find_file(&run, "report", "css/site.css").expect("listed");
        assert_eq!((a.job.as_str(), f.path.as_str()), ("a", "css/site.css"));
        let (a, _) = find_file(&run, "report", "index.html").expect("listed");
        assert_eq!(a.job, "b", "the one recorded last wins");
        for (name, path) in [("report", "other.html"), ("nope", "index.html")] {
            assert!(matches!(
                find_file(&run, name, path),
                Err(ApiError::NotFound { .. })
            ));
        }
    }

    #[test]
    fn paths_stay_inside_the_artifact() {
        assert!(check_relative("path", "a/b.txt").is_ok());
        for bad in ["", "../x", "a/../../x", "/etc/passwd", "./a"] {
            assert!(check_relative("path", bad).is_err(), "{bad}");
        }
    }
}
