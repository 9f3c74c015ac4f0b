//! Pushing committed seals to an object store.
//!
//! With a remote store, the data dir is a staging area: a seal commits
//! locally exactly as without one (files, then the local manifest entry,
//! the commit point), and then every local manifest entry the store does
//! not have yet is pushed, in order — its files first, then the entry
//! object (see [`crate::store::chain`]). Only after that are the WAL
//! segments the seal covered deleted, and the local copies of the pushed
//! files. So acknowledged rows stay in the WAL until their files and
//! manifest entry are in the store, and a crash at any step leaves one of:
//! - an uncommitted local seal: rebuilt from the WAL, as without a store;
//! - committed entries not (fully) pushed: pushed at the next start, seal
//!   or retry tick; objects an interrupted push already created are
//!   recognized by their hash ([`crate::store::put`]), never duplicated;
//! - pushed entries whose local copies were not yet removed: removed at start.
//!
//! The store's copy of a chain is always a prefix of the local one. A local
//! manifest that is behind the store's (a data dir lost or replaced) is
//! first brought up to date from the store; one that disagrees with it
//! stops the collector rather than fork the chain.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;

use super::{storage, IngestError, RemoteTarget};
use crate::manifest::{Body, Entry, FileEntry, Manifest};
use crate::store::chain::{self, named_index};
use crate::store::lock::{LockHeaders, ObjectLock};
use crate::store::put::{self, sha256_hex, Created, Retry};
use crate::store::Location;

/// The store side of a writer: one collector's chain in the store.
pub(super) struct Remote {
    loc: Location,
    lock: Option<ObjectLock>,
    /// Drives the async store client from the writer thread.
    rt: tokio::runtime::Runtime,
    collector_id: String,
    /// How many entries of the local manifest are in the store.
    pushed: usize,
    retry: Retry,
    /// Upload clients carrying Object Lock headers, one per header set.
    locked: HashMap<LockHeaders, Arc<dyn ObjectStore>>,
}

impl Remote {
    /// Finds how much of this collector's chain the store has, adopting
    /// entries the local manifest lacks.
    pub(super) fn connect(
        target: &RemoteTarget,
        collector_id: &str,
        manifest: &mut Manifest,
    ) -> Result<Remote, IngestError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| storage("store client runtime", e))?;
        let loc = target.location.clone();
        let at = |what: &str| format!("{} ({what})", loc.url);
        let names = rt
            .block_on(chain::list_one(&loc, collector_id))
            .map_err(|e| storage(&at("listing manifest"), e))?;
        if let Some((i, rel)) = names
            .iter()
            .enumerate()
            .find(|(i, rel)| named_index(rel) != Some(*i as u64))
        {
            return Err(IngestError::Storage(format!(
                "{}: the stored chain of {collector_id} is not contiguous at {rel} (expected entry {i}); \
                 run `audit-collector verify` on the store before writing to it",
                loc.url
            )));
        }
        let local = manifest.entries().len();
        let stored = names.len();
        if stored > local {
            let missing = rt
                .block_on(chain::fetch(&loc, names[local..].to_vec()))
                .map_err(|e| storage(&at("reading manifest"), e))?;
            for s in missing {
                let entry = s.entry.map_err(|e| storage(&s.rel, e))?;
                manifest
                    .adopt(entry)
                    .map_err(|e| storage("adopting the stored manifest", e))?;
            }
            tracing::warn!(
                entries = stored - local,
                "the local manifest was behind the store's; brought it up to date"
            );
        } else if stored > 0 {
            let last = rt
                .block_on(chain::fetch(&loc, vec![names[stored - 1].clone()]))
                .map_err(|e| storage(&at("reading manifest"), e))?;
            let theirs = last
                .into_iter()
                .next()
                .and_then(|s| s.entry.ok())
                .map(|e| e.hash);
            if theirs.as_deref() != Some(manifest.entries()[stored - 1].hash.as_str()) {
                return Err(IngestError::Storage(format!(
                    "{}: entry {} of {collector_id}'s chain differs between the store and {}; \
                     refusing to fork the chain (is another collector using this id?)",
                    loc.url,
                    stored - 1,
                    manifest.path().display()
                )));
            }
        }
        Ok(Remote {
            loc,
            lock: target.object_lock.clone(),
            rt,
            collector_id: collector_id.to_owned(),
            pushed: stored,
            // Few tries per push: the writer waits on them (the push itself
            // is retried every few seconds until it lands).
            retry: Retry {
                attempts: 3,
                ..Retry::default()
            },
            locked: HashMap::new(),
        })
    }

    /// Whether local entries wait to be pushed.
    pub(super) fn pending(&self, manifest: &Manifest) -> bool {
        self.pushed < manifest.entries().len()
    }

    /// Pushes every local entry the store does not have yet, in order,
    /// each after its files; removes the local copies of pushed files.
    pub(super) fn push(&mut self, manifest: &Manifest, root: &Path) -> Result<(), IngestError> {
        let today = chrono::Utc::now().date_naive();
        while let Some(entry) = manifest.entries().get(self.pushed) {
            for f in files_of(entry) {
                let local = root.join(&f.path);
                let bytes = match fs::read(&local) {
                    Ok(b) => Bytes::from(b),
                    // Only removed once pushed: then the store has it, which
                    // the create below cannot check without the bytes.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.check_stored(f)?;
                        continue;
                    }
                    Err(e) => return Err(storage(&local.display().to_string(), e)),
                };
                if sha256_hex(&bytes) != f.sha256 {
                    return Err(IngestError::Storage(format!(
                        "{}: does not match its manifest entry; not uploading it",
                        local.display()
                    )));
                }
                let lock = self.lock.as_ref().map(|l| l.for_file(f, today));
                self.create(&f.path, bytes, lock)?;
            }
            let body = chain::entry_bytes(entry).map_err(|e| storage("encode entry", e))?;
            let lock = self
                .lock
                .as_ref()
                .map(|l| l.for_entry(entry.time_ns, today));
            let rel = chain::entry_rel(&self.collector_id, entry.index);
            self.create(&rel, Bytes::from(body), lock)?;
            self.pushed += 1;
            remove_local(root, entry);
        }
        Ok(())
    }

    /// Removes local copies of files whose entries the store already has
    /// (left by a stop between a push and its clean-up).
    pub(super) fn clean_pushed(&self, manifest: &Manifest, root: &Path) {
        for entry in &manifest.entries()[..self.pushed] {
            remove_local(root, entry);
        }
    }

    /// The `event_id`s of a sealed audit file, from the local copy if it
    /// is still there, else from the store.
    pub(super) fn read_bytes(&self, rel: &str) -> Result<bytes::Bytes, String> {
        self.rt
            .block_on(put::read(self.loc.store.as_ref(), &self.loc.path(rel)))
            .map_err(|e| format!("{rel}: {e}"))
    }

    fn check_stored(&self, f: &FileEntry) -> Result<(), IngestError> {
        let bytes = self
            .rt
            .block_on(put::read(self.loc.store.as_ref(), &self.loc.path(&f.path)))
            .map_err(|e| storage(&format!("{} (local copy gone)", f.path), e))?;
        if sha256_hex(&bytes) == f.sha256 {
            Ok(())
        } else {
            Err(IngestError::Storage(format!(
                "{}: local copy gone and the stored object does not match the manifest",
                f.path
            )))
        }
    }

    fn create(
        &mut self,
        rel: &str,
        bytes: Bytes,
        lock: Option<LockHeaders>,
    ) -> Result<(), IngestError> {
        let store = match lock {
            None => self.loc.store.clone(),
            Some(h) => self.locked_client(h)?,
        };
        let path = self.loc.path(rel);
        match self
            .rt
            .block_on(put::create(store.as_ref(), &path, bytes, &self.retry))
        {
            Ok(Created::New) => Ok(()),
            Ok(Created::AlreadyThere) => {
                tracing::info!(object = %path, "already in the store with the same content (an earlier attempt landed)");
                Ok(())
            }
            Err(e) => Err(storage("upload", e)),
        }
    }

    fn locked_client(&mut self, h: LockHeaders) -> Result<Arc<dyn ObjectStore>, IngestError> {
        if let Some(c) = self.locked.get(&h) {
            return Ok(c.clone());
        }
        let client = self
            .loc
            .s3_with_headers(h.header_map())
            .ok_or_else(|| IngestError::Storage("object_lock needs an s3:// store".into()))?
            .map_err(|e| storage("object lock client", e))?;
        // One client per retain-until day: drop old days' clients.
        self.locked.retain(|k, _| k.retain_until >= h.retain_until);
        self.locked.insert(h, client.clone());
        Ok(client)
    }
}

fn files_of(entry: &Entry) -> &[FileEntry] {
    match &entry.body {
        Body::Seal { files, .. } => files,
        _ => &[],
    }
}

/// No directory fsync: a copy a power loss brings back is removed again
/// at the next start ([`Remote::clean_pushed`]).
fn remove_local(root: &Path, entry: &Entry) {
    for f in files_of(entry) {
        let path = root.join(&f.path);
        match crate::fsio::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %path.display(), error = %e, "could not remove the local copy of a pushed file")
            }
            _ => {}
        }
    }
}
