//! Per-flow tasks of the serve side: each bridges one flow to a real socket. They never
//! touch the node; they send the node task commands and wait for credit, so a slow reader
//! slows its sender.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::command::{CHUNK, Chunk, Command, Stall};
use crate::flow::FlowId;
use crate::policy::Target;

/// A real target that has not answered by then is reported as refused.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a flow task holds: its channels to and from the node task.
pub(super) struct FlowEnds {
    pub(super) flow: FlowId,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) from_node: mpsc::Receiver<Chunk>,
    pub(super) credit: Arc<Notify>,
    pub(super) stall: Stall,
    pub(super) cancel: CancellationToken,
}

/// Serve side: connects to the real target, then bridges it to the flow.
pub(super) async fn serve_tcp(target: Target, ends: FlowEnds) {
    let connect = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((target.host.as_ref(), target.port)),
    );
    let stream = tokio::select! {
        () = ends.cancel.cancelled() => return,
        result = connect => result,
    };
    match stream {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            if ends
                .commands
                .send(Command::TargetConnected(ends.flow))
                .await
                .is_ok()
            {
                bridge_tcp(stream, ends).await;
            }
        }
        Ok(Err(err)) => {
            tracing::debug!(flow = %ends.flow, %target, %err, "target refused");
            let _ = ends.commands.send(Command::Abort(ends.flow)).await;
        }
        Err(_) => {
            tracing::debug!(flow = %ends.flow, %target, "target did not answer");
            let _ = ends.commands.send(Command::Abort(ends.flow)).await;
        }
    }
}

/// Copies between a real TCP connection and a flow in both directions until both are
/// done or the flow is cancelled. Half-close passes through: EOF on one side is FIN on
/// the other.
async fn bridge_tcp(stream: TcpStream, ends: FlowEnds) {
    let FlowEnds {
        flow,
        commands,
        mut from_node,
        credit,
        stall,
        cancel,
    } = ends;
    let (mut reader, mut writer) = stream.into_split();
    let inbound = {
        let commands = commands.clone();
        async move {
            // Chunks are split off one buffer without a copy. Once the node has let go
            // of them (it has, by the time it gives credit), `reserve` takes their room
            // back, so a run of small requests reuses one allocation instead of making a
            // 64 KiB one each.
            let mut buf = BytesMut::with_capacity(CHUNK);
            loop {
                buf.reserve(CHUNK);
                match reader.read_buf(&mut buf).await {
                    Ok(0) => {
                        let _ = commands.send(Command::Eof(flow)).await;
                        return;
                    }
                    Ok(_) => {
                        if commands
                            .send(Command::Data(flow, buf.split().freeze()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        credit.notified().await;
                    }
                    Err(_) => {
                        let _ = commands.send(Command::Abort(flow)).await;
                        return;
                    }
                }
            }
        }
    };
    let outbound = async move {
        while let Some(chunk) = from_node.recv().await {
            match chunk {
                Chunk::Data(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        let _ = commands.send(Command::Abort(flow)).await;
                        return;
                    }
                    if stall.take() {
                        let _ = commands.send(Command::Resume(flow)).await;
                    }
                }
                Chunk::Fin => {
                    let _ = writer.shutdown().await;
                }
            }
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        _ = async { tokio::join!(inbound, outbound) } => {}
    }
}

/// Serve side: one connected UDP socket to the real target per flow.
pub(super) async fn serve_udp(target: Target, ends: FlowEnds) {
    let FlowEnds {
        flow,
        commands,
        mut from_node,
        cancel,
        ..
    } = ends;
    let socket = async {
        let bind: SocketAddr = if target.host.contains(':') {
            "[::]:0".parse().ok()?
        } else {
            "0.0.0.0:0".parse().ok()?
        };
        let socket = UdpSocket::bind(bind).await.ok()?;
        socket
            .connect((target.host.as_ref(), target.port))
            .await
            .ok()?;
        Some(socket)
    };
    let Some(socket) = socket.await else {
        tracing::debug!(%flow, %target, "cannot reach UDP target");
        let _ = commands.send(Command::Abort(flow)).await;
        return;
    };
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            chunk = from_node.recv() => match chunk {
                Some(Chunk::Data(datagram)) => {
                    let _ = socket.send(&datagram).await;
                }
                Some(Chunk::Fin) => {}
                None => return,
            },
            received = socket.recv(&mut buf) => {
                // A refused datagram (ICMP unreachable) is not the peer's error to see.
                if let Ok(len) = received
                    && commands.send(Command::Data(flow, Bytes::copy_from_slice(&buf[..len]))).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
