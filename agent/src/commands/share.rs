//! `connect share`: snapshot the exposed services, make a code here, register the share
//! with the hub by its lookup value only; `--list`, `--info CODE`, `--revoke CODE`.

use std::process::ExitCode;

use connect_api::{CreateShareRequest, Protocol, Route, Share, ShareState, SshOffer};
use serde_json::json;

use crate::cli::ShareArgs;
use crate::code::{Role, ShareCode};
use crate::config::{JoinerRules, LocalShare, LocalSsh};
use crate::context::Context;
use crate::error::Fail;
use crate::output;
use crate::runtime::shares::ShareBook;
use crate::ssh::authorized_keys::AuthorizedKeys;
use crate::ssh::{self, keypair, password};

/// Ports users serve HTTP on, in the order they are tried.
const HTTP_PORTS: [u16; 5] = [80, 3000, 5000, 8000, 8080];
const HTTP_NAMES: [&str; 4] = ["http", "web", "api", "app"];

/// Which service gets the public URL, and why.
pub fn pick_http(
    routes: &[Route],
    args_port: Option<u16>,
    https_port: Option<u16>,
    disabled: bool,
) -> (Option<u16>, String) {
    if disabled {
        return (None, "disabled by --disable-http".into());
    }
    if let Some(port) = args_port {
        return (Some(port), "--http-port".into());
    }
    if let Some(port) = https_port {
        return (Some(port), "--https-port".into());
    }
    let tcp = || routes.iter().filter(|r| r.protocol == Protocol::Tcp);
    if let Some(route) = tcp().find(|r| HTTP_NAMES.contains(&r.name.to_ascii_lowercase().as_str()))
    {
        return (Some(route.port), format!("service named {}", route.name));
    }
    for port in HTTP_PORTS {
        if let Some(route) = tcp().find(|r| r.port == port) {
            return (Some(port), format!("{} is on port {port}", route.name));
        }
    }
    (
        None,
        "no service looks like HTTP (name http/web/api/app, or port 80, 3000, 5000, 8000, 8080)"
            .into(),
    )
}

fn code_of(text: &str) -> Result<ShareCode, Fail> {
    ShareCode::parse(text).ok_or(Fail::ShareNotFound)
}

pub async fn run(ctx: &Context, args: ShareArgs) -> anyhow::Result<ExitCode> {
    for (pair, approved) in [(&args.approve_join, true), (&args.deny_join, false)] {
        if let Some([code, joiner]) = pair.as_deref() {
            return decide(ctx, &code_of(code)?, joiner, approved).await;
        }
    }
    if let Some(text) = &args.revoke {
        return revoke(ctx, &code_of(text)?).await;
    }
    if let Some(text) = &args.info {
        return info(ctx, &code_of(text)?).await;
    }
    if args.list {
        return list(ctx).await;
    }
    create(ctx, args).await
}

/// Ends a share made here on this machine first (the running agent cuts its joiners at
/// once, and the SSH key goes), then tells the hub. A hub that cannot be reached hears of
/// it from the agent later; the share is over either way, but the failure is still the
/// contract's (`[x] Cannot connect to hub at …`, exit 1), with a hint that says so.
async fn revoke(ctx: &Context, code: &ShareCode) -> anyhow::Result<ExitCode> {
    let lookup = code.lookup();
    let hub = ctx.agent_hub()?;
    let mut book = ShareBook::load(&ctx.paths)?;
    let mine = book.end(&lookup, ShareState::Revoked, false);
    if let Some(share) = &mine {
        ssh::uninstall(share);
        let _ = crate::runtime::control::ask(&ctx.paths.socket(), "reload").await;
    }
    match hub.revoke(&lookup).await {
        Ok(_) => book.told(&lookup),
        Err(err) if mine.is_some() => match err.downcast_ref::<Fail>() {
            Some(Fail::ShareNotFound) => book.told(&lookup),
            _ => return Err(Fail::EndedHereOnly(format!("{err:#}")).into()),
        },
        Err(err) => return Err(err),
    }
    if ctx.json {
        output::json(&json!({ "code": code.to_string(), "state": "revoked" }));
    } else {
        println!("[ok] Share {code} revoked.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--approve-join CODE JOINER` / `--deny-join`: the running agent holds the waiting
/// joiners, so it is asked; it saves the decision and lets the joiner in (or tells the hub
/// it is refused).
async fn decide(
    ctx: &Context,
    code: &ShareCode,
    joiner: &str,
    approved: bool,
) -> anyhow::Result<ExitCode> {
    if joiner.trim().is_empty() || joiner.contains(['\n', '\r']) {
        return Err(Fail::Usage("JOINER is a joiner's name as shown, on one line".into()).into());
    }
    let word = if approved { "approve" } else { "deny" };
    let request = format!("decide {} {word} {joiner}", code.lookup());
    let answer = crate::runtime::control::ask(&ctx.paths.socket(), &request).await?;
    let decided: Vec<String> = answer["decided"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if decided.is_empty() {
        return Err(Fail::Usage(format!(
            "No joiner {joiner:?} is waiting on share {code}; waiting joiners are shown by the agent and on the dashboard"
        ))
        .into());
    }
    let done = if approved { "approved" } else { "denied" };
    if ctx.json {
        output::json(&json!({ "code": code.to_string(), "joiners": decided, "decision": done }));
    } else {
        for name in decided {
            println!("[ok] {name} {done}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a new share will serve, decided on this machine before the hub hears of it.
struct Plan {
    expires: std::time::Duration,
    routes: Vec<Route>,
    all_ports: Option<String>,
    http_port: Option<u16>,
    /// The service at `http_port` speaks HTTPS (`--https-port`).
    https: bool,
    /// `--public-name`, lowercased and checked.
    public_name: Option<String>,
    max_joins: Option<u32>,
    approve: bool,
    /// Why the public URL goes to `http_port`, or why there is none.
    why: String,
}

async fn create(ctx: &Context, args: ShareArgs) -> anyhow::Result<ExitCode> {
    // The flags are checked before the hub is asked anything.
    let expires = match &args.expires {
        Some(text) => connect_api::parse_duration(text).ok_or(Fail::InvalidExpires)?,
        None => std::time::Duration::from_secs(24 * 3600),
    };
    let hub = ctx.agent_hub()?;
    let plan = plan(&args, expires, ctx.paths.local_services()?)?;
    // The deadline is this machine's: the running agent ends the share then, whatever the
    // hub says.
    let expires_at = time::OffsetDateTime::now_utc() + plan.expires;
    let key = ctx.paths.keys()?;
    let code = ShareCode::generate();
    let ssh = if args.ssh {
        Some(prepare_ssh(&args, &code)?)
    } else {
        None
    };
    let request = CreateShareRequest {
        name: args.name.clone(),
        lookup: code.lookup(),
        expires_in_secs: plan.expires.as_secs(),
        routes: plan.routes.clone(),
        all_ports: plan.all_ports.clone(),
        http_port: plan.http_port,
        https: plan.https,
        public_name: plan.public_name.clone(),
        key_mac: code.mac(Role::Sharer, key.public.as_bytes()),
        http_auth: args.http_auth.clone(),
        ssh: ssh.as_ref().map(|s| s.offer.clone()),
        max_joins: args.max_joins,
        approve: args.approve,
    };
    // The key goes in before the share exists, so a joiner never finds it missing, and
    // comes out again if the hub refuses the share.
    let installed = ssh.as_ref().map(|s| (&s.file, &s.local));
    if let Some((file, local)) = installed {
        file.add(&local.line, &local.marker)?;
    }
    let share = match hub.create_share(&request).await {
        Ok(share) => share,
        Err(err) => {
            if let Some((file, local)) = installed {
                let _ = file.remove(&local.marker);
            }
            return Err(err);
        }
    };
    if let Err(problem) = check_address(ctx, &share) {
        let _ = hub.revoke(&share.lookup).await;
        if let Some((file, local)) = installed {
            let _ = file.remove(&local.marker);
        }
        return Err(Fail::Hub(problem).into());
    }
    remember(ctx, &code, &share, &plan, expires_at, ssh.as_ref())?;
    // A running agent serves the new share's address and public URL at once.
    let _ = crate::runtime::control::ask(&ctx.paths.socket(), "reload").await;
    if ctx.json {
        output::json(&json!({
            "code": code.to_string(),
            "name": share.name,
            "url": share.url,
            "expires_at": output::rfc3339(expires_at),
            "routes": plan.routes,
        }));
    } else {
        print_created(&code, &share, &plan, expires_at, ssh.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the flags against the exposed services and picks the public URL's port.
fn plan(
    args: &ShareArgs,
    expires: std::time::Duration,
    mut routes: Vec<Route>,
) -> Result<Plan, Fail> {
    ssh_route(&mut routes, args.ssh);
    let all_ports = args
        .all_ports
        .then(|| args.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned()));
    let (http_port, why) = pick_http(&routes, args.http_port, args.https_port, args.disable_http);
    for (flag, port) in [
        ("--http-port", args.http_port),
        ("--https-port", args.https_port),
    ] {
        if let Some(port) = port
            && all_ports.is_none()
            && !routes
                .iter()
                .any(|r| r.protocol == Protocol::Tcp && r.port == port)
        {
            return Err(Fail::Usage(format!(
                "{flag} {port} is not an exposed TCP service"
            )));
        }
    }
    let public_name = args.public_name.as_deref().map(str::to_ascii_lowercase);
    if let Some(name) = &public_name {
        if let Some(problem) = connect_api::public_name_problem(name) {
            return Err(Fail::Usage(format!("--public-name {name}: {problem}")));
        }
        if http_port.is_none() {
            return Err(Fail::Usage(format!(
                "--public-name needs a public URL, and there is none: {why}"
            )));
        }
    }
    if let Some(pair) = &args.http_auth
        && !pair
            .split_once(':')
            .is_some_and(|(user, pass)| !user.is_empty() && !pass.is_empty())
    {
        return Err(Fail::Usage("--http-auth takes USER:PASS".into()));
    }
    if args.http_auth.is_some() && http_port.is_none() {
        return Err(Fail::Usage(format!(
            "--http-auth needs a public URL, and there is none: {why}"
        )));
    }
    Ok(Plan {
        expires,
        routes,
        all_ports,
        http_port,
        https: args.https_port.is_some(),
        public_name,
        max_joins: args.max_joins,
        approve: args.approve,
        why,
    })
}

/// The share's tunnel address as the hub chose it: the shared machine's (.2) in a /24 of
/// 172.16.0.0/12 that no live share of this machine uses.
fn check_address(ctx: &Context, share: &Share) -> Result<(), String> {
    let ip = share.machine_ip;
    let now = time::OffsetDateTime::now_utc();
    let taken = ctx
        .paths
        .local_shares()
        .unwrap_or_default()
        .iter()
        .any(|s| s.is_live(now) && s.machine_ip.octets()[..3] == ip.octets()[..3]);
    if !connect_api::in_overlay(ip) || ip.octets()[3] != 2 || taken {
        return Err(format!(
            "The hub gave the share the address {ip}, which is not a free shared-machine address in 172.16.0.0/12; refusing it"
        ));
    }
    Ok(())
}

/// How long an ended share stays listed (with its code) in `share --list`.
const HISTORY: time::Duration = time::Duration::days(30);

/// Keeps the new share (its code above all) in this machine's shares file, dropping
/// shares that ended or expired more than [`HISTORY`] ago.
fn remember(
    ctx: &Context,
    code: &ShareCode,
    share: &Share,
    plan: &Plan,
    expires_at: time::OffsetDateTime,
    ssh: Option<&PreparedSsh>,
) -> anyhow::Result<()> {
    let mut local = ctx.paths.local_shares()?;
    let now = time::OffsetDateTime::now_utc();
    local.retain(|s| s.is_live(now) || s.expires_at > now - HISTORY);
    local.push(LocalShare {
        code: code.to_string(),
        lookup: share.lookup.clone(),
        name: share.name.clone(),
        machine_ip: share.machine_ip,
        routes: plan.routes.clone(),
        all_ports: plan.all_ports.clone(),
        http_port: share.url.as_ref().and(plan.http_port),
        expires_at,
        ssh: ssh.map(|s| s.local.clone()),
        ended: None,
        joiners: JoinerRules {
            max_joins: plan.max_joins,
            approve: plan.approve,
            ..JoinerRules::default()
        },
    });
    ctx.paths.save_local_shares(&local)
}

fn print_created(
    code: &ShareCode,
    share: &Share,
    plan: &Plan,
    expires_at: time::OffsetDateTime,
    ssh: Option<&PreparedSsh>,
) {
    let why = &plan.why;
    println!("[ok] Environment share created!");
    println!("Share Code: {code}");
    println!("Name: {}", share.name);
    match &share.url {
        Some(url) => println!(
            "URL: {url}  (HTTP port {}: {why})",
            plan.http_port.unwrap_or_default()
        ),
        None => println!("URL: none ({why})"),
    }
    println!("Machine IP: {}", share.machine_ip);
    println!("Your teammate can join with:");
    println!("  connect join {code}");
    match (plan.max_joins, plan.approve) {
        (None, false) => {}
        (max, approve) => println!(
            "Who may join: {}{}",
            max.map_or_else(
                || "anyone with the code".to_owned(),
                |n| format!("{n} joiner{}", if n == 1 { "" } else { "s" })
            ),
            if approve {
                ", each approved by you (the agent asks)"
            } else {
                ""
            }
        ),
    }
    print_routes(&plan.routes, plan.all_ports.as_deref());
    if let Some(ssh) = ssh {
        println!(
            "SSH: connect join --ssh {code}  (as {}{})",
            ssh.local.user,
            if ssh.local.once {
                ", one session only"
            } else {
                ""
            }
        );
    }
    if plan.routes.is_empty() && plan.all_ports.is_none() {
        println!("Expose services first:");
        println!("  connect expose localhost:5432 --name postgres");
        println!("  connect share");
    }
    println!(
        "{}",
        output::expires_line(expires_at, time::OffsetDateTime::now_utc())
    );
}

/// Port 22 is shared only with `--ssh`, and then goes to this machine's sshd.
fn ssh_route(routes: &mut Vec<Route>, ssh: bool) {
    let is_ssh = |r: &Route| r.protocol == Protocol::Tcp && r.port == ssh::PORT;
    if !ssh {
        for route in routes.iter().filter(|r| is_ssh(r)) {
            eprintln!(
                "[!] Port {} ({}) is shared only with --ssh; leaving it out.",
                ssh::PORT,
                route.name
            );
        }
    }
    routes.retain(|r| !is_ssh(r));
    if ssh {
        routes.push(Route {
            name: "ssh".into(),
            target: format!("127.0.0.1:{}", ssh::PORT),
            port: ssh::PORT,
            protocol: Protocol::Tcp,
        });
    }
}

/// What `--ssh` makes before the share exists: the key, encrypted for the hub, and the
/// `authorized_keys` line that lets it in.
struct PreparedSsh {
    offer: SshOffer,
    local: LocalSsh,
    file: AuthorizedKeys,
}

fn prepare_ssh(args: &ShareArgs, code: &ShareCode) -> anyhow::Result<PreparedSsh> {
    let file = AuthorizedKeys::of(args.ssh_user.as_deref())?;
    if file.holds_vagrant_insecure_key() {
        eprintln!(
            "[!] {} still accepts Vagrant's well-known insecure key: anyone who reaches this machine can log in as {}.",
            file.path.display(),
            file.user
        );
        eprintln!("    Remove it: {}", file.vagrant_removal_hint());
    }
    let password = password::new_password(args.ssh_password_file.as_deref())?;
    let key = keypair::generate(&password)?;
    let marker = ssh::marker(&code.lookup());
    let line = if args.ssh_once {
        let exe = std::env::current_exe()?;
        super::ssh_once::forced_line(&exe, &file.path, &key.public, &marker).ok_or_else(|| {
            Fail::Usage("--ssh-once needs paths without quotes or backslashes".into())
        })?
    } else {
        format!("{} {marker}", key.public)
    };
    Ok(PreparedSsh {
        offer: SshOffer {
            user: file.user.clone(),
            encrypted_key: key.encrypted,
            once: args.ssh_once,
        },
        local: LocalSsh {
            user: file.user.clone(),
            authorized_keys: file.path.clone(),
            line,
            marker,
            once: args.ssh_once,
        },
        file,
    })
}

fn print_routes(routes: &[Route], all_ports: Option<&str>) {
    if routes.is_empty() && all_ports.is_none() {
        println!("Routes being shared: (none)");
        return;
    }
    println!("Routes being shared:");
    for route in routes {
        let proto = if route.protocol == Protocol::Udp {
            " (udp)"
        } else {
            ""
        };
        println!("  • {} → {}{proto}", route.name, route.target);
    }
    if let Some(host) = all_ports {
        println!("  • every port → {host}");
    }
}

async fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut shares = ctx.agent_hub()?.shares().await?;
    let codes = ctx.paths.local_shares()?;
    let mine = |share: &Share| codes.iter().find(|l| l.lookup == share.lookup);
    // This machine's word on its own shares wins: ended here is ended, even if the hub
    // has not heard yet.
    for share in &mut shares {
        if let Some(ended) = mine(share).and_then(|l| l.ended) {
            share.state = ended.state;
        }
    }
    let code_for = |share: &Share| mine(share).map(|l| l.code.clone());
    if ctx.json {
        let shares: Vec<_> = shares
            .iter()
            .map(|s| {
                json!({
                    "code": code_for(s),
                    "name": s.name,
                    "routes": s.routes,
                    "joined": s.joined,
                    "expires_at": output::rfc3339(s.expires_at),
                    "state": s.state,
                })
            })
            .collect();
        output::json(&json!({ "shares": shares }));
        return Ok(ExitCode::SUCCESS);
    }
    let now = time::OffsetDateTime::now_utc();
    let active: Vec<&Share> = shares
        .iter()
        .filter(|s| s.state == ShareState::Active)
        .collect();
    if active.is_empty() {
        println!("No active shares. Create one with: connect share");
    } else {
        println!("Active Environment Shares");
    }
    for share in active {
        let code = code_for(share).unwrap_or_else(|| share.public_name.clone());
        println!("{code} ({})", share.name);
        println!(
            "  Routes: {} | Joined: {} | Expires: {}",
            share.routes.len(),
            share.joined,
            output::short(share.expires_at - now)
        );
    }
    // Ended shares made here, with their codes: which of them was revoked or expired.
    let past: Vec<&Share> = shares
        .iter()
        .filter(|s| s.state != ShareState::Active && mine(s).is_some())
        .collect();
    if !past.is_empty() {
        println!("Past shares");
    }
    for share in past {
        let code = code_for(share).unwrap_or_default();
        println!(
            "{code} ({}) {} | Joined: {}",
            share.name, share.state, share.joined
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn info(ctx: &Context, code: &ShareCode) -> anyhow::Result<ExitCode> {
    let info = ctx.agent_hub()?.share_info(&code.lookup()).await?;
    if ctx.json {
        output::json(&json!({
            "code": code.to_string(),
            "name": info.share.name,
            "state": info.share.state,
            "routes": info.share.routes,
            "joins": info.joins.iter().map(|j| json!({"agent": j.agent, "at": output::rfc3339(j.at), "from": j.from})).collect::<Vec<_>>(),
            "http_log": info.http_log.iter().map(|h| json!({
                "at": output::rfc3339(h.at), "method": h.method, "path": h.path,
                "status": h.status, "bytes": h.bytes, "client": h.client,
            })).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let share = &info.share;
    println!("Share {code} ({})", share.name);
    println!("State: {}", share.state);
    println!("Machine IP: {}", share.machine_ip);
    if let Some(url) = &share.url {
        println!("URL: {url}");
    }
    print_routes(&share.routes, share.all_ports.as_deref());
    println!(
        "{}",
        output::expires_line(share.expires_at, time::OffsetDateTime::now_utc())
    );
    if info.joins.is_empty() {
        println!("Joins: none yet");
    } else {
        println!("Joins:");
        for join in &info.joins {
            println!(
                "  • {} at {} from {}",
                join.agent,
                output::gmt(join.at),
                join.from
            );
        }
    }
    if !info.http_log.is_empty() {
        println!("HTTP access log:");
        for entry in &info.http_log {
            println!(
                "  {} {} {} {} {} bytes {}",
                output::rfc3339(entry.at),
                entry.client,
                entry.method,
                entry.path,
                entry.status,
                entry.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, port: u16) -> Route {
        Route {
            name: name.into(),
            target: format!("localhost:{port}"),
            port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn the_http_service_is_chosen_by_flag_then_name_then_port() {
        let routes = [
            route("postgres", 5432),
            route("frontend", 3000),
            route("api", 9000),
        ];
        assert_eq!(pick_http(&routes, None, None, false).0, Some(9000));
        assert_eq!(pick_http(&routes[..2], None, None, false).0, Some(3000));
        assert_eq!(pick_http(&routes[..1], None, None, false).0, None);
        assert_eq!(pick_http(&routes, Some(5432), None, false).0, Some(5432));
        assert_eq!(pick_http(&routes, None, None, true).0, None);
        assert_eq!(pick_http(&routes, None, Some(5432), false).0, Some(5432));
    }
}
