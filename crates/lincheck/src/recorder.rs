//! The recording side: clients note each request before sending it and each
//! answer as soon as it arrives, and the run's [`History`] comes out at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tracing::warn;

use crate::history::{History, Input, Operation, Output};

/// Tells recorders apart so a token cannot end an operation of another recorder.
static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

/// A thread-safe log of operations with timestamps from one monotonic clock.
/// Cloning is cheap and shares the log, so every client task can hold one.
///
/// Timestamps are taken inside the lock: waiting for it can only make a call
/// look later than the moment [`Recorder::begin`] was entered and an answer look
/// later than its arrival, which widens an operation's interval and so never
/// invents an order real time did not have.
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: u64,
    origin: Instant,
    slots: Mutex<Vec<Slot>>,
}

#[derive(Debug)]
enum Slot {
    Recorded(Operation),
    Discarded,
}

/// An operation in flight. Pass it to [`Recorder::end`] with the answer, to
/// [`Recorder::discard`] when the request certainly had no effect, or drop it to
/// leave the operation pending (no answer: it may or may not have taken effect).
#[derive(Debug)]
#[must_use = "end the operation, discard it, or drop the token to leave it pending"]
pub struct Token {
    recorder: u64,
    index: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            shared: Arc::new(Shared {
                id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
                origin: Instant::now(),
                slots: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Note a request `client` is about to send. Call it before the first byte
    /// goes out. A retried request (same session id and sequence number) is one
    /// operation: begin it once, end it with the final answer.
    pub fn begin(&self, client: u64, input: Input) -> Token {
        let mut slots = self.slots();
        let call = self.now();
        slots.push(Slot::Recorded(Operation {
            client,
            call,
            ret: None,
            input,
            output: None,
        }));
        Token {
            recorder: self.shared.id,
            index: slots.len() - 1,
        }
    }

    /// Note the answer to the operation `token` began. Call it as soon as the
    /// answer is read. A mismatched answer (a revision for a get, ...) is kept
    /// and reported by [`History::validate`].
    pub fn end(&self, token: Token, output: Output) {
        let mut slots = self.slots();
        let ret = self.now();
        if let Some(Slot::Recorded(op)) = self.slot(&mut slots, &token) {
            op.ret = Some(ret);
            op.output = Some(output);
        }
    }

    /// Forget the operation `token` began: only for a request that certainly
    /// changed nothing, such as one refused before it was sent or rejected with
    /// a validation error. When in doubt, drop the token instead.
    pub fn discard(&self, token: Token) {
        let mut slots = self.slots();
        if let Some(slot) = self.slot(&mut slots, &token) {
            *slot = Slot::Discarded;
        }
    }

    /// The operations so far, those not yet ended being pending.
    pub fn history(&self) -> History {
        let ops = self
            .slots()
            .iter()
            .filter_map(|slot| match slot {
                Slot::Recorded(op) => Some(op.clone()),
                Slot::Discarded => None,
            })
            .collect();
        History::new(ops)
    }

    fn slot<'a>(&self, slots: &'a mut [Slot], token: &Token) -> Option<&'a mut Slot> {
        if token.recorder != self.shared.id {
            warn!(
                token_recorder = token.recorder,
                recorder = self.shared.id,
                "token from another recorder ignored"
            );
            return None;
        }
        slots.get_mut(token.index)
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        // The log stays consistent even if a client panicked while holding the
        // lock: every update is a single assignment.
        self.shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.shared.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{check, Budget, CheckResult};

    #[test]
    fn ended_discarded_and_pending_operations_are_told_apart() {
        let recorder = Recorder::new();
        let put = recorder.begin(
            1,
            Input::Put {
                key: "k".into(),
                value: "v".into(),
            },
        );
        let lost = recorder.begin(2, Input::Delete { key: "k".into() });
        let refused = recorder.begin(3, Input::Get { key: "k".into() });
        recorder.end(put, Output::Put { revision: 1 });
        recorder.discard(refused);
        drop(lost);

        let history = recorder.history();
        assert_eq!(history.ops.len(), 2);
        let put = &history.ops[0];
        assert_eq!(put.output, Some(Output::Put { revision: 1 }));
        assert!(put.ret.is_some_and(|ret| ret >= put.call));
        assert!(history.ops[1].is_pending());
        assert_eq!(history.ops[1].input, Input::Delete { key: "k".into() });
    }

    #[test]
    fn a_token_of_another_recorder_changes_nothing() {
        let (a, b) = (Recorder::new(), Recorder::new());
        let _pending = a.begin(1, Input::Get { key: "k".into() });
        let foreign = b.begin(1, Input::Get { key: "k".into() });
        a.end(foreign, Output::NotFound);
        assert!(a.history().ops[0].is_pending());
    }

    /// Threads share one register behind a lock and record around each access;
    /// the recorded history must check out.
    #[test]
    fn concurrent_clients_record_a_linearizable_history() {
        let recorder = Recorder::new();
        let register: Arc<Mutex<(Option<String>, u64, u64)>> = Arc::default();
        std::thread::scope(|scope| {
            for client in 0..4u64 {
                let (recorder, register) = (recorder.clone(), Arc::clone(&register));
                scope.spawn(move || {
                    for n in 0..50u64 {
                        let key = "k".to_string();
                        if n % 2 == 0 {
                            let value = format!("{client}.{n}");
                            let token = recorder.begin(
                                client,
                                Input::Put {
                                    key,
                                    value: value.clone(),
                                },
                            );
                            let revision = {
                                let mut reg =
                                    register.lock().unwrap_or_else(PoisonError::into_inner);
                                reg.2 += 1;
                                reg.0 = Some(value);
                                reg.1 = reg.2;
                                reg.2
                            };
                            recorder.end(token, Output::Put { revision });
                        } else {
                            let token = recorder.begin(client, Input::Get { key });
                            let output = {
                                let reg = register.lock().unwrap_or_else(PoisonError::into_inner);
                                match &reg.0 {
                                    Some(value) => Output::Found {
                                        value: value.clone(),
                                        mod_revision: reg.1,
                                    },
                                    None => Output::NotFound,
                                }
                            };
                            recorder.end(token, output);
                        }
                    }
                });
            }
        });
        let history = recorder.history();
        assert_eq!(history.ops.len(), 200);
        assert_eq!(check(&history, Budget::default()).unwrap(), CheckResult::Ok);
    }
}
