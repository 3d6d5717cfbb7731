//! A store in a temporary directory that applies one command per log index.

use std::sync::Arc;

use chrono::TimeZone;
use rota_core::{
    ClientRequest, Command, ExecStatus, Finish, Fire, JobSpec, Response, SessionKey, StoreEvent,
    Timestamp, Trigger,
};
use tokio::sync::broadcast;
use ulid::Ulid;

use rota_core::notify::{delivery_id, Delivery, DeliveryStatus, NotifyOn};

use crate::{LogEntry, Store};

pub(crate) struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub index: u64,
    events: broadcast::Receiver<Arc<StoreEvent>>,
}

/// `secs` seconds after a fixed origin.
pub(crate) fn t(secs: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid test time")
}

pub(crate) fn spec(name: &str) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "schedule": {"every": "1m"},
        "executor": {"type": "shell", "command": "true"},
    }))
    .expect("valid test spec")
}

pub(crate) fn spec_with_history(name: &str, history_limit: u32) -> JobSpec {
    let mut s = spec(name);
    s.history_limit = Some(history_limit);
    s
}

pub(crate) fn fire(id: u128, job: &str, at: i64, trigger: Trigger) -> Fire {
    Fire {
        ahead: false,
        id: Ulid(id),
        job: job.to_string(),
        scheduled_at: t(at),
        trigger,
        start: None,
        skip_reason: None,
        event_revision: None,
        event_seq: 0,
    }
}

pub(crate) fn finish(id: u128, attempt: u32, status: ExecStatus, at: i64) -> Finish {
    Finish {
        id: Ulid(id),
        attempt,
        status,
        at: t(at),
        exit_code: None,
        error: None,
        output: None,
        output_truncated: false,
        retry_at: None,
        artifacts: Vec::new(),
        result: None,
        started_at: None,
        usage: None,
    }
}

/// A final delivery outcome of execution 7's finish at `revision` to `target`.
pub(crate) fn delivery(revision: u64, target: &str, status: DeliveryStatus) -> Delivery {
    let execution = Ulid(7);
    Delivery {
        id: delivery_id(revision, execution, 1, NotifyOn::Finished, target),
        target: target.to_string(),
        url: "http://127.0.0.1:9/hook".into(),
        event_revision: revision,
        event_type: "execution.finished".into(),
        job: if target == "ops" { "deploy" } else { "build" }.into(),
        execution,
        status,
        attempts: 3,
        code: Some(200),
        error: None,
        first_attempt_at: t(revision as i64),
        delivered_at: Some(t(revision as i64 + 3)),
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_event_retention(crate::DEFAULT_EVENT_RETENTION)
    }

    /// A store whose event log keeps at least `retention` events.
    pub fn with_event_retention(retention: u64) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(
            &dir.path().join("state.redb"),
            crate::EventRetention::events(retention),
        )
        .expect("open store");
        let events = store.subscribe();
        Harness {
            dir,
            store,
            index: 0,
            events,
        }
    }

    /// Applies `command` at the next index, with `at` = the index in seconds.
    pub fn run(&mut self, command: Command) -> Response {
        let at = t(self.index as i64 + 1);
        self.request(ClientRequest {
            session: None,
            at,
            command,
        })
    }

    pub fn run_at(&mut self, at: Timestamp, command: Command) -> Response {
        self.request(ClientRequest {
            session: None,
            at,
            command,
        })
    }

    pub fn run_session(
        &mut self,
        client: &str,
        seq: u64,
        at: Timestamp,
        command: Command,
    ) -> Response {
        self.request(ClientRequest {
            session: Some(SessionKey {
                client_id: client.to_string(),
                seq,
            }),
            at,
            command,
        })
    }

    pub fn request(&mut self, req: ClientRequest) -> Response {
        self.index += 1;
        let mut responses = self
            .store
            .apply(
                &[LogEntry {
                    index: self.index,
                    request: Some(&req),
                    members: None,
                }],
                b"meta",
            )
            .expect("apply");
        assert_eq!(responses.len(), 1);
        responses.remove(0)
    }

    /// Store events announced since the last call, without the public ones
    /// (`EventKind::Published`, which the event log tests look at).
    pub fn events(&mut self) -> Vec<Arc<StoreEvent>> {
        self.all_events()
            .into_iter()
            .filter(|e| !matches!(e.kind, rota_core::EventKind::Published(_)))
            .collect()
    }

    /// Every store event announced since the last call.
    pub fn all_events(&mut self) -> Vec<Arc<StoreEvent>> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}
