//! Bad input never panics a parser: arbitrary and near-valid documents through the
//! cron compiler, the job, workflow, target set and sink parsers. Each answers
//! `Ok` or an error naming a field, and an accepted document validates again the
//! same way after a round trip.
//!
//! `cargo test` runs a few hundred cases per property; for a long run:
//! `PROPTEST_CASES=100000 cargo test --release -p rota-core --test parsers_never_panic`.

use proptest::prelude::*;
use rota_core::schedule::CompiledSchedule;
use rota_core::validate::parse_job_json;
use rota_core::{JobSpec, Schedule};
use serde_json::{json, Value};

/// Text that looks like cron: fields of digits and cron punctuation.
fn cron_like() -> impl Strategy<Value = String> {
    let field = prop::string::string_regex("[0-9*/,\\-LW#?A-Z]{1,6}").unwrap();
    (prop::collection::vec(field, 1..9), any::<bool>()).prop_map(|(fields, at)| {
        if at {
            format!("@{}", fields.join(""))
        } else {
            fields.join(" ")
        }
    })
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("schedule".to_string()),
                    Just("executor".to_string()),
                    Just("type".to_string()),
                    Just("provider".to_string()),
                    Just("jobs".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid job with one field replaced by an arbitrary value.
fn mutated_job() -> impl Strategy<Value = Value> {
    let fields = prop::sample::select(vec![
        "name",
        "schedule",
        "executor",
        "timeout",
        "retry",
        "priority",
        "overlap",
        "misfire",
        "catchup_window",
        "tags",
        "history_limit",
        "max_output_bytes",
        "targets",
        "parallelism",
        "sink",
        "notify",
        "delete_after_run",
    ]);
    (fields, any_json()).prop_map(|(field, value)| {
        let mut job = json!({
            "name": "j", "schedule": {"every": "1m"},
            "executor": {"type": "shell", "command": "true"},
        });
        job[field] = value;
        job
    })
}

proptest! {
    #[test]
    fn cron_expressions_compile_or_name_the_field(expr in cron_like(), tz in "[A-Za-z/_]{0,12}") {
        let schedule = Schedule::Cron { cron: expr, timezone: tz };
        if let Err(e) = CompiledSchedule::compile(&schedule) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn job_documents_parse_or_name_a_field(doc in prop_oneof![any_json(), mutated_job()]) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        match parse_job_json(&bytes) {
            Ok(spec) => {
                if spec.validate().is_ok() {
                    // What was accepted reads back the same and is accepted again.
                    let again: JobSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
                    prop_assert_eq!(&again, &spec);
                    prop_assert!(again.validate().is_ok());
                }
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn workflow_documents_parse_or_name_a_field(doc in any_json()) {
        if let Ok(spec) = rota_core::workflow::parse_workflow_value(&doc) {
            let _ = spec.validate();
        }
    }

    #[test]
    fn target_sets_parse_or_name_a_field(doc in any_json(), provider in prop::sample::select(vec!["static", "file", "dns", "kubernetes", "x"])) {
        let mut doc = doc;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("provider".into(), json!(provider));
            obj.insert("name".into(), json!("gw"));
        }
        if let Err(e) = rota_core::targets::parse_target_set_value(&doc) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn sink_documents_parse_or_name_a_field(doc in any_json()) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        if let Ok(spec) = rota_core::sink::parse_sink_json(&bytes) {
            let _ = spec.validate();
        }
    }

    #[test]
    fn any_bytes_as_a_job_document_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_job_json(&bytes);
        let _ = rota_core::sink::parse_sink_json(&bytes);
    }
}
