//! Write-ahead log: what the collector has acknowledged but not yet sealed
//! into Parquet.
//!
//! The log is a directory of segments `wal-<first_seq>.log`. A segment is a
//! run of frames `[len: u32 LE][crc32: u32 LE][payload]`. A frame is only
//! acknowledged after `fsync`, so after a crash every acknowledged frame is
//! whole; a torn tail (short or checksum-failing frame) of the last segment
//! is cut off on replay (its bytes kept beside it), never parsed as data.
//!
//! A frame's payload is a [`Frame`]: the rows of one request, stamped,
//! tagged with its format so that a later format can be told apart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use audit_schema::{AuditRecord, Stamp, ViolationRecord};
use serde::{Deserialize, Serialize};

use crate::fsio::{self, sync_dir};

/// One WAL frame's payload: the rows of one request, stamped.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Frame {
    /// Actions, with the seq and receive time the collector gave them.
    pub actions: Vec<(AuditRecord, Stamp)>,
    /// Violations, likewise.
    pub violations: Vec<(ViolationRecord, Stamp)>,
}

mod v1;

/// Payload format tag 1: postcard of a frame of the first schema, before
/// the columns added since (still read, see `v1`).
const FRAME_POSTCARD_V1: u8 = 1;
/// Payload format tag 2: postcard (compact binary serde) of [`Frame`].
const FRAME_POSTCARD: u8 = 2;

impl Frame {
    /// The payload bytes: a format tag, then the body.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let mut out = vec![FRAME_POSTCARD];
        postcard::to_io(self, &mut out).map_err(io::Error::other)?;
        Ok(out)
    }

    /// The payload [`Frame::encode`] would make of the rows `keep_actions`
    /// of `actions` and `keep_violations` of `violations`, stamped in that
    /// order with `received_time_ns` and consecutive seqs from `first_seq`.
    /// Postcard writes a sequence as its length then its items, and a tuple
    /// as its fields one after the other, so a row serialized alone (by the
    /// receiving thread) is copied in as it is: the writer only copies.
    pub fn encode_rows(
        actions: (&EncodedRows, &[usize]),
        violations: (&EncodedRows, &[usize]),
        received_time_ns: i64,
        first_seq: u64,
    ) -> io::Result<Vec<u8>> {
        let (a, keep_a) = actions;
        let (v, keep_v) = violations;
        let rows: usize = keep_a.iter().chain(keep_v).map(|&i| a.len_hint(i)).sum();
        let mut out = Vec::with_capacity(1 + 2 * 10 + rows + (keep_a.len() + keep_v.len()) * 20);
        out.push(FRAME_POSTCARD);
        let mut seq = first_seq;
        for (rows, keep) in [(a, keep_a), (v, keep_v)] {
            postcard::to_io(&keep.len(), &mut out).map_err(io::Error::other)?;
            for &i in keep {
                out.extend_from_slice(rows.get(i).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "row index out of range")
                })?);
                let stamp = Stamp {
                    received_time_ns,
                    seq,
                };
                postcard::to_io(&stamp, &mut out).map_err(io::Error::other)?;
                seq += 1;
            }
        }
        Ok(out)
    }

    /// Reads a payload written by [`Frame::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Frame, String> {
        match bytes.split_first() {
            Some((&FRAME_POSTCARD, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
            Some((&FRAME_POSTCARD_V1, body)) => postcard::from_bytes::<v1::FrameV1>(body)
                .map(Frame::from)
                .map_err(|e| e.to_string()),
            Some((tag, _)) => Err(format!("unknown frame format {tag}")),
            None => Err("empty frame".into()),
        }
    }
}

/// Rows serialized one by one, each as it would be inside a [`Frame`],
/// ahead of the frame they will go into (see [`Frame::encode_rows`]).
#[derive(Debug, Default)]
pub struct EncodedRows {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedRows {
    /// Serializes each of `rows`.
    pub fn new<T: Serialize>(rows: &[T]) -> io::Result<EncodedRows> {
        // A loadgen-shaped action is about 300 bytes in postcard.
        let mut bytes = Vec::with_capacity(rows.len() * 320);
        let mut ends = Vec::with_capacity(rows.len());
        for row in rows {
            bytes = postcard::to_io(row, bytes).map_err(io::Error::other)?;
            ends.push(bytes.len());
        }
        // Held until the request is answered, with up to a queue of others.
        if bytes.capacity() > bytes.len() + bytes.len() / 8 {
            bytes.shrink_to_fit();
        }
        Ok(EncodedRows { bytes, ends })
    }

    /// Row `i`'s bytes.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let start = if i == 0 { 0 } else { *self.ends.get(i - 1)? };
        self.bytes.get(start..*self.ends.get(i)?)
    }

    fn len_hint(&self, i: usize) -> usize {
        self.get(i).map_or(0, <[u8]>::len)
    }
}

const HEADER: usize = 8;
/// Frames larger than this are corrupt by definition (a request is capped far lower).
const MAX_FRAME: u32 = 1 << 30;

/// An open WAL: the current segment, appended to.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    len: u64,
}

/// What replaying one segment found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Whole frames, in order.
    pub frames: Vec<Vec<u8>>,
    /// Bytes of a torn tail that were cut off.
    pub torn_bytes: u64,
    /// Where the cut-off bytes were kept.
    pub torn_saved: Option<PathBuf>,
}

fn segment_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

impl Wal {
    /// Starts a new segment whose first record will have `first_seq`.
    pub fn create(dir: &Path, first_seq: u64) -> io::Result<Wal> {
        fsio::create_dir_synced(dir)?;
        let path = dir.join(segment_name(first_seq));
        let file = fsio::open(
            OpenOptions::new().create(true).truncate(false).append(true),
            &path,
        )?;
        let len = file.metadata()?.len();
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_owned(),
            file,
            path,
            len,
        })
    }

    /// Appends one frame (not yet durable: call [`Wal::sync`]).
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| (1..MAX_FRAME).contains(l))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "WAL frame empty or too large")
            })?;
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        buf.extend_from_slice(payload);
        if let Err(e) = fsio::append(&mut self.file, &self.path, self.len, &buf) {
            // A half-written frame must not sit in front of later good ones.
            // If the cut fails too, the caller stops writing (see `truncate`).
            let _ = self.truncate(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable (one fsync for a whole group).
    pub fn sync(&mut self) -> io::Result<()> {
        fsio::sync_data(&self.file, &self.path)
    }

    /// A second handle on the current segment, for an fsync on another
    /// thread while this one appends the next frames: the fsync makes
    /// durable at least what was appended before it started.
    pub fn sync_handle(&self) -> io::Result<SyncHandle> {
        Ok(SyncHandle {
            file: self.file.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Cuts the segment back to `len` (a group whose fsync failed is
    /// withdrawn whole, so that nothing unacknowledged is replayed later).
    /// If this fails, the segment may hold frames that were never
    /// acknowledged; the caller must stop appending to it.
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        fsio::set_len(&self.file, &self.path, len)?;
        self.len = len;
        Ok(())
    }

    /// Length of the current segment in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the current segment is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Path of the current segment.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the current segment and starts one for `first_seq`. Returns
    /// the paths of all segments older than the new one.
    pub fn rotate(&mut self, first_seq: u64) -> io::Result<Vec<PathBuf>> {
        self.sync()?;
        let old: Vec<PathBuf> = segments(&self.dir)?.into_iter().map(|(_, p)| p).collect();
        *self = Wal::create(&self.dir, first_seq)?;
        Ok(old.into_iter().filter(|p| *p != self.path).collect())
    }
}

/// See [`Wal::sync_handle`].
#[derive(Debug)]
pub struct SyncHandle {
    file: File,
    path: PathBuf,
}

impl SyncHandle {
    /// `fdatasync` of the segment.
    pub fn sync(&self) -> io::Result<()> {
        fsio::sync_data(&self.file, &self.path)
    }
}

/// Segments in `dir`, oldest first, with their first seq.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("wal-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Reads a segment's whole frames and cuts off a torn tail in place.
///
/// Only the segment being written when the collector stopped (`last`) can
/// end in a torn write: older ones were fsynced before the next was
/// created. So a bad frame in an older segment is corruption, and an error
/// (the operator decides; nothing is cut). In the last segment the bytes
/// from the first bad frame on are cut, but first copied to
/// `<segment>.torn-<offset>`: a crash leaves only unacknowledged bytes
/// there, while a flipped bit mid-file would leave acknowledged frames
/// behind it, and those must not be destroyed by a restart.
pub fn replay(path: &Path, last: bool) -> io::Result<Replay> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut replay = Replay::default();
    let mut at = 0usize;
    while data.len() - at >= HEADER {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let crc = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
        let end = at + HEADER + len as usize;
        // A zero length is never written, but it is what a crash leaves
        // where the file's length reached the disk and its data did not: a
        // zeroed header whose checksum (of nothing) is also zero.
        if len == 0
            || len >= MAX_FRAME
            || end > data.len()
            || crc32fast::hash(&data[at + HEADER..end]) != crc
        {
            break;
        }
        replay.frames.push(data[at + HEADER..end].to_vec());
        at = end;
    }
    if at < data.len() {
        if !last {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "bad frame at byte {at} of {}, which is not the last segment: \
                     corruption, not a torn write",
                    path.display()
                ),
            ));
        }
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".torn-{at}"));
        let saved = PathBuf::from(name);
        let mut f = fsio::open(
            OpenOptions::new().create(true).write(true).truncate(true),
            &saved,
        )?;
        fsio::append(&mut f, &saved, 0, &data[at..])?;
        fsio::sync_all(&f, &saved)?;
        replay.torn_bytes = (data.len() - at) as u64;
        replay.torn_saved = Some(saved);
        let f = OpenOptions::new().write(true).open(path)?;
        fsio::set_len(&f, path, at as u64)?;
        fsio::sync_all(&f, path)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(replay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn frames_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        wal.append(b"one").unwrap();
        wal.append(b"two").unwrap();
        wal.sync().unwrap();
        let r = replay(wal.path(), true).unwrap();
        assert_eq!(r.frames, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(r.torn_bytes, 0);
    }

    /// A segment holding the frame `whole`, then `tail` as a crash left it.
    fn whole_then(dir: &Path, tail: &[u8]) -> PathBuf {
        let mut wal = Wal::create(dir, 1).unwrap();
        wal.append(b"whole").unwrap();
        wal.sync().unwrap();
        let mut f = OpenOptions::new().append(true).open(wal.path()).unwrap();
        f.write_all(tail).unwrap();
        wal.path().to_owned()
    }

    #[test]
    fn torn_tail_is_cut_not_parsed() {
        let dir = tempfile::tempdir().unwrap();
        // A crash mid-write: a header promising 100 bytes, then 3.
        let tail = [&100u32.to_le_bytes()[..], &0u32.to_le_bytes(), b"abc"].concat();
        let path = whole_then(dir.path(), &tail);
        let r = replay(&path, true).unwrap();
        assert_eq!(r.frames, [b"whole".to_vec()]);
        assert_eq!(r.torn_bytes, 11);
        assert_eq!(fs::metadata(&path).unwrap().len(), 13, "tail cut in place");
        let saved = r.torn_saved.expect("the cut bytes are kept");
        assert_eq!(fs::read(saved).unwrap().len(), 11);
        // The kept tail is not a segment: the next start does not replay it.
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_zeroed_tail_is_cut_not_read_as_an_empty_frame() {
        let dir = tempfile::tempdir().unwrap();
        // Power lost after the length of the next frame's write reached
        // the disk but not its bytes (found by the crash harness).
        let path = whole_then(dir.path(), &[0; 40]);
        let r = replay(&path, true).unwrap();
        assert_eq!(r.frames, [b"whole".to_vec()]);
        assert_eq!(r.torn_bytes, 40);
    }

    #[test]
    fn an_empty_payload_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        let e = wal.append(b"").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(wal.is_empty());
    }

    /// A segment of frames `first` and `second`, with byte `at` flipped
    /// (negative: from the end); its path and new bytes.
    fn flipped(dir: &Path, at: isize) -> (PathBuf, Vec<u8>) {
        let mut wal = Wal::create(dir, 1).unwrap();
        wal.append(b"first").unwrap();
        wal.append(b"second").unwrap();
        wal.sync().unwrap();
        let path = wal.path().to_owned();
        let mut bytes = fs::read(&path).unwrap();
        let i = if at < 0 {
            bytes.len() - at.unsigned_abs()
        } else {
            at.unsigned_abs()
        };
        bytes[i] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[test]
    fn corrupted_frame_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = flipped(dir.path(), -1);
        assert_eq!(replay(&path, true).unwrap().frames, [b"first".to_vec()]);
    }

    #[test]
    fn a_bad_frame_in_an_older_segment_is_an_error_and_nothing_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = flipped(dir.path(), HEADER as isize + 1);
        let e = replay(&path, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("byte 0"), "{e}");
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "the segment is left as it was"
        );
    }

    /// The writer's frames, copied together from rows the receivers
    /// serialized, are byte for byte what serializing the frame makes, so
    /// recovery reads them with the same decoder.
    #[test]
    fn a_frame_of_encoded_rows_is_the_frame_encoded() {
        let t = 1_764_000_000_000_000_000;
        let actions: Vec<AuditRecord> = (0..4)
            .map(|i| crate::test_records::agent_action(format!("id-{i}"), t + i))
            .collect();
        let violations = vec![ViolationRecord {
            event_id: "v-1".into(),
            reason: "unspecified".into(),
            ..Default::default()
        }];
        let keep_a = [0, 2, 3];
        let (received, first) = (t + 99, 7);
        let stamp = |n: u64| Stamp {
            received_time_ns: received,
            seq: first + n,
        };
        let frame = Frame {
            actions: keep_a
                .iter()
                .zip(0..)
                .map(|(&i, n)| (actions[i].clone(), stamp(n)))
                .collect(),
            violations: vec![(violations[0].clone(), stamp(3))],
        };
        let a = EncodedRows::new(&actions).unwrap();
        let v = EncodedRows::new(&violations).unwrap();
        let rows = Frame::encode_rows((&a, &keep_a), (&v, &[0]), received, first).unwrap();
        assert_eq!(rows, frame.encode().unwrap());
        let back = Frame::decode(&rows).unwrap();
        assert_eq!(back.actions.len(), 3);
        assert_eq!(back.actions[1].0.event_id, "id-2");
        assert_eq!(back.violations[0].1.seq, 10);
        let none = Frame::encode_rows((&a, &[]), (&v, &[]), received, first).unwrap();
        assert_eq!(none, Frame::default().encode().unwrap());
    }

    #[test]
    fn rotate_lists_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        wal.append(b"x").unwrap();
        let old = wal.rotate(2).unwrap();
        assert_eq!(old.len(), 1);
        assert!(old[0].ends_with("wal-00000000000000000001.log"));
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
    }
}
