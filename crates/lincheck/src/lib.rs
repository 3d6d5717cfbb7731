//! A linearizability checker for rota's KV API, and the recorder that feeds it.
//!
//! Clients of a test run (typically one with crashes and partitions) note every
//! request and answer in a [`Recorder`]; the resulting [`History`] is checked
//! with [`check`], which answers [`CheckResult::Ok`], a [`Violation`] naming the
//! operations involved, or [`CheckResult::GaveUp`] when the search budget ran out
//! (a failure for the caller: nothing was proven). A history saves to JSON
//! ([`History::to_json`]) so that a failing run can be kept and checked again.
//!
//! ```
//! use rota_lincheck::{check, Budget, CheckResult, Input, Output, Recorder};
//!
//! let recorder = Recorder::new(); // clone it into every client
//! let put = recorder.begin(1, Input::Put { key: "k".into(), value: "a".into() });
//! // ... send the request; the answer says revision 7 ...
//! recorder.end(put, Output::Put { revision: 7 });
//! let get = recorder.begin(2, Input::Get { key: "k".into() });
//! recorder.end(get, Output::Found { value: "a".into(), mod_revision: 7 });
//! let lost = recorder.begin(2, Input::Delete { key: "k".into() });
//! drop(lost); // timed out: pending, it may or may not have happened
//!
//! let history = recorder.history();
//! assert_eq!(check(&history, Budget::default())?, CheckResult::Ok);
//! # Ok::<(), rota_lincheck::LincheckError>(())
//! ```
//!
//! # Model
//!
//! Each key is a register holding a value and a `mod_revision`, where revisions
//! are global Raft log indexes: put, CAS and delete (even one that finds nothing)
//! each take the index of the entry that applied them. A put sets the value, a get
//! reads it, a delete removes it, and a CAS (`if_revision=N`) writes only when the
//! key's `mod_revision` is `N` (0 = absent) and otherwise answers the current one.
//!
//! The model cannot know in advance which index a write will take, so instead of
//! predicting revisions it checks that observed revisions are *consistent*:
//! - writes to a key take strictly increasing revisions in linearization order
//!   (the state keeps a lower bound `last` on the last write's index);
//! - a get's `mod_revision`, a CAS's success and a CAS refusal's `current` must
//!   equal the revision of the write whose state they see;
//! - a pending write (no answer) has an unknown revision, known only to exceed
//!   the previous one; the first answer that observes it (a get, a refused CAS, a
//!   CAS that matched it) pins it, and later observations must agree;
//! - across keys, one cheap real-time check: a write called after some answer
//!   carried revision `r` must take a revision above `r`.
//!
//! A pending CAS may have matched or not; that is the one nondeterministic step,
//! handled as in porcupine by searching over *sets* of states (almost always of
//! size one). Values are compared exactly; nothing assumes they are unique.
//!
//! # Algorithm
//!
//! Operations on different keys are independent in this model, so the history is
//! split per key and each part searched alone (porcupine's partitioning). For each
//! key, Wing & Gong's search with Lowe's and porcupine's memoization: call and
//! return events sorted by time (calls first at equal times, so touching intervals
//! count as concurrent) form a doubly linked list; the search repeatedly takes a
//! call that precedes every remaining return, applies it to the model, and *lifts*
//! the operation out of the list; when it reaches a return whose call has not been
//! taken, it backtracks (*unlifts* the last choice). Each (set of linearized
//! operations, model states) pair is tried once. A pending operation returns at
//! +infinity: it may be linearized anywhere after its call, including after
//! everything, which is the same as never having taken effect. Pending gets are
//! dropped, since they neither change nor reveal anything.
//!
//! Each unanswered write multiplies the search, and a run with crashes and
//! partitions leaves dozens per key. Most are never seen: no read returns their
//! value. A key is therefore first searched without its unseen unanswered puts
//! and CASes (as if they never took effect, which is one of their possible
//! fates): a linearization found that way is one of the whole history. Only when
//! none is found is everything searched, so a violation always comes from the
//! full search.
//!
//! # Limits
//!
//! - The check is sound but not complete: a `Violation` is always real, but a few
//!   anomalies pass. A refused CAS takes a log index the answer does not reveal, so
//!   it does not raise the lower bound for later writes; a pending CAS that was
//!   refused does not remember that the unknown revision differed from the one it
//!   expected; cross-key anomalies other than revision order (for example, two
//!   keys' writes observed in opposite orders by two readers) are not searched for.
//! - Every key starts absent: use fresh keys per run.
//! - Every client write is assumed to be its own log entry, as in the HTTP API, so
//!   two writes to one key never share a revision.
//! - Record a retried request (same session id and sequence) as one operation from
//!   its first send to its final answer: its answer may be the first attempt's.
//! - Gets are linearizable reads; `?stale=true` reads must not be recorded.
//! - The search is exponential in the worst case (many concurrent operations on
//!   one key, or many pending writes); memoization keeps realistic histories fast,
//!   and the [`Budget`] bounds the rest.

mod check;
mod error;
mod history;
mod model;
mod recorder;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use check::{check, Budget, CheckResult, Violation, ViolationKind};
pub use error::LincheckError;
pub use history::{History, Input, Operation, Output};
pub use recorder::{Recorder, Token};
