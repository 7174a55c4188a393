//! One TCP flow's state as its driver sees it: which events were reported, so each is
//! reported once, and how its smoltcp socket's state turns into events.

use std::collections::VecDeque;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use crate::event::{CloseReason, Event, FlowId};

/// Where a TCP flow is in its life, as far as the driver has been told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Dial side: `Connected` still to be reported.
    Connecting,
    /// Both ways open (or the peer's FIN not yet reported).
    Open,
    /// `ReadClosed` reported: the peer finished sending.
    ReadClosed,
}

pub(crate) struct TcpFlow {
    pub(crate) handle: SocketHandle,
    phase: Phase,
    /// `Readable` reported and `recv` has not drained the socket since.
    readable_sent: bool,
    /// `send` took less than offered (or nothing yet): report `Writable` once there is room.
    want_writable: bool,
    /// A reset came from the peer or was asked for by us: the flow ends as `Reset`.
    reset_seen: bool,
}

impl TcpFlow {
    /// A flow we opened; `Connected` comes once the handshake finishes.
    pub(crate) fn dialing(handle: SocketHandle) -> Self {
        Self::new(handle, Phase::Connecting)
    }

    /// A flow a peer opened; the driver learnt of it through `Accepted`.
    pub(crate) fn accepted(handle: SocketHandle) -> Self {
        Self::new(handle, Phase::Open)
    }

    fn new(handle: SocketHandle, phase: Phase) -> Self {
        Self {
            handle,
            phase,
            readable_sent: false,
            want_writable: false,
            reset_seen: false,
        }
    }

    /// `send` could not take everything: report `Writable` when it can.
    pub(crate) fn wait_writable(&mut self) {
        self.want_writable = true;
    }

    /// `recv` emptied the socket: the next data is worth a `Readable` again.
    pub(crate) fn drained(&mut self) {
        self.readable_sent = false;
    }

    pub(crate) fn reset(&mut self) {
        self.reset_seen = true;
    }

    /// Reports what changed on `socket` since the last look; returns why the flow ended
    /// when it has.
    pub(crate) fn observe(
        &mut self,
        id: FlowId,
        socket: &tcp::Socket<'_>,
        events: &mut VecDeque<Event>,
    ) -> Option<CloseReason> {
        let state = socket.state();
        if self.phase == Phase::Connecting && socket.may_send() {
            self.phase = Phase::Open;
            events.push_back(Event::Connected { flow: id });
        }
        if !self.readable_sent && socket.can_recv() {
            self.readable_sent = true;
            events.push_back(Event::Readable { flow: id });
        }
        if self.want_writable
            && socket.may_send()
            && socket.send_queue() <= socket.send_capacity() / 2
        {
            self.want_writable = false;
            events.push_back(Event::Writable { flow: id });
        }
        let fin_received = matches!(
            state,
            tcp::State::CloseWait
                | tcp::State::LastAck
                | tcp::State::Closing
                | tcp::State::TimeWait
        ) || (state == tcp::State::Closed
            && !self.reset_seen
            && self.phase != Phase::Connecting);
        if fin_received && self.phase == Phase::Open && !socket.can_recv() {
            self.phase = Phase::ReadClosed;
            events.push_back(Event::ReadClosed { flow: id });
        }
        if !matches!(state, tcp::State::Closed | tcp::State::TimeWait) || socket.can_recv() {
            return None;
        }
        Some(if self.reset_seen {
            CloseReason::Reset
        } else if self.phase == Phase::ReadClosed {
            CloseReason::Finished
        } else {
            CloseReason::TimedOut
        })
    }
}
