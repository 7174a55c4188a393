//! `connect dashboard`: asks the hub for a one-time login link for this agent, prints it,
//! and opens it in a browser when there is one to open.

use std::process::ExitCode;

use serde_json::json;

use crate::context::Context;
use crate::output;

pub async fn run(ctx: &Context, no_open: bool) -> anyhow::Result<ExitCode> {
    let link = ctx.agent_hub()?.dashboard_link().await?;
    if ctx.json {
        output::json(&json!({ "url": link.url }));
    } else {
        println!("Dashboard login link (works once, for 5 minutes):");
        println!("  {}", link.url);
    }
    if !no_open && has_display() {
        match opener::open_browser(&link.url) {
            Ok(()) if !ctx.json => println!("Opened in your browser."),
            Ok(()) => {}
            Err(err) => tracing::debug!(%err, "no browser opened"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A browser can only show the page where there is a screen: over SSH, or on a server,
/// the link is for the user to open elsewhere.
fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
        || cfg!(target_os = "macos")
}
