//! The sequential specification of one key, as a state machine the search steps
//! through. See the crate documentation for why revisions are modelled as bounds.

/// A value, interned per key so that states are small and cheap to hash.
pub(crate) type ValueId = usize;

/// What one key looks like after some prefix of a linearization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct KeyState {
    /// The current value; `None` when the key does not exist.
    pub value: Option<ValueId>,
    /// The key's `mod_revision` when known (0 while absent). `None` when the write
    /// that produced the value never answered and nothing has observed its
    /// revision yet; it is then at least `last`.
    pub rev: Option<u64>,
    /// A lower bound on the log index of the last write applied to this key: the
    /// next write's revision must be greater.
    pub last: u64,
}

impl KeyState {
    pub(crate) const ABSENT: KeyState = KeyState {
        value: None,
        rev: Some(0),
        last: 0,
    };

    /// This state, if its `mod_revision` can be `r`, with the revision pinned to `r`.
    fn with_revision(self, r: u64) -> Option<KeyState> {
        match (self.value, self.rev) {
            (None, _) => (r == 0).then_some(self),
            (Some(_), Some(known)) => (known == r).then_some(self),
            // The unknown revision is that of the last write, so it is at least
            // `last`; observing it tightens `last` to the exact value.
            (Some(_), None) => (r >= self.last).then_some(KeyState {
                rev: Some(r),
                last: r,
                ..self
            }),
        }
    }

    /// Whether the key's `mod_revision` can differ from `r`.
    fn can_differ_from(self, r: u64) -> bool {
        match (self.value, self.rev) {
            (None, _) => r != 0,
            (Some(_), Some(known)) => known != r,
            (Some(_), None) => true,
        }
    }

    /// After a write of `value` (`None` = delete) at log index `revision`, if that
    /// index can follow this state's last write.
    fn written(self, value: Option<ValueId>, revision: Option<u64>) -> Option<KeyState> {
        let last = match revision {
            Some(r) if r > self.last => r,
            Some(_) => return None,
            None => self.last.saturating_add(1),
        };
        let rev = match value {
            None => Some(0),
            Some(_) => revision,
        };
        Some(KeyState { value, rev, last })
    }
}

/// One operation on one key, with values interned and answers folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Put {
        value: ValueId,
        revision: Option<u64>,
    },
    GetFound {
        value: ValueId,
        mod_revision: u64,
    },
    GetNotFound,
    /// `answer` is `(deleted, revision)`, `None` when pending.
    Delete {
        answer: Option<(bool, u64)>,
    },
    Cas {
        expected: u64,
        value: ValueId,
        answer: Option<CasAnswer>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CasAnswer {
    Ok { revision: u64 },
    Mismatch { current: u64 },
}

impl Step {
    /// The states this operation can lead to from `s`, pushed onto `out`. Nothing
    /// is pushed when the operation's answer is impossible in `s`.
    pub(crate) fn apply(self, s: KeyState, out: &mut Vec<KeyState>) {
        match self {
            Step::Put { value, revision } => out.extend(s.written(Some(value), revision)),
            Step::GetFound {
                value,
                mod_revision,
            } => {
                if s.value == Some(value) {
                    out.extend(s.with_revision(mod_revision));
                }
            }
            Step::GetNotFound => {
                if s.value.is_none() {
                    out.push(s);
                }
            }
            Step::Delete { answer: None } => out.extend(s.written(None, None)),
            Step::Delete {
                answer: Some((deleted, revision)),
            } => {
                if deleted == s.value.is_some() {
                    out.extend(s.written(None, Some(revision)));
                }
            }
            Step::Cas {
                expected,
                value,
                answer: Some(CasAnswer::Ok { revision }),
            } => {
                if let Some(s) = s.with_revision(expected) {
                    out.extend(s.written(Some(value), Some(revision)));
                }
            }
            Step::Cas {
                expected,
                answer: Some(CasAnswer::Mismatch { current }),
                ..
            } => {
                // A refused CAS also takes a log index, but the answer does not
                // say which, so it leaves `last` alone (a weaker, still sound, bound).
                if current != expected {
                    out.extend(s.with_revision(current));
                }
            }
            Step::Cas {
                expected,
                value,
                answer: None,
            } => {
                if let Some(s) = s.with_revision(expected) {
                    out.extend(s.written(Some(value), None));
                }
                // The refused branch forgets that the unknown revision differs
                // from `expected`: a relaxation that can only accept more.
                if s.can_differ_from(expected) {
                    out.push(s);
                }
            }
        }
    }
}

/// The states a key may be in after a prefix of a linearization: a set, because a
/// pending CAS may or may not have matched. Kept sorted and without duplicates so
/// equal sets compare and hash equal.
pub(crate) type StateSet = Vec<KeyState>;

/// The states `step` leads to from any state of `states`; `None` when the
/// operation cannot come next.
pub(crate) fn step_all(states: &[KeyState], step: Step) -> Option<StateSet> {
    let mut next = Vec::with_capacity(states.len());
    for s in states {
        step.apply(*s, &mut next);
    }
    if next.is_empty() {
        return None;
    }
    next.sort_unstable();
    next.dedup();
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(states: &[KeyState], steps: &[Step]) -> Option<StateSet> {
        let mut states = states.to_vec();
        for step in steps {
            states = step_all(&states, *step)?;
        }
        Some(states)
    }

    #[test]
    fn a_put_must_take_a_revision_above_the_last_write() {
        let put = |value, revision| Step::Put {
            value,
            revision: Some(revision),
        };
        assert!(after(&[KeyState::ABSENT], &[put(1, 5), put(2, 6)]).is_some());
        assert!(after(&[KeyState::ABSENT], &[put(1, 5), put(2, 5)]).is_none());
        assert!(after(&[KeyState::ABSENT], &[put(1, 0)]).is_none());
    }

    #[test]
    fn an_unknown_revision_is_pinned_by_the_first_read_that_sees_it() {
        let pending = Step::Put {
            value: 1,
            revision: None,
        };
        let read = |mod_revision| Step::GetFound {
            value: 1,
            mod_revision,
        };
        let base = KeyState {
            value: Some(0),
            rev: Some(4),
            last: 4,
        };
        // The pending put's index is above 4; a read pins it, a second read must agree.
        assert!(after(&[base], &[pending, read(4)]).is_none());
        assert!(after(&[base], &[pending, read(9), read(9)]).is_some());
        assert!(after(&[base], &[pending, read(9), read(10)]).is_none());
        // A later put needs an index above the pinned one.
        let put = |revision| Step::Put {
            value: 2,
            revision: Some(revision),
        };
        assert!(after(&[base], &[pending, read(9), put(9)]).is_none());
        // Unpinned, the pending put took at least 5, so the next write needs 6.
        assert!(after(&[base], &[pending, put(5)]).is_none());
        assert!(after(&[base], &[pending, put(6)]).is_some());
    }

    #[test]
    fn a_pending_cas_on_an_unknown_revision_branches() {
        let unknown = KeyState {
            value: Some(0),
            rev: None,
            last: 3,
        };
        let cas = Step::Cas {
            expected: 7,
            value: 1,
            answer: None,
        };
        let states = after(&[unknown], &[cas]).unwrap();
        assert_eq!(states.len(), 2, "{states:?}");
        assert!(states.contains(&unknown));
        assert!(states.contains(&KeyState {
            value: Some(1),
            rev: None,
            last: 8
        }));
    }

    #[test]
    fn a_cas_matches_only_the_current_revision() {
        let s = KeyState {
            value: Some(0),
            rev: Some(4),
            last: 4,
        };
        let cas = |expected, answer| Step::Cas {
            expected,
            value: 1,
            answer: Some(answer),
        };
        assert!(after(&[s], &[cas(4, CasAnswer::Ok { revision: 5 })]).is_some());
        assert!(after(&[s], &[cas(3, CasAnswer::Ok { revision: 5 })]).is_none());
        assert!(after(&[s], &[cas(3, CasAnswer::Mismatch { current: 4 })]).is_some());
        assert!(after(&[s], &[cas(3, CasAnswer::Mismatch { current: 3 })]).is_none());
        assert!(after(&[s], &[cas(4, CasAnswer::Mismatch { current: 4 })]).is_none());
        let absent = [KeyState::ABSENT];
        assert!(after(&absent, &[cas(0, CasAnswer::Ok { revision: 1 })]).is_some());
        assert!(after(&absent, &[cas(0, CasAnswer::Mismatch { current: 0 })]).is_none());
    }
}
