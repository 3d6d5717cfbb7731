//! `rota watch`: the event stream (`GET /v1/watch`), one line per event; and
//! `rota event publish` (`POST /v1/events`).
//!
//! Several events may share a revision, and `Last-Event-ID` resumes *after* a
//! revision. So when the connection drops, the watch resumes after the revision
//! before the last one it printed and skips the events of that last revision it has
//! printed already (they come again in the same order): nothing is missed or
//! printed twice.

use anyhow::{bail, Context};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::Ctx;
use crate::cli::{EventCommand, OutputFormat, WatchArgs};
use crate::output;

/// Longest data summary on a human line.
const SUMMARY_CHARS: usize = 100;

/// Where the watch stands: the last printed revision and how many of its events
/// were printed.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    revision: u64,
    printed: usize,
}

pub async fn watch(ctx: &Ctx, args: WatchArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(since) = args.since {
        query.push(("since", since.to_string()));
    }
    if let Some(types) = &args.types {
        query.push(("type", types.clone()));
    }
    if let Some(prefix) = &args.prefix {
        query.push(("prefix", prefix.clone()));
    }
    let mut position: Option<Position> = None;
    let mut caught_up = false;
    loop {
        // On a reconnect, `since` is replaced by where the watch stands.
        let (url, last_id, skip) = match position {
            None => (
                ctx.client.url_with_query(["v1", "watch"], &query),
                None,
                None,
            ),
            Some(p) => {
                let query: Vec<_> = query
                    .iter()
                    .filter(|(k, _)| *k != "since")
                    .cloned()
                    .collect();
                let url = ctx.client.url_with_query(["v1", "watch"], &query);
                let skip = (p.printed > 0).then_some(p);
                let after = if p.printed > 0 {
                    p.revision - 1
                } else {
                    p.revision
                };
                (url, Some(after), skip)
            }
        };
        let response = ctx.client.get_events(url, last_id).await?;
        let mut skip = skip;
        let mut body = response.bytes_stream();
        let mut text = String::new();
        let ended = loop {
            if let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let Some((event, data)) = parse_frame(&block) else {
                    continue;
                };
                match event.as_str() {
                    "caught_up" => {
                        if !caught_up && !ctx.machine() {
                            eprintln!(
                                "-- caught up at revision {}",
                                output::text(&data["revision"])
                            );
                        }
                        caught_up = true;
                        // An empty resume means the position was a whole revision.
                        if let (Some(s), Some(rev)) = (skip.take(), data["revision"].as_u64()) {
                            if rev < s.revision {
                                skip = Some(s);
                            }
                        }
                        if position.is_none() {
                            position = data["revision"].as_u64().map(|revision| Position {
                                revision,
                                printed: 0,
                            });
                        }
                    }
                    "error" => {
                        let code = data["code"].as_str().unwrap_or_default().to_string();
                        let message = output::text(&data["message"]);
                        if code == "compacted" {
                            bail!("the watch cannot go on: {message}");
                        }
                        break Some(format!("{code}: {message}"));
                    }
                    _ => {
                        let revision = data["revision"].as_u64().unwrap_or_default();
                        if let Some(s) = &mut skip {
                            if revision == s.revision && s.printed > 0 {
                                s.printed -= 1;
                                continue;
                            }
                            skip = None;
                        }
                        print_event(ctx, &data)?;
                        position = Some(match position {
                            Some(p) if p.revision == revision => Position {
                                revision,
                                printed: p.printed + 1,
                            },
                            _ => Position {
                                revision,
                                printed: 1,
                            },
                        });
                    }
                }
                continue;
            }
            match body.next().await {
                Some(Ok(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(e)) => break Some(ctx.client.transport(e).to_string()),
                None => break None,
            }
        };
        let why = ended.unwrap_or_else(|| "the server closed the stream".to_string());
        eprintln!("-- {why}; reconnecting");
        if position.is_none() {
            // Not even caught up: start again as asked.
            continue;
        }
    }
}

/// The `event` and parsed `data` of one SSE block (`None` for comments).
pub(super) fn parse_frame(block: &str) -> Option<(String, Value)> {
    let mut event = String::from("message");
    let mut data = None;
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = serde_json::from_str(v).ok();
        }
    }
    Some((event, data?))
}

fn print_event(ctx: &Ctx, event: &Value) -> anyhow::Result<()> {
    match ctx.output {
        // One event per line (JSON lines); with YAML one document per event.
        OutputFormat::Json => return Ok(output::line(&event.to_string())?),
        OutputFormat::Yaml => {
            output::line("---")?;
            return Ok(ctx.data(event)?);
        }
        OutputFormat::Table => {}
    }
    let summary = match &event["data"] {
        Value::Object(map) if map.is_empty() => String::new(),
        Value::Null => String::new(),
        data => crate::error::one_line(&data.to_string(), SUMMARY_CHARS),
    };
    output::line(&format!(
        "{:>8}  {}  {:<20}  {}  {}",
        output::text(&event["revision"]),
        output::time(&event["at"]),
        output::text(&event["type"]),
        output::text(&event["key"]),
        summary
    ))?;
    Ok(())
}

pub async fn event(ctx: &Ctx, cmd: EventCommand) -> anyhow::Result<()> {
    let EventCommand::Publish { event_type, data } = cmd;
    let data: Value = match data {
        None => Value::Object(Default::default()),
        Some(text) => serde_json::from_str(&text)
            .with_context(|| format!("--data: {text:?} is not JSON (expected an object)"))?,
    };
    let body = serde_json::json!({"type": event_type, "data": data});
    let url = ctx.client.url(["v1", "events"]);
    let answer = ctx.client.write(Method::POST, url, Some(&body)).await?;
    if ctx.machine() {
        return Ok(ctx.data(&answer.body)?);
    }
    output::line(&format!(
        "{event_type} published at revision {}",
        output::text(&answer.body["revision"])
    ))?;
    Ok(())
}
