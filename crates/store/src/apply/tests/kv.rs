//! KV: compare-and-set on mod_revision, prefix listing.

use super::*;

#[test]
fn kv_put_and_delete_compare_and_set_on_mod_revision() {
    let mut h = Harness::new();
    let put = |value: &str, if_revision| Command::KvPut {
        key: "k".into(),
        value: value.into(),
        if_revision,
    };
    // 0 = must not exist.
    assert_eq!(
        h.run(put("v1", Some(0))),
        Response::KvPut {
            key: "k".into(),
            revision: 1
        }
    );
    assert_eq!(
        h.run(put("v2", Some(0))),
        Response::RevisionMismatch {
            key: "k".into(),
            current: 1
        }
    );
    assert_eq!(
        h.run(put("v2", Some(1))),
        Response::KvPut {
            key: "k".into(),
            revision: 3
        }
    );
    h.run(put("v3", None));
    let entry = h.store.kv_get("k").unwrap().unwrap();
    assert_eq!(
        (
            entry.value.as_str(),
            entry.mod_revision,
            entry.create_revision,
            entry.version
        ),
        ("v3", 4, 1, 3)
    );

    assert_eq!(
        h.run(Command::KvDelete {
            key: "k".into(),
            if_revision: Some(3)
        }),
        Response::RevisionMismatch {
            key: "k".into(),
            current: 4
        }
    );
    assert_eq!(
        h.run(Command::KvDelete {
            key: "k".into(),
            if_revision: Some(4)
        }),
        Response::KvDeleted {
            key: "k".into(),
            revision: 6,
            deleted: true
        }
    );
    assert!(h.store.kv_get("k").unwrap().is_none());
    h.events();
    assert_eq!(
        h.run(Command::KvDelete {
            key: "k".into(),
            if_revision: None
        }),
        Response::KvDeleted {
            key: "k".into(),
            revision: 7,
            deleted: false
        }
    );
    assert!(h.events().is_empty());
    assert_eq!(
        h.run(Command::KvPut {
            key: "k".into(),
            value: "x".into(),
            if_revision: Some(4)
        }),
        Response::RevisionMismatch {
            key: "k".into(),
            current: 0
        }
    );
    // Re-created: a new create_revision and version 1.
    h.run(put("again", Some(0)));
    let entry = h.store.kv_get("k").unwrap().unwrap();
    assert_eq!((entry.create_revision, entry.version), (9, 1));
}

#[test]
fn kv_list_returns_a_prefix_in_key_order() {
    let mut h = Harness::new();
    for key in ["b/2", "a", "b/1", "b0", "c"] {
        h.run(Command::KvPut {
            key: key.into(),
            value: key.into(),
            if_revision: None,
        });
    }
    let keys: Vec<_> = h
        .store
        .kv_list("b/")
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, vec!["b/1", "b/2"]);
    assert_eq!(h.store.kv_list("").unwrap().len(), 5);
}
