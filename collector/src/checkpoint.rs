//! Signed checkpoints of a manifest's head, in the transparency-log formats
//! (C2SP `tlog-checkpoint` body inside a C2SP `signed-note`), with keys in
//! the `note` key formats used by Go's `golang.org/x/mod/sumdb/note`.
//!
//! A checkpoint says "the manifest of collector C had N entries and its
//! head hash was H", signed. Kept somewhere the collector's host cannot
//! rewrite (a witness, a ticket, another bucket), it exposes the one
//! tampering a hash chain cannot see by itself: a tail cut off cleanly.
//!
//! ```text
//! audit-collector/c0a1b2              <- origin
//! 42                                  <- number of manifest entries
//! 3q2+7w==...                         <- base64 of entry 41's hash
//! hash-chain head, not a Merkle tree root   <- extension line, always
//!
//! — audit-key Ab12Cd...               <- key name, base64(key hash ‖ signature)
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Extension line of every checkpoint: its third line is the head of a
/// linear hash chain, not an RFC 6962 Merkle tree root, so transparency-log
/// witnesses cannot check consistency proofs against it (`verify` checks
/// consistency by replaying the chain; see docs/decisions.md).
pub const CHAIN_NOTE: &str = "hash-chain head, not a Merkle tree root";

/// Signature algorithm byte of Ed25519 in note keys.
const ALG_ED25519: u8 = 1;

/// Errors of keys and checkpoints; each says what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// A key string is not in the note key format.
    #[error("malformed key: {0}")]
    Key(String),
    /// A checkpoint is not a well-formed signed note.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// No signature by the expected key verifies.
    #[error("checkpoint signature does not verify with key {0:?}")]
    BadSignature(String),
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', ' ', '\n'])
}

/// A signing key with its name.
#[derive(Debug)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

/// A verifier key with its name.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
}

/// Generates a key pair; returns (private key string, public key string).
pub fn generate(name: &str) -> Result<(String, String), CheckpointError> {
    if !valid_name(name) {
        return Err(CheckpointError::Key(format!(
            "key name {name:?} must be non-empty without '+', spaces or newlines"
        )));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| CheckpointError::Key(format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key().to_bytes();
    let hash = hex::encode(key_hash(name, &public));
    let mut private = vec![ALG_ED25519];
    private.extend_from_slice(&seed);
    let mut pubenc = vec![ALG_ED25519];
    pubenc.extend_from_slice(&public);
    Ok((
        format!("PRIVATE+KEY+{name}+{hash}+{}", B64.encode(private)),
        format!("{name}+{hash}+{}", B64.encode(pubenc)),
    ))
}

fn parse_key(parts: &[&str]) -> Result<(String, [u8; 32]), CheckpointError> {
    let [name, _hash, data] = parts else {
        return Err(CheckpointError::Key("expected NAME+HASH+DATA".into()));
    };
    let bytes = B64
        .decode(data.trim())
        .map_err(|e| CheckpointError::Key(format!("key data is not base64: {e}")))?;
    match bytes.split_first() {
        Some((&ALG_ED25519, rest)) if rest.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(rest);
            Ok(((*name).to_owned(), k))
        }
        _ => Err(CheckpointError::Key("not an Ed25519 key".into())),
    }
}

impl NoteSigner {
    /// Parses `PRIVATE+KEY+NAME+HASH+DATA`.
    pub fn parse(s: &str) -> Result<NoteSigner, CheckpointError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| CheckpointError::Key("private key must start PRIVATE+KEY+".into()))?;
        // Base64 may itself contain '+': only the first two separate fields.
        let parts: Vec<&str> = rest.splitn(3, '+').collect();
        let (name, seed) = parse_key(&parts)?;
        Ok(NoteSigner {
            name,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Signs a checkpoint of `size` entries with head hash `head_hex`.
    pub fn sign(&self, origin: &str, size: u64, head_hex: &str) -> Result<String, CheckpointError> {
        let head = hex::decode(head_hex)
            .map_err(|e| CheckpointError::Malformed(format!("head hash is not hex: {e}")))?;
        let body = format!("{origin}\n{size}\n{}\n{CHAIN_NOTE}\n", B64.encode(head));
        Ok(format!("{body}\n{}", self.signature_line(&body)))
    }

    /// The signature line of a note whose text is `text` (ending in a
    /// newline): `— NAME base64(key hash ‖ signature)` and a newline.
    pub fn signature_line(&self, text: &str) -> String {
        let sig: Signature = self.key.sign(text.as_bytes());
        let mut blob = key_hash(&self.name, &self.key.verifying_key().to_bytes()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }

    /// The public key, in the note verifier format.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }
}

/// What a verified checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Origin line (`audit-collector/<collector_id>`).
    pub origin: String,
    /// Number of manifest entries.
    pub size: u64,
    /// Hash of entry `size - 1`, hex.
    pub head_hex: String,
}

impl NoteVerifier {
    /// Parses a list of keys, as `[retention] operator_keys` holds them.
    pub fn parse_all(keys: &[String]) -> Result<Vec<NoteVerifier>, CheckpointError> {
        keys.iter().map(|k| NoteVerifier::parse(k)).collect()
    }

    /// Parses `NAME+HASH+DATA`.
    pub fn parse(s: &str) -> Result<NoteVerifier, CheckpointError> {
        let parts: Vec<&str> = s.trim().splitn(3, '+').collect();
        let (name, public) = parse_key(&parts)?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| CheckpointError::Key(format!("bad public key: {e}")))?;
        Ok(NoteVerifier { name, key })
    }

    /// Checks the signature and parses the checkpoint body.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let malformed = |m: &str| CheckpointError::Malformed(m.to_owned());
        let (body, sigs) = note
            .split_once("\n\n")
            .ok_or_else(|| malformed("no blank line between text and signatures"))?;
        let body = format!("{body}\n");
        if !self.signed(&body, sigs) {
            return Err(CheckpointError::BadSignature(self.name.clone()));
        }
        let mut lines = body.lines();
        let origin = lines
            .next()
            .ok_or_else(|| malformed("no origin"))?
            .to_owned();
        let size = lines
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| malformed("size is not a number"))?;
        let head = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .ok_or_else(|| malformed("head hash is not base64"))?;
        Ok(Checkpoint {
            origin,
            size,
            head_hex: hex::encode(head),
        })
    }
}

impl NoteVerifier {
    /// Whether one of the signature lines in `sigs` is this key's valid
    /// signature of `text` (the note text, ending in a newline).
    pub fn signed(&self, text: &str, sigs: &str) -> bool {
        let want_hash = key_hash(&self.name, &self.key.to_bytes());
        sigs.lines().any(|line| {
            let Some((name, b64)) = line
                .strip_prefix("\u{2014} ")
                .and_then(|rest| rest.split_once(' '))
            else {
                return false;
            };
            let Ok(blob) = B64.decode(b64) else {
                return false;
            };
            if name != self.name || blob.len() != 68 || blob[..4] != want_hash {
                return false;
            }
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&blob[4..]);
            self.key
                .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
                .is_ok()
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key in the note verifier format, `NAME+HASH+DATA`.
    pub fn to_note_key(&self) -> String {
        let public = self.key.to_bytes();
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(&public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_hash(&self.name, &public)),
            B64.encode(data)
        )
    }
}

/// Origin line of a collector's checkpoints.
pub fn origin(collector_id: &str) -> String {
    format!("audit-collector/{collector_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoint_opens_with_its_key_only() {
        let (private, public) = generate("audit-key").unwrap();
        let signer = NoteSigner::parse(&private).unwrap();
        let note = signer
            .sign("audit-collector/c1", 7, &"ab".repeat(32))
            .unwrap();
        let cp = NoteVerifier::parse(&public).unwrap().open(&note).unwrap();
        assert_eq!(cp.size, 7);
        assert_eq!(cp.head_hex, "ab".repeat(32));
        assert_eq!(cp.origin, "audit-collector/c1");

        let (_, other) = generate("audit-key").unwrap();
        assert!(matches!(
            NoteVerifier::parse(&other).unwrap().open(&note),
            Err(CheckpointError::BadSignature(_))
        ));
        let forged = note.replace("\n7\n", "\n6\n");
        assert!(NoteVerifier::parse(&public).unwrap().open(&forged).is_err());
    }

    #[test]
    fn key_strings_follow_the_note_format() {
        let (private, public) = generate("k").unwrap();
        assert!(private.starts_with("PRIVATE+KEY+k+"));
        assert!(public.starts_with("k+"));
        assert!(NoteSigner::parse(&public).is_err());
        let signer = NoteSigner::parse(&private).unwrap();
        assert_eq!(signer.verifier().to_note_key(), public);
        assert!(generate("bad name").is_err());
    }
}
