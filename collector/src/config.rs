//! The collector's settings: a TOML file, overridden by environment
//! variables and flags (see `main.rs`), with defaults for everything.
//!
//! ```toml
//! data_dir = "./audit-data"
//! otlp_grpc = "127.0.0.1:4317"
//! otlp_http = "127.0.0.1:4318"
//!
//! [rules]
//! dangerous_actions = ["payments.*", "*.delete"]
//!
//! [store]
//! seal_rows = 200000
//! seal_interval_secs = 60
//! # Sealed files and manifests to S3 instead of data_dir (the WAL stays local):
//! # url = "s3://audit-bucket/trail"
//! # object_lock = "compliance"
//! # [store.remote]
//! # region = "eu-west-1"
//!
//! [tls]  # optional; see `crate::tls`
//! cert_file = "server.pem"
//! key_file = "server.key"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_schema::Rules;
use serde::Deserialize;

use crate::ingest::IngestConfig;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Storage settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Seal when this many rows are buffered.
    pub seal_rows: usize,
    /// Seal when the oldest buffered row is this many seconds old.
    pub seal_interval_secs: u64,
    /// Requests waiting for the writer before new ones get a retryable error.
    pub queue_depth: usize,
    /// Unsealed rows held before new requests get a retryable error.
    pub max_buffered_rows: usize,
    /// Hours an `event_id` is remembered for deduplication.
    pub dedup_window_hours: u64,
    /// Seconds between digest entries in the manifest (appended even when idle).
    pub digest_interval_secs: u64,
    /// Where sealed files and manifests go: `s3://bucket/prefix`, or unset
    /// for `data_dir` itself. The WAL always stays in `data_dir`.
    pub url: Option<String>,
    /// Endpoint, region and plain-HTTP switch of `url` (`[store.remote]`);
    /// credentials come from the standard `AWS_*` environment variables.
    pub remote: crate::store::RemoteOptions,
    /// S3 Object Lock mode of uploads (`"governance"` or `"compliance"`),
    /// retained for the `[retention]` policy's `min_days`, legal holds set
    /// from its `legal_holds`; unset uploads without lock headers.
    pub object_lock: Option<crate::store::lock::LockMode>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let d = IngestConfig::new("", "");
        StoreConfig {
            seal_rows: d.seal_rows,
            seal_interval_secs: d.seal_interval.as_secs(),
            queue_depth: d.queue_depth,
            max_buffered_rows: d.max_buffered_rows,
            dedup_window_hours: d.dedup_window.as_secs() / 3600,
            digest_interval_secs: d.digest_interval.as_secs(),
            url: None,
            remote: crate::store::RemoteOptions::default(),
            object_lock: None,
        }
    }
}

/// Who may write. With neither setting, any client that reaches the port
/// can write (bind to loopback, as the default does, or set tokens).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// File of `name:token` lines (see [`crate::auth`]).
    pub tokens_file: Option<PathBuf>,
    /// The same list inline, comma-separated; meant for `AUDIT_COLLECTOR_TOKENS`.
    pub tokens: Option<String>,
}

impl AuthConfig {
    /// The accepted tokens, or `None` when authentication is off.
    pub fn load(&self) -> Result<Option<crate::auth::Tokens>, ConfigError> {
        use crate::auth::Tokens;
        let invalid = |e: crate::auth::TokensError| ConfigError::Invalid(format!("auth: {e}"));
        match (&self.tokens_file, &self.tokens) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                "auth: set tokens_file or tokens, not both".into(),
            )),
            (Some(path), None) => Tokens::from_file(path).map(Some).map_err(invalid),
            (None, Some(list)) => Tokens::parse(list).map(Some).map_err(invalid),
            (None, None) => Ok(None),
        }
    }
}

/// Everything `serve` needs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Collector id; generated once and kept in `DIR/collector_id` when unset.
    pub collector_id: Option<String>,
    /// OTLP/gRPC listen address; `None` disables it.
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address (also `/healthz`, `/metrics`); `None` disables it.
    pub otlp_http: Option<SocketAddr>,
    /// Largest request accepted, bytes, as sent and after decompression.
    pub max_request_bytes: usize,
    /// Requests served at once, both protocols together; more are refused
    /// at once with a retryable error (HTTP 503, gRPC `UNAVAILABLE`). With
    /// `max_request_bytes` this bounds the memory requests can take.
    pub max_in_flight_requests: usize,
    /// Seconds a request may take: receiving an HTTP body (then 408), or a
    /// whole gRPC call (then `CANCELLED`; a client's shorter `grpc-timeout` wins).
    pub request_timeout_secs: u64,
    /// Seconds to let in-flight requests finish at shutdown before closing connections.
    pub shutdown_timeout_secs: u64,
    /// Dual-key rules.
    pub rules: Rules,
    /// Client authentication.
    pub auth: AuthConfig,
    /// TLS (and mutual TLS) on both receivers.
    pub tls: crate::tls::TlsConfig,
    /// Storage.
    pub store: StoreConfig,
    /// Retention policy (used by the `retention` command).
    pub retention: crate::retention::RetentionPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./audit-data"),
            collector_id: None,
            otlp_grpc: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            otlp_http: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
            max_request_bytes: 16 << 20,
            max_in_flight_requests: 64,
            request_timeout_secs: 30,
            shutdown_timeout_secs: 10,
            rules: Rules::default(),
            auth: AuthConfig::default(),
            tls: crate::tls::TlsConfig::default(),
            store: StoreConfig::default(),
            retention: crate::retention::RetentionPolicy::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file; absent keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The collector id: configured, else kept in the data dir, else new.
    pub fn resolve_collector_id(&self) -> Result<String, ConfigError> {
        let id = match &self.collector_id {
            Some(id) => id.clone(),
            None => {
                let path = self.data_dir.join("collector_id");
                match std::fs::read_to_string(&path) {
                    Ok(s) => s.trim().to_owned(),
                    Err(_) => {
                        let id = format!("c{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
                        std::fs::create_dir_all(&self.data_dir)
                            .and_then(|_| std::fs::write(&path, format!("{id}\n")))
                            .map_err(|source| ConfigError::Read { path, source })?;
                        id
                    }
                }
            }
        };
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "collector id {id:?}: use 1-64 of A-Z a-z 0-9 _ . (it is part of file names; no '-')"
            )));
        }
        Ok(id)
    }

    /// The store at `url` (an `s3://` URL), with `[store.remote]` options.
    pub fn location(&self, url: &str) -> Result<crate::store::Location, ConfigError> {
        if !crate::store::is_remote(url) {
            return Err(ConfigError::Invalid(format!(
                "store: url {url:?} is not an object store URL (s3://bucket/prefix); \
                 for a local dataset set data_dir instead"
            )));
        }
        crate::store::Location::parse(url, &self.store.remote)
            .map_err(|e| ConfigError::Invalid(format!("store: {e}")))
    }

    /// The store settings for a resolved collector id.
    pub fn ingest(&self, collector_id: &str) -> Result<IngestConfig, ConfigError> {
        let s = &self.store;
        if self.max_in_flight_requests == 0 || self.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "max_in_flight_requests and request_timeout_secs must be > 0".into(),
            ));
        }
        if s.seal_rows == 0 || s.queue_depth == 0 || s.max_buffered_rows < s.seal_rows {
            return Err(ConfigError::Invalid(
                "store: seal_rows and queue_depth must be > 0 and max_buffered_rows >= seal_rows"
                    .into(),
            ));
        }
        let remote = match &s.url {
            None if s.object_lock.is_some() => {
                return Err(ConfigError::Invalid(
                    "store: object_lock needs an s3:// url".into(),
                ))
            }
            None => None,
            Some(url) => Some(crate::ingest::RemoteTarget {
                location: self.location(url)?,
                object_lock: s.object_lock.map(|mode| crate::store::lock::ObjectLock {
                    mode,
                    min_days: self.retention.min_days,
                    legal_holds: self.retention.legal_holds.clone(),
                }),
            }),
        };
        Ok(IngestConfig {
            remote,
            data_dir: self.data_dir.clone(),
            collector_id: collector_id.to_owned(),
            seal_rows: s.seal_rows,
            seal_interval: Duration::from_secs(s.seal_interval_secs.max(1)),
            queue_depth: s.queue_depth,
            max_buffered_rows: s.max_buffered_rows,
            dedup_window: Duration::from_secs(s.dedup_window_hours * 3600),
            digest_interval: Duration::from_secs(s.digest_interval_secs.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "otlp_http = \"127.0.0.1:9999\"\n[rules]\ndangerous_actions = [\"db.*\"]\n",
        )
        .unwrap();
        let c = Config::from_file(&p).unwrap();
        assert_eq!(c.otlp_http, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.otlp_grpc, Config::default().otlp_grpc);
        assert!(c.rules.is_dangerous_action("db.drop"));
        std::fs::write(&p, "otlp_htp = \"x\"\n").unwrap();
        let err = Config::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("otlp_htp"), "{err}");
    }

    #[test]
    fn collector_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config {
            data_dir: dir.path().into(),
            ..Config::default()
        };
        let a = c.resolve_collector_id().unwrap();
        assert_eq!(a, c.resolve_collector_id().unwrap());
        let bad = Config {
            collector_id: Some("a-b".into()),
            ..c
        };
        assert!(bad.resolve_collector_id().is_err());
    }
}
