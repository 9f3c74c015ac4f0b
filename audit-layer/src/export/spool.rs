//! The on-disk spool: where records wait while the collector is unreachable,
//! and across a restart of the application.
//!
//! A spool is a directory of segment files, one per spilled batch, named
//! `seg-<id, 20 digits>-<records>.spool` and sent oldest first. A segment
//! is written under a temporary name, fsynced, renamed and the directory
//! fsynced, so a segment either exists whole or not at all; it is deleted
//! only once the collector acknowledged its records. Inside, after an
//! 8-byte magic, every frame is `[u32 len LE][u32 crc32 LE][kind][protobuf]`:
//! the first frame holds the OTLP `Resource` of the process that wrote it
//! (so a resent record keeps its `service.instance.id`), the others one
//! OTLP `LogRecord` each. A frame whose checksum does not match ends the
//! segment's readable part; the loss is reported, never hidden.
//!
//! A lock file (`spool.lock`, `flock`) keeps two processes from sharing one
//! spool directory.
//!
//! Every file-system call goes through [`audit_durable::fsio`], so the
//! power-loss harness checks this ordering (see the `powerloss` tests).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use std::ops::Range;

use audit_durable::fsio;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::encoded::Encoded;

const MAGIC: &[u8; 8] = b"AUDSPL1\n";
const KIND_RESOURCE: u8 = 0;
const KIND_RECORD: u8 = 1;
/// A frame larger than this is corruption, not a record.
const MAX_FRAME: usize = 64 << 20;

struct Segment {
    id: u64,
    path: PathBuf,
    bytes: u64,
    records: u64,
}

/// What a segment holds, as read back.
pub(crate) struct Batch {
    pub resource: Resource,
    /// The records' frames as they were written.
    pub records: Encoded,
    /// Records the file name promised but no valid frame delivered.
    pub lost: u64,
}

pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    bytes: u64,
    records: u64,
    segments: VecDeque<Segment>,
    next_id: u64,
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("bytes", &self.bytes)
            .field("records", &self.records)
            .finish()
    }
}

impl Spool {
    /// Opens (creating) the spool directory, takes its lock and indexes the
    /// segments a previous process left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        // Synced up the tree: a segment is only as durable as the
        // directories that lead to it. Every level, not only those made
        // now: an open that failed (or was killed) may have made them
        // without making them durable.
        fsio::create_dir_synced(dir)?;
        fsio::sync_ancestors(dir)?;
        let lock = fsio::open(
            OpenOptions::new().create(true).truncate(false).write(true),
            &dir.join("spool.lock"),
        )?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "spool directory {} is in use by another process",
                        dir.display()
                    ),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A spill that did not complete: its records were still in
                // memory, which a crash lost anyway.
                let _ = fsio::remove_file(&entry.path());
                continue;
            }
            let Some((id, records)) = parse_name(name) else {
                continue;
            };
            segments.push(Segment {
                id,
                path: entry.path(),
                bytes: entry.metadata()?.len(),
                records,
            });
        }
        segments.sort_by_key(|s| s.id);
        let next_id = segments.last().map_or(1, |s| s.id + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            bytes: segments.iter().map(|s| s.bytes).sum(),
            records: segments.iter().map(|s| s.records).sum(),
            segments: segments.into(),
            next_id,
            _lock: lock,
        })
    }

    /// Records waiting on disk.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Writes the `range` of `records` as one segment, durably.
    /// `Ok(false)`: it would not fit under the size cap (nothing written).
    pub fn append(
        &mut self,
        resource: &Resource,
        records: &Encoded,
        range: Range<usize>,
    ) -> io::Result<bool> {
        if range.is_empty() {
            return Ok(true);
        }
        let mut buf = Vec::with_capacity(records.entries(range.clone()).len() + 16 * range.len());
        buf.extend_from_slice(MAGIC);
        frame(&mut buf, KIND_RESOURCE, &resource.encode_to_vec());
        for i in range.clone() {
            frame(&mut buf, KIND_RECORD, records.message(i));
        }
        let len = buf.len() as u64;
        if self.bytes + len > self.max_bytes {
            return Ok(false);
        }
        let id = self.next_id;
        let n = range.len() as u64;
        let path = self.dir.join(format!("seg-{id:020}-{n}.spool"));
        let tmp = self.dir.join(format!("seg-{id:020}-{n}.tmp"));
        {
            let mut f = fsio::open(
                OpenOptions::new().write(true).create(true).truncate(true),
                &tmp,
            )?;
            fsio::append(&mut f, &tmp, 0, &buf)?;
            fsio::sync_all(&f, &tmp)?;
        }
        fsio::rename(&tmp, &path)?;
        fsio::sync_dir(&self.dir)?;
        self.next_id += 1;
        self.bytes += len;
        self.records += n;
        self.segments.push_back(Segment {
            id,
            path,
            bytes: len,
            records: n,
        });
        Ok(true)
    }

    /// Writes `records` as one segment (tests).
    #[cfg(test)]
    pub fn append_records(
        &mut self,
        resource: &Resource,
        records: &[LogRecord],
    ) -> io::Result<bool> {
        self.append(resource, &Encoded::from_records(records), 0..records.len())
    }

    /// Reads the oldest segment.
    pub fn head(&self) -> Option<io::Result<Batch>> {
        let seg = self.segments.front()?;
        Some(read_segment(&seg.path, seg.records))
    }

    /// Deletes the oldest segment (its records were acknowledged).
    pub fn pop_head(&mut self) -> io::Result<()> {
        if let Some(seg) = self.segments.pop_front() {
            self.bytes -= seg.bytes;
            self.records -= seg.records;
            match fsio::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            fsio::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".spool")?;
    let (id, n) = rest.split_once('-')?;
    Some((id.parse().ok()?, n.parse().ok()?))
}

fn frame(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    buf.extend_from_slice(&((payload.len() + 1) as u32).to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

fn read_segment(path: &Path, promised: u64) -> io::Result<Batch> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut batch = Batch {
        resource: Resource::default(),
        records: Encoded::default(),
        lost: 0,
    };
    let mut rest = data.strip_prefix(MAGIC.as_slice()).unwrap_or(&[]);
    while rest.len() >= 8 {
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_FRAME || rest.len() < 8 + len {
            break;
        }
        let body = &rest[8..8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        match body[0] {
            KIND_RESOURCE => {
                if let Ok(r) = Resource::decode(&body[1..]) {
                    batch.resource = r;
                }
            }
            // Sent as written; decoded only to stop at a frame that is
            // not a record, as before (a rare path: after an outage).
            KIND_RECORD => match LogRecord::decode(&body[1..]) {
                Ok(_) => batch.records.push_message(&body[1..]),
                Err(_) => break,
            },
            _ => break,
        }
        rest = &rest[8 + len..];
    }
    batch.lost = promised.saturating_sub(batch.records.len() as u64);
    Ok(batch)
}

#[cfg(test)]
mod powerloss;

#[cfg(test)]
mod tests {
    use std::fs;

    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::Spool;

    fn rec(i: u64) -> LogRecord {
        LogRecord {
            time_unix_nano: i,
            event_name: "audit.action".into(),
            ..LogRecord::default()
        }
    }

    #[test]
    fn segments_survive_reopen_in_order_and_respect_the_cap() {
        let dir = std::env::temp_dir().join(format!("spool-test-{}", uuid::Uuid::now_v7()));
        let res = Resource::default();
        {
            let mut s = Spool::open(&dir, 10_000).unwrap();
            assert!(s.append_records(&res, &[rec(1), rec(2)]).unwrap());
            assert!(s.append_records(&res, &[rec(3)]).unwrap());
            assert_eq!(s.records(), 3);
            // A second process cannot share the directory.
            assert!(Spool::open(&dir, 10_000).is_err());
            let big: Vec<_> = (0..1000).map(rec).collect();
            assert!(
                !s.append_records(&res, &big).unwrap(),
                "over the cap: refused"
            );
        }
        let mut s = Spool::open(&dir, 10_000).unwrap();
        assert_eq!(s.records(), 3);
        let b = s.head().unwrap().unwrap().records.decoded();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].time_unix_nano, 2);
        s.pop_head().unwrap();
        let b = s.head().unwrap().unwrap().records.decoded();
        assert_eq!(b[0].time_unix_nano, 3);
        s.pop_head().unwrap();
        assert!(s.is_empty() && s.bytes() == 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_frame_is_detected_and_counted() {
        let dir = std::env::temp_dir().join(format!("spool-test-{}", uuid::Uuid::now_v7()));
        let res = Resource::default();
        let mut s = Spool::open(&dir, 10_000).unwrap();
        assert!(s.append_records(&res, &[rec(1), rec(2)]).unwrap());
        let path = s.segments[0].path.clone();
        let mut data = fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&path, data).unwrap();
        let b = s.head().unwrap().unwrap();
        assert_eq!((b.records.len(), b.lost), (1, 1));
        drop(s);
        fs::remove_dir_all(&dir).unwrap();
    }
}
