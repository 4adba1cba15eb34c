//! Bounds on HTTP connections, which hyper leaves unset when axum serves: a client must send
//! its first request's header section within [`HEADER_TIMEOUT`] (slowloris and idle sockets
//! hold nothing for long), a connection that sends nothing for [`IDLE_TIMEOUT`] is closed (join
//! pages answer the server's pings every 15 s), one address holds at most [`PER_SOURCE`]
//! connections (trusted proxies, which carry everyone, are exempt), and all together at most
//! [`TOTAL`]: past that a new connection is closed at once, keeping descriptors for SIP and
//! media.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, Instant, Sleep};

use crate::limits::{SourceSlot, SourceSlots};

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const PER_SOURCE: usize = 64;
pub const TOTAL: usize = 4096;

/// A listener whose connections carry [`Deadlines`] and a per-source slot.
pub struct WithDeadlines<L> {
    inner: L,
    slots: Arc<SourceSlots>,
    total: Arc<Semaphore>,
    exempt: Vec<IpAddr>,
}

impl<L> WithDeadlines<L> {
    pub fn new(inner: L, exempt: Vec<IpAddr>) -> WithDeadlines<L> {
        WithDeadlines::with_limits(inner, exempt, PER_SOURCE, TOTAL)
    }

    fn with_limits(inner: L, exempt: Vec<IpAddr>, per_source: usize, total: usize) -> WithDeadlines<L> {
        let total = Arc::new(Semaphore::new(total));
        WithDeadlines { inner, slots: SourceSlots::new(per_source), total, exempt }
    }
}

impl<L: Listener<Addr = SocketAddr>> Listener for WithDeadlines<L> {
    type Io = Deadlines<L::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = self.inner.accept().await;
            // Dropping the stream closes it.
            let Ok(permit) = self.total.clone().try_acquire_owned() else {
                tracing::debug!(%addr, "HTTP connections at their limit: closed");
                continue;
            };
            let slot = if self.exempt.contains(&addr.ip()) {
                None
            } else {
                match self.slots.try_take(addr.ip()) {
                    Some(slot) => Some(slot),
                    None => continue,
                }
            };
            return (Deadlines::new(io, slot, permit), addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A stream whose reads fail with `TimedOut` past its deadline.
pub struct Deadlines<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
    /// Until the first header section ends: the last bytes seen, to find `\r\n\r\n` across
    /// reads, and whether anything but line ends came yet (blank lines do not end a head).
    head: Option<([u8; 3], bool)>,
    /// Given back when the connection closes.
    _slot: Option<SourceSlot>,
    _permit: OwnedSemaphorePermit,
}

impl<S> Deadlines<S> {
    fn new(inner: S, slot: Option<SourceSlot>, permit: OwnedSemaphorePermit) -> Deadlines<S> {
        Deadlines {
            inner,
            deadline: Box::pin(sleep(HEADER_TIMEOUT)),
            head: Some(([0; 3], false)),
            _slot: slot,
            _permit: permit,
        }
    }
}

/// Whether `tail` (the three bytes before) and `new` hold `\r\n\r\n`; updates `tail`.
fn ends_head(tail: &mut [u8; 3], new: &[u8]) -> bool {
    let mut window = Vec::with_capacity(3 + new.len());
    window.extend_from_slice(tail);
    window.extend_from_slice(new);
    let found = window.windows(4).any(|w| w == b"\r\n\r\n");
    tail.copy_from_slice(&window[window.len() - 3..]);
    found
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                let new = &buf.filled()[before..];
                if let Some((tail, begun)) = &mut this.head {
                    *begun |= new.iter().any(|b| !matches!(b, b'\r' | b'\n'));
                    if ends_head(tail, new) && *begun {
                        this.head = None;
                    }
                }
                // Any bytes keep a connection alive, but only a whole header section ends the
                // header deadline.
                if this.head.is_none() && !new.is_empty() {
                    this.deadline.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(self.deadline.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "HTTP client too slow or idle")))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Whether the server closed `stream` (a read sees the end) rather than keeping it.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }

    /// Opens three connections to a listener with these limits: which of them it keeps.
    async fn kept_of_three(per_source: usize, total: usize) -> Vec<bool> {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = WithDeadlines::with_limits(tcp, Vec::new(), per_source, total);
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(listener.accept().await.0);
            }
        });
        let mut kept = Vec::new();
        let mut streams = Vec::new();
        for _ in 0..3 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            kept.push(!closed(&mut stream).await);
            streams.push(stream);
        }
        accepted.abort();
        kept
    }

    #[tokio::test]
    async fn connections_past_the_per_source_or_the_total_limit_are_closed() {
        assert_eq!(kept_of_three(2, 10).await, [true, true, false]);
        assert_eq!(kept_of_three(10, 2).await, [true, true, false]);
        assert_eq!(kept_of_three(10, 10).await, [true, true, true]);
    }

    #[test]
    fn the_end_of_a_header_section_is_found_across_reads() {
        let mut tail = [0u8; 3];
        assert!(!ends_head(&mut tail, b"GET / HTTP/1.1\r\nHost: x\r\n\r"));
        assert!(ends_head(&mut tail, b"\n"));
        let mut tail = [0u8; 3];
        assert!(!ends_head(&mut tail, b"\r"));
        assert!(!ends_head(&mut tail, b"\n"));
        assert!(!ends_head(&mut tail, b"\r"));
        assert!(ends_head(&mut tail, b"\nbody"));
        let mut tail = [0u8; 3];
        assert!(!ends_head(&mut tail, b""));
        assert!(!ends_head(&mut tail, b"\r\n\r"));
    }
}
