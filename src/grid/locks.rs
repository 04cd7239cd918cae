//! Run state on disk and exclusive claims, so that several `icm run` processes (one machine or a
//! shared filesystem, e.g. Slurm array tasks) never train the same run twice.
//!
//! A run folder is **done** when it has a sound `metrics.json`, **failed** when it has `failure.txt`,
//! **running** while it has a fresh `lock.json`, and **pending** otherwise. The lock is created
//! whole (written aside, then hard-linked into place, which fails if one exists) and records host,
//! pid and start time; the owner rewrites it after every epoch (heartbeat, at most every 10 s). A
//! lock whose process is gone (same host), whose heartbeat is older than the timeout, or that does
//! not parse is stale and is taken over, with a message; an owner that finds its lock taken over
//! drops the run ([`ClaimLost`]). Every claim appends a line to `attempts.log`, the run's audit
//! trail, saying which stale lock it took over.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::records::{self, FAILURE_FILE, METRICS_FILE};
use crate::util::{host_name, process_alive, temp_beside, write_atomic};

pub const LOCK_FILE: &str = "lock.json";
pub const ATTEMPTS_FILE: &str = "attempts.log";
/// Least time between two heartbeats of a claim.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Contents of `lock.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    /// Random token telling this claim from any other (pids repeat across hosts and time).
    #[serde(default)]
    pub nonce: u64,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Done,
    Failed(String),
    Running(LockInfo),
    /// Pending; `Some` when a stale lock will be taken over.
    Pending(Option<LockInfo>),
    /// Finished, but its record is damaged or was written by a trainer with a defect that
    /// affects it (the reason): trained again, the old files set aside.
    Superseded(String),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a lock is stale, or `None` if its owner may still be working.
fn staleness(dir: &Path, info: &LockInfo, timeout: Duration) -> Option<String> {
    if info.host == host_name() && !process_alive(info.pid) {
        return Some(format!("process {} on {} is gone", info.pid, info.host));
    }
    let beat = fs::metadata(dir.join(LOCK_FILE))
        .and_then(|m| m.modified())
        .ok()?;
    let age = SystemTime::now().duration_since(beat).unwrap_or_default();
    (age > timeout).then(|| {
        format!(
            "no heartbeat from {}:{} for {} s (timeout {} s)",
            info.host,
            info.pid,
            age.as_secs(),
            timeout.as_secs()
        )
    })
}

fn read_lock(dir: &Path) -> Option<LockInfo> {
    serde_json::from_str(&fs::read_to_string(dir.join(LOCK_FILE)).ok()?).ok()
}

/// The state of the run in `dir`.
pub fn state(dir: &Path, timeout: Duration) -> RunState {
    let superseded = if dir.join(METRICS_FILE).is_file() {
        match records::retrain_reason(dir) {
            None => return RunState::Done,
            reason => reason,
        }
    } else {
        None
    };
    let lock = lock_state(dir, timeout);
    if let Some(RunState::Running(info)) = lock {
        return RunState::Running(info);
    }
    if let Some(reason) = superseded {
        return RunState::Superseded(reason);
    }
    // Read as bytes: a reason that is not UTF-8 still marks the run failed, not pending.
    if let Ok(reason) = fs::read(dir.join(FAILURE_FILE)) {
        return RunState::Failed(String::from_utf8_lossy(&reason).trim().to_string());
    }
    lock.unwrap_or(RunState::Pending(None))
}

/// `Running` for a live lock, `Pending(Some)` for a stale one, `Pending(None)` for an unreadable
/// one (locks are created whole, so an unreadable lock is garbage, never one being written),
/// `None` without a lock.
fn lock_state(dir: &Path, timeout: Duration) -> Option<RunState> {
    if !dir.join(LOCK_FILE).is_file() {
        return None;
    }
    Some(match read_lock(dir) {
        Some(info) if staleness(dir, &info, timeout).is_none() => RunState::Running(info),
        Some(info) => RunState::Pending(Some(info)),
        None => RunState::Pending(None),
    })
}

/// The shortest `--lock-timeout` accepted: heartbeats come at most every 10 s (after an epoch),
/// so a shorter timeout would take live runs over and train them twice.
pub const MIN_LOCK_TIMEOUT: Duration = Duration::from_secs(6 * HEARTBEAT_INTERVAL.as_secs());

/// Refuses a lock timeout under [`MIN_LOCK_TIMEOUT`], saying why.
pub fn check_lock_timeout(timeout: Duration) -> Result<()> {
    if timeout < MIN_LOCK_TIMEOUT {
        anyhow::bail!(
            "--lock-timeout {}: must be at least {} s; a running worker refreshes its lock at most \
             every {} s (after an epoch), so a shorter timeout takes live runs over and trains them \
             twice (make it longer than your longest epoch too)",
            timeout.as_secs(),
            MIN_LOCK_TIMEOUT.as_secs(),
            HEARTBEAT_INTERVAL.as_secs()
        );
    }
    Ok(())
}

/// Removes a stale lock, atomically with respect to other processes doing the same: the lock is
/// renamed to a name of our own, and put back (without overwriting) if what we moved was not the
/// stale lock we judged but a fresh one. Returns whether the stale lock is gone.
fn remove_stale_lock(dir: &Path, judged: &Option<LockInfo>, nonce: u64) -> bool {
    let lock = dir.join(LOCK_FILE);
    let moved = dir.join(format!(".lock.{nonce:016x}.stale"));
    if fs::rename(&lock, &moved).is_err() {
        return false; // someone else moved it first
    }
    let content: Option<LockInfo> = fs::read_to_string(&moved)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let ours_to_remove = content == *judged;
    if !ours_to_remove {
        let _ = fs::hard_link(&moved, &lock); // fails if a new lock exists: then that one stands
    }
    let _ = fs::remove_file(&moved);
    ours_to_remove
}

/// An exclusive claim on a run; removing the lock when dropped (finished, failed or on error).
#[derive(Debug)]
pub struct Claim {
    dir: PathBuf,
    info: LockInfo,
    last_beat: Mutex<Instant>,
}

impl Claim {
    /// Rewrites the lock so other processes see this run is alive (at most every 10 s). Fails
    /// with [`ClaimLost`] when another process has taken the run over.
    pub fn heartbeat(&self) -> Result<()> {
        let mut last = self.last_beat.lock().expect("heartbeat clock");
        if last.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(());
        }
        *last = Instant::now();
        if let Some(other) = read_lock(&self.dir).filter(|l| *l != self.info) {
            return Err(ClaimLost {
                dir: self.dir.clone(),
                by: other,
            }
            .into());
        }
        write_atomic(
            &self.dir.join(LOCK_FILE),
            serde_json::to_string(&self.info)?.as_bytes(),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if read_lock(&self.dir).as_ref() == Some(&self.info) {
            let _ = fs::remove_file(self.dir.join(LOCK_FILE));
        }
    }
}

/// Another process took this run over (this one looked stale): its work must be dropped.
#[derive(Debug)]
pub struct ClaimLost {
    pub dir: PathBuf,
    pub by: LockInfo,
}

impl std::fmt::Display for ClaimLost {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{} was taken over by {}:{} (no heartbeat within --lock-timeout); this process drops it",
            self.dir.display(),
            self.by.host,
            self.by.pid
        )
    }
}

impl std::error::Error for ClaimLost {}

/// Outcome of trying to claim a run.
#[derive(Debug)]
pub enum ClaimResult {
    Claimed(Claim),
    /// Done, failed (and not retried), or running elsewhere.
    Busy(RunState),
}

/// Moves a damaged or superseded record out of the way of its retraining, saying so.
fn set_aside_superseded(dir: &Path, notify: &dyn Fn(String)) -> Result<()> {
    if let Some(reason) = records::retrain_reason(dir) {
        let aside = records::set_aside(dir)?;
        notify(format!(
            "retraining {}: {reason}; its old files are in {}",
            dir.display(),
            aside.display()
        ));
    }
    Ok(())
}

/// Tries to claim the run in `dir`. With `retry_failed`, a failed run is claimed again.
/// `notify` receives messages about stale locks taken over.
pub fn try_claim(
    dir: &Path,
    timeout: Duration,
    retry_failed: bool,
    notify: &dyn Fn(String),
) -> Result<ClaimResult> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match state(dir, timeout) {
        RunState::Done => {
            // A worker killed between recording the run and removing its lock leaves the lock
            // behind; a stale one goes (a live owner is about to remove its own).
            if let Some(RunState::Pending(judged)) = lock_state(dir, timeout) {
                remove_stale_lock(dir, &judged, rand::random());
            }
            return Ok(ClaimResult::Busy(RunState::Done));
        }
        RunState::Running(info) => return Ok(ClaimResult::Busy(RunState::Running(info))),
        RunState::Failed(reason) if !retry_failed => {
            return Ok(ClaimResult::Busy(RunState::Failed(reason)))
        }
        RunState::Failed(_) | RunState::Pending(_) | RunState::Superseded(_) => {}
    }
    let nonce: u64 = rand::random();
    // A stale (or unreadable) lock may still be there, also next to a failure note.
    let mut took_over = String::new();
    if let Some(RunState::Pending(judged)) = lock_state(dir, timeout) {
        let why = judged
            .as_ref()
            .and_then(|l| staleness(dir, l, timeout))
            .unwrap_or_else(|| "unreadable lock".into());
        if !remove_stale_lock(dir, &judged, nonce) {
            return Ok(ClaimResult::Busy(state(dir, timeout)));
        }
        let who = judged.map_or("an unreadable lock".to_string(), |l| {
            format!("{}:{}", l.host, l.pid)
        });
        took_over = format!(" took over from {who} (stale lock: {why})");
        notify(format!(
            "taking over {} from {who} (stale lock: {why})",
            dir.display()
        ));
    }
    let info = LockInfo {
        host: host_name(),
        pid: std::process::id(),
        started: now_secs(),
        nonce,
    };
    if !create_lock(dir, &info)? {
        return Ok(ClaimResult::Busy(state(dir, timeout)));
    }
    let claim = Claim {
        dir: dir.to_path_buf(),
        info: info.clone(),
        last_beat: Mutex::new(Instant::now()),
    };
    // Another process may have finished the run between our look and our lock.
    if records::is_done(dir) {
        return Ok(ClaimResult::Busy(RunState::Done));
    }
    set_aside_superseded(dir, notify)?;
    // A failed run being retried loses its failure note.
    let _ = fs::remove_file(dir.join(FAILURE_FILE));
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(ATTEMPTS_FILE))
        .with_context(|| format!("cannot open {}", dir.join(ATTEMPTS_FILE).display()))?;
    writeln!(
        log,
        "{} {} {}{took_over}",
        iso8601(info.started),
        info.host,
        info.pid
    )?;
    Ok(ClaimResult::Claimed(claim))
}

/// Unix seconds as an ISO-8601 UTC time (`2026-12-02T05:59:00Z`), as `attempts.log` writes them.
pub fn iso8601(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || format!("@{unix_seconds}"),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

/// Creates `lock.json` whole, or not at all: written under a temporary name and hard-linked to
/// its place, which fails when a lock exists. Returns whether this process holds the lock.
fn create_lock(dir: &Path, info: &LockInfo) -> Result<bool> {
    let lock_path = dir.join(LOCK_FILE);
    let tmp = temp_beside(&lock_path);
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(serde_json::to_string(info)?.as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|_| fs::hard_link(&tmp, &lock_path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot lock {}", dir.display())),
    }
}
