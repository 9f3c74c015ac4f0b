//! `verify` over an object store: every collector's chain under
//! `PREFIX/manifest/<collector_id>/`, every listed object's hash and rows,
//! seq continuity, and objects no manifest lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{check_file, Chain, Options, Report, Unread};
use crate::manifest::FileEntry;
use crate::partition;
use crate::store::chain;
use crate::store::put::read;
use crate::store::Location;

/// Why the store could not be verified at all (as opposed to findings).
#[derive(Debug, thiserror::Error)]
pub enum VerifyStoreError {
    /// Listing or reading the store failed.
    #[error("{url}: {source}")]
    Store {
        /// The location.
        url: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Nothing under the prefix's `manifest/`: not a dataset.
    #[error(transparent)]
    NotADataset(#[from] crate::coverage::CoverageError),
    /// The client's runtime could not start.
    #[error("cannot start the store client: {0}")]
    Runtime(std::io::Error),
}

/// Verifies the dataset at `loc`, in the store layout (a bucket shared by
/// any number of collectors). Blocking: call it outside an async runtime.
pub fn verify_store(loc: &Location, opts: &Options) -> Result<Report, VerifyStoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(VerifyStoreError::Runtime)?;
    let store_err = |source| VerifyStoreError::Store {
        url: loc.url.clone(),
        source,
    };
    let mut report = Report::default();
    let mut listed = BTreeSet::new();
    let chains = rt.block_on(chain::read_all(loc)).map_err(store_err)?;
    if chains.is_empty() {
        return Err(crate::coverage::CoverageError::NoManifest(loc.url.clone()).into());
    }
    for (id, stored) in chains {
        report.manifests += 1;
        let name = format!("manifest/{id}");
        let mut entries = Vec::with_capacity(stored.len());
        for s in stored {
            match s.entry {
                Ok(e) => {
                    if s.named_index != Some(e.index) {
                        report.add(
                            "entry_misnamed",
                            &s.rel,
                            format!("holds entry {} of the chain", e.index),
                        );
                    }
                    entries.push(e);
                }
                Err(e) => report.add("manifest_unreadable", &s.rel, e),
            }
        }
        let mut check = |f: &FileEntry, seqs: &mut BTreeMap<u64, usize>, report: &mut Report| {
            let content = rt
                .block_on(read(loc.store.as_ref(), &loc.path(&f.path)))
                .map_err(|e| match e {
                    object_store::Error::NotFound { .. } => Unread::Missing,
                    e => Unread::Failed(e.to_string()),
                });
            check_file(f, Path::new(&f.path), content, seqs, report)
        };
        let chain = Chain {
            id,
            name,
            entries: &entries,
        };
        chain.check(opts, &mut listed, &mut report, &mut check);
    }
    for dataset in ["audit", "violations"] {
        let rels = rt.block_on(loc.list(dataset)).map_err(store_err)?;
        for rel in rels {
            let name = rel.rsplit('/').next().unwrap_or_default();
            if partition::is_data_file_name(name) && !listed.contains(&rel) {
                report.add("file_added", rel, "not listed in any manifest");
            }
        }
    }
    Ok(report)
}
