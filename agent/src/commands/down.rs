//! `connect down`: ask the running agent to stop.

use std::process::ExitCode;

use crate::context::Context;
use crate::output;
use crate::runtime::control;

pub async fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    control::ask(&ctx.paths.socket(), "down").await?;
    if ctx.json {
        output::json(&serde_json::json!({ "up": false }));
    } else {
        println!("[ok] Agent stopped.");
    }
    Ok(ExitCode::SUCCESS)
}
