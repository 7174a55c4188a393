//! This machine's own addresses for a tunnel socket: offered to the other side of a join
//! (through the hub), so two machines behind one NAT router that does not hairpin still
//! find each other directly on their LAN.

use std::net::{IpAddr, SocketAddr};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

/// At most this many are offered (the sharer keeps no more).
const MAX: usize = 8;

/// The IPv4 addresses of interfaces that are up, except loopback, link-local and a TUN
/// device's point-to-point address, each with `port`.
pub fn local(port: u16) -> Vec<SocketAddr> {
    let Ok(interfaces) = getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = interfaces
        .filter(|i| {
            i.flags.contains(InterfaceFlags::IFF_UP)
                && !i
                    .flags
                    .intersects(InterfaceFlags::IFF_LOOPBACK | InterfaceFlags::IFF_POINTOPOINT)
        })
        .filter_map(|i| i.address?.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())))
        .filter(|ip| matches!(ip, IpAddr::V4(v4) if !v4.is_link_local() && !v4.is_loopback()))
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    out.sort();
    out.dedup();
    out.truncate(MAX);
    out
}
