//! The smoltcp device of a [`crate::Node`]: two in-memory packet queues and a buffer pool.
//!
//! Packets decrypted from the tunnel are pushed to `rx`; smoltcp's output lands in `tx`
//! until the node seals it. Buffers circulate through the pool so the packet path does
//! not allocate once warm.

use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// How many spare buffers the pool keeps at most; more are freed. 1024 × ~1.5 KiB bounds
/// the pool to about 2 MiB while covering a full 256 KiB window several times over.
const POOL_LIMIT: usize = 1024;

/// A free list of packet buffers, split in two so smoltcp's receive and transmit tokens,
/// which it holds at the same time, each borrow their own half.
#[derive(Default)]
pub(crate) struct Pool {
    /// Where buffers are taken from.
    source: Vec<Vec<u8>>,
    /// Where buffers come back to.
    returns: Vec<Vec<u8>>,
}

impl Pool {
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let mut buf = self
            .source
            .pop()
            .or_else(|| self.returns.pop())
            .unwrap_or_default();
        buf.clear();
        buf
    }

    pub(crate) fn give(&mut self, buf: Vec<u8>) {
        give(&mut self.returns, buf);
    }

    /// Moves returned buffers to where smoltcp's transmit tokens take them from.
    pub(crate) fn refill(&mut self) {
        if self.source.is_empty() {
            std::mem::swap(&mut self.source, &mut self.returns);
        }
    }
}

fn give(returns: &mut Vec<Vec<u8>>, buf: Vec<u8>) {
    if returns.len() < POOL_LIMIT {
        returns.push(buf);
    }
}

/// An IP-medium device backed by queues.
pub(crate) struct InMemoryDevice {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: VecDeque<Vec<u8>>,
    pub(crate) pool: Pool,
    mtu: usize,
    /// smoltcp stops producing once this many packets wait in `tx`, which is how the
    /// stack feels back-pressure from the node's caller instead of queueing without bound.
    tx_limit: usize,
}

impl InMemoryDevice {
    pub(crate) fn new(mtu: usize, tx_limit: usize) -> Self {
        Self {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            pool: Pool::default(),
            mtu,
            tx_limit,
        }
    }

    pub(crate) fn tx_full(&self) -> bool {
        self.tx.len() >= self.tx_limit
    }
}

impl phy::Device for InMemoryDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let buf = self.rx.pop_front()?;
        Some((
            RxToken {
                buf,
                returns: &mut self.pool.returns,
            },
            TxToken {
                tx: &mut self.tx,
                source: &mut self.pool.source,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.tx.len() >= self.tx_limit {
            return None;
        }
        Some(TxToken {
            tx: &mut self.tx,
            source: &mut self.pool.source,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = Some(self.tx_limit);
        // Every packet that reaches this device was opened by WireGuard, whose AEAD tag
        // already proved it is what the peer sent; verifying IP, TCP and UDP checksums
        // again only costs a pass over each payload (Linux's WireGuard marks such packets
        // checksum-unnecessary too). On the way out TCP checksums are filled in while
        // sealing (`Sessions::encapsulate`), only for a peer whose kernel will check them
        // (`PeerConfig::needs_checksums`); the rest are short headers.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::None;
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps
    }
}

pub(crate) struct RxToken<'a> {
    buf: Vec<u8>,
    returns: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(&self.buf);
        give(self.returns, self.buf);
        result
    }
}

pub(crate) struct TxToken<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
    source: &'a mut Vec<Vec<u8>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.source.pop().unwrap_or_default();
        buf.resize(len, 0);
        let result = f(&mut buf);
        self.tx.push_back(buf);
        result
    }
}
