//! Power loss with an object store: the local part of the push path (seal
//! committed locally, files and manifest entry pushed, then the WAL
//! segments and the local copies deleted), checked at every crash point.
//!
//! The store is remote: an upload it acknowledged is durable there, so
//! each crash state pairs the local files a power loss leaves with the
//! objects whose upload had returned by then (each upload is a mark in
//! the record). On each state the collector restarts against that store
//! and stops; then every acknowledged record is in a file of the store's
//! chain exactly once, the store's chain is the local one, and the data
//! dir holds no sealed file that was pushed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use audit_durable::powerloss::model::State;
use audit_durable::powerloss::{explore, scratch, states_per_point, Event, Recorder};

use super::{commit, group_commit, recover, Ids, COLLECTOR};
use crate::ingest::{Ingest, IngestConfig, RemoteTarget};
use crate::manifest::Body;
use crate::store::{chain, put, Location};

/// The mark of an upload the store acknowledged.
const STORED: &str = "stored:";

/// An in-memory store that marks each acknowledged upload in the record.
#[derive(Debug)]
struct Marking {
    inner: Arc<InMemory>,
    rec: Arc<Recorder>,
}

impl fmt::Display for Marking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "marking {}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Marking {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let done = self.inner.put_opts(location, payload, opts).await?;
        self.rec.ack([format!("{STORED}{location}")]);
        Ok(done)
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // The collector uploads whole objects; a multipart upload here
        // would escape the marks.
        Err(object_store::Error::NotImplemented {
            operation: format!("multipart upload of {location}"),
            implementer: "the power-loss test store".into(),
        })
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn location(store: Arc<dyn ObjectStore>) -> Location {
    Location::from_store(store, ObjectPath::default(), "memory://powerloss")
}

fn config(root: &Path, store: Arc<dyn ObjectStore>) -> IngestConfig {
    let mut c = super::config(root);
    c.remote = Some(RemoteTarget {
        location: location(store),
        object_lock: None,
    });
    c
}

/// Two sessions of the store, each sealing and pushing at shutdown; the
/// record and the store as it was at the end.
fn recorded_run(root: &Path) -> (Vec<Event>, Arc<InMemory>) {
    let rt = super::runtime();
    let rec = Arc::new(Recorder::start(root));
    let inner = Arc::new(InMemory::new());
    let store: Arc<dyn ObjectStore> = Arc::new(Marking {
        inner: inner.clone(),
        rec: rec.clone(),
    });
    let mut next = Ids::default();
    for session in 0..2 {
        let ingest = Ingest::start(config(root, store.clone()), Default::default()).expect("start");
        group_commit(&rt, &rec, &ingest, (0..3).map(|i| next.batch(2, 1, i % 2)));
        commit(&rt, &rec, &ingest, next.batch(1, 1, session));
        ingest.shutdown().expect("seal and push");
    }
    drop(store);
    let rec = Arc::try_unwrap(rec).unwrap_or_else(|_| panic!("the store still holds the record"));
    (rec.finish(), inner)
}

/// The store as it was at a crash point: the objects whose upload had
/// returned.
fn store_at(marks: &BTreeSet<String>, last: &InMemory, rt: &tokio::runtime::Runtime) -> InMemory {
    let store = InMemory::new();
    for path in marks.iter().filter_map(|m| m.strip_prefix(STORED)) {
        let path = ObjectPath::from(path);
        let bytes = rt.block_on(put::read(last, &path)).expect("uploaded");
        rt.block_on(store.put(&path, PutPayload::from_bytes(bytes)))
            .expect("copied");
    }
    store
}

fn check(state: &State, marks: &BTreeSet<String>, last: &InMemory) -> Result<(), String> {
    let rt = super::runtime();
    let store: Arc<dyn ObjectStore> = Arc::new(store_at(marks, last, &rt));
    let dir = scratch();
    let root = dir.path();
    recover_with(state, root, store.clone())?;
    let loc = location(store.clone());
    let entries = rt
        .block_on(chain::entries(&loc, COLLECTOR))
        .map_err(|e| format!("the store's chain: {e}"))?;
    let (local, _) = crate::manifest::read(&crate::manifest::manifest_path(root, COLLECTOR))
        .map_err(|e| format!("the local manifest: {e}"))?;
    if entries != local {
        return Err(format!(
            "the store has {} entries, the data dir {}",
            entries.len(),
            local.len()
        ));
    }
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for entry in &entries {
        let Body::Seal { files, .. } = &entry.body else {
            continue;
        };
        for f in files {
            let bytes: Bytes = rt
                .block_on(put::read(store.as_ref(), &loc.path(&f.path)))
                .map_err(|e| format!("{} not in the store: {e}", f.path))?;
            if put::sha256_hex(&bytes) != f.sha256 {
                return Err(format!("{} in the store differs from its entry", f.path));
            }
            if root.join(&f.path).exists() {
                return Err(format!("{} pushed but still in the data dir", f.path));
            }
            let ids = crate::partition::read_event_ids_bytes(bytes, Path::new(&f.path))
                .map_err(|e| e.to_string())?;
            for id in ids {
                *stored.entry(id).or_default() += 1;
            }
        }
    }
    if let Some((id, n)) = stored.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{id} stored {n} times"));
    }
    let records = marks.iter().filter(|m| !m.starts_with(STORED));
    if let Some(id) = records.into_iter().find(|id| !stored.contains_key(*id)) {
        return Err(format!("acknowledged {id} lost"));
    }
    Ok(())
}

/// [`recover`] against `store`.
fn recover_with(state: &State, root: &Path, store: Arc<dyn ObjectStore>) -> Result<(), String> {
    recover(state, root, config(root, store))
}

#[test]
fn every_crash_point_of_seals_pushed_to_an_object_store_keeps_everything_acknowledged() {
    let dir = scratch();
    let (events, last) = recorded_run(dir.path());
    let uploads = super::acked(&events)
        .iter()
        .filter(|m| m.starts_with(STORED))
        .count();
    // Two seals of two partitions of both datasets and their entries.
    assert!(uploads >= 6, "only {uploads} uploads");
    let checked = explore(&events, states_per_point(), 0x9054, |s, m| {
        check(s, m, &last)
    })
    .assert_clean();
    eprintln!(
        "{} crash points, {checked} distinct crash states",
        events.len() + 1
    );
    assert!(checked >= 50, "only {checked} crash states");
}
