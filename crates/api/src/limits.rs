//! What one request may carry, checked before any handler runs, each refusal a 4xx
//! that names the limit. The body limit is [`crate::BODY_LIMIT`] (413, checked by
//! every body-reading handler), the jobs of one apply are
//! `handlers::jobs::MAX_JOBS_PER_APPLY`, watch connections are limited by the
//! [`crate::WatchHub`]. Header bytes are checked here: hyper itself refuses a head
//! beyond its read buffer (about 400 KiB) or with more than 100 headers with a bare
//! 431 and closes the connection; below that, this check answers the contract's
//! JSON error.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response as HttpResponse;

use crate::ApiError;

/// Most bytes of header names and values one request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuses a request whose headers exceed [`MAX_HEADER_BYTES`] (431).
pub(crate) async fn check_headers(req: Request, next: Next) -> Result<HttpResponse, ApiError> {
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge {
            bytes,
            limit: MAX_HEADER_BYTES,
        });
    }
    Ok(next.run(req).await)
}
