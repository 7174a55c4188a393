//! `connect up`: register once (the key pair is made here and only the public key is
//! sent), then run the agent in the foreground.

use std::process::ExitCode;

use connect_api::{RegisterRequest, WireKey};
use connect_netstack::{PublicKey, StaticSecret};

use crate::config::write_private;
use crate::context::Context;
use crate::hub::Hub;

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
        ctx.paths.save_key(&secret)?;
        write_private(&ctx.paths.token(), registered.token.0.as_bytes())?;
        ctx.config.hub = Some(ctx.hub_url.clone());
        ctx.config.name = Some(name.clone());
        ctx.config.agent_id = Some(registered.agent_id);
        ctx.paths.save(&ctx.config)?;
        if !ctx.json {
            println!("[ok] Registered as {name} with {}", ctx.hub_url);
        }
    }
    crate::runtime::run(ctx).await
}
