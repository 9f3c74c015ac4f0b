//! Crash-consistency harness: what a power loss at any point of the
//! durable path leaves, and whether recovery keeps every promise on it.
//!
//! In the manner of SQLite's crash-test VFS, ALICE and CrashMonkey: a
//! test runs the code under test once while every write, set-len, fsync,
//! create, mkdir, link, rename, unlink and directory fsync under a root
//! directory is recorded (the durable paths do them all through
//! [`crate::fsio`]), with a mark ([`Recorder::ack`]) each time records
//! were promised to the caller. Then, for every prefix of that record,
//! [`model`] builds what a power loss there could leave (everything
//! fsynced, file data and directory entries apart, plus a seeded random
//! subset of the rest, writes torn at any byte or zero-filled), and
//! [`explore`] hands each such state to the test's check: recovery starts,
//! every acknowledged record is there exactly once, and whatever else the
//! code promises.
//!
//! Not modelled: a disk that acknowledges an fsync it did not do, a file
//! system that loses fsynced data or reorders within what it made durable,
//! bit rot (the corruption test injects one flip by hand), and a second
//! power loss during recovery.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::fsio::Op;

mod explore;
pub mod model;

pub use explore::{describe, explore, explore_from, scratch, states_per_point, Explored};

/// One step of a recorded run.
#[derive(Clone, Debug)]
pub enum Event {
    /// An operation, its paths relative to the recorded root.
    Io(Op),
    /// These event ids were acknowledged (their requests answered `Ok`).
    Ack(Vec<String>),
    /// An fsync that failed ([`Recorder::fail_syncs`]): it makes nothing
    /// durable, so the crash states ignore it (the writes before it may or
    /// may not survive, as after a real failed fsync).
    SyncFailed(Op),
}

struct Recording {
    root: PathBuf,
    events: Vec<Event>,
    /// While set ([`Recorder::hold_syncs`]), an fsync under `root` waits
    /// after it is recorded, before the call.
    syncs_held: bool,
    /// Threads waiting so.
    syncs_waiting: usize,
    /// Fsyncs to fail ([`Recorder::fail_syncs_under`]).
    syncs_to_fail: Vec<ToFail>,
}

/// Which fsyncs to fail, and how many more.
struct ToFail {
    /// Of paths under this directory (relative to the recording's root).
    under: PathBuf,
    /// Only directory fsyncs, not files'.
    dirs_only: bool,
    left: usize,
}

/// Recordings under way; usually none, so `record` costs one atomic load.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static RECORDINGS: Mutex<Vec<Recording>> = Mutex::new(Vec::new());
/// Woken when a recording's held fsyncs are let go or one starts waiting.
static SYNCS: Condvar = Condvar::new();

fn recordings() -> MutexGuard<'static, Vec<Recording>> {
    RECORDINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called by `fsio` after each operation (before an fsync: see
/// [`crate::fsio::sync_data`]).
pub(crate) fn record(op: impl FnOnce() -> Op) {
    let _ = record_sync(op);
}

/// [`record`], for an fsync: waits while the recording holds its fsyncs,
/// then fails when the recording was asked to fail it (the caller then
/// does not make the call).
pub(crate) fn record_sync(op: impl FnOnce() -> Op) -> std::io::Result<()> {
    if ACTIVE.load(Ordering::SeqCst) == 0 {
        return Ok(());
    }
    let op = op();
    let mut all = recordings();
    let Some((r, rel)) = all
        .iter_mut()
        .find_map(|r| relative(&op, &r.root).map(|rel| (r, rel)))
    else {
        return Ok(());
    };
    let (path, is_dir) = match &rel {
        Op::Sync(p) => (Some(p.clone()), false),
        Op::SyncDir(p) => (Some(p.clone()), true),
        _ => (None, false),
    };
    let at = r.events.len();
    r.events.push(Event::Io(rel));
    let Some(path) = path else {
        return Ok(());
    };
    let root = r.root.clone();
    let waited = r.syncs_held;
    if waited {
        r.syncs_waiting += 1;
        SYNCS.notify_all();
        let held = |all: &[Recording]| all.iter().any(|r| r.root == root && r.syncs_held);
        while held(&all) {
            all = SYNCS.wait(all).unwrap_or_else(|e| e.into_inner());
        }
    }
    let Some(r) = all.iter_mut().find(|r| r.root == root) else {
        return Ok(());
    };
    if waited {
        r.syncs_waiting -= 1;
    }
    let Some(left) = r
        .syncs_to_fail
        .iter_mut()
        .find(|f| f.left > 0 && (is_dir || !f.dirs_only) && path.starts_with(&f.under))
        .map(|f| &mut f.left)
    else {
        return Ok(());
    };
    *left -= 1;
    if let Event::Io(op) = &r.events[at] {
        r.events[at] = Event::SyncFailed(op.clone());
    }
    Err(std::io::Error::other(
        "fsync failed (injected by the crash harness)",
    ))
}

/// `op` with its paths relative to `root`, if they are all under it.
fn relative(op: &Op, root: &Path) -> Option<Op> {
    let rel = |p: &Path| p.strip_prefix(root).ok().map(Path::to_owned);
    Some(match op {
        Op::Create(p) => Op::Create(rel(p)?),
        Op::Write { path, at, bytes } => Op::Write {
            path: rel(path)?,
            at: *at,
            bytes: bytes.clone(),
        },
        Op::SetLen { path, len } => Op::SetLen {
            path: rel(path)?,
            len: *len,
        },
        Op::Sync(p) => Op::Sync(rel(p)?),
        Op::Mkdir(p) => Op::Mkdir(rel(p)?),
        Op::SyncDir(p) => Op::SyncDir(rel(p)?),
        Op::Link { from, to } => Op::Link {
            from: rel(from)?,
            to: rel(to)?,
        },
        Op::Rename { from, to } => Op::Rename {
            from: rel(from)?,
            to: rel(to)?,
        },
        Op::Unlink(p) => Op::Unlink(rel(p)?),
    })
}

/// Records the durable path's operations under `root` until [`Recorder::finish`].
#[derive(Debug)]
pub struct Recorder {
    root: PathBuf,
}

impl Recorder {
    /// Starts recording under `root` (an existing, empty directory: the
    /// crash states are built from nothing).
    pub fn start(root: &Path) -> Recorder {
        recordings().push(Recording {
            root: root.to_owned(),
            events: Vec::new(),
            syncs_held: false,
            syncs_waiting: 0,
            syncs_to_fail: Vec::new(),
        });
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Recorder {
            root: root.to_owned(),
        }
    }

    /// Marks `ids` as acknowledged at this point of the record.
    pub fn ack(&self, ids: impl IntoIterator<Item = String>) {
        self.push(Event::Ack(ids.into_iter().collect()));
    }

    /// Events recorded so far: the index the next one gets.
    pub fn position(&self) -> usize {
        recordings()
            .iter()
            .find(|r| r.root == self.root)
            .map_or(0, |r| r.events.len())
    }

    fn push(&self, e: Event) {
        if let Some(r) = recordings().iter_mut().find(|r| r.root == self.root) {
            r.events.push(e);
        }
    }

    /// Holds the fsyncs under this root: each one is recorded and then
    /// waits, before the call, until the guard drops; every other
    /// operation goes on. A test uses it to land requests while an fsync
    /// is under way, which is when a pipelined group commit could answer
    /// too early.
    pub fn hold_syncs(&self) -> SyncHold<'_> {
        if let Some(r) = recordings().iter_mut().find(|r| r.root == self.root) {
            r.syncs_held = true;
        }
        SyncHold(self)
    }

    /// Makes the next `n` fsyncs under this root fail (after any hold),
    /// without being made: what a store does when the disk reports an
    /// error must leave nothing acknowledged that a crash could lose.
    pub fn fail_syncs(&self, n: usize) {
        self.fail_syncs_under("", n);
    }

    /// [`Recorder::fail_syncs`], for the fsyncs of files and directories
    /// under `dir` (relative to the root; `""` is all of them).
    pub fn fail_syncs_under(&self, dir: impl Into<PathBuf>, n: usize) {
        self.fail(dir.into(), false, n);
    }

    /// [`Recorder::fail_syncs_under`], for directory fsyncs only: the
    /// file's data is durable, its name (a create, a rename) is not.
    pub fn fail_dir_syncs_under(&self, dir: impl Into<PathBuf>, n: usize) {
        self.fail(dir.into(), true, n);
    }

    fn fail(&self, under: PathBuf, dirs_only: bool, left: usize) {
        if let Some(r) = recordings().iter_mut().find(|r| r.root == self.root) {
            r.syncs_to_fail.push(ToFail {
                under,
                dirs_only,
                left,
            });
        }
    }

    /// Holds every recording still: the store's writer blocks at its next
    /// operation until the guard drops (so that requests queue up behind
    /// it and go into one group commit).
    pub fn hold(&self) -> Hold {
        Hold(recordings())
    }

    /// Stops recording; the events, in order.
    pub fn finish(self) -> Vec<Event> {
        let mut all = recordings();
        let i = all.iter().position(|r| r.root == self.root);
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
        i.map(|i| all.remove(i).events).unwrap_or_default()
    }
}

/// The fsyncs of one recording held, until dropped (see
/// [`Recorder::hold_syncs`]).
pub struct SyncHold<'a>(&'a Recorder);

impl SyncHold<'_> {
    /// Waits until an fsync is held, up to `limit`; whether one is.
    pub fn wait_for_sync(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut all = recordings();
        loop {
            let waiting = all
                .iter()
                .find(|r| r.root == self.0.root)
                .is_some_and(|r| r.syncs_waiting > 0);
            let left = deadline.saturating_duration_since(Instant::now());
            if waiting || left.is_zero() {
                return waiting;
            }
            all = SYNCS
                .wait_timeout(all, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for SyncHold<'_> {
    fn drop(&mut self) {
        if let Some(r) = recordings().iter_mut().find(|r| r.root == self.0.root) {
            r.syncs_held = false;
        }
        SYNCS.notify_all();
    }
}

/// Every recording held still, until dropped (see [`Recorder::hold`]).
pub struct Hold(#[allow(dead_code)] MutexGuard<'static, Vec<Recording>>);

/// The ids acknowledged in `events`.
pub fn acked(events: &[Event]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Ack(ids) => Some(ids.iter().cloned()),
            Event::Io(_) | Event::SyncFailed(_) => None,
        })
        .flatten()
        .collect()
}
