//! Relay frames over a stream to the hub, for networks that drop UDP: the node asks for
//! one ([`crate::Event::RelayStream`]); a task here dials it through the program's
//! [`RelayDialer`] (which knows the hub's URL, TLS and proxies), then carries frames both
//! ways, each as a 2-byte big-endian length and the frame, as the hub reads them too
//! ([`read_frame`], [`put_frame`]). The node sees frames to and from
//! [`crate::relay::STREAM_ENDPOINT`] and nothing else of it.
//!
//! The hub's own peer runs in the relay's process: its dialer gives a [`LocalLink`]
//! instead, and frames cross as [`StreamMessage`]s, with no socket and no framing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::command::Command;

/// Frames queued for the stream before more are dropped (as UDP would drop them).
const STREAM_QUEUE: usize = 1024;
/// Bytes gathered before one write, when frames come faster than they are written.
const WRITE_BATCH: usize = 64 * 1024;

/// A byte stream to the hub's relay: TLS over TCP, maybe through a proxy.
pub trait RelayConn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> RelayConn for T {}

/// What a dialer opened to the relay.
pub enum RelayLink {
    /// A byte stream to the hub, frames behind their lengths.
    Stream(Box<dyn RelayConn>),
    /// The relay's own channels, in this process.
    Local(LocalLink),
}

/// A client of a relay in the same process: what the relay knows it by, the relay's
/// inbox, and the frames the relay sends it. The dialer has sent
/// [`StreamMessage::Open`] already; the link sends [`StreamMessage::Closed`] when it ends.
pub struct LocalLink {
    pub addr: SocketAddr,
    pub relay: mpsc::Sender<StreamMessage>,
    pub frames: mpsc::Receiver<Frames>,
}

/// Relay frames in one buffer, `stride` bytes apart, the last maybe shorter: a run, as
/// one GSO send or GRO receive carries them, handed on whole rather than frame by frame.
#[derive(Debug, Clone)]
pub struct Frames {
    pub bytes: Bytes,
    pub stride: usize,
}

impl Frames {
    /// One frame as a run of one.
    pub fn one(frame: Bytes) -> Self {
        Self {
            stride: frame.len().max(1),
            bytes: frame,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks(self.stride.max(1))
    }
}

/// What a stream client (over a connection, or in-process) tells its relay.
#[derive(Debug)]
pub enum StreamMessage {
    /// A client is up, known by the synthetic `addr`; frames for it go to `frames`.
    Open {
        addr: SocketAddr,
        frames: mpsc::Sender<Frames>,
    },
    /// Frames the client sent.
    Frames {
        addr: SocketAddr,
        frames: Frames,
    },
    Closed {
        addr: SocketAddr,
    },
}

pub type DialFuture<'a> = Pin<Box<dyn Future<Output = io::Result<RelayLink>> + Send + 'a>>;

/// Opens links to the hub's relay: given by the program, which knows how to reach the
/// hub (its URL, TLS roots, HTTP proxy, credentials), or holds the relay itself.
pub trait RelayDialer: Send + Sync + 'static {
    fn dial(&self) -> DialFuture<'_>;
}

/// Appends `frame` to `out` as it goes on a stream.
///
/// # Panics
/// Never for relay frames, which are far below 64 KiB; a longer one is a bug.
pub fn put_frame(out: &mut BytesMut, frame: &[u8]) {
    let len = u16::try_from(frame.len()).expect("relay frames are under 64 KiB");
    out.reserve(2 + frame.len());
    out.put_u16(len);
    out.put_slice(frame);
}

/// The next frame on a stream; `None` at a clean end.
///
/// # Errors
/// When the stream fails or ends inside a frame.
pub async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Bytes>> {
    let len = match reader.read_u16().await {
        Ok(len) => usize::from(len),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut frame = vec![0; len];
    reader.read_exact(&mut frame).await?;
    Ok(Some(Bytes::from(frame)))
}

/// The node task's end of a running stream task.
pub(super) struct StreamLink {
    pub(super) generation: u64,
    frames: mpsc::Sender<Frames>,
    cancel: CancellationToken,
}

impl StreamLink {
    /// Queues a run of frames `stride` bytes apart for the hub, in one copy; dropped when
    /// the stream is not keeping up.
    pub(super) fn send(&self, run: &[u8], stride: usize) {
        let frames = Frames {
            bytes: Bytes::copy_from_slice(run),
            stride: stride.max(1),
        };
        if self.frames.try_send(frames).is_err() {
            tracing::trace!("relay stream queue full; frame dropped");
        }
    }
}

impl Drop for StreamLink {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts a task that dials the hub and carries frames until the stream ends or the link
/// is dropped. It reports `RelayStreamUp`, each frame read, and `RelayStreamDown` (also
/// when dialling failed), all tagged with `generation`.
pub(super) fn spawn(
    dialer: Arc<dyn RelayDialer>,
    generation: u64,
    commands: mpsc::Sender<Command>,
    tasks: &TaskTracker,
    parent: &CancellationToken,
) -> StreamLink {
    let (frames, outgoing) = mpsc::channel(STREAM_QUEUE);
    let cancel = parent.child_token();
    let stop = cancel.clone();
    tasks.spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            result = carry(dialer.as_ref(), generation, &commands, outgoing) => {
                if let Err(err) = result {
                    tracing::info!(%err, "relay stream to the hub ended");
                }
            }
        }
        let _ = commands.send(Command::RelayStreamDown(generation)).await;
    });
    StreamLink {
        generation,
        frames,
        cancel,
    }
}

async fn carry(
    dialer: &dyn RelayDialer,
    generation: u64,
    commands: &mpsc::Sender<Command>,
    outgoing: mpsc::Receiver<Frames>,
) -> io::Result<()> {
    let link = dialer.dial().await?;
    let stopped = || io::Error::other("tunnel stopped");
    commands
        .send(Command::RelayStreamUp(generation))
        .await
        .map_err(|_| stopped())?;
    match link {
        RelayLink::Stream(conn) => {
            tracing::info!("relay frames go over a stream to the hub");
            exchange(conn, outgoing, commands, |frame| {
                Command::RelayFrames(Frames::one(frame))
            })
            .await
        }
        RelayLink::Local(link) => exchange_local(link, outgoing, commands).await,
    }
}

/// Tells the relay a local client is gone, however its link ends.
struct CloseOnDrop {
    addr: SocketAddr,
    relay: mpsc::Sender<StreamMessage>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self
            .relay
            .try_send(StreamMessage::Closed { addr: self.addr });
    }
}

/// Carries frames both ways between the node and a relay in this process until either
/// side stops, a run (a GRO batch, a GSO send) as one message each way.
async fn exchange_local(
    link: LocalLink,
    mut outgoing: mpsc::Receiver<Frames>,
    commands: &mpsc::Sender<Command>,
) -> io::Result<()> {
    let LocalLink {
        addr,
        relay,
        mut frames,
    } = link;
    let _closed = CloseOnDrop {
        addr,
        relay: relay.clone(),
    };
    let read = async {
        while let Some(run) = frames.recv().await {
            if commands.send(Command::RelayFrames(run)).await.is_err() {
                return Ok(());
            }
        }
        Err(io::Error::other("the relay stopped"))
    };
    let write = async {
        // Runs come whole from the node task's send batch: each goes on as it is.
        while let Some(frames) = outgoing.recv().await {
            if relay
                .send(StreamMessage::Frames { addr, frames })
                .await
                .is_err()
            {
                return Err(io::Error::other("the relay stopped"));
            }
        }
        Ok(())
    };
    tokio::select! {
        result = read => result,
        result = write => result,
    }
}

/// Carries frames both ways on `conn` until it ends or fails, or either channel closes:
/// frames from `outgoing` are written (gathered into larger writes when they queue up),
/// each frame read goes to `incoming` as `wrap(frame)`. Both the agent and the hub's
/// relay run their streams with it.
///
/// # Errors
/// When the stream fails, or ends while frames could still come.
pub async fn exchange<T>(
    conn: impl AsyncRead + AsyncWrite + Send + Unpin,
    mut outgoing: mpsc::Receiver<Frames>,
    incoming: &mpsc::Sender<T>,
    wrap: impl Fn(Bytes) -> T,
) -> io::Result<()> {
    let (reader, mut writer) = tokio::io::split(conn);
    let read = async {
        let mut reader = BufReader::with_capacity(WRITE_BATCH, reader);
        while let Some(frame) = read_frame(&mut reader).await? {
            if incoming.send(wrap(frame)).await.is_err() {
                return Ok(());
            }
        }
        Err(io::Error::from(io::ErrorKind::UnexpectedEof))
    };
    let write = async {
        let mut out = BytesMut::with_capacity(WRITE_BATCH);
        while let Some(run) = outgoing.recv().await {
            run.iter().for_each(|frame| put_frame(&mut out, frame));
            while out.len() < WRITE_BATCH {
                match outgoing.try_recv() {
                    Ok(run) => run.iter().for_each(|frame| put_frame(&mut out, frame)),
                    Err(_) => break,
                }
            }
            writer.write_all(&out).await?;
            writer.flush().await?;
            out.clear();
        }
        Ok(())
    };
    tokio::select! {
        result = read => result,
        result = write => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_keep_their_bounds_on_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut out = BytesMut::new();
        put_frame(&mut out, b"one");
        put_frame(&mut out, b"");
        put_frame(&mut out, &[7; 300]);
        tokio::spawn(async move {
            a.write_all(&out).await.expect("write");
            a.write_all(&[0, 5, 1]).await.expect("write");
        });
        assert_eq!(
            read_frame(&mut b).await.expect("frame").as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            read_frame(&mut b).await.expect("frame").as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            read_frame(&mut b).await.expect("frame").map(|f| f.len()),
            Some(300)
        );
        assert!(
            read_frame(&mut b).await.is_err(),
            "a stream cut inside a frame is an error"
        );
    }
}
