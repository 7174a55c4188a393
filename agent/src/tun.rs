//! The joiner's TUN interface (tun-rs): the joiner's tunnel address, point-to-point to
//! the shared machine, so the only route it adds is to that one address. The interface
//! and its route vanish with the device when the process ends.

use std::net::Ipv4Addr;

/// Whether this process may make a TUN device: CAP_NET_ADMIN among its effective
/// capabilities (`CapEff` in `/proc/self/status`). True when that cannot be read, so a
/// join only runs in user space for certain when it must.
pub fn permitted() -> bool {
    std::fs::read_to_string("/proc/self/status").map_or(true, |status| {
        effective_caps(&status).is_none_or(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
    })
}

/// linux/capability.h
const CAP_NET_ADMIN: u32 = 12;

fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

pub struct Tun {
    pub device: tun_rs::AsyncDevice,
    pub name: String,
}

/// With the kernel's TCP offloads where it has them (see `connect_netstack`'s TUN batching),
/// else one packet per read and write.
///
/// # Errors
/// Without CAP_NET_ADMIN (or /dev/net/tun) this fails; the caller falls back to user space.
pub fn create(local: Ipv4Addr, machine: Ipv4Addr, mtu: u16) -> std::io::Result<Tun> {
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
            .ipv4(local, 32u8, Some(machine))
            .mtu(mtu)
            .offload(offload)
            .build_async()
    };
    let device = build(true).or_else(|err| {
        tracing::debug!(%err, "TUN without offloads");
        build(false)
    })?;
    let name = device.name()?;
    tracing::debug!(%name, offload = device.tcp_gso(), "TUN device up");
    Ok(Tun { device, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_net_admin_is_read_from_the_effective_set() {
        let root = "Name:\tconnect\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let user = "CapPrm:\t0000000000001000\nCapEff:\t0000000000000000\n";
        assert_eq!(effective_caps(root), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_caps(user), Some(0));
        assert_eq!(effective_caps("CapEff:\tnot hex\n"), None);
        assert_eq!(
            effective_caps(root).map(|c| c & (1 << CAP_NET_ADMIN) != 0),
            Some(true)
        );
    }
}
