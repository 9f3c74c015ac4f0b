//! Open connections, capped: each accepted connection takes a slot of the
//! listener's [`ConnLimit`] for as long as it is open; past the cap a new
//! connection is closed at once (and counted), before a byte is read, so
//! a flood of idle or slow connections cannot take the process's file
//! descriptors or memory.
//!
//! On the gRPC listener the slot also carries a deadline for the HTTP/2
//! client preface: hyper's HTTP/2 server waits for it without a timeout,
//! so a client that connects and sends nothing (or trickles it) would hold
//! its slot forever. The HTTP/1 listener has hyper's own header read
//! timeout instead (see [`super::http`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what every HTTP/2 client sends first.
pub const HTTP2_PREFACE_BYTES: usize = 24;

/// The cap on one listener's (or several listeners') open connections.
#[derive(Clone, Debug)]
pub struct ConnLimit {
    slots: Arc<Semaphore>,
    /// Where open and refused connections are counted, if anywhere.
    metrics: Option<Arc<Metrics>>,
}

impl ConnLimit {
    /// At most `max` connections open at once.
    pub fn new(max: usize, metrics: Option<Arc<Metrics>>) -> ConnLimit {
        ConnLimit {
            slots: Arc::new(Semaphore::new(max)),
            metrics,
        }
    }

    /// `io` with a slot, or `None` (and `io` closed, by being dropped) when
    /// every slot is taken. `first_bytes`: (how many, within how long) the
    /// peer must send before its reads fail with `TimedOut`.
    pub fn admit<IO>(
        &self,
        io: IO,
        first_bytes: Option<(usize, Duration)>,
    ) -> Option<Admitted<IO>> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                if let Some(m) = &self.metrics {
                    Metrics::add(&m.connections_open, 1);
                }
                Some(Admitted {
                    io,
                    _slot: slot,
                    first_bytes: first_bytes.map(|(n, within)| FirstBytes {
                        missing: n,
                        deadline: Box::pin(tokio::time::sleep(within)),
                    }),
                    metrics: self.metrics.clone(),
                })
            }
            Err(_) => {
                if let Some(m) = &self.metrics {
                    Metrics::add(&m.connections_refused_total, 1);
                }
                tracing::debug!("connection closed at once: max_connections are open");
                None
            }
        }
    }
}

#[derive(Debug)]
struct FirstBytes {
    missing: usize,
    deadline: Pin<Box<Sleep>>,
}

/// An admitted connection: holds its slot until dropped.
#[derive(Debug)]
pub struct Admitted<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
    first_bytes: Option<FirstBytes>,
    metrics: Option<Arc<Metrics>>,
}

impl<IO> Admitted<IO> {
    /// The connection itself.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO> Drop for Admitted<IO> {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            Metrics::sub(&m.connections_open, 1);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Admitted<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut me.io).poll_read(cx, buf);
        let Some(first) = &mut me.first_bytes else {
            return polled;
        };
        if let Poll::Ready(Ok(())) = polled {
            first.missing = first.missing.saturating_sub(buf.filled().len() - before);
            if first.missing == 0 {
                me.first_bytes = None;
            }
            return polled;
        }
        // Pending (or failed): the deadline's waker is registered too, so
        // a silent peer is woken up for, and cut, when it passes.
        if polled.is_pending() && first.deadline.as_mut().poll(cx).is_ready() {
            if let Some(m) = &me.metrics {
                Metrics::add(&m.header_read_timeouts_total, 1);
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not send its first bytes in time",
            )));
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Admitted<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// gRPC handlers read the TLS client certificate through this.
impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Admitted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limit(max: usize) -> (ConnLimit, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (ConnLimit::new(max, Some(metrics.clone())), metrics)
    }

    fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
        a.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn past_the_cap_connections_are_refused_until_one_closes() {
        let (limit, metrics) = limit(2);
        let a = limit.admit((), None).expect("first");
        let _b = limit.admit((), None).expect("second");
        assert!(limit.admit((), None).is_none());
        assert_eq!(load(&metrics.connections_refused_total), 1);
        assert_eq!(load(&metrics.connections_open), 2);
        drop(a);
        assert_eq!(load(&metrics.connections_open), 1);
        assert!(limit.admit((), None).is_some(), "a slot was freed");
    }

    #[tokio::test]
    async fn first_bytes_must_all_arrive_before_the_deadline() {
        let within = Duration::from_millis(200);
        let (limit, metrics) = limit(4);
        // Trickled: 3 of 4 bytes in time, then silence past the deadline.
        let (client, server) = tokio::io::duplex(64);
        let mut server = limit.admit(server, Some((4, within))).expect("admitted");
        let mut client = client;
        client.write_all(b"PRI").await.expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).await.expect("read"), 3);
        let err = server
            .read(&mut buf)
            .await
            .expect_err("cut at the deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(load(&metrics.header_read_timeouts_total), 1);

        // All of them in time: no deadline afterwards.
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = limit.admit(server, Some((4, within))).expect("admitted");
        client.write_all(b"PRI ").await.expect("write");
        assert_eq!(server.read(&mut buf).await.expect("read"), 4);
        tokio::time::sleep(within * 2).await;
        client.write_all(b"x").await.expect("write");
        assert_eq!(server.read(&mut buf).await.expect("read after"), 1);
    }
}
