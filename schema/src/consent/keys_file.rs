//! The consent keys file, reloaded while the process runs: the collector
//! (`[consent] keys_file`) and the layer (`consent_keys_file`,
//! `AUDIT_CONSENT_KEYS_FILE`) read it with [`KeysFile::open`] and watch it
//! with `audit_durable::reload`, each on its own schedule. A file that does
//! not load keeps the keys in use.

use std::path::{Path, PathBuf};

use audit_durable::reload::{Live, Source};
use sha2::{Digest, Sha256};

use super::{ConsentError, ConsentKeys};

/// A JWK Set file of consent keys and the keys in use from it.
#[derive(Debug)]
pub struct KeysFile {
    path: PathBuf,
    live: Live<ConsentKeys>,
}

impl KeysFile {
    /// Reads and parses `path`: the file, and the digest of the bytes its
    /// keys came from (for `audit_durable::reload::Watcher::new`). A file
    /// that does not load is an error naming it.
    pub fn open(path: impl Into<PathBuf>) -> Result<(KeysFile, [u8; 32]), ConsentError> {
        let path = path.into();
        let bytes = read(&path)?;
        let keys = parse(&path, &bytes)?;
        let file = KeysFile {
            path,
            live: Live::new(keys),
        };
        Ok((file, KeysFile::digest(&bytes)))
    }

    /// The keys in use, swapped by each reload.
    pub fn keys(&self) -> &Live<ConsentKeys> {
        &self.live
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConsentError> {
    std::fs::read(path).map_err(|e| ConsentError::Keys(format!("{}: {e}", path.display())))
}

fn parse(path: &Path, bytes: &[u8]) -> Result<ConsentKeys, ConsentError> {
    ConsentKeys::from_jwks(bytes)
        .map_err(|e| ConsentError::Keys(format!("{}: {e}", path.display())))
}

impl Source for KeysFile {
    type Files = Vec<u8>;
    type Error = ConsentError;
    const WHAT: &'static str = "consent keys file";

    fn read(&self) -> Result<Option<Vec<u8>>, ConsentError> {
        read(&self.path).map(Some)
    }

    fn digest(bytes: &Vec<u8>) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn apply(&mut self, bytes: &Vec<u8>) -> Result<(), ConsentError> {
        self.live.replace(parse(&self.path, bytes)?);
        Ok(())
    }
}
