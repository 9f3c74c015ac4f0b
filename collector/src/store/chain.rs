//! Manifests in an object store.
//!
//! An object store has no append, and nothing in it is ever overwritten, so
//! a collector's manifest is kept there as one object per entry, created
//! once:
//!
//! ```text
//! PREFIX/manifest/<collector_id>/<index, 20 digits>.json
//! ```
//!
//! holding exactly the JSON of the entry (the same as a line of a local
//! `manifest/<collector_id>.jsonl`). Each collector writes only its own
//! folder, so any number of collectors share a bucket without their chains
//! interleaving; the index in the name is the entry's place in its chain.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};

use super::put::read;
use super::Location;
use crate::manifest::Entry;

/// Entries fetched at once when reading chains.
const CONCURRENCY: usize = 16;

/// Relative path of entry `index` of a collector's chain.
pub fn entry_rel(collector_id: &str, index: u64) -> String {
    format!("manifest/{collector_id}/{index:020}.json")
}

/// The stored form of an entry.
pub fn entry_bytes(entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = serde_json::to_vec(entry)?;
    out.push(b'\n');
    Ok(out)
}

/// One entry object of a stored chain.
#[derive(Clone, Debug)]
pub struct StoredEntry {
    /// Its path relative to the dataset root.
    pub rel: String,
    /// The index its name gives (`None`: not an entry name).
    pub named_index: Option<u64>,
    /// The entry, or why it cannot be read.
    pub entry: Result<Entry, String>,
}

/// The entry objects of every collector under `PREFIX/manifest/`, by
/// collector id, sorted by name; nothing is fetched.
pub async fn list(loc: &Location) -> object_store::Result<BTreeMap<String, Vec<String>>> {
    list_under(loc, "manifest").await
}

/// The entry object names of one collector's chain, sorted.
pub async fn list_one(loc: &Location, collector_id: &str) -> object_store::Result<Vec<String>> {
    let dir = format!("manifest/{collector_id}");
    Ok(list_under(loc, &dir)
        .await?
        .into_values()
        .flatten()
        .collect())
}

async fn list_under(
    loc: &Location,
    dir: &str,
) -> object_store::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rel in loc.list(dir).await? {
        // manifest/<collector_id>/<name>
        let mut parts = rel.splitn(3, '/');
        if let (Some("manifest"), Some(id), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            out.entry(id.to_owned()).or_default().push(rel.clone());
        }
    }
    Ok(out)
}

/// The index an entry object's name gives.
pub fn named_index(rel: &str) -> Option<u64> {
    let name = rel.rsplit('/').next()?.strip_suffix(".json")?;
    (name.len() == 20).then(|| name.parse().ok()).flatten()
}

/// Fetches and parses entry objects, in the order given.
pub async fn fetch(loc: &Location, rels: Vec<String>) -> object_store::Result<Vec<StoredEntry>> {
    futures::stream::iter(rels)
        .map(|rel| async move {
            let bytes = read(loc.store.as_ref(), &loc.path(&rel)).await?;
            let entry = serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string());
            Ok(StoredEntry {
                named_index: named_index(&rel),
                rel,
                entry,
            })
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Every collector's stored chain, by collector id.
pub async fn read_all(loc: &Location) -> object_store::Result<BTreeMap<String, Vec<StoredEntry>>> {
    let mut out = BTreeMap::new();
    for (id, rels) in list(loc).await? {
        out.insert(id, fetch(loc, rels).await?);
    }
    Ok(out)
}

/// One collector's chain, wherever the dataset is: a local data dir's
/// `manifest/<collector_id>.jsonl`, or the entry objects of a bucket, in
/// order. A missing chain has no entries; an entry that does not parse is
/// an error (checking the chain's links is the caller's business).
pub async fn entries(loc: &Location, collector_id: &str) -> std::io::Result<Vec<Entry>> {
    if let Some(dir) = loc.local_dir() {
        let (entries, _) =
            crate::manifest::read(&crate::manifest::manifest_path(dir, collector_id))?;
        return Ok(entries);
    }
    let rels = list_one(loc, collector_id)
        .await
        .map_err(std::io::Error::other)?;
    fetch(loc, rels)
        .await
        .map_err(std::io::Error::other)?
        .into_iter()
        .map(|s| {
            s.entry.map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", s.rel))
            })
        })
        .collect()
}
