//! What every command and the running agent work with: where the files are, the config,
//! which hub, and whether output is JSON.

use crate::config::{Config, Paths};
use crate::error::Fail;
use crate::hub::Hub;

pub struct Context {
    pub paths: Paths,
    pub config: Config,
    pub hub_url: String,
    pub json: bool,
}

impl Context {
    /// The hub with this agent's token, or "Agent not configured".
    pub fn agent_hub(&self) -> anyhow::Result<Hub> {
        let token = self.paths.token_value().ok_or(Fail::NotConfigured)?;
        Hub::new(&self.hub_url, Some(token))
    }
}
