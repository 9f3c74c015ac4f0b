//! The manifest: an append-only, hash-chained list of what this collector
//! sealed. One JSON line per entry in `DIR/manifest/<collector_id>.jsonl`;
//! each entry's `hash` is SHA-256 over the previous entry's hash and the
//! entry's own content, so an edited, dropped or reordered entry breaks the
//! chain from that point on.
//!
//! The manifest is also the commit point of a seal: files on disk that it
//! does not list were never committed (a crash mid-seal) and are rebuilt
//! from the write-ahead log on recovery.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hash of the (absent) entry before the first.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A sealed file as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the data dir, `/`-separated.
    pub path: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Rows in the file.
    pub rows: u64,
    /// Smallest `seq` in the file.
    pub seq_min: u64,
    /// Largest `seq` in the file.
    pub seq_max: u64,
    /// Earliest event time in the file, ns.
    pub time_min_ns: i64,
    /// Latest event time in the file, ns.
    pub time_max_ns: i64,
    /// File size in bytes.
    pub bytes: u64,
}

/// What an entry says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Rows `seq_first..=seq_last` were sealed into `files` (all of them:
    /// the seq ranges of consecutive seals are contiguous).
    Seal {
        /// First seq covered.
        seq_first: u64,
        /// Last seq covered.
        seq_last: u64,
        /// The files written.
        files: Vec<FileEntry>,
    },
    /// A heartbeat appended every digest interval whether or not anything
    /// was sealed: with the chain, it proves what happened (or that nothing
    /// did) between `period_start_ns` and `period_end_ns`.
    Digest {
        /// Highest seq sealed so far (0 when none).
        seq_last: u64,
        /// Start of the period covered (the previous digest's end).
        period_start_ns: i64,
        /// End of the period covered.
        period_end_ns: i64,
        /// Seals appended during the period.
        seals: u64,
        /// Rows acknowledged but not yet sealed when the digest was taken
        /// (a digest seals first, so normally none). Left out of the JSON,
        /// and so of the hash, when zero: older entries keep their hashes.
        #[serde(default, skip_serializing_if = "is_zero")]
        unsealed: u64,
    },
    /// A sealed file deleted by the retention policy, recorded before the
    /// file goes so that `verify` can tell policy from tampering.
    Delete {
        /// The file as its seal listed it.
        file: FileEntry,
        /// Why (the policy that applied).
        reason: String,
    },
    /// A retention policy signed by an operator key: what later `delete`
    /// entries may remove ([`crate::policy_chain`]).
    Policy(crate::policy_chain::Policy),
    /// A legal hold placed or released, signed by an operator key.
    Hold(crate::policy_chain::Hold),
    /// Nothing was listening: appended at a start that comes more than a
    /// digest interval (plus slack) after the last digest. The window runs
    /// from the last entry before (the last sign of life) to the start.
    Gap {
        /// Index of the last digest before the gap.
        last_digest: u64,
        /// Time of the last entry before the gap, ns.
        from_ns: i64,
        /// When the collector started again, ns.
        to_ns: i64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The content that is hashed: everything but the hash itself.
#[derive(Serialize)]
struct Hashed<'a> {
    index: u64,
    time_ns: i64,
    #[serde(flatten)]
    body: &'a Body,
    prev: &'a str,
}

/// One manifest line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 0-based position in the chain.
    pub index: u64,
    /// When the entry was appended, ns.
    pub time_ns: i64,
    /// What it records.
    #[serde(flatten)]
    pub body: Body,
    /// Hash of the previous entry ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 of `prev` and this entry's content, hex.
    pub hash: String,
}

impl Entry {
    /// The hash this entry should carry, recomputed from its content.
    pub fn compute_hash(&self) -> String {
        entry_hash(self.index, self.time_ns, &self.body, &self.prev)
    }
}

fn entry_hash(index: u64, time_ns: i64, body: &Body, prev: &str) -> String {
    let content = serde_json::to_vec(&Hashed {
        index,
        time_ns,
        body,
        prev,
    })
    .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(&content);
    hex::encode(h.finalize())
}

/// The manifest of one collector, open for appending.
#[derive(Debug)]
pub struct Manifest {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
    /// An append was written but its fsync failed: see [`Manifest::uncertain`].
    uncertain: bool,
}

/// Path of a collector's manifest under a data dir.
pub fn manifest_path(data_dir: &Path, collector_id: &str) -> PathBuf {
    data_dir
        .join("manifest")
        .join(format!("{collector_id}.jsonl"))
}

/// Reads a manifest's entries. A last line without its newline is a torn
/// append (the crash came first) and is reported separately, not parsed.
pub fn read(path: &Path) -> io::Result<(Vec<Entry>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    let mut good_len = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let entry: Entry = serde_json::from_str(line.trim_end()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: entry {}: {e}", path.display(), entries.len()),
            )
        })?;
        entries.push(entry);
        good_len += n as u64;
    }
    Ok((entries, good_len))
}

/// Every collector's manifest under a data dir, by collector id; a missing
/// `manifest/` dir has none.
pub fn read_all(data_dir: &Path) -> io::Result<std::collections::BTreeMap<String, Vec<Entry>>> {
    let dir = data_dir.join("manifest");
    let mut out = std::collections::BTreeMap::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
        else {
            continue;
        };
        out.insert(id.to_owned(), read(&path)?.0);
    }
    Ok(out)
}

impl Manifest {
    /// Opens (or creates) a manifest, cutting off a torn last line.
    pub fn open(path: &Path) -> io::Result<Manifest> {
        if let Some(dir) = path.parent() {
            crate::fsio::create_dir_synced(dir)?;
        }
        let (entries, good_len) = read(path)?;
        let file = crate::fsio::open(
            OpenOptions::new().create(true).append(true).read(true),
            path,
        )?;
        if file.metadata()?.len() != good_len {
            crate::fsio::set_len(&file, path, good_len)?;
        }
        // Always: what was read here must be what a power loss leaves. An
        // append whose fsync failed was cut off again in the page cache,
        // but the cut may not be on disk; a recovery that then removes the
        // files of that entry's seal would leave an entry naming missing
        // files (and its rows, counted as sealed, skipped in the WAL).
        crate::fsio::sync_all(&file, path)?;
        if let Some(dir) = path.parent() {
            crate::fsio::sync_dir(dir)?;
        }
        Ok(Manifest {
            path: path.to_owned(),
            file,
            entries,
            uncertain: false,
        })
    }

    /// An entry was written whole but its fsync failed. It was cut off
    /// again, but the cut may not reach the disk while the entry does, so
    /// whether it is committed is unknown until the file is opened again;
    /// until then this handle appends nothing more.
    pub fn uncertain(&self) -> bool {
        self.uncertain
    }

    /// Entries so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Path of the manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Highest seq any seal covered, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.entries.iter().rev().find_map(|e| match &e.body {
            Body::Seal { seq_last, .. } => Some(*seq_last),
            _ => None,
        })
    }

    /// When the last digest was appended, if ever.
    pub fn last_digest_ns(&self) -> Option<i64> {
        self.entries.iter().rev().find_map(|e| match &e.body {
            Body::Digest { period_end_ns, .. } => Some(*period_end_ns),
            _ => None,
        })
    }

    /// Hash of the newest entry ([`GENESIS`] when empty).
    pub fn head(&self) -> &str {
        self.entries.last().map_or(GENESIS, |e| e.hash.as_str())
    }

    /// Appends an entry and makes it durable before returning.
    pub fn append(&mut self, time_ns: i64, body: Body) -> io::Result<&Entry> {
        let prev = self
            .entries
            .last()
            .map_or_else(|| GENESIS.to_owned(), |e| e.hash.clone());
        let index = self.entries.len() as u64;
        let hash = entry_hash(index, time_ns, &body, &prev);
        let entry = Entry {
            index,
            time_ns,
            body,
            prev,
            hash,
        };
        self.write(entry)
    }

    /// Appends an entry made elsewhere (the copy of this chain kept in an
    /// object store, when the local one is behind): it must be the next one
    /// and carry its own hash.
    pub fn adopt(&mut self, entry: Entry) -> io::Result<&Entry> {
        let invalid = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: cannot adopt entry {}: {what}",
                    self.path.display(),
                    entry.index
                ),
            )
        };
        if entry.index != self.entries.len() as u64 {
            return Err(invalid("not the next index"));
        }
        if entry.prev != self.head() {
            return Err(invalid("`prev` is not this chain's head"));
        }
        if entry.compute_hash() != entry.hash {
            return Err(invalid("content does not match its hash"));
        }
        self.write(entry)
    }

    fn write(&mut self, entry: Entry) -> io::Result<&Entry> {
        if self.uncertain {
            return Err(io::Error::other(format!(
                "{}: an earlier entry failed its fsync; reopen the manifest",
                self.path.display()
            )));
        }
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        line.push(b'\n');
        let before = self.file.metadata()?.len();
        if let Err(e) = crate::fsio::append(&mut self.file, &self.path, before, &line) {
            // Not all of it was written: a torn line, which a reader drops.
            let _ = crate::fsio::set_len(&self.file, &self.path, before);
            return Err(e);
        }
        if let Err(e) = crate::fsio::sync_data(&self.file, &self.path) {
            let _ = crate::fsio::set_len(&self.file, &self.path, before);
            self.uncertain = true;
            return Err(e);
        }
        self.entries.push(entry);
        Ok(self.entries.last().expect("just pushed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn seal(first: u64, last: u64) -> Body {
        Body::Seal {
            seq_first: first,
            seq_last: last,
            files: vec![],
        }
    }

    #[test]
    fn entries_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut m = Manifest::open(&path).unwrap();
        m.append(1, seal(1, 5)).unwrap();
        m.append(2, seal(6, 9)).unwrap();
        let m = Manifest::open(&path).unwrap();
        let e = m.entries();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].prev, GENESIS);
        assert_eq!(e[1].prev, e[0].hash);
        assert!(e.iter().all(|x| x.compute_hash() == x.hash));
        assert_eq!(m.last_seq(), Some(9));
    }

    #[test]
    fn torn_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        Manifest::open(&path)
            .unwrap()
            .append(1, seal(1, 5))
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"index\":1,\"ti").unwrap();
        let m = Manifest::open(&path).unwrap();
        assert_eq!(m.entries().len(), 1);
        assert!(fs::read_to_string(&path).unwrap().ends_with("}\n"));
    }

    #[test]
    fn adopting_takes_only_the_next_intact_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Manifest::open(&dir.path().join("a.jsonl")).unwrap();
        source.append(1, seal(1, 5)).unwrap();
        source.append(2, seal(6, 9)).unwrap();
        let mut copy = Manifest::open(&dir.path().join("b.jsonl")).unwrap();
        let [first, second] = source.entries() else {
            panic!("two entries")
        };
        assert!(copy.adopt(second.clone()).is_err(), "not the next one");
        let mut edited = first.clone();
        edited.body = seal(1, 4);
        assert!(copy.adopt(edited).is_err(), "hash does not match");
        copy.adopt(first.clone()).unwrap();
        copy.adopt(second.clone()).unwrap();
        let reopened = Manifest::open(&dir.path().join("b.jsonl")).unwrap();
        assert_eq!(reopened.entries(), source.entries());
    }

    #[test]
    fn edited_entry_no_longer_matches_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut m = Manifest::open(&path).unwrap();
        m.append(1, seal(1, 5)).unwrap();
        let mut e = m.entries()[0].clone();
        e.body = seal(1, 4);
        assert_ne!(e.compute_hash(), e.hash);
    }
}
