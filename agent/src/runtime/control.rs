//! The local control socket of a running agent (`agent.sock` beside the config): one
//! request line in, one JSON line out. `status`, `down` and `share` (to `reload`) ask; the
//! running agent answers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};

use crate::error::Fail;

/// What a client may ask the running agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    /// `connect share` wrote a new share to the shares file.
    Reload,
    Down,
    /// `share --approve-join` / `--deny-join`: the sharer's word on a waiting joiner.
    Decide {
        lookup: String,
        approved: bool,
        joiner: String,
    },
    Unknown(String),
}

impl Request {
    fn parse(line: &str) -> Self {
        match line.trim() {
            "status" => Self::Status,
            "reload" => Self::Reload,
            "down" => Self::Down,
            other => match other.splitn(4, ' ').collect::<Vec<_>>()[..] {
                ["decide", lookup, word @ ("approve" | "deny"), joiner] if !joiner.is_empty() => {
                    Self::Decide {
                        lookup: lookup.to_owned(),
                        approved: word == "approve",
                        joiner: joiner.to_owned(),
                    }
                }
                _ => Self::Unknown(other.to_owned()),
            },
        }
    }
}

/// Where the answer to one request goes.
pub struct Reply(OwnedWriteHalf);

impl Reply {
    pub async fn send(mut self, answer: &serde_json::Value) {
        let _ = self.0.write_all(format!("{answer}\n").as_bytes()).await;
    }
}

/// Opens the control socket, refusing to start a second agent on one config.
///
/// # Errors
/// When an agent already answers there, or the socket cannot be made.
pub async fn listen(socket: &Path) -> anyhow::Result<UnixListener> {
    if ask(socket, "status").await.is_ok() {
        return Err(Fail::Usage("An agent is already running with this config".into()).into());
    }
    crate::config::private_dir_for(socket)?;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot create the control socket {}", socket.display()))?;
    // Whoever can connect can stop the agent: only its owner, whatever the umask.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the control socket {}", socket.display()))?;
    Ok(listener)
}

/// The request on a new connection, if one arrives within two seconds.
pub async fn read(stream: UnixStream) -> Option<(Request, Reply)> {
    let (reader, writer) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        BufReader::new(reader).read_line(&mut line),
    )
    .await;
    matches!(read, Ok(Ok(_))).then(|| (Request::parse(&line), Reply(writer)))
}

/// Sends `request` to the running agent and returns its JSON answer.
pub async fn ask(socket: &Path, request: &str) -> anyhow::Result<serde_json::Value> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|_| Fail::NotRunning)?;
    let (reader, mut writer) = stream.into_split();
    writer
        .write_all(format!("{request}\n").as_bytes())
        .await
        .map_err(|_| Fail::NotRunning)?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(reader).read_line(&mut line),
    )
    .await
    .map_err(|_| Fail::NotRunning)?
    .map_err(|_| Fail::NotRunning)?;
    serde_json::from_str(&line).context("the agent sent an unreadable answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_owner_may_use_the_control_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("connect/agent.sock");
        let _listener = listen(&path).await.expect("listening");
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(&path).ok(), Some(0o600));
        assert_eq!(mode(&dir.path().join("connect")).ok(), Some(0o700));
    }
}
