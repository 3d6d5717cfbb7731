//! The output of one attempt, written by its executor and read, possibly while the
//! attempt still runs, by any number of followers (HTTP clients streaming it).
//!
//! The buffer keeps a bounded prefix of what was written: bytes beyond the limit are
//! dropped and the buffer remembers that it was truncated. Once closed it accepts
//! nothing more, which tells followers they have seen the end.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

/// Output of one attempt, shared between the executor writing it and readers
/// following it. Cloning is cheap: clones share one buffer.
#[derive(Debug, Clone)]
pub struct OutputBuffer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Woken (all waiters) whenever bytes are kept or the buffer is closed.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    data: Vec<u8>,
    max_bytes: usize,
    truncated: bool,
    closed: bool,
}

impl OutputBuffer {
    /// A buffer keeping at most `max_bytes`; what comes beyond is dropped and
    /// the buffer marked truncated.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    data: Vec::new(),
                    // A limit beyond the address space cannot be reached anyway.
                    max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
                    truncated: false,
                    closed: false,
                }),
                changed: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, but a poisoned buffer is still
        // consistent (every update is a single extend), so keep serving it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends bytes (cut at the limit). Ignored once the buffer is closed.
    pub fn push(&self, bytes: &[u8]) {
        self.append(bytes, false);
    }

    /// Appends bytes starting on a line of their own: a `\n` goes first when what
    /// was kept so far ends in the middle of a line. Writers sharing one buffer (a
    /// workflow job's steps and services) use it so that their lines stay whole
    /// whatever the others left unfinished.
    pub(crate) fn push_line(&self, bytes: &[u8]) {
        self.append(bytes, true);
    }

    fn append(&self, bytes: &[u8], own_line: bool) {
        if bytes.is_empty() {
            return;
        }
        let grew = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            let before = state.data.len();
            // Looked at under the same lock as the append, so no other writer can
            // slip a partial line in between.
            let mid_line = own_line && state.data.last().is_some_and(|last| *last != b'\n');
            for part in [if mid_line { &b"\n"[..] } else { &[] }, bytes] {
                let room = state.max_bytes.saturating_sub(state.data.len());
                let kept = part.len().min(room);
                state.data.extend_from_slice(&part[..kept]);
                if kept < part.len() {
                    state.truncated = true;
                }
            }
            state.data.len() > before
        };
        if grew {
            self.inner.changed.notify_waiters();
        }
    }

    /// Marks the output complete: followers see the end.
    pub fn close(&self) {
        let was_closed = std::mem::replace(&mut self.lock().closed, true);
        if !was_closed {
            self.inner.changed.notify_waiters();
        }
    }

    /// Everything kept so far, and whether anything was dropped.
    pub fn snapshot(&self) -> (Bytes, bool) {
        let state = self.lock();
        (Bytes::copy_from_slice(&state.data), state.truncated)
    }

    /// Bytes kept from `offset` on, and whether the output is complete; waits until
    /// there is something new or the output is closed when there is nothing yet.
    ///
    /// A follower calls it in a loop, advancing `offset` by the length of what it
    /// got, until the flag says the output is complete.
    pub async fn read_from(&self, offset: usize) -> (Bytes, bool) {
        loop {
            // Register interest before looking at the state: a push or close that
            // happens between the look and the await still wakes this waiter.
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if state.data.len() > offset || state.closed {
                    let tail = state.data.get(offset..).unwrap_or_default();
                    return (Bytes::copy_from_slice(tail), state.closed);
                }
            }
            notified.await;
        }
    }

    /// Whether the output is complete.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether bytes beyond the limit were dropped.
    pub fn is_truncated(&self) -> bool {
        self.lock().truncated
    }

    /// Number of bytes kept.
    pub fn len(&self) -> usize {
        self.lock().data.len()
    }

    /// Whether no byte was kept (yet).
    pub fn is_empty(&self) -> bool {
        self.lock().data.is_empty()
    }

    /// The most bytes this buffer keeps.
    pub fn max_bytes(&self) -> usize {
        self.lock().max_bytes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::poll;

    use super::*;

    #[test]
    fn keeps_everything_under_the_limit() {
        let out = OutputBuffer::new(10);
        out.push(b"abc");
        out.push(b"");
        out.push(b"def");
        assert_eq!(out.snapshot(), (Bytes::from_static(b"abcdef"), false));
        assert_eq!(out.len(), 6);
        assert!(!out.is_truncated());
        assert!(!out.is_empty());
    }

    #[test]
    fn cuts_at_the_limit_and_marks_truncated() {
        let out = OutputBuffer::new(5);
        out.push(b"abc");
        out.push(b"defg");
        out.push(b"h");
        assert_eq!(out.snapshot(), (Bytes::from_static(b"abcde"), true));
        assert!(out.is_truncated());
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn exactly_full_is_not_truncated() {
        let out = OutputBuffer::new(3);
        out.push(b"abc");
        assert_eq!(out.snapshot(), (Bytes::from_static(b"abc"), false));
        out.push(b"d");
        assert!(out.is_truncated());
    }

    #[test]
    fn push_line_starts_a_new_line_only_when_needed() {
        let out = OutputBuffer::new(100);
        out.push_line(b"first\n");
        out.push(b"partial");
        out.push_line(b"second\n");
        out.push_line(b"third\n");
        assert_eq!(
            out.snapshot(),
            (
                Bytes::from_static(b"first\npartial\nsecond\nthird\n"),
                false
            )
        );
    }

    #[test]
    fn push_line_respects_the_limit() {
        let out = OutputBuffer::new(4);
        out.push(b"abcd");
        out.push_line(b"x\n");
        assert_eq!(out.snapshot(), (Bytes::from_static(b"abcd"), true));
    }

    #[test]
    fn zero_limit_keeps_nothing() {
        let out = OutputBuffer::new(0);
        out.push(b"x");
        assert_eq!(out.snapshot(), (Bytes::new(), true));
        assert!(out.is_empty());
    }

    #[test]
    fn push_after_close_is_ignored() {
        let out = OutputBuffer::new(100);
        out.push(b"a");
        out.close();
        out.push(b"b");
        assert!(out.is_closed());
        assert_eq!(out.snapshot(), (Bytes::from_static(b"a"), false));
    }

    #[test]
    fn clones_share_the_buffer() {
        let out = OutputBuffer::new(100);
        let reader = out.clone();
        out.push(b"shared");
        out.close();
        assert_eq!(reader.snapshot().0, Bytes::from_static(b"shared"));
        assert!(reader.is_closed());
    }

    #[tokio::test]
    async fn read_from_returns_at_once_when_bytes_are_there() {
        let out = OutputBuffer::new(100);
        out.push(b"hello");
        assert_eq!(
            out.read_from(0).await,
            (Bytes::from_static(b"hello"), false)
        );
        assert_eq!(out.read_from(2).await, (Bytes::from_static(b"llo"), false));
    }

    #[tokio::test]
    async fn read_from_returns_at_once_when_closed() {
        let out = OutputBuffer::new(100);
        out.push(b"hi");
        out.close();
        assert_eq!(out.read_from(2).await, (Bytes::new(), true));
        assert_eq!(out.read_from(99).await, (Bytes::new(), true));
        assert_eq!(out.read_from(1).await, (Bytes::from_static(b"i"), true));
    }

    #[tokio::test]
    async fn read_from_waits_for_a_push() {
        let out = OutputBuffer::new(100);
        out.push(b"ab");
        let read = out.read_from(2);
        tokio::pin!(read);
        // Nothing past offset 2 yet: the reader waits.
        assert!(poll!(read.as_mut()).is_pending());
        out.push(b"cd");
        assert_eq!(read.await, (Bytes::from_static(b"cd"), false));
    }

    #[tokio::test]
    async fn read_from_waits_for_close() {
        let out = OutputBuffer::new(100);
        let read = out.read_from(0);
        tokio::pin!(read);
        assert!(poll!(read.as_mut()).is_pending());
        out.close();
        assert_eq!(read.await, (Bytes::new(), true));
    }

    #[tokio::test]
    async fn read_from_is_not_ended_by_bytes_it_cannot_see() {
        // A push that is entirely dropped (buffer full) must not end the wait with
        // an empty, not-closed answer.
        let out = OutputBuffer::new(2);
        out.push(b"ab");
        let read = out.read_from(2);
        tokio::pin!(read);
        assert!(poll!(read.as_mut()).is_pending());
        out.push(b"cd");
        assert!(poll!(read.as_mut()).is_pending());
        out.close();
        assert_eq!(read.await, (Bytes::new(), true));
    }

    /// Many writers and followers racing on a multi-threaded runtime: every follower
    /// sees every byte exactly once and the end, which fails if a wake-up is lost
    /// (the follower would hang until the timeout below).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_never_miss_a_wake_up() {
        const PUSHES: usize = 2_000;
        let out = OutputBuffer::new(u64::MAX);
        let followers: Vec<_> = (0..4)
            .map(|_| {
                let out = out.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        let (chunk, closed) = out.read_from(seen.len()).await;
                        seen.extend_from_slice(&chunk);
                        if closed {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        let writer = {
            let out = out.clone();
            tokio::spawn(async move {
                for i in 0..PUSHES {
                    out.push(&[(i % 251) as u8]);
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                out.close();
            })
        };
        writer.await.expect("writer");
        let expected: Vec<u8> = (0..PUSHES).map(|i| (i % 251) as u8).collect();
        for follower in followers {
            // A generous bound only so that a regression fails instead of hanging.
            let seen = tokio::time::timeout(Duration::from_secs(60), follower)
                .await
                .expect("follower finished")
                .expect("follower task");
            assert_eq!(seen, expected);
        }
    }
}
