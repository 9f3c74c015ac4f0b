//! Power loss at a first start without a configured collector id: the id
//! is generated and kept in the data dir, and the WAL lives under it.
//!
//! Found by the harness: the id file was written without an fsync of the
//! file or its directory. A power loss after records were acknowledged
//! could leave it empty (the next start refused the id) or absent (a new
//! id, and the acknowledged records in the old id's WAL, which no start
//! reads again).

use std::path::Path;
use std::sync::Arc;

use audit_durable::powerloss::model::{materialize, State};
use audit_durable::powerloss::{explore, scratch, states_per_point, Event, Recorder};

use super::{commit, Ids};
use crate::config::Config;
use crate::ingest::Ingest;
use crate::metrics::Metrics;

fn resolve(root: &Path) -> Result<String, String> {
    Config {
        data_dir: root.to_owned(),
        collector_id: None,
        ..Config::default()
    }
    .resolve_collector_id()
    .map_err(|e| e.to_string())
}

/// A first start: the id resolved, two records acknowledged; the record
/// and the id.
fn recorded_run(root: &Path) -> (Vec<Event>, String) {
    let rt = super::runtime();
    let rec = Recorder::start(root);
    let id = resolve(root).expect("a new id");
    let mut cfg = super::config(root);
    cfg.collector_id = id.clone();
    let ingest = Ingest::start(cfg, Arc::new(Metrics::default())).expect("start");
    let mut next = Ids::default();
    for _ in 0..2 {
        commit(&rt, &rec, &ingest, next.batch(1, 0, 0));
    }
    drop(ingest);
    (rec.finish(), id)
}

/// Once anything was acknowledged, the next start resolves the same id.
fn check(state: &State, acked: bool, id: &str) -> Result<(), String> {
    let dir = scratch();
    materialize(state, dir.path()).map_err(|e| format!("cannot build the state: {e}"))?;
    let again = resolve(dir.path()).map_err(|e| format!("the next start refused: {e}"))?;
    if acked && again != id {
        return Err(format!("the next start is {again}, the WAL is under {id}"));
    }
    Ok(())
}

#[test]
fn every_crash_point_of_a_first_start_keeps_the_collector_id_of_its_wal() {
    let dir = scratch();
    let (events, id) = recorded_run(dir.path());
    let checked = explore(&events, states_per_point(), 0x1d, |s, acked| {
        check(s, !acked.is_empty(), &id)
    })
    .assert_clean();
    assert!(checked >= 10, "only {checked} crash states");
}
