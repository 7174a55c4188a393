//! A TUN joiner's inbound filter: the sharing machine may answer what the joiner opened,
//! and nothing else reaches the joiner's kernel.
//!
//! Without it, a hostile sharer could open connections to every service the joiner has
//! listening (its sshd, a database on 0.0.0.0), since the tunnel interface is one more way
//! into the joiner's machine. The filter is a small connection table, like a stateful
//! firewall's: flows the joiner sends on are remembered; an inbound TCP segment or UDP
//! datagram passes only on a remembered flow, and never as a bare SYN; ICMP passes only
//! as an echo reply or an error. The table is bounded: past [`MAX_FLOWS`], flows idle for
//! longer than their timeout are swept (at most once a second), and new flows beyond it
//! go out untracked (their answers are dropped) rather than evict live ones.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use smoltcp::wire::{IpProtocol, Ipv4Packet};

use crate::packet::{self, FiveTuple, Inspected};
use crate::policy::Protocol;

/// An idle TCP connection is forgotten after this long (long: an SSH session may sit
/// quiet for hours).
const TCP_IDLE: Duration = Duration::from_secs(24 * 3600);
/// An idle UDP conversation is forgotten after this long (conntrack's default for a
/// stream of UDP).
const UDP_IDLE: Duration = Duration::from_secs(180);
/// Flows tracked at once.
pub(crate) const MAX_FLOWS: usize = 16_384;
/// ICMP types that may come in: echo reply, destination unreachable, time exceeded.
const ICMP_ANSWERS: [u8; 3] = [0, 3, 11];

#[derive(Debug, Default)]
pub(crate) struct Answers {
    /// Flows the joiner opened, as it sent them, and when each was last used.
    flows: HashMap<FiveTuple, Instant>,
    swept: Option<Instant>,
}

impl Answers {
    /// A packet the joiner sends into the tunnel: its flow may be answered from now on.
    pub(crate) fn outbound(&mut self, packet: &[u8], now: Instant) {
        let tuple = match packet::inspect(packet) {
            Some(Inspected::Tcp { tuple, .. } | Inspected::Udp { tuple, .. }) => tuple,
            Some(Inspected::Other { .. }) | None => return,
        };
        if let Some(seen) = self.flows.get_mut(&tuple) {
            *seen = now;
            return;
        }
        if self.flows.len() >= MAX_FLOWS {
            self.sweep(now);
        }
        if self.flows.len() < MAX_FLOWS {
            self.flows.insert(tuple, now);
        }
    }

    /// Whether a packet from the tunnel may go to the joiner's kernel.
    pub(crate) fn admits(&mut self, packet: &[u8], now: Instant) -> bool {
        match packet::inspect(packet) {
            Some(Inspected::Tcp { tuple, opens, .. }) => !opens && self.answers(tuple, now),
            Some(Inspected::Udp { tuple, .. }) => self.answers(tuple, now),
            Some(Inspected::Other { .. }) => is_icmp_answer(packet),
            None => false,
        }
    }

    /// Whether `inbound` answers a live flow the joiner opened; using it keeps it alive.
    fn answers(&mut self, inbound: FiveTuple, now: Instant) -> bool {
        let opened = FiveTuple {
            protocol: inbound.protocol,
            src: inbound.dst,
            dst: inbound.src,
        };
        match self.flows.get_mut(&opened) {
            Some(seen) if now.saturating_duration_since(*seen) < idle(opened.protocol) => {
                *seen = now;
                true
            }
            Some(_) | None => false,
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        self.flows
            .retain(|tuple, seen| now.saturating_duration_since(*seen) < idle(tuple.protocol));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.flows.len()
    }
}

fn idle(protocol: Protocol) -> Duration {
    match protocol {
        Protocol::Tcp => TCP_IDLE,
        Protocol::Udp => UDP_IDLE,
    }
}

/// An unfragmented ICMP echo reply or error.
fn is_icmp_answer(packet: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    ip.next_header() == IpProtocol::Icmp
        && !ip.more_frags()
        && ip.frag_offset() == 0
        && ip
            .payload()
            .first()
            .is_some_and(|kind| ICMP_ANSWERS.contains(kind))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

    use super::*;

    const JOINER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 3);
    const SHARER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

    fn tcp(src: SocketAddrV4, dst: SocketAddrV4, control: TcpControl, ack: bool) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
            control,
            seq_number: TcpSeqNumber(1),
            ack_number: ack.then_some(TcpSeqNumber(1)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let mut packet = vec![0u8; 20 + repr.buffer_len()];
        packet[0] = 0x45;
        let total = u16::try_from(packet.len()).unwrap_or(0);
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        packet[8] = 64;
        packet[9] = 6;
        packet[12..16].copy_from_slice(&src.ip().octets());
        packet[16..20].copy_from_slice(&dst.ip().octets());
        let mut segment = TcpPacket::new_unchecked(&mut packet[20..]);
        repr.emit(
            &mut segment,
            &IpAddress::Ipv4(*src.ip()),
            &IpAddress::Ipv4(*dst.ip()),
            &ChecksumCapabilities::default(),
        );
        packet
    }

    fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
        let mut packet = Vec::new();
        packet::write_udp(&mut packet, src, dst, b"hi");
        packet
    }

    fn icmp(kind: u8) -> Vec<u8> {
        let mut packet = vec![0u8; 28];
        packet[0] = 0x45;
        packet[3] = 28;
        packet[8] = 64;
        packet[9] = 1;
        packet[12..16].copy_from_slice(&SHARER.octets());
        packet[16..20].copy_from_slice(&JOINER.octets());
        packet[20] = kind;
        packet
    }

    #[test]
    fn answers_to_the_joiners_flows_pass_and_nothing_else() {
        let mut answers = Answers::default();
        let now = Instant::now();
        let (joiner, sharer) = (
            SocketAddrV4::new(JOINER, 40000),
            SocketAddrV4::new(SHARER, 5432),
        );
        // The sharer opening a connection to the joiner's sshd: refused.
        let ssh = SocketAddrV4::new(JOINER, 22);
        let probe = SocketAddrV4::new(SHARER, 50000);
        assert!(!answers.admits(&tcp(probe, ssh, TcpControl::Syn, false), now));
        assert!(!answers.admits(&tcp(probe, ssh, TcpControl::None, true), now));
        assert!(!answers.admits(&udp(probe, SocketAddrV4::new(JOINER, 53)), now));
        // The joiner's own connection is answered.
        answers.outbound(&tcp(joiner, sharer, TcpControl::Syn, false), now);
        assert!(answers.admits(&tcp(sharer, joiner, TcpControl::Syn, true), now));
        assert!(answers.admits(&tcp(sharer, joiner, TcpControl::None, true), now));
        // A bare SYN is never an answer, even on a known flow.
        assert!(!answers.admits(&tcp(sharer, joiner, TcpControl::Syn, false), now));
        // UDP: answers from where the joiner sent, to the port it sent from.
        let dns = SocketAddrV4::new(SHARER, 53);
        let client = SocketAddrV4::new(JOINER, 33333);
        answers.outbound(&udp(client, dns), now);
        assert!(answers.admits(&udp(dns, client), now));
        assert!(!answers.admits(&udp(SocketAddrV4::new(SHARER, 54), client), now));
        assert!(!answers.admits(&udp(dns, SocketAddrV4::new(JOINER, 33334)), now));
        // Idle UDP is forgotten.
        assert!(!answers.admits(&udp(dns, client), now + UDP_IDLE * 2));
        // ICMP: replies and errors only.
        assert!(answers.admits(&icmp(0), now));
        assert!(answers.admits(&icmp(3), now));
        assert!(!answers.admits(&icmp(8), now));
        assert!(!answers.admits(&[0x45, 0, 0], now));
    }

    #[test]
    fn the_table_stays_bounded_and_sweeps_idle_flows() {
        let mut answers = Answers::default();
        let now = Instant::now();
        let dns = SocketAddrV4::new(SHARER, 53);
        let flows = u16::try_from(MAX_FLOWS / 2).unwrap_or(u16::MAX);
        for host in 3..6u8 {
            for port in 1..=flows {
                let client = SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, host), port);
                answers.outbound(&udp(client, dns), now);
            }
        }
        assert_eq!(answers.len(), MAX_FLOWS);
        let later = now + UDP_IDLE * 2;
        let client = SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 9), 7);
        answers.outbound(&udp(client, dns), later);
        assert_eq!(answers.len(), 1);
        assert!(answers.admits(&udp(dns, client), later));
    }
}
