//! The dial side's stream: a tunnel TCP flow as `AsyncRead + AsyncWrite` that talks to
//! the node task itself. A pipe and a bridging task between the caller and the node cost
//! one copy and one task wake-up each way, which is much of what a small proxied request
//! costs the hub; here a write is a chunk for the node and a read takes the node's chunk
//! in place.
//!
//! Flow control is the bridge's: one chunk is in flight until the node gives credit, and
//! a chunk read whole after the node stalled tells it (`Resume`) it may queue more.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::{CancellationToken, PollSender};

use super::command::{CHUNK, Chunk, Command, Stall};
use crate::flow::FlowId;

/// A TCP connection through the tunnel, from [`super::Netstack::connect_tcp`].
///
/// Dropping it closes the flow as dropping a socket does: with a FIN when nothing it was
/// sent is left unread, else with a reset.
pub struct FlowStream {
    flow: FlowId,
    /// Data and EOF to the node.
    writes: PollSender<Command>,
    /// Where written chunks are copied, one allocation reused.
    out: BytesMut,
    /// The last chunk written is not taken yet; the next write waits for the credit.
    unacked: bool,
    credit: Arc<Notify>,
    waiting: Option<Pin<Box<OwnedNotified>>>,
    stall: Stall,
    shut: bool,
    from_node: mpsc::Receiver<Chunk>,
    /// What is left of the chunk being read.
    reading: Bytes,
    read_done: bool,
    /// A separate sender, so a reader and a writer on two tasks each keep their waker.
    resumes: PollSender<Command>,
    resume_owed: bool,
    /// Cancelled when the flow is reset or the node stops.
    cancel: CancellationToken,
}

impl std::fmt::Debug for FlowStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStream")
            .field("flow", &self.flow)
            .field("shut", &self.shut)
            .field("read_done", &self.read_done)
            .finish_non_exhaustive()
    }
}

impl FlowStream {
    pub(super) fn new(
        flow: FlowId,
        commands: &mpsc::Sender<Command>,
        from_node: mpsc::Receiver<Chunk>,
        credit: Arc<Notify>,
        stall: Stall,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            flow,
            writes: PollSender::new(commands.clone()),
            out: BytesMut::new(),
            unacked: false,
            credit,
            waiting: None,
            stall,
            shut: false,
            from_node,
            reading: Bytes::new(),
            read_done: false,
            resumes: PollSender::new(commands.clone()),
            resume_owed: false,
            cancel,
        }
    }

    /// Ready once the node took the last chunk written (it gives credit when it has, and
    /// when it resets the flow). As with a socket, a write after a reset may be taken; the
    /// one after it fails.
    fn poll_credit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unacked {
            let credit = &self.credit;
            let waiting = self
                .waiting
                .get_or_insert_with(|| Box::pin(credit.clone().notified_owned()));
            ready!(waiting.as_mut().poll(cx));
            self.waiting = None;
            self.unacked = false;
            if self.cancel.is_cancelled() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends `command` once the channel has room.
    fn poll_send(&mut self, cx: &mut Context<'_>, command: Command) -> Poll<io::Result<()>> {
        ready!(self.writes.poll_reserve(cx)).map_err(|_| stopped())?;
        self.writes.send_item(command).map_err(|_| stopped())?;
        Poll::Ready(Ok(()))
    }

    /// Tells the node a chunk was read whole, when the channel has room; else the waker
    /// is kept and the next read tries again.
    fn poll_resume(&mut self, cx: &mut Context<'_>) {
        if self.resume_owed
            && let Poll::Ready(Ok(())) = self.resumes.poll_reserve(cx)
        {
            self.resume_owed = false;
            let _ = self.resumes.send_item(Command::Resume(self.flow));
        }
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the tunnel stopped")
}

impl AsyncRead for FlowStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poll_resume(cx);
        loop {
            if !this.reading.is_empty() {
                let len = this.reading.len().min(buf.remaining());
                buf.put_slice(&this.reading[..len]);
                this.reading.advance(len);
                if this.reading.is_empty() && this.stall.take() {
                    this.resume_owed = true;
                    this.poll_resume(cx);
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.from_node.poll_recv(cx)) {
                Some(Chunk::Data(bytes)) => this.reading = bytes,
                Some(Chunk::Fin) => this.read_done = true,
                // The node let the flow go without a FIN: it was reset.
                None => {
                    this.read_done = true;
                    if this.cancel.is_cancelled() {
                        return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                    }
                }
            }
        }
    }
}

impl AsyncWrite for FlowStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        ready!(this.poll_credit(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.writes.poll_reserve(cx)).map_err(|_| stopped())?;
        // As the serving side's bridge does: chunks split off one buffer, whose room
        // `reserve` takes back once the node let go of them (it has, once it gave credit).
        let len = buf.len().min(CHUNK);
        this.out.reserve(len);
        this.out.extend_from_slice(&buf[..len]);
        let chunk = this.out.split().freeze();
        this.writes
            .send_item(Command::Data(this.flow, chunk))
            .map_err(|_| stopped())?;
        this.unacked = true;
        Poll::Ready(Ok(len))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_credit(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_credit(cx))?;
        ready!(this.poll_send(cx, Command::Eof(this.flow)))?;
        this.shut = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for FlowStream {
    fn drop(&mut self) {
        if self.cancel.is_cancelled() {
            return;
        }
        let unread = !self.reading.is_empty() || !self.from_node.is_empty();
        let command = if unread {
            Command::Abort(self.flow)
        } else if !self.shut {
            Command::Eof(self.flow)
        } else {
            // Sent and read to the end, or only sent: what still arrives is refused by
            // the node, since nobody reads it.
            return;
        };
        let Some(commands) = self.writes.get_ref().cloned() else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(command)) = commands.try_send(command)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = commands.send(command).await;
            });
        }
    }
}
