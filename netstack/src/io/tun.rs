//! The TUN device in batches, with the kernel's TCP offloads (tun-rs, `IFF_VNET_HDR`).
//!
//! Without offloads every 1.4 KB packet is a read or write and a pass through the
//! kernel's TCP stack. With them the kernel hands the TUN joiner whole 64 KB TCP
//! segments (TSO), which tun-rs splits here, and takes back runs of the tunnel's packets
//! coalesced into large ones (GRO), so a bulk transfer costs a system call per run.
//! Where the kernel refuses offloads the device still works one packet per call.

use std::io;

use tun_rs::{AsyncDevice, GROTable, VIRTIO_NET_HDR_LEN};

/// Packets gathered for the device before they are written as one batch.
const WRITE_BATCH: usize = 64;
/// What a read may need: a virtio header and a 64 KB segment.
const READ_BUFFER: usize = VIRTIO_NET_HDR_LEN + 65_535;
/// The room of a write slot on a device with offloads. Coalescing appends a run of packets
/// to the run's first one, up to a 64 KB segment, and tun-rs coalesces only into a buffer
/// that already has the room (its check leaves a header's worth on either side): with
/// MTU-sized slots it wrote every packet alone. Only the pages a run reaches are touched.
const SLOT_CAPACITY: usize = 2 * VIRTIO_NET_HDR_LEN + 65_535;

pub struct TunIo {
    device: AsyncDevice,
    /// One read as the kernel gave it: header and unsplit segment.
    read_buf: Vec<u8>,
    /// The packets that read was split into, and their lengths.
    packets: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    /// Packets for the device, each after `VIRTIO_NET_HDR_LEN` bytes of room.
    out: Vec<Vec<u8>>,
    queued: usize,
    /// Made at the first batch: tun-rs preallocates room for 128 flows of 128 packets each
    /// (1.7 MB, over half of it touched by the allocator's chunk headers alone), more than
    /// an idle joiner's whole heap. Single packets need none.
    gro: Option<GROTable>,
    mtu: usize,
}

impl TunIo {
    pub fn new(device: AsyncDevice, mtu: usize) -> Self {
        // Enough packets for a 64 KB segment cut at the smallest MSS this MTU allows.
        let segments = 65_535 / mtu.saturating_sub(40).max(536) + 1;
        Self {
            device,
            read_buf: vec![0; READ_BUFFER],
            packets: vec![vec![0; mtu]; segments],
            sizes: vec![0; segments],
            out: Vec::new(),
            queued: 0,
            gro: None,
            mtu,
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.device.readable().await
    }

    /// Reads what the device has without waiting and hands each IP packet to `packet`;
    /// `WouldBlock` when it had nothing.
    ///
    /// # Errors
    /// As the device's read; a malformed offload read is an error too.
    pub fn try_recv(&mut self, mut packet: impl FnMut(&[u8])) -> io::Result<usize> {
        let count = self.device.try_recv_multiple(
            &mut self.read_buf,
            &mut self.packets,
            &mut self.sizes,
            0,
        )?;
        for (buf, &len) in self.packets.iter().zip(&self.sizes).take(count) {
            packet(&buf[..len]);
        }
        Ok(count)
    }

    /// Room for the next packet for the device; [`TunIo::commit`] it with its length.
    pub fn next_packet(&mut self) -> &mut [u8] {
        if self.queued == self.out.len() {
            let room = if self.device.tcp_gso() {
                SLOT_CAPACITY
            } else {
                0
            };
            self.out.push(Vec::with_capacity(room));
        }
        // Only what the last packet in this slot left short is zeroed: the node overwrites
        // the packet, and tun-rs writes the header.
        let buf = &mut self.out[self.queued];
        buf.resize(VIRTIO_NET_HDR_LEN + self.mtu, 0);
        &mut buf[VIRTIO_NET_HDR_LEN..]
    }

    /// Queues the `len` bytes written at [`TunIo::next_packet`]; true when the batch is full
    /// and should be flushed.
    pub fn commit(&mut self, len: usize) -> bool {
        self.out[self.queued].truncate(VIRTIO_NET_HDR_LEN + len);
        self.queued += 1;
        self.queued >= WRITE_BATCH
    }

    /// Writes the queued packets, coalesced where the device takes offloads.
    pub async fn flush(&mut self) {
        let sent = match self.queued {
            0 => return,
            // What request/response traffic writes: nothing to coalesce.
            1 => {
                let buf = &mut self.out[0];
                // A device with offloads takes a virtio header on every write; all zero is a
                // plain packet with its checksums complete.
                let start = if self.device.tcp_gso() {
                    buf[..VIRTIO_NET_HDR_LEN].fill(0);
                    0
                } else {
                    VIRTIO_NET_HDR_LEN
                };
                self.device.send(&buf[start..]).await
            }
            queued => {
                let gro = self.gro.get_or_insert_with(GROTable::new);
                self.device
                    .send_multiple(gro, &mut self.out[..queued], VIRTIO_NET_HDR_LEN)
                    .await
            }
        };
        if let Err(err) = sent {
            tracing::debug!(%err, "TUN send failed");
        }
        self.queued = 0;
    }
}
