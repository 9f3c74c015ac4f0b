//! Deduplication of `event_id` with memory that does not grow with the
//! window.
//!
//! A resend carries the id of the original, and must be stored once even
//! when the original was sealed hours ago. Holding every id of the window
//! in memory costs about 110 MB per million ids, so a busy sidecar would be
//! killed long before a 24-hour window fills. Instead:
//!
//! - ids acknowledged but not sealed yet are held exactly (bounded by the
//!   unsealed buffer, which `max_buffered_rows` bounds);
//! - each file sealed within the window is remembered by its path and the
//!   smallest and largest id in it (UUIDv7 ids sort by time, so the range
//!   of a file is narrow and new ids fall after it);
//! - an id inside a file's range is checked against the file's own Parquet
//!   bloom filter on `event_id` (read when needed, kept in a cache of a
//!   fixed byte budget), and a "maybe" is confirmed against the file's ids,
//!   so a false positive of the filter never drops a record. The filters
//!   answer "maybe" for a few percent of new ids, so the confirmation goes
//!   first through a sorted list of 64-bit hashes of the file's ids (8 bytes
//!   an id, a few files kept within [`HASHES_BYTES`]): an id whose hash is
//!   absent is not in the file. Only a hash that is present (a resend, or a
//!   2^-64 collision) is checked against the ids themselves. Without it,
//!   clients whose id ranges overlap (several load generators, skewed
//!   clocks) made every "maybe" read a whole file, alternating between
//!   files, and the writer fell behind its queue.
//!
//! Memory: the unsealed ids, about 200 bytes per sealed file of the window,
//! the bloom cache budget, the hash lists' budget and the ids of the one
//! file read last. A file
//! that cannot be read is logged and the id is stored: a possible duplicate
//! row is better than a lost record.
//!
//! Every method takes the time (ns) from its caller, so tests drive the
//! window with a clock of their own.

use std::collections::{HashSet, VecDeque};
use std::path::Path;

use bytes::Bytes;
use parquet::bloom_filter::Sbbf;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Reads a sealed file's bytes by its path relative to the data dir.
pub type ReadFile<'a> = dyn Fn(&str) -> Result<Bytes, String> + 'a;

/// A file sealed within the window: where it is and the range of its ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedIds {
    /// When it was sealed, ns.
    pub sealed_ns: i64,
    /// Path relative to the data dir.
    pub rel: String,
    /// Smallest `event_id` in it.
    pub min: String,
    /// Largest `event_id` in it.
    pub max: String,
}

/// Bloom filters of one file (one per row group), or none when the file has
/// none (then its ids are read).
type Blooms = Option<Vec<Sbbf>>;

/// The ids one deduplication domain (actions, or violations) has seen.
#[derive(Debug)]
pub struct Dedup {
    window_ns: i64,
    /// Keyed with random keys drawn at start (aHash): the ids are chosen
    /// by clients, so an unkeyed hash would let one send ids that all
    /// collide and turn each lookup into a scan. SipHash was a few percent
    /// of the single writer's time.
    pending: HashSet<String, ahash::RandomState>,
    /// Ids of the rows a seal under way is writing (see [`Dedup::begin_seal`]).
    sealing: HashSet<String, ahash::RandomState>,
    files: VecDeque<SealedIds>,
    cache: VecDeque<(String, Blooms, usize)>,
    cache_bytes: usize,
    cache_budget: usize,
    /// Sorted hashes of the ids of files confirmed against lately, least
    /// recently used first, with their total bytes.
    hashes: VecDeque<(String, Vec<u64>)>,
    hashes_bytes: usize,
    confirmed: Option<(String, HashSet<String>)>,
}

/// Budget of the hash lists: 8 bytes an id, five files of 200,000 ids.
pub const HASHES_BYTES: usize = 8 << 20;

/// An id's hash for the lists: SipHash with fixed keys, the same for a
/// file's ids and the id asked about (never stored anywhere).
fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(id)
}

/// Bloom filter cache budget: 64 files of 200,000 ids at the writer's
/// false-positive rate fit in it.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

impl Dedup {
    /// Remembers ids for `window`, with a bloom filter cache of
    /// `cache_bytes`.
    pub fn new(window: std::time::Duration, cache_bytes: usize) -> Dedup {
        Dedup {
            window_ns: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX),
            pending: HashSet::with_hasher(ahash::RandomState::new()),
            sealing: HashSet::with_hasher(ahash::RandomState::new()),
            files: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_budget: cache_bytes,
            hashes: VecDeque::new(),
            hashes_bytes: 0,
            confirmed: None,
        }
    }

    /// Whether `id` was stored within the window.
    pub fn contains(&mut self, id: &str, read: &ReadFile<'_>) -> bool {
        if self.pending.contains(id) || self.sealing.contains(id) {
            return true;
        }
        // Newest first: a resend most often follows its original closely.
        let candidates: Vec<String> = self
            .files
            .iter()
            .rev()
            .filter(|f| f.min.as_str() <= id && id <= f.max.as_str())
            .map(|f| f.rel.clone())
            .collect();
        candidates.iter().any(|rel| self.in_file(rel, id, read))
    }

    /// Remembers an id just acknowledged.
    pub fn insert(&mut self, id: String) {
        self.pending.insert(id);
    }

    /// Forgets an id whose write was withdrawn (not acknowledged).
    pub fn forget(&mut self, id: &str) {
        if !self.pending.remove(id) {
            self.sealing.remove(id);
        }
    }

    /// Ids held exactly (acknowledged, not sealed).
    pub fn pending(&self) -> usize {
        self.pending.len() + self.sealing.len()
    }

    /// A seal of every row acknowledged so far starts: their ids are set
    /// apart (still found by [`Dedup::contains`]) from those acknowledged
    /// while it runs, so that [`Dedup::sealed`] gives up only theirs.
    pub fn begin_seal(&mut self) {
        let ids = std::mem::take(&mut self.pending);
        self.sealing.extend(ids);
    }

    /// The seal begun last failed: its ids are pending again.
    pub fn seal_failed(&mut self) {
        let ids = std::mem::take(&mut self.sealing);
        self.pending.extend(ids);
    }

    /// Files remembered by range.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// The ids set apart by [`Dedup::begin_seal`] were sealed into `rels`
    /// at `now_ns`: the exact ids give way to the files' range (one range
    /// for the seal's files, which holds each file's ids).
    pub fn sealed(&mut self, now_ns: i64, rels: impl IntoIterator<Item = String>) {
        let (Some(min), Some(max)) = (self.sealing.iter().min(), self.sealing.iter().max()) else {
            return;
        };
        let (min, max) = (min.clone(), max.clone());
        for rel in rels {
            self.files.push_back(SealedIds {
                sealed_ns: now_ns,
                rel,
                min: min.clone(),
                max: max.clone(),
            });
        }
        self.sealing = HashSet::with_hasher(ahash::RandomState::new());
    }

    /// Remembers a file sealed earlier (recovery), by the ids in it.
    pub fn add_file(&mut self, sealed_ns: i64, rel: String, ids: &[String]) {
        if let (Some(min), Some(max)) = (ids.iter().min(), ids.iter().max()) {
            self.files.push_back(SealedIds {
                sealed_ns,
                rel,
                min: min.clone(),
                max: max.clone(),
            });
        }
    }

    /// Forgets files sealed before the window.
    pub fn prune(&mut self, now_ns: i64) {
        let since = now_ns.saturating_sub(self.window_ns);
        while self.files.front().is_some_and(|f| f.sealed_ns < since) {
            if let Some(f) = self.files.pop_front() {
                self.cache.retain(|(rel, ..)| *rel != f.rel);
                self.hashes.retain(|(rel, _)| *rel != f.rel);
                if self
                    .confirmed
                    .as_ref()
                    .is_some_and(|(rel, _)| *rel == f.rel)
                {
                    self.confirmed = None;
                }
            }
        }
        self.cache_bytes = self.cache.iter().map(|(.., n)| n).sum();
        self.hashes_bytes = self.hashes.iter().map(|(_, h)| h.len() * 8).sum();
    }

    fn in_file(&mut self, rel: &str, id: &str, read: &ReadFile<'_>) -> bool {
        let maybe = match self.blooms(rel, read) {
            Ok(Some(blooms)) => blooms.iter().any(|b| b.check(id)),
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(file = rel, error = %e, "cannot read a sealed file's ids for deduplication; storing the record");
                return false;
            }
        };
        maybe && self.hash_listed(rel, id, read) && self.confirm(rel, id, read)
    }

    /// Whether `id`'s hash is among those of the file's ids; `true` when
    /// the file cannot be read (the exact check then decides).
    fn hash_listed(&mut self, rel: &str, id: &str, read: &ReadFile<'_>) -> bool {
        if let Some(i) = self.hashes.iter().position(|(r, _)| r == rel) {
            let hit = self.hashes.remove(i);
            self.hashes.extend(hit);
        } else {
            let ids = read(rel).and_then(|bytes| {
                crate::partition::read_event_ids_bytes(bytes, Path::new(rel))
                    .map_err(|e| e.to_string())
            });
            let Ok(ids) = ids else { return true };
            let mut list: Vec<u64> = ids.iter().map(|i| id_hash(i)).collect();
            list.sort_unstable();
            self.hashes_bytes += list.len() * 8;
            self.hashes.push_back((rel.to_owned(), list));
            while self.hashes_bytes > HASHES_BYTES && self.hashes.len() > 1 {
                if let Some((_, h)) = self.hashes.pop_front() {
                    self.hashes_bytes -= h.len() * 8;
                }
            }
        }
        self.hashes
            .back()
            .is_none_or(|(_, list)| list.binary_search(&id_hash(id)).is_ok())
    }

    fn blooms(&mut self, rel: &str, read: &ReadFile<'_>) -> Result<Option<&Vec<Sbbf>>, String> {
        if let Some(i) = self.cache.iter().position(|(r, ..)| r == rel) {
            // Move to the back: least recently used leave first.
            let hit = self.cache.remove(i).ok_or("cache index")?;
            self.cache.push_back(hit);
        } else {
            let (blooms, bytes) = read_blooms(read(rel)?, rel)?;
            self.cache_bytes += bytes;
            self.cache.push_back((rel.to_owned(), blooms, bytes));
            while self.cache_bytes > self.cache_budget && self.cache.len() > 1 {
                if let Some((.., n)) = self.cache.pop_front() {
                    self.cache_bytes -= n;
                }
            }
        }
        Ok(self.cache.back().and_then(|(_, b, _)| b.as_ref()))
    }

    fn confirm(&mut self, rel: &str, id: &str, read: &ReadFile<'_>) -> bool {
        if self.confirmed.as_ref().is_none_or(|(r, _)| r != rel) {
            let ids = read(rel).and_then(|bytes| {
                crate::partition::read_event_ids_bytes(bytes, Path::new(rel))
                    .map_err(|e| e.to_string())
            });
            match ids {
                Ok(ids) => self.confirmed = Some((rel.to_owned(), ids.into_iter().collect())),
                Err(e) => {
                    tracing::warn!(file = rel, error = %e, "cannot read a sealed file's ids for deduplication; storing the record");
                    return false;
                }
            }
        }
        self.confirmed
            .as_ref()
            .is_some_and(|(_, ids)| ids.contains(id))
    }
}

/// The bloom filters on `event_id` of a file's row groups, and their size.
fn read_blooms(bytes: Bytes, rel: &str) -> Result<(Blooms, usize), String> {
    let options = crate::partition::bloom_read_options();
    let reader = SerializedFileReader::new_with_options(bytes, options)
        .map_err(|e| format!("{rel}: {e}"))?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let Some(col) =
        (0..schema.num_columns()).find(|&i| schema.column(i).path().string() == "event_id")
    else {
        return Err(format!("{rel}: no event_id column"));
    };
    let mut out = Vec::new();
    let mut size = 0usize;
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g).map_err(|e| format!("{rel}: {e}"))?;
        match rg.get_column_bloom_filter(col) {
            Some(b) => out.push(b.clone()),
            None => return Ok((None, 0)),
        }
        let len = meta.row_group(g).column(col).bloom_filter_length();
        size += usize::try_from(len.unwrap_or(0)).unwrap_or(0);
    }
    Ok((Some(out), size))
}

#[cfg(test)]
#[path = "dedup_tests.rs"]
mod tests;
