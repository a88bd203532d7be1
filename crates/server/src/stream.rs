//! Streamed response bodies: bytes produced on a blocking thread, sent as they are ready.
//!
//! Exports format events (and Parquet compresses them) on tokio's blocking pool, never on the
//! threads that serve requests: a producer writes into a [`ChannelWriter`] (`std::io::Write`,
//! which blocks while the client is slower than the producer) and the response body is the
//! receiving end ([`ChannelBody`]). The channel is bounded, so memory stays flat however large
//! the export. When the client goes away the body is dropped, the next write fails with
//! `BrokenPipe`, and the producer stops.
//!
//! The response is complete only when the producer says so ([`ChannelWriter::finish`]). A
//! producer that fails midway ([`ChannelWriter::fail`]), returns without finishing, or panics
//! ends the body with an error: the connection is then closed without the final chunk of the
//! chunked encoding, so the client sees an incomplete response (curl: exit 18, "transfer closed
//! with outstanding read data") rather than a short file that looks whole.
//!
//! A client that stops reading cannot hold the producer: a chunk that the client has not taken
//! within [`STALL`] fails the send, the producer stops (and with it the store's snapshot
//! reader), and the accept loop closes a connection whose writes stay blocked.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks in flight between a producer and the client.
const DEPTH: usize = 4;
/// A write is sent on once this many bytes are buffered.
const CHUNK: usize = 256 * 1024;
/// How long a producer waits for a client that does not take the next chunk.
pub const STALL: Duration = Duration::from_secs(60);

/// Receives what a [`ChannelWriter`] sends; the response body.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    complete: Arc<AtomicBool>,
}

/// A `std::io::Write` for a blocking thread, feeding a [`ChannelBody`].
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
    complete: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
    stall: Duration,
}

/// A connected writer and body. Call from within the runtime (the writer blocks on it).
pub fn channel() -> (ChannelWriter, ChannelBody) {
    channel_with_stall(STALL)
}

fn channel_with_stall(stall: Duration) -> (ChannelWriter, ChannelBody) {
    let (tx, rx) = mpsc::channel(DEPTH);
    let complete = Arc::new(AtomicBool::new(false));
    (
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            complete: complete.clone(),
            rt: tokio::runtime::Handle::current(),
            stall,
        },
        ChannelBody { rx, complete },
    )
}

impl ChannelWriter {
    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        let (tx, stall) = (&self.tx, self.stall);
        match self
            .rt
            .block_on(async { tokio::time::timeout(stall, tx.send(Ok(chunk))).await })
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took nothing for {} s; the response is abandoned",
                    stall.as_secs()
                ),
            )),
        }
    }

    /// Sends what is buffered and marks the response complete: only now does the body end
    /// normally.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_buf()?;
        self.complete.store(true, Ordering::Release);
        Ok(())
    }

    /// Sends `bytes` as one chunk (after anything buffered).
    pub fn send_bytes(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.flush_buf()?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.send(Bytes::from(bytes))
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.send(Bytes::from(chunk))
    }

    /// Ends the response with an error: the client sees an incomplete body.
    pub fn fail(self, why: String) {
        tracing::warn!(error = %why, "a streamed response failed midway; closing it unfinished");
        // Dropping the writer without `finish` is what fails the body.
    }

    /// Whether the client is gone (nothing more needs to be produced).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            ));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(http_body::Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            // The producer is gone: a complete response ends, any other is cut off.
            Poll::Ready(None) if self.complete.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::other(
                "the response was not completed",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    #[tokio::test]
    async fn bytes_arrive_in_order_and_the_body_ends() {
        let (mut w, body) = channel();
        let producer = tokio::task::spawn_blocking(move || {
            for i in 0..1000u32 {
                w.write_all(format!("{i}\n").as_bytes())?;
            }
            w.send_bytes(b"end\n".to_vec())?;
            w.finish()
        });
        let got = body.collect().await.expect("body").to_bytes();
        producer.await.expect("join").expect("write");
        let text = String::from_utf8(got.to_vec()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1001);
        assert_eq!(lines[999], "999");
        assert_eq!(lines[1000], "end");
    }

    #[tokio::test]
    async fn a_dropped_body_stops_the_producer() {
        let (mut w, body) = channel();
        drop(body);
        let r = tokio::task::spawn_blocking(move || {
            let big = vec![b'x'; CHUNK];
            let mut n = 0;
            loop {
                if w.write_all(&big).is_err() {
                    return n;
                }
                n += 1;
                assert!(n < 10_000, "the producer never noticed the client left");
            }
        })
        .await
        .expect("join");
        assert!(r < 2, "wrote {r} chunks into a closed body");
    }

    #[tokio::test]
    async fn a_producer_that_returns_without_finishing_cuts_the_body_off() {
        let (mut w, body) = channel();
        tokio::task::spawn_blocking(move || {
            w.write_all(b"partial").expect("write");
            w.flush().expect("flush");
            // dropped here without finish()
        });
        assert!(body.collect().await.is_err());
    }

    #[tokio::test]
    async fn a_client_that_takes_nothing_stalls_the_producer_only_briefly() {
        let (mut w, body) = channel_with_stall(Duration::from_millis(200));
        let r = tokio::task::spawn_blocking(move || {
            let big = vec![b'x'; CHUNK];
            for _ in 0..100 {
                if let Err(e) = w.write_all(&big) {
                    return Some(e.kind());
                }
            }
            None
        })
        .await
        .expect("join");
        assert_eq!(r, Some(io::ErrorKind::TimedOut));
        drop(body);
    }

    #[tokio::test]
    async fn a_failure_ends_the_body_with_an_error() {
        let (mut w, body) = channel();
        tokio::task::spawn_blocking(move || {
            w.send_bytes(b"partial".to_vec()).expect("send");
            w.fail("boom".into());
        });
        assert!(body.collect().await.is_err());
    }
}
