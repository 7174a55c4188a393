//! The hub's event stream, held open: reconnects with exponential backoff when the hub
//! goes away, and says whether it is connected.

use std::time::Duration;

use connect_api::StreamEvent;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::hub::Hub;

/// Kept short: a hub back from a restart should see its agents within seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) enum Input {
    Event(StreamEvent),
    Connected(bool),
}

pub(super) async fn hold(hub: Hub, inputs: mpsc::Sender<Input>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match hub.stream().await {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                let _ = inputs.send(Input::Connected(true)).await;
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    if inputs.send(Input::Event(event)).await.is_err() {
                        return;
                    }
                }
                let _ = inputs.send(Input::Connected(false)).await;
                tracing::warn!("lost the hub's event stream; reconnecting");
            }
            Err(err) => tracing::warn!("{err:#}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
