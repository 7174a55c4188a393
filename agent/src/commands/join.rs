//! `connect join CODE`: check the code with the hub, verify the sharer's key against the
//! code before sending it a byte, and bring the shared machine up at its static address:
//! on a TUN interface, or fully in user space (each route on a local port; its own
//! loopback address per share so ports never collide).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use connect_api::{
    JoinRequest, JoinResponse, Protocol as WireProtocol, RegisterRequest, RegisterResponse,
    StreamEvent, WireKey,
};
use connect_netstack::io::Netstack;
use connect_netstack::{Ipv4Net, NodeConfig, PeerConfig, Policy, PublicKey, StaticSecret, relay};
use connect_netstack::{RelayConfig, RelayTransport};
use futures_util::StreamExt;
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};
use zeroize::Zeroizing;

use crate::cli::JoinArgs;
use crate::code::{Role, ShareCode};
use crate::context::Context;
use crate::error::Fail;
use crate::hub::Hub;
use crate::output;

const MTU: u16 = 1420;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a joiner lingers after its share ended, for the sharer's resets.
const GOODBYE: Duration = Duration::from_secs(1);
/// How often a joiner tries to hear from a hub that went away.
const STREAM_RETRY: Duration = Duration::from_secs(5);

struct Forward {
    name: String,
    protocol: WireProtocol,
    /// The route's port on the shared machine.
    remote_port: u16,
    address: SocketAddr,
}

/// A join the hub accepted and the code vouched for.
struct Joined {
    hub: Hub,
    code: ShareCode,
    secret: StaticSecret,
    /// The guest identity's relay slot and token.
    guest: RegisterResponse,
    share: JoinResponse,
}

/// The hub's event stream.
type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = StreamEvent>>>;

/// The tunnel to the shared machine, and how local programs reach it.
struct Tunnel {
    /// Held, not read: the tunnel lives until this is dropped.
    _net: Arc<Netstack>,
    /// The TUN interface, or `None` in user space.
    interface: Option<String>,
    /// Why there is no TUN interface.
    why: String,
    forwards: Vec<Forward>,
    socks: Option<SocketAddr>,
}

pub async fn run(ctx: &Context, args: JoinArgs) -> anyhow::Result<ExitCode> {
    // The tunnel's socket comes first: its port goes with our LAN addresses to the sharer.
    let socket = connect_netstack::io::tunnel_socket().await?;
    let candidates = crate::candidates::local(socket.local_addr()?.port());
    let userspace = userspace_for_certain(&args);
    let joined = enter(ctx, &args.code, candidates, userspace.is_some()).await?;
    // With --ssh, the key is fetched and opened before any tunnel: a wrong password
    // fails at once.
    let ssh = if args.ssh {
        Some(open_ssh_key(&joined).await?)
    } else {
        None
    };
    if !ctx.json {
        if ssh.is_some() {
            eprintln!("==> connect: Connecting to: {}", joined.share.name);
        } else {
            println!("==> connect: Connecting to: {}", joined.share.name);
        }
    }
    let tunnel = open_tunnel(&joined, &args, userspace, socket).await?;
    if let Some((user, key)) = ssh {
        let address = ssh_address(&tunnel, &joined.share)?;
        if ctx.json {
            report(ctx, &joined.share, &tunnel);
        } else {
            eprintln!(
                "==> connect: SSH to {user}@{} through the tunnel",
                joined.share.machine_ip
            );
        }
        return crate::ssh::session::run(&key, &user, address, &args.ssh_args).await;
    }
    // Listening to the hub before saying "ready", so a share ending right after is heard.
    let events: Events = Box::pin(joined.hub.stream().await?);
    report(ctx, &joined.share, &tunnel);
    let ended = stay_joined(ctx, &joined, events).await?;
    if ended.is_some() {
        // The sharer resets our connections as it drops us; keep the interface up a
        // moment so those resets reach the applications instead of a vanished device.
        tokio::time::sleep(GOODBYE).await;
    }
    drop(tunnel);
    match ended {
        None => {
            if !ctx.json {
                println!("==> connect: Disconnected.");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(state) => {
            eprintln!("[x] The share was {state}; disconnected.");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Registers a fresh guest identity (its own key and relay slot, so a join never disturbs
/// an agent running on this machine), joins, and checks the sharer's key against the code.
async fn enter(
    ctx: &Context,
    code: &str,
    candidates: Vec<std::net::SocketAddr>,
    userspace: bool,
) -> anyhow::Result<Joined> {
    let code = ShareCode::parse(code).ok_or(Fail::ShareNotFound)?;
    let secret = StaticSecret::from(rand::random::<[u8; 32]>());
    let public = PublicKey::from(&secret);
    let name = match (&ctx.config.name, ctx.paths.token_value()) {
        (Some(agent), Some(_)) => format!("{agent} ({})", super::user_at_host()),
        _ => super::user_at_host(),
    };
    let hub = Hub::new(&ctx.hub_url, None)?;
    let guest = hub
        .register(&RegisterRequest {
            name,
            public_key: WireKey(public.to_bytes()),
            auth_key: None,
            guest: true,
        })
        .await?;
    let hub = hub.with_token(guest.token.0.clone());
    let share = hub
        .join(&JoinRequest {
            lookup: code.lookup(),
            key_mac: code.mac(Role::Joiner, public.as_bytes()),
            candidates,
            userspace,
        })
        .await?;
    if !code.verify(
        Role::Sharer,
        &share.sharer_public_key.0,
        &share.sharer_key_mac,
    ) {
        return Err(Fail::ForgedSharer.into());
    }
    check_hub_values(&share)?;
    Ok(Joined {
        hub,
        code,
        secret,
        guest,
        share,
    })
}

/// What the hub says beside the code-vouched key is checked before any of it is used: the
/// addresses must be two in the tunnel range (a TUN joiner routes to them), the SSH user
/// an account name (it goes on an `ssh` command line).
fn check_hub_values(share: &JoinResponse) -> Result<(), Fail> {
    let addresses_ok = connect_api::in_overlay(share.machine_ip)
        && connect_api::in_overlay(share.joiner_ip)
        && share.machine_ip != share.joiner_ip;
    if !addresses_ok {
        return Err(Fail::Hub(format!(
            "The hub sent tunnel addresses outside 172.16.0.0/12 ({} and {}); refusing to connect",
            share.machine_ip, share.joiner_ip
        )));
    }
    if let Some(user) = &share.ssh_user
        && !connect_api::is_account_name(user)
    {
        return Err(Fail::Hub(
            "The hub sent an SSH user that is not an account name; refusing to connect".into(),
        ));
    }
    Ok(())
}

/// The share's SSH user and its private key, opened with the user's password.
async fn open_ssh_key(joined: &Joined) -> anyhow::Result<(String, Zeroizing<String>)> {
    use crate::ssh::keypair::{self, KeyError};
    let user = joined.share.ssh_user.clone().ok_or(Fail::NoSsh)?;
    let sealed = joined.hub.ssh_key(&joined.code.lookup()).await?;
    let password = crate::ssh::password::join_password()?;
    let key = keypair::decrypt(&sealed.encrypted_key, &password).map_err(|err| match err {
        KeyError::WrongPassword => Fail::WrongSshPassword,
        other @ (KeyError::Format | KeyError::Generate(_)) => Fail::Hub(other.to_string()),
    })?;
    Ok((user, key))
}

/// Why this join will run in user space, when that is certain before joining: `--no-tun`,
/// or no CAP_NET_ADMIN to make a TUN device with. The sharer is told (it then leaves out
/// checksums no kernel will check); a TUN that fails for another reason is found later.
fn userspace_for_certain(args: &JoinArgs) -> Option<String> {
    if args.no_tun {
        Some("--no-tun".to_owned())
    } else if !crate::tun::permitted() {
        Some("no TUN device: this needs CAP_NET_ADMIN".to_owned())
    } else {
        None
    }
}

/// Brings the shared machine up: a TUN interface where the kernel allows one, else user
/// space with local forwards and a SOCKS5 proxy; returns once WireGuard has a session.
/// Never a TUN after telling the sharer `userspace`: its segments would lack checksums.
async fn open_tunnel(
    joined: &Joined,
    args: &JoinArgs,
    userspace: Option<String>,
    socket: UdpSocket,
) -> anyhow::Result<Tunnel> {
    let share = &joined.share;
    let (tun, why) = if let Some(why) = userspace {
        (None, why)
    } else {
        match crate::tun::create(share.joiner_ip, share.machine_ip, MTU) {
            Ok(tun) => (Some(tun), String::new()),
            Err(err) => (
                None,
                format!("no TUN device ({err}); this needs CAP_NET_ADMIN"),
            ),
        }
    };
    let mut config = NodeConfig::new(joined.secret.clone());
    let interface = tun.as_ref().map(|t| t.name.clone());
    let net = match tun {
        Some(tun) => Netstack::spawn_with_tun(config, socket, tun.device)?,
        None => {
            config.addresses = vec![share.joiner_ip];
            Netstack::spawn(config, socket)?
        }
    };
    net.set_relay_dialer(joined.hub.relay_dialer()).await?;
    net.set_relay(RelayConfig {
        addr: crate::hub::resolve_relay(&share.relay).await?,
        slot: joined.guest.relay_id,
        key: relay::relay_key(&joined.guest.token.0),
        direct: crate::config::direct_paths(),
        stream_only: false,
    })
    .await?;
    let sharer = PublicKey::from(share.sharer_public_key.0);
    net.add_peer(PeerConfig {
        public_key: sharer,
        allowed_ips: Ipv4Net::new(share.machine_ip, 32).into_iter().collect(),
        endpoint: Some(relay::synthetic_endpoint(share.sharer_relay_id)),
        persistent_keepalive: Some(25),
        policy: Policy::default(),
        // A sharer's packets end in its userspace stack, never in a kernel.
        needs_checksums: false,
    })
    .await?;
    if share.approve {
        wait_for_approval(&net, sharer, joined).await?;
    } else {
        wait_for_handshake(&net, sharer).await?;
    }
    if net
        .stats()
        .await
        .is_ok_and(|s| s.relay_transport == Some(RelayTransport::Stream))
    {
        eprintln!("[!] {}", crate::netcheck::TCP_FALLBACK_HINT);
    }
    let net = Arc::new(net);
    let (forwards, socks) = if interface.is_some() {
        (Vec::new(), None)
    } else {
        userspace_access(&net, share, args.socks).await?
    };
    Ok(Tunnel {
        _net: net,
        interface,
        why,
        forwards,
        socks,
    })
}

/// User space: each route on a local port, and a SOCKS5 proxy for the rest.
async fn userspace_access(
    net: &Arc<Netstack>,
    share: &JoinResponse,
    socks: Option<SocketAddr>,
) -> anyhow::Result<(Vec<Forward>, Option<SocketAddr>)> {
    let forwards = userspace_forwards(net, share).await?;
    let share_loopback = loopback_for(share.machine_ip);
    let listener = crate::socks::bind(socks, share_loopback).await?;
    let socks = listener.local_addr()?;
    tokio::spawn(crate::socks::serve(
        listener,
        net.clone(),
        share.machine_ip,
        share_loopback,
    ));
    Ok((forwards, Some(socks)))
}

/// Where ssh connects: the machine's own port 22 on a TUN interface, else its forward.
fn ssh_address(tunnel: &Tunnel, share: &JoinResponse) -> Result<SocketAddr, Fail> {
    match &tunnel.interface {
        Some(_) => Ok(SocketAddr::from((share.machine_ip, crate::ssh::PORT))),
        None => tunnel
            .forwards
            .iter()
            .find(|f| f.protocol == WireProtocol::Tcp && f.remote_port == crate::ssh::PORT)
            .map(|f| f.address)
            .ok_or(Fail::NoSsh),
    }
}

/// Keeps the tunnel up until Ctrl-C or SIGTERM (`None`) or the share ends (its state).
/// A hub that goes away does not take the tunnel with it; its stream is opened again.
async fn stay_joined(
    ctx: &Context,
    joined: &Joined,
    events: Events,
) -> anyhow::Result<Option<connect_api::ShareState>> {
    let lookup = joined.code.lookup();
    let mut events = Some(events);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut reconnect = tokio::time::interval(STREAM_RETRY);
    Ok(loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break None,
            _ = terminate.recv() => break None,
            event = next_event(&mut events) => match event {
                Some(StreamEvent::ShareEnded { lookup: ended, state }) if ended == lookup => break Some(state),
                Some(_) => {}
                // The hub went away; the tunnel itself does not need it. Keep running,
                // and listen again once it is back.
                None => {
                    if !ctx.json {
                        eprintln!("[!] Lost contact with the hub; the tunnel stays up.");
                    }
                    tracing::warn!("lost the hub's event stream; the tunnel stays up");
                    events = None;
                    reconnect.reset();
                }
            },
            _ = reconnect.tick(), if events.is_none() => {
                if let Ok(Ok(stream)) = tokio::time::timeout(STREAM_RETRY, joined.hub.stream()).await {
                    events = Some(Box::pin(stream) as Events);
                }
            }
        }
    })
}

/// The next event of the hub's stream; never, while there is none.
async fn next_event<S: futures_util::Stream + Unpin>(events: &mut Option<S>) -> Option<S::Item> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Waits until WireGuard has a session with the sharer, re-sending the initiation after
/// a quarter of a second and then each second, in case the first one raced the sharer
/// learning about us (it hears of the join a few milliseconds after we do). Each retry
/// replaces the initiation before it, so after the first they wait a whole second: a
/// slow path's answer must have time to come back.
async fn wait_for_handshake(net: &Netstack, sharer: PublicKey) -> anyhow::Result<()> {
    let quick = tokio::time::timeout(
        Duration::from_millis(250),
        net.handshake(sharer, Duration::from_secs(1)),
    )
    .await;
    if let Ok(done) = quick {
        return Ok(done?);
    }
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        net.handshake(sharer, Duration::from_secs(1)),
    )
    .await
    {
        Ok(done) => Ok(done?),
        Err(_) => Err(Fail::Hub(
            "Cannot reach the shared machine: no answer through the hub relay. Is the sharing agent running (connect up)?".into(),
        )
        .into()),
    }
}

/// `share --approve`: the sharer lets this joiner in when it says so, so the handshake is
/// retried each second for as long as it takes; the sharer's refusal, or the share's end,
/// heard on the hub's stream, stops the wait.
async fn wait_for_approval(
    net: &Netstack,
    sharer: PublicKey,
    joined: &Joined,
) -> anyhow::Result<()> {
    eprintln!("==> connect: Waiting for the sharer to approve this join...");
    let lookup = joined.code.lookup();
    let mut events: Option<Events> = match joined.hub.stream().await {
        Ok(stream) => Some(Box::pin(stream)),
        Err(err) => {
            tracing::warn!("{err:#}; waiting for the handshake alone");
            None
        }
    };
    let handshake = net.handshake(sharer, Duration::from_secs(1));
    tokio::pin!(handshake);
    loop {
        tokio::select! {
            done = &mut handshake => return Ok(done?),
            event = next_event(&mut events) => match event {
                Some(StreamEvent::JoinDenied { lookup: denied }) if denied == lookup => {
                    return Err(Fail::JoinDenied.into());
                }
                Some(StreamEvent::ShareEnded { lookup: ended, .. }) if ended == lookup => {
                    return Err(Fail::ShareNotFound.into());
                }
                Some(_) => {}
                None => events = None,
            },
        }
    }
}

/// 172.X.Y.Z → 127.X.Y.Z: a loopback address of its own per share (Linux answers the
/// whole 127/8), so each service keeps its port and two shares never collide.
fn loopback_for(machine: Ipv4Addr) -> Ipv4Addr {
    let [_, b, c, d] = machine.octets();
    Ipv4Addr::new(127, b, c, d)
}

async fn userspace_forwards(
    net: &Arc<Netstack>,
    joined: &JoinResponse,
) -> anyhow::Result<Vec<Forward>> {
    let local = loopback_for(joined.machine_ip);
    let mut forwards = Vec::new();
    for route in &joined.routes {
        let remote = SocketAddrV4::new(joined.machine_ip, route.port);
        let address = match route.protocol {
            WireProtocol::Tcp => {
                let listener = match TcpListener::bind((local, route.port)).await {
                    Ok(listener) => listener,
                    Err(_) => TcpListener::bind((local, 0)).await?,
                };
                let address = listener.local_addr()?;
                tokio::spawn(forward_tcp(listener, net.clone(), remote));
                address
            }
            WireProtocol::Udp => {
                let socket = match UdpSocket::bind((local, route.port)).await {
                    Ok(socket) => socket,
                    Err(_) => UdpSocket::bind((local, 0)).await?,
                };
                let address = socket.local_addr()?;
                tokio::spawn(forward_udp(Arc::new(socket), net.clone(), remote));
                address
            }
        };
        forwards.push(Forward {
            name: route.name.clone(),
            protocol: route.protocol,
            remote_port: route.port,
            address,
        });
    }
    Ok(forwards)
}

async fn forward_tcp(listener: TcpListener, net: Arc<Netstack>, remote: SocketAddrV4) {
    while let Ok((mut client, _)) = listener.accept().await {
        let net = net.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            match net.connect_tcp(remote).await {
                Ok(mut tunnel) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut tunnel).await;
                }
                Err(err) => tracing::debug!(%err, %remote, "tunnel connection refused"),
            }
        });
    }
}

/// One tunnel flow per local client address; answers go back to that client.
async fn forward_udp(socket: Arc<UdpSocket>, net: Arc<Netstack>, remote: SocketAddrV4) {
    let mut senders: std::collections::HashMap<SocketAddr, tokio::sync::mpsc::Sender<Vec<u8>>> =
        Default::default();
    let mut buf = vec![0u8; 65536];
    while let Ok((len, client)) = socket.recv_from(&mut buf).await {
        let datagram = buf[..len].to_vec();
        if let Some(tx) = senders.get(&client)
            && tx.try_send(datagram.clone()).is_ok()
        {
            continue;
        }
        let socket = socket.clone();
        let answer_to_client = move |answer: bytes::Bytes| {
            let socket = socket.clone();
            async move {
                let _ = socket.send_to(&answer, client).await;
                true
            }
        };
        let Some(tx) = crate::udp_flow::spawn(&net, remote, answer_to_client).await else {
            continue;
        };
        let _ = tx.try_send(datagram);
        senders.insert(client, tx);
    }
}

fn report(ctx: &Context, joined: &JoinResponse, tunnel: &Tunnel) {
    let interface = tunnel.interface.as_deref();
    let (why, forwards, socks) = (&tunnel.why, &tunnel.forwards, tunnel.socks);
    let routes: Vec<_> = match interface {
        Some(_) => joined
            .routes
            .iter()
            .map(|r| json!({"name": r.name, "protocol": r.protocol, "address": format!("{}:{}", joined.machine_ip, r.port)}))
            .collect(),
        None => forwards
            .iter()
            .map(|f| json!({"name": f.name, "protocol": f.protocol, "address": f.address.to_string()}))
            .collect(),
    };
    if ctx.json {
        output::json(&json!({
            "mode": if interface.is_some() { "tun" } else { "userspace" },
            "machine_ip": joined.machine_ip,
            "interface": interface,
            "socks": socks.map(|s| s.to_string()),
            "routes": routes,
        }));
        return;
    }
    match interface {
        Some(name) => println!(
            "==> connect: Mode: TUN interface {name} ({} → {})",
            joined.joiner_ip, joined.machine_ip
        ),
        None => println!("==> connect: Mode: user space ({why})"),
    }
    println!("==> connect: Machine IP: {}", joined.machine_ip);
    for route in &routes {
        println!(
            "==> connect:   {} → {}",
            route["name"].as_str().unwrap_or_default(),
            route["address"].as_str().unwrap_or_default()
        );
    }
    if let Some(all) = &joined.all_ports {
        println!("==> connect:   every port of {all} → {}", joined.machine_ip);
    }
    if let Some(socks) = socks {
        println!("==> connect: SOCKS address: {socks}");
    }
    println!("==> connect: Press Ctrl-C to stop connection.");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(machine: &str, joiner: &str, ssh_user: Option<&str>) -> JoinResponse {
        JoinResponse {
            name: "demo".into(),
            machine_ip: machine.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            joiner_ip: joiner.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            sharer_public_key: WireKey([7; 32]),
            sharer_key_mac: String::new(),
            sharer_relay_id: 1,
            relay: "hub:7070".into(),
            routes: Vec::new(),
            all_ports: None,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
            ssh_user: ssh_user.map(str::to_owned),
            approve: false,
        }
    }

    #[test]
    fn what_a_lying_hub_says_beside_the_key_is_refused() {
        assert!(check_hub_values(&response("172.16.0.2", "172.16.0.3", Some("vagrant"))).is_ok());
        for (machine, joiner) in [
            ("169.254.169.254", "172.16.0.3"),
            ("172.16.0.2", "10.0.0.5"),
            ("172.16.0.2", "172.16.0.2"),
        ] {
            assert!(
                check_hub_values(&response(machine, joiner, None)).is_err(),
                "{machine} {joiner}"
            );
        }
        for user in ["-oProxyCommand=touch /tmp/pwned", "root@evil", "a b"] {
            let share = response("172.16.0.2", "172.16.0.3", Some(user));
            assert!(check_hub_values(&share).is_err(), "{user:?}");
        }
    }
}
