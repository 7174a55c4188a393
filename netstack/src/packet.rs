//! Reading the few header fields the node routes on, and writing the UDP packets it
//! answers with. Everything here works on borrowed bytes and never panics on input.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr};

use crate::policy::Protocol;

pub(crate) const IPV4_HEADER: usize = 20;
pub(crate) const UDP_HEADER: usize = 8;

/// Addresses and ports of a flow, seen from the packet's sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FiveTuple {
    pub protocol: Protocol,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// What an IPv4 packet carries, as far as routing it needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inspected {
    /// A TCP segment; `opens` is a bare SYN, the only segment that may create a flow.
    Tcp {
        tuple: FiveTuple,
        opens: bool,
        rst: bool,
    },
    /// A UDP datagram and where its payload lies in the packet.
    Udp {
        tuple: FiveTuple,
        payload: Range<usize>,
    },
    /// Anything else addressed somewhere: ICMP, fragments, other protocols.
    Other { src: Ipv4Addr, dst: Ipv4Addr },
}

/// The source and destination of an IP packet, IPv4 only. `None` for anything that is not
/// a well-formed IPv4 header.
pub(crate) fn ipv4_addresses(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    Some((ip.src_addr(), ip.dst_addr()))
}

/// Reads an IPv4 packet's transport header. `None` when the packet is malformed.
#[allow(clippy::wildcard_enum_match_arm)] // any other protocol is handled alike
pub(crate) fn inspect(packet: &[u8]) -> Option<Inspected> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Some(Inspected::Other { src, dst });
    }
    let header_len = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).ok()?;
            Some(Inspected::Tcp {
                tuple: FiveTuple {
                    protocol: Protocol::Tcp,
                    src: SocketAddrV4::new(src, tcp.src_port()),
                    dst: SocketAddrV4::new(dst, tcp.dst_port()),
                },
                opens: tcp.syn() && !tcp.ack() && !tcp.rst(),
                rst: tcp.rst(),
            })
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).ok()?;
            let start = header_len + UDP_HEADER;
            let end = header_len + usize::from(udp.len());
            if end < start || end > total {
                return None;
            }
            Some(Inspected::Udp {
                tuple: FiveTuple {
                    protocol: Protocol::Udp,
                    src: SocketAddrV4::new(src, udp.src_port()),
                    dst: SocketAddrV4::new(dst, udp.dst_port()),
                },
                payload: start..end,
            })
        }
        // Everything else (ICMP above all) is smoltcp's to answer or drop.
        _ => Some(Inspected::Other { src, dst }),
    }
}

/// Fills in the checksum of a TCP segment our stack left without one (smoltcp writes zero
/// there: see the device's capabilities). A segment that already has one, or anything else,
/// is left as it is; a real checksum of zero is recomputed to the same zero.
pub(crate) fn fill_tcp_checksum(packet: &mut [u8]) {
    let Ok(mut ip) = Ipv4Packet::new_checked(packet) else {
        return;
    };
    if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
        return;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) else {
        return;
    };
    if tcp.checksum() == 0 {
        tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    }
}

/// Writes a complete IPv4/UDP packet into `buf`, replacing its contents.
pub(crate) fn write_udp(buf: &mut Vec<u8>, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: UDP_HEADER + payload.len(),
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    buf.clear();
    buf.resize(IPV4_HEADER + UDP_HEADER + payload.len(), 0);
    let mut ip_packet = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut ip_packet, &caps);
    let mut udp_packet = UdpPacket::new_unchecked(ip_packet.payload_mut());
    udp.emit(
        &mut udp_packet,
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |out| out.copy_from_slice(payload),
        &caps,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_round_trips_through_inspect() {
        let src = SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 3), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 2), 53);
        let mut buf = Vec::new();
        write_udp(&mut buf, src, dst, b"hello");
        let Some(Inspected::Udp { tuple, payload }) = inspect(&buf) else {
            panic!("not udp");
        };
        assert_eq!((tuple.src, tuple.dst), (src, dst));
        assert_eq!(&buf[payload], b"hello");
        assert_eq!(ipv4_addresses(&buf), Some((*src.ip(), *dst.ip())));
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        assert_eq!(inspect(&[]), None);
        assert_eq!(inspect(&[0x45; 19]), None);
        let mut buf = Vec::new();
        write_udp(
            &mut buf,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2),
            b"x",
        );
        for cut in 0..buf.len() {
            let _ = inspect(&buf[..cut]);
        }
        // A UDP length that claims more than the packet holds.
        buf[IPV4_HEADER + 4] = 0xff;
        assert_eq!(inspect(&buf), None);
    }
}
