use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

use super::*;

fn state_of(runner: &Runner, name: &str) -> Option<(WorkerState, Option<String>)> {
    runner
        .statuses()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| (s.state, s.detail))
}

#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the disk went away")
    }
}

impl std::error::Error for Broken {}

#[tokio::test]
async fn stop_signals_and_awaits_every_worker() {
    let runner = Runner::new();
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = oneshot::channel();
    let done = finished.clone();
    runner.spawn("ticker", move |ctx| async move {
        ctx.set_detail("waiting");
        let _ = started_tx.send(());
        ctx.stopping().await;
        // Work after the signal still happens before stop() returns.
        tokio::task::yield_now().await;
        done.store(true, Ordering::SeqCst);
        Ok(())
    });
    started.await.unwrap();
    assert_eq!(
        state_of(&runner, "ticker"),
        Some((WorkerState::Running, Some("waiting".into())))
    );
    runner.stop().await;
    assert!(finished.load(Ordering::SeqCst));
    let status = runner.statuses().pop().unwrap();
    assert_eq!(status.state, WorkerState::Stopped);
    assert!(status.stopped_at.is_some());
}

#[tokio::test]
async fn failures_and_panics_are_reported_with_their_reason() {
    let runner = Runner::new();
    runner.spawn("failing", |_ctx| async move {
        Err(Box::new(Broken) as WorkerError)
    });
    runner.spawn("panicking", |_ctx| async move {
        if true {
            panic!("invariant broken: {}", 42);
        }
        Ok(())
    });
    runner.join().await;
    assert_eq!(
        state_of(&runner, "failing"),
        Some((WorkerState::Failed, Some("the disk went away".into())))
    );
    assert_eq!(
        state_of(&runner, "panicking"),
        Some((WorkerState::Panicked, Some("invariant broken: 42".into())))
    );
}

#[tokio::test]
async fn a_scope_stops_alone_and_with_its_parent() {
    let runner = Runner::new();
    let first = runner.scope();
    let second = runner.scope();
    for (scope, name) in [(&first, "a"), (&second, "b")] {
        scope.spawn(name, |ctx| async move {
            ctx.stopping().await;
            Ok(())
        });
    }
    runner.spawn("root", |ctx| async move {
        ctx.stopping().await;
        Ok(())
    });
    first.stop().await;
    assert_eq!(state_of(&runner, "a").unwrap().0, WorkerState::Stopped);
    assert_eq!(state_of(&runner, "b").unwrap().0, WorkerState::Running);
    assert_eq!(state_of(&runner, "root").unwrap().0, WorkerState::Running);
    runner.stop().await;
    assert!(runner
        .statuses()
        .iter()
        .all(|s| s.state == WorkerState::Stopped));
}

#[tokio::test]
async fn a_restarted_worker_replaces_its_entry() {
    let runner = Runner::new();
    for _ in 0..3 {
        runner.spawn("heartbeat", |_ctx| async move { Ok(()) });
        runner.join().await;
    }
    assert_eq!(runner.statuses().len(), 1);
}

#[tokio::test]
async fn workers_started_while_stopping_are_awaited_too() {
    let runner = Runner::new();
    let inner = runner.clone();
    let late_done = Arc::new(AtomicBool::new(false));
    let flag = late_done.clone();
    runner.spawn("parent", move |ctx| async move {
        ctx.stopping().await;
        inner.spawn("late", move |_ctx| async move {
            tokio::task::yield_now().await;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        Ok(())
    });
    runner.stop().await;
    assert!(late_done.load(Ordering::SeqCst));
}
