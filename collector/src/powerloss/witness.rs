//! Power loss while the collector generates its witness key and writes
//! its first checkpoint: at every crash point the next start finds a
//! usable key, the same one the witness pinned if it pinned one.
//!
//! Found by the harness: the key and the notes were written at their final
//! names (a power loss could leave an empty or torn key, and the collector
//! refused to start), and the key's directory was never fsynced (a new key
//! at the next start, refused by a witness that had pinned the old one).

use std::path::{Path, PathBuf};

use audit_durable::powerloss::model::{materialize, State};
use audit_durable::powerloss::{explore, scratch, states_per_point, Event, Recorder};

use super::COLLECTOR;
use crate::manifest::{Body, Manifest};
use crate::witness::{Witness, WitnessConfig};

fn witness_config(root: &Path) -> WitnessConfig {
    WitnessConfig {
        dir: root.join("witness"),
        remote: Default::default(),
        signing_key: None,
    }
}

fn data_dir(root: &Path) -> PathBuf {
    root.join("data")
}

/// A first start: the key generated, a digest appended and witnessed.
fn recorded_run(root: &Path) -> Vec<Event> {
    let rec = Recorder::start(root);
    let w = Witness::open(&witness_config(root), &data_dir(root), COLLECTOR).expect("witness");
    let path = crate::manifest::manifest_path(&data_dir(root), COLLECTOR);
    let mut m = Manifest::open(&path).expect("manifest");
    let digest = Body::Digest {
        seq_last: 0,
        period_start_ns: 0,
        period_end_ns: 1,
        seals: 0,
        unsealed: 0,
    };
    m.append(1, digest).expect("append");
    w.record(&m).expect("witnessed");
    rec.finish()
}

/// The next start opens the witness (a key it can parse, the one the
/// witness pinned).
fn check(state: &State) -> Result<(), String> {
    let dir = scratch();
    let root = dir.path();
    materialize(state, root).map_err(|e| format!("cannot build the state: {e}"))?;
    Witness::open(&witness_config(root), &data_dir(root), COLLECTOR)
        .map(|_| ())
        .map_err(|e| format!("the next start refused: {e}"))
}

#[test]
fn every_crash_point_of_key_generation_and_a_first_checkpoint_leaves_a_usable_key() {
    let dir = scratch();
    let events = recorded_run(dir.path());
    let checked = explore(&events, states_per_point(), 0x3177, |s, _| check(s)).assert_clean();
    eprintln!(
        "{} crash points, {checked} distinct crash states",
        events.len() + 1
    );
    assert!(checked >= 10, "only {checked} crash states");
}
