//! `serve`'s flags (part of the binary, declared by `main.rs`) and how
//! they combine with the config file: a flag, or its `AUDIT_COLLECTOR_*`
//! variable, wins over the file's key of the same name, which wins over
//! the default.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use audit_collector::config::Config;
use clap::Args;

use crate::limit_flags;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory [default: ./audit-data].
    #[arg(long, env = "AUDIT_COLLECTOR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address, or `off` [default: 127.0.0.1:4317].
    #[arg(long, env = "AUDIT_COLLECTOR_OTLP_GRPC")]
    otlp_grpc: Option<String>,
    /// OTLP/HTTP listen address (also /healthz, /readyz, /metrics unless --admin-listen), or `off` [default: 127.0.0.1:4318].
    #[arg(long, env = "AUDIT_COLLECTOR_OTLP_HTTP")]
    otlp_http: Option<String>,
    /// Separate listen address for /healthz, /readyz and /metrics (then not on the OTLP/HTTP port), or `off` [default: off].
    #[arg(long, env = "AUDIT_COLLECTOR_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "AUDIT_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Object store for sealed files and manifests, e.g. s3://bucket/prefix [default: the data dir].
    #[arg(long, env = "AUDIT_COLLECTOR_STORE_URL")]
    store_url: Option<String>,
    /// Collector id (file names, manifest) [default: generated once, kept in DIR/collector_id].
    #[arg(long, env = "AUDIT_COLLECTOR_ID")]
    collector_id: Option<String>,
    /// Seal buffered rows into Parquet at least this often, seconds [default: 60].
    #[arg(long, env = "AUDIT_COLLECTOR_SEAL_INTERVAL_SECS")]
    seal_interval_secs: Option<u64>,
    /// Append a digest entry to the manifest this often, seconds, even when idle [default: 3600].
    #[arg(long, env = "AUDIT_COLLECTOR_DIGEST_INTERVAL_SECS")]
    digest_interval_secs: Option<u64>,
    /// Directory outside the data dir where a signed checkpoint of the manifest head goes at every digest.
    #[arg(long, env = "AUDIT_COLLECTOR_WITNESS_DIR")]
    witness_dir: Option<PathBuf>,
    /// The collector's private key for witness checkpoints [default: generated once in DIR/keys/].
    #[arg(long, env = "AUDIT_COLLECTOR_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Seal when this many rows are buffered [default: 200000].
    #[arg(long, env = "AUDIT_COLLECTOR_SEAL_ROWS")]
    seal_rows: Option<usize>,
    /// Seconds in-flight requests get to finish at shutdown [default: 10].
    #[arg(long, env = "AUDIT_COLLECTOR_SHUTDOWN_TIMEOUT_SECS")]
    shutdown_timeout_secs: Option<u64>,
    /// File of `name:token` client tokens; when set (or --tokens), OTLP requests need `authorization: Bearer <token>`.
    #[arg(long, env = "AUDIT_COLLECTOR_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Client tokens inline, `name:token,name:token` (prefer the environment variable to the flag).
    #[arg(long, env = "AUDIT_COLLECTOR_TOKENS", hide_env_values = true)]
    tokens: Option<String>,
    /// Seconds between checks of --tokens-file for changes (also reloaded on SIGHUP; inline tokens never are); 0: only on SIGHUP [default: 60].
    #[arg(long, env = "AUDIT_COLLECTOR_TOKENS_RELOAD_INTERVAL_SECS")]
    tokens_reload_interval_secs: Option<u64>,
    /// PEM certificate chain; turns on TLS on both OTLP listeners (needs --tls-key).
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s); clients must present a certificate it issued (mutual TLS).
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// PEM CRL(s) of the client CA: a revoked client certificate fails the handshake; repeatable (the variable: comma-separated), replaces the config's.
    #[arg(
        long = "tls-client-crl",
        env = "AUDIT_COLLECTOR_TLS_CLIENT_CRL",
        value_delimiter = ','
    )]
    tls_client_crl: Vec<PathBuf>,
    /// Seconds between checks of the TLS files for changes (also reloaded on SIGHUP); 0: only on SIGHUP [default: 60].
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_RELOAD_INTERVAL_SECS")]
    tls_reload_interval_secs: Option<u64>,
    /// Action pattern that requires consent (`*` wildcard); repeatable (the variable: comma-separated), adds to the config's.
    #[arg(
        long = "dangerous-action",
        env = "AUDIT_COLLECTOR_DANGEROUS_ACTIONS",
        value_delimiter = ','
    )]
    dangerous_actions: Vec<String>,
    #[command(flatten)]
    limits: limit_flags::LimitFlags,
}

fn listen_addr(flag: &str, value: &str) -> anyhow::Result<Option<SocketAddr>> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).with_context(|| {
        format!("--{flag} {value:?}: expected HOST:PORT (e.g. 127.0.0.1:4317) or `off`")
    })
}

pub fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(a) = &args.otlp_grpc {
        cfg.otlp_grpc = listen_addr("otlp-grpc", a)?;
    }
    if let Some(a) = &args.otlp_http {
        cfg.otlp_http = listen_addr("otlp-http", a)?;
    }
    if let Some(a) = &args.admin_listen {
        cfg.admin_listen = listen_addr("admin-listen", a)?;
    }
    if let Some(id) = &args.collector_id {
        cfg.collector_id = Some(id.clone());
    }
    if let Some(url) = &args.store_url {
        cfg.store.url = Some(url.clone());
    }
    if let Some(s) = args.seal_interval_secs {
        cfg.store.seal_interval_secs = s;
    }
    if let Some(t) = args.shutdown_timeout_secs {
        cfg.shutdown_timeout_secs = t;
    }
    if let Some(d) = args.digest_interval_secs {
        cfg.store.digest_interval_secs = d;
    }
    if let Some(d) = &args.witness_dir {
        cfg.store.witness_dir = Some(d.clone());
    }
    if let Some(k) = &args.signing_key {
        cfg.store.signing_key = Some(k.clone());
    }
    if let Some(r) = args.seal_rows {
        cfg.store.seal_rows = r;
    }
    if let Some(f) = &args.tokens_file {
        cfg.auth.tokens_file = Some(f.clone());
    }
    if let Some(t) = &args.tokens {
        cfg.auth.tokens = Some(t.clone());
    }
    if let Some(s) = args.tokens_reload_interval_secs {
        cfg.auth.reload_interval_secs = s;
    }
    for (flag, setting) in [
        (&args.tls_cert, &mut cfg.tls.cert_file),
        (&args.tls_key, &mut cfg.tls.key_file),
        (&args.tls_client_ca, &mut cfg.tls.client_ca_file),
    ] {
        if let Some(path) = flag {
            *setting = Some(path.clone());
        }
    }
    if !args.tls_client_crl.is_empty() {
        cfg.tls.client_crl_files = args.tls_client_crl.clone();
    }
    if let Some(s) = args.tls_reload_interval_secs {
        cfg.tls.reload_interval_secs = s;
    }
    cfg.rules
        .dangerous_actions
        .extend(args.dangerous_actions.iter().cloned());
    args.limits.apply(&mut cfg);
    Ok(cfg)
}
