//! A UDP conversation through the tunnel, run as a task of its own: datagrams sent on the
//! returned channel go out, and each answer is handed to a callback (which says whether
//! to go on). Both user-space UDP forwards and SOCKS5 UDP ASSOCIATE use it.

use std::future::Future;
use std::net::SocketAddrV4;

use bytes::Bytes;
use connect_netstack::io::Netstack;
use tokio::sync::mpsc;

/// Datagrams queued towards the tunnel per conversation before new ones are dropped.
const QUEUE: usize = 64;

pub async fn spawn<F, Fut>(
    net: &Netstack,
    remote: SocketAddrV4,
    mut on_answer: F,
) -> Option<mpsc::Sender<Vec<u8>>>
where
    F: FnMut(Bytes) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let mut flow = net.open_udp(remote).await.ok()?;
    let (tx, mut outgoing) = mpsc::channel::<Vec<u8>>(QUEUE);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                datagram = outgoing.recv() => match datagram {
                    Some(datagram) => {
                        if flow.send(&datagram).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                answer = flow.recv() => match answer {
                    Some(answer) => {
                        if !on_answer(answer).await {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    });
    Some(tx)
}
