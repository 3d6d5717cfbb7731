//! History: pruning per job, outputs of pruned runs, paging.

use super::*;

#[test]
fn history_is_pruned_oldest_terminal_first_and_keeps_active_ones() {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: spec_with_history("a", 2),
    });
    // 1 stays running; 2 and 3 finish.
    h.run(Command::Fire {
        fires: vec![
            fire(1, "a", 1, Trigger::Schedule),
            fire(2, "a", 2, Trigger::Schedule),
            fire(3, "a", 3, Trigger::Schedule),
        ],
    });
    h.run(Command::Finish {
        finishes: vec![
            finish(2, 1, ExecStatus::Succeeded, 10),
            finish(3, 1, ExecStatus::Failed, 10),
        ],
    });

    h.run(Command::Fire {
        fires: vec![fire(4, "a", 4, Trigger::Schedule)],
    });
    // 4 executions, limit 2: the two oldest terminal ones (2, 3) go; 1 is active.
    let ids: Vec<_> = h
        .store
        .list_executions("a", 10, None)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![Ulid(4), Ulid(1)]);
    assert!(h.store.get_execution(Ulid(2)).unwrap().is_none());

    // The pruned instant stays refused (high-water mark), though its index row is gone.
    let again = fired(h.run(Command::Fire {
        fires: vec![fire(9, "a", 2, Trigger::Schedule)],
    }));
    assert!(!again[0].created);

    // Once 1 ends, the next fire prunes it.
    h.run(Command::Finish {
        finishes: vec![finish(1, 1, ExecStatus::Succeeded, 20)],
    });
    h.run(Command::Fire {
        fires: vec![fire(5, "a", 5, Trigger::Schedule)],
    });
    let ids: Vec<_> = h
        .store
        .list_executions("a", 10, None)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![Ulid(5), Ulid(4)]);
}

#[test]
fn pruning_drops_the_output_of_pruned_executions() {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: spec_with_history("a", 1),
    });
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 1, Trigger::Schedule)],
    });
    let mut done = finish(1, 1, ExecStatus::Succeeded, 5);
    done.output = Some("hello\n".into());
    h.run(Command::Finish {
        finishes: vec![done],
    });
    assert_eq!(
        h.store.get_output(Ulid(1)).unwrap().as_deref(),
        Some("hello\n")
    );
    h.run(Command::Fire {
        fires: vec![fire(2, "a", 2, Trigger::Schedule)],
    });
    assert!(h.store.get_output(Ulid(1)).unwrap().is_none());
}

#[test]
fn list_executions_pages_with_before_and_limit() {
    let mut h = Harness::new();
    put(&mut h, "a");
    put(&mut h, "b");
    h.run(Command::Fire {
        fires: (1..=5)
            .map(|i| fire(i, "a", i as i64, Trigger::Schedule))
            .chain([fire(9, "b", 1, Trigger::Schedule)])
            .collect(),
    });
    let page: Vec<_> = h
        .store
        .list_executions("a", 2, None)
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert_eq!(page, vec![5, 4]);
    let page: Vec<_> = h
        .store
        .list_executions("a", 2, Some(Ulid(4)))
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert_eq!(page, vec![3, 2]);
    let page: Vec<_> = h
        .store
        .list_executions("a", 10, Some(Ulid(1)))
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert!(page.is_empty());
    assert!(h
        .store
        .list_executions("nobody", 10, None)
        .unwrap()
        .is_empty());
}
