//! `rota prow`: read a Prow deck's jobs and print them as a table, as build
//! records (JSON) or as InfluxDB line protocol. It talks to the deck only, not to
//! a rota server.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, ValueEnum};
use rota_core::HumanDuration;
use rota_prow::{deck_url, glob_match, influx_lines, read_deck, Build, Filter};
use serde_json::json;

use crate::cli::OutputFormat;
use crate::output;

/// Prow's job types.
const JOB_TYPES: [&str; 4] = ["presubmit", "postsubmit", "periodic", "batch"];

/// `rota prow`.
#[derive(Debug, Clone, Args)]
pub struct ProwArgs {
    /// A deck UI URL, such as `https://prow.example/?job=*oadp*` (its `job` parameter
    /// is the job glob), or a deck's /prowjobs.js URL (with or without
    /// `?var=allBuilds&omit=...`).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Only jobs whose name matches this glob (`*` any run of characters, `?` one
    /// character) [default: the URL's `job` parameter, else every job].
    #[arg(long, value_name = "GLOB")]
    pub job: Option<String>,
    /// Only jobs of these types (presubmit, postsubmit, periodic, batch); repeat
    /// the flag or give a comma list.
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(JOB_TYPES))]
    pub types: Vec<String>,
    /// Only jobs in these states (Prow's: scheduling, triggered, pending, success,
    /// failure, aborted, error); repeat the flag or give a comma list.
    #[arg(long = "state", value_name = "STATE", value_delimiter = ',')]
    pub states: Vec<String>,
    /// Longest the deck may take to send the whole job list (1ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// human: a table; json: `{"items": [build records]}`; influx: InfluxDB line protocol
    /// (measurement `build`) [default: human, or json with -o json].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ProwFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProwFormat {
    Human,
    Json,
    Influx,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d: HumanDuration = text.parse()?;
    if d.0 < Duration::from_millis(1) || d.0 > Duration::from_secs(3600) {
        return Err(format!("{text} is out of range; accepted: 1ms to 1h"));
    }
    Ok(d.0)
}

pub async fn run(args: ProwArgs, output: OutputFormat) -> anyhow::Result<()> {
    let deck = deck_url(&args.url)?;
    let filter = Filter {
        job_glob: args.job.or(deck.job.clone()),
        types: args.types,
        states: args.states,
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("rota/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let parsed = read_deck(&client, &deck, args.timeout).await?;
    // A job the glob would not keep is no concern of this command; one without
    // a name might be.
    for skipped in &parsed.skipped {
        let wanted = match (&filter.job_glob, &skipped.job) {
            (Some(glob), Some(job)) => glob_match(glob, job),
            _ => true,
        };
        if wanted {
            eprintln!("warning: skipped {skipped}");
        }
    }
    let builds = filter.apply(parsed.builds);
    let format = args.format.unwrap_or(match output {
        OutputFormat::Table => ProwFormat::Human,
        OutputFormat::Json | OutputFormat::Yaml => ProwFormat::Json,
    });
    // Build records as YAML with `-o yaml` (`--format json` asks for JSON itself).
    let records = match (args.format, output) {
        (None, OutputFormat::Yaml) => OutputFormat::Yaml,
        _ => OutputFormat::Json,
    };
    match format {
        ProwFormat::Human => output::line(&table(&builds)),
        ProwFormat::Json => output::data(records, &json!({ "items": builds })),
        ProwFormat::Influx => {
            let lines = influx_lines(&builds);
            output::line(lines.strip_suffix('\n').unwrap_or(&lines))
        }
    }
    .context("writing output")
}

fn table(builds: &[Build]) -> String {
    let now = Utc::now();
    let rows = builds
        .iter()
        .map(|b| {
            let record = serde_json::to_value(b).unwrap_or_default();
            let pr = match (&b.org, &b.repo, b.pull_request) {
                (Some(org), Some(repo), Some(n)) => format!("{org}/{repo}#{n}"),
                (_, _, Some(n)) => format!("#{n}"),
                (Some(org), Some(repo), None) => format!("{org}/{repo}"),
                _ => "-".to_string(),
            };
            vec![
                b.job.clone(),
                b.job_type.clone(),
                b.state.clone(),
                pr,
                output::time(&record["started_at"]),
                output::run_duration(&record, now),
                output::text(&record["build_id"]),
            ]
        })
        .collect();
    output::table(
        &[
            "JOB", "TYPE", "STATE", "REPO", "STARTED", "DURATION", "BUILD",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn flags() {
        use clap::Parser;

        use crate::cli::{Cli, Command};
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["rota", "prow"].iter().chain(args)).map(|cli| match cli.command {
                Command::Prow(args) => args,
                other => panic!("{other:?}"),
            })
        };
        let args = parse(&[
            "--url",
            "https://d/?job=*x*",
            "--type",
            "presubmit,periodic",
            "--type",
            "batch",
            "--state",
            "success",
            "--timeout",
            "5s",
            "--format",
            "influx",
        ])
        .unwrap();
        assert_eq!(args.types, ["presubmit", "periodic", "batch"]);
        assert_eq!(args.states, ["success"]);
        assert_eq!(args.timeout, Duration::from_secs(5));
        assert_eq!(args.format, Some(ProwFormat::Influx));
        assert_eq!(args.job, None);
        let args = parse(&["--url", "u"]).unwrap();
        assert_eq!((args.timeout, args.format), (Duration::from_secs(30), None));
        assert!(parse(&["--url", "u", "--type", "nightly"]).is_err());
        assert!(parse(&["--url", "u", "--format", "yaml"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_timeout("0s")
            .unwrap_err()
            .contains("accepted: 1ms to 1h"));
        assert!(parse_timeout("2h").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn the_table_shows_repo_pr_and_a_running_duration() {
        let start = Utc.with_ymd_and_hms(2026, 12, 3, 10, 14, 55).unwrap();
        let done = Build {
            build_id: "1996".into(),
            job: "pull-ci-a".into(),
            job_type: "presubmit".into(),
            state: "success".into(),
            state_int: 0,
            org: Some("openshift".into()),
            repo: Some("oadp-operator".into()),
            pull_request: Some(1842),
            started_at: start,
            finished_at: Some(start + chrono::Duration::seconds(5865)),
            duration_s: Some(5865.0),
            log_url: None,
            prowjob_url: None,
        };
        let running = Build {
            build_id: String::new(),
            job: "periodic-b".into(),
            job_type: "periodic".into(),
            state: "pending".into(),
            state_int: 1,
            pull_request: None,
            finished_at: None,
            duration_s: None,
            ..done.clone()
        };
        let text = table(&[done, running]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("JOB"), "{text}");
        assert!(lines[1].contains("openshift/oadp-operator#1842"), "{text}");
        assert!(lines[1].contains("2026-12-03T10:14:55Z"), "{text}");
        assert!(lines[1].contains("1h37m"), "{text}");
        assert!(lines[1].ends_with("1996"), "{text}");
        assert!(lines[2].contains("…"), "{text}");
        assert!(lines[2].ends_with('-'), "{text}");
    }
}
