//! Parsing of the command line: shapes, defaults and usage errors.

use std::path::Path;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("rota").chain(args.iter().copied()))
}

fn ok(args: &[&str]) -> Cli {
    parse(args).unwrap_or_else(|e| panic!("{args:?} should parse: {e}"))
}

#[test]
fn the_cli_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn global_flags_have_defaults_and_go_anywhere() {
    // Run where ROTA_SERVER may be set: only compare when it is not.
    if std::env::var_os("ROTA_SERVER").is_none() {
        assert_eq!(ok(&["job", "ls"]).server, DEFAULT_SERVER);
    }
    let cli = ok(&["job", "ls", "--server", "http://h:1", "-o", "json"]);
    assert_eq!(cli.server, "http://h:1");
    assert_eq!(cli.output, OutputFormat::Json);
    let cli = ok(&["--output", "json", "kv", "ls"]);
    assert_eq!(cli.output, OutputFormat::Json);
    assert_eq!(ok(&["-o", "yaml", "job", "ls"]).output, OutputFormat::Yaml);
    assert!(parse(&["-o", "xml", "job", "ls"]).is_err());
}

#[test]
fn server_flags() {
    let cli = ok(&[
        "server",
        "--node-id",
        "3",
        "--node-name",
        "east-1",
        "--listen",
        "0.0.0.0:8000",
        "--advertise",
        "http://east-1:8000",
        "--data-dir",
        "/tmp/d",
        "--config",
        "x.toml",
        "--max-running",
        "8",
        "--snapshot-every",
        "500",
        "--demo",
    ]);
    let Command::Server(args) = cli.command else {
        panic!("not server")
    };
    let s = &args.settings.keys;
    assert_eq!(s.node_id, Some(3));
    assert_eq!(s.node_name.as_deref(), Some("east-1"));
    assert_eq!(s.listen, Some("0.0.0.0:8000".parse().unwrap()));
    assert_eq!(
        s.advertise.as_ref().map(Url::as_str),
        Some("http://east-1:8000/")
    );
    assert_eq!(s.data_dir, Some(PathBuf::from("/tmp/d")));
    assert_eq!(args.settings.config, Some(PathBuf::from("x.toml")));
    assert_eq!(s.max_running, Some(8));
    assert_eq!(s.snapshot_every, Some(500));
    assert!(args.demo);

    let Command::Server(args) = ok(&["server"]).command else {
        panic!("not server")
    };
    assert_eq!(
        args.settings.keys.node_id, None,
        "no clap default: the file may set it"
    );
    assert!(!args.demo);

    let Command::Server(args) = ok(&["server", "--peers", "1=http://a:1,2=http://b:2/"]).command
    else {
        panic!("not server")
    };
    let peers: Vec<(u64, &str)> = args
        .settings
        .keys
        .peers
        .iter()
        .flatten()
        .map(|(id, url)| (*id, url.as_str()))
        .collect();
    assert_eq!(peers, [(1, "http://a:1/"), (2, "http://b:2/")]);
    let Command::Server(args) = ok(&["server", "--join", "http://a:1"]).command else {
        panic!("not server")
    };
    assert_eq!(args.join.as_ref().map(Url::as_str), Some("http://a:1/"));
    assert!(parse(&["server", "--join", "http://a:1", "--peers", "1=http://a:1"]).is_err());
}

#[test]
fn cluster_subcommands() {
    assert!(matches!(
        ok(&["cluster", "status"]).command,
        Command::Cluster(ClusterCommand::Status)
    ));
    assert!(matches!(
        ok(&["cluster", "join", "http://n4:7700", "--id", "4"]).command,
        Command::Cluster(ClusterCommand::Join { id: Some(4), .. })
    ));
    assert!(matches!(
        ok(&["cluster", "leave", "2"]).command,
        Command::Cluster(ClusterCommand::Leave { id: 2, .. })
    ));
    assert!(parse(&["cluster", "leave", "0"]).is_err());
    assert!(parse(&["cluster", "join", "n4:7700"]).is_err());
}

#[test]
fn bad_server_flags_are_usage_errors() {
    for bad in [
        &["server", "--listen", "nowhere"][..],
        &["server", "--listen", "127.0.0.1"],
        &["server", "--node-id", "0"],
        &["server", "--node-id", "-1"],
        &["server", "--node-name", "Bad Name"],
        &["server", "--advertise", "ftp://x"],
        &["server", "--max-running", "0"],
        &["server", "--snapshot-every", "0"],
        &["server", "--peers", "http://a:1"],
        &["server", "--peers", "0=http://a:1"],
        &["server", "--peers", "1=a:1"],
        &["server", "--cluster-secret", ""],
    ] {
        let err = parse(bad).expect_err(&format!("{bad:?} should be rejected"));
        assert_eq!(err.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn job_subcommands() {
    let Command::Job(JobCommand::Apply { files, format, .. }) = ok(&[
        "job", "apply", "-f", "a.toml", "--file", "-", "--format", "yaml",
    ])
    .command
    else {
        panic!("not apply")
    };
    assert_eq!(files, [PathBuf::from("a.toml"), PathBuf::from("-")]);
    assert_eq!(format, Some(FileFormat::Yaml));
    assert!(parse(&["job", "apply"]).is_err(), "-f is required");

    assert!(matches!(
        ok(&["job", "ls"]).command,
        Command::Job(JobCommand::Ls { .. })
    ));
    assert!(matches!(
        ok(&["job", "list"]).command,
        Command::Job(JobCommand::Ls { prefix: None })
    ));
    assert!(matches!(
        ok(&["job", "get", "x"]).command,
        Command::Job(JobCommand::Get { name }) if name == "x"
    ));
    assert!(matches!(
        ok(&["job", "rm", "x"]).command,
        Command::Job(JobCommand::Rm { name }) if name == "x"
    ));
    assert!(matches!(
        ok(&["job", "run", "x", "--wait"]).command,
        Command::Job(JobCommand::Run { name, wait: true, follow: false }) if name == "x"
    ));
    assert!(matches!(
        ok(&["job", "run", "x"]).command,
        Command::Job(JobCommand::Run { wait: false, .. })
    ));
    assert!(matches!(
        ok(&["job", "run", "x", "--follow"]).command,
        Command::Job(JobCommand::Run {
            wait: false,
            follow: true,
            ..
        })
    ));
    assert!(parse(&["job", "run", "x", "--follow", "--wait"]).is_err());
    assert!(matches!(
        ok(&["job", "logs", "x", "-f"]).command,
        Command::Job(JobCommand::Logs { name, follow: true }) if name == "x"
    ));
    assert!(matches!(
        ok(&["job", "logs", "x"]).command,
        Command::Job(JobCommand::Logs { follow: false, .. })
    ));
    assert!(matches!(
        ok(&["job", "pause", "x"]).command,
        Command::Job(JobCommand::Pause { .. })
    ));
    assert!(matches!(
        ok(&["job", "resume", "x"]).command,
        Command::Job(JobCommand::Resume { .. })
    ));
    assert!(matches!(
        ok(&["job", "history", "x"]).command,
        Command::Job(JobCommand::History { limit: 20, .. })
    ));
    assert!(matches!(
        ok(&["job", "history", "x", "--limit", "5"]).command,
        Command::Job(JobCommand::History { limit: 5, .. })
    ));
    assert!(parse(&["job", "history", "x", "--limit", "0"]).is_err());
    assert!(parse(&["job", "get"]).is_err(), "NAME is required");
}

#[test]
fn exec_subcommands_take_ulids() {
    let id = Ulid::generate();
    let s = id.to_string();
    assert!(matches!(
        ok(&["exec", "get", &s]).command,
        Command::Exec(ExecCommand::Get { id: got }) if got == id
    ));
    assert!(matches!(
        ok(&["exec", "logs", &s, "-f"]).command,
        Command::Exec(ExecCommand::Logs { follow: true, .. })
    ));
    assert!(matches!(
        ok(&["exec", "logs", &s]).command,
        Command::Exec(ExecCommand::Logs { follow: false, .. })
    ));
    assert!(matches!(
        ok(&["exec", "ls"]).command,
        Command::Exec(ExecCommand::Ls { status: None })
    ));
    assert!(matches!(
        ok(&["exec", "ls", "--status", "running"]).command,
        Command::Exec(ExecCommand::Ls {
            status: Some(crate::cli::ActiveStatus::Running)
        })
    ));
    assert!(parse(&["exec", "ls", "--status", "failed"]).is_err());
    assert!(matches!(
        ok(&["exec", "cancel", &s]).command,
        Command::Exec(ExecCommand::Cancel { .. })
    ));
    let err = parse(&["exec", "get", "not-an-id"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn workflow_and_run_subcommands() {
    assert!(matches!(
        ok(&["workflow", "apply", "-f", "ci.yaml"]).command,
        Command::Workflow(WorkflowCommand::Apply { files, format: None }) if files == [PathBuf::from("ci.yaml")]
    ));
    assert!(parse(&["workflow", "apply"]).is_err(), "-f is required");
    assert!(matches!(
        ok(&["workflow", "list"]).command,
        Command::Workflow(WorkflowCommand::Ls)
    ));
    assert!(matches!(
        ok(&["workflow", "run", "ci", "--follow"]).command,
        Command::Workflow(WorkflowCommand::Run { name, follow: true }) if name == "ci"
    ));
    assert!(matches!(
        ok(&["workflow", "runs", "ci"]).command,
        Command::Workflow(WorkflowCommand::Runs { limit: 20, .. })
    ));
    assert!(matches!(
        ok(&["workflow", "rm", "ci"]).command,
        Command::Workflow(WorkflowCommand::Rm { .. })
    ));
    let id = Ulid::generate();
    let s = id.to_string();
    assert!(matches!(
        ok(&["run", "get", &s]).command,
        Command::Run(RunCommand::Get { id: got }) if got == id
    ));
    assert!(matches!(
        ok(&["run", "artifacts", &s, "--download", "out"]).command,
        Command::Run(RunCommand::Artifacts { download: Some(dir), .. }) if dir == Path::new("out")
    ));
    assert_eq!(
        parse(&["run", "cancel", "nope"]).unwrap_err().exit_code(),
        2
    );
}

#[test]
fn kv_subcommands() {
    assert!(matches!(
        ok(&["kv", "get", "a/b"]).command,
        Command::Kv(KvCommand::Get { key }) if key == "a/b"
    ));
    assert!(matches!(
        ok(&["kv", "put", "k", "hello world", "--if-revision", "0"]).command,
        Command::Kv(KvCommand::Put { key, value, if_revision: Some(0) })
            if key == "k" && value == "hello world"
    ));
    assert!(matches!(
        ok(&["kv", "del", "k"]).command,
        Command::Kv(KvCommand::Del {
            if_revision: None,
            ..
        })
    ));
    assert!(matches!(
        ok(&["kv", "ls"]).command,
        Command::Kv(KvCommand::Ls { prefix }) if prefix.is_empty()
    ));
    assert!(matches!(
        ok(&["kv", "ls", "--prefix", "app/"]).command,
        Command::Kv(KvCommand::Ls { prefix }) if prefix == "app/"
    ));
    assert!(parse(&["kv", "put", "k"]).is_err(), "VALUE is required");
}

#[test]
fn print_config_takes_the_server_flags_and_config_talks_to_the_server() {
    let Command::Server(args) = ok(&[
        "server",
        "--print-config",
        "--node-id",
        "2",
        "--config",
        "c.toml",
    ])
    .command
    else {
        panic!("not server")
    };
    assert!(args.print_config);
    assert_eq!(args.settings.keys.node_id, Some(2));
    assert_eq!(args.settings.config, Some(PathBuf::from("c.toml")));
    assert!(matches!(
        ok(&["config", "show"]).command,
        Command::Config(ConfigCommand::Show)
    ));
    assert!(matches!(
        ok(&["config", "set", "max_running", "8"]).command,
        Command::Config(ConfigCommand::Set { key, value }) if key == "max_running" && value == "8"
    ));
    assert!(matches!(
        ok(&["config", "reset", "--all"]).command,
        Command::Config(ConfigCommand::Reset {
            key: None,
            all: true
        })
    ));
    assert!(parse(&["config", "reset"]).is_err(), "a key or --all");
    assert!(parse(&["config", "reset", "log", "--all"]).is_err());
    assert!(parse(&["config", "show", "--node-id", "2"]).is_err());
}

#[test]
fn unknown_commands_are_usage_errors() {
    assert_eq!(parse(&["frobnicate"]).unwrap_err().exit_code(), 2);
    assert_eq!(parse(&["job", "explode", "x"]).unwrap_err().exit_code(), 2);
}

#[test]
fn version_is_a_subcommand_and_a_flag() {
    assert!(matches!(ok(&["version"]).command, Command::Version));
    let err = parse(&["--version"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
}

#[test]
fn completion_takes_a_known_shell() {
    assert!(matches!(
        ok(&["completion", "zsh"]).command,
        Command::Completion {
            shell: crate::cli::CompletionShell::Zsh
        }
    ));
    assert!(parse(&["completion", "tcsh"]).is_err());
    assert!(parse(&["completion"]).is_err());
}

#[test]
fn job_apply_dry_run_and_ls_prefix() {
    assert!(matches!(
        ok(&["job", "apply", "-f", "a.toml", "--dry-run"]).command,
        Command::Job(JobCommand::Apply { dry_run: true, .. })
    ));
    assert!(matches!(
        ok(&["job", "ls", "--prefix", "ci-"]).command,
        Command::Job(JobCommand::Ls { prefix: Some(p) }) if p == "ci-"
    ));
}
