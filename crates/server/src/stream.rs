//! Streamed response bodies: bytes produced on a blocking thread, sent as they are ready.
//!
//! Exports format events (and Parquet compresses them) on tokio's blocking pool, never on the
//! threads that serve requests: a producer writes into a [`ChannelWriter`] (`std::io::Write`,
//! which blocks while the client is slower than the producer) and the response body is the
//! receiving end ([`ChannelBody`]). The channel is bounded, so memory stays flat however large
//! the export. When the client goes away the body is dropped, the next write fails with
//! `BrokenPipe`, and the producer stops.
//!
//! A producer that fails midway sends an error: the connection is then closed without the
//! final chunk of the chunked encoding, so the client sees an incomplete response (curl: exit
//! 18, "transfer closed with outstanding read data") rather than a short file that looks whole.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Chunks in flight between a producer and the client.
const DEPTH: usize = 4;
/// A write is sent on once this many bytes are buffered.
const CHUNK: usize = 256 * 1024;

/// Receives what a [`ChannelWriter`] sends; the response body.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

/// A `std::io::Write` for a blocking thread, feeding a [`ChannelBody`].
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

/// A connected writer and body.
pub fn channel() -> (ChannelWriter, ChannelBody) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        ChannelBody { rx },
    )
}

impl ChannelWriter {
    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
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
        let _ = self.tx.blocking_send(Err(io::Error::other(why)));
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

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        // What is left is sent (a producer that returned normally has flushed already).
        if !self.buf.is_empty() && !self.tx.is_closed() {
            let chunk = std::mem::take(&mut self.buf);
            let _ = self.tx.blocking_send(Ok(Bytes::from(chunk)));
        }
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
            Poll::Ready(None) => Poll::Ready(None),
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
            w.flush()
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
    async fn a_failure_ends_the_body_with_an_error() {
        let (mut w, body) = channel();
        tokio::task::spawn_blocking(move || {
            w.send_bytes(b"partial".to_vec()).expect("send");
            w.fail("boom".into());
        });
        assert!(body.collect().await.is_err());
    }
}
