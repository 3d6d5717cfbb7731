//! Route handlers, one module per resource.

pub(crate) mod check;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod console;
pub(crate) mod executions;
pub(crate) mod jobs;
pub(crate) mod kv;
pub(crate) mod notify;
pub(crate) mod runs;
pub(crate) mod sinks;
pub(crate) mod system;
pub(crate) mod targets;
pub(crate) mod tokens;
pub(crate) mod workflows;

use crate::error::ApiError;

/// The status of a create-or-replace: 201 when the write created the resource,
/// 200 when it replaced one.
pub(crate) fn created_or_ok(created: bool) -> axum::http::StatusCode {
    if created {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    }
}

/// Runs a store scan off the async workers: listings can visit many records.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::TaskFailed)?
}

/// One page of a list kept in name order, as `?limit=` (1-1000, default 100) and
/// `?after=NAME` ask: the items named after `after`, at most `limit`, and the
/// cursor of the next page (the last name taken), `None` on the last page.
pub(crate) fn name_page<T>(
    params: &crate::extract::Params,
    mut items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let limit = params.bounded("limit", 1, 1000, 100)? as usize;
    if let Some(after) = params.get("after") {
        items.retain(|item| name(item) > after);
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more
        .then(|| items.last().map(|item| name(item).to_string()))
        .flatten();
    Ok((items, next))
}
