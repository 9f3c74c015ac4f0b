//! The collector's settings, in layers, each over the one before:
//! [`Config::default`] (every default, in one place), the TOML file, the
//! `AUDIT_COLLECTOR_*` environment variables, the flags. [`Config::load`]
//! stacks them; the commands' flags (and, through clap, their variables)
//! name the key each sets, so a flag and its key cannot disagree.
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
//! seal_rows = 100000
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
use serde::{Deserialize, Deserializer, Serialize};

use crate::ingest::IngestConfig;

mod layers;

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
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
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
    /// A directory outside the data dir (another disk or mount) where a
    /// signed checkpoint of the manifest head is written at every digest.
    pub witness_dir: Option<PathBuf>,
    /// The collector's private key for witness checkpoints; unset, one is
    /// generated under `data_dir/keys/` at first start.
    pub signing_key: Option<PathBuf>,
    /// Seconds the witness may fail before `/readyz` says so (ingest goes
    /// on regardless).
    pub witness_grace_secs: u64,
}

impl Default for StoreConfig {
    /// [`Config::default`]'s (a `[store]` table fills its gaps from it).
    fn default() -> Self {
        Config::default().store
    }
}

/// Who may write. With neither setting, any client that reaches the port
/// can write (bind to loopback, as the default does, or set tokens).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// File of `name:token` lines (see [`crate::auth`]).
    pub tokens_file: Option<PathBuf>,
    /// The same list inline, comma-separated; meant for `AUDIT_COLLECTOR_TOKENS`.
    /// Never reloaded.
    pub tokens: Option<String>,
    /// Seconds between checks of `tokens_file` for changes (a change applies
    /// to the next requests); 0: only on SIGHUP.
    pub reload_interval_secs: u64,
}

impl Default for AuthConfig {
    /// [`Config::default`]'s.
    fn default() -> Self {
        Config::default().auth
    }
}

impl AuthConfig {
    /// The accepted tokens, or `None` when authentication is off.
    pub fn load(
        &self,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Option<crate::auth::ClientTokens>, ConfigError> {
        use crate::auth::{ClientTokens, Tokens};
        let invalid = |e: crate::auth::TokensError| ConfigError::Invalid(format!("auth: {e}"));
        let every = std::time::Duration::from_secs(self.reload_interval_secs);
        match (&self.tokens_file, &self.tokens) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                "auth: set tokens_file or tokens, not both".into(),
            )),
            (Some(path), None) => ClientTokens::watch(path, every, metrics)
                .map(Some)
                .map_err(invalid),
            (None, Some(list)) => Tokens::parse(list)
                .map(|t| Some(ClientTokens::fixed(t)))
                .map_err(invalid),
            (None, None) => Ok(None),
        }
    }
}

/// How the collector writes its own logs on stderr.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields.message`, …).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log format {s:?}: expected `text` or `json`")),
        }
    }
}

/// Everything `serve` needs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Collector id; generated once and kept in `DIR/collector_id` when unset.
    pub collector_id: Option<String>,
    /// OTLP/gRPC listen address; `None` (`"off"` in the file) disables it.
    #[serde(deserialize_with = "listen_addr")]
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address (also `/healthz`, `/readyz`, `/metrics`
    /// unless `admin_listen` is set); `None` (`"off"` in the file) disables it.
    #[serde(deserialize_with = "listen_addr")]
    pub otlp_http: Option<SocketAddr>,
    /// Separate listen address for `/healthz`, `/readyz` and `/metrics`
    /// (then they are not served on the OTLP/HTTP port); `None` (or `"off"`): on the OTLP/HTTP port.
    #[serde(deserialize_with = "listen_addr")]
    pub admin_listen: Option<SocketAddr>,
    /// Largest request accepted, bytes, as sent and after decompression.
    pub max_request_bytes: usize,
    /// Requests served at once, both protocols together; more are refused
    /// at once with a retryable error (HTTP 503, gRPC `UNAVAILABLE`). With
    /// `max_request_bytes` this bounds the memory requests can take.
    pub max_in_flight_requests: usize,
    /// Seconds a request may take: receiving an HTTP body (then 408), or a
    /// whole gRPC call (then `CANCELLED`; a client's shorter `grpc-timeout` wins).
    pub request_timeout_secs: u64,
    /// Seconds an HTTP client has to send a request's line and headers,
    /// counted from the connection's start or its previous response (so it
    /// also closes idle keep-alive connections); a gRPC client, to send the
    /// HTTP/2 preface. Then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// Connections open at once on the OTLP listeners together; past it a
    /// new connection is closed at once.
    pub max_connections: usize,
    /// Seconds to let in-flight requests finish at shutdown before closing connections.
    pub shutdown_timeout_secs: u64,
    /// Format of the collector's own logs on stderr.
    pub log_format: LogFormat,
    /// Dual-key rules.
    pub rules: Rules,
    /// Client authentication.
    pub auth: AuthConfig,
    /// Consent token verification.
    pub consent: crate::consent::ConsentConfig,
    /// TLS (and mutual TLS) on both receivers.
    pub tls: crate::tls::TlsConfig,
    /// Storage.
    pub store: StoreConfig,
    /// Retention policy (used by the `retention` command).
    pub retention: crate::retention::RetentionPolicy,
}

/// A listen address, `"HOST:PORT"`, or `"off"` (`None`): how the file,
/// the flags and their variables all give one.
pub fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{s:?}: expected HOST:PORT (e.g. 127.0.0.1:4317) or \"off\""))
}

fn listen_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    parse_listen(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

impl Default for Config {
    /// Every default of the collector's settings; the sections' own
    /// `Default`s return their part of this. The dual-key rules' defaults
    /// are the schema crate's, shared with the layer.
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./audit-data"),
            collector_id: None,
            otlp_grpc: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            otlp_http: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
            admin_listen: None,
            max_request_bytes: audit_schema::limits::DEFAULT_MAX_REQUEST_BYTES,
            max_in_flight_requests: 64,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            max_connections: 512,
            shutdown_timeout_secs: 10,
            log_format: LogFormat::Text,
            rules: Rules::default(),
            auth: AuthConfig {
                tokens_file: None,
                tokens: None,
                reload_interval_secs: 60,
            },
            consent: crate::consent::ConsentConfig::default(),
            tls: crate::tls::TlsConfig {
                cert_file: None,
                key_file: None,
                client_ca_file: None,
                client_crl_files: Vec::new(),
                reload_interval_secs: 60,
            },
            store: StoreConfig {
                seal_rows: 100_000,
                seal_interval_secs: 60,
                queue_depth: 1024,
                max_buffered_rows: 400_000,
                dedup_window_hours: 24,
                digest_interval_secs: 3600,
                url: None,
                remote: crate::store::RemoteOptions::default(),
                object_lock: None,
                witness_dir: None,
                signing_key: None,
                witness_grace_secs: 7200,
            },
            retention: crate::retention::RetentionPolicy {
                min_days: 30,
                max_days: None,
                legal_holds: Vec::new(),
                operator_keys: Vec::new(),
            },
        }
    }
}

impl Config {
    /// Reads a TOML file; absent keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        layers::parse_file(path).map(|(cfg, _)| cfg)
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
                        // Whole or not at all: the WAL is kept under the id,
                        // so an id lost or torn at a power loss would leave
                        // acknowledged records where the next start does
                        // not look (powerloss/collector_id.rs).
                        crate::fsio::create_dir_synced(&self.data_dir)
                            .and_then(|()| {
                                crate::fsio::write_new(&path, format!("{id}\n").as_bytes(), false)
                            })
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
        // Read commands take a bucket as their data dir (`--data s3://…`);
        // the writer needs a local one for its WAL.
        if let Some(url) = self
            .data_dir
            .to_str()
            .filter(|d| crate::store::is_remote(d))
        {
            return Err(ConfigError::Invalid(format!(
                "data_dir {url:?} is an object store URL: set store url (--store-url) to it \
                 and data_dir to a local directory for the WAL"
            )));
        }
        if self.max_in_flight_requests == 0
            || self.request_timeout_secs == 0
            || self.header_read_timeout_secs == 0
            || self.max_connections == 0
        {
            return Err(ConfigError::Invalid(
                "max_in_flight_requests, max_connections, request_timeout_secs and \
                 header_read_timeout_secs must be > 0"
                    .into(),
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
            witness: s
                .witness_dir
                .clone()
                .map(|dir| crate::witness::WitnessConfig {
                    dir,
                    remote: s.remote.clone(),
                    signing_key: s.signing_key.clone(),
                }),
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
    fn the_writer_needs_a_local_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let local = Config {
            data_dir: dir.path().into(),
            ..Config::default()
        };
        let ingest = local.ingest("c1").expect("defaults are valid");
        let s = &local.store;
        assert_eq!(
            (
                ingest.seal_rows,
                ingest.queue_depth,
                ingest.max_buffered_rows
            ),
            (s.seal_rows, s.queue_depth, s.max_buffered_rows)
        );
        assert_eq!(ingest.dedup_window.as_secs(), s.dedup_window_hours * 3600);
        let bucket = Config {
            data_dir: "s3://b/p".into(),
            ..Config::default()
        };
        let err = bucket.ingest("c1").unwrap_err().to_string();
        assert!(err.contains("--store-url"), "{err}");
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

/// `examples/deploy/collector.toml` documents every key with its default;
/// these tests keep it so.
#[cfg(test)]
mod example;
