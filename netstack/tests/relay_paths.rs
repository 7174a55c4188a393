//! The hub relay on the simulated link: two nodes start through a simulated relay, go
//! direct when it introduces them, fall back to it when the direct path goes dark, ignore
//! forged introductions, and ride out a relay restart. Virtual time throughout (except
//! boringtun's own handshake timers, which nothing here waits for).
#![allow(clippy::unwrap_used, clippy::wildcard_enum_match_arm)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use connect_netstack::{BIND_INTERVAL, relay};

const MB: usize = 1024 * 1024;

#[test]
fn paths_start_relayed_turn_direct_and_fall_back_to_the_relay_mid_transfer() {
    let mut pair = Pair::with_relay(LinkConfig::default());
    // Phase 1: through the relay until it introduces the two; then direct.
    assert!(
        !pair.is_direct(To::Joiner),
        "the joiner starts at the sharer's relay slot"
    );
    let mut forwarded_before_direct = None;
    let mut went_direct_at = None;
    let mut blocked_at: Option<std::time::Instant> = None;
    let mut back_on_relay = false;
    let (sent, received) = bulk_with(&mut pair, 24 * MB, 3_000_000, |p, got| {
        if forwarded_before_direct.is_none() && (p.is_direct(To::Joiner) || p.is_direct(To::Sharer))
        {
            forwarded_before_direct = Some(p.relay.as_ref().unwrap().forwarded);
        }
        if went_direct_at.is_none() && p.is_direct(To::Joiner) && p.is_direct(To::Sharer) {
            went_direct_at = Some((p.now, p.relay.as_ref().unwrap().forwarded));
        }
        // Phase 2: a third of the way in, a firewall drops everything sent directly.
        if went_direct_at.is_some() && blocked_at.is_none() && got >= 8 * MB {
            p.direct_blocked = true;
            blocked_at = Some(p.now);
        }
        if blocked_at.is_some() && !p.is_direct(To::Joiner) && !p.is_direct(To::Sharer) {
            back_on_relay = true;
        }
    });
    assert_eq!(
        sent, received,
        "the transfer arrived intact across both switches"
    );
    assert!(
        forwarded_before_direct >= Some(2),
        "the first handshake went through the relay ({forwarded_before_direct:?} forwarded)"
    );
    let (_, forwarded_then) = went_direct_at.expect("the path never turned direct");
    assert!(
        blocked_at.is_some(),
        "the transfer ended before the direct path was cut"
    );
    let relay = pair.relay.as_ref().unwrap();
    assert!(
        relay.forwarded > forwarded_then + 1000,
        "after the fall-back the relay carried the rest ({} forwarded, {forwarded_then} before direct)",
        relay.forwarded
    );
    assert!(back_on_relay, "both sides went back to the relay");
    assert!(
        relay::slot_of(pair.endpoint_of_peer(To::Joiner).unwrap()).is_some(),
        "the joiner's path is relayed at the end"
    );
}

#[test]
fn a_direct_path_carries_the_traffic_once_proven() {
    let mut pair = Pair::with_relay(LinkConfig::default());
    let mut forwarded_when_direct = None;
    let (sent, received) = bulk_with(&mut pair, 16 * MB, 2_000_000, |p, _| {
        if forwarded_when_direct.is_none() && p.is_direct(To::Joiner) && p.is_direct(To::Sharer) {
            forwarded_when_direct = Some(p.relay.as_ref().unwrap().forwarded);
        }
    });
    assert_eq!(sent, received);
    // Both sides heard of their handshakes as events, naming the other side.
    let sharer_key = connect_netstack::PublicKey::from(&key(1));
    let joiner_key = connect_netstack::PublicKey::from(&key(2));
    assert!(!pair.joiner.handshakes.is_empty() && !pair.sharer.handshakes.is_empty());
    assert!(pair.joiner.handshakes.iter().all(|k| *k == sharer_key));
    assert!(pair.sharer.handshakes.iter().all(|k| *k == joiner_key));
    let before = forwarded_when_direct.expect("never direct");
    let after = pair.relay.as_ref().unwrap().forwarded;
    // 16 MB is over 11,000 datagrams; the relay saw only the stragglers of the switch.
    assert!(
        after - before < 100,
        "the relay forwarded {} datagrams after the path went direct",
        after - before
    );
}

#[test]
fn forged_introductions_cost_one_probe_a_second_and_never_move_the_path() {
    let mut pair = Pair::with_relay(LinkConfig::default());
    pair.relay.as_mut().unwrap().introduce = false;
    let forged: SocketAddr = "192.0.2.66:4444".parse().unwrap();
    let start = pair.now;
    let mut next_forgery = pair.now;
    let (sent, received) = bulk_with(&mut pair, 8 * MB, 2_000_000, |p, _| {
        // An attacker floods the joiner with introductions of the sharer's slot, from an
        // address of its own and from the relay's.
        if p.now >= next_forgery {
            for from in [forged, RELAY_ADDR] {
                p.inject(To::Joiner, from, relay::write_peer_at(SHARER_SLOT, forged));
            }
            next_forgery = p.now + Duration::from_millis(50);
        }
        assert!(
            !p.is_direct(To::Joiner),
            "a forged introduction moved the path"
        );
    });
    assert_eq!(sent, received);
    let elapsed = pair.now - start;
    let probes = pair.strays.iter().filter(|(dst, _)| *dst == forged).count();
    assert!(probes >= 1, "the introduction was never tried");
    assert!(
        probes as u64 <= elapsed.as_secs() + 1,
        "{probes} probes to the forged address in {elapsed:?}"
    );
    assert!(
        pair.strays
            .iter()
            .all(|(_, bytes)| bytes.first() == Some(&1) && bytes.len() == 148),
        "only handshake initiations went to the forged address"
    );
}

#[test]
fn a_relay_restart_is_ridden_out_by_the_next_binds() {
    let mut pair = Pair::with_relay(LinkConfig::default());
    pair.relay.as_mut().unwrap().introduce = false;
    let mut restarted_at = None;
    let mut rebound_after = None;
    let (sent, received) = bulk_with(&mut pair, 8 * MB, 3_000_000, |p, got| {
        let relay = p.relay.as_mut().unwrap();
        if restarted_at.is_none() && got >= 2 * MB {
            relay.restart();
            restarted_at = Some(p.now);
        }
        if let Some(at) = restarted_at
            && rebound_after.is_none()
            && relay.is_bound(SHARER_SLOT)
            && relay.is_bound(JOINER_SLOT)
        {
            rebound_after = Some(p.now - at);
        }
    });
    assert_eq!(sent, received, "the transfer survived the restart");
    let relay = pair.relay.as_ref().unwrap();
    assert!(
        relay.unbound > 0,
        "the restart dropped nothing: it tested nothing"
    );
    let rebound_after = rebound_after.expect("the agents never bound again");
    assert!(
        rebound_after <= BIND_INTERVAL + Duration::from_millis(10),
        "bound again after {rebound_after:?}"
    );
    assert!(!pair.is_direct(To::Joiner) && !pair.is_direct(To::Sharer));
}

#[test]
fn binds_carry_the_wall_clock_the_node_was_given() {
    // A relay whose clock is more than the bind window ahead refuses every bind; one
    // within it accepts them: the node's binds carry the time it was fed, moved on by
    // virtual time.
    let mut pair = Pair::with_relay(LinkConfig::default());
    pair.drive_until(100, |p| p.sharer.node.relay_observed().is_some());
    assert_eq!(pair.sharer.node.relay_observed(), Some(pair.sharer.addr));
    pair.now += Duration::from_secs(3600);
    // The node was told the wall clock went back an hour: its next bind is stale.
    let now = pair.now;
    pair.sharer.node.set_wall_clock(now, UNIX_START_MS);
    let binds = pair.relay.as_ref().unwrap().binds;
    pair.run(50);
    assert_eq!(
        pair.relay.as_ref().unwrap().binds,
        binds + 1,
        "only the joiner's bind counts"
    );
}
