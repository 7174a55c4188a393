//! The wire types of the hub's HTTP API, shared by the agent (`connect`) and the hub
//! (`connect-coordinator`) so neither side can drift from the other.
//!
//! Only data shapes live here: no HTTP client or server, no storage. Responses never deny
//! unknown fields and new fields get `#[serde(default)]`, so an older agent keeps working
//! against a newer hub.

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

use std::fmt;
use std::net::Ipv4Addr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const API_VERSION: &str = "v1";

/// Whether `name` is a POSIX account name as `useradd` accepts it: the one rule for SSH
/// users, applied by the hub to what a sharer offers and by a joiner to what the hub
/// hands it (a name is put on an `ssh` command line).
pub fn is_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// What is wrong with a service route, if anything: the one rule for names (what users
/// type) and targets (`HOST:PORT` the sharing machine resolves), applied by the agent
/// that keeps its services and by the hub that lists a copy.
pub fn route_problem(route: &Route) -> Option<&'static str> {
    let name_ok = !route.name.is_empty()
        && route.name.len() <= 64
        && route
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Some("service name must be 1 to 64 letters, digits, '-', '_' or '.'");
    }
    if route.port == 0 {
        return Some("port must be 1 to 65535");
    }
    let target_ok = route.target.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && host.len() <= 253 && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !target_ok
        || route
            .target
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Some("target must be HOST:PORT");
    }
    None
}

/// What is wrong with a chosen public name (`share --public-name`), the first label of the
/// share's URL, if anything: a DNS label of lowercase letters, digits and inner hyphens.
/// Both the agent (before asking) and the hub (before storing) apply it.
pub fn public_name_problem(name: &str) -> Option<&'static str> {
    let label_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!label_ok).then_some(
        "a public name is 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen",
    )
}

/// Whether `ip` is in the tunnel range, 172.16.0.0/12, where every share's addresses are.
pub fn in_overlay(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    a == 172 && b & 0xf0 == 16
}

/// Route paths, with axum's `{param}` syntax.
pub mod routes {
    pub const HEALTHZ: &str = "/healthz";
    pub const METRICS: &str = "/metrics";
    pub const AGENTS: &str = "/v1/agents";
    pub const ME: &str = "/v1/agents/me";
    pub const SERVICES: &str = "/v1/services";
    pub const SERVICE: &str = "/v1/services/{name}";
    pub const SHARES: &str = "/v1/shares";
    pub const SHARE: &str = "/v1/shares/{lookup}";
    pub const SHARE_REVOKE: &str = "/v1/shares/{lookup}/revoke";
    pub const SHARE_SSH_KEY: &str = "/v1/shares/{lookup}/ssh-key";
    pub const JOIN: &str = "/v1/join";
    pub const STREAM: &str = "/v1/stream";
    /// Where `connect netcheck` sends its UDP probes; no token needed.
    pub const NETCHECK: &str = "/v1/netcheck";
    /// Upgraded to a relay stream when UDP to the relay is blocked.
    pub const RELAY: &str = "/v1/relay";
    /// `connect dashboard`: a one-time login link for the calling agent.
    pub const DASHBOARD_LINK: &str = "/v1/dashboard/link";
    /// The running agent's joiners as it sees them, for the dashboard.
    pub const PEERS: &str = "/v1/peers";
    /// `share --approve-join` / `--deny-join` made on the sharing machine, for the dashboard.
    pub const DECISIONS: &str = "/v1/shares/{lookup}/decisions";
}

/// `POST /v1/shares/{lookup}/decisions`: the sharing agent refused a joiner, which the
/// hub tells that joiner (an approval needs no word: the handshake completes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Decision {
    /// The joiner's WireGuard key, base64.
    pub public_key: String,
    pub approved: bool,
}

/// `POST /v1/dashboard/link`: a one-time login link, valid for minutes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DashboardLink {
    pub url: String,
}

/// `PUT /v1/peers`: what a running sharing agent sees of its joiners (sent every few
/// seconds while it has any). The hub only shows it: it decides nothing from it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerReport {
    pub peers: Vec<ReportedPeer>,
    /// Joiners of `--approve` shares waiting for the sharer's word.
    #[serde(default)]
    pub pending: Vec<PendingJoiner>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportedPeer {
    /// The share the joiner joined.
    pub lookup: String,
    pub agent: String,
    /// `direct`, `relayed` or `relayed-tcp`.
    pub path: String,
    pub endpoint: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds since the last WireGuard handshake, if there was one.
    pub handshake_secs_ago: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingJoiner {
    pub lookup: String,
    pub agent: String,
    /// The joiner's WireGuard key, base64: what an approval names.
    pub public_key: String,
}

/// A WireGuard public key, base64 on the wire like `wg` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireKey(pub [u8; 32]);

impl WireKey {
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for WireKey {
    /// Public keys are not secret, but a short form keeps logs readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireKey({}…)", &self.to_base64()[..8])
    }
}

impl fmt::Display for WireKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Serialize for WireKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for WireKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_base64(&text).ok_or_else(|| serde::de::Error::custom("not a base64 32-byte key"))
    }
}

/// A bearer token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One exposed service and, in a share, one route: `port` on the shared machine's
/// tunnel address goes to `target` (`HOST:PORT`) as the sharing machine reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub name: String,
    pub target: String,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareState {
    Active,
    Expired,
    Revoked,
}

impl fmt::Display for ShareState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShareState::Active => "active",
            ShareState::Expired => "expired",
            ShareState::Revoked => "revoked",
        })
    }
}

/// What went wrong, in `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    NotFound,
    /// The share code is unknown, or its share expired or was revoked.
    ShareNotFound,
    /// The share exists but has already ended (revoking it twice).
    ShareEnded,
    ServiceNotFound,
    /// The share does not offer SSH.
    NoSsh,
    InvalidRequest,
    MethodNotAllowed,
    Conflict,
    Gone,
    Unavailable,
    TooLarge,
    /// Too many requests from this address or agent; try again later.
    RateLimited,
    /// `share --public-name`: a live share already has this name.
    NameTaken,
    Internal,
    /// Any other failure, and any code this client does not know yet.
    #[serde(other)]
    Error,
}

/// The one error body of every failed request: `{"error": {"code", "message", "hint"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable and machine-readable: clients decide by it, never by the message.
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: String,
    pub public_key: WireKey,
    #[serde(default)]
    pub auth_key: Option<String>,
    /// A guest may only join shares; it needs no enrollment key.
    #[serde(default)]
    pub guest: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub agent_id: String,
    pub token: Token,
    /// This agent's slot on the hub's UDP relay.
    pub relay_id: u64,
    /// Where the relay listens, as agents should dial it (`HOST:PORT`).
    pub relay: String,
}

/// `GET /v1/netcheck`: the hub's UDP ports for probes, as `HOST:PORT`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetcheckInfo {
    /// The relay's port, which answers probes too.
    pub relay: String,
    /// A second port that answers only probes, when the hub has one.
    #[serde(default)]
    pub probe: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_id: String,
    pub name: String,
    pub relay_id: u64,
    pub relay: String,
    #[serde(default)]
    pub guest: bool,
    /// The hub's own WireGuard peer, which fetches public HTTP shares from sharers.
    #[serde(default)]
    pub hub_peer: Option<HubPeer>,
}

/// The hub as a WireGuard peer: a sharer lets it reach only its shares' HTTP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubPeer {
    pub public_key: WireKey,
    pub relay_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceList {
    pub services: Vec<Route>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateShareRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// HKDF of the share code; the hub never sees the code.
    pub lookup: String,
    pub expires_in_secs: u64,
    /// The sharer's own snapshot of what it serves.
    pub routes: Vec<Route>,
    /// `--all-ports`: every port of this host.
    #[serde(default)]
    pub all_ports: Option<String>,
    /// Port of the HTTP service for the public URL, `None` for `--disable-http`.
    #[serde(default)]
    pub http_port: Option<u16>,
    /// `--https-port`: the service at `http_port` speaks HTTPS (any certificate: the
    /// tunnel already authenticates the machine).
    #[serde(default)]
    pub https: bool,
    /// `--public-name`: the URL's first label, instead of a random one.
    #[serde(default)]
    pub public_name: Option<String>,
    /// MAC of the sharer's WireGuard key under the code, checked by joiners.
    pub key_mac: String,
    /// `USER:PASS` the hub asks for on the public URL (basic auth); stored only hashed.
    #[serde(default)]
    pub http_auth: Option<String>,
    /// `--ssh`: the key joiners download, encrypted on the sharing machine.
    #[serde(default)]
    pub ssh: Option<SshOffer>,
    /// `--max-joins`: distinct joiners the sharer lets in (it enforces it; the hub shows
    /// it and refuses early).
    #[serde(default)]
    pub max_joins: Option<u32>,
    /// `--approve`: each joiner waits until the sharer approves it.
    #[serde(default)]
    pub approve: bool,
}

/// SSH access to the shared machine. The hub keeps only the key encrypted under a
/// password that never leaves the sharing machine, so it cannot log in itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshOffer {
    /// The account joiners log in as.
    pub user: String,
    /// The private key in OpenSSH's encrypted format (bcrypt-pbkdf).
    pub encrypted_key: String,
    /// `--ssh-once`: the hub deletes the key after its first download.
    #[serde(default)]
    pub once: bool,
}

/// A joiner's download of a share's SSH key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshKey {
    pub user: String,
    pub encrypted_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Share {
    pub lookup: String,
    pub name: String,
    pub public_name: String,
    pub url: Option<String>,
    pub machine_ip: Ipv4Addr,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub state: ShareState,
    pub routes: Vec<Route>,
    #[serde(default)]
    pub all_ports: Option<String>,
    #[serde(default)]
    pub joined: u32,
    /// The account `join --ssh` logs in as, when the share offers SSH.
    #[serde(default)]
    pub ssh_user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareList {
    pub shares: Vec<Share>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRecord {
    pub agent: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpLogEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub client: String,
    #[serde(default)]
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareInfo {
    #[serde(flatten)]
    pub share: Share,
    pub joins: Vec<JoinRecord>,
    #[serde(default)]
    pub http_log: Vec<HttpLogEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub lookup: String,
    /// MAC of the joiner's WireGuard key under the code, checked by the sharer.
    pub key_mac: String,
    /// The joiner's own addresses (LAN interfaces, tunnel socket port), passed to the
    /// sharer so two machines behind one NAT find each other directly.
    #[serde(default)]
    pub candidates: Vec<std::net::SocketAddr>,
    /// The joiner runs in user space (no TUN device): no kernel checks the TCP checksums of
    /// what the sharer sends it, so the sharer may leave them out. Only said when certain.
    #[serde(default)]
    pub userspace: bool,
}

/// Everything a joiner needs to reach the shared machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub name: String,
    pub machine_ip: Ipv4Addr,
    pub joiner_ip: Ipv4Addr,
    pub sharer_public_key: WireKey,
    pub sharer_key_mac: String,
    pub sharer_relay_id: u64,
    /// The relay of the sharer's home hub.
    pub relay: String,
    pub routes: Vec<Route>,
    #[serde(default)]
    pub all_ports: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The account `join --ssh` logs in as, when the share offers SSH.
    #[serde(default)]
    pub ssh_user: Option<String>,
    /// `share --approve`: the sharer approves each joiner; the handshake waits until then.
    #[serde(default)]
    pub approve: bool,
}

/// A joiner as the sharer must configure it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedPeer {
    pub lookup: String,
    pub public_key: WireKey,
    pub key_mac: String,
    pub allowed_ip: Ipv4Addr,
    pub relay_id: u64,
    pub agent: String,
    /// Where the joiner says it may be reached directly (see `JoinRequest`); the sharer
    /// probes them. Empty in a snapshot.
    #[serde(default)]
    pub candidates: Vec<std::net::SocketAddr>,
    /// As the joiner said in its `JoinRequest`; false in a snapshot (not stored: a sharer
    /// keeps what it heard in `PeerJoined`, and checksums are right for any joiner).
    #[serde(default)]
    pub userspace: bool,
}

/// What the hub pushes on an agent's stream (server-sent events, one JSON per event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The full set of live joiners of this agent's shares, sent first on every
    /// (re)connect so a restarted agent or hub converges.
    Snapshot { peers: Vec<JoinedPeer> },
    /// A joiner arrived on one of this agent's shares.
    PeerJoined { peer: JoinedPeer },
    /// A share this agent shares or joined ended; drop its peers.
    ShareEnded { lookup: String, state: ShareState },
    /// This agent created a share (perhaps from another process): pick it up.
    ShareCreated { lookup: String },
    /// The share's owner moved its deadline from the dashboard.
    ShareExtended {
        lookup: String,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The sharer refused this agent's join (`--deny-join`, the dashboard): stop waiting.
    JoinDenied { lookup: String },
    /// The share's owner approved or denied a waiting joiner from the dashboard.
    JoinDecided {
        lookup: String,
        /// The joiner's WireGuard key, base64.
        public_key: String,
        approved: bool,
    },
}

/// Parses the contract's `DUR`: a whole number and a unit `s`, `m`, `h` or `d` (`90s`,
/// `30m`, `4h`, `7d`). Anything else, zero included, is `None`.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let secs_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    if n == 0 {
        return None;
    }
    n.checked_mul(secs_per).map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_checked() {
        for good in ["root", "vagrant", "dev_1", "a.b-c", "_svc"] {
            assert!(is_account_name(good), "{good}");
        }
        let long = "a".repeat(33);
        for bad in [
            "",
            "Root",
            "-x",
            "-oProxyCommand=x",
            "a b",
            "a:b",
            "x\n",
            &long,
        ] {
            assert!(!is_account_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn public_names_are_dns_labels() {
        let longest = "a".repeat(63);
        for good in ["myapp", "a", "demo-2", "0day", longest.as_str()] {
            assert_eq!(public_name_problem(good), None, "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "MyApp",
            "-a",
            "a-",
            "a.b",
            "a_b",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(public_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn the_overlay_is_172_16_0_0_slash_12() {
        assert!(in_overlay(Ipv4Addr::new(172, 16, 0, 2)));
        assert!(in_overlay(Ipv4Addr::new(172, 31, 255, 254)));
        for outside in [
            [172, 15, 0, 1],
            [172, 32, 0, 1],
            [169, 254, 169, 254],
            [10, 0, 0, 1],
        ] {
            assert!(!in_overlay(Ipv4Addr::from(outside)), "{outside:?}");
        }
    }

    #[test]
    fn durations_follow_the_contract() {
        use std::time::Duration;
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        for bad in [
            "2weeks",
            "",
            "h",
            "0h",
            "-1h",
            "1.5h",
            "1 h",
            "99999999999999999999d",
            "1w",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_as_base64_and_refuse_garbage() {
        let key = WireKey([7; 32]);
        let json = serde_json::to_string(&key).unwrap_or_default();
        assert_eq!(serde_json::from_str::<WireKey>(&json).ok(), Some(key));
        assert!(serde_json::from_str::<WireKey>("\"AAAA\"").is_err());
    }

    #[test]
    fn stream_events_are_tagged() {
        let event = StreamEvent::ShareEnded {
            lookup: "ab".into(),
            state: ShareState::Revoked,
        };
        let json = serde_json::to_string(&event).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"type":"share_ended","lookup":"ab","state":"revoked"}"#
        );
    }

    #[test]
    fn tokens_do_not_leak_through_debug() {
        assert_eq!(format!("{:?}", Token("secret".into())), "Token(…)");
    }
}
