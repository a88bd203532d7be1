//! A TCP listener whose connections a handler can drop without answering.
//!
//! [`Behaviour::Close`](super::Behaviour::Close) must look to the sender like a receiver
//! that went away mid-request: the request was sent, no response comes back, the
//! connection ends. An axum handler cannot do that by itself (whatever it returns is
//! written), so every accepted connection carries a [`Conn`] the handler reaches through
//! `ConnectInfo`; [`Conn::close`] makes the connection's writes fail, so hyper drops the
//! connection instead of writing the response.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections that can be closed from a handler.
pub(crate) struct ClosableListener(pub(crate) TcpListener);

/// One accepted connection, as a handler sees it (`ConnectInfo<Conn>`).
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    closed: Arc<AtomicBool>,
}

impl Conn {
    /// Makes the connection fail its next write: the response is not sent and the
    /// connection is dropped.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that fails once its [`Conn`] was closed.
pub(crate) struct ClosableStream {
    inner: TcpStream,
    closed: Arc<AtomicBool>,
}

impl ClosableStream {
    fn check(&self) -> io::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the test receiver closes this connection without answering",
            ))
        } else {
            Ok(())
        }
    }
}

impl Listener for ClosableListener {
    type Io = ClosableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, _)) => {
                    let closed = Arc::new(AtomicBool::new(false));
                    let conn = Conn {
                        closed: closed.clone(),
                    };
                    return (ClosableStream { inner, closed }, conn);
                }
                // Out of file descriptors and the like: wait a little, as axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        // Only `Serve::local_addr` calls this; the receiver asks the TcpListener itself.
        Err(io::Error::other(
            "a closable listener has no address of type Conn; ask its TcpListener",
        ))
    }
}

impl Connected<IncomingStream<'_, ClosableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, ClosableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl ClosableListener {
    pub(crate) fn addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl AsyncRead for ClosableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
