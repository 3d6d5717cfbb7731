//! The `http` executor: sends one request and judges the run by the answer's
//! status: success when it is in `expect_status`, or any 2xx when that list is empty.
//!
//! The output is a first line `HTTP <status>` followed by the response body, read
//! only as far as the output buffer keeps it. Every run shares one
//! [`reqwest::Client`] (and so its connection pool and TLS set-up), built on first
//! use. The job's timeout bounds the whole exchange, body included; a cancel drops
//! the request wherever it is.

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use rota_core::{ExecutorSpec, HttpSpec};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{interruptible, ExecError, Executor, OutputBuffer, RunOutcome, RunRequest};

/// Runs [`HttpSpec`]s with one shared client.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpExecutor;

impl Executor for HttpExecutor {
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        Box::pin(async move {
            let ExecutorSpec::Http(spec) = &req.spec else {
                return ExecError::outcome(&ExecError::SpecMismatch {
                    executor: "http",
                    spec: req.spec.type_name(),
                });
            };
            let exchange = exchange(spec, &output);
            let outcome = match interruptible(exchange, req.timeout, &cancel).await {
                Ok(Ok(())) => RunOutcome::succeeded(),
                Ok(Err(err)) => ExecError::outcome(&err),
                Err(interrupted) => interrupted.outcome(),
            };
            debug!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
                method = %spec.method, url = %spec.url, status = outcome.status.as_str(),
                error = outcome.error.as_deref(), "http request ended");
            outcome
        })
    }
}

/// The client every run shares (http and probe runs), built once. A build failure
/// is kept too, so every run reports it rather than retrying the TLS set-up.
pub(crate) fn client() -> Result<&'static Client, ExecError> {
    static CLIENT: OnceLock<Result<Client, Arc<reqwest::Error>>> = OnceLock::new();
    CLIENT
        .get_or_init(|| client_builder().build().map_err(Arc::new))
        .as_ref()
        .map_err(|err| ExecError::HttpClient(Arc::clone(err)))
}

/// The shared client for other parts of the node (discovery, sinks, prow): the
/// same settings; when it could not be built, a plain one (its error is reported by
/// every http run).
pub fn shared_client() -> Client {
    match client() {
        Ok(client) => client.clone(),
        Err(_) => Client::new(),
    }
}

/// The settings of the shared client: rustls with ring, the platform's certificate
/// verification, and TLS secrets written to the file `SSLKEYLOGFILE` names when
/// that variable is set as the client is built (so that a capture of the probes
/// can be decrypted); nothing is written when it is not set.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    // reqwest is built without a crypto provider; this picks ring unless the
    // process already installed one (then the call fails, harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .user_agent(concat!("rota/", env!("CARGO_PKG_VERSION")))
        // Sets rustls's `key_log` to a `KeyLogFile`, which opens the file named by
        // SSLKEYLOGFILE; the verifier stays the one reqwest builds.
        .tls_sslkeylogfile(std::env::var_os("SSLKEYLOGFILE").is_some())
}

/// Sends the request and copies the answer to `output`; `Ok` when its status is one
/// the spec accepts.
async fn exchange(spec: &HttpSpec, output: &OutputBuffer) -> Result<(), ExecError> {
    let client = client()?;
    let method = Method::from_bytes(spec.method.as_bytes())
        .map_err(|_| ExecError::InvalidMethod(spec.method.clone()))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ExecError::InvalidHeaderName(name.clone()))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ExecError::InvalidHeaderValue(name.clone()))?;
        headers.append(header, value);
    }
    let mut request = client.request(method, &spec.url).headers(headers);
    if let Some(body) = &spec.body {
        request = request.body(body.clone());
    }
    let mut response = request.send().await.map_err(ExecError::Request)?;
    let status = response.status();
    output.push(format!("HTTP {}\n", status.as_u16()).as_bytes());
    // What the buffer would drop is not worth downloading.
    let mut body_result = Ok(());
    while !output.is_truncated() {
        match response.chunk().await {
            Ok(Some(chunk)) => output.push(&chunk),
            Ok(None) => break,
            Err(err) => {
                body_result = Err(ExecError::ResponseBody(err));
                break;
            }
        }
    }
    // A wrong status explains more than a body that broke off afterwards.
    check_status(status, &spec.expect_status)?;
    body_result
}

fn check_status(status: StatusCode, expected: &[u16]) -> Result<(), ExecError> {
    let accepted = if expected.is_empty() {
        status.is_success()
    } else {
        expected.contains(&status.as_u16())
    };
    if accepted {
        return Ok(());
    }
    let expected = if expected.is_empty() {
        "2xx".to_string()
    } else {
        expected
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(ExecError::UnexpectedStatus {
        status: status.as_u16(),
        expected,
    })
}

#[cfg(test)]
mod tls_tests;
