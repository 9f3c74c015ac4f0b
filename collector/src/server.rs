//! `serve`: wires the store and the receivers, and shuts them down in the
//! order that keeps every acknowledged record: stop accepting, let
//! in-flight requests finish, seal, exit.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::health::{Health, Phase};
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
    /// Bound admin address (`/healthz`, `/readyz`, `/metrics`), if separate.
    pub admin_addr: Option<SocketAddr>,
    /// This collector's id.
    pub collector_id: String,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    ingest: Arc<Ingest>,
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

/// Shows an optional address as the listening line and logs do.
pub fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
}

/// The admin listener: plain HTTP (keep it on loopback or a pod-internal port).
fn serve_admin(
    listener: TcpListener,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let result = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        log_failure("admin HTTP", result.await);
    })
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
        let health = Arc::new(Health::new(
            metrics.clone(),
            ingest_cfg.queue_depth,
            ingest_cfg.max_buffered_rows,
        ));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        // The admin listener comes up before recovery, so that a probe sees
        // "alive, not ready" while a large WAL is replayed.
        let mut admin_addr = None;
        if let Some(addr) = cfg.admin_listen {
            let listener = bind(addr).await?;
            admin_addr = listener.local_addr().ok();
            tracing::info!(addr = %show(admin_addr), "admin listener (healthz, readyz, metrics) bound");
            tasks.push(serve_admin(
                listener,
                crate::admin::router(health.clone()),
                stopped.clone(),
            ));
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
        let receiver = Arc::new(Receiver {
            ingest: ingest.clone(),
            rules: cfg.rules.clone(),
            metrics: metrics.clone(),
            tokens,
            in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight_requests)),
        });
        let request_timeout = std::time::Duration::from_secs(cfg.request_timeout_secs);
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
            drain_timeout: std::time::Duration::from_secs(cfg.shutdown_timeout_secs),
            stop,
            tasks,
        })
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
