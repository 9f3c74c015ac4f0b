//! File-system durability helpers: what it takes for a create, rename or
//! unlink to survive a power loss, in one place.
//!
//! A file's own `fsync` does not make its directory entry durable: after a
//! power loss a renamed or newly created file can be missing although its
//! data was synced. Every step that publishes or removes a name therefore
//! ends with [`sync_dir`] on the directory that holds it.
//!
//! The durable paths (the collector's WAL, manifest, Parquet files and
//! retention, the layer's spool) do every write, fsync, create, link,
//! rename, unlink and mkdir through this module, so that the
//! crash-consistency harness ([`crate::powerloss`], `record` feature) can
//! record them and rebuild what a power loss at each point would leave.
//! Without the feature the recording compiles to nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One durable-path operation, as the crash harness records it.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new, empty file.
    Create(PathBuf),
    /// `bytes` written at offset `at`.
    Write {
        path: PathBuf,
        at: u64,
        bytes: Vec<u8>,
    },
    /// The file cut (or extended) to `len`.
    SetLen { path: PathBuf, len: u64 },
    /// `fsync`/`fdatasync` of a file: its data is durable.
    Sync(PathBuf),
    /// A new directory.
    Mkdir(PathBuf),
    /// `fsync` of a directory: its entries are durable.
    SyncDir(PathBuf),
    /// A second name for a file.
    Link { from: PathBuf, to: PathBuf },
    /// A file moved to a new name.
    Rename { from: PathBuf, to: PathBuf },
    /// A name removed.
    Unlink(PathBuf),
}

/// Hands an operation to the crash harness when one is recording; the
/// closure is never called otherwise.
#[inline]
fn note(op: impl FnOnce() -> Op) {
    #[cfg(feature = "record")]
    crate::powerloss::record(op);
    #[cfg(not(feature = "record"))]
    let _ = op;
}

/// [`note`] for an fsync, which the crash harness may hold, or fail
/// instead of letting it be made (`Recorder::fail_syncs`).
#[inline]
fn note_sync(op: impl FnOnce() -> Op) -> io::Result<()> {
    #[cfg(feature = "record")]
    return crate::powerloss::record_sync(op);
    #[cfg(not(feature = "record"))]
    {
        let _ = op;
        Ok(())
    }
}

/// Opens `path` with `options`; a file that did not exist before is a
/// create (whose directory entry needs [`sync_dir`]).
pub fn open(options: &OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(feature = "record")]
    let existed = fs::symlink_metadata(path).is_ok();
    #[cfg(not(feature = "record"))]
    let existed = true;
    let file = options.open(path)?;
    if !existed {
        note(|| Op::Create(path.to_owned()));
    }
    Ok(file)
}

/// Appends `buf` to `file` (named `path`, opened for appending), whose
/// length before the write is `at`. Not durable until [`sync_data`].
pub fn append(file: &mut File, path: &Path, at: u64, buf: &[u8]) -> io::Result<()> {
    file.write_all(buf)?;
    note(|| Op::Write {
        path: path.to_owned(),
        at,
        bytes: buf.to_vec(),
    });
    Ok(())
}

/// Cuts (or extends) `file`, named `path`, to `len` bytes.
pub fn set_len(file: &File, path: &Path, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    note(|| Op::SetLen {
        path: path.to_owned(),
        len,
    });
    Ok(())
}

/// `fdatasync`: the data of `file`, named `path`, is durable.
///
/// Noted for the crash harness *before* the call: an fsync makes durable
/// what was written before it began, and a write another thread appends
/// while it runs must wait for the next one. Noted after, such a write
/// would count as durable and an ack that relied on it would go unseen.
/// A failing fsync is recorded as [`crate::powerloss::Event::SyncFailed`]
/// when the harness injects it: it makes nothing durable.
pub fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    note_sync(|| Op::Sync(path.to_owned()))?;
    file.sync_data()
}

/// `fsync`: the data and metadata of `file`, named `path`, are durable.
/// Noted before the call, as [`sync_data`] says why.
pub fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    note_sync(|| Op::Sync(path.to_owned()))?;
    file.sync_all()
}

/// [`sync_all`] for a new file filled by a writer this module does not
/// see (the Parquet encoder): to the crash harness its bytes are one write.
pub fn sync_filled(file: &File, path: &Path) -> io::Result<()> {
    note(|| Op::Write {
        path: path.to_owned(),
        at: 0,
        bytes: fs::read(path).unwrap_or_default(),
    });
    sync_all(file, path)
}

/// Removes the name `path`; durable once its directory is synced.
pub fn remove_file(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    note(|| Op::Unlink(path.to_owned()));
    Ok(())
}

/// Fsyncs a directory so that a create, rename or unlink inside it is
/// durable. An empty path is the current directory (the parent of a
/// relative file name).
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let handle = File::open(dir)?;
    // Noted before the call, as `sync_data` says why.
    note_sync(|| Op::SyncDir(dir.to_owned()))?;
    handle.sync_all()
}

/// Directories cannot be opened for fsync here; renames are as durable as
/// the platform makes them.
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Creates `dir` and any missing parents, fsyncing the parent of each new
/// directory so that the new entries are durable. A directory that exists
/// is taken as durable; where an earlier process may have created it
/// without making it so, use [`create_dir_durable`].
pub fn create_dir_synced(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    for d in dir.ancestors() {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
            Ok(()) => note(|| Op::Mkdir(d.to_owned())),
        }
        sync_dir(d.parent().unwrap_or(Path::new("")))?;
    }
    Ok(())
}

/// Fsyncs every directory above `dir`, from its parent up to the file
/// system's root (or, for a relative path, the current directory), so
/// that `dir`'s name and each one on the way are durable even if an
/// earlier process made them and was killed, or its fsync failed, before
/// they were. Stops quietly at the first directory this user may not
/// read, or whose file system is read-only or cannot fsync a directory:
/// the levels above a user's data are the operator's, made long before
/// (a container's read-only root, say). One directory fsync per level,
/// for paths given by a user (a data directory, a spool) where
/// [`create_dir_durable`] has no base.
pub fn sync_ancestors(dir: &Path) -> io::Result<()> {
    use io::ErrorKind::{InvalidInput, PermissionDenied, ReadOnlyFilesystem};
    for above in dir.ancestors().skip(1) {
        match sync_dir(above) {
            Err(e)
                if matches!(
                    e.kind(),
                    PermissionDenied | ReadOnlyFilesystem | InvalidInput
                ) =>
            {
                return Ok(())
            }
            r => r?,
        }
        if above.as_os_str().is_empty() {
            break;
        }
    }
    Ok(())
}

/// Makes `dir`, below `base`, exist with every name on the way durable:
/// creates what is missing, and fsyncs the parent of each directory from
/// `base` down to `dir`, those that already existed included. A directory
/// that an earlier attempt created but did not make durable (the process
/// was killed between the mkdir and the fsync, or that fsync failed) is
/// in the page cache only: data put in it, however well fsynced, goes
/// with it at a power loss. One directory fsync per level; `base` must
/// exist and be durable.
pub fn create_dir_durable(base: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir.strip_prefix(base).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not under {}", dir.display(), base.display()),
        )
    })?;
    let mut at = base.to_path_buf();
    for part in rel.components() {
        let parent = at.clone();
        at.push(part);
        match fs::create_dir(&at) {
            Ok(()) => note(|| Op::Mkdir(at.clone())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        sync_dir(&parent)?;
    }
    Ok(())
}

/// Gives `tmp` the name `path`, failing with [`io::ErrorKind::AlreadyExists`]
/// rather than replacing a file: a sealed file is never overwritten. The
/// caller fsyncs the directory afterwards.
pub fn publish(tmp: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(tmp, path) {
        Ok(()) => {
            note(|| Op::Link {
                from: tmp.to_owned(),
                to: path.to_owned(),
            });
            remove_file(tmp)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // No hard links on this file system: check, then rename.
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            rename(tmp, path)
        }
    }
}

/// Writes a new file at `path` (mode 0600 when `private`) that a power
/// loss leaves whole or absent, never torn: a temp file beside it,
/// fsynced, linked to `path` (never replacing a file:
/// [`io::ErrorKind::AlreadyExists`]), the directory fsynced.
pub fn write_new(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("new");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    // One left by a crash before its link: never published, not needed.
    match remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = open(&opts, &tmp)?;
    let written = append(&mut file, &tmp, 0, bytes)
        .and_then(|()| sync_all(&file, &tmp))
        .and_then(|()| publish(&tmp, path));
    if written.is_err() {
        let _ = remove_file(&tmp);
    }
    written?;
    sync_dir(path.parent().unwrap_or(Path::new("")))
}

/// Moves `from` to the name `to`, replacing what was there; durable once
/// the directory is synced.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    note(|| Op::Rename {
        from: from.to_owned(),
        to: to.to_owned(),
    });
    Ok(())
}

/// Makes a file read-only for everyone (0444 on Unix).
#[cfg(unix)]
pub fn set_read_only(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o444))
}

/// Makes a file read-only.
#[cfg(not(unix))]
pub fn set_read_only(file: &File) -> io::Result<()> {
    let mut perms = file.metadata()?.permissions();
    perms.set_readonly(true);
    file.set_permissions(perms)
}

/// All files under `dir`, recursively, sorted; a missing dir has none.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_ancestors_takes_absolute_and_relative_paths_and_fails_on_a_missing_level() {
        let dir = tempfile::tempdir().unwrap();
        sync_ancestors(&dir.path().join("a")).unwrap();
        // Relative: `src`, then the current directory (the crate's).
        sync_ancestors(Path::new("src/a")).unwrap();
        let e = sync_ancestors(&dir.path().join("missing").join("a")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn create_dir_durable_makes_each_level_and_refuses_a_dir_outside_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        create_dir_durable(dir.path(), &nested).unwrap();
        assert!(nested.is_dir());
        // Again, every level existing: still fine (and fsynced again).
        create_dir_durable(dir.path(), &nested).unwrap();
        let e = create_dir_durable(&nested, dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn publish_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, target) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("t"),
        );
        fs::write(&a, "first").unwrap();
        fs::write(&b, "second").unwrap();
        publish(&a, &target).unwrap();
        assert!(!a.exists(), "the temp name is gone once published");
        let e = publish(&b, &target).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&target).unwrap(), "first");
    }

    #[test]
    fn write_new_never_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        write_new(&path, b"first", true).unwrap();
        let e = write_new(&path, b"second", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "the temp file is gone");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn walk_finds_nested_files_in_order_and_nothing_in_a_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        create_dir_synced(&dir.path().join("x/y")).unwrap();
        fs::write(dir.path().join("x/y/2"), "").unwrap();
        fs::write(dir.path().join("x/1"), "").unwrap();
        let found: Vec<_> = walk(dir.path())
            .into_iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        assert_eq!(found, [PathBuf::from("x/1"), PathBuf::from("x/y/2")]);
        assert!(walk(&dir.path().join("missing")).is_empty());
    }
}
