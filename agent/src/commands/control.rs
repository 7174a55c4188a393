//! The local control socket of a running agent (`agent.sock` beside the config): one
//! request line in, one JSON line out. `status` and `down` use it.

use std::path::Path;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::Fail;

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
        std::time::Duration::from_secs(5),
        BufReader::new(reader).read_line(&mut line),
    )
    .await
    .map_err(|_| Fail::NotRunning)?
    .map_err(|_| Fail::NotRunning)?;
    serde_json::from_str(&line).context("the agent sent an unreadable answer")
}
