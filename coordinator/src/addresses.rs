//! Tunnel addresses: each live share owns one /24 of 172.16.0.0/12 (its "block"); the
//! shared machine is `.2` of it and joiners take `.3` to `.254`. Blocks of ended shares
//! are free again, so addresses are reused and never collide between live shares.

use std::net::Ipv4Addr;

const BASE: u32 = u32::from_be_bytes([172, 16, 0, 0]);
pub const MACHINE_HOST: u8 = 2;

fn host(block: u32, host: u8) -> Ipv4Addr {
    Ipv4Addr::from(BASE + (block << 8) + u32::from(host))
}

/// The hub's own address in a share's block (`.1`), from which it fetches public URLs.
pub fn hub_ip(block: u32) -> Ipv4Addr {
    host(block, 1)
}

pub fn machine_ip(block: u32) -> Ipv4Addr {
    host(block, MACHINE_HOST)
}

pub fn joiner_ip(block: u32, joiner_host: u8) -> Ipv4Addr {
    host(block, joiner_host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_the_private_range() {
        assert_eq!(machine_ip(0), Ipv4Addr::new(172, 16, 0, 2));
        assert_eq!(joiner_ip(0, 3), Ipv4Addr::new(172, 16, 0, 3));
        assert_eq!(machine_ip(4095), Ipv4Addr::new(172, 31, 255, 2));
        let net: ipnet::Ipv4Net = "172.16.0.0/12".parse().unwrap_or_default();
        assert!(net.contains(&joiner_ip(crate::store::BLOCKS - 1, 254)));
    }
}
