//! Sending one delivery: a JSON POST with a per-request timeout, retried with
//! backoff on connection errors, 5xx and 429; any other 4xx is final.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Client;
use rota_core::event::Event;
use rota_core::notify::{
    delivery_backoff, truncate_error, Delivery, DeliveryStatus, DELIVERY_ATTEMPTS,
    DELIVERY_ID_HEADER, DELIVERY_TIMEOUT,
};
use tracing::{debug, warn};
use ulid::Ulid;

/// A delivery waiting to be sent, with its payload already built.
#[derive(Debug)]
pub(super) struct Pending {
    pub id: String,
    pub target: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub event: Arc<Event>,
    pub job: String,
    pub execution: Ulid,
    pub body: String,
}

/// The HTTP client every delivery shares (one connection pool).
#[derive(Debug, Clone)]
pub(super) struct Sender {
    client: Client,
}

/// How one attempt ended.
enum Attempt {
    Delivered(u16),
    /// Final: a 4xx other than 429.
    Refused(u16),
    /// Worth another attempt: the status, if an answer came, and why.
    Retry(Option<u16>, String),
}

impl Sender {
    pub(super) fn new() -> Result<Sender, reqwest::Error> {
        // reqwest is built without a crypto provider; this picks ring unless the
        // process already installed one (then the call fails, harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .user_agent(concat!("rota/", env!("CARGO_PKG_VERSION")))
            .timeout(DELIVERY_TIMEOUT)
            .build()?;
        Ok(Sender { client })
    }

    /// Sends `p` until it is delivered, refused, or out of attempts.
    pub(super) async fn deliver(&self, p: Pending) -> Delivery {
        let first_attempt_at = Utc::now();
        let backoff = delivery_backoff();
        let mut attempts = 0;
        let mut code = None;
        let mut error = None;
        let mut status = DeliveryStatus::Failed;
        while attempts < DELIVERY_ATTEMPTS {
            attempts += 1;
            if attempts > 1 {
                let seed = rota_core::retry::jitter_seed(p.execution, attempts)
                    ^ p.id
                        .bytes()
                        .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
                tokio::time::sleep(backoff.delay_before(attempts, seed)).await;
            }
            match self.attempt(&p).await {
                Attempt::Delivered(c) => {
                    code = Some(c);
                    error = None;
                    status = DeliveryStatus::Delivered;
                    break;
                }
                Attempt::Refused(c) => {
                    code = Some(c);
                    error = Some(format!("the receiver answered {c}; not retried"));
                    break;
                }
                Attempt::Retry(c, why) => {
                    code = c;
                    error = Some(truncate_error(&why));
                }
            }
        }
        let delivered_at = (status == DeliveryStatus::Delivered).then(Utc::now);
        if status == DeliveryStatus::Delivered {
            debug!(delivery = %p.id, target = %p.target, url = %p.url, attempts, "webhook delivered");
        } else {
            warn!(delivery = %p.id, target = %p.target, url = %p.url, attempts, error = error.as_deref(), "webhook delivery failed");
        }
        Delivery {
            id: p.id,
            target: p.target,
            url: p.url,
            event_revision: p.event.revision,
            event_type: p.event.event_type.clone(),
            job: p.job,
            execution: p.execution,
            status,
            attempts,
            code,
            error,
            first_attempt_at,
            delivered_at,
        }
    }

    async fn attempt(&self, p: &Pending) -> Attempt {
        let mut request = self
            .client
            .post(&p.url)
            .header(CONTENT_TYPE, "application/json")
            .header(DELIVERY_ID_HEADER, &p.id)
            .header("Rota-Event", &p.event.event_type);
        for (name, value) in &p.headers {
            // Validated when the job or webhook was stored.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        match request.body(p.body.clone()).send().await {
            Ok(answer) => {
                let c = answer.status().as_u16();
                if answer.status().is_success() {
                    Attempt::Delivered(c)
                } else if answer.status().is_client_error() && c != 429 {
                    Attempt::Refused(c)
                } else {
                    Attempt::Retry(Some(c), format!("the receiver answered {c}"))
                }
            }
            Err(err) => Attempt::Retry(None, rota_core::error::chain(&err)),
        }
    }
}
