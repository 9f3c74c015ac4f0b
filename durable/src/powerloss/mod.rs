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
use std::sync::{Mutex, MutexGuard};

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
}

struct Recording {
    root: PathBuf,
    events: Vec<Event>,
}

/// Recordings under way; usually none, so `record` costs one atomic load.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static RECORDINGS: Mutex<Vec<Recording>> = Mutex::new(Vec::new());

fn recordings() -> MutexGuard<'static, Vec<Recording>> {
    RECORDINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called by `fsio` after each operation.
pub(crate) fn record(op: impl FnOnce() -> Op) {
    if ACTIVE.load(Ordering::SeqCst) == 0 {
        return;
    }
    let op = op();
    let mut all = recordings();
    for r in all.iter_mut() {
        if let Some(op) = relative(&op, &r.root) {
            r.events.push(Event::Io(op));
            return;
        }
    }
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

/// Every recording held still, until dropped (see [`Recorder::hold`]).
pub struct Hold(#[allow(dead_code)] MutexGuard<'static, Vec<Recording>>);

/// The ids acknowledged in `events`.
pub fn acked(events: &[Event]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Ack(ids) => Some(ids.iter().cloned()),
            Event::Io(_) => None,
        })
        .flatten()
        .collect()
}
