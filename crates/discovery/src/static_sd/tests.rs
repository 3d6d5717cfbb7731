use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use rota_core::targets::Target;

#[tokio::test]
async fn reports_once_then_waits_for_stop() {
    let groups = vec![
        Group {
            targets: vec!["b:2".into(), "a:1".into()],
            labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        },
        Group {
            targets: vec!["a:1".into()],
            labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        },
    ];
    let (tx, mut rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(StaticProvider::new(groups)).run(tx, stop.clone()));

    let update = rx.recv().await.unwrap();
    assert_eq!(update.source, "static");
    let addresses: Vec<_> = update
        .targets
        .unwrap()
        .into_iter()
        .map(|t: Target| {
            assert_eq!(t.labels["env"], "prod");
            t.address
        })
        .collect();
    assert_eq!(addresses, ["a:1", "b:2"], "sorted and deduplicated");

    // Nothing more, and the provider keeps running until told to stop.
    assert!(tokio::time::timeout(Duration::from_millis(50), rx.recv())
        .await
        .is_err());
    assert!(!task.is_finished());
    stop.cancel();
    task.await.unwrap();
    assert!(
        rx.recv().await.is_none(),
        "the channel closes when it stops"
    );
}
