//! A model of what a file system keeps at a power loss.
//!
//! Built by replaying recorded operations. Each file has its durable bytes
//! (as of its last fsync) and the writes since; each directory has its
//! durable entries (as of its last fsync) and the entry changes since. A
//! crash keeps everything durable plus any subset of the rest, each file
//! and each directory on its own, with kept writes possibly torn (a prefix
//! of their bytes) or zero-filled (the length reached the disk, the data
//! did not). Nothing orders one file's unsynced writes against another's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::fsio::Op;

/// A deterministic generator (splitmix64): a crash state is named by its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `num/den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// Which unsynced operations a crash keeps.
#[derive(Clone, Copy, Debug)]
pub enum Keep {
    /// Only what was fsynced.
    Durable,
    /// Everything (what a killed process leaves).
    All,
    /// A random subset, each operation kept with probability `percent`/100,
    /// some kept writes torn or zero-filled.
    Some { percent: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir,
}

#[derive(Clone, Debug)]
enum Pending {
    Write { at: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Clone, Debug)]
enum DirOp {
    Add(PathBuf, Node),
    Remove(PathBuf),
}

/// The file system after some prefix of the recorded operations.
#[derive(Clone, Debug, Default)]
pub struct Model {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    /// Entry changes since each directory's last fsync.
    dir_ops: BTreeMap<PathBuf, Vec<DirOp>>,
}

/// What a crash left: every reachable path, a directory (`None`) or a
/// file's bytes.
pub type State = BTreeMap<PathBuf, Option<Vec<u8>>>;

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_owned).unwrap_or_default()
}

fn apply_pending(buf: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write { at, bytes } => {
            let at = *at as usize;
            if buf.len() < at + bytes.len() {
                buf.resize(at + bytes.len(), 0);
            }
            buf[at..at + bytes.len()].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

impl Model {
    /// Applies one recorded operation (paths relative to the recorded root).
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Create(p) => {
                self.check_parent(p)?;
                self.inodes.push(Inode::default());
                self.add(p, Node::File(self.inodes.len() - 1));
            }
            Op::Mkdir(p) => {
                self.check_parent(p)?;
                self.add(p, Node::Dir);
            }
            Op::Write { path, at, bytes } => {
                let w = Pending::Write {
                    at: *at,
                    bytes: bytes.clone(),
                };
                self.change(path, w)?;
            }
            Op::SetLen { path, len } => self.change(path, Pending::SetLen(*len))?,
            Op::Sync(p) => {
                let i = self.inode(p)?;
                let inode = &mut self.inodes[i];
                inode.durable = inode.current.clone();
                inode.pending.clear();
            }
            Op::SyncDir(d) => {
                self.durable.retain(|p, _| parent(p) != *d);
                for (p, n) in self.names.iter().filter(|(p, _)| parent(p) == *d) {
                    self.durable.insert(p.clone(), *n);
                }
                self.dir_ops.remove(d);
            }
            Op::Link { from, to } => {
                let n = self.node(from)?;
                self.add(to, n);
            }
            Op::Rename { from, to } => {
                let n = self.node(from)?;
                self.remove(from);
                self.add(to, n);
            }
            Op::Unlink(p) => {
                self.node(p)?;
                self.remove(p);
            }
        }
        Ok(())
    }

    fn check_parent(&self, p: &Path) -> Result<(), String> {
        let d = parent(p);
        if d.as_os_str().is_empty() || self.names.get(&d) == Some(&Node::Dir) {
            Ok(())
        } else {
            Err(format!(
                "{} created in {}, a directory made outside fsio",
                p.display(),
                d.display()
            ))
        }
    }

    fn node(&self, p: &Path) -> Result<Node, String> {
        self.names
            .get(p)
            .copied()
            .ok_or_else(|| format!("{} used but never created through fsio", p.display()))
    }

    fn inode(&self, p: &Path) -> Result<usize, String> {
        match self.node(p)? {
            Node::File(i) => Ok(i),
            Node::Dir => Err(format!("{} is a directory", p.display())),
        }
    }

    fn change(&mut self, p: &Path, change: Pending) -> Result<(), String> {
        let i = self.inode(p)?;
        let inode = &mut self.inodes[i];
        apply_pending(&mut inode.current, &change);
        inode.pending.push(change);
        Ok(())
    }

    fn add(&mut self, p: &Path, n: Node) {
        self.names.insert(p.to_owned(), n);
        self.dir_ops
            .entry(parent(p))
            .or_default()
            .push(DirOp::Add(p.to_owned(), n));
    }

    fn remove(&mut self, p: &Path) {
        self.names.remove(p);
        self.dir_ops
            .entry(parent(p))
            .or_default()
            .push(DirOp::Remove(p.to_owned()));
    }

    /// Whether any operation is not durable yet (a crash here has choices).
    pub fn has_unsynced(&self) -> bool {
        !self.dir_ops.is_empty() || self.inodes.iter().any(|i| !i.pending.is_empty())
    }

    /// What a power loss now leaves, choosing with `rng` under `keep`.
    pub fn crash(&self, keep: Keep, rng: &mut Rng) -> State {
        let mut kept = |rng: &mut Rng| match keep {
            Keep::Durable => false,
            Keep::All => true,
            Keep::Some { percent } => rng.chance(percent, 100),
        };
        let mut names = self.durable.clone();
        for ops in self.dir_ops.values() {
            for op in ops {
                if !kept(rng) {
                    continue;
                }
                match op {
                    DirOp::Add(p, n) => {
                        names.insert(p.clone(), *n);
                    }
                    DirOp::Remove(p) => {
                        names.remove(p);
                    }
                }
            }
        }
        let mut contents: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut state = State::new();
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        // Sorted paths put a directory before what it holds; an entry whose
        // directory did not survive is unreachable.
        for (p, n) in &names {
            let d = parent(p);
            if !d.as_os_str().is_empty() && !dirs.contains(&d) {
                continue;
            }
            match n {
                Node::Dir => {
                    dirs.insert(p.clone());
                    state.insert(p.clone(), None);
                }
                Node::File(i) => {
                    let bytes = contents
                        .entry(*i)
                        .or_insert_with(|| self.file_after_crash(*i, keep, rng, &mut kept));
                    state.insert(p.clone(), Some(bytes.clone()));
                }
            }
        }
        state
    }

    fn file_after_crash(
        &self,
        i: usize,
        keep: Keep,
        rng: &mut Rng,
        kept: &mut impl FnMut(&mut Rng) -> bool,
    ) -> Vec<u8> {
        let inode = &self.inodes[i];
        let mut buf = inode.durable.clone();
        for p in &inode.pending {
            if !kept(rng) {
                continue;
            }
            let torn = matches!(keep, Keep::Some { .. }) && rng.chance(1, 3);
            match p {
                Pending::Write { at, bytes } if torn && !bytes.is_empty() => {
                    let cut = if rng.chance(1, 2) {
                        // Torn: a prefix reached the disk.
                        bytes[..rng.below(bytes.len() as u64) as usize].to_vec()
                    } else {
                        // The new length reached the disk, the data did not.
                        vec![0; bytes.len()]
                    };
                    apply_pending(
                        &mut buf,
                        &Pending::Write {
                            at: *at,
                            bytes: cut,
                        },
                    );
                }
                p => apply_pending(&mut buf, p),
            }
        }
        buf
    }
}

/// Writes `state` under `root` (an empty directory).
pub fn materialize(state: &State, root: &Path) -> std::io::Result<()> {
    for (p, content) in state {
        let full = root.join(p);
        match content {
            None => std::fs::create_dir(&full)?,
            Some(bytes) => std::fs::write(&full, bytes)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn write(p: &str, at: u64, bytes: &[u8]) -> Op {
        Op::Write {
            path: path(p),
            at,
            bytes: bytes.to_vec(),
        }
    }

    fn model(ops: &[Op]) -> Model {
        let mut m = Model::default();
        for op in ops {
            m.apply(op).unwrap();
        }
        m
    }

    #[test]
    fn a_synced_file_whose_directory_was_not_synced_is_lost() {
        let m = model(&[
            Op::Mkdir(path("d")),
            Op::SyncDir(path("")),
            Op::Create(path("d/f")),
            write("d/f", 0, b"data"),
            Op::Sync(path("d/f")),
        ]);
        let mut rng = Rng::new(1);
        let durable = m.crash(Keep::Durable, &mut rng);
        assert_eq!(durable.get(&path("d")), Some(&None));
        assert!(!durable.contains_key(&path("d/f")), "{durable:?}");
        let mut synced = m.clone();
        synced.apply(&Op::SyncDir(path("d"))).unwrap();
        let durable = synced.crash(Keep::Durable, &mut rng);
        assert_eq!(durable.get(&path("d/f")), Some(&Some(b"data".to_vec())));
    }

    #[test]
    fn unsynced_writes_may_be_dropped_torn_or_zeroed_but_synced_ones_stay() {
        let m = model(&[
            Op::Create(path("f")),
            Op::SyncDir(path("")),
            write("f", 0, b"ab"),
            Op::Sync(path("f")),
            write("f", 2, b"cd"),
            write("f", 4, b"ef"),
        ]);
        let mut seen = BTreeSet::new();
        let mut rng = Rng::new(7);
        for _ in 0..500 {
            let state = m.crash(Keep::Some { percent: 50 }, &mut rng);
            seen.insert(state[&path("f")].clone().unwrap());
        }
        for expected in [
            &b"ab"[..],
            b"abcd",
            b"abcdef",
            b"ab\0\0ef",
            b"abc",
            b"abcde",
            b"ab\0\0",
        ] {
            assert!(seen.contains(expected), "{expected:?} never left: {seen:?}");
        }
        assert!(seen.iter().all(|s| s.starts_with(b"ab")), "{seen:?}");
    }

    #[test]
    fn a_path_made_outside_fsio_is_reported() {
        let mut m = Model::default();
        let e = m.apply(&Op::Create(path("nodir/f"))).unwrap_err();
        assert!(e.contains("outside fsio"), "{e}");
    }
}
