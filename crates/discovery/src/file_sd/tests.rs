//! The file provider against real files in a temp dir, polling every 20 ms; each
//! wait on the channel has a timeout so a missing update fails instead of hanging.

use std::path::Path;

use tokio::task::JoinHandle;

use super::*;
use crate::Manager;
use rota_core::targets::{Target, TargetSetState};

const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

struct Running {
    rx: mpsc::Receiver<Update>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn start(patterns: &[String], refresh: Duration) -> Running {
    let provider = FileProvider::new(patterns.to_vec(), refresh).with_poll_interval(POLL);
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(provider).run(tx, stop.clone()));
    Running { rx, stop, task }
}

impl Running {
    /// The next update for `source`, skipping others.
    async fn next_for(&mut self, source: &str) -> Result<Vec<Target>, String> {
        tokio::time::timeout(WAIT, async {
            loop {
                let update = self.rx.recv().await.expect("the provider ended");
                if update.source == source {
                    return update.targets;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no update for {source} within {WAIT:?}"))
    }

    /// Whether any update comes within `within`.
    async fn quiet(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.rx.recv()).await.is_err()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = path(dir, name);
    std::fs::write(&p, text).unwrap();
    p
}

fn addresses(targets: &[Target]) -> Vec<&str> {
    targets.iter().map(|t| t.address.as_str()).collect()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn reads_json_and_yaml_with_the_file_path_label() {
    let dir = tempfile::tempdir().unwrap();
    let json = write(
        dir.path(),
        "a.json",
        r#"[{"targets": ["a:1", "b:1"], "labels": {"env": "prod"}}]"#,
    );
    let yaml = write(
        dir.path(),
        "b.yaml",
        "- targets: ['c:1']\n  labels: {env: dev}\n",
    );
    let mut p = start(&[path(dir.path(), "*.json"), yaml.clone()], HOUR);

    let targets = p.next_for(&json).await.unwrap();
    assert_eq!(addresses(&targets), ["a:1", "b:1"]);
    assert_eq!(targets[0].labels["env"], "prod");
    assert_eq!(targets[0].labels["__meta_filepath"], json);
    let targets = p.next_for(&yaml).await.unwrap();
    assert_eq!(addresses(&targets), ["c:1"]);
    assert_eq!(targets[0].labels["__meta_filepath"], yaml);
    assert!(
        p.quiet(Duration::from_millis(200)).await,
        "unchanged files are not re-read"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_file_that_shrinks_reports_fewer_targets() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "a.json",
        r#"[{"targets": ["a:1", "b:1", "c:1"]}]"#,
    );
    let mut p = start(std::slice::from_ref(&file), HOUR);
    assert_eq!(p.next_for(&file).await.unwrap().len(), 3);
    write(dir.path(), "a.json", r#"[{"targets": ["b:1"]}]"#);
    assert_eq!(addresses(&p.next_for(&file).await.unwrap()), ["b:1"]);
    p.stop().await;
}

#[tokio::test]
async fn null_items_unknown_fields_and_bad_syntax_are_errors_of_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", r#"[{"targets": ["g:1"]}]"#);
    let file = write(
        dir.path(),
        "a.json",
        r#"[{"targets": ["a:1"]}, {"targets": []}, null]"#,
    );
    let mut p = start(&[path(dir.path(), "*.json")], HOUR);
    assert_eq!(
        p.next_for(&file).await.unwrap_err(),
        format!("{file}: item 2 is null (items are counted from 0)")
    );
    assert!(
        p.next_for(&good).await.is_ok(),
        "other files are read as usual"
    );

    write(
        dir.path(),
        "a.json",
        r#"[{"targets": ["a:1"], "labls": {}}]"#,
    );
    let err = p.next_for(&file).await.unwrap_err();
    assert!(err.contains("unknown field `labls`"), "{err}");

    write(dir.path(), "a.json", r#"[{"targets": ["a:1""#);
    let err = p.next_for(&file).await.unwrap_err();
    assert!(
        err.starts_with(&format!("{file} is not a file_sd JSON list")),
        "{err}"
    );

    write(dir.path(), "a.json", r#"[{"targets": ["a:1"]}]"#);
    assert_eq!(addresses(&p.next_for(&file).await.unwrap()), ["a:1"]);
    p.stop().await;
}

#[tokio::test]
async fn a_deleted_file_reports_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.yml", "- targets: ['a:1']\n");
    let mut p = start(&[path(dir.path(), "*.yml")], HOUR);
    assert_eq!(p.next_for(&file).await.unwrap().len(), 1);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(p.next_for(&file).await, Ok(vec![]));
    assert!(p.quiet(Duration::from_millis(200)).await, "reported once");
    p.stop().await;
}

#[tokio::test]
async fn a_glob_picks_up_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = path(dir.path(), "[ab]*.json");
    let mut p = start(std::slice::from_ref(&pattern), HOUR);
    // No file yet: the pattern itself reports an empty list once.
    assert_eq!(p.next_for(&pattern).await, Ok(vec![]));

    write(dir.path(), "c.json", r#"[{"targets": ["c:1"]}]"#); // not matched
    let file = write(dir.path(), "b1.json", r#"[{"targets": ["b:1"]}]"#);
    assert_eq!(addresses(&p.next_for(&file).await.unwrap()), ["b:1"]);
    assert!(
        p.quiet(Duration::from_millis(200)).await,
        "c.json is not matched"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_missing_literal_file_is_empty_until_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path(), "later.json");
    let mut p = start(std::slice::from_ref(&file), HOUR);
    assert_eq!(p.next_for(&file).await, Ok(vec![]));
    write(dir.path(), "later.json", r#"[{"targets": ["l:1"]}]"#);
    assert_eq!(addresses(&p.next_for(&file).await.unwrap()), ["l:1"]);
    p.stop().await;
}

/// Makes the file at `file` unreadable: mode 000, or, when that does not stop
/// this process from reading it (running as root), a directory in its place.
/// Either way reading it fails, which is what the provider must survive.
fn make_unreadable(file: &str) -> &'static str {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(file).is_err() {
        return "Permission denied";
    }
    std::fs::remove_file(file).unwrap();
    std::fs::create_dir(file).unwrap();
    "Is a directory"
}

#[tokio::test]
async fn an_unreadable_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.json", r#"[{"targets": ["a:1"]}]"#);
    let mut p = start(std::slice::from_ref(&file), HOUR);
    assert_eq!(addresses(&p.next_for(&file).await.unwrap()), ["a:1"]);

    let why = make_unreadable(&file);
    let err = p.next_for(&file).await.unwrap_err();
    assert!(err.starts_with(&format!("cannot read {file}: ")), "{err}");
    assert!(err.contains(why), "{err}");
    p.stop().await;
}

#[tokio::test]
async fn with_the_manager_an_unreadable_file_keeps_its_old_targets() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", r#"[{"targets": ["a:1"]}]"#);
    let b = write(dir.path(), "b.yaml", "- targets: [b:1]\n");
    let provider = FileProvider::new(vec![a.clone(), b], HOUR).with_poll_interval(POLL);
    let (out_tx, mut out) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::discover(
        Box::new(provider),
        Manager::new("gw", Duration::ZERO),
        out_tx,
        stop.clone(),
    ));
    let mut state = next(&mut out).await;
    while addresses(&state.targets) != ["a:1", "b:1"] {
        state = next(&mut out).await;
    }

    make_unreadable(&a);
    let state = next(&mut out).await;
    assert_eq!(
        addresses(&state.targets),
        ["a:1", "b:1"],
        "a's last good targets stay"
    );
    let err = state.error.unwrap();
    assert!(err.starts_with(&format!("cannot read {a}: ")), "{err}");

    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn every_file_is_re_read_each_refresh_interval() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.json", r#"[{"targets": ["a:1"]}]"#);
    let mut p = start(std::slice::from_ref(&file), Duration::from_millis(100));
    let first = p.next_for(&file).await.unwrap();
    assert_eq!(
        p.next_for(&file).await.unwrap(),
        first,
        "re-read though unchanged"
    );
    p.stop().await;
}

#[tokio::test]
async fn with_the_manager_an_invalid_file_keeps_its_old_targets() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", r#"[{"targets": ["a:1"]}]"#);
    write(dir.path(), "b.json", r#"[{"targets": ["b:1"]}]"#);
    let provider =
        FileProvider::new(vec![path(dir.path(), "*.json")], HOUR).with_poll_interval(POLL);
    let manager = Manager::new("gw", Duration::ZERO);
    let (out_tx, mut out) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::discover(
        Box::new(provider),
        manager,
        out_tx,
        stop.clone(),
    ));
    let until =
        |want: &'static [&'static str]| move |s: &TargetSetState| addresses(&s.targets) == want;

    let mut state = next(&mut out).await;
    while !until(&["a:1", "b:1"])(&state) {
        state = next(&mut out).await;
    }
    assert_eq!(state.error, None);

    write(dir.path(), "a.json", "[null]");
    let state = next(&mut out).await;
    assert_eq!(
        addresses(&state.targets),
        ["a:1", "b:1"],
        "a's old targets stay"
    );
    assert_eq!(
        state.error,
        Some(format!("{a}: item 0 is null (items are counted from 0)"))
    );

    std::fs::remove_file(&a).unwrap();
    let state = next(&mut out).await;
    assert_eq!(
        addresses(&state.targets),
        ["b:1"],
        "a deleted file's targets go"
    );
    assert_eq!(state.error, None);

    stop.cancel();
    task.await.unwrap();
}

async fn next(out: &mut mpsc::Receiver<TargetSetState>) -> TargetSetState {
    tokio::time::timeout(WAIT, out.recv())
        .await
        .expect("a state within the wait")
        .expect("the manager ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_with_the_committed_state_sends_only_what_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", r#"[{"targets": ["a:1"]}]"#);
    let b = write(dir.path(), "b.json", r#"[{"targets": ["b:1"]}]"#);
    let target = |address: &str, file: &str| Target {
        address: address.to_string(),
        labels: [(parse::META_FILEPATH.to_string(), file.to_string())].into(),
    };
    // What an earlier leader committed: both files' targets. The two files are
    // read in one round and reach the manager as one burst, so it never sees
    // (and sends) a's targets alone.
    let committed = TargetSetState {
        targets: vec![target("a:1", &a), target("b:1", &b)],
        error: None,
    };
    let provider =
        FileProvider::new(vec![path(dir.path(), "*.json")], HOUR).with_poll_interval(POLL);
    let manager = Manager::new("gw", Duration::from_secs(5)).with_last_committed(Some(committed));
    let stats = manager.stats();
    let (out_tx, mut out) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::discover(
        Box::new(provider),
        manager,
        out_tx,
        stop.clone(),
    ));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), out.recv())
            .await
            .is_err(),
        "the state found is the one committed"
    );
    assert!(stats.updates_received() >= 2, "both files were read");
    assert_eq!(stats.updates_emitted(), 0);

    write(dir.path(), "b.json", r#"[{"targets": ["b:2"]}]"#);
    let state = next(&mut out).await;
    assert_eq!(addresses(&state.targets), ["a:1", "b:2"]);
    stop.cancel();
    task.await.unwrap();
}
