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

    /// API token sent as `Authorization: Bearer TOKEN` (see `rota token create`).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "ROTA_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// PEM file of the CA that signed the server's certificate, for an `https://`
    /// server whose certificate a private CA signed (see `rota cert`).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "ROTA_CA_CERT",
        value_name = "FILE"
    )]
    pub ca_cert: Option<PathBuf>,

    /// How results are printed: tables for people, JSON or YAML for scripts.
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
    Yaml,
}

// Parsed once per process: the size of `Server` (every server setting) costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Create, inspect, run and delete workflows (jobs chained by `needs`).
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Inspect and cancel workflow runs, and fetch their artifacts.
    #[command(subcommand)]
    Run(RunCommand),
    /// Target sets: what jobs fan out to, as discovered (static, file, DNS,
    /// Kubernetes). Without a subcommand: `ls`.
    Targets(TargetsArgs),
    /// Read and write the linearizable key/value space.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Follow the cluster's events (jobs, executions, KV, published events) as
    /// they happen, resuming where it was when the connection drops.
    Watch(WatchArgs),
    /// Publish external events (for watchers and `on` triggers).
    #[command(subcommand)]
    Event(EventCommand),
    /// Show the server's settings; change the cluster's dynamic ones.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// API tokens: create (printed once), list, revoke; and the caller's own.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the cluster's members and leader; add or remove members.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print this client's version and the server's.
    Version,
    /// Print a completion script for a shell, e.g. `source <(rota completion bash)`;
    /// zsh: put `rota completion zsh` in a file `_rota` on `$fpath`; fish:
    /// `rota completion fish > ~/.config/fish/completions/rota.fish`.
    Completion {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Read a Prow deck's jobs and print them as a table, as build records (JSON)
    /// or as InfluxDB line protocol. Talks to the deck only, not to a rota server.
    Prow(crate::commands::prow::ProwArgs),
    /// Create a private CA and node certificates for a test cluster (TLS on the
    /// API and between peers). Works offline, on files only.
    #[command(subcommand)]
    Cert(crate::commands::cert::CertCommand),
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

    /// Serve on an address other than loopback although no API token exists
    /// (anyone who reaches the port could then run commands on every node).
    #[arg(long, env = "ROTA_INSECURE")]
    pub insecure: bool,

    /// Print the static settings this node would start with (defaults, config
    /// file, ROTA_* variables, flags) with the source of each, and exit without
    /// starting; `-o json|yaml` for machines.
    #[arg(long)]
    pub print_config: bool,
}

/// Server settings given as flags (each overrides the same key of the config
/// file), and the config file to read.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerFlags {
    #[command(flatten)]
    pub keys: Settings,

    /// Config file (TOML) [default: the first rota.toml in ./, $XDG_CONFIG_HOME/rota/, /etc/rota/].
    ///
    /// Settings come from their defaults, then this file, then ROTA_* variables
    /// (ROTA_MAX_RUNNING for max_running), then flags.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create or replace the jobs of one or more files (TOML, YAML or JSON).
    ///
    /// A job equal to the stored one is left as it is. The fields only the server
    /// sets (created_at, updated_at, revision, next_run_at, last_event_revision,
    /// last_execution) are ignored, so what `job get -o yaml` or `-o json` prints
    /// applies as-is.
    Apply {
        /// A job file; `-` reads standard input (then --format is required).
        #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Format of the files, instead of guessing it from their extension.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FileFormat>,
        /// Say for each job whether it would be created, updated or left unchanged
        /// (with --prune, also which jobs would be deleted), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Mark every job of the files as one of this apply set: the jobs these
        /// files own (stored in the job's metadata as "rota/apply-set"). Give the
        /// same name every time the files are applied.
        #[arg(long, value_name = "NAME")]
        apply_set: Option<String>,
        /// Also delete the jobs of the --apply-set that the files no longer hold, in
        /// the same write as the apply (both or neither). Jobs of other sets, and
        /// jobs created without a set, are never deleted.
        #[arg(long, requires = "apply_set")]
        prune: bool,
    },
    /// List jobs.
    #[command(visible_alias = "list")]
    Ls {
        /// Only jobs whose name starts with this.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
    },
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
        /// Print the run's output as it arrives (every attempt) until the run ends;
        /// exit non-zero unless it succeeded. With `-o json` the output goes to
        /// stderr and the ended execution to stdout.
        #[arg(long, conflicts_with = "wait")]
        follow: bool,
    },
    /// Print the output of a job's latest execution.
    Logs {
        name: String,
        /// Keep printing output as it arrives until the run ends.
        #[arg(short = 'f', long)]
        follow: bool,
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
        /// Only executions older than this one (an execution id: the last id of
        /// the previous page, to page back through the history).
        #[arg(long, value_name = "ID")]
        before: Option<ulid::Ulid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Create or replace the workflows of one or more files (TOML, YAML or JSON).
    Apply {
        /// A workflow file; `-` reads standard input (then --format is required).
        #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Format of the files, instead of guessing it from their extension.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FileFormat>,
    },
    /// List workflows.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one workflow and its jobs.
    Get { name: String },
    /// Delete a workflow, its jobs and its runs.
    #[command(visible_alias = "delete")]
    Rm { name: String },
    /// Run a workflow now; prints the run id.
    Run {
        name: String,
        /// Print each job's status as it changes until the run ends; exit non-zero
        /// unless it succeeded.
        #[arg(long)]
        follow: bool,
    },
    /// A workflow's runs, newest first.
    Runs {
        name: String,
        /// Most runs to show (1-1000).
        #[arg(long, value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct TargetsArgs {
    #[command(subcommand)]
    pub command: Option<TargetsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// Create or replace the target sets of one or more files (TOML, YAML or JSON).
    Apply {
        /// A target set file; `-` reads standard input (then --format is required).
        #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Format of the files, instead of guessing it from their extension.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FileFormat>,
    },
    /// List target sets with their number of targets, last refresh and error.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one target set and its targets.
    Get { name: String },
    /// Delete a target set (its discovery stops).
    #[command(visible_alias = "delete")]
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Show a workflow run: its status and each job's.
    Get { id: Ulid },
    /// Cancel a run: waiting jobs are cancelled, running ones stopped.
    Cancel { id: Ulid },
    /// List a run's artifacts, or download them.
    Artifacts {
        id: Ulid,
        /// Download every file into DIR/<artifact>/<path>.
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
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
    /// List the queued and running executions of every job, oldest first.
    #[command(visible_alias = "list")]
    Ls {
        /// Only executions with this status.
        #[arg(long, value_enum, value_name = "STATUS")]
        status: Option<ActiveStatus>,
    },
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

/// The shells `rota completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The statuses `exec ls` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActiveStatus {
    Running,
    Queued,
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
pub enum TokenCommand {
    /// Create a token and print its secret, which is not shown again (admin).
    Create {
        /// Unique name, e.g. ci-deployer.
        #[arg(long)]
        name: String,
        /// viewer (reads, watch), operator (also run, pause, resume, cancel, KV
        /// writes, events) or admin (everything).
        #[arg(long)]
        role: String,
    },
    /// List tokens: names and roles, never secrets (admin).
    Ls,
    /// Revoke a token: requests with it are refused from then on (admin).
    Revoke { name: String },
    /// Show the token this client sends and its role.
    Whoami,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting of the server asked (--server): its effective value, where
    /// it came from (default, file, env, flag, dynamic) and whether `config set`
    /// may change it. A node's own static settings: `rota server --print-config`.
    Show,
    /// Set a dynamic setting for the whole cluster, e.g. `rota config set
    /// max_running 8`, `rota config set log info,rota_scheduler=debug` or
    /// `rota config set default_retry '{"max_attempts": 3}'`; kept across restarts.
    Set {
        /// One of the dynamic settings (`rota config show` marks them).
        key: String,
        /// The value: JSON (a number, an object) or plain text (a duration, a filter).
        value: String,
    },
    /// Return a dynamic setting, or with --all every one, to its static value.
    Reset {
        #[arg(required_unless_present = "all")]
        key: Option<String>,
        /// Reset every dynamic setting.
        #[arg(long, conflicts_with = "key")]
        all: bool,
    },
}

#[cfg(test)]
mod tests;
