//! The command line: every subcommand and flag of `rota`, as clap derive types.
//!
//! Parsing only checks shapes (types, ranges, names); what a command does lives in
//! [`crate::commands`] and, for `rota server`, in [`crate::server`]. Flags that the
//! config file can also set are `Option`s without clap defaults, so that
//! [`crate::config`] can tell "given on the command line" from "not given" and
//! apply flag > file > default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Url;
use ulid::Ulid;

use crate::config::{check_advertise, check_node_id, flag, Settings};

/// Where client commands look for the server when neither `--server` nor
/// `ROTA_SERVER` says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// rota: a fault-tolerant scheduler for background jobs. One binary: the server
/// (`rota server`) and the client for everything else.
#[derive(Debug, Parser)]
#[command(name = "rota", version, propagate_version = true)]
pub struct Cli {
    /// URL of the rota server client commands talk to.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "ROTA_SERVER",
        value_name = "URL",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,

    /// How results are printed: tables for people, JSON for scripts.
    #[arg(
        short = 'o',
        long,
        global = true,
        help_heading = "Global options",
        value_enum,
        value_name = "FORMAT",
        default_value_t = OutputFormat::Table
    )]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a rota node (API, scheduler and storage) in the foreground.
    Server(ServerArgs),
    /// Create, inspect, run and delete jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Inspect, follow and cancel executions (runs of a job).
    #[command(subcommand)]
    Exec(ExecCommand),
    /// Read and write the linearizable key/value space.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Follow the cluster's events (jobs, executions, KV, published events) as
    /// they happen, resuming where it was when the connection drops.
    Watch(WatchArgs),
    /// Publish external events (for watchers and `on` triggers).
    #[command(subcommand)]
    Event(EventCommand),
    /// Show the server configuration that `rota server` would use here.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the cluster's members and leader; add or remove members.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `rota server`: the settings that `rota.toml` can also hold, plus start-up actions.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub settings: ServerFlags,

    /// Create (or replace) the demo jobs of `examples/demo.toml` on start.
    #[arg(long)]
    pub demo: bool,

    /// Join an existing cluster through one of its members: a fresh node starts
    /// empty and asks that member to add it (a node that is already a member
    /// ignores this).
    #[arg(long, value_name = "URL", value_parser = flag(check_advertise), conflicts_with = "peers")]
    pub join: Option<Url>,
}

/// Server settings given as flags (each overrides the same key of the config
/// file), and the config file to read.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerFlags {
    #[command(flatten)]
    pub keys: Settings,

    /// Config file (TOML) [default: rota.toml when it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create or replace the jobs of one or more files (TOML, YAML or JSON).
    Apply {
        /// A job file; `-` reads standard input (then --format is required).
        #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Format of the files, instead of guessing it from their extension.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FileFormat>,
    },
    /// List jobs.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one job, with its next run and last execution.
    Get { name: String },
    /// Delete a job and its history.
    #[command(visible_alias = "delete")]
    Rm { name: String },
    /// Run a job now; prints the execution id.
    Run {
        name: String,
        /// Wait until the run ends; exit non-zero unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a job from firing on its schedule (manual runs still work).
    Pause { name: String },
    /// Let a paused job fire on its schedule again.
    Resume { name: String },
    /// A job's executions, newest first.
    History {
        name: String,
        /// Most executions to show (1-1000).
        #[arg(long, value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Toml,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ExecCommand {
    /// Show one execution.
    Get { id: Ulid },
    /// Print an execution's output (stdout and stderr, interleaved).
    Logs {
        id: Ulid,
        /// Keep printing output as it arrives until the run ends.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Cancel a queued or running execution.
    Cancel { id: Ulid },
}

/// `rota watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Start after this revision (replaying what the event log keeps after it);
    /// without it, only events from now on.
    #[arg(long, value_name = "REV")]
    pub since: Option<u64>,
    /// Only these event types: a comma list, each exact or ending in `*`
    /// (e.g. `execution.*,kv.put`).
    #[arg(long = "type", value_name = "LIST")]
    pub types: Option<String>,
    /// Only events whose key (job name, execution id, KV key, ...) starts with this.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Publish an event of your own type (not one rota publishes itself).
    Publish {
        /// Its type: dot-separated words of a-z, 0-9, _ and -, e.g. deploy.finished.
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// Its data: a JSON object [default: {}].
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a key's value (`-o json`: the whole entry with its revisions).
    Get { key: String },
    /// Set a key.
    Put {
        key: String,
        value: String,
        /// Only if the key's mod_revision is N (0: only if the key does not exist).
        #[arg(long, value_name = "N")]
        if_revision: Option<u64>,
    },
    /// Delete a key.
    #[command(visible_alias = "rm")]
    Del {
        key: String,
        /// Only if the key's mod_revision is N.
        #[arg(long, value_name = "N")]
        if_revision: Option<u64>,
    },
    /// List keys (and values) in key order.
    #[command(visible_alias = "list")]
    Ls {
        /// Only keys starting with this.
        #[arg(long, value_name = "P", default_value = "")]
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, roles, leader, term and indexes.
    Status,
    /// Add the node at URL (started with `rota server --join` or empty) as a voter.
    Join {
        /// URL of the new node (its advertise URL).
        #[arg(value_parser = flag(check_advertise))]
        url: Url,
        /// Its node id [default: asked from the node itself].
        #[arg(long, value_name = "N", value_parser = flag(check_node_id))]
        id: Option<u64>,
        #[command(flatten)]
        secret: ClusterSecret,
    },
    /// Remove a member by node id.
    Leave {
        #[arg(value_parser = flag(check_node_id))]
        id: u64,
        #[command(flatten)]
        secret: ClusterSecret,
    },
}

/// `--cluster-secret` of the membership commands.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterSecret {
    /// The cluster secret, when the cluster has one.
    #[arg(
        long,
        value_name = "SECRET",
        env = "ROTA_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective server configuration (from the config file and these
    /// flags) with the source of each value.
    Show(ServerFlags),
}

#[cfg(test)]
mod tests {
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
        assert!(parse(&["-o", "yaml", "job", "ls"]).is_err());
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

        let Command::Server(args) =
            ok(&["server", "--peers", "1=http://a:1,2=http://b:2/"]).command
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
        let Command::Job(JobCommand::Apply { files, format }) = ok(&[
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
            Command::Job(JobCommand::Ls)
        ));
        assert!(matches!(
            ok(&["job", "list"]).command,
            Command::Job(JobCommand::Ls)
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
            Command::Job(JobCommand::Run { name, wait: true }) if name == "x"
        ));
        assert!(matches!(
            ok(&["job", "run", "x"]).command,
            Command::Job(JobCommand::Run { wait: false, .. })
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
            ok(&["exec", "cancel", &s]).command,
            Command::Exec(ExecCommand::Cancel { .. })
        ));
        let err = parse(&["exec", "get", "not-an-id"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
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
    fn config_show_takes_the_server_flags() {
        let Command::Config(ConfigCommand::Show(flags)) =
            ok(&["config", "show", "--node-id", "2", "--config", "c.toml"]).command
        else {
            panic!("not config show")
        };
        assert_eq!(flags.keys.node_id, Some(2));
        assert_eq!(flags.config, Some(PathBuf::from("c.toml")));
    }

    #[test]
    fn unknown_commands_are_usage_errors() {
        assert_eq!(parse(&["frobnicate"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["job", "explode", "x"]).unwrap_err().exit_code(), 2);
    }
}
