//! The `file` provider, Prometheus file_sd: JSON or YAML files of groups, each file
//! a source of its own.
//!
//! Every poll (1 s) it lists the files the patterns name (a glob may only be in the
//! last path component) and stats them; a file whose modification time or size
//! changed, or that is new, is read again, and every file is read again each
//! `refresh_interval` whatever its stat says. A file that cannot be read or parsed
//! reports an error (the manager keeps its last good targets); a file that went
//! away reports an empty list. Polling is portable and cheap for the handful of
//! files a set names, and needs no watcher that can miss events.

mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rota_core::error::chain;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use parse::{parse, Format};

use crate::error::DiscoveryError;
use crate::{Provider, Update};
use rota_core::glob;

/// How often the files are stat'ed for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads file_sd files and reports each one's targets when it changes.
#[derive(Debug, Clone)]
pub struct FileProvider {
    patterns: Vec<String>,
    refresh: Duration,
    poll: Duration,
}

impl FileProvider {
    /// A provider of the files `patterns` name (checked by
    /// [`rota_core::targets::FileSpec::validate`]), re-read at least every `refresh`.
    pub fn new(patterns: Vec<String>, refresh: Duration) -> Self {
        Self {
            patterns,
            refresh,
            poll: POLL_INTERVAL,
        }
    }

    /// The same provider polling every `poll` instead of every second.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }
}

impl Provider for FileProvider {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        async move {
            let mut files = Files::new(self.patterns);
            let mut next_refresh = Instant::now() + self.refresh;
            loop {
                let force = Instant::now() >= next_refresh;
                if force {
                    next_refresh = Instant::now() + self.refresh;
                }
                let updates = files.scan(force).await;
                for update in &updates {
                    debug!(source = %update.source, ok = update.targets.is_ok(), "file_sd update");
                }
                if !crate::send_all(&tx, updates, &stop).await {
                    return;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(self.poll) => {}
                }
            }
        }
        .boxed()
    }
}

/// What a file looked like when it was last read: `None` when it could not be
/// stat'ed (or is not a file).
type Stamp = Option<FileStamp>;

/// Modification time and size, plus (on Unix) the inode change time, which also
/// moves when only the permissions change: a file made unreadable is re-read and
/// reports its error at the next poll, not at the next refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    changed: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let changed = {
            use std::os::unix::fs::MetadataExt;
            (meta.ctime(), meta.ctime_nsec())
        };
        #[cfg(not(unix))]
        let changed = (0, 0);
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            changed,
        }
    }
}

/// The files of one provider and what was last seen of each.
struct Files {
    patterns: Vec<String>,
    /// Source name → its stamp when last read.
    known: BTreeMap<String, Stamp>,
    /// Patterns whose directory could not be listed last time (their error is
    /// cleared once it can be).
    unlisted: BTreeSet<String>,
    scanned: bool,
}

impl Files {
    fn new(patterns: Vec<String>) -> Self {
        Self {
            patterns,
            known: BTreeMap::new(),
            unlisted: BTreeSet::new(),
            scanned: false,
        }
    }

    /// One poll: the updates of the files that are new, changed or gone (all of
    /// them when `force`).
    async fn scan(&mut self, force: bool) -> Vec<Update> {
        let mut updates = Vec::new();
        let mut present: BTreeMap<String, (PathBuf, Stamp)> = BTreeMap::new();
        let mut listing_failed = false;
        for pattern in &self.patterns {
            let candidates = match expand(pattern).await {
                Ok(candidates) => candidates,
                Err(e) => {
                    // Files under a directory that cannot be listed may well still
                    // be there: report the error and remove nothing this time.
                    listing_failed = true;
                    self.unlisted.insert(pattern.clone());
                    updates.push(Update {
                        source: pattern.clone(),
                        targets: Err(chain(&e)),
                    });
                    continue;
                }
            };
            if self.unlisted.remove(pattern) {
                updates.push(Update {
                    source: pattern.clone(),
                    targets: Ok(Vec::new()),
                });
            }
            // A path named literally is a source whatever is there; a glob only
            // picks files.
            let literal = !is_glob(pattern);
            let mut matched = false;
            for (source, path) in candidates {
                let stamp = match tokio::fs::metadata(&path).await {
                    Ok(meta) if meta.is_file() => Some(FileStamp::of(&meta)),
                    Ok(_) if literal => None, // reading it says why
                    Ok(_) => continue,        // a directory whose name matches the glob
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(_) => None, // reading it says why
                };
                matched = true;
                present.insert(source, (path, stamp));
            }
            if !matched && !self.scanned {
                // Tells the manager this part of the set is known to be empty, so
                // a set of missing files is reported (empty) instead of never.
                updates.push(Update {
                    source: pattern.clone(),
                    targets: Ok(Vec::new()),
                });
            }
        }
        self.scanned = true;

        for (source, (path, stamp)) in &present {
            if !force && self.known.get(source) == Some(stamp) {
                continue;
            }
            self.known.insert(source.clone(), *stamp);
            updates.push(Update {
                source: source.clone(),
                targets: read(source, path).await.map_err(|e| chain(&e)),
            });
        }
        if !listing_failed {
            let gone: Vec<String> = self
                .known
                .keys()
                .filter(|s| !present.contains_key(*s))
                .cloned()
                .collect();
            for source in gone {
                self.known.remove(&source);
                updates.push(Update {
                    source,
                    targets: Ok(Vec::new()),
                });
            }
        }
        updates
    }
}

/// Whether the last component of `pattern` is a glob.
fn is_glob(pattern: &str) -> bool {
    Path::new(pattern)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(glob::has_glob)
}

/// The files `pattern` may name now, as (source name, path). A literal path is
/// returned whether or not it exists.
async fn expand(pattern: &str) -> Result<Vec<(String, PathBuf)>, DiscoveryError> {
    let path = Path::new(pattern);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(vec![(pattern.to_string(), path.to_path_buf())]);
    };
    if !glob::has_glob(name) {
        return Ok(vec![(pattern.to_string(), path.to_path_buf())]);
    }
    let parent = path.parent().unwrap_or(Path::new(""));
    let dir = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let list_error = |source| DiscoveryError::ListDir {
        dir: dir.display().to_string(),
        source,
    };
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(list_error(e)),
    };
    let mut found = BTreeSet::new();
    while let Some(entry) = entries.next_entry().await.map_err(list_error)? {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue; // not UTF-8: cannot be a source name
        };
        if glob::matches(name, file_name) {
            let path = parent.join(file_name);
            found.insert((path.display().to_string(), path));
        }
    }
    Ok(found.into_iter().collect())
}

async fn read(
    source: &str,
    path: &Path,
) -> Result<Vec<rota_core::targets::Target>, DiscoveryError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source_err| DiscoveryError::Read {
            path: source.to_string(),
            source: source_err,
        })?;
    parse(source, &bytes)
}

#[cfg(test)]
mod tests;
