//! The search: per-key partitioning, then Wing & Gong's depth-first search over
//! linearization orders with porcupine's memoization, under a [`Budget`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::error::LincheckError;
use crate::history::{History, Input, Operation, Output};
use crate::model::{step_all, CasAnswer, KeyState, StateSet, Step, ValueId};

/// How much work the search may do before it gives up. The step limit makes a
/// result reproducible; the time limit bounds a run on a slow machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (one candidate tried or one backtrack) over all keys.
    pub max_steps: u64,
    /// Wall-clock limit over all keys; `None` for none.
    pub max_time: Option<Duration>,
}

impl Default for Budget {
    /// Enough for histories of tens of thousands of operations with the
    /// concurrency of tens of clients.
    fn default() -> Self {
        Budget {
            max_steps: 20_000_000,
            max_time: Some(Duration::from_secs(120)),
        }
    }
}

impl Budget {
    /// A budget of `max_steps` steps and no time limit.
    pub fn steps(max_steps: u64) -> Self {
        Budget {
            max_steps,
            max_time: None,
        }
    }
}

/// The verdict on a history. Callers must treat [`CheckResult::GaveUp`] as a
/// failure: nothing was proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's operations have a linearization.
    Ok,
    /// The history is not linearizable; the violation names the operations involved.
    Violation(Violation),
    /// The budget ran out while searching `key`'s operations.
    GaveUp { key: String, steps: u64 },
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }
}

/// Why a history is not linearizable. Operations are named by their index in
/// [`History::ops`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub kind: ViolationKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViolationKind {
    /// No order of the key's operations fits both real time and the model. The
    /// longest order the search found is `longest_prefix`; after it, none of `next`
    /// (the operations real time allows next) fits the key's state.
    NoLinearization {
        longest_prefix: Vec<usize>,
        next: Vec<usize>,
    },
    /// `earlier` answered (with a revision it wrote or observed) before `later`
    /// was called, yet `later`'s write took a revision not above it: revisions are
    /// log indexes, so they grow with real time across all keys.
    RevisionOrder { earlier: usize, later: usize },
}

impl Violation {
    /// A human-readable account, quoting the operations from `history` (the one
    /// that was checked).
    pub fn describe(&self, history: &History) -> String {
        const SHOWN: usize = 10;
        let mut text = String::new();
        let line = |text: &mut String, index: usize| {
            if let Some(op) = history.ops.get(index) {
                let _ = writeln!(text, "  #{index} {}", OpDisplay(op));
            }
        };
        match &self.kind {
            ViolationKind::NoLinearization {
                longest_prefix,
                next,
            } => {
                let _ = writeln!(text, "key {:?}: no linearization exists", self.key);
                let skipped = longest_prefix.len().saturating_sub(SHOWN);
                let _ = writeln!(
                    text,
                    "longest linearizable prefix ({} ops{}):",
                    longest_prefix.len(),
                    if skipped > 0 { ", last ones shown" } else { "" }
                );
                for &index in &longest_prefix[skipped..] {
                    line(&mut text, index);
                }
                let _ = writeln!(text, "none of these can come next:");
                for &index in next {
                    line(&mut text, index);
                }
            }
            ViolationKind::RevisionOrder { earlier, later } => {
                let _ = writeln!(
                    text,
                    "key {:?}: a write took a revision not above one answered before it was called",
                    self.key
                );
                line(&mut text, *earlier);
                line(&mut text, *later);
            }
        }
        text
    }
}

struct OpDisplay<'a>(&'a Operation);

impl std::fmt::Display for OpDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = self.0;
        write!(f, "client {} [{}..", op.client, op.call)?;
        match op.ret {
            Some(ret) => write!(f, "{ret}] ")?,
            None => write!(f, "pending] ")?,
        }
        match &op.input {
            Input::Put { key, value } => write!(f, "put {key}={value:?}")?,
            Input::Get { key } => write!(f, "get {key}")?,
            Input::Delete { key } => write!(f, "delete {key}")?,
            Input::Cas {
                key,
                expected_revision,
                value,
            } => write!(f, "put {key}={value:?} if_revision={expected_revision}")?,
        }
        match &op.output {
            None => Ok(()),
            Some(Output::Put { revision }) | Some(Output::CasOk { revision }) => {
                write!(f, " -> revision {revision}")
            }
            Some(Output::Found {
                value,
                mod_revision,
            }) => write!(f, " -> {value:?} mod_revision {mod_revision}"),
            Some(Output::NotFound) => write!(f, " -> not found"),
            Some(Output::Deleted { deleted, revision }) => {
                write!(f, " -> deleted={deleted} revision {revision}")
            }
            Some(Output::Mismatch { current }) => write!(f, " -> mismatch, current {current}"),
        }
    }
}

/// Check `history` for linearizability against rota's KV model.
///
/// Errors only when the history is malformed; see [`History::validate`].
pub fn check(history: &History, budget: Budget) -> Result<CheckResult, LincheckError> {
    history.validate()?;
    if let Some(violation) = revision_order(history) {
        warn!(key = %violation.key, "revision order violated");
        return Ok(CheckResult::Violation(violation));
    }
    let mut partitions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.ops.iter().enumerate() {
        // A read that never answered changes nothing and shows nothing.
        if op.is_pending() && matches!(op.input, Input::Get { .. }) {
            continue;
        }
        partitions.entry(op.input.key()).or_default().push(index);
    }
    let mut meter = Meter::new(budget);
    for (key, indexes) in &partitions {
        let before = meter.steps;
        let outcome = search_key(history, indexes, &mut meter);
        debug!(
            key,
            ops = indexes.len(),
            steps = meter.steps - before,
            "key searched"
        );
        match outcome {
            Outcome::Linearizable => {}
            Outcome::Stuck { prefix, next } => {
                warn!(key, ops = indexes.len(), "no linearization exists");
                return Ok(CheckResult::Violation(Violation {
                    key: (*key).to_string(),
                    kind: ViolationKind::NoLinearization {
                        longest_prefix: prefix,
                        next,
                    },
                }));
            }
            Outcome::OutOfBudget => {
                warn!(key, steps = meter.steps, "search budget exhausted");
                return Ok(CheckResult::GaveUp {
                    key: (*key).to_string(),
                    steps: meter.steps,
                });
            }
        }
    }
    info!(
        ops = history.ops.len(),
        keys = partitions.len(),
        steps = meter.steps,
        "history is linearizable"
    );
    Ok(CheckResult::Ok)
}

/// Searches one key's operations (`indexes`).
///
/// Every unanswered write multiplies the search: it may have taken effect at any
/// point after its call, or never. Most never show: no read returns the value
/// they wrote. So the key is first searched as if those unseen writes never took
/// effect, which is one of the orders they allow, so a linearization found that
/// way is one of the whole history. Only when none is found is everything
/// searched (an unseen write may still be needed: a delete that found the key,
/// or a CAS that matched its revision). A violation is thus only ever reported
/// by the full search.
fn search_key(history: &History, indexes: &[usize], meter: &mut Meter) -> Outcome {
    let read: HashSet<&str> = indexes
        .iter()
        .filter_map(|&i| match history.ops.get(i)?.output.as_ref()? {
            Output::Found { value, .. } => Some(value.as_str()),
            _ => None,
        })
        .collect();
    let unseen = |i: usize| {
        history.ops.get(i).is_some_and(|op| {
            op.is_pending()
                && match &op.input {
                    Input::Put { value, .. } | Input::Cas { value, .. } => {
                        !read.contains(value.as_str())
                    }
                    Input::Get { .. } | Input::Delete { .. } => false,
                }
        })
    };
    let seen: Vec<usize> = indexes.iter().copied().filter(|&i| !unseen(i)).collect();
    if seen.len() < indexes.len() {
        match KeySearch::new(history, &seen).run(meter) {
            Outcome::Linearizable => return Outcome::Linearizable,
            Outcome::OutOfBudget => return Outcome::OutOfBudget,
            Outcome::Stuck { .. } => {}
        }
    }
    KeySearch::new(history, indexes).run(meter)
}

/// The one constraint across keys that per-key search cannot see: a write called
/// after some answer carried revision `r` is appended after `r` was committed, so
/// its own revision is above `r`.
fn revision_order(history: &History) -> Option<Violation> {
    let mut answered: Vec<(u64, u64, usize)> = history
        .ops
        .iter()
        .enumerate()
        .filter_map(|(index, op)| {
            let ret = op.ret?;
            let revision = op.output.as_ref()?.observed_revision()?;
            Some((ret, revision, index))
        })
        .collect();
    answered.sort_unstable();
    // highest[i]: the highest revision answered by answered[..=i], and by whom.
    let mut highest: Vec<(u64, usize)> = Vec::with_capacity(answered.len());
    for &(_, revision, index) in &answered {
        let best = match highest.last() {
            Some(&(top, by)) if top >= revision => (top, by),
            _ => (revision, index),
        };
        highest.push(best);
    }
    for (later, op) in history.ops.iter().enumerate() {
        let Some(revision) = op.output.as_ref().and_then(Output::write_revision) else {
            continue;
        };
        // Strictly before the call: equal timestamps count as concurrent.
        let before = answered.partition_point(|&(ret, _, _)| ret < op.call);
        let Some(&(top, earlier)) = before.checked_sub(1).and_then(|i| highest.get(i)) else {
            continue;
        };
        if top >= revision {
            return Some(Violation {
                key: op.input.key().to_string(),
                kind: ViolationKind::RevisionOrder { earlier, later },
            });
        }
    }
    None
}

struct Meter {
    budget: Budget,
    started: Instant,
    steps: u64,
}

impl Meter {
    fn new(budget: Budget) -> Self {
        Meter {
            budget,
            started: Instant::now(),
            steps: 0,
        }
    }

    /// Count one step; false once the budget is spent.
    fn tick(&mut self) -> bool {
        self.steps += 1;
        if self.steps > self.budget.max_steps {
            return false;
        }
        // Reading the clock every step would cost more than the step itself.
        if self.steps & 1023 == 0 {
            if let Some(limit) = self.budget.max_time {
                return self.started.elapsed() <= limit;
            }
        }
        true
    }
}

enum Outcome {
    Linearizable,
    Stuck {
        prefix: Vec<usize>,
        next: Vec<usize>,
    },
    OutOfBudget,
}

const NIL: usize = usize::MAX;

/// One operation of the key being searched.
struct KeyOp {
    /// Its index in the history.
    index: usize,
    call: u128,
    /// `u128::MAX` when pending: after every real time.
    ret: u128,
    step: Step,
}

/// One key's operations as porcupine lays them out: call and return events sorted
/// by time in a doubly linked list, from which an operation is lifted (both its
/// events) while it is part of the candidate linearization.
struct KeySearch {
    ops: Vec<KeyOp>,
    /// Per event: its operation, and for a call the event of its return.
    event_op: Vec<usize>,
    call_match: Vec<Option<usize>>,
    /// The list; index `event_op.len()` is the head sentinel.
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl KeySearch {
    fn new(history: &History, indexes: &[usize]) -> Self {
        let mut values: HashMap<&str, ValueId> = HashMap::new();
        let mut ops = Vec::with_capacity(indexes.len());
        for &index in indexes {
            let Some(op) = history.ops.get(index) else {
                continue;
            };
            let step = match (&op.input, &op.output) {
                (Input::Put { value, .. }, output) => Step::Put {
                    value: intern_value(&mut values, value),
                    revision: output.as_ref().and_then(Output::write_revision),
                },
                (
                    Input::Get { .. },
                    Some(Output::Found {
                        value,
                        mod_revision,
                    }),
                ) => Step::GetFound {
                    value: intern_value(&mut values, value),
                    mod_revision: *mod_revision,
                },
                (Input::Get { .. }, _) => Step::GetNotFound,
                (Input::Delete { .. }, Some(Output::Deleted { deleted, revision })) => {
                    Step::Delete {
                        answer: Some((*deleted, *revision)),
                    }
                }
                (Input::Delete { .. }, _) => Step::Delete { answer: None },
                (
                    Input::Cas {
                        expected_revision,
                        value,
                        ..
                    },
                    output,
                ) => Step::Cas {
                    expected: *expected_revision,
                    value: intern_value(&mut values, value),
                    answer: match output {
                        Some(Output::CasOk { revision }) => Some(CasAnswer::Ok {
                            revision: *revision,
                        }),
                        Some(Output::Mismatch { current }) => {
                            Some(CasAnswer::Mismatch { current: *current })
                        }
                        _ => None,
                    },
                },
            };
            let ret = op.ret.map_or(u128::MAX, u128::from);
            ops.push(KeyOp {
                index,
                call: u128::from(op.call),
                ret,
                step,
            });
        }

        // Sort events by time, calls before returns at equal times, so that
        // operations whose bounds touch count as concurrent.
        let mut events: Vec<(u128, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (op, key_op) in ops.iter().enumerate() {
            events.push((key_op.call, false, op));
            events.push((key_op.ret, true, op));
        }
        events.sort_unstable();
        let count = events.len();
        let mut event_op = Vec::with_capacity(count);
        let mut call_match = vec![None; count];
        let mut call_event = vec![NIL; ops.len()];
        for (position, &(_, is_return, op)) in events.iter().enumerate() {
            event_op.push(op);
            if is_return {
                if let Some(call) = call_event.get(op).copied().filter(|c| *c != NIL) {
                    call_match[call] = Some(position);
                }
            } else {
                call_event[op] = position;
            }
        }
        let head = count;
        // Events in sorted order, the head sentinel before the first.
        let mut next: Vec<usize> = (1..=count).collect();
        if let Some(last) = next.last_mut() {
            *last = NIL;
        }
        next.push(if count == 0 { NIL } else { 0 });
        let mut prev: Vec<usize> = (0..count)
            .map(|e| e.checked_sub(1).unwrap_or(head))
            .collect();
        prev.push(NIL);
        KeySearch {
            ops,
            event_op,
            call_match,
            next,
            prev,
        }
    }

    fn unlink(&mut self, event: usize) {
        let (p, n) = (self.prev[event], self.next[event]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Undo `unlink`; valid because lifts are undone in reverse order.
    fn relink(&mut self, event: usize) {
        let (p, n) = (self.prev[event], self.next[event]);
        self.next[p] = event;
        if n != NIL {
            self.prev[n] = event;
        }
    }

    fn lift(&mut self, call: usize, ret: usize) {
        self.unlink(call);
        self.unlink(ret);
    }

    fn unlift(&mut self, call: usize, ret: usize) {
        self.relink(ret);
        self.relink(call);
    }

    fn run(mut self, meter: &mut Meter) -> Outcome {
        let head = self.event_op.len();
        let mut linearized = Bitset::new(self.ops.len());
        let mut states: StateSet = vec![KeyState::ABSENT];
        // The candidate linearization: each lifted call with the states before it.
        let mut calls: Vec<(usize, StateSet)> = Vec::new();
        let mut seen: HashSet<(Bitset, StateSet)> = HashSet::new();
        let mut longest: Vec<usize> = Vec::new();
        let mut entry = self.next[head];
        while self.next[head] != NIL {
            if !meter.tick() {
                return Outcome::OutOfBudget;
            }
            let ret = self.call_match.get(entry).copied().flatten();
            if let Some(ret) = ret {
                let op = self.event_op[entry];
                if let Some(after) = step_all(&states, self.ops[op].step) {
                    let mut with_op = linearized.clone();
                    with_op.set(op);
                    if seen.insert((with_op, after.clone())) {
                        calls.push((entry, std::mem::replace(&mut states, after)));
                        linearized.set(op);
                        self.lift(entry, ret);
                        if calls.len() > longest.len() {
                            longest = calls.iter().map(|(c, _)| self.event_op[*c]).collect();
                        }
                        entry = self.next[head];
                        continue;
                    }
                }
                entry = self.next[entry];
            } else {
                // A return (or the list's end): its operation cannot be put off any
                // longer, so the last choice was wrong.
                let Some((call, before)) = calls.pop() else {
                    return self.stuck(&longest);
                };
                let op = self.event_op[call];
                states = before;
                linearized.clear(op);
                if let Some(ret) = self.call_match[call] {
                    self.unlift(call, ret);
                }
                entry = self.next[call];
            }
        }
        Outcome::Linearizable
    }

    /// The violation's explanation: the longest prefix, and the operations real
    /// time allows right after it (those called before any remaining one returned).
    fn stuck(&self, longest: &[usize]) -> Outcome {
        let mut done = vec![false; self.ops.len()];
        for &op in longest {
            done[op] = true;
        }
        let first_return = self
            .ops
            .iter()
            .zip(&done)
            .filter(|(_, done)| !**done)
            .map(|(op, _)| op.ret)
            .min()
            .unwrap_or(u128::MAX);
        let next = self
            .ops
            .iter()
            .zip(&done)
            .filter(|(op, done)| !**done && op.call <= first_return)
            .map(|(op, _)| op.index)
            .collect();
        Outcome::Stuck {
            prefix: longest.iter().map(|&op| self.ops[op].index).collect(),
            next,
        }
    }
}

fn intern_value<'a>(values: &mut HashMap<&'a str, ValueId>, value: &'a str) -> ValueId {
    let fresh = values.len();
    *values.entry(value).or_insert(fresh)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bitset(Box<[u64]>);

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset(vec![0; bits.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, bit: usize) {
        if let Some(word) = self.0.get_mut(bit / 64) {
            *word |= 1 << (bit % 64);
        }
    }

    fn clear(&mut self, bit: usize) {
        if let Some(word) = self.0.get_mut(bit / 64) {
            *word &= !(1 << (bit % 64));
        }
    }
}
