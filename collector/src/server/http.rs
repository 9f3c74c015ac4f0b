//! The HTTP/1 listeners (OTLP/HTTP and admin), served by hyper directly:
//! `axum::serve` sets no header read timeout, so a client that opens a
//! connection and sends nothing, or trickles its request line and headers,
//! would hold the connection forever.
//!
//! Here every connection must send each request's complete head within
//! `header_read_timeout`, counted from when the server starts waiting for
//! it: right after the connection is accepted, and again after each
//! response on a keep-alive connection (so an idle keep-alive connection is
//! closed after the same time). Bodies are bounded by the receiver's own
//! `request_timeout_secs`. Connections past the [`ConnLimit`] are closed at
//! once. At shutdown no connection is accepted any more, requests in flight
//! finish, and idle keep-alive connections are closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tower_service::Service;

use super::conns::{Admitted, ConnLimit};
use crate::metrics::Metrics;
use crate::tls::TlsPeer;

/// What a handler may learn about the connection a request came on.
pub trait Peer {
    /// The TLS client, for `ConnectInfo<TlsPeer>`; `None` on plain TCP.
    fn tls_peer(&self) -> Option<TlsPeer>;
    /// The TCP connection underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Peer for TcpStream {
    fn tls_peer(&self) -> Option<TlsPeer> {
        None
    }
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Peer for TlsStream<TcpStream> {
    fn tls_peer(&self) -> Option<TlsPeer> {
        Some(TlsPeer::of(self))
    }
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// An accepted connection, with Nagle's algorithm off, taking a slot of
/// `limit` (see [`ConnLimit::admit`]). An answer is small and often
/// written in pieces (HTTP/2 headers, data and trailers); with Nagle on, a
/// piece waits for the peer's delayed ACK of the one before, which held
/// every gRPC answer back by milliseconds and halved the rate a client
/// with a few connections reached.
pub fn admit<IO: Peer>(
    limit: &ConnLimit,
    io: IO,
    first_bytes: Option<(usize, Duration)>,
) -> Option<Admitted<IO>> {
    if let Err(e) = io.tcp().set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    limit.admit(io, first_bytes)
}

/// How one HTTP listener treats its connections.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Time a client has to send a request's head (see the module docs).
    pub header_read_timeout: Duration,
    /// The cap on open connections.
    pub connections: ConnLimit,
}

/// Serves `app` on `listener` until `stopped` turns true, then drains.
pub async fn serve<L>(
    mut listener: L,
    app: axum::Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) where
    L: Listener<Addr = SocketAddr>,
    L::Io: Peer,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let io = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            (io, addr) = listener.accept() => (io, addr),
        };
        let (io, addr) = io;
        let Some(io) = admit(&limits.connections, io, None) else {
            continue;
        };
        let peer = io.get_ref().tls_peer();
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
            if let Some(peer) = &peer {
                req.extensions_mut().insert(ConnectInfo(peer.clone()));
            }
            // The TCP peer: the console trusts a proxy's header only from
            // the proxy's address.
            req.extensions_mut().insert(ConnectInfo(addr));
            // A `Router` is always ready: `call` needs no `poll_ready` first.
            let mut app = app.clone();
            async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {})) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    Metrics::add(&metrics.header_read_timeouts_total, 1);
                }
                tracing::debug!(error = %e, "HTTP connection closed");
            }
        });
    }
    // Stop accepting before draining: new clients are refused by the
    // kernel rather than left waiting in the backlog.
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (io, _) = listener.accept().await.expect("accept");
        assert!(!io.nodelay().expect("read option"), "the kernel's default");
        let admitted = admit(&ConnLimit::new(1, None), io, None).expect("a free slot");
        assert!(admitted.get_ref().nodelay().expect("read option"));
    }
}
