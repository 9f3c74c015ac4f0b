//! Creating objects that are never replaced, retried until they land.
//!
//! Every upload is a conditional create (`PutMode::Create`, on S3
//! `If-None-Match: *`), so nothing in the store is ever overwritten. An
//! upload whose response was lost may have landed anyway: the retry then
//! meets `AlreadyExists`, and the object's content decides — the same
//! SHA-256 as ours is our own earlier attempt (success, not a duplicate),
//! anything else is a conflict that is reported and never papered over.

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

/// How often and how patiently one call retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per call (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubles after each next one.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What a successful create found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// This call created the object.
    New,
    /// The object was already there with exactly our content (an earlier
    /// attempt whose answer was lost).
    AlreadyThere,
}

/// Why an object could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// Another object holds the name. Never overwritten.
    #[error("{path}: already exists with different content (sha256 {theirs}, ours {ours}); objects are never overwritten — is another collector writing with the same collector id?")]
    Conflict {
        /// The object.
        path: String,
        /// SHA-256 of what we meant to write.
        ours: String,
        /// SHA-256 of what is there.
        theirs: String,
    },
    /// The store kept failing; the caller retries later.
    #[error("{path}: upload failed after {attempts} attempt(s): {source}")]
    Failed {
        /// The object.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: object_store::Error,
    },
}

impl PutError {
    /// Whether retrying later can help (a conflict never resolves itself).
    pub fn is_transient(&self) -> bool {
        matches!(self, PutError::Failed { .. })
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Creates `path` with `bytes` unless it exists; see the module docs for
/// what an existing object means.
pub async fn create(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    bytes: Bytes,
    retry: &Retry,
) -> Result<Created, PutError> {
    let ours = sha256_hex(&bytes);
    let mut backoff = retry.first_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let err = match store
            .put_opts(path, PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(_) => return Ok(Created::New),
            Err(object_store::Error::AlreadyExists { .. }) => match read(store, path).await {
                Ok(theirs) => {
                    let theirs = sha256_hex(&theirs);
                    if theirs == ours {
                        return Ok(Created::AlreadyThere);
                    }
                    return Err(PutError::Conflict {
                        path: path.to_string(),
                        ours,
                        theirs,
                    });
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        if attempt >= retry.attempts.max(1) {
            return Err(PutError::Failed {
                path: path.to_string(),
                attempts: attempt,
                source: err,
            });
        }
        tracing::warn!(object = %path, attempt, error = %err, "upload failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(retry.max_backoff);
    }
}

/// The whole object.
pub async fn read(store: &dyn ObjectStore, path: &ObjectPath) -> object_store::Result<Bytes> {
    store.get(path).await?.bytes().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_second_create_of_the_same_content_is_our_own_and_other_content_is_refused() {
        let store = InMemory::new();
        let path = ObjectPath::from("audit/part-c1-1.parquet");
        let retry = Retry::default();
        let first = create(&store, &path, Bytes::from_static(b"rows"), &retry).await;
        assert_eq!(first.unwrap(), Created::New);
        // What a retry sees when the first attempt landed but its answer was lost.
        let again = create(&store, &path, Bytes::from_static(b"rows"), &retry).await;
        assert_eq!(again.unwrap(), Created::AlreadyThere);
        let other = create(&store, &path, Bytes::from_static(b"other"), &retry).await;
        let err = other.unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("never overwritten"), "{err}");
        assert_eq!(read(&store, &path).await.unwrap().as_ref(), b"rows");
    }
}
