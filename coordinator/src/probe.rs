//! A second UDP port that only answers netcheck probes (`connect netcheck`): an agent asks
//! the relay's port and this one from one socket; if its NAT shows both the same public
//! port, the NAT keeps a mapping across destinations and direct paths can work. No slot,
//! no key and no state: an answer is never larger than the probe (see
//! `relay::PROBE_LEN`), so a forged source gains nothing. Answers leave from the address
//! the probe came to, as the relay's do: a NAT drops answers from any other.

use connect_netstack::io::batch::{BatchSocket, Received, RecvBatch};
use connect_netstack::relay::{self, Frame};
use tokio::net::UdpSocket;

/// Answers probes on `socket` for the life of the hub.
pub async fn serve(socket: UdpSocket) {
    let socket = match BatchSocket::new(socket) {
        Ok(socket) => socket,
        Err(err) => {
            tracing::warn!(%err, "cannot serve the netcheck probe port");
            return;
        }
    };
    let mut received = RecvBatch::default();
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        if socket.try_recv(&mut received).is_err() {
            continue;
        }
        for index in 0..received.len() {
            let Received {
                from,
                local,
                bytes,
                stride,
            } = received.buffer(index);
            for datagram in bytes.chunks(stride.max(1)) {
                if let Some(Frame::Probe { nonce }) = relay::parse(datagram) {
                    let answer = relay::write_probe_ack(nonce, from);
                    let _ = socket.send_from(local, from, &answer, answer.len()).await;
                }
            }
        }
    }
}
