//! The [`Sink`] handle and its writer task: a bounded buffer that callers fill
//! without waiting, emptied in batches by one task that retries what may succeed
//! later and drops (and counts) what cannot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rota_core::sink::SinkSpec;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::influxdb::InfluxTarget;
use crate::{Error, Point};

/// How long [`Sink::shutdown`] may spend writing what is still buffered.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The waits between attempts of one batch: `initial`, doubling up to `max`, for
/// at most `attempts` attempts in all (the first included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Backoff {
    /// 100 ms, 200 ms, 400 ms ... capped at 5 s; 8 attempts (about 11 s of waits).
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempts: 8,
        }
    }
}

/// What a sink has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Points the server accepted.
    pub written: u64,
    /// Points given up: refused by [`Point::validate`], over the buffer's
    /// capacity, refused by the server (4xx), out of attempts, or still buffered
    /// when the shutdown deadline passed.
    pub dropped: u64,
    /// Repeated requests (not counting the first of each batch).
    pub retries: u64,
    /// Points waiting in the buffer now.
    pub buffered: u64,
    /// Why the last failed request failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    /// Write what is buffered until it is empty or the instant passes, then stop.
    Draining(Instant),
    /// Stop now (the handle was dropped without a shutdown).
    Abandoned,
}

struct Shared {
    name: String,
    buffer: Mutex<VecDeque<Point>>,
    capacity: usize,
    batch_size: usize,
    /// Told when the buffer holds a whole batch.
    batch_ready: Notify,
    written: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    /// Points taken from the buffer whose fate is not known yet.
    in_flight: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn take(&self, n: usize) -> Vec<Point> {
        let mut buffer = self.buffer.lock().expect("sink buffer lock");
        let n = n.min(buffer.len());
        let batch: Vec<Point> = buffer.drain(..n).collect();
        self.in_flight.store(batch.len() as u64, Ordering::SeqCst);
        batch
    }

    fn len(&self) -> usize {
        self.buffer.lock().expect("sink buffer lock").len()
    }

    fn settle(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::SeqCst);
        self.in_flight.store(0, Ordering::SeqCst);
    }

    fn failed(&self, error: &Error) {
        *self.last_error.lock().expect("sink error lock") = Some(chain(error));
    }
}

/// A running sink: [`Sink::send`] queues points, a writer task writes them.
pub struct Sink {
    shared: Arc<Shared>,
    mode: watch::Sender<Mode>,
    task: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts the writer task of `spec` (which must have passed
    /// [`SinkSpec::validate`]) on the current tokio runtime.
    pub fn start(name: impl Into<String>, spec: SinkSpec, client: reqwest::Client) -> Sink {
        Self::start_with(name, spec, client, Backoff::default())
    }

    /// [`Sink::start`] with another retry schedule.
    pub fn start_with(
        name: impl Into<String>,
        spec: SinkSpec,
        client: reqwest::Client,
        backoff: Backoff,
    ) -> Sink {
        let batching = spec.batching();
        let shared = Arc::new(Shared {
            name: name.into(),
            buffer: Mutex::new(VecDeque::new()),
            capacity: batching.buffer_points.max(1) as usize,
            batch_size: batching.batch_size.max(1) as usize,
            batch_ready: Notify::new(),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let target = match &spec {
            SinkSpec::InfluxDb(influx) => InfluxTarget::new(influx),
        };
        let (mode, mode_rx) = watch::channel(Mode::Running);
        let writer = Writer {
            shared: shared.clone(),
            target,
            client,
            backoff,
            flush_interval: batching.flush_interval.0.max(Duration::from_millis(1)),
            mode: mode_rx,
        };
        let task = tokio::spawn(writer.run());
        Sink {
            shared,
            mode,
            task: Some(task),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Queues points without waiting. Points [`Point::validate`] refuses, and
    /// those that do not fit in the buffer (the newest), are dropped and counted.
    /// Returns how many were queued.
    pub fn send(&self, points: impl IntoIterator<Item = Point>) -> usize {
        let shared = &self.shared;
        let (mut queued, mut invalid, mut overflow) = (0usize, 0u64, 0u64);
        let ready = {
            let mut buffer = shared.buffer.lock().expect("sink buffer lock");
            for point in points {
                if let Err(e) = point.validate() {
                    invalid += 1;
                    tracing::warn!(sink = %shared.name, error = %e, "point dropped");
                    shared.failed(&e);
                } else if buffer.len() >= shared.capacity {
                    overflow += 1;
                } else {
                    buffer.push_back(point);
                    queued += 1;
                }
            }
            buffer.len() >= shared.batch_size
        };
        if overflow > 0 {
            tracing::warn!(
                sink = %shared.name,
                dropped = overflow,
                capacity = shared.capacity,
                "sink buffer full; newest points dropped"
            );
        }
        shared
            .dropped
            .fetch_add(invalid + overflow, Ordering::SeqCst);
        if ready {
            shared.batch_ready.notify_one();
        }
        queued
    }

    pub fn stats(&self) -> SinkStats {
        let s = &self.shared;
        SinkStats {
            written: s.written.load(Ordering::SeqCst),
            dropped: s.dropped.load(Ordering::SeqCst),
            retries: s.retries.load(Ordering::SeqCst),
            buffered: s.len() as u64,
            last_error: s.last_error.lock().expect("sink error lock").clone(),
        }
    }

    /// Writes what is buffered (within [`SHUTDOWN_DEADLINE`]), stops the writer
    /// and returns the final counts.
    pub async fn shutdown(self) -> SinkStats {
        self.shutdown_within(SHUTDOWN_DEADLINE).await
    }

    /// Writes what is buffered until it is written or `deadline` has passed;
    /// what is left then is dropped and counted.
    pub async fn shutdown_within(mut self, deadline: Duration) -> SinkStats {
        let until = Instant::now() + deadline;
        self.mode.send_replace(Mode::Draining(until));
        if let Some(task) = self.task.take() {
            // The writer stops by itself at the deadline; the grace covers a
            // request that does not honour its timeout.
            let abort = task.abort_handle();
            if tokio::time::timeout_at(until + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
                tracing::warn!(sink = %self.shared.name, "sink writer stopped at its deadline");
            }
        }
        let shared = &self.shared;
        let left = shared
            .buffer
            .lock()
            .expect("sink buffer lock")
            .drain(..)
            .count() as u64
            + shared.in_flight.swap(0, Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(sink = %shared.name, dropped = left, "points not written before the shutdown deadline");
            shared.dropped.fetch_add(left, Ordering::SeqCst);
        }
        self.stats()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.mode.send_replace(Mode::Abandoned);
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    target: Result<InfluxTarget, Error>,
    client: reqwest::Client,
    backoff: Backoff,
    flush_interval: Duration,
    mode: watch::Receiver<Mode>,
}

impl Writer {
    fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    async fn run(mut self) {
        let batch_size = self.shared.batch_size;
        let mut next_flush = Instant::now() + self.flush_interval;
        loop {
            match self.mode() {
                Mode::Abandoned => return,
                Mode::Draining(deadline) => {
                    while Instant::now() < deadline && self.shared.len() > 0 {
                        let batch = self.shared.take(batch_size);
                        self.write(batch).await;
                    }
                    return;
                }
                Mode::Running => {}
            }
            let tick = if self.shared.len() >= batch_size {
                false
            } else {
                tokio::select! {
                    _ = self.shared.batch_ready.notified() => false,
                    _ = tokio::time::sleep_until(next_flush) => true,
                    changed = self.mode.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            };
            if tick {
                // Everything buffered now goes out, in as many batches as it takes.
                let mut due = self.shared.len();
                while due > 0 && self.mode() == Mode::Running {
                    let batch = self.shared.take(batch_size.min(due));
                    due = due.saturating_sub(batch.len());
                    self.write(batch).await;
                }
                next_flush = Instant::now() + self.flush_interval;
            } else if self.shared.len() >= batch_size {
                let batch = self.shared.take(batch_size);
                self.write(batch).await;
            }
        }
    }

    /// The shutdown deadline, once a shutdown has begun.
    fn deadline(&self) -> Option<Instant> {
        match self.mode() {
            Mode::Draining(deadline) => Some(deadline),
            Mode::Running | Mode::Abandoned => None,
        }
    }

    /// Writes one batch with retries; counts it as written or dropped. A shutdown
    /// that begins meanwhile bounds the retries by its deadline.
    async fn write(&mut self, batch: Vec<Point>) {
        if batch.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let n = batch.len();
        let target = match &self.target {
            Ok(target) => target.clone(),
            Err(e) => {
                tracing::error!(sink = %shared.name, error = %chain(e), points = n, "points dropped");
                shared.failed(e);
                shared.settle(&shared.dropped, n);
                return;
            }
        };
        let body: String = batch.iter().map(|p| p.line() + "\n").collect();
        let mut delay = self.backoff.initial;
        let mut attempt = 1;
        loop {
            let timeout = self
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let error = match target.write(&self.client, body.clone(), timeout).await {
                Ok(()) => {
                    tracing::debug!(sink = %shared.name, points = n, "batch written");
                    shared.settle(&shared.written, n);
                    return;
                }
                Err(e) => e,
            };
            shared.failed(&error);
            let retry_at = Instant::now() + delay;
            let in_time = |mode: Mode| match mode {
                Mode::Running => true,
                Mode::Draining(deadline) => retry_at < deadline,
                Mode::Abandoned => false,
            };
            if !(error.is_retryable() && attempt < self.backoff.attempts && in_time(self.mode())) {
                tracing::error!(
                    sink = %shared.name,
                    url = %target.url(),
                    error = %chain(&error),
                    points = n,
                    attempts = attempt,
                    "batch dropped"
                );
                shared.settle(&shared.dropped, n);
                return;
            }
            tracing::warn!(
                sink = %shared.name,
                error = %chain(&error),
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "write failed; retrying"
            );
            shared.retries.fetch_add(1, Ordering::SeqCst);
            if self.mode() == Mode::Running {
                // A shutdown or a drop during the wait is looked at when it comes.
                let changed = tokio::select! {
                    _ = tokio::time::sleep_until(retry_at) => None,
                    mode = self.mode.wait_for(|m| *m != Mode::Running) => {
                        Some(mode.map(|m| *m).unwrap_or(Mode::Abandoned))
                    }
                };
                if let Some(mode) = changed {
                    if !in_time(mode) {
                        tracing::warn!(sink = %shared.name, points = n, "batch dropped: the sink is stopping");
                        shared.settle(&shared.dropped, n);
                        return;
                    }
                    tokio::time::sleep_until(retry_at).await;
                }
            } else {
                tokio::time::sleep_until(retry_at).await;
            }
            delay = (delay * 2).min(self.backoff.max);
            attempt += 1;
        }
    }
}

/// An error and its causes on one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    rota_core::error::chain(err)
}
