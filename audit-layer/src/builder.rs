//! Building an [`AuditLayer`] and its [`FlushGuard`].
//!
//! ```no_run
//! use audit_layer::{AuditLayer, Policy};
//!
//! let (layer, _guard) = AuditLayer::builder()
//!     .policy(Policy::default().dangerous_action("payments.*"))
//!     .service_name("billing")
//!     .otlp_grpc("http://127.0.0.1:4317")
//!     .build()?;
//! # drop(layer);
//! # Ok::<(), audit_layer::BuildError>(())
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use audit_schema::otlp::ResourceInfo;

use crate::build_error::BuildError;
use crate::consent::{ConsentError, ConsentKeys, Verification, DEFAULT_RELOAD_INTERVAL};
use crate::core::Core;
use crate::export::{
    http_logs_url, Destination, EnvSettings, FlushGuard, GrpcConfig, Http, MemorySink, Prepared,
    Protocol, Sink, TlsFiles, TransportConfig, WhenFull, WorkerSettings, DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT,
};
use crate::layer::AuditLayer;
use crate::policy::Policy;
use crate::stats::AuditStatus;

/// Configures an [`AuditLayer`]. Explicit settings win over the environment.
#[derive(Debug, Default)]
pub struct AuditLayerBuilder {
    policy: Policy,
    strict: bool,
    service_name: Option<String>,
    service_instance_id: Option<String>,
    destination: Option<Destination>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    tls: TlsFiles,
    settings: WorkerSettings,
    consent_keys: Option<ConsentKeys>,
    consent_keys_file: Option<std::path::PathBuf>,
    consent_keys_reload: Option<Duration>,
}

impl AuditLayer {
    /// Starts configuring a layer. Without a destination, [`build`](AuditLayerBuilder::build)
    /// reads the standard `OTEL_*` variables (see [`AuditLayerBuilder::from_env`]).
    pub fn builder() -> AuditLayerBuilder {
        AuditLayerBuilder::default()
    }
}

impl AuditLayerBuilder {
    /// What is privileged, and which actions are dangerous.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Panic when a privileged span is rejected, or when a privileged
    /// effect runs outside its gate ([`require_gate`](crate::require_gate)):
    /// run the application's tests this way. The violation record is still
    /// exported first.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// `service.name` of the resource (else `OTEL_SERVICE_NAME`, else `unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// `service.instance.id` of the resource (else from
    /// `OTEL_RESOURCE_ATTRIBUTES`, else a fresh UUIDv7 per process).
    pub fn service_instance_id(mut self, id: impl Into<String>) -> Self {
        self.service_instance_id = Some(id.into());
        self
    }

    /// Any destination.
    pub fn destination(mut self, destination: Destination) -> Self {
        self.destination = Some(destination);
        self
    }

    /// OTLP/gRPC to `endpoint`, e.g. `http://127.0.0.1:4317`.
    pub fn otlp_grpc(self, endpoint: impl Into<String>) -> Self {
        self.destination(Destination::OtlpGrpc(endpoint.into()))
    }

    /// OTLP/HTTP protobuf to `endpoint`, e.g. `http://127.0.0.1:4318`;
    /// `/v1/logs` is appended unless already there.
    pub fn otlp_http(self, endpoint: impl Into<String>) -> Self {
        self.destination(Destination::OtlpHttp(http_logs_url(&endpoint.into())))
    }

    /// Records stay in `sink` (tests and examples without a collector).
    pub fn memory(self, sink: MemorySink) -> Self {
        self.destination(Destination::Memory(sink))
    }

    /// Chooses the destination from `OTEL_EXPORTER_OTLP_*` (protocol,
    /// endpoint, headers, timeout) — the default when no destination is set.
    /// A destination set after this call wins. Whatever the destination,
    /// [`build`](Self::build) also adds the dangerous-action patterns of
    /// `AUDIT_DANGEROUS_ACTIONS` and reads `AUDIT_CONSENT_KEYS_FILE`.
    ///
    /// Nothing is dangerous by default: without a pattern from the policy
    /// or that variable, no action needs consent.
    pub fn from_env(mut self) -> Self {
        self.destination = None;
        self
    }

    /// An extra header on every export request (added to `OTEL_EXPORTER_OTLP_HEADERS`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// PEM CA file the collector's certificate must chain to, for an
    /// `https://` endpoint (else `OTEL_EXPORTER_OTLP_CERTIFICATE`, else
    /// the system's roots).
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca = Some(path.into());
        self
    }

    /// PEM certificate chain and key this client presents (mutual TLS;
    /// else `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `_CLIENT_KEY`).
    ///
    /// ```
    /// use audit_layer::{AuditLayer, BuildError};
    /// let built = AuditLayer::builder()
    ///     .otlp_http("https://audit-collector:4318/v1/logs")
    ///     .tls_ca_file("/etc/audit/tls/ca.pem")
    ///     .tls_client_identity("/etc/audit/tls/app.pem", "/etc/audit/tls/app.key")
    ///     .build();
    /// // The files are read when building: a missing one fails here, not at the first export.
    /// assert!(matches!(built, Err(BuildError::Tls(m)) if m.contains("/etc/audit/tls/ca.pem")));
    /// ```
    pub fn tls_client_identity(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.client_cert = Some(cert.into());
        self.tls.client_key = Some(key.into());
        self
    }

    /// Per-request timeout (else `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Bound of the in-memory queue, in records (default 8192). When it is
    /// full, the [`when_full`](Self::when_full) policy applies.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.settings.queue_capacity = capacity;
        self
    }

    /// Most records per export request (default 512).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.settings.batch_size = size.max(1);
        self
    }

    /// Largest export request, in encoded bytes (default 16 MiB, the
    /// collector's default `max_request_bytes`): larger batches are sent
    /// in several requests. Set it to the collector's `max_request_bytes`
    /// when that is lower, to save a round trip; a request the collector
    /// still finds too large is sent again in halves, and only a single
    /// record too large by itself is refused (counted in
    /// [`AuditStatus::refused`](crate::AuditStatus::refused)).
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_request_bytes = bytes.max(1);
        self
    }

    /// How long a record may wait for companions before its batch is sent (default 200 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.settings.linger = linger;
        self
    }

    /// Longest wait between two attempts when the collector gives no hint
    /// (default 5 s; backoff starts at 100 ms, doubles, with jitter). There
    /// is no deadline after which records are given up: they wait, in
    /// memory and then in the [spool](Self::spool_dir).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.settings.max_backoff = max.max(Duration::from_millis(1));
        self
    }

    /// A directory where records wait on disk while the collector is
    /// unreachable, and across restarts of the application: a new process
    /// with the same directory resends what is there. One process per
    /// directory (it is locked). Without a spool, records wait in memory
    /// only.
    pub fn spool_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.settings.spool_dir = Some(dir.into());
        self
    }

    /// Size cap of the spool in bytes (default 256 MiB).
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.settings.spool_max_bytes = bytes;
        self
    }

    /// What happens when neither memory nor spool can take a record
    /// (default [`WhenFull::FailClosed`]).
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.settings.when_full = policy;
        self
    }

    /// Under [`WhenFull::FailClosed`], how long a privileged span that
    /// closes while the memory queue is over twice its capacity (and the
    /// spool full) blocks its thread waiting for room, before its record
    /// is dropped and reported (default
    /// [`DEFAULT_SPAN_WAIT`](crate::export::DEFAULT_SPAN_WAIT), 1 s). The
    /// gate refuses long before: use it to refuse before acting.
    pub fn span_wait(mut self, wait: Duration) -> Self {
        self.settings.span_wait = wait;
        self
    }

    /// How long dropping the [`FlushGuard`] may take (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Verify consent: a dangerous action is accepted only with a consent
    /// token signed by one of `keys` that matches it (see
    /// [`consent`](crate::consent)), and its row says so. Else (and without
    /// `AUDIT_CONSENT_KEYS_FILE`) any consent id passes, unverified.
    pub fn consent_keys(mut self, keys: ConsentKeys) -> Self {
        self.consent_keys = Some(keys);
        self
    }

    /// [`consent_keys`](Self::consent_keys) from a JWK Set file (else the
    /// file `AUDIT_CONSENT_KEYS_FILE` names), read when building and
    /// reloaded while the layer runs (see [`consent`](crate::consent)).
    pub fn consent_keys_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.consent_keys_file = Some(path.into());
        self
    }

    /// How often the consent keys file is read for changes (default
    /// [`DEFAULT_RELOAD_INTERVAL`], 60 s); zero: read once, when building.
    pub fn consent_keys_reload_interval(mut self, every: Duration) -> Self {
        self.consent_keys_reload = Some(every);
        self
    }

    /// Builds the layer and the guard that owns delivery.
    ///
    /// Read from the environment as well: `AUDIT_DANGEROUS_ACTIONS`
    /// (comma-separated action patterns, added to the policy's, as the
    /// collector's `AUDIT_COLLECTOR_DANGEROUS_ACTIONS` adds to its config)
    /// and `AUDIT_CONSENT_KEYS_FILE` (when no keys were given).
    pub fn build(self) -> Result<(AuditLayer, FlushGuard), BuildError> {
        // The environment is only consulted for what the builder left open.
        // A malformed OTEL_* variable is an error for a real exporter, but
        // must not break tests that keep records in memory.
        let env = match (
            &self.destination,
            EnvSettings::read(|k| std::env::var(k).ok()),
        ) {
            (_, Ok(env)) => env,
            (Some(Destination::Memory(_)), Err(_)) => EnvSettings::default(),
            (_, Err(e)) => return Err(e),
        };
        let resource = ResourceInfo {
            service_name: Some(
                self.service_name
                    .or(env.service_name.clone())
                    .unwrap_or_else(|| audit_schema::wire::UNKNOWN_SERVICE.to_owned()),
            ),
            service_instance_id: Some(
                self.service_instance_id
                    .or(env.service_instance_id.clone())
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            ),
        };
        let status = AuditStatus::default();
        let destination = self.destination.unwrap_or_else(|| {
            match env.protocol.unwrap_or(Protocol::HttpProtobuf) {
                Protocol::Grpc => Destination::OtlpGrpc(
                    env.endpoint
                        .clone()
                        .unwrap_or_else(|| DEFAULT_GRPC_ENDPOINT.to_owned()),
                ),
                Protocol::HttpProtobuf => Destination::OtlpHttp(
                    env.endpoint
                        .clone()
                        .unwrap_or_else(|| http_logs_url(DEFAULT_HTTP_ENDPOINT)),
                ),
            }
        });
        let mut headers = env.headers;
        headers.extend(self.headers);
        let timeout = self.timeout.or(env.timeout).unwrap_or(DEFAULT_TIMEOUT);
        let tls = self.tls.or(env.tls);
        // A memory sink needs no worker; the others get a validated transport.
        let transport = match destination {
            Destination::Memory(memory) => Err(memory),
            Destination::OtlpGrpc(url) => {
                let tls = tls.load(&url)?;
                let grpc = GrpcConfig::new(&url, &headers, timeout, tls.as_ref())?;
                Ok(TransportConfig::Grpc(Box::new(grpc)))
            }
            Destination::OtlpHttp(url) => {
                let tls = tls.load(&url)?;
                let http = Http::new(&url, &headers, timeout, tls.as_ref())?;
                Ok(TransportConfig::Http(Box::new(http)))
            }
        };
        // The queue exists before the core that sends to it; the worker,
        // which checks spans with the core, starts after it.
        let (sink, worker) = match transport {
            Ok(transport) => {
                let prepared = Prepared::new(self.settings, status.clone())?;
                (prepared.sink(), Some((prepared, transport)))
            }
            Err(memory) => (Sink::Memory(memory), None),
        };
        let mut policy = self.policy;
        for p in env_list(DANGEROUS_ACTIONS_VAR) {
            policy = policy.dangerous_action(p);
        }
        let every = self.consent_keys_reload.unwrap_or(DEFAULT_RELOAD_INTERVAL);
        let consent = verification(self.consent_keys, self.consent_keys_file, every, &status)?;
        let core = Arc::new(Core {
            consent,
            policy,
            resource: resource.clone(),
            sink,
            status: status.clone(),
        });
        let guard = match worker {
            Some((prepared, transport)) => prepared.start(transport, resource, core.clone())?,
            None => FlushGuard::inline(status),
        };
        let layer = AuditLayer {
            core,
            strict: self.strict,
            scope: None,
            dispatch: OnceLock::new(),
            callsites: Default::default(),
            marks: Default::default(),
        };
        Ok((layer, guard))
    }
}

/// Action patterns added to the policy's dangerous ones, comma-separated.
pub const DANGEROUS_ACTIONS_VAR: &str = "AUDIT_DANGEROUS_ACTIONS";

/// A JWK Set file of consent verification keys.
pub const CONSENT_KEYS_FILE_VAR: &str = "AUDIT_CONSENT_KEYS_FILE";

fn env_list(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The keys given, else those of the file given, else of the variable's
/// (reloaded every `every`).
fn verification(
    keys: Option<ConsentKeys>,
    file: Option<std::path::PathBuf>,
    every: Duration,
    status: &AuditStatus,
) -> Result<Option<Verification>, BuildError> {
    if let Some(keys) = keys {
        return Ok(Some(Verification::fixed(keys)));
    }
    let Some(path) = file.or_else(|| std::env::var_os(CONSENT_KEYS_FILE_VAR).map(Into::into))
    else {
        return Ok(None);
    };
    match Verification::from_file(&path, every, status) {
        Ok(v) => Ok(Some(v)),
        // The message already names the file.
        Err(ConsentError::Keys(m)) => Err(BuildError::Consent(m)),
        Err(e) => Err(BuildError::Consent(e.to_string())),
    }
}
