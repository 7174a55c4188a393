//! The relay over TCP/TLS, for agents whose networks drop UDP: an agent upgrades a
//! `GET /v1/relay` on the API listener (so it passes whatever passes HTTPS, proxies
//! included) and then speaks the UDP relay's frames on the connection, each behind a
//! 2-byte length. The relay thread gives each connection a synthetic address and treats
//! it like any UDP client: the same binds and MACs, the same allowed pairs, the same rate
//! limit. Connections run on the API's runtime; frames cross to the relay thread and back
//! through channels.
//!
//! The hub's own peer is such a client too, without the connection: it is handed the
//! channels themselves ([`LocalDialer`]), so its frames never cross a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use connect_netstack::io::relay_stream::{
    self, DialFuture, Frames, LocalLink, RelayDialer, RelayLink, StreamMessage,
};
use connect_netstack::relay;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Frames queued for one stream client before more are dropped, as UDP would drop them.
const CLIENT_QUEUE: usize = 1024;

/// Where stream connections meet the relay thread.
#[derive(Debug)]
pub struct Streams {
    relay: mpsc::Sender<StreamMessage>,
    next_id: AtomicU64,
}

impl Streams {
    /// The connections' side, and the relay thread's.
    pub fn new() -> (Self, mpsc::Receiver<StreamMessage>) {
        let (relay, inbox) = mpsc::channel(4096);
        let streams = Self {
            relay,
            next_id: AtomicU64::new(1),
        };
        (streams, inbox)
    }

    /// A new client's address and the frames the relay will send it, once the relay
    /// knows it; `None` when the relay has stopped.
    async fn open(&self) -> Option<(SocketAddr, mpsc::Receiver<Frames>)> {
        let addr = relay::stream_client(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (frames, outgoing) = mpsc::channel(CLIENT_QUEUE);
        self.relay
            .send(StreamMessage::Open { addr, frames })
            .await
            .ok()?;
        Some((addr, outgoing))
    }

    /// Relays frames on `conn` until it closes or fails, or the relay stops.
    pub async fn serve(&self, conn: impl AsyncRead + AsyncWrite + Send + Unpin) {
        let Some((addr, outgoing)) = self.open().await else {
            return;
        };
        tracing::debug!(%addr, "relay stream opened");
        let result =
            relay_stream::exchange(conn, outgoing, &self.relay, |frame| StreamMessage::Frames {
                addr,
                frames: Frames::one(frame),
            })
            .await;
        if let Err(err) = result {
            tracing::debug!(%addr, %err, "relay stream ended");
        }
        let _ = self.relay.send(StreamMessage::Closed { addr }).await;
    }
}

/// Links the hub's own peer to the relay in this process.
pub struct LocalDialer(pub Arc<Streams>);

impl RelayDialer for LocalDialer {
    fn dial(&self) -> DialFuture<'_> {
        Box::pin(async {
            let (addr, frames) = self
                .0
                .open()
                .await
                .ok_or_else(|| std::io::Error::other("the relay stopped"))?;
            Ok(RelayLink::Local(LocalLink {
                addr,
                relay: self.0.relay.clone(),
                frames,
            }))
        })
    }
}
