//! The files that runs write as they happen, read back to measure lag.
//!
//! Two writers append to them: rota's `record` executor
//! (`<job> <execution_id> <attempt> <scheduled_at ns> <handed_at ns>`) and the shell
//! probe command of [`shell_probe_command`] (`<job> <scheduled_at RFC 3339>
//! <child clock ns>`). Both append whole lines with `O_APPEND`, so a reader sees
//! complete lines plus, at worst, one line still being written at the end.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::BenchError;

/// One run as seen by its file: which job, for which instant, and when it reached
/// the executor (`record`) or its process (`shell`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub job: String,
    pub scheduled_ns: i128,
    pub at_ns: i128,
}

impl Stamp {
    pub fn lag_ns(&self) -> i128 {
        self.at_ns - self.scheduled_ns
    }
}

/// Which writer produced a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampFormat {
    Record,
    Shell,
}

/// A shell command line that appends `<job> <scheduled_at> <now ns>` to `path`. The
/// clock is read by `date` in the child, so the lag includes process start-up; one
/// `printf` makes one `write`.
pub fn shell_probe_command(path: &Path) -> String {
    format!(
        "printf '%s %s %s\\n' \"$ROTA_JOB\" \"$ROTA_SCHEDULED_AT\" \"$(date +%s%N)\" >> '{}'",
        path.display()
    )
}

fn parse_ns(field: &str, what: &str) -> Result<i128, String> {
    field
        .parse::<i128>()
        .map_err(|_| format!("{what} {field:?} is not a whole number of nanoseconds"))
}

/// Parses one complete line (without its newline).
pub fn parse_line(line: &str, format: StampFormat) -> Result<Stamp, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match format {
        StampFormat::Record => {
            let [job, _execution, _attempt, scheduled, handed] = fields[..] else {
                return Err(format!("expected 5 fields, found {}", fields.len()));
            };
            Ok(Stamp {
                job: job.to_string(),
                scheduled_ns: parse_ns(scheduled, "scheduled_at")?,
                at_ns: parse_ns(handed, "handed_at")?,
            })
        }
        StampFormat::Shell => {
            let [job, scheduled, child] = fields[..] else {
                return Err(format!("expected 3 fields, found {}", fields.len()));
            };
            let scheduled = chrono::DateTime::parse_from_rfc3339(scheduled)
                .map_err(|e| format!("scheduled_at {scheduled:?} is not RFC 3339: {e}"))?;
            let scheduled_ns = i128::from(scheduled.timestamp()) * 1_000_000_000
                + i128::from(scheduled.timestamp_subsec_nanos());
            Ok(Stamp {
                job: job.to_string(),
                scheduled_ns,
                at_ns: parse_ns(child, "child clock")?,
            })
        }
    }
}

/// Every complete line of `path` (none when it does not exist yet).
pub fn read_stamps(path: &Path, format: StampFormat) -> Result<Vec<Stamp>, BenchError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BenchError::io(path, e)),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Ok(Vec::new()),
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l, format).map_err(|reason| BenchError::RecordLine {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            })
        })
        .collect()
}

/// Counts the complete lines of a growing file without re-reading what it has
/// already counted.
#[derive(Debug)]
pub struct LineCounter {
    path: PathBuf,
    offset: u64,
    lines: usize,
}

impl LineCounter {
    pub fn new(path: &Path) -> LineCounter {
        LineCounter {
            path: path.to_path_buf(),
            offset: 0,
            lines: 0,
        }
    }

    /// Lines complete so far.
    pub fn poll(&mut self) -> Result<usize, BenchError> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self.lines),
            Err(e) => return Err(BenchError::io(&self.path, e)),
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| BenchError::io(&self.path, e))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| BenchError::io(&self.path, e))?;
        // Only up to the last newline: a line still being written is counted next time.
        if let Some(last) = buf.iter().rposition(|b| *b == b'\n') {
            self.lines += buf[..=last].iter().filter(|b| **b == b'\n').count();
            self.offset += last as u64 + 1;
        }
        Ok(self.lines)
    }
}

/// Polls `path` until it has `expected` lines or `deadline` passes; answers the
/// count reached. A benchmark wait, not a test synchronisation: the writer is
/// another process and a file offers nothing to await.
pub async fn wait_for_lines(
    path: &Path,
    expected: usize,
    deadline: Instant,
) -> Result<usize, BenchError> {
    const POLL: Duration = Duration::from_millis(50);
    let mut counter = LineCounter::new(path);
    loop {
        let n = counter.poll()?;
        if n >= expected || Instant::now() >= deadline {
            return Ok(n);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes `path` if it exists, so that a run reads only its own lines.
pub fn remove_if_exists(path: &Path) -> Result<(), BenchError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BenchError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn parses_record_lines() {
        let s = parse_line(
            "lag-1 01HZY0000000000000000000 1 1700000000000000000 1700000000001500000",
            StampFormat::Record,
        )
        .unwrap();
        assert_eq!(s.job, "lag-1");
        assert_eq!(s.lag_ns(), 1_500_000);
        assert!(parse_line("lag-1 x 1 notanumber 5", StampFormat::Record).is_err());
        assert!(parse_line("too few", StampFormat::Record).is_err());
    }

    #[test]
    fn parses_shell_lines() {
        let s = parse_line(
            "e2e-1 2023-11-14T22:13:20Z 1700000000250000000",
            StampFormat::Shell,
        )
        .unwrap();
        assert_eq!(s.scheduled_ns, 1_700_000_000_000_000_000);
        assert_eq!(s.lag_ns(), 250_000_000);
        let frac = parse_line(
            "e2e-1 2023-11-14T22:13:20.5+00:00 1700000000750000000",
            StampFormat::Shell,
        )
        .unwrap();
        assert_eq!(frac.lag_ns(), 250_000_000);
        assert!(parse_line("e2e-1 yesterday 1", StampFormat::Shell).is_err());
    }

    #[test]
    fn read_ignores_a_partial_last_line_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        std::fs::write(&path, "a e 1 10 20\nb e 1 10 30\nc e 1 1").unwrap();
        let stamps = read_stamps(&path, StampFormat::Record).unwrap();
        assert_eq!(stamps.len(), 2);
        assert_eq!(stamps[1].lag_ns(), 20);

        std::fs::write(&path, "a e 1 10 20\nbroken\n").unwrap();
        let err = read_stamps(&path, StampFormat::Record)
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.log:2"), "{err}");

        let missing = dir.path().join("none.log");
        assert!(read_stamps(&missing, StampFormat::Record)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn counter_counts_only_complete_lines_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut c = LineCounter::new(&path);
        assert_eq!(c.poll().unwrap(), 0);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(c.poll().unwrap(), 1);
        f.write_all(b"o\nthree\n").unwrap();
        assert_eq!(c.poll().unwrap(), 3);
        assert_eq!(c.poll().unwrap(), 3);
    }

    #[test]
    fn probe_command_quotes_the_path() {
        let cmd = shell_probe_command(Path::new("/tmp/bench dir/e2e.log"));
        assert!(cmd.ends_with(">> '/tmp/bench dir/e2e.log'"), "{cmd}");
        assert!(cmd.contains("$ROTA_SCHEDULED_AT"));
    }

    #[tokio::test]
    async fn wait_returns_the_count_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        std::fs::write(&path, "x\ny\n").unwrap();
        // Already past the deadline: answers what is there without waiting.
        let n = wait_for_lines(&path, 5, Instant::now()).await.unwrap();
        assert_eq!(n, 2);
        let n = wait_for_lines(&path, 2, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
}
