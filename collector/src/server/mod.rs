//! `serve`: wires the store and the receivers, and shuts them down in the
//! order that keeps every acknowledged record: stop accepting, let
//! in-flight requests finish, seal, exit.
//!
//! Slow and idle clients: the HTTP listeners are bounded in `server/http.rs`
//! (header read timeout, idle keep-alive); every listener's open
//! connections are capped in `server/conns.rs`; the gRPC listener's
//! settings are in `grpc_server` below.

mod conns;
mod http;

// The console serves its pages with the same bounded HTTP/1 loop.
pub use conns::ConnLimit;
pub use http::{serve as serve_http, HttpLimits, Peer};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::health::{Health, Phase};
use crate::ingest::{Ingest, IngestError};
use crate::metrics::Metrics;
use crate::receive::grpc::GrpcLogs;
use crate::receive::http::{router, HttpState};
use crate::receive::Receiver;
use crate::tls::{TlsError, TlsIncoming};
use conns::HTTP2_PREFACE_BYTES;

/// Connections the admin listener keeps open at once: probes and scrapes
/// are few, and a flood of the OTLP ports must not starve them.
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// HTTP/2 PING interval on gRPC connections: a peer that does not answer
/// within [`GRPC_KEEPALIVE_TIMEOUT`] (dead, half-open, or not speaking
/// HTTP/2 at all) is disconnected.
const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// See [`GRPC_KEEPALIVE_INTERVAL`].
const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one gRPC connection may have open (the HTTP/2 recommended
/// minimum); past `max_in_flight_requests` (all connections together)
/// requests are refused anyway.
const GRPC_MAX_STREAMS: u32 = 100;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Unusable TLS settings.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store could not start or seal.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running collector.
#[derive(Debug)]
pub struct Server {
    /// Bound OTLP/gRPC address, if enabled.
    pub grpc_addr: Option<SocketAddr>,
    /// Bound OTLP/HTTP address, if enabled.
    pub http_addr: Option<SocketAddr>,
    /// Bound admin address (`/healthz`, `/readyz`, `/metrics`), if separate.
    pub admin_addr: Option<SocketAddr>,
    /// This collector's id.
    pub collector_id: String,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    ingest: Arc<Ingest>,
    drain_timeout: Duration,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Asks each reloader (TLS files, tokens file) for a reload.
    reloads: Vec<Arc<Notify>>,
}

fn log_failure<E: std::fmt::Display>(what: &str, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "{what} server failed");
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Shows an optional address as the listening line and logs do.
pub fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
}

/// The gRPC server's settings for slow and idle clients. HTTP/2 has no
/// header read timeout: a connection must send the client preface within
/// `header_read_timeout` (see [`conns`]); after that, PINGs find dead
/// peers, `request_timeout` bounds each call once its headers are in, and
/// the connection cap bounds the rest.
fn grpc_server(request_timeout: Duration) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .timeout(request_timeout)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(GRPC_MAX_STREAMS)
}

/// Capped connections of a gRPC listener, each with its preface deadline
/// and Nagle off (see [`http::admit`]).
fn admitted<IO: http::Peer>(
    incoming: impl tokio_stream::Stream<Item = std::io::Result<IO>>,
    limit: ConnLimit,
    header_read_timeout: Duration,
) -> impl tokio_stream::Stream<Item = std::io::Result<conns::Admitted<IO>>> {
    use tokio_stream::StreamExt;
    let first_bytes = Some((HTTP2_PREFACE_BYTES, header_read_timeout));
    incoming.filter_map(move |accepted| match accepted {
        Ok(io) => http::admit(&limit, io, first_bytes).map(Ok),
        Err(e) => Some(Err(e)),
    })
}

impl Server {
    /// Recovers the store, binds the listeners and starts serving.
    pub async fn start(cfg: Config) -> Result<Server, ServeError> {
        let collector_id = cfg.resolve_collector_id()?;
        let metrics = Arc::new(Metrics::default());
        // Read before the store starts, so bad settings stop nothing half-way.
        let tokens = cfg.auth.load(metrics.clone())?;
        let tls = cfg.tls.load()?;
        let consent = cfg
            .consent
            .load(metrics.clone())
            .map_err(|e| ConfigError::Invalid(format!("consent: {e}")))?;
        if tokens.is_none() && cfg.tls.client_ca_file.is_none() {
            tracing::warn!(
                "neither client tokens nor client certificates required: any client that reaches the OTLP ports can write"
            );
        }
        let ingest_cfg = cfg.ingest(&collector_id)?;
        let health = Arc::new(Health::new(
            metrics.clone(),
            ingest_cfg.queue_depth,
            ingest_cfg.max_buffered_rows,
        ));
        health.set_witness_grace(cfg.store.witness_grace_secs);
        let (stop, stopped) = watch::channel(false);
        let header_read_timeout = Duration::from_secs(cfg.header_read_timeout_secs);
        let mut tasks = Vec::new();
        // The admin listener comes up before recovery, so that a probe sees
        // "alive, not ready" while a large WAL is replayed.
        let mut admin_addr = None;
        if let Some(addr) = cfg.admin_listen {
            let listener = bind(addr).await?;
            admin_addr = listener.local_addr().ok();
            tracing::info!(addr = %show(admin_addr), "admin listener (healthz, readyz, metrics) bound");
            // Plain HTTP: keep it on loopback or a pod-internal port.
            let limits = HttpLimits {
                header_read_timeout,
                // Not in the metrics, which are of the OTLP listeners.
                connections: ConnLimit::new(ADMIN_MAX_CONNECTIONS, None),
            };
            tasks.push(tokio::spawn(http::serve(
                listener,
                crate::admin::router(health.clone()),
                limits,
                metrics.clone(),
                stopped.clone(),
            )));
        }
        let m = metrics.clone();
        let recovered = tokio::task::spawn_blocking(move || Ingest::start(ingest_cfg, m))
            .await
            .map_err(|e| IngestError::Storage(format!("recovery panicked: {e}")));
        let ingest = match recovered {
            Ok(Ok(ingest)) => ingest,
            Ok(Err(e)) | Err(e) => {
                let _ = stop.send(true);
                for t in &tasks {
                    t.abort();
                }
                return Err(e.into());
            }
        };
        let ingest = Arc::new(ingest);
        let reloader = tls.map(|l| crate::tls::reloader(cfg.tls.clone(), l, metrics.clone()));
        let (grpc_tls, http_tls) = match &reloader {
            Some(r) => (Some(r.source().grpc.clone()), Some(r.source().http.clone())),
            None => (None, None),
        };
        let (tokens, tokens_reloader) = match tokens {
            Some(t) => (Some(t.live), t.reloader),
            None => (None, None),
        };
        let receiver = Arc::new(Receiver {
            ingest: ingest.clone(),
            rules: cfg.rules.clone(),
            metrics: metrics.clone(),
            tokens,
            consent: consent.as_ref().map(|(check, _)| check.clone()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight_requests)),
        });
        let request_timeout = Duration::from_secs(cfg.request_timeout_secs);
        // One cap for both OTLP listeners, as for requests in flight.
        let connections = ConnLimit::new(cfg.max_connections, Some(metrics.clone()));
        let mut grpc_addr = None;
        if let Some(addr) = cfg.otlp_grpc {
            let listener = bind(addr).await?;
            grpc_addr = listener.local_addr().ok();
            let svc = GrpcLogs(receiver.clone()).into_service(cfg.max_request_bytes);
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let server = grpc_server(request_timeout).add_service(svc);
            let limit = connections.clone();
            tasks.push(match grpc_tls.clone() {
                None => {
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                    let incoming = admitted(incoming, limit, header_read_timeout);
                    tokio::spawn(async move {
                        let result = server.serve_with_incoming_shutdown(incoming, shutdown);
                        log_failure("gRPC", result.await);
                    })
                }
                Some(tls) => {
                    let incoming = TlsIncoming::new(listener, tls, metrics.clone())
                        .map_err(|source| ServeError::Bind { addr, source })?;
                    let incoming = admitted(incoming, limit, header_read_timeout);
                    tokio::spawn(async move {
                        let result = server.serve_with_incoming_shutdown(incoming, shutdown);
                        log_failure("gRPC", result.await);
                    })
                }
            });
        }
        let mut http_addr = None;
        if let Some(addr) = cfg.otlp_http {
            let listener = bind(addr).await?;
            http_addr = listener.local_addr().ok();
            let mut app = router(HttpState {
                receiver: receiver.clone(),
                max_request_bytes: cfg.max_request_bytes,
                body_timeout: request_timeout,
            });
            // Kept on the OTLP port unless they have a listener of their own
            // (then also behind this port's TLS and client certificates).
            if admin_addr.is_none() {
                app = app.merge(crate::admin::router(health.clone()));
            }
            let limits = HttpLimits {
                header_read_timeout,
                connections: connections.clone(),
            };
            let (m, stopped) = (metrics.clone(), stopped.clone());
            tasks.push(match http_tls.clone() {
                None => tokio::spawn(http::serve(listener, app, limits, m, stopped)),
                Some(tls) => {
                    let incoming = TlsIncoming::new(listener, tls, metrics.clone())
                        .map_err(|source| ServeError::Bind { addr, source })?;
                    tokio::spawn(http::serve(incoming, app, limits, m, stopped))
                }
            });
        }
        let mut reloads = Vec::new();
        if let Some(r) = reloader {
            let requested = Arc::new(Notify::new());
            tasks.push(tokio::spawn(r.run(requested.clone(), stopped.clone())));
            reloads.push(requested);
        }
        if let Some(r) = tokens_reloader {
            let requested = Arc::new(Notify::new());
            tasks.push(tokio::spawn(r.run(requested.clone(), stopped.clone())));
            reloads.push(requested);
        }
        if let Some((_, r)) = consent {
            let requested = Arc::new(Notify::new());
            tasks.push(tokio::spawn(r.run(requested.clone(), stopped.clone())));
            reloads.push(requested);
        }
        health.set_phase(Phase::Serving);
        tracing::info!(
            grpc = %show(grpc_addr),
            http = %show(http_addr),
            admin = %show(admin_addr),
            collector_id = %collector_id,
            "serving"
        );
        Ok(Server {
            grpc_addr,
            http_addr,
            admin_addr,
            collector_id,
            metrics,
            health,
            ingest,
            drain_timeout: Duration::from_secs(cfg.shutdown_timeout_secs),
            stop,
            tasks,
            reloads,
        })
    }

    /// Reads the TLS files and the tokens file again now (SIGHUP), whether
    /// or not they changed; each outcome is logged and counted. `false`
    /// when there is nothing to reload (TLS off, no tokens file).
    pub fn reload(&self) -> bool {
        for requested in &self.reloads {
            requested.notify_one();
        }
        !self.reloads.is_empty()
    }

    /// Stops accepting, waits for in-flight requests, seals everything.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.health.set_phase(Phase::Stopping);
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        let drain = async {
            for t in &mut tasks {
                let _ = t.await;
            }
        };
        // Idle HTTP/1 keep-alive connections close at once and HTTP/2 ones
        // on GOAWAY; what still runs past the timeout (a slow body, a call
        // not finished) is cut. A request cut mid-flight was never
        // acknowledged, so its client retries (and dedup absorbs it if it
        // did reach the WAL).
        if tokio::time::timeout(self.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?self.drain_timeout, "connections still open at shutdown; closing them");
            for t in &tasks {
                t.abort();
            }
        }
        let ingest = self.ingest;
        tokio::task::spawn_blocking(move || ingest.shutdown())
            .await
            .map_err(|e| IngestError::Storage(format!("shutdown panicked: {e}")))??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grpc_connections_have_nagle_off() {
        use tokio_stream::StreamExt;
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let incoming = admitted(incoming, ConnLimit::new(1, None), Duration::from_secs(5));
        tokio::pin!(incoming);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let io = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert!(io.get_ref().nodelay().expect("read option"));
    }
}
