//! Automatic, witnessed checkpoints: every digest interval the collector
//! signs its manifest head with its own key and writes the checkpoint to a
//! witness directory outside the data dir (another disk or mount), so that
//! a tail cut off cleanly, or a chain rewritten consistently, is caught by
//! `verify --witness` with nobody having run `checkpoint` by hand.
//!
//! ```text
//! WITNESS/<collector_id>.pub                   the collector's public key (written once)
//! WITNESS/<collector_id>/<size, 20 digits>.note   one signed checkpoint per digest
//! ```
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
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, CheckpointError, NoteSigner, NoteVerifier};
use crate::manifest::Manifest;

/// Where checkpoints go and which key signs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessConfig {
    /// The witness directory (outside the data dir).
    pub dir: PathBuf,
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
    /// The witness already holds another public key for this collector.
    #[error("{} holds another public key for this collector: refusing to sign with a different key (remove it only if the key was rotated on purpose)", .0.display())]
    OtherKey(PathBuf),
}

/// The collector's side of the witness.
#[derive(Debug)]
pub struct Witness {
    dir: PathBuf,
    collector_id: String,
    signer: NoteSigner,
    public: String,
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

/// Writes `text` to a new file (mode 0600 when `private`), fsynced.
fn write_new(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
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
                fs::create_dir_all(&dir).map_err(key_err(&dir))?;
                let path = dir.join(format!("{collector_id}.key"));
                if !path.exists() {
                    let name = format!("audit-collector-{collector_id}");
                    let (private, public) = checkpoint::generate(&name)?;
                    write_new(&path, &format!("{private}\n"), true).map_err(key_err(&path))?;
                    let public_path = dir.join(format!("{collector_id}.pub"));
                    fs::write(&public_path, format!("{public}\n"))
                        .map_err(key_err(&public_path))?;
                }
                path
            }
        };
        let text = fs::read_to_string(&key_path).map_err(key_err(&key_path))?;
        let signer = NoteSigner::parse(&text)?;
        let public = signer.verifier().to_note_key();
        let w = Witness {
            dir: cfg.dir.clone(),
            collector_id: collector_id.to_owned(),
            signer,
            public,
        };
        let pinned = public_key_path(&w.dir, collector_id);
        if let Ok(existing) = fs::read_to_string(&pinned) {
            if existing.trim() != w.public {
                return Err(WitnessError::OtherKey(pinned));
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
        let pinned = public_key_path(&self.dir, &self.collector_id);
        if !pinned.exists() {
            fs::create_dir_all(&self.dir)?;
            match write_new(&pinned, &format!("{}\n", self.public), false) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let dir = self.dir.join(&self.collector_id);
        fs::create_dir_all(&dir)?;
        let note = self
            .signer
            .sign(
                &checkpoint::origin(&self.collector_id),
                size,
                manifest.head(),
            )
            .map_err(std::io::Error::other)?;
        match write_new(&dir.join(format!("{size:020}.note")), &note, false) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }
}

/// A collector's checkpoints in a witness directory, with the key to check
/// them: `(collector_id, public key, notes by path)`.
pub type Witnessed = (String, Option<NoteVerifier>, Vec<(PathBuf, String)>);

/// Every collector the witness directory knows, with its pinned public key
/// (`None` when missing or malformed) and its notes, oldest first.
pub fn read(dir: &Path) -> std::io::Result<Vec<Witnessed>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pub"))
        else {
            continue;
        };
        let key = fs::read_to_string(&path)
            .ok()
            .and_then(|k| NoteVerifier::parse(&k).ok());
        let mut notes = Vec::new();
        if let Ok(files) = fs::read_dir(dir.join(id)) {
            for f in files.flatten() {
                let p = f.path();
                if p.extension().and_then(|e| e.to_str()) == Some("note") {
                    notes.push((p.clone(), fs::read_to_string(&p)?));
                }
            }
        }
        notes.sort();
        out.push((id.to_owned(), key, notes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
