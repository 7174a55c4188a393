//! The smoltcp half of a node: one IP interface, its TCP sockets and the in-memory device.
//!
//! Owns the conversion from std time to smoltcp time and the TCP tuning that matters for
//! throughput (buffers, no delayed ACK, no Nagle). Knows nothing of peers or policy.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use crate::device::InMemoryDevice;

/// What smoltcp keeps per TCP socket besides its two buffers, measured with
/// `size_of::<tcp::Socket>()` plus the socket set slot; used for the memory cap.
pub(crate) const SOCKET_OVERHEAD: usize = 1024;
/// TCP keep-alive interval of userspace flows; three missed answers end the flow.
const KEEPALIVE_SECS: u64 = 60;

pub(crate) struct Stack {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) device: InMemoryDevice,
    boot: Instant,
}

impl Stack {
    pub(crate) fn new(
        addresses: &[Ipv4Addr],
        mtu: usize,
        tx_limit: usize,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut device = InMemoryDevice::new(mtu, tx_limit);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smol_time(now, now));
        // The node decides which destinations are ours (it may own many addresses, one
        // per share, more than smoltcp's fixed table); smoltcp accepts what it is given.
        // Medium::Ip has no neighbours: any address with a route is fine, and the node
        // picks the peer for every packet smoltcp sends.
        iface.set_any_ip(true);
        let anchor = addresses
            .first()
            .copied()
            .unwrap_or(Ipv4Addr::new(172, 16, 0, 1));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(anchor.into(), 32));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(anchor);
        Self {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            boot: now,
        }
    }

    pub(crate) fn time(&self, now: Instant) -> smoltcp::time::Instant {
        smol_time(self.boot, now)
    }

    /// Runs smoltcp: every queued inbound packet, then egress until it has nothing to
    /// send or the device queue is full.
    pub(crate) fn poll(&mut self, now: Instant) {
        self.device.pool.refill();
        let at = self.time(now);
        self.iface.poll(at, &mut self.device, &mut self.sockets);
    }

    /// Processes queued inbound packets only, so the next packet meets up-to-date sockets.
    pub(crate) fn ingress(&mut self, now: Instant) {
        let at = self.time(now);
        while !matches!(
            self.iface
                .poll_ingress_single(at, &mut self.device, &mut self.sockets),
            smoltcp::iface::PollIngressSingleResult::None
        ) {}
    }

    /// When smoltcp next wants to run, in std time.
    pub(crate) fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let at = self.time(now);
        self.iface.poll_at(at, &self.sockets).map(|when| {
            self.boot + Duration::from_micros(when.total_micros().max(0).unsigned_abs())
        })
    }

    pub(crate) fn new_tcp_socket(&mut self, buffer: usize) -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        // Request/response traffic must not wait 10 ms for a delayed ACK or for Nagle,
        // and bulk traffic needs every window update at once (smoltcp#935).
        socket.set_ack_delay(None);
        socket.set_nagle_enabled(false);
        // smoltcp's timeout counts from the last segment received, idle or not, so an
        // idle connection (a psql session over lunch) needs keep-alives to survive it;
        // a peer that stops answering them is gone, and its socket is freed.
        socket.set_keep_alive(Some(smoltcp::time::Duration::from_secs(KEEPALIVE_SECS)));
        socket.set_timeout(Some(smoltcp::time::Duration::from_secs(3 * KEEPALIVE_SECS)));
        socket
    }

    /// A socket waiting for exactly one SYN to `local`, holding its SYN-ACK until the real
    /// target has answered, so a refusing target becomes an RST, not a dropped connection.
    pub(crate) fn listen(&mut self, local: SocketAddrV4, buffer: usize) -> Option<SocketHandle> {
        let mut socket = self.new_tcp_socket(buffer);
        socket
            .listen(IpListenEndpoint {
                addr: Some((*local.ip()).into()),
                port: local.port(),
            })
            .ok()?;
        socket.pause_synack(true);
        Some(self.sockets.add(socket))
    }

    pub(crate) fn connect(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        buffer: usize,
    ) -> Option<SocketHandle> {
        let mut socket = self.new_tcp_socket(buffer);
        socket
            .connect(
                self.iface.context(),
                IpEndpoint::new((*remote.ip()).into(), remote.port()),
                IpListenEndpoint {
                    addr: Some((*local.ip()).into()),
                    port: local.port(),
                },
            )
            .ok()?;
        Some(self.sockets.add(socket))
    }

    pub(crate) fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }
}

fn smol_time(boot: Instant, now: Instant) -> smoltcp::time::Instant {
    let micros = now.saturating_duration_since(boot).as_micros();
    smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}
