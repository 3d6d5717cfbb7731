//! The worker `artifact-sweep`: every node keeps the artifact files of the runs its
//! jobs ran; once a run is forgotten (pruned by its workflow's `history_limit`, or
//! deleted with its workflow) nobody can ask for them, so they are removed. It
//! looks at start and then every [`SWEEP_EVERY`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rota_background::Runner;
use rota_cluster::Node;
use tracing::{debug, info, warn};
use ulid::Ulid;

/// How often the artifact directory is looked at.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Starts the worker `artifact-sweep` of `workers`.
pub fn spawn(node: Arc<Node>, workers: &Runner) {
    workers.spawn("artifact-sweep", move |ctx| async move {
        loop {
            let root = node.config().data_dir.join("artifacts");
            let store = node.store().clone();
            let swept = tokio::task::spawn_blocking(move || {
                sweep(&root, &|run| {
                    store.get_run(run).map(|r| r.is_some()).unwrap_or(true)
                })
            })
            .await;
            match swept {
                Ok(0) => ctx.set_detail("no forgotten run's artifacts"),
                Ok(n) => {
                    info!(runs = n, "removed the artifacts of forgotten runs");
                    ctx.set_detail(format!("last sweep removed the artifacts of {n} runs"));
                }
                Err(err) => warn!(error = %err, "artifact sweep failed"),
            }
            tokio::select! {
                () = ctx.stopping() => return Ok(()),
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
    });
}

/// Removes the run directories under `root` whose run `known` says is forgotten;
/// answers how many. Directories that are not run ids are left alone.
pub fn sweep(root: &Path, known: &dyn Fn(Ulid) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(run) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else {
            continue;
        };
        if known(run) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                debug!(%run, "artifacts of a forgotten run removed");
                removed += 1;
            }
            Err(err) => warn!(%run, error = %err, "cannot remove the artifacts of a forgotten run"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forgotten_runs_lose_their_artifacts() {
        let tmp = tempfile::tempdir().unwrap();
        let kept = Ulid::from_parts(1, 1);
        let forgotten = Ulid::from_parts(2, 2);
        for dir in [
            kept.to_string(),
            forgotten.to_string(),
            "not-a-run".to_string(),
        ] {
            std::fs::create_dir_all(tmp.path().join(&dir).join("coverage")).unwrap();
            std::fs::write(tmp.path().join(&dir).join("coverage/x"), "x").unwrap();
        }
        let removed = sweep(tmp.path(), &|run| run == kept);
        assert_eq!(removed, 1);
        assert!(tmp.path().join(kept.to_string()).exists());
        assert!(!tmp.path().join(forgotten.to_string()).exists());
        assert!(tmp.path().join("not-a-run").exists());
        assert_eq!(sweep(&tmp.path().join("missing"), &|_| false), 0);
    }
}
