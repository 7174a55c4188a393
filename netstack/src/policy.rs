//! What a peer may reach on the sharing machine: the sharer's own snapshot of routes.
//!
//! The policy is checked on the sharing side for every new flow, so nothing a hub or a
//! joiner sends can widen it.

use std::fmt;
use std::sync::Arc;

/// Transport protocol of a flow or route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A real `HOST:PORT` that a flow is bridged to. The host is kept as text so the driver
/// resolves names (a VM's hostname, `localhost`) the way the sharing machine does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: Arc<str>,
    pub port: u16,
}

impl Target {
    pub fn new(host: impl Into<Arc<str>>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One exposed service: a port on the shared machine's tunnel address and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub protocol: Protocol,
    pub port: u16,
    pub target: Target,
}

/// What one peer may reach. Empty by default: a peer reaches nothing until routes are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub routes: Vec<Route>,
    /// `--all-ports`: every TCP and UDP port of this host, same port number.
    pub all_ports: Option<Arc<str>>,
    /// TCP ports `all_ports` does not open (SSH is shared only when asked for).
    pub closed_tcp: Vec<u16>,
}

impl Policy {
    /// Where a new flow to `port` goes, or `None` when the policy refuses it.
    /// Explicit routes win over `all_ports`, so a renamed port keeps its mapping.
    pub fn target(&self, protocol: Protocol, port: u16) -> Option<Target> {
        self.routes
            .iter()
            .find(|r| r.protocol == protocol && r.port == port)
            .map(|r| r.target.clone())
            .or_else(|| {
                if protocol == Protocol::Tcp && self.closed_tcp.contains(&port) {
                    return None;
                }
                self.all_ports
                    .as_ref()
                    .map(|host| Target::new(host.clone(), port))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_protocol_and_port() {
        let policy = Policy {
            routes: vec![Route {
                protocol: Protocol::Tcp,
                port: 5432,
                target: Target::new("127.0.0.1", 15432),
            }],
            all_ports: None,
            closed_tcp: Vec::new(),
        };
        assert_eq!(
            policy.target(Protocol::Tcp, 5432),
            Some(Target::new("127.0.0.1", 15432))
        );
        assert_eq!(policy.target(Protocol::Udp, 5432), None);
        assert_eq!(policy.target(Protocol::Tcp, 22), None);
    }

    #[test]
    fn all_ports_keeps_the_port_and_loses_to_routes() {
        let policy = Policy {
            routes: vec![Route {
                protocol: Protocol::Tcp,
                port: 80,
                target: Target::new("10.0.0.5", 8080),
            }],
            all_ports: Some("10.0.0.9".into()),
            closed_tcp: vec![22],
        };
        assert_eq!(policy.target(Protocol::Tcp, 22), None);
        assert_eq!(
            policy.target(Protocol::Udp, 22),
            Some(Target::new("10.0.0.9", 22))
        );
        assert_eq!(
            policy.target(Protocol::Udp, 53),
            Some(Target::new("10.0.0.9", 53))
        );
        assert_eq!(
            policy.target(Protocol::Tcp, 80),
            Some(Target::new("10.0.0.5", 8080))
        );
        assert_eq!(Target::new("::1", 80).to_string(), "[::1]:80");
    }
}
