//! `connect up`: register once (the key pair is made here and only the public key is
//! sent), then run the agent in the foreground.

use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine;
use connect_api::{RegisterRequest, WireKey};
use connect_netstack::{PublicKey, StaticSecret};

use super::Context;
use crate::config::{Paths, write_private};
use crate::error::Fail;
use crate::hub::Hub;

pub struct Keys {
    pub secret: StaticSecret,
    pub public: PublicKey,
}

/// This agent's WireGuard key pair, or "Agent not configured".
pub fn load_key(paths: &Paths) -> anyhow::Result<Keys> {
    let text = std::fs::read_to_string(paths.key()).map_err(|_| Fail::NotConfigured)?;
    let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is not a WireGuard private key", paths.key().display()))?;
    let secret = StaticSecret::from(bytes);
    Ok(Keys {
        public: PublicKey::from(&secret),
        secret,
    })
}

pub async fn run(
    mut ctx: Context,
    auth_key: Option<String>,
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    if ctx.paths.token_value().is_none() {
        let secret = StaticSecret::from(rand::random::<[u8; 32]>());
        let public = PublicKey::from(&secret);
        let name = name
            .or_else(|| ctx.config.name.clone())
            .unwrap_or_else(super::user_at_host);
        let hub = Hub::new(&ctx.hub_url, None)?;
        let registered = hub
            .register(&RegisterRequest {
                name: name.clone(),
                public_key: WireKey(public.to_bytes()),
                auth_key,
                guest: false,
            })
            .await?;
        write_private(
            &ctx.paths.key(),
            base64::engine::general_purpose::STANDARD
                .encode(secret.to_bytes())
                .as_bytes(),
        )?;
        write_private(&ctx.paths.token(), registered.token.0.as_bytes())?;
        ctx.config.hub = Some(ctx.hub_url.clone());
        ctx.config.name = Some(name.clone());
        ctx.config.agent_id = Some(registered.agent_id);
        ctx.paths.save(&ctx.config)?;
        if !ctx.json {
            println!("[ok] Registered as {name} with {}", ctx.hub_url);
        }
    }
    crate::daemon::run(ctx).await
}
