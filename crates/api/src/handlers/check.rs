//! `GET /v1/jobs/{name}/check`: runs a probe job now, on the node asked, and
//! answers its result. An API gateway may call it on every request, so it reads
//! only this node's replica (the job and its target set, no quorum read) and
//! writes nothing unless `?record=true`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use rota_core::{ClientRequest, Command, ExecutorSpec, Response};
use rota_exec::probe::{describe, outcome_of, run_probe};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use crate::error::ApiError;
use crate::extract::{ApiPath, Params};
use crate::AppState;

/// `GET /v1/jobs/{name}/check[?record=true]`: 200 with the probe's result
/// `{status, targets: [...]}` (plus `execution` when recorded).
pub(crate) async fn check(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    params.only(&["record"])?;
    let record = params.flag("record")?;
    let store = s.node.store();
    let job = store
        .get_job(&name)?
        .ok_or_else(|| ApiError::not_found(format!("job {name:?}")))?;
    let ExecutorSpec::Probe(spec) = &job.spec.executor else {
        return Err(ApiError::invalid(
            "executor.type",
            format!(
                "job {name:?} runs a {} executor; only probe jobs can be checked",
                job.spec.executor.type_name()
            ),
        ));
    };
    let set = store
        .get_target_set(&spec.targets)?
        .ok_or_else(|| ApiError::not_found(format!("target set {:?}", spec.targets)))?;
    if set.refreshed_at.is_none() {
        return Err(ApiError::NotDiscovered {
            set: spec.targets.clone(),
        });
    }
    // Only the headers the spec lists travel on, under their own names.
    let forwarded: BTreeMap<String, String> = spec
        .forward_headers
        .iter()
        .filter_map(|h| {
            let value = headers.get(h.as_str())?.to_str().ok()?;
            Some((h.clone(), value.to_string()))
        })
        .collect();
    let started_at = chrono::Utc::now();
    // Dropping this future (the caller went away) drops the requests with it.
    let result = run_probe(spec, &set.targets, &forwarded, &CancellationToken::new()).await;
    s.telemetry.probe_result(&name, result.status.as_str());
    let mut body = serde_json::to_value(&result).map_err(ApiError::Serialize)?;
    if record {
        let (output, output_truncated) = cut_output(describe(&result), job.spec.max_output_bytes);
        let outcome = outcome_of(spec, result.clone());
        let id = Ulid::generate();
        let command = Command::RecordCheck {
            id,
            job: name.clone(),
            node: s.node.status().node,
            started_at,
            result,
            error: outcome.error,
            output: Some(output),
            output_truncated,
        };
        let req = ClientRequest {
            session: None,
            at: chrono::Utc::now(),
            command,
        };
        match s.node.write(req).await.map_err(ApiError::from)?.1 {
            Response::Fired { .. } => body["execution"] = json!(id),
            other => return Err(ApiError::from_refusal("GET /v1/jobs/check", None, other)),
        }
    }
    Ok(Json(body))
}

/// A recorded check's output, cut like any run's at the job's `max_output_bytes`
/// (on a character boundary), and whether it was cut.
fn cut_output(mut text: String, max_bytes: u64) -> (String, bool) {
    let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::cut_output;

    #[test]
    fn a_recorded_check_keeps_at_most_max_output_bytes() {
        assert_eq!(cut_output("abc".into(), 3), ("abc".into(), false));
        assert_eq!(cut_output("abcd".into(), 3), ("abc".into(), true));
        assert_eq!(cut_output("abc".into(), 0), (String::new(), true));
        // "é" is two bytes: a cut inside it keeps the characters before.
        assert_eq!(cut_output("aé".into(), 2), ("a".into(), true));
    }
}
