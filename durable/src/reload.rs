//! Reloading the files a running process is configured from: the
//! collector's TLS, tokens and consent keys files, the layer's consent keys
//! file. A [`Watcher`] reads a [`Source`]'s files when asked; when their
//! bytes changed, what they configure is rebuilt and swapped into its
//! [`Live`] holders, read by the next handshake, request or check.
//!
//! Files that cannot be read or used change nothing: the previous
//! configuration stays in use and the check says why ([`Checked::Failed`]),
//! for the caller to log and count. The same bad files are not reported on
//! every check, only once they change again or the check is forced.
//! Changes are found by comparing digests of the bytes (not mtimes:
//! Kubernetes secret volumes swap symlinks, and mtime granularity can hide
//! a quick rewrite).
//!
//! When to check (an interval, SIGHUP) is the caller's: the collector on
//! its runtime, the layer on a thread of its own.

use std::sync::{Arc, RwLock};

/// A value swapped whole by a reload and read, as it is at that moment, by
/// each handshake, request or check.
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Live").field(&self.current()).finish()
    }
}

impl<T> Live<T> {
    /// Starts with `value`.
    pub fn new(value: impl Into<Arc<T>>) -> Live<T> {
        Live(Arc::new(RwLock::new(value.into())))
    }

    /// The value in use now.
    pub fn current(&self) -> Arc<T> {
        // The lock only guards swapping an `Arc`: a panic while holding it
        // cannot leave a half-written value, so poisoning is ignored.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `value` in use for every later [`Live::current`].
    pub fn replace(&self, value: impl Into<Arc<T>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value.into();
    }
}

/// Files that configure something a running process uses.
pub trait Source: Send + 'static {
    /// The files' bytes, read once per check.
    type Files;
    /// Why they cannot be read or used.
    type Error: std::fmt::Display;
    /// What they are, for the logs ("TLS files", "tokens file").
    const WHAT: &'static str;

    /// Reads the files now; `None` when there is nothing to read.
    fn read(&self) -> Result<Option<Self::Files>, Self::Error>;

    /// A digest (SHA-256) of exactly the bytes `read` returned.
    fn digest(files: &Self::Files) -> [u8; 32];

    /// Builds from `files` and swaps the result in; on error nothing changes.
    fn apply(&mut self, files: &Self::Files) -> Result<(), Self::Error>;
}

/// What one [`Watcher::check`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked<E> {
    /// Nothing new (or nothing to read, or the same bad files again).
    Unchanged,
    /// New files are in use.
    Reloaded,
    /// The files could not be read or used; the previous ones stay in use.
    Failed(E),
}

/// What the last check saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Files([u8; 32]),
    /// Why the files could not be read, so that the same failure is not
    /// reported every check.
    Unreadable(String),
}

/// Checks one [`Source`] for changes and applies them.
#[derive(Debug)]
pub struct Watcher<S> {
    source: S,
    /// Digest of the files in use.
    in_use: [u8; 32],
    last_seen: Seen,
}

impl<S: Source> Watcher<S> {
    /// Watches `source`, already configured from files of digest `in_use`.
    pub fn new(source: S, in_use: [u8; 32]) -> Self {
        Watcher {
            source,
            in_use,
            last_seen: Seen::Files(in_use),
        }
    }

    /// What is watched.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// One check. `forced` (SIGHUP) rebuilds even unchanged files.
    pub fn check(&mut self, forced: bool) -> Checked<S::Error> {
        let files = self.source.read();
        let seen = match &files {
            Ok(Some(f)) => Seen::Files(S::digest(f)),
            Ok(None) => return Checked::Unchanged,
            Err(e) => Seen::Unreadable(e.to_string()),
        };
        let unchanged = seen == self.last_seen || seen == Seen::Files(self.in_use);
        self.last_seen = seen;
        if unchanged && !forced {
            return Checked::Unchanged;
        }
        match files.and_then(|f| f.map(|f| self.source.apply(&f)).transpose()) {
            Ok(Some(())) => {
                if let Seen::Files(digest) = self.last_seen {
                    self.in_use = digest;
                }
                Checked::Reloaded
            }
            Ok(None) => Checked::Unchanged,
            Err(e) => Checked::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "file" held in memory: `Ok(n)` configures `n`, `Err` is unreadable.
    struct Fake {
        file: Arc<RwLock<Result<u8, String>>>,
        live: Live<u8>,
    }

    impl Source for Fake {
        type Files = u8;
        type Error = String;
        const WHAT: &'static str = "fake";

        fn read(&self) -> Result<Option<u8>, String> {
            self.file.read().unwrap().clone().map(Some)
        }

        fn digest(files: &u8) -> [u8; 32] {
            [*files; 32]
        }

        fn apply(&mut self, files: &u8) -> Result<(), String> {
            if *files == 0 {
                return Err("zero is not a setting".into());
            }
            self.live.replace(*files);
            Ok(())
        }
    }

    #[test]
    fn changes_apply_once_and_bad_files_keep_the_previous_value_reported_once() {
        let file = Arc::new(RwLock::new(Ok(1)));
        let live = Live::new(1);
        let set = |v: Result<u8, String>| *file.write().unwrap() = v;
        let mut w = Watcher::new(
            Fake {
                file: file.clone(),
                live: live.clone(),
            },
            [1; 32],
        );
        assert_eq!(w.check(false), Checked::Unchanged);
        set(Ok(2));
        assert_eq!(w.check(false), Checked::Reloaded);
        assert_eq!(*live.current(), 2);
        assert_eq!(w.check(false), Checked::Unchanged);

        set(Ok(0));
        assert_eq!(
            w.check(false),
            Checked::Failed("zero is not a setting".into())
        );
        assert_eq!(w.check(false), Checked::Unchanged, "reported once");
        set(Err("gone".into()));
        assert_eq!(w.check(false), Checked::Failed("gone".into()));
        assert_eq!(w.check(false), Checked::Unchanged);
        assert_eq!(*live.current(), 2, "the previous value stays in use");

        set(Ok(2));
        assert_eq!(w.check(false), Checked::Unchanged, "the files in use");
        assert_eq!(w.check(true), Checked::Reloaded, "forced");
        set(Ok(3));
        assert_eq!(w.check(false), Checked::Reloaded);
        assert_eq!(*live.current(), 3);
    }
}
