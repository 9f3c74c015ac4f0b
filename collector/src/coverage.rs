//! What a dataset location must hold before anything is answered from it,
//! and how far its answers reach: up to when rows are sealed, and the
//! windows nobody was listening.
//!
//! A directory or bucket prefix without a single collector manifest is not
//! a dataset: an answer from it ("intact", "no rows") would be a pass given
//! for a mistyped path. Every command that reads a dataset asks
//! [`require`] first and refuses with [`CoverageError`], naming what was
//! expected and, when it can tell, the directory that was probably meant.
//!
//! Rows are acknowledged once in the write-ahead log and only become
//! visible to readers when sealed (every seal interval, 60 s by default).
//! [`SealedThrough`] says up to when each collector's answer is complete:
//! the time of its newest seal, or of its newest digest taken with nothing
//! left unsealed (a digest seals first, so the two agree when idle).

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use crate::manifest::{self, Body, Entry};
use crate::store::{chain, Location};

/// Why a location is not a dataset.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    /// A directory with no collector manifest in it.
    #[error(
        "{} is not an audit data dir: it has no manifest/<collector_id>.jsonl \
         (expected the collector's --data-dir, e.g. ./audit-data){}",
        dir.display(),
        hint.as_ref().map(|h| format!("; did you mean {}?", h.display())).unwrap_or_default()
    )]
    NotADataDir {
        /// The directory given.
        dir: PathBuf,
        /// A nearby directory that is a data dir, if any.
        hint: Option<PathBuf>,
    },
    /// A bucket prefix with no collector manifest under it.
    #[error(
        "{0} is not an audit dataset: nothing under its manifest/ \
         (expected PREFIX/manifest/<collector_id>/…, the collector's store URL)"
    )]
    NoManifest(String),
    /// Listing or reading the store failed.
    #[error("{url}: {source}")]
    Store {
        /// The location.
        url: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Reading a local manifest failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Whether `dir` holds at least one collector manifest.
pub fn is_data_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("manifest")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.path().extension().and_then(|x| x.to_str()) == Some("jsonl")
                && e.file_type().is_ok_and(|t| t.is_file())
        })
    })
}

/// Refuses a directory that is not a data dir, pointing at the data dir
/// above it (a subfolder given by mistake) or just below it.
pub fn require_local(dir: &Path) -> Result<(), CoverageError> {
    if is_data_dir(dir) {
        return Ok(());
    }
    let above = dir.ancestors().skip(1).take(4).find(|d| is_data_dir(d));
    let below = || {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| is_data_dir(p))
    };
    Err(CoverageError::NotADataDir {
        dir: dir.to_owned(),
        hint: above.map(Path::to_owned).or_else(below),
    })
}

/// How far one collector's sealed rows reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SealedThrough {
    /// The collector.
    pub collector_id: String,
    /// Everything it acknowledged before this time is sealed (RFC 3339);
    /// `None` when it has sealed nothing yet.
    pub through: Option<String>,
    /// Windows it recorded nobody was listening (`gap` entries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

/// A window nobody was listening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Start (RFC 3339).
    pub from: String,
    /// End (RFC 3339).
    pub to: String,
    #[serde(skip)]
    from_ns: i64,
    #[serde(skip)]
    to_ns: i64,
}

impl SealedThrough {
    /// The gaps overlapping `[from_ns, to_ns)`.
    pub fn gaps_in(&self, from_ns: i64, to_ns: i64) -> impl Iterator<Item = &Gap> {
        self.gaps
            .iter()
            .filter(move |g| g.from_ns < to_ns && from_ns < g.to_ns)
    }
}

/// Says, for an answer over `[from_ns, to_ns)`, each window in it nobody
/// was listening: such an answer's "no rows" there proves nothing.
pub fn uncovered(sealed: &[SealedThrough], from_ns: i64, to_ns: i64) -> Vec<String> {
    sealed
        .iter()
        .flat_map(|s| {
            s.gaps_in(from_ns, to_ns).map(|g| {
                format!(
                    "NOT COVERED: collector {} was not listening from {} to {}; no rows there is not proof of absence",
                    s.collector_id, g.from, g.to
                )
            })
        })
        .collect()
}

/// The time up to which a chain's rows are all sealed, ns.
pub fn sealed_through_ns(entries: &[Entry]) -> Option<i64> {
    entries.iter().rev().find_map(|e| match &e.body {
        Body::Seal { .. } => Some(e.time_ns),
        Body::Digest { unsealed: 0, .. } => Some(e.time_ns),
        _ => None,
    })
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn through(collector_id: String, entries: &[Entry]) -> SealedThrough {
    let gaps = entries
        .iter()
        .filter_map(|e| match e.body {
            Body::Gap { from_ns, to_ns, .. } => Some(Gap {
                from: rfc3339(from_ns),
                to: rfc3339(to_ns),
                from_ns,
                to_ns,
            }),
            _ => None,
        })
        .collect();
    SealedThrough {
        collector_id,
        through: sealed_through_ns(entries).map(rfc3339),
        gaps,
    }
}

/// Checks that `loc` is a dataset and says how far each collector's
/// sealed rows reach, and when nothing was listening.
pub async fn require(loc: &Location) -> Result<Vec<SealedThrough>, CoverageError> {
    if let Some(dir) = loc.local_dir() {
        require_local(dir)?;
        return Ok(manifest::read_all(dir)?
            .into_iter()
            .map(|(id, entries)| through(id, &entries))
            .collect());
    }
    let store_err = |source| CoverageError::Store {
        url: loc.url.clone(),
        source,
    };
    let chains = chain::list(loc).await.map_err(store_err)?;
    if chains.is_empty() {
        return Err(CoverageError::NoManifest(loc.url.clone()));
    }
    let mut out = Vec::new();
    // Every entry: a gap can be anywhere in the chain. One GET per entry,
    // so a long chain in a bucket is slow to answer from (see README).
    for (id, rels) in chains {
        let entries: Vec<Entry> = chain::fetch(loc, rels)
            .await
            .map_err(store_err)?
            .into_iter()
            .filter_map(|s| s.entry.ok())
            .collect();
        out.push(through(id, &entries));
    }
    Ok(out)
}

/// One line for a person: `sealed through T` per collector, and what it
/// means for rows received since.
pub fn describe(sealed: &[SealedThrough]) -> String {
    let parts: Vec<String> = sealed
        .iter()
        .map(|s| match &s.through {
            Some(t) => format!("{t} (collector {})", s.collector_id),
            None => format!("nothing yet (collector {})", s.collector_id),
        })
        .collect();
    format!(
        "sealed through {}; rows received later are not visible yet",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subfolder_is_refused_with_the_data_dir_above_as_hint() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("manifest")).unwrap();
        std::fs::create_dir_all(root.path().join("audit/date=2026-01-01")).unwrap();
        assert!(
            require_local(root.path()).is_err(),
            "an empty manifest/ is not enough"
        );
        std::fs::write(root.path().join("manifest/c1.jsonl"), b"").unwrap();
        require_local(root.path()).unwrap();
        let sub = root.path().join("audit/date=2026-01-01");
        let e = require_local(&sub).unwrap_err().to_string();
        assert!(e.contains("is not an audit data dir"), "{e}");
        assert!(
            e.ends_with(&format!("did you mean {}?", root.path().display())),
            "{e}"
        );
    }

    #[test]
    fn sealed_through_skips_digests_taken_with_rows_unsealed() {
        let digest = |unsealed| Body::Digest {
            seq_last: 0,
            period_start_ns: 0,
            period_end_ns: 0,
            seals: 0,
            unsealed,
        };
        let at = |time_ns, body| Entry {
            index: 0,
            time_ns,
            body,
            prev: String::new(),
            hash: String::new(),
        };
        let seal = Body::Seal {
            seq_first: 1,
            seq_last: 1,
            files: vec![],
        };
        assert_eq!(sealed_through_ns(&[at(5, digest(3))]), None);
        let chain = [at(1, seal), at(2, digest(0)), at(3, digest(4))];
        assert_eq!(sealed_through_ns(&chain), Some(2));
    }
}
