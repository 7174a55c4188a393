//! The relay over TCP/TLS, for agents whose networks drop UDP: an agent upgrades a
//! `GET /v1/relay` on the API listener (so it passes whatever passes HTTPS, proxies
//! included) and then speaks the UDP relay's frames on the connection, each behind a
//! 2-byte length. The relay thread gives each connection a synthetic address and treats
//! it like any UDP client: the same binds and MACs, the same allowed pairs, the same rate
//! limit. Connections run on the API's runtime; frames cross to the relay thread and back
//! through channels.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use connect_netstack::io::relay_stream;
use connect_netstack::relay;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::relay::StreamMessage;

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

    /// Relays frames on `conn` until it closes or fails, or the relay stops.
    pub async fn serve(&self, conn: impl AsyncRead + AsyncWrite + Send + Unpin) {
        let addr = relay::stream_client(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (frames, outgoing) = mpsc::channel::<Bytes>(CLIENT_QUEUE);
        if self
            .relay
            .send(StreamMessage::Open { addr, frames })
            .await
            .is_err()
        {
            return;
        }
        tracing::debug!(%addr, "relay stream opened");
        let result = relay_stream::exchange(conn, outgoing, &self.relay, |frame| {
            StreamMessage::Frame { addr, frame }
        })
        .await;
        if let Err(err) = result {
            tracing::debug!(%addr, %err, "relay stream ended");
        }
        let _ = self.relay.send(StreamMessage::Closed { addr }).await;
    }
}
