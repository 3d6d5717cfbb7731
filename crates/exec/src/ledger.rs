//! The process groups this node's runs started, kept as one small file each, so
//! that a node restarting after a crash stops what its previous process left
//! running.
//!
//! A server that is killed (`kill -9`, a crash, the OOM killer) cannot stop its
//! runs' process groups: they go on as orphans while the restarted node records
//! their attempts as lost and retries them, so an attempt and its retry would run
//! at the same time. [`open`] is called once when the server starts, before any run:
//! it kills every recorded group that is still the one recorded and clears the
//! records. From then on each group is recorded while it lives
//! ([`crate::shell`]'s process groups hold an [`Entry`]).
//!
//! A record names the group's id, the boot it was started in and its leader's start
//! time (in clock ticks since boot). A group is killed only when a process with that
//! id still leads a group and started at that tick of the same boot, so a process
//! id the kernel handed out again is never signalled. What a group left behind
//! after its leader exited is therefore not found; nor is a group whose record was
//! not written yet (a crash between the spawn and the record).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tracing::{debug, warn};

use crate::ExecError;

/// Where this process records its groups; set by [`open`].
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Kills the groups recorded in `dir` by an earlier process that are still running,
/// clears the records, and records this process's groups there from now on (the
/// first call's directory is the one used). Answers the groups killed.
pub fn open(dir: &Path) -> Result<Vec<libc::pid_t>, ExecError> {
    let ledger = |source| ExecError::Ledger {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(ledger)?;
    let killed = reap(dir)?;
    let _ = DIR.set(dir.to_path_buf());
    Ok(killed)
}

/// A recorded group: the record goes when this is dropped.
#[derive(Debug)]
pub(crate) struct Entry {
    path: PathBuf,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                warn!(path = %self.path.display(), error = %err, "cannot remove a process group record");
            }
        }
    }
}

/// Records the group led by `pgid` when [`open`] was called; `None` otherwise, or
/// when it cannot be recorded (said in the log: the run goes on unrecorded).
pub(crate) fn record(pgid: libc::pid_t) -> Option<Entry> {
    record_in(DIR.get()?, pgid)
}

fn record_in(dir: &Path, pgid: libc::pid_t) -> Option<Entry> {
    // A leader that is gone already needs no record.
    let identity = Identity::of(pgid)?;
    let path = dir.join(pgid.to_string());
    match fs::write(&path, identity.to_string()) {
        Ok(()) => Some(Entry { path }),
        Err(err) => {
            warn!(path = %path.display(), error = %err,
                "cannot record a run's process group: a crash of this server would leave it running");
            None
        }
    }
}

/// Kills the recorded groups that still run, and removes every record.
fn reap(dir: &Path) -> Result<Vec<libc::pid_t>, ExecError> {
    let ledger = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExecError::Ledger { path, source }
    };
    let mut killed = Vec::new();
    for entry in fs::read_dir(dir).map_err(ledger(dir))? {
        let path = entry.map_err(ledger(dir))?.path();
        let recorded = fs::read_to_string(&path).map_err(ledger(&path))?;
        let pgid = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<libc::pid_t>().ok())
            .filter(|pgid| *pgid > 0);
        match (pgid, recorded.parse::<Identity>()) {
            (Some(pgid), Ok(identity)) => {
                if Identity::of(pgid).is_some_and(|now| now == identity) {
                    // SAFETY: kill(2) has no memory effects; the pgid is positive, so
                    // the negative argument addresses that one group.
                    if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
                        warn!(pgid, "killed a run's process group that this node's previous process left running");
                        killed.push(pgid);
                    }
                } else {
                    debug!(pgid, "a recorded process group is gone");
                }
            }
            _ => warn!(path = %path.display(), "not a process group record; removed"),
        }
        fs::remove_file(&path).map_err(ledger(&path))?;
    }
    Ok(killed)
}

/// What tells a group leader apart from a later process with the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    boot: String,
    /// The leader's start time, in clock ticks after boot.
    started: u64,
}

impl Identity {
    /// Of the process `pid` when it leads its own group; `None` when there is no
    /// such process or it leads none.
    fn of(pid: libc::pid_t) -> Option<Identity> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold spaces: the fields after
        // it start with the state (field 3); the group is field 5, the start time 22.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let group: libc::pid_t = fields.get(2)?.parse().ok()?;
        let started = fields.get(19)?.parse().ok()?;
        (group == pid).then_some(Identity {
            boot: boot_id()?,
            started,
        })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} {}", self.boot, self.started)
    }
}

impl std::str::FromStr for Identity {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (boot, started) = s.trim().split_once(' ').ok_or(())?;
        Ok(Identity {
            boot: boot.to_string(),
            started: started.parse().map_err(|_| ())?,
        })
    }
}

/// This boot's id: a process id and start tick name a process only within a boot.
fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    use super::*;

    /// `sleep 60` leading a group of its own.
    fn group() -> Child {
        Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("sleep starts")
    }

    fn pid(child: &Child) -> libc::pid_t {
        libc::pid_t::try_from(child.id()).expect("a pid")
    }

    /// Whether `child` ended (and reaps it).
    fn ended(child: &mut Child) -> bool {
        child.try_wait().expect("try_wait").is_some()
    }

    #[test]
    fn a_recorded_group_that_still_runs_is_killed_and_its_record_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut left = group();
        let entry = record_in(dir.path(), pid(&left)).expect("recorded");
        // The previous process died: its records stay behind.
        std::mem::forget(entry);
        let killed = reap(dir.path()).unwrap();
        assert_eq!(killed, vec![pid(&left)]);
        let status = left.wait().expect("wait");
        assert!(status.code().is_none(), "killed by a signal: {status:?}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_record_of_another_process_with_the_same_id_kills_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = group();
        let mut identity = Identity::of(pid(&other)).expect("a group leader");
        // The recorded leader started at another tick: its id was handed out again.
        identity.started += 1;
        let path = dir.path().join(pid(&other).to_string());
        fs::write(&path, identity.to_string()).unwrap();
        fs::write(dir.path().join("junk"), "not a record").unwrap();
        assert_eq!(reap(dir.path()).unwrap(), Vec::<libc::pid_t>::new());
        assert!(!ended(&mut other), "another process was signalled");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_record_goes_with_its_entry_and_a_process_that_leads_no_group_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = group();
        let entry = record_in(dir.path(), pid(&child)).expect("recorded");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(entry);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        // This test's own process leads no group of its own.
        let own = libc::pid_t::try_from(std::process::id()).unwrap();
        // SAFETY: getpgrp(2) has no memory effects.
        if unsafe { libc::getpgrp() } != own {
            assert!(record_in(dir.path(), own).is_none());
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn an_identity_reads_back_as_written() {
        let identity = Identity {
            boot: "0f7c".into(),
            started: 12345,
        };
        assert_eq!(identity.to_string().parse::<Identity>(), Ok(identity));
        assert!("0f7c".parse::<Identity>().is_err());
        assert!("0f7c x".parse::<Identity>().is_err());
    }
}
