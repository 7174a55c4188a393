//! Datagrams in batches: many per system call each way.
//!
//! Profiling the relayed path showed every process (joiner, hub relay, sharer) spending
//! most of its time in per-datagram `sendto`/`recvfrom` and the wake-ups around them; the
//! cryptography was under a tenth. A bulk TCP flow through the tunnel makes runs of
//! datagrams of one size to one address, which is exactly what Linux's UDP GSO sends in
//! one call (`UDP_SEGMENT`) and UDP GRO hands back in one buffer. `quinn-udp` owns the
//! `sendmsg`/`recvmmsg` and control-message details, and falls back to one datagram per
//! call where the kernel cannot.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Largest UDP payload one GSO send may carry (IPv4's 65,535 less IP and UDP headers).
const MAX_GSO_BYTES: usize = 65_507;
/// Buffers per receive call; each holds up to 64 KiB of GRO-coalesced datagrams.
const RECV_BUFFERS: usize = 4;
/// One receive buffer: a whole GRO batch.
const RECV_BUFFER: usize = 64 * 1024;

/// A UDP socket that sends and receives in batches.
///
/// Addresses are IPv4 or IPv6 as they are, whatever the socket: a dual-stack IPv6 socket
/// (bound to `[::]`, as agents and a hub listening on IPv6 are) sees IPv4 peers as
/// `::ffff:a.b.c.d`, which is turned back into IPv4 on receipt and made again on sending,
/// so the rest of the program never meets a mapped address.
pub struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    /// An `AF_INET6` socket: IPv4 destinations must be mapped.
    ipv6: bool,
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; anything else as it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

impl BatchSocket {
    /// Takes over `socket`, with large buffers and GRO on where the kernel has it.
    ///
    /// # Errors
    /// When the socket's options cannot be read or set.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        crate::socket::tune_udp_buffers(&socket);
        let state = UdpSocketState::new((&socket).into())?;
        let ipv6 = socket.local_addr()?.is_ipv6();
        Ok(Self {
            socket,
            state,
            ipv6,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams one [`BatchSocket::send`] may carry.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Sends `contents` to `dst` as datagrams of `segment` bytes (the last may be shorter),
    /// waiting for room in the socket's buffer. Errors other than a full buffer are
    /// returned for logging: a lost datagram is WireGuard's and TCP's to recover.
    pub async fn send(&self, dst: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        self.send_from(None, dst, contents, segment).await
    }

    /// As [`BatchSocket::send`], from our address `src` when given: a socket bound to a
    /// wildcard address otherwise answers from whichever address routing picks, and a NAT
    /// in front of the peer drops what does not come from the address it sent to.
    pub async fn send_from(
        &self,
        src: Option<IpAddr>,
        dst: SocketAddr,
        contents: &[u8],
        segment: usize,
    ) -> io::Result<()> {
        let destination = match dst {
            SocketAddr::V4(v4) if self.ipv6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            SocketAddr::V4(_) | SocketAddr::V6(_) => dst,
        };
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: (contents.len() > segment).then_some(segment),
            src_ip: src,
        };
        loop {
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &transmit)
            }) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.socket.writable().await?;
                }
                result => return result,
            }
        }
    }

    /// Sends one datagram with IP TTL (IPv6: hop limit) `ttl`, the socket's own restored
    /// after.
    ///
    /// # Errors
    /// When the TTL cannot be read or set, or as [`BatchSocket::send`].
    pub async fn send_with_ttl(&self, dst: SocketAddr, contents: &[u8], ttl: u8) -> io::Result<()> {
        use nix::sys::socket::sockopt::{Ipv4Ttl, Ipv6Ttl};
        use nix::sys::socket::{getsockopt, setsockopt};
        let ttl = i32::from(ttl);
        if dst.is_ipv6() {
            let usual = getsockopt(&self.socket, Ipv6Ttl)?;
            setsockopt(&self.socket, Ipv6Ttl, &ttl)?;
            let sent = self.send(dst, contents, contents.len()).await;
            setsockopt(&self.socket, Ipv6Ttl, &usual)?;
            return sent;
        }
        let usual = getsockopt(&self.socket, Ipv4Ttl)?;
        setsockopt(&self.socket, Ipv4Ttl, &ttl)?;
        let sent = self.send(dst, contents, contents.len()).await;
        setsockopt(&self.socket, Ipv4Ttl, &usual)?;
        sent
    }

    /// Reads what is queued into `batch` without waiting; `WouldBlock` when nothing is.
    ///
    /// # Errors
    /// As the socket's receive.
    pub fn try_recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let mut slices = batch
            .buffers
            .each_mut()
            .map(|b| IoSliceMut::new(b.as_mut_slice()));
        let count = self.socket.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.socket).into(), &mut slices, &mut batch.meta)
        })?;
        batch.filled = count;
        Ok(count)
    }
}

/// Buffers for [`BatchSocket::try_recv`], reused from call to call.
pub struct RecvBatch {
    buffers: [Vec<u8>; RECV_BUFFERS],
    meta: [RecvMeta; RECV_BUFFERS],
    filled: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buffers: std::array::from_fn(|_| vec![0; RECV_BUFFER]),
            meta: [RecvMeta::default(); RECV_BUFFERS],
            filled: 0,
        }
    }
}

impl RecvBatch {
    /// How many buffers the last receive filled.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Buffer `index` of the last receive.
    pub fn buffer(&mut self, index: usize) -> Received<'_> {
        let meta = &self.meta[index];
        Received {
            from: canonical(meta.addr),
            local: meta.dst_ip.map(|ip| canonical(SocketAddr::new(ip, 0)).ip()),
            bytes: &mut self.buffers[index][..meta.len],
            stride: stride(meta),
        }
    }

    /// Every datagram of the last receive, with its sender.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..self.filled]
            .iter()
            .zip(&self.buffers)
            .flat_map(|(meta, buffer)| {
                buffer[..meta.len]
                    .chunks(stride(meta))
                    .map(move |datagram| (canonical(meta.addr), datagram))
            })
    }
}

/// The size of each datagram in a buffer: the kernel's GRO segment size, or the whole
/// buffer when it holds one datagram (never zero).
fn stride(meta: &RecvMeta) -> usize {
    if meta.stride == 0 {
        meta.len.max(1)
    } else {
        meta.stride
    }
}

/// One buffer of a receive: datagrams from one sender to one of our addresses.
pub struct Received<'a> {
    pub from: SocketAddr,
    /// Our address they were sent to, where the kernel says.
    pub local: Option<IpAddr>,
    /// The datagrams, `stride` bytes each but the last, which may be shorter.
    pub bytes: &'a mut [u8],
    pub stride: usize,
}

/// Outgoing datagrams gathered into runs of one size to one address, each run one GSO send.
///
/// The caller writes each datagram in place at [`SendBatch::tail`], then [`SendBatch::push`]es
/// it; a push answers with a run that is complete and must be sent before the next write.
pub struct SendBatch {
    buf: Vec<u8>,
    /// Bytes of the run being gathered; the rest of `buf` is room for the next datagram.
    len: usize,
    dst: Option<SocketAddr>,
    segment: usize,
    count: usize,
    max_segments: usize,
    /// A datagram that starts the next run, still where it was written (start, length)
    /// because the run before it had to be sent first.
    pending: Option<(usize, usize)>,
}

/// A run of datagrams to send: `SendBatch::run` bytes to `dst` in `segment`-byte datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub dst: SocketAddr,
    pub segment: usize,
    pub len: usize,
}

impl SendBatch {
    /// `room` is the most one datagram needs, with anything written before it.
    pub fn new(room: usize, max_segments: usize) -> Self {
        Self {
            buf: vec![0; MAX_GSO_BYTES + room],
            len: 0,
            dst: None,
            segment: 0,
            count: 0,
            max_segments: max_segments.max(1),
            pending: None,
        }
    }

    /// Follows the socket's limit, which drops to one when the kernel refuses GSO.
    pub fn set_max_segments(&mut self, max_segments: usize) {
        self.max_segments = max_segments.max(1);
    }

    /// Where the next datagram is written.
    pub fn tail(&mut self) -> &mut [u8] {
        self.settle();
        &mut self.buf[self.len..]
    }

    /// Adds the `len` bytes at `tail()[offset..]` as a datagram to `dst` (at offset 0 it
    /// joins the run in place). Returns the run to
    /// send first when the datagram cannot join it (it then starts the next run), or when
    /// it made the run as long as a run can be.
    pub fn push(&mut self, offset: usize, len: usize, dst: SocketAddr) -> Option<Run> {
        self.settle();
        let start = self.len + offset;
        let joins = self.count > 0
            && !self.is_full()
            && self.dst == Some(dst)
            && len <= self.segment
            && self.len + len <= MAX_GSO_BYTES;
        if joins {
            if offset != 0 {
                self.buf.copy_within(start..start + len, self.len);
            }
            self.len += len;
            self.count += 1;
            return if self.is_full() { self.finish() } else { None };
        }
        let closed = self.take_run();
        self.pending = Some((start, len));
        self.len = len;
        self.dst = Some(dst);
        self.segment = len;
        self.count = 1;
        closed
    }

    /// Ends the run being gathered and returns it, if any.
    pub fn finish(&mut self) -> Option<Run> {
        self.settle();
        let run = self.take_run();
        self.len = 0;
        self.count = 0;
        self.dst = None;
        run
    }

    /// The bytes of the run [`SendBatch::push`] or [`SendBatch::finish`] just returned,
    /// until the next call that takes `&mut self`.
    pub fn run(&self, run: &Run) -> &[u8] {
        &self.buf[..run.len]
    }

    /// Whether the run cannot grow: a shorter datagram ended it, or it is full.
    fn is_full(&self) -> bool {
        self.count > 0
            && (!self.len.is_multiple_of(self.segment)
                || self.count >= self.max_segments
                || self.len + self.segment > MAX_GSO_BYTES)
    }

    fn take_run(&self) -> Option<Run> {
        let dst = self.dst?;
        (self.count > 0).then_some(Run {
            dst,
            segment: self.segment,
            len: self.len,
        })
    }

    /// Moves a datagram that starts a run to the front, once the run before it was sent.
    fn settle(&mut self) {
        if let Some((start, len)) = self.pending.take() {
            self.buf.copy_within(start..start + len, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    /// Writes `len` bytes of `fill` at the tail after `offset` and pushes them.
    fn push(
        batch: &mut SendBatch,
        offset: usize,
        len: usize,
        fill: u8,
        dst: u16,
    ) -> Option<Vec<u8>> {
        batch.tail()[offset..offset + len].fill(fill);
        batch
            .push(offset, len, addr(dst))
            .map(|run| batch.run(&run).to_vec())
    }

    #[test]
    fn equal_datagrams_to_one_address_make_one_run() {
        let mut batch = SendBatch::new(2000, 64);
        for i in 0..5 {
            assert_eq!(push(&mut batch, 12, 100, i, 1), None);
        }
        let run = batch.finish().expect("a run");
        assert_eq!((run.dst, run.segment, run.len), (addr(1), 100, 500));
        let bytes = batch.run(&run);
        assert!((0..5u8).all(|i| bytes[usize::from(i) * 100..][..100].iter().all(|&b| b == i)));
        assert_eq!(batch.finish(), None);
    }

    #[test]
    fn a_new_address_or_a_longer_datagram_closes_the_run_and_starts_the_next() {
        let mut batch = SendBatch::new(2000, 64);
        push(&mut batch, 0, 100, 1, 1);
        push(&mut batch, 0, 100, 2, 1);
        let closed = push(&mut batch, 0, 80, 3, 2).expect("address changed");
        assert_eq!(closed.len(), 200);
        assert!(closed[100..].iter().all(|&b| b == 2));
        let closed = push(&mut batch, 0, 90, 4, 2).expect("longer than the run's size");
        assert_eq!(closed, vec![3; 80]);
        let run = batch.finish().expect("the last datagram");
        assert_eq!(batch.run(&run), &[4; 90][..]);
    }

    #[test]
    fn a_shorter_datagram_ends_the_run_and_a_full_run_is_returned_at_once() {
        let mut batch = SendBatch::new(2000, 3);
        push(&mut batch, 0, 100, 1, 1);
        let run = push(&mut batch, 0, 60, 2, 1).expect("shorter ends the run");
        assert_eq!(run.len(), 160);
        assert_eq!(batch.finish(), None);
        push(&mut batch, 0, 100, 1, 1);
        push(&mut batch, 0, 100, 1, 1);
        assert_eq!(push(&mut batch, 0, 100, 1, 1).map(|r| r.len()), Some(300));
    }

    /// Over loopback: one send of a run arrives as its datagrams, in order, whether the
    /// kernel kept it as one GRO buffer or split it.
    #[tokio::test]
    async fn a_run_sent_at_once_arrives_as_its_datagrams() -> io::Result<()> {
        let bind = || std::net::UdpSocket::bind("127.0.0.1:0");
        let (a, b) = (bind()?, bind()?);
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        let a = BatchSocket::new(UdpSocket::from_std(a)?)?;
        let b = BatchSocket::new(UdpSocket::from_std(b)?)?;
        let mut run = Vec::new();
        for i in 0..10u8 {
            run.extend_from_slice(&[i; 100]);
        }
        run.extend_from_slice(&[10; 50]);
        a.send(b.local_addr()?, &run, 100).await?;
        let sender = a.local_addr()?;
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut batch = RecvBatch::default();
        while got.len() < 11 {
            b.readable().await?;
            match b.try_recv(&mut batch) {
                Ok(_) => got.extend(batch.datagrams().map(|(from, d)| {
                    assert_eq!(from, sender);
                    d.to_vec()
                })),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        assert_eq!(got.len(), 11);
        for (i, datagram) in (0u8..).zip(&got) {
            let len = if i == 10 { 50 } else { 100 };
            assert_eq!(datagram, &vec![i; len]);
        }
        Ok(())
    }

    #[test]
    fn runs_stay_within_one_gso_send() {
        let mut batch = SendBatch::new(2000, 1000);
        let mut sent = 0;
        for _ in 0..100 {
            if let Some(run) = push(&mut batch, 0, 1452, 7, 1) {
                assert!(run.len() <= MAX_GSO_BYTES);
                sent += run.len();
            }
        }
        sent += batch.finish().map_or(0, |r| r.len);
        assert_eq!(sent, 100 * 1452);
    }
}
