//! `serve`: wires the store and the receivers, and shuts them down in the
//! order that keeps every acknowledged record: stop accepting, let
//! in-flight requests finish, seal, exit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::ingest::{Ingest, IngestError};
use crate::metrics::Metrics;
use crate::receive::grpc::GrpcLogs;
use crate::receive::http::{router, HttpState};
use crate::receive::Receiver;
use crate::tls::{self, TlsError, TlsIncoming, TlsPeer};

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
    /// This collector's id.
    pub collector_id: String,
    /// Counters.
    pub metrics: Arc<Metrics>,
    ingest: Arc<Ingest>,
    ready: Arc<AtomicBool>,
    drain_timeout: std::time::Duration,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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

impl Server {
    /// Recovers the store, binds the listeners and starts serving.
    pub async fn start(cfg: Config) -> Result<Server, ServeError> {
        let collector_id = cfg.resolve_collector_id()?;
        let tokens = cfg.auth.load()?;
        // Read before the store starts, so bad TLS settings stop nothing half-way.
        let grpc_tls = cfg.tls.server_config(tls::ALPN_GRPC)?;
        let http_tls = cfg.tls.server_config(tls::ALPN_HTTP)?;
        if tokens.is_none() && cfg.tls.client_ca_file.is_none() {
            tracing::warn!(
                "neither client tokens nor client certificates required: any client that reaches the OTLP ports can write"
            );
        }
        let ingest_cfg = cfg.ingest(&collector_id)?;
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        let ingest = tokio::task::spawn_blocking(move || Ingest::start(ingest_cfg, m))
            .await
            .map_err(|e| IngestError::Storage(format!("recovery panicked: {e}")))??;
        let ingest = Arc::new(ingest);
        let receiver = Arc::new(Receiver {
            ingest: ingest.clone(),
            rules: cfg.rules.clone(),
            metrics: metrics.clone(),
            tokens,
            in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight_requests)),
        });
        let request_timeout = std::time::Duration::from_secs(cfg.request_timeout_secs);
        let ready = Arc::new(AtomicBool::new(true));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut grpc_addr = None;
        if let Some(addr) = cfg.otlp_grpc {
            let listener = bind(addr).await?;
            grpc_addr = listener.local_addr().ok();
            let svc = GrpcLogs(receiver.clone()).into_service(cfg.max_request_bytes);
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let server = tonic::transport::Server::builder()
                .timeout(request_timeout)
                .add_service(svc);
            tasks.push(match grpc_tls.clone() {
                None => {
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                    tokio::spawn(async move {
                        let result = server.serve_with_incoming_shutdown(incoming, shutdown);
                        log_failure("gRPC", result.await);
                    })
                }
                Some(tls) => {
                    let incoming = TlsIncoming::new(listener, tls, metrics.clone())
                        .map_err(|source| ServeError::Bind { addr, source })?;
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
            let app = router(HttpState {
                receiver: receiver.clone(),
                ready: ready.clone(),
                max_request_bytes: cfg.max_request_bytes,
                body_timeout: request_timeout,
            });
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tasks.push(match http_tls.clone() {
                None => tokio::spawn(async move {
                    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown);
                    log_failure("HTTP", result.await);
                }),
                Some(tls) => {
                    let incoming = TlsIncoming::new(listener, tls, metrics.clone())
                        .map_err(|source| ServeError::Bind { addr, source })?;
                    // The handlers read the client certificate's name from it.
                    let app = app.into_make_service_with_connect_info::<TlsPeer>();
                    tokio::spawn(async move {
                        let result = axum::serve(incoming, app).with_graceful_shutdown(shutdown);
                        log_failure("HTTP", result.await);
                    })
                }
            });
        }
        Ok(Server {
            grpc_addr,
            http_addr,
            collector_id,
            metrics,
            ingest,
            ready,
            drain_timeout: std::time::Duration::from_secs(cfg.shutdown_timeout_secs),
            stop,
            tasks,
        })
    }

    /// Stops accepting, waits for in-flight requests, seals everything.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        let drain = async {
            for t in &mut tasks {
                let _ = t.await;
            }
        };
        // Idle keep-alive connections would hold a graceful drain open
        // forever; past the timeout they are cut. A request cut mid-flight
        // was never acknowledged, so its client retries (and dedup absorbs
        // it if it did reach the WAL).
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
