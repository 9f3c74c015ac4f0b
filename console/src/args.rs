//! `audit-collector console`: its flags, and the server they start.

use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use audit_collector::auth::{ClientTokens, Tokens};
use audit_collector::dataset::DatasetArgs;
use audit_collector::metrics::Metrics;
use audit_collector::server::{serve_http, ConnLimit, HttpLimits};
use audit_query::access::{AccessLog, Writer};
use axum::http::HeaderName;
use clap::Args;

use crate::app::{router, App};
use crate::auth::Auth;
use crate::checkpoints::Witness;
use crate::health;
use crate::verified::Verifier;
use crate::ConsoleError;

/// Time a browser has to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at once: a few auditors, each browser a handful.
const MAX_CONNECTIONS: usize = 128;

/// `console --data-dir DIR | --store-url s3://… [--listen ADDR]`.
#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Address to serve on. Loopback by default: put an authenticating
    /// reverse proxy in front to share it.
    #[arg(long, env = "AUDIT_CONSOLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Viewers' tokens, `name:token` per line (the collector's format); the
    /// name is who looked. Read again on SIGHUP. Without this or
    /// --trusted-proxy, a one-time token is made and its sign-in link
    /// printed.
    #[arg(long, env = "AUDIT_CONSOLE_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Address of an authenticating reverse proxy: only requests from it
    /// may name the viewer in --proxy-header.
    #[arg(long, env = "AUDIT_CONSOLE_TRUSTED_PROXY")]
    pub trusted_proxy: Option<IpAddr>,
    /// The header the trusted proxy names the viewer in.
    #[arg(long, default_value = "x-forwarded-user")]
    pub proxy_header: String,
    /// Where every question asked is recorded (who looked): a dataset of
    /// its own, written like the collector's and checked by `verify`; the
    /// CLI's answer commands record theirs there too (their --access-dir).
    #[arg(long, env = "AUDIT_ACCESS_DIR", default_value = "./audit-access")]
    pub access_dir: PathBuf,
    /// The collectors' witness directory (or s3://bucket/prefix), whose
    /// signed checkpoints the proof panel and trail health show
    /// [default: --config's [store] witness_dir].
    #[arg(long, env = "AUDIT_COLLECTOR_WITNESS_DIR")]
    pub witness: Option<PathBuf>,
    /// Most rows one CSV or JSON export may hold: an export is built in
    /// memory, so a longer one is refused with a message (the timeline
    /// pages through any window).
    #[arg(long, default_value_t = 100_000)]
    pub export_limit: u64,
}

/// A token nobody can guess: 32 random bytes, hex.
fn one_time_token() -> Result<String, ConsoleError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(ConsoleError::Random)?;
    Ok(hex::encode(b))
}

impl ConsoleArgs {
    /// Serves the console until `stop` resolves. Prints one line when
    /// listening (`console listening http://ADDR`), and the sign-in link
    /// when it made the token itself.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<bool, ConsoleError> {
        let location = self.data.locate().map_err(audit_query::QueryError::from)?;
        // `verify` in the trail-health view judges deletions with the
        // operator keys the collector's config names, as `verify` does, and
        // reads checkpoints from the witness it names.
        let cfg = self
            .data
            .config()
            .map_err(|e| ConsoleError::Access(e.to_string()))?;
        let operator_keys = cfg.retention.operator_keys;
        let witness = match self.witness.as_ref().or(cfg.store.witness_dir.as_ref()) {
            Some(dir) => Some(Witness::open(dir, &cfg.store.remote)?),
            None => None,
        };
        let proxy = match self.trusted_proxy {
            Some(ip) => Some((
                ip,
                HeaderName::try_from(self.proxy_header.as_str())
                    .map_err(|_| ConsoleError::BadHeader(self.proxy_header.clone()))?,
            )),
            None => None,
        };
        let mut made = None;
        let metrics = Arc::new(Metrics::default());
        let tokens = match (&self.tokens_file, &proxy) {
            // Only on SIGHUP (interval zero): a console's viewers change
            // when an operator says so.
            (Some(path), _) => Some(ClientTokens::watch(path, Duration::ZERO, metrics.clone())?),
            (None, Some(_)) => None,
            (None, None) => {
                let t = one_time_token()?;
                let tokens = Tokens::parse(&format!("operator:{t}"))?;
                made = Some(t);
                Some(ClientTokens::fixed(tokens))
            }
        };
        // Installed before the listening line, like the collector's: from
        // then on SIGHUP reloads instead of ending the process.
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let dir = self.access_dir.clone();
        let access = tokio::task::spawn_blocking(move || AccessLog::open(&dir, Writer::Console))
            .await
            .map_err(|e| ConsoleError::Access(e.to_string()))?
            .map_err(|e| ConsoleError::Access(e.to_string()))?;
        let access = Arc::new(access);
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| ConsoleError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the console listens beyond loopback");
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "console listening http://{addr} dataset={}",
                location.url
            )?;
            if let Some(t) = &made {
                writeln!(out, "sign in (as operator): http://{addr}/login?token={t}")?;
            }
            out.flush()?;
        }
        let verifier = {
            let (loc, witness) = (location.clone(), witness.clone());
            Verifier::new(move || health::verify_now(&loc, &operator_keys, witness.as_ref()))
        };
        let app = Arc::new(App {
            location,
            auth: Auth {
                tokens: tokens.as_ref().map(|t| t.live.clone()),
                proxy,
            },
            access: access.clone(),
            witness,
            export_limit: self.export_limit,
            verifier,
        });
        let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
        if let Some(reloader) = tokens.and_then(|t| t.reloader) {
            let asked = Arc::new(tokio::sync::Notify::new());
            tokio::spawn(reloader.run(asked.clone(), stopped.clone()));
            #[cfg(unix)]
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    asked.notify_one();
                }
            });
        }
        let limits = HttpLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            connections: ConnLimit::new(MAX_CONNECTIONS, None),
        };
        let server = tokio::spawn(serve_http(listener, router(app), limits, metrics, stopped));
        stop.await;
        let _ = stopped_tx.send(true);
        let _ = server.await;
        // Seal the last access rows before exiting.
        tokio::task::spawn_blocking(move || access.close())
            .await
            .map_err(|e| ConsoleError::Access(e.to_string()))?
            .map_err(|e| ConsoleError::Access(e.to_string()))?;
        Ok(true)
    }
}
