//! What this machine's network allows, as the hub sees it: the probes behind
//! `connect netcheck` and the hint `join` prints when it falls back to the hub's TCP port.
//!
//! UDP: one socket asks the relay's port and the hub's second probe port "where do you see
//! me?" (`relay::Frame::Probe`). No answer: UDP is blocked. Answers with our own address:
//! no NAT. The same public port from both: the NAT keeps one mapping across destinations
//! (endpoint-independent, hole punching works); different ports: it does not.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use connect_netstack::relay::{self, Frame};
use serde::Serialize;
use tokio::net::UdpSocket;

use crate::hub::Hub;

/// Probes per port, and how long to wait for each answer.
const ATTEMPTS: usize = 3;
const WAIT: Duration = Duration::from_millis(400);

/// The hint `join` prints when its tunnel goes over the hub's TCP port.
pub const TCP_FALLBACK_HINT: &str = "UDP to the hub is blocked here; the tunnel goes over the hub's HTTPS port (relayed-tcp), which is slower. Run connect netcheck for details.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nat {
    None,
    EndpointIndependent,
    EndpointDependent,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Direct,
    Relayed,
    RelayedTcp,
    Unreachable,
}

/// The contract's `netcheck` shape.
#[derive(Debug, Serialize)]
pub struct Report {
    pub hub: String,
    pub hub_rtt_ms: Option<u64>,
    pub udp: bool,
    pub public_addr: Option<SocketAddr>,
    pub nat: Nat,
    pub ipv6: bool,
    pub proxy: Option<String>,
    pub verdict: Verdict,
    pub advice: String,
}

/// The NAT kind from what the two ports saw (`None`: no answer from that port) and the
/// address our socket has on the way to the hub.
pub fn nat_kind(local: SocketAddr, relay: Option<SocketAddr>, probe: Option<SocketAddr>) -> Nat {
    match (relay, probe) {
        (Some(seen), _) if seen == local => Nat::None,
        (Some(a), Some(b)) if a == b => Nat::EndpointIndependent,
        (Some(_), Some(_)) => Nat::EndpointDependent,
        _ => Nat::Unknown,
    }
}

/// The verdict and what to do about it.
pub fn verdict(reachable: bool, udp: bool, nat: Nat) -> (Verdict, &'static str) {
    match (reachable, udp, nat) {
        (false, _, _) => (
            Verdict::Unreachable,
            "The hub's API cannot be reached from here: check its URL, the network, or HTTPS_PROXY.",
        ),
        (true, false, _) => (Verdict::RelayedTcp, TCP_FALLBACK_HINT),
        (true, true, Nat::None | Nat::EndpointIndependent) => (
            Verdict::Direct,
            "Direct paths should work: tunnels start through the hub's relay and go peer to peer within seconds.",
        ),
        (true, true, Nat::EndpointDependent) => (
            Verdict::Relayed,
            "This NAT picks a new port for each destination: tunnels stay on the hub's relay unless the other side's NAT is an easy one.",
        ),
        (true, true, Nat::Unknown) => (
            Verdict::Relayed,
            "UDP works, but the NAT kind is unknown (the hub offers one probe port): tunnels start relayed and go direct when they can.",
        ),
    }
}

/// The proxy a request to `hub` goes through, as curl would pick it from the environment.
pub fn proxy_for(hub: &str, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let url = reqwest::Url::parse(hub).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| var(name).filter(|v| !v.is_empty()))
    };
    let no_proxy = first(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
    let excluded = no_proxy.split(',').map(str::trim).any(|entry| {
        let entry = entry.trim_start_matches('.');
        entry == "*"
            || (!entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}"))))
    });
    if excluded {
        return None;
    }
    match url.scheme() {
        "https" => first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]),
        _ => first(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]),
    }
}

/// Runs every check against `hub`.
pub async fn check(hub: &Hub) -> Report {
    let proxy = proxy_for(hub.url(), |name| std::env::var(name).ok());
    let (info, rtt) = match hub.netcheck_info().await {
        Ok(info) => {
            // The first request paid for the connection (and TLS); time a second.
            let started = Instant::now();
            let rtt = hub.netcheck_info().await.ok().map(|_| started.elapsed());
            (Some(info), rtt)
        }
        Err(_) => (None, None),
    };
    let (relay_seen, probe_seen, local) = match &info {
        Some(info) => udp_probes(&info.relay, info.probe.as_deref()).await,
        None => (None, None, None),
    };
    let udp = relay_seen.is_some();
    let nat = match local {
        Some(local) => nat_kind(local, relay_seen, probe_seen),
        None => Nat::Unknown,
    };
    let ipv6 = match &info {
        Some(info) => ipv6_answers(&info.relay).await,
        None => false,
    };
    let (verdict, advice) = verdict(info.is_some(), udp, nat);
    Report {
        hub: hub.url().to_owned(),
        hub_rtt_ms: rtt.map(|rtt| u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX)),
        udp,
        public_addr: relay_seen,
        nat,
        ipv6,
        proxy,
        verdict,
        advice: advice.to_owned(),
    }
}

/// What the relay's port and the probe port saw of one socket, and that socket's own
/// address on the way to the relay.
async fn udp_probes(
    relay: &str,
    probe: Option<&str>,
) -> (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>) {
    // IPv4 where the hub has it, else IPv6 (an IPv6-only network).
    let v6 = resolve(relay, false).await.is_none();
    let Some(relay) = resolve(relay, v6).await else {
        return (None, None, None);
    };
    let Ok(socket) = UdpSocket::bind(unspecified(v6)).await else {
        return (None, None, None);
    };
    let local = local_addr_towards(relay, socket.local_addr().ok()).await;
    let relay_seen = ask(&socket, relay).await;
    let probe_seen = match probe {
        Some(probe) if relay_seen.is_some() => match resolve(probe, v6).await {
            Some(probe) => ask(&socket, probe).await,
            None => None,
        },
        _ => None,
    };
    (relay_seen, probe_seen, local)
}

/// Whether the relay answers over IPv6, when its host has an IPv6 address.
async fn ipv6_answers(relay: &str) -> bool {
    let Some(target) = resolve(relay, true).await else {
        return false;
    };
    let Ok(socket) = UdpSocket::bind(unspecified(true)).await else {
        return false;
    };
    ask(&socket, target).await.is_some()
}

fn unspecified(v6: bool) -> &'static str {
    if v6 { "[::]:0" } else { "0.0.0.0:0" }
}

async fn resolve(host_port: &str, v6: bool) -> Option<SocketAddr> {
    tokio::net::lookup_host(host_port)
        .await
        .ok()?
        .find(|addr| addr.is_ipv6() == v6)
}

/// Our address as the kernel would pick it to reach `to`, with the port `bound` has.
async fn local_addr_towards(to: SocketAddr, bound: Option<SocketAddr>) -> Option<SocketAddr> {
    let route = UdpSocket::bind(unspecified(to.is_ipv6())).await.ok()?;
    route.connect(to).await.ok()?;
    let ip: IpAddr = route.local_addr().ok()?.ip();
    Some(SocketAddr::new(ip, bound?.port()))
}

/// Sends probes to `to` and returns the address in the first answer.
async fn ask(socket: &UdpSocket, to: SocketAddr) -> Option<SocketAddr> {
    let mut buf = [0u8; 64];
    for attempt in 0..ATTEMPTS {
        let nonce = rand::random::<u64>() ^ attempt as u64;
        socket.send_to(&relay::write_probe(nonce), to).await.ok()?;
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Ok(Ok((len, _))) =
            tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            if let Some(Frame::ProbeAck {
                nonce: got,
                observed,
            }) = relay::parse(&buf[..len])
                && got == nonce
            {
                return Some(observed);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn the_nat_kind_follows_from_what_two_ports_saw() {
        let local = addr("192.168.1.2:40000");
        let public = Some(addr("203.0.113.5:40000"));
        assert_eq!(nat_kind(local, Some(local), Some(local)), Nat::None);
        assert_eq!(nat_kind(local, public, public), Nat::EndpointIndependent);
        assert_eq!(
            nat_kind(local, public, Some(addr("203.0.113.5:51234"))),
            Nat::EndpointDependent
        );
        assert_eq!(nat_kind(local, public, None), Nat::Unknown);
        assert_eq!(nat_kind(local, None, None), Nat::Unknown);
    }

    #[test]
    fn verdicts_and_their_names() {
        assert_eq!(verdict(false, false, Nat::Unknown).0, Verdict::Unreachable);
        assert_eq!(verdict(true, false, Nat::Unknown).0, Verdict::RelayedTcp);
        assert_eq!(verdict(true, true, Nat::None).0, Verdict::Direct);
        assert_eq!(
            verdict(true, true, Nat::EndpointIndependent).0,
            Verdict::Direct
        );
        assert_eq!(
            verdict(true, true, Nat::EndpointDependent).0,
            Verdict::Relayed
        );
        let names = serde_json::to_value([Verdict::RelayedTcp, Verdict::Unreachable]).ok();
        assert_eq!(
            names,
            Some(serde_json::json!(["relayed-tcp", "unreachable"]))
        );
        let nats = serde_json::to_value([Nat::EndpointIndependent, Nat::None]).ok();
        assert_eq!(
            nats,
            Some(serde_json::json!(["endpoint-independent", "none"]))
        );
    }

    #[test]
    fn the_proxy_is_picked_as_curl_picks_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let proxy = Some("http://proxy:3128".to_owned());
        let https = env(&[("HTTPS_PROXY", "http://proxy:3128")]);
        assert_eq!(proxy_for("https://hub.example.com", https), proxy);
        assert_eq!(proxy_for("http://hub.example.com", https), None);
        let lower = env(&[
            ("https_proxy", "http://proxy:3128"),
            ("no_proxy", "other.org"),
        ]);
        assert_eq!(proxy_for("https://hub.example.com", lower), proxy);
        let excluded = env(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("NO_PROXY", ".example.com"),
        ]);
        assert_eq!(proxy_for("https://hub.example.com", excluded), None);
        let all = env(&[("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", "*")]);
        assert_eq!(proxy_for("https://hub.example.com", all), None);
    }
}
