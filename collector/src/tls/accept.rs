//! The TLS accept loop: handshakes in their own tasks, bounded in number
//! and in time; finished streams go to tonic (a `Stream`) and to the HTTP
//! loop (an axum `Listener`). Each handshake takes the listener's
//! configuration as it is at that moment ([`LiveConfig`]), so a reload
//! applies to the next connection while open ones keep their session.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::reload::LiveConfig;
use crate::metrics::Metrics;

/// A client that has not finished its handshake after this long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once per listener; further connections wait
/// in the kernel's backlog, so half-open clients cannot grow memory.
const MAX_HANDSHAKES: usize = 256;

/// Connections of a TLS listener whose handshake succeeded; a `Stream` for
/// tonic and an axum `Listener`. Dropping it stops accepting.
#[derive(Debug)]
pub struct TlsIncoming {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsIncoming {
    /// Accepts on `listener`, running each handshake in its own task.
    pub fn new(
        listener: TcpListener,
        config: LiveConfig,
        metrics: Arc<Metrics>,
    ) -> io::Result<TlsIncoming> {
        let local_addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept_loop(listener, config, tx, metrics));
        Ok(TlsIncoming {
            accepted,
            local_addr,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: LiveConfig,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    metrics: Arc<Metrics>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // The listening socket closes when the server drops its end.
        let permit = tokio::select! {
            _ = tx.closed() => return,
            p = handshakes.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = TlsAcceptor::from(config.current());
        let (tx, metrics) = (tx.clone(), metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("not finished within {HANDSHAKE_TIMEOUT:?}"),
            };
            Metrics::add(&metrics.tls_handshake_failures_total, 1);
            tracing::info!(%peer, error = %why, "TLS handshake refused");
        });
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.accepted
            .poll_recv(cx)
            .map(|next| next.map(|(tls, _)| Ok(tls)))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept loop only ends once this end is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}
