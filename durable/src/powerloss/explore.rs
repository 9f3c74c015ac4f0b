//! Walking every crash point of a record and checking each state.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::model::{Keep, Model, Rng, State};
use super::{acked, Event};
use crate::fsio::Op;

/// What [`explore`] checked.
#[derive(Debug)]
pub struct Explored {
    /// Distinct crash states handed to the check.
    pub checked: usize,
    /// One line per state the check refused: the crash point, the choice
    /// of kept operations and its seed (to replay it), and the check's
    /// reason.
    pub failures: Vec<String>,
}

impl Explored {
    /// Panics with the first failures, if any; the number of states checked.
    pub fn assert_clean(self) -> usize {
        assert!(
            self.failures.is_empty(),
            "{} of {} crash states broke a promise; the first:\n{}",
            self.failures.len(),
            self.checked,
            self.failures[..self.failures.len().min(5)].join("\n")
        );
        self.checked
    }
}

/// For every prefix of `events`, builds the all-durable state, and where
/// something was not synced yet the all-kept one and `random` random ones,
/// and hands each distinct state to `check` with the ids acknowledged
/// before that point.
pub fn explore(
    events: &[Event],
    random: usize,
    seed: u64,
    check: impl FnMut(&State, &BTreeSet<String>) -> Result<(), String>,
) -> Explored {
    explore_from(events, 0, random, seed, check)
}

/// [`explore`], checking only the crash points after the first `skip`
/// events (a run whose beginning another test covers).
pub fn explore_from(
    events: &[Event],
    skip: usize,
    random: usize,
    seed: u64,
    mut check: impl FnMut(&State, &BTreeSet<String>) -> Result<(), String>,
) -> Explored {
    let mut model = Model::default();
    let mut out = Explored {
        checked: 0,
        failures: Vec::new(),
    };
    // Many points leave the same files (an unsynced write dropped is the
    // state before it): each distinct state, with what it must keep, once.
    let mut seen = HashSet::new();
    for k in 0..=events.len() {
        if let Some(Event::Io(op)) = k.checked_sub(1).map(|i| &events[i]) {
            model.apply(op).unwrap_or_else(|e| panic!("event {k}: {e}"));
        }
        if k < skip {
            continue;
        }
        let acked = acked(&events[..k]);
        let mut keeps = vec![Keep::Durable];
        if model.has_unsynced() {
            keeps.push(Keep::All);
            let percents = [25, 50, 75];
            keeps.extend((0..random).map(|r| Keep::Some {
                percent: percents[r % percents.len()],
            }));
        }
        for (v, keep) in keeps.into_iter().enumerate() {
            let state_seed = seed ^ ((k as u64) << 20 | v as u64);
            let state = model.crash(keep, &mut Rng::new(state_seed));
            if !seen.insert((state.clone(), acked.clone())) {
                continue;
            }
            out.checked += 1;
            if let Err(e) = check(&state, &acked) {
                let at = describe(k.checked_sub(1).map(|i| &events[i]));
                out.failures.push(format!(
                    "crash after event {k} ({at}), {keep:?}, seed {state_seed:#x}: {e}"
                ));
            }
        }
    }
    out
}

/// An event, without its bytes.
pub fn describe(e: Option<&Event>) -> String {
    match e {
        None => "nothing yet".into(),
        Some(Event::Ack(ids)) => format!("ack of {} ids", ids.len()),
        Some(Event::Io(Op::Write { path, at, bytes })) => {
            format!(
                "write of {} bytes at {at} to {}",
                bytes.len(),
                path.display()
            )
        }
        Some(Event::Io(op)) => format!("{op:?}"),
        Some(Event::SyncFailed(op)) => format!("failed {op:?}"),
    }
}

/// Random states drawn per crash point: `AUDIT_POWERLOSS_STATES`, else 12.
pub fn states_per_point() -> usize {
    std::env::var("AUDIT_POWERLOSS_STATES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

/// A scratch directory, in memory when the machine has `/dev/shm`: each
/// crash state fsyncs a few files.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("audit-powerloss-")
        .tempdir_in(base)
        .expect("scratch dir")
}
