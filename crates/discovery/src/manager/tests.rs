//! The manager under tokio's paused clock: time moves only when every task waits,
//! so the throttle is checked to the millisecond without sleeping.

use std::collections::BTreeMap;

use tokio::task::JoinHandle;

use super::*;

fn target(address: &str) -> Target {
    Target {
        address: address.to_string(),
        labels: BTreeMap::new(),
    }
}

fn ok(source: &str, addresses: &[&str]) -> Update {
    Update {
        source: source.to_string(),
        targets: Ok(addresses.iter().map(|a| target(a)).collect()),
    }
}

fn err(source: &str, error: &str) -> Update {
    Update {
        source: source.to_string(),
        targets: Err(error.to_string()),
    }
}

fn addresses(state: &TargetSetState) -> Vec<&str> {
    state.targets.iter().map(|t| t.address.as_str()).collect()
}

struct Harness {
    tx: mpsc::Sender<Update>,
    out: mpsc::Receiver<TargetSetState>,
    stats: Arc<ManagerStats>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    started: Instant,
}

impl Harness {
    fn start() -> Harness {
        Harness::start_with(Manager::new("gw", DEFAULT_THROTTLE))
    }

    fn start_with(manager: Manager) -> Harness {
        let stats = manager.stats();
        let (tx, rx) = mpsc::channel(16);
        let (out_tx, out) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(manager.run(rx, out_tx, stop.clone()));
        Harness {
            tx,
            out,
            stats,
            stop,
            task,
            started: Instant::now(),
        }
    }

    async fn send(&self, update: Update) {
        self.tx.send(update).await.unwrap();
    }

    /// The next state and when it came (since the start), or `None` if nothing
    /// comes within a minute.
    async fn next(&mut self) -> Option<(TargetSetState, Duration)> {
        let state = tokio::time::timeout(Duration::from_secs(60), self.out.recv())
            .await
            .ok()??;
        Some((state, self.started.elapsed()))
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_change_goes_out_at_once_and_merges_sources() {
    let mut h = Harness::start();
    h.send(ok("sd/b.json", &["c:1", "a:1"])).await;
    h.send(ok("sd/a.json", &["b:1", "a:1"])).await;
    let (state, at) = h.next().await.unwrap();
    assert_eq!(at, Duration::ZERO);
    // Both updates were queued before the manager looked: one merged state.
    assert_eq!(
        addresses(&state),
        ["a:1", "b:1", "c:1"],
        "sorted, deduplicated"
    );
    assert_eq!(state.error, None);
    assert_eq!(h.stats.updates_received(), 2);
    assert_eq!(h.stats.updates_emitted(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn only_real_changes_are_sent() {
    let mut h = Harness::start();
    h.send(ok("static", &["a:1"])).await;
    assert!(h.next().await.is_some());
    // The same targets again, in another order or from a refresh: nothing to send.
    h.send(ok("static", &["a:1"])).await;
    h.send(ok("other", &["a:1"])).await;
    assert_eq!(
        h.next().await,
        None,
        "a duplicate from another source is no change"
    );
    assert_eq!(h.stats.updates_received(), 3);
    assert_eq!(h.stats.updates_emitted(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn changes_inside_the_window_go_out_at_its_end_as_the_latest_state() {
    let mut h = Harness::start();
    h.send(ok("f", &["a:1"])).await;
    assert_eq!(h.next().await.unwrap().1, Duration::ZERO);

    tokio::time::sleep(Duration::from_secs(1)).await;
    h.send(ok("f", &["a:1", "b:1"])).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.send(ok("f", &["a:1", "b:1", "c:1"])).await;
    let (state, at) = h.next().await.unwrap();
    assert_eq!(at, DEFAULT_THROTTLE, "held until the window ends");
    assert_eq!(
        addresses(&state),
        ["a:1", "b:1", "c:1"],
        "the latest, not the first"
    );
    assert_eq!(h.next().await, None, "the intermediate state is never sent");
    assert_eq!(h.stats.updates_emitted(), 2);

    // A change after a quiet window goes out at once.
    h.send(ok("f", &["c:1"])).await;
    let (state, at) = h.next().await.unwrap();
    assert_eq!(addresses(&state), ["c:1"]);
    assert!(at > DEFAULT_THROTTLE * 2, "{at:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_change_undone_inside_the_window_sends_nothing() {
    let mut h = Harness::start();
    h.send(ok("f", &["a:1"])).await;
    assert!(h.next().await.is_some());
    h.send(ok("f", &["a:1", "b:1"])).await;
    h.send(ok("f", &["a:1"])).await;
    assert_eq!(h.next().await, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_error_keeps_the_source_s_targets_and_shows_until_it_recovers() {
    let mut h = Harness::start();
    h.send(ok("sd/a.json", &["a:1"])).await;
    h.send(ok("sd/b.json", &["b:1"])).await;
    assert!(h.next().await.is_some());

    h.send(err("sd/a.json", "sd/a.json: item 2 is null")).await;
    h.send(err("sd/c.json", "cannot read sd/c.json")).await;
    let (state, _) = h.next().await.unwrap();
    assert_eq!(
        addresses(&state),
        ["a:1", "b:1"],
        "a's last good targets are kept"
    );
    assert_eq!(
        state.error.as_deref(),
        Some("sd/a.json: item 2 is null; cannot read sd/c.json")
    );

    h.send(ok("sd/a.json", &["a:2"])).await;
    h.send(ok("sd/c.json", &[])).await;
    let (state, _) = h.next().await.unwrap();
    assert_eq!(addresses(&state), ["a:2", "b:1"]);
    assert_eq!(state.error, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_empty_source_removes_its_targets() {
    let mut h = Harness::start();
    h.send(ok("sd/a.json", &["a:1"])).await;
    h.send(ok("sd/b.json", &["b:1"])).await;
    assert!(h.next().await.is_some());
    h.send(ok("sd/a.json", &[])).await;
    let (state, _) = h.next().await.unwrap();
    assert_eq!(addresses(&state), ["b:1"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_empty_first_report_is_sent() {
    let mut h = Harness::start();
    h.send(ok("sd/*.json", &[])).await;
    let (state, _) = h.next().await.unwrap();
    assert!(state.targets.is_empty());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pending_changes_are_sent_after_the_providers_hang_up() {
    let mut h = Harness::start();
    h.send(ok("f", &["a:1"])).await;
    assert!(h.next().await.is_some());
    h.send(ok("f", &["b:1"])).await;
    let Harness {
        tx,
        mut out,
        stop,
        task,
        ..
    } = h;
    drop(tx);
    let state = out.recv().await.unwrap();
    assert_eq!(addresses(&state), ["b:1"]);
    assert!(!task.is_finished(), "it runs until stopped");
    stop.cancel();
    task.await.unwrap();
    assert!(out.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn stop_ends_it_even_with_a_change_pending() {
    let mut h = Harness::start();
    h.send(ok("f", &["a:1"])).await;
    assert!(h.next().await.is_some());
    h.send(ok("f", &["b:1"])).await;
    tokio::task::yield_now().await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_does_not_resend_the_committed_state() {
    let committed = TargetSetState {
        // Stored in another order: still the same set.
        targets: vec![target("b:1"), target("a:1")],
        error: None,
    };
    let manager = Manager::new("gw", DEFAULT_THROTTLE).with_last_committed(Some(committed));
    let mut h = Harness::start_with(manager);
    h.send(ok("f", &["a:1"])).await;
    h.send(ok("g", &["b:1"])).await;
    assert_eq!(h.next().await, None, "what it finds is what was committed");
    assert_eq!(h.stats.updates_emitted(), 0);

    // A real change goes out at once: nothing was sent, so no window holds it.
    h.send(ok("g", &["c:1"])).await;
    let (state, at) = h.next().await.unwrap();
    assert_eq!(addresses(&state), ["a:1", "c:1"]);
    assert!(
        at >= Duration::from_secs(60),
        "after the quiet minute: {at:?}"
    );
    assert!(
        at < Duration::from_secs(61),
        "not held by a throttle window: {at:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_sends_what_differs_from_the_committed_state() {
    let committed = TargetSetState {
        targets: vec![target("a:1")],
        error: Some("cannot read sd/b.json".into()),
    };
    let manager = Manager::new("gw", DEFAULT_THROTTLE).with_last_committed(Some(committed));
    let mut h = Harness::start_with(manager);
    // Same targets, but the error is gone: that is a change.
    h.send(ok("f", &["a:1"])).await;
    let (state, at) = h.next().await.unwrap();
    assert_eq!(at, Duration::ZERO);
    assert_eq!(addresses(&state), ["a:1"]);
    assert_eq!(state.error, None);
    h.stop().await;
}
