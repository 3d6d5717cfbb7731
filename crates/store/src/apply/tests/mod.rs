//! The semantics of each command, one behaviour per test.

use rota_core::{Command, EventKind, ExecStatus, FireOutcome, Response, StartInfo, Trigger};
use ulid::Ulid;

use crate::test_support::{finish, fire, spec, spec_with_history, t, Harness};

fn fired(response: Response) -> Vec<FireOutcome> {
    match response {
        Response::Fired { outcomes } => outcomes,
        other => panic!("expected Fired, got {other:?}"),
    }
}

fn put(h: &mut Harness, name: &str) {
    h.run(Command::PutJob { spec: spec(name) });
}

/// Node `node` registers (again) as incarnation `incarnation`.
fn register(h: &mut Harness, node: &str, incarnation: u128) -> Response {
    h.run(Command::RegisterNode {
        fire_ahead: false,
        node: node.into(),
        incarnation: Ulid(incarnation),
        tags: [("zone".to_string(), "a".to_string())].into(),
        max_running: 4,
        url: Some("http://127.0.0.1:7702".into()),
    })
}

mod config;
mod event_fires;
mod events;
mod executions;
mod firing;
mod history;
mod jobs;
mod kv;
mod notify;
mod scheduler_and_nodes;
mod sessions;
mod targets;
mod workflows;
