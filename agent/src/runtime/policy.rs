//! What a joiner of a share may reach: the share's own snapshot of routes, as the data
//! plane's policy.

use connect_api::Protocol as WireProtocol;
use connect_netstack::{Policy, Protocol, Route, Target};

use crate::config::LocalShare;
use crate::target::parse_target;

/// The share's snapshot of routes as the data plane's policy. Port 22 is reachable only
/// on a share made with `--ssh`, whatever else was exposed.
pub fn policy_of(share: &LocalShare) -> Policy {
    let ssh = share.ssh.is_some();
    let routes = share
        .routes
        .iter()
        .filter(|route| {
            ssh || route.protocol != WireProtocol::Tcp || route.port != crate::ssh::PORT
        })
        .filter_map(|route| {
            let (host, port) = parse_target(&route.target).ok()?;
            Some(Route {
                protocol: match route.protocol {
                    WireProtocol::Tcp => Protocol::Tcp,
                    WireProtocol::Udp => Protocol::Udp,
                },
                port: route.port,
                target: Target::new(host, port),
            })
        })
        .collect();
    Policy {
        routes,
        all_ports: share.all_ports.as_deref().map(Into::into),
        closed_tcp: if ssh {
            Vec::new()
        } else {
            vec![crate::ssh::PORT]
        },
    }
}
