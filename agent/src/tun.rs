//! The joiner's TUN interface (tun-rs): the joiner's tunnel address, point-to-point to
//! the shared machine, so the only route it adds is to that one address. The interface
//! and its route vanish with the device when the process ends.

use std::net::Ipv4Addr;

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
