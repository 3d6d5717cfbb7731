use std::path::Path;

use super::*;

fn file(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_file(text, Path::new("rota.toml"))
}

fn with_file(flags: &Settings, text: &str) -> Result<ServerConfig, ConfigError> {
    ServerConfig::resolve(flags, Some(("rota.toml".into(), file(text)?)), None)
}

#[test]
fn defaults_without_file_or_flags() {
    let cfg = ServerConfig::resolve(&Settings::default(), None, None).unwrap();
    assert_eq!(cfg.node_id, 1);
    assert_eq!(cfg.node_name, "n1");
    assert_eq!(cfg.listen, "127.0.0.1:7700".parse().unwrap());
    assert_eq!(cfg.advertise, None);
    assert_eq!(cfg.advertise_url(cfg.listen), "http://127.0.0.1:7700");
    assert_eq!(cfg.data_dir, PathBuf::from("rota-data"));
    assert_eq!(cfg.max_running, 64);
    assert_eq!(cfg.snapshot_every, 10_000);
    assert_eq!(cfg.log, DEFAULT_LOG);
    assert_eq!(cfg.log_format, LogFormat::Text);
    assert!(cfg.sources.values().all(|s| *s == Source::Default));
    assert_eq!(cfg.sources.len(), cfg.entries().len());
}

#[test]
fn flag_beats_file_beats_default() {
    let text = r#"
        node_id = 4
        listen = "0.0.0.0:9000"
        data_dir = "/var/lib/rota"
        max_running = 10
        log = "debug"
    "#;
    let flags = Settings {
        listen: Some("127.0.0.1:9100".parse().unwrap()),
        max_running: Some(2),
        ..Default::default()
    };
    let cfg = with_file(&flags, text).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(cfg.sources["listen"], Source::Flag);
    assert_eq!(cfg.max_running, 2);
    assert_eq!(cfg.node_id, 4);
    assert_eq!(cfg.sources["node_id"], Source::File);
    assert_eq!(
        cfg.node_name, "n4",
        "the default name follows the effective id"
    );
    assert_eq!(cfg.sources["node_name"], Source::Default);
    assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/rota"));
    assert_eq!(cfg.snapshot_every, DEFAULT_SNAPSHOT_EVERY);
    assert_eq!(cfg.sources["snapshot_every"], Source::Default);
    assert_eq!(cfg.log, "debug");
    assert_eq!(cfg.config_file, Some(PathBuf::from("rota.toml")));
}

#[test]
fn rust_log_beats_the_file() {
    let f = file("log = \"debug\"").unwrap();
    let cfg = ServerConfig::resolve(
        &Settings::default(),
        Some(("rota.toml".into(), f.clone())),
        Some("warn".into()),
    )
    .unwrap();
    assert_eq!(cfg.log, "warn");
    assert_eq!(cfg.sources["log"], Source::Env);
    let cfg = ServerConfig::resolve(
        &Settings::default(),
        Some(("rota.toml".into(), f)),
        Some("  ".into()),
    )
    .unwrap();
    assert_eq!(cfg.log, "debug", "an empty RUST_LOG does not count");
}

#[test]
fn unknown_key_is_rejected_with_its_name() {
    let err = file("node_id = 2\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("listen_addr"), "{text}");
    assert!(text.contains("rota.toml"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn wrong_type_names_the_key_and_line() {
    let err = file("\nmax_running = \"many\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("max_running"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn bad_listen_address_is_rejected() {
    for bad in ["localhost", "127.0.0.1", "1.2.3.4:99999", ""] {
        let err = with_file(&Settings::default(), &format!("listen = {bad:?}")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen"), "{text}");
        assert!(text.contains("IP:PORT"), "{text}");
    }
    assert!(check_listen("[::1]:7700".to_string()).is_ok());
}

#[test]
fn bad_values_name_their_key() {
    for (text, key) in [
        ("node_id = 0", "node_id"),
        ("node_name = \"Not OK\"", "node_name"),
        ("advertise = \"10.0.0.1:7700\"", "advertise"),
        ("advertise = \"ftp://x\"", "advertise"),
        ("data_dir = \"\"", "data_dir"),
        ("max_running = 0", "max_running"),
        ("snapshot_every = 0", "snapshot_every"),
        ("node_timeout = \"500ms\"", "node_timeout"),
        ("node_timeout = \"2h\"", "node_timeout"),
        ("node_timeout = \"soon\"", "node_timeout"),
        ("log = \"info,[\"", "log"),
        ("log_format = \"yaml\"", "log_format"),
        ("node_id = -3", "node_id"),
    ] {
        let err =
            with_file(&Settings::default(), text).expect_err(&format!("{text} should be rejected"));
        let shown = err.to_string();
        assert!(shown.contains(key), "{text}: {shown}");
    }
    let err = ServerConfig::resolve(&Settings::default(), None, Some("[".into())).unwrap_err();
    assert!(err.to_string().contains("RUST_LOG"), "{err}");
}

#[test]
fn raft_timing_from_the_file_and_the_flags_is_checked_together() {
    use std::time::Duration;
    let cfg = with_file(&Settings::default(), "").unwrap();
    assert_eq!(cfg.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
    assert_eq!(cfg.election_timeout, DEFAULT_ELECTION_TIMEOUT);
    assert_eq!(cfg.sources["election_timeout"], Source::Default);

    let text = "heartbeat_interval = \"100ms\"\nelection_timeout = \"1s\"";
    let cfg = with_file(&Settings::default(), text).unwrap();
    assert_eq!(cfg.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(cfg.election_timeout, Duration::from_secs(1));
    assert_eq!(cfg.sources["heartbeat_interval"], Source::File);
    let shown: Vec<_> = cfg.entries().into_iter().map(|(k, v, _)| (k, v)).collect();
    assert!(
        shown.contains(&("election_timeout", "1s".to_string())),
        "{shown:?}"
    );

    let flags = Settings {
        election_timeout: Some(Duration::from_millis(400)),
        ..Settings::default()
    };
    let cfg = with_file(&flags, text).unwrap();
    assert_eq!(cfg.election_timeout, Duration::from_millis(400));
    assert_eq!(cfg.sources["election_timeout"], Source::Flag);

    // Each valid alone, together too tight: the error names the key to change.
    let flags = Settings {
        election_timeout: Some(Duration::from_millis(250)),
        ..Settings::default()
    };
    let err = with_file(&flags, text).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Conflict {
                key: "election_timeout",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("election_timeout: 250ms"),
        "{err}"
    );

    for (text, key) in [
        ("heartbeat_interval = \"0s\"", "heartbeat_interval"),
        ("heartbeat_interval = \"fast\"", "heartbeat_interval"),
        ("election_timeout = \"5ms\"", "election_timeout"),
        ("election_timeout = \"2m\"", "election_timeout"),
    ] {
        let err = with_file(&Settings::default(), text).unwrap_err();
        assert!(
            err.to_string().contains(&format!("key {key}")),
            "{text}: {err}"
        );
    }
}

#[test]
fn node_timeout_from_the_file_and_the_flag() {
    let cfg = with_file(&Settings::default(), "node_timeout = \"30s\"").unwrap();
    assert_eq!(cfg.node_timeout, std::time::Duration::from_secs(30));
    assert_eq!(cfg.sources["node_timeout"], Source::File);
    let flags = Settings {
        node_timeout: Some(std::time::Duration::from_secs(5)),
        ..Settings::default()
    };
    let cfg = with_file(&flags, "node_timeout = \"30s\"").unwrap();
    assert_eq!(cfg.node_timeout, std::time::Duration::from_secs(5));
    let cfg = with_file(&Settings::default(), "").unwrap();
    assert_eq!(cfg.node_timeout, DEFAULT_NODE_TIMEOUT);
}

#[test]
fn peers_and_secret_from_the_file() {
    let text = r#"
        node_id = 2
        peers = ["1=http://a:7700", "2=http://b:7700/", "3=http://c:7700"]
        cluster_secret = "s3cret"
    "#;
    let cfg = with_file(&Settings::default(), text).unwrap();
    assert_eq!(cfg.peers.len(), 3);
    assert_eq!(cfg.peers[&2], "http://b:7700");
    assert_eq!(cfg.sources["peers"], Source::File);
    assert_eq!(cfg.cluster_secret.as_deref(), Some("s3cret"));
    let shown = cfg.entries();
    let secret = shown
        .iter()
        .find(|(k, _, _)| *k == "cluster_secret")
        .unwrap();
    assert_eq!(secret.1, "(set)", "the secret is never shown");

    let err = with_file(&Settings::default(), "peers = [\"2=http://b:1\"]").unwrap_err();
    assert!(err.to_string().contains("not among the peers"), "{err}");
    let err = with_file(&Settings::default(), "peers = [\"x\"]").unwrap_err();
    assert!(err.to_string().contains("peers"), "{err}");
    let err = with_file(
        &Settings::default(),
        "peers = [\"1=http://a:1\", \"1=http://b:1\"]",
    )
    .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let err = with_file(&Settings::default(), "cluster_secret = \"a b\"").unwrap_err();
    assert!(err.to_string().contains("cluster_secret"), "{err}");
}

#[test]
fn syntax_errors_name_the_line() {
    let err = file("node_id = 1\nlisten = \n").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn advertise_is_derived_from_the_bound_address() {
    assert_eq!(
        advertise_for("0.0.0.0:7700".parse().unwrap()),
        "http://127.0.0.1:7700"
    );
    assert_eq!(advertise_for("[::]:80".parse().unwrap()), "http://[::1]:80");
    assert_eq!(
        advertise_for("10.1.2.3:7700".parse().unwrap()),
        "http://10.1.2.3:7700"
    );
    let cfg = with_file(
        &Settings::default(),
        "advertise = \"http://rota.example:7700/\"",
    )
    .unwrap();
    assert_eq!(
        cfg.advertise_url("127.0.0.1:1".parse().unwrap()),
        "http://rota.example:7700"
    );
}

#[test]
fn load_reads_an_explicit_file_and_fails_when_it_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.toml");
    std::fs::write(&path, "node_id = 7\n").unwrap();
    let flags = ServerFlags {
        config: Some(path.clone()),
        ..Default::default()
    };
    let cfg = ServerConfig::load(&flags, None).unwrap();
    assert_eq!(cfg.node_id, 7);
    assert_eq!(cfg.config_file, Some(path));

    let flags = ServerFlags {
        config: Some(dir.path().join("missing.toml")),
        ..Default::default()
    };
    let err = ServerConfig::load(&flags, None).unwrap_err();
    assert!(err.to_string().contains("missing.toml"), "{err}");
}

#[test]
fn a_rejected_file_value_names_its_key_and_line() {
    let err = file("node_id = 2\n\nnode_timeout = \"2h\"\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config file rota.toml, line 3, key node_timeout: 2h is out of range; accepted: 1s to 1h"
    );
    let err = file("peers = [\n  \"1=http://a:1\",\n  \"x\",\n]\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config file rota.toml, line 1, key peers: \"x\" is not a peer"),
        "{err}"
    );
}

#[test]
fn flags_go_through_the_checks_of_the_file_keys() {
    let node_timeout = flag(check_node_timeout);
    assert_eq!(
        node_timeout("2h").unwrap_err(),
        check_node_timeout("2h".into()).unwrap_err()
    );
    let max_running = flag(check_max_running);
    assert_eq!(max_running("8"), Ok(8));
    assert_eq!(max_running("0").unwrap_err(), "must be at least 1");
    assert_eq!(
        max_running("many").unwrap_err(),
        "\"many\" is not a whole number"
    );
}

#[test]
fn log_format_is_text_or_json() {
    let cfg = with_file(&Settings::default(), "log_format = \"json\"").unwrap();
    assert_eq!(cfg.log_format, LogFormat::Json);
    assert_eq!(cfg.sources["log_format"], Source::File);
    let flags = Settings {
        log_format: Some(LogFormat::Text),
        ..Default::default()
    };
    let cfg = with_file(&flags, "log_format = \"json\"").unwrap();
    assert_eq!(cfg.log_format, LogFormat::Text);
    let shown: Vec<_> = cfg.entries().into_iter().map(|(k, v, _)| (k, v)).collect();
    assert!(
        shown.contains(&("log_format", "text".to_string())),
        "{shown:?}"
    );
    let err = check_log_format("JSON-lines".to_string()).unwrap_err();
    assert!(err.contains("expected text or json"), "{err}");
}

#[test]
fn rota_variables_sit_between_flags_and_the_file() {
    let f = file("max_running = 7\nnode_timeout = \"20s\"").unwrap();
    let vars: BTreeMap<String, String> = [
        ("ROTA_MAX_RUNNING".to_string(), "9".to_string()),
        ("ROTA_TAGS".to_string(), "zone=a,disk=ssd".to_string()),
        ("ROTA_SERVER".to_string(), "http://client-only".to_string()),
    ]
    .into();
    let cfg = ServerConfig::resolve_with_env(
        &Settings::default(),
        Some(("rota.toml".into(), f.clone())),
        None,
        &vars,
    )
    .unwrap();
    assert_eq!(cfg.max_running, 9);
    assert_eq!(cfg.sources["max_running"], Source::Env);
    assert_eq!(cfg.sources["node_timeout"], Source::File);
    assert_eq!(cfg.sources["tags"], Source::Env);
    assert_eq!(cfg.tags.get("zone").map(String::as_str), Some("a"));
    // A flag beats the variable.
    let flags = Settings {
        max_running: Some(3),
        ..Settings::default()
    };
    let cfg =
        ServerConfig::resolve_with_env(&flags, Some(("rota.toml".into(), f)), None, &vars).unwrap();
    assert_eq!(cfg.max_running, 3);
    assert_eq!(cfg.sources["max_running"], Source::Flag);
}

#[test]
fn a_bad_rota_variable_names_the_variable_and_the_key() {
    let vars: BTreeMap<String, String> =
        [("ROTA_MAX_RUNNING".to_string(), "lots".to_string())].into();
    let err = ServerConfig::resolve_with_env(&Settings::default(), None, None, &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("ROTA_MAX_RUNNING (setting max_running): "),
        "{err}"
    );
    let vars: BTreeMap<String, String> =
        [("ROTA_NODE_TIMEOUT".to_string(), "5".to_string())].into();
    let err = ServerConfig::resolve_with_env(&Settings::default(), None, None, &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("ROTA_NODE_TIMEOUT (setting node_timeout): "),
        "{err}"
    );
}

#[test]
fn the_config_file_is_looked_for_in_the_documented_places() {
    let places = super::config_file_candidates(Some("/xdg".into()));
    assert_eq!(
        places,
        vec![
            std::path::PathBuf::from("rota.toml"),
            std::path::PathBuf::from("/xdg/rota/rota.toml"),
            std::path::PathBuf::from("/etc/rota/rota.toml"),
        ]
    );
}

#[test]
fn otlp_endpoint_and_headers_from_the_file_the_flags_and_the_environment() {
    let cfg = ServerConfig::resolve(&Settings::default(), None, None).unwrap();
    assert_eq!(cfg.otlp_endpoint, None, "no traces by default");
    assert!(cfg.otlp_headers.is_empty());

    let text = "otlp_endpoint = \"http://collector:4318\"\n\
                otlp_headers = { Authorization = \"Bearer abc\", x-tenant = \"a\" }\n";
    let cfg = with_file(&Settings::default(), text).unwrap();
    assert_eq!(
        cfg.otlp_endpoint.as_ref().map(|u| u.as_str()),
        Some("http://collector:4318/")
    );
    assert_eq!(cfg.sources["otlp_endpoint"], Source::File);
    assert_eq!(
        cfg.otlp_headers.get("authorization").map(String::as_str),
        Some("Bearer abc"),
        "names are lower-cased"
    );
    let shown: BTreeMap<_, _> = cfg.entries().into_iter().map(|(k, v, _)| (k, v)).collect();
    assert_eq!(shown["otlp_endpoint"], "http://collector:4318/");
    assert_eq!(
        shown["otlp_headers"], "authorization=(set),x-tenant=(set)",
        "header values are never shown"
    );

    let vars: BTreeMap<String, String> = [(
        "ROTA_OTLP_ENDPOINT".to_string(),
        "https://otlp.example/v1/traces".to_string(),
    )]
    .into();
    let cfg = ServerConfig::resolve_with_env(&Settings::default(), None, None, &vars).unwrap();
    assert_eq!(cfg.sources["otlp_endpoint"], Source::Env);

    for (bad, expected) in [
        ("otlp_endpoint = \"collector:4318\"", "OTLP/HTTP receiver"),
        ("otlp_endpoint = \"grpc://c:4317\"", "http:// or https://"),
        (
            "otlp_headers = { \"a b\" = \"x\" }",
            "not an HTTP header name",
        ),
        ("otlp_headers = { a = \"\" }", "non-empty"),
    ] {
        let err = with_file(&Settings::default(), bad)
            .unwrap_err()
            .to_string();
        let key = bad.split(' ').next().unwrap();
        assert!(err.contains(key), "{bad}: {err}");
        assert!(err.contains(expected), "{bad}: {err}");
    }
    assert_eq!(
        check_otlp_header("X-Key=a=b".into()).unwrap(),
        ("x-key".to_string(), "a=b".to_string())
    );
    assert!(check_otlp_header("nokey".into()).is_err());
}

#[test]
fn shutdown_grace_defaults_to_30s_and_takes_0s_to_1h() {
    let cfg = with_file(&Settings::default(), "").unwrap();
    assert_eq!(cfg.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(cfg.sources["shutdown_grace"], Source::Default);
    let cfg = with_file(&Settings::default(), "shutdown_grace = \"0s\"").unwrap();
    assert_eq!(cfg.shutdown_grace, std::time::Duration::ZERO);
    assert_eq!(cfg.sources["shutdown_grace"], Source::File);
    let err = file("shutdown_grace = \"2h\"").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config file rota.toml, line 1, key shutdown_grace: 2h is out of range; accepted: 0s to 1h"
    );
    let grace = flag(check_shutdown_grace);
    assert_eq!(grace("1s"), Ok(std::time::Duration::from_secs(1)));
    assert!(grace("soon").is_err());
}

#[test]
fn watch_max_connections_is_a_limit_from_1_to_100000() {
    let cfg = ServerConfig::resolve(&Settings::default(), None, None).unwrap();
    assert_eq!(cfg.watch_max_connections, rota_api::DEFAULT_MAX_WATCHERS);
    let cfg = with_file(&Settings::default(), "watch_max_connections = 2\n").unwrap();
    assert_eq!(cfg.watch_max_connections, 2);
    let err = file("watch_max_connections = 0\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config file rota.toml, line 1, key watch_max_connections: 0 is out of range; accepted: 1 to 100000"
    );
}

#[test]
fn tls_cert_and_key_go_together_and_make_the_advertise_url_https() {
    let err = with_file(&Settings::default(), "tls_cert = \"n1.pem\"").unwrap_err();
    assert!(
        matches!(err, ConfigError::Conflict { key: "tls_key", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("tls_cert and tls_key"), "{err}");
    let err = with_file(&Settings::default(), "tls_key = \"n1-key.pem\"").unwrap_err();
    assert!(matches!(err, ConfigError::Conflict { .. }), "{err}");

    let flags = Settings {
        tls_key: Some(PathBuf::from("n1-key.pem")),
        ..Settings::default()
    };
    let cfg = with_file(&flags, "tls_cert = \"n1.pem\"\ntls_ca = \"ca.pem\"").unwrap();
    assert_eq!(cfg.tls_cert, Some(PathBuf::from("n1.pem")));
    assert_eq!(cfg.tls_ca, Some(PathBuf::from("ca.pem")));
    assert_eq!(cfg.advertise_url(cfg.listen), "https://127.0.0.1:7700");
}
