//! The sink against a real InfluxDB 1.x started by the test: points written in
//! batches read back with their tags, fields and timestamps; a refused batch is
//! dropped with the server's message.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{client, Influxd};
use rota_core::sink::parse_sink_json;
use rota_sink::{FieldValue, Point, Sink};
use serde_json::{json, Value};

fn spec(url: &str, database: &str, batch_size: u32) -> rota_core::sink::SinkSpec {
    let spec = parse_sink_json(
        json!({"type": "influxdb", "url": url, "database": database,
               "batch_size": batch_size, "flush_interval": "1h"})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    spec.validate().unwrap();
    spec
}

/// Builds of several jobs, one with every character line protocol escapes.
fn builds() -> Vec<Point> {
    let base = 1_796_292_895_000_000_000i64;
    (0..5i64)
        .map(|i| {
            let job = if i == 3 {
                "job, with=all kinds\\of \"stuff\"".to_string()
            } else {
                format!("pull-ci-job-{i}")
            };
            let mut p = Point::new("build", base + i * 1_000_000_007)
                .tag("job_name", job)
                .tag(
                    "job_type",
                    if i % 2 == 0 { "presubmit" } else { "periodic" },
                )
                .tag("state", "success")
                .field("build_id", format!("19961780438519193{i:02}"))
                .field("duration_s", 60.5 * (i + 1) as f64)
                .field("state_int", i)
                .field("log_url", format!("https://l/og?a=\"b\"\\c\nline {i}"));
            if i % 2 == 0 {
                p = p.field("pull_request", 1842 + i);
            }
            p
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_written_in_batches_read_back_the_same() {
    let influx = Influxd::start().await;
    influx.create_database("ci").await;

    // --- five points, batches of two, the last one written by the shutdown
    let sink = Sink::start("influx", spec(&influx.url, "ci", 2), client());
    let sent = builds();
    assert_eq!(sink.send(sent.clone()), 5);
    let stats = sink.shutdown().await;
    assert_eq!(
        (stats.written, stats.dropped, stats.retries, stats.buffered),
        (5, 0, 0, 0),
        "{stats:?}"
    );

    // --- what the server holds
    let rows = influx.rows("ci", "SELECT * FROM build ORDER BY time").await;
    assert_eq!(rows.len(), sent.len(), "{rows:?}");
    for (row, point) in rows.iter().zip(&sent) {
        assert_eq!(row["time"], json!(point.time_ns), "{row:?}");
        for (key, value) in &point.tags {
            assert_eq!(row[key], json!(value), "tag {key} of {row:?}");
        }
        let fields: BTreeMap<&str, &FieldValue> =
            point.fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for (key, value) in fields {
            let expected = match value {
                // JSON writes a whole float as an integer; the type is checked below.
                FieldValue::Float(f) => {
                    assert_eq!(row[key].as_f64(), Some(*f), "field {key} of {row:?}");
                    continue;
                }
                FieldValue::Int(n) => json!(n),
                FieldValue::Str(s) => json!(s),
                other => panic!("not sent: {other:?}"),
            };
            assert_eq!(row[key], expected, "field {key} of {row:?}");
        }
        if !point.fields.iter().any(|(k, _)| k == "pull_request") {
            assert_eq!(row["pull_request"], Value::Null);
        }
    }

    // --- types as the server sees them: integers stay integers
    let keys = influx.query(Some("ci"), "SHOW FIELD KEYS FROM build").await;
    let types: BTreeMap<String, String> = keys["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv[0].as_str().unwrap().into(),
                kv[1].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(types["state_int"], "integer");
    assert_eq!(types["pull_request"], "integer");
    assert_eq!(types["duration_s"], "float");
    assert_eq!(types["build_id"], "string");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_dropped_with_the_servers_message() {
    let influx = Influxd::start().await;
    // No CREATE DATABASE: the server answers 404 "database not found".
    let sink = Sink::start("influx", spec(&influx.url, "missing", 10), client());
    sink.send(builds());
    let stats = sink.shutdown_within(Duration::from_secs(10)).await;
    assert_eq!(
        (stats.written, stats.dropped, stats.retries),
        (0, 5, 0),
        "{stats:?}"
    );
    let error = stats.last_error.unwrap();
    assert!(error.contains("refused the batch with 404"), "{error}");
    assert!(error.contains("database not found: \"missing\""), "{error}");
}
