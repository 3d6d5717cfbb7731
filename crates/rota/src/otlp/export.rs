//! The task that sends closed spans to the OTLP receiver in batches.
//!
//! It waits for a span, then gathers what else closes within [`BATCH_DELAY`] (up
//! to [`MAX_BATCH`] spans) and posts them as one request, trying a failed request
//! again after short pauses while the receiver is unreachable or answers 429 or
//! 5xx. A batch that still fails is dropped: traces are diagnostics, and holding
//! them would only grow memory while the receiver is down. Failures are logged
//! when they start and when they end, not per batch.
//!
//! It is not a worker of the node's runner: it must outlive every worker, so that
//! the spans of the shutdown itself are sent; [`Exporter::shutdown`] stops it last.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::encode::{export_request, Resource};
use super::SpanRecord;

/// Most spans in one request.
const MAX_BATCH: usize = 512;
/// How long a batch waits for more spans after its first.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Pauses before the second and third try of a batch.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];
/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shutdown waits for the last spans to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The sending task; see the module doc.
pub struct Exporter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Exporter {
    pub(super) fn start(
        url: String,
        headers: &BTreeMap<String, String>,
        resource: Resource,
        spans: mpsc::Receiver<SpanRecord>,
        dropped: Arc<AtomicU64>,
    ) -> anyhow::Result<Exporter> {
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("otlp_headers: {name:?}"))?;
            let mut value = HeaderValue::from_str(value)
                .with_context(|| format!("otlp_headers: the value of {name}"))?;
            // Kept out of debug output: such headers are usually credentials.
            value.set_sensitive(true);
            header_map.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(header_map)
            .connect_timeout(Duration::from_secs(2))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client that sends traces")?;
        let stop = CancellationToken::new();
        let sender = Sender {
            http,
            url,
            resource,
            dropped,
            dropped_reported: 0,
            failing: false,
        };
        let task = tokio::spawn(sender.run(spans, stop.clone()));
        Ok(Exporter { stop, task })
    }

    /// Sends the spans closed so far (one try each, up to [`FLUSH_TIMEOUT`] in all)
    /// and stops. Spans closed later are not sent.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(FLUSH_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            warn!(after = ?FLUSH_TIMEOUT, "traces still unsent at shutdown; dropping them");
            task.abort();
        }
    }
}

struct Sender {
    http: reqwest::Client,
    url: String,
    resource: Resource,
    /// Spans the layer dropped because the queue was full.
    dropped: Arc<AtomicU64>,
    dropped_reported: u64,
    /// Whether the last batch failed (failures are logged when they start).
    failing: bool,
}

impl Sender {
    async fn run(mut self, mut spans: mpsc::Receiver<SpanRecord>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                biased;
                span = spans.recv() => span,
                _ = stop.cancelled() => None,
            };
            let Some(first) = first else {
                break;
            };
            let mut batch = vec![first];
            let send_at = Instant::now() + BATCH_DELAY;
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    biased;
                    span = spans.recv() => match span {
                        Some(span) => batch.push(span),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(send_at) => break,
                    _ = stop.cancelled() => break,
                }
            }
            // At shutdown one try: the process is waiting to exit.
            let pauses: &[Duration] = if stop.is_cancelled() {
                &[]
            } else {
                &RETRY_PAUSES
            };
            self.send(&batch, pauses).await;
        }
        // Shutdown: what is queued now, one try per batch.
        let mut batch = Vec::new();
        while let Ok(span) = spans.try_recv() {
            batch.push(span);
            if batch.len() == MAX_BATCH {
                self.send(&batch, &[]).await;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.send(&batch, &[]).await;
        }
    }

    /// Posts `batch`, trying again after each of `pauses` while the failure may
    /// pass.
    async fn send(&mut self, batch: &[SpanRecord], pauses: &[Duration]) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_reported {
            warn!(
                dropped = dropped - self.dropped_reported,
                dropped_total = dropped,
                "the trace queue was full; spans were dropped"
            );
            self.dropped_reported = dropped;
        }
        let body = export_request(&self.resource, batch);
        let mut pauses = pauses.iter();
        let failure = loop {
            let (failure, transient) = match self.http.post(&self.url).json(&body).send().await {
                Ok(answer) if answer.status().is_success() => {
                    if self.failing {
                        info!(endpoint = %self.url, "traces are sent again");
                        self.failing = false;
                    }
                    return;
                }
                Ok(answer) => {
                    let status = answer.status();
                    let text = answer.text().await.unwrap_or_default();
                    let transient = status.is_server_error() || status.as_u16() == 429;
                    (format!("{status}: {}", text.trim()), transient)
                }
                Err(err) => (format!("{err:#}"), true),
            };
            match pauses.next() {
                Some(pause) if transient => tokio::time::sleep(*pause).await,
                _ => break failure,
            }
        };
        if !self.failing {
            warn!(
                endpoint = %self.url,
                error = %failure,
                spans = batch.len(),
                "cannot send traces; dropping them (logged again when sending works)"
            );
            self.failing = true;
        }
    }
}
