//! Group commit: the commands of one or more engine turns go out as one Raft write,
//! at most one in flight; its answer retires the finished runs from the live map and
//! tells the engine which fires created nothing.

use chrono::Utc;
use rota_core::{ClientRequest, Command, Response};
use rota_engine::{Action, Engine, Input};
use tracing::{debug, warn};
use ulid::Ulid;

use super::{lock, Runtime};

/// A commit task's answer.
pub(super) struct CommitDone {
    /// The engine generation that produced it.
    epoch: u64,
    command: Command,
    result: Result<(u64, Response), rota_cluster::WriteError>,
}

impl Runtime {
    /// Sends the pending commands as one request, unless one is in flight.
    pub(super) fn start_commit(&mut self) {
        if self.pending.is_empty() || !self.commits.is_empty() {
            return;
        }
        let command = Command::Fenced {
            epoch: self.fence,
            commands: std::mem::take(&mut self.pending),
        };
        self.spawn_commit(command);
    }

    /// Takes a commit's answer; false when it failed (the engine must be rebuilt).
    pub(super) fn committed(
        &mut self,
        done: CommitDone,
        engine: Option<&mut Engine>,
        out: &mut Vec<Action>,
    ) -> bool {
        let (index, response) = match done.result {
            Ok((index, response)) => {
                debug!(index, "scheduler batch committed");
                (index, response)
            }
            Err(err) => {
                warn!(error = %err, "committing scheduler actions failed");
                return false;
            }
        };
        // Finished runs leave the live map only now, so a follower of their output
        // always finds either the live buffer or the stored output.
        let mut finished = Vec::new();
        let mut dropped = Vec::new();
        walk_commit(&done.command, &response, &mut finished, &mut dropped);
        if !finished.is_empty() {
            let applied = self.node.store().last_applied_index();
            self.ended.retain(|_, at| *at > applied);
        }
        {
            let mut live = lock(&self.shared.live);
            for (id, attempt) in finished {
                if live
                    .get(&id)
                    .is_some_and(|r| r.attempt == attempt && r.completion.is_some())
                {
                    live.remove(&id);
                    // Until this node's replica applied the finish, an older event
                    // may still show the attempt running or placed here: it ran.
                    self.ended.insert((id, attempt), index);
                }
            }
        }
        self.shared.runs_left.notify_waiters();
        if let Some(engine) = engine {
            if done.epoch == self.epoch {
                let now = Utc::now();
                for id in dropped {
                    engine.handle(Input::FireDropped { id }, now, out);
                }
            }
        }
        true
    }

    /// Waits for the commit in flight; false on shutdown.
    pub(super) async fn settle_commits(&mut self) -> bool {
        while !self.commits.is_empty() {
            tokio::select! {
                () = self.ctx.stopping() => return false,
                Some(done) = self.commits.join_next() => {
                    if let Ok(done) = done {
                        self.committed(done, None, &mut Vec::new());
                    }
                }
            }
        }
        true
    }

    /// Commits everything pending before the engine is replaced (best effort: a
    /// failure leaves the store as it is, which the next engine reads); false on
    /// shutdown.
    pub(super) async fn flush(&mut self) -> bool {
        if !self.settle_commits().await {
            return false;
        }
        self.start_commit();
        if !self.settle_commits().await {
            return false;
        }
        self.pending.clear();
        true
    }

    /// Commits a command outside any engine's batches (no fence: finishes apply
    /// whoever leads).
    pub(super) fn commit_unfenced(&mut self, command: Command) {
        self.spawn_commit(command);
    }

    /// Commits `command` in a background task; its answer comes back through
    /// `self.commits`.
    fn spawn_commit(&mut self, command: Command) {
        let node = self.node.clone();
        let epoch = self.epoch;
        // A leader's batch tells a successor nothing of this node, but it is sent
        // while no other leader judges this node (see `Contact`); a follower's
        // finishes and starts do not count: leaders judge followers by heartbeats.
        let contact = matches!(command, Command::Fenced { .. }).then(|| self.contact.clone());
        self.commits.spawn(async move {
            let at = Utc::now();
            let request = ClientRequest {
                session: None,
                at,
                command: command.clone(),
            };
            let result = node.write(request).await;
            if let (Some(contact), Ok(_)) = (&contact, &result) {
                contact.committed(at);
            }
            CommitDone {
                epoch,
                command,
                result,
            }
        });
    }
}

/// The finishes a committed command carried, and its fires that created nothing
/// (matched by position with the answer's outcomes).
fn walk_commit(
    command: &Command,
    response: &Response,
    finished: &mut Vec<(Ulid, u32)>,
    dropped: &mut Vec<Ulid>,
) {
    match (command, response) {
        (Command::Batch { commands }, Response::Batch { responses })
        | (Command::Fenced { commands, .. }, Response::Batch { responses }) => {
            for (c, r) in commands.iter().zip(responses) {
                walk_commit(c, r, finished, dropped);
            }
        }
        (Command::Fire { fires }, Response::Fired { outcomes }) => {
            for (fire, outcome) in fires.iter().zip(outcomes) {
                if !outcome.created {
                    dropped.push(fire.id);
                }
            }
        }
        (Command::Finish { finishes }, _) => {
            finished.extend(finishes.iter().map(|f| (f.id, f.attempt)));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use rota_core::{ExecStatus, Finish, Fire, FireOutcome, Trigger};

    use super::*;

    fn fire(id: u128) -> Fire {
        Fire {
            ahead: false,
            id: Ulid(id),
            job: "j".into(),
            scheduled_at: Utc::now(),
            trigger: Trigger::Schedule,
            start: None,
            skip_reason: None,
            event_revision: None,
            event_seq: 0,
        }
    }

    #[test]
    fn walk_commit_matches_fires_to_outcomes_by_position() {
        let finish = Finish {
            id: Ulid(9),
            attempt: 2,
            status: ExecStatus::Succeeded,
            at: Utc::now(),
            exit_code: None,
            error: None,
            output: None,
            output_truncated: false,
            retry_at: None,
            artifacts: Vec::new(),
            result: None,
            started_at: None,
            usage: None,
        };
        let command = Command::Batch {
            commands: vec![
                Command::Fire {
                    fires: vec![fire(1), fire(2)],
                },
                Command::Finish {
                    finishes: vec![finish],
                },
            ],
        };
        let response = Response::Batch {
            responses: vec![
                Response::Fired {
                    outcomes: vec![
                        FireOutcome {
                            id: Ulid(1),
                            job: "j".into(),
                            created: true,
                        },
                        // An instant fired before: the answer names the existing id.
                        FireOutcome {
                            id: Ulid(77),
                            job: "j".into(),
                            created: false,
                        },
                    ],
                },
                Response::Ok,
            ],
        };
        let (mut finished, mut dropped) = (Vec::new(), Vec::new());
        walk_commit(&command, &response, &mut finished, &mut dropped);
        assert_eq!(finished, vec![(Ulid(9), 2)]);
        assert_eq!(dropped, vec![Ulid(2)]);
    }
}
