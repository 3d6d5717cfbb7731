//! docs/CLI.md is generated from the argument definitions: this test renders the
//! reference from `cli::Cli` and fails when the file differs. `ROTA_BLESS=1 cargo test
//! -p rota docs` rewrites it.

use clap::CommandFactory;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CLI.md");
const HEADER: &str = "# CLI reference\n\n\
Generated from the argument definitions (`crates/rota/src/cli.rs`); a test fails when \
this file and the code disagree (`ROTA_BLESS=1 cargo test -p rota docs` rewrites it).\n\n\
Every client command finds the server through `--server` or `ROTA_SERVER` \
(default `http://127.0.0.1:7700`), prints tables for people or JSON or YAML with `-o json` or `-o yaml`, \
and exits 0 on success, 1 with a one-line `error: ...` on stderr when the command \
failed, 2 on a usage error.\n";

fn render(cmd: &clap::Command, path: &str, out: &mut String) {
    let is_help = cmd.get_name() == "help";
    if is_help {
        return;
    }
    out.push_str(&format!("\n## `{path}`\n\n"));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        out.push_str(&format!("{about}\n\n"));
    }
    let mut cmd = cmd.clone();
    let usage = cmd.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    let usage = usage.strip_prefix(cmd.get_name()).unwrap_or(usage);
    out.push_str(&format!("```\n{path}{usage}\n```\n"));
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !args.is_empty() {
        out.push_str("\n| argument | meaning |\n|---|---|\n");
        for arg in args {
            let name = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("`-{s}, --{l}`"),
                (None, Some(l)) => format!("`--{l}`"),
                (Some(s), None) => format!("`-{s}`"),
                (None, None) => format!("`{}`", arg.get_id().as_str().to_uppercase()),
            };
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                help.push_str(&format!(" (default: `{}`)", defaults.join(" ")));
            }
            out.push_str(&format!("| {name} | {} |\n", help.replace('|', "\\|")));
        }
    }
    for sub in cmd.get_subcommands() {
        render(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

fn reference() -> String {
    let mut out = HEADER.to_string();
    let cmd = crate::cli::Cli::command();
    out.push_str("\n## Global options\n\n| argument | meaning |\n|---|---|\n");
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let long = arg.get_long().unwrap_or_default();
        let name = match arg.get_short() {
            Some(s) => format!("`-{s}, --{long}`"),
            None => format!("`--{long}`"),
        };
        out.push_str(&format!(
            "| {name} | {} |\n",
            arg.get_help().map(|h| h.to_string()).unwrap_or_default()
        ));
    }
    for sub in cmd.get_subcommands() {
        render(sub, &format!("rota {}", sub.get_name()), &mut out);
    }
    out
}

#[test]
fn docs_cli_md_matches_the_argument_definitions() {
    let expected = reference();
    if std::env::var_os("ROTA_BLESS").is_some() {
        std::fs::write(PATH, &expected).expect("write docs/CLI.md");
        return;
    }
    let actual = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/CLI.md is out of date with crates/rota/src/cli.rs; regenerate it with \
         `ROTA_BLESS=1 cargo test -p rota docs`"
    );
}
