//! Automatic, witnessed checkpoints: every digest interval the collector
//! signs its manifest head with its own key and writes the checkpoint to a
//! witness outside the data dir (a directory on another disk or mount, or
//! an object store prefix, `s3://bucket/prefix`), so that
//! a tail cut off cleanly, or a chain rewritten consistently, is caught by
//! `verify --witness` with nobody having run `checkpoint` by hand.
//!
//! ```text
//! WITNESS/<collector_id>.pub                   the collector's public key (written once)
//! WITNESS/<collector_id>/<size, 20 digits>.note   one signed checkpoint per digest
//! ```
//!
//! In an object store each is a conditional create (never overwritten;
//! credentials and endpoint as for `[store]`, from `[store.remote]` and the
//! `AWS_*` variables); give the bucket Object Lock to keep them.
//!
//! The collector's key is `--signing-key`, or generated at first start as
//! `DATA_DIR/keys/<collector_id>.key` (mode 0600) with its public key
//! beside it, in the witness, and in the start log. A witness that cannot
//! be written does not stop ingest: the failure is logged, counted
//! (`audit_collector_witness_failures_total`), retried at the next digest,
//! and after `store.witness_grace_secs` a `/readyz` reason.
//!
//! What it does not cover: someone holding both the collector's private key
//! and write access to the witness can write checkpoints for a rewritten
//! chain; keep the witness where the collector's host cannot rewrite it
//! (append-only mount, another machine's export, a locked bucket synced
//! from it).

use std::fs;

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, CheckpointError, NoteSigner, NoteVerifier};
use crate::fsio;
use crate::manifest::Manifest;
use crate::store::Location;

/// Where checkpoints go and which key signs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessConfig {
    /// The witness directory (outside the data dir), or `s3://bucket/prefix`.
    pub dir: PathBuf,
    /// Endpoint and region of an object store witness.
    pub remote: crate::store::RemoteOptions,
    /// The collector's private key file; `None` generates one under the
    /// data dir at first start.
    pub signing_key: Option<PathBuf>,
}

/// Why the witness could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// Reading, writing or generating the key failed.
    #[error("witness key {}: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is not a note private key.
    #[error("witness key: {0}")]
    Format(#[from] CheckpointError),
    /// The witness location is not usable.
    #[error("witness: {0}")]
    Location(#[from] crate::store::StoreError),
    /// The witness already holds another public key for this collector.
    #[error("{} holds another public key for this collector: refusing to sign with a different key (remove it only if the key was rotated on purpose)", .0.display())]
    OtherKey(PathBuf),
}

/// The collector's side of the witness.
#[derive(Debug)]
pub struct Witness {
    target: Target,
    collector_id: String,
    signer: NoteSigner,
    public: String,
}

/// A witness directory, or a prefix in an object store with the runtime
/// its client runs on (the writer thread has none).
#[derive(Debug)]
enum Target {
    Dir(PathBuf),
    Store(Location, tokio::runtime::Runtime),
}

impl Target {
    fn open(cfg: &WitnessConfig) -> Result<Target, WitnessError> {
        match cfg.dir.to_str().filter(|d| crate::store::is_remote(d)) {
            Some(url) => {
                let loc = Location::parse(url, &cfg.remote)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(key_err(&cfg.dir))?;
                Ok(Target::Store(loc, rt))
            }
            None => Ok(Target::Dir(cfg.dir.clone())),
        }
    }

    /// The content of `rel`, `None` when absent.
    fn read(&self, rel: &str) -> std::io::Result<Option<String>> {
        match self {
            Target::Dir(dir) => match fs::read_to_string(dir.join(rel)) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Target::Store(loc, rt) => {
                match rt.block_on(crate::store::put::read(loc.store.as_ref(), &loc.path(rel))) {
                    Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(std::io::Error::other(e)),
                }
            }
        }
    }

    /// Creates `rel` unless it exists with the same content; other content
    /// is an error (nothing is overwritten).
    fn create(&self, rel: &str, text: &str) -> std::io::Result<()> {
        match self {
            Target::Dir(dir) => {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    fsio::create_dir_synced(parent)?;
                }
                match write_new(&path, text, false) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if fs::read_to_string(&path)? == text {
                            Ok(())
                        } else {
                            Err(std::io::Error::other(format!(
                                "{} exists with other content",
                                path.display()
                            )))
                        }
                    }
                    other => other,
                }
            }
            Target::Store(loc, rt) => {
                let retry = crate::store::put::Retry {
                    attempts: 2,
                    ..Default::default()
                };
                let bytes = bytes::Bytes::from(text.to_owned());
                rt.block_on(crate::store::put::create(
                    loc.store.as_ref(),
                    &loc.path(rel),
                    bytes,
                    &retry,
                ))
                .map(|_| ())
                .map_err(std::io::Error::other)
            }
        }
    }
}

/// The public key file of a collector in a witness directory.
pub fn public_key_path(dir: &Path, collector_id: &str) -> PathBuf {
    dir.join(format!("{collector_id}.pub"))
}

fn key_err(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::Key {
        path: path.to_owned(),
        source,
    }
}

/// Writes `text` to a new file (mode 0600 when `private`), whole or not
/// at all across a power loss: a key or note torn at its final name would
/// stop the collector at its next start, or be a garbled checkpoint.
fn write_new(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    fsio::write_new(path, text.as_bytes(), private)
}

impl Witness {
    /// Loads (or, with none configured, generates) the collector's key.
    pub fn open(
        cfg: &WitnessConfig,
        data_dir: &Path,
        collector_id: &str,
    ) -> Result<Witness, WitnessError> {
        let key_path = match &cfg.signing_key {
            Some(p) => p.clone(),
            None => {
                let dir = data_dir.join("keys");
                fsio::create_dir_synced(&dir).map_err(key_err(&dir))?;
                let path = dir.join(format!("{collector_id}.key"));
                if !path.exists() {
                    let name = format!("audit-collector-{collector_id}");
                    let (private, public) = checkpoint::generate(&name)?;
                    write_new(&path, &format!("{private}\n"), true).map_err(key_err(&path))?;
                    let public_path = dir.join(format!("{collector_id}.pub"));
                    // Beside the key for the operator; a second start
                    // after a crash here finds it already written.
                    match write_new(&public_path, &format!("{public}\n"), false) {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                            return Err(key_err(&public_path)(e))
                        }
                        _ => {}
                    }
                }
                path
            }
        };
        let text = fs::read_to_string(&key_path).map_err(key_err(&key_path))?;
        let signer = NoteSigner::parse(&text)?;
        let public = signer.verifier().to_note_key();
        let w = Witness {
            target: Target::open(cfg)?,
            collector_id: collector_id.to_owned(),
            signer,
            public,
        };
        // Unreachable now is not fatal (ingest goes on); another key is.
        if let Ok(Some(existing)) = w.target.read(&format!("{collector_id}.pub")) {
            if existing.trim() != w.public {
                return Err(WitnessError::OtherKey(public_key_path(
                    &cfg.dir,
                    collector_id,
                )));
            }
        }
        Ok(w)
    }

    /// The public key, in the note verifier format.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// Signs the manifest's head and writes it to the witness: the public
    /// key first (once), then `<size>.note`. An existing note of the same
    /// size is left alone (the same head, signed before a restart).
    pub fn record(&self, manifest: &Manifest) -> std::io::Result<()> {
        let size = manifest.entries().len() as u64;
        if size == 0 {
            return Ok(());
        }
        let id = &self.collector_id;
        self.target
            .create(&format!("{id}.pub"), &format!("{}\n", self.public))?;
        let note = self
            .signer
            .sign(&checkpoint::origin(id), size, manifest.head())
            .map_err(std::io::Error::other)?;
        self.target.create(&format!("{id}/{size:020}.note"), &note)
    }
}

/// A collector's checkpoints in a witness, with the key to check them:
/// `(collector_id, public key, notes by name)`.
pub type Witnessed = (String, Option<NoteVerifier>, Vec<(String, String)>);

/// Every collector the witness (a directory or `s3://bucket/prefix`) knows,
/// with its pinned public key (`None` when malformed) and its notes,
/// oldest first.
pub fn read(
    witness: &Path,
    remote: &crate::store::RemoteOptions,
) -> std::io::Result<Vec<Witnessed>> {
    let url = witness.to_str().filter(|d| crate::store::is_remote(d));
    let loc = match url {
        Some(url) => Location::parse(url, remote).map_err(std::io::Error::other)?,
        None => Location::local(witness).map_err(std::io::Error::other)?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let get = |rel: &str| -> std::io::Result<String> {
        rt.block_on(crate::store::put::read(loc.store.as_ref(), &loc.path(rel)))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(std::io::Error::other)
    };
    let names = rt.block_on(loc.list("")).map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    for name in names.iter().filter(|n| !n.contains('/')) {
        let Some(id) = name.strip_suffix(".pub") else {
            continue;
        };
        let key = NoteVerifier::parse(&get(name)?).ok();
        let prefix = format!("{id}/");
        let mut notes = Vec::new();
        for rel in names
            .iter()
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".note"))
        {
            notes.push((rel.clone(), get(rel)?));
        }
        notes.sort();
        out.push((id.to_owned(), key, notes));
    }
    Ok(out)
}
