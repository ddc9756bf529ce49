//! The mesh with real node processes on loopback TCP: spreading, misbehaving and flooding
//! peers, a killed node coming back, and a late joiner catching up by pull sync.

mod common;

use std::time::{Duration, Instant};

use common::{bid, order, wait_for, TestNode};
use leasemesh_protocol::Signed;
use serde_json::json;

/// 10 nodes in a tree (node k bootstraps to node (k-1)/2); an order posted to node 0 is
/// served by all ten, and a bid posted to the last node reaches the first.
#[test]
fn an_order_posted_to_one_node_reaches_all_ten() {
    let mut nodes: Vec<TestNode> = Vec::new();
    for k in 0..10 {
        let boot = if k == 0 { vec![] } else { vec![nodes[(k - 1) / 2].multiaddr()] };
        nodes.push(TestNode::start(&format!("node{k}"), &boot, false));
    }
    for n in &nodes {
        n.wait_meshed();
    }

    let o = order(1);
    let id = o.id();
    let t0 = Instant::now();
    let (code, body) = nodes[0].post_order(&o);
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["id"], id.to_hex());
    // The POST answers once the order is on node 0's disk (fsync) and handed to gossip.
    let posted = t0.elapsed();
    let t1 = Instant::now();
    // Poll all ten in turn, noting when each first serves the order.
    let mut arrived: Vec<Option<Duration>> = vec![None; nodes.len()];
    wait_for("the order on all ten nodes", Duration::from_secs(20), || {
        for (i, n) in nodes.iter().enumerate() {
            if arrived[i].is_none() && n.has_order(&id) {
                arrived[i] = Some(t1.elapsed());
            }
        }
        arrived.iter().all(Option::is_some).then_some(())
    });
    let mut ms: Vec<u128> = arrived.iter().flatten().map(|d| d.as_millis()).collect();
    ms.sort_unstable();
    eprintln!(
        "POST /v1/orders took {} ms; the order was then on the 10 nodes after (ms, sorted, \
         API polling included): {ms:?}",
        posted.as_millis()
    );

    // The same order again is a conflict, not a second copy.
    let (code, body) = nodes[3].post_order(&o);
    assert_eq!(code, 409, "{body}");

    let b = bid(id, "provider-a", 500_000);
    let (code, body) = nodes[9].post("/v1/bids", json!({ "signed_hex": hex::encode(b.encode()) }));
    assert_eq!(code, 201, "{body}");
    wait_for("bid on node0", Duration::from_secs(20), || {
        let bids = nodes[0].get(&format!("/v1/orders/{id}/bids")).ok()?;
        (bids.as_array()?.len() == 1 && bids[0]["id"] == b.id().to_hex()).then_some(())
    });
    // Every node accepted the order by gossip except the one it was posted to.
    let accepted: f64 = nodes[1..]
        .iter()
        .map(|n| {
            n.metric("leasemesh_gossip_messages_total", &["topic=\"orders\"", "verdict=\"accept\""])
        })
        .sum();
    assert_eq!(accepted, 9.0);
}

/// A peer sends an undecodable order and a badly signed one: both are rejected and its score
/// falls. Then it floods bids: the rate limit drops most of them, and an honest order from
/// another peer still gets through while the flooder is still connected. At last the flooder
/// is banned. (The honest peer joins after the flood: had it been connected to the flooder, it
/// would have relayed the valid flooded bids and been throttled by the hub's test-low limit
/// like any relay.)
#[test]
fn a_lying_or_flooding_peer_is_held_off() {
    // A low limit, so a flood the test can sign quickly is well over it.
    let hub = TestNode::start_with(
        "hub",
        &[],
        false,
        &[("gossip_rate_per_sec", "100"), ("gossip_rate_burst", "200")],
    );
    // The flooder does not sign its gossip envelopes (nothing makes it): the hub then spends no
    // envelope check per message, and the flood arrives faster than its rate limit even in a
    // debug build.
    let bad = TestNode::start_with("bad", &[hub.multiaddr()], true, &[("sign_gossip", "false")]);
    hub.wait_meshed();
    bad.wait_meshed();
    let raw = |topic: &str, payloads: Vec<Vec<u8>>| {
        let hexes: Vec<String> = payloads.iter().map(hex::encode).collect();
        let (code, body) =
            bad.post("/v1/debug/publish", json!({ "topic": topic, "payloads_hex": hexes }));
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["errors"].as_array().unwrap().len(), 0, "{body}");
    };

    let rejects = |n: &TestNode| {
        n.metric("leasemesh_gossip_messages_total", &["topic=\"orders\"", "verdict=\"reject\""])
    };
    let mut forged = order(2);
    forged.sig.0[7] ^= 0x20;
    raw("orders", vec![b"\x01\x07not an order at all".to_vec(), forged.encode()]);
    wait_for("two rejects on the hub", Duration::from_secs(20), || {
        (rejects(&hub) >= 2.0).then_some(())
    });
    assert_eq!(
        hub.metric(
            "leasemesh_gossip_messages_total",
            &["verdict=\"reject\"", "reason=\"bad_signature\""]
        ),
        1.0
    );
    assert!(!hub.has_order(&forged.id()), "a forged order must not be stored");
    let score = wait_for("the bad peer's score to fall", Duration::from_secs(10), || {
        hub.score_of(&bad.peer_id).filter(|s| *s < -10.0)
    });
    eprintln!("score of the lying peer on the hub: {score}");

    // The flood: valid bids on an order both know.
    let target = order(3);
    let (code, _) = hub.post_order(&target);
    assert_eq!(code, 201);
    wait_for("the target order on the bad peer", Duration::from_secs(20), || {
        bad.has_order(&target.id()).then_some(())
    });
    let flood: Vec<Vec<u8>> = (0..1500)
        .map(|i| bid(target.id(), &format!("flood-{}", i % 50), 100_000 + i as u128).encode())
        .collect();
    raw("bids", flood);
    wait_for("the hub to rate-limit the flood", Duration::from_secs(20), || {
        (hub.metric("leasemesh_gossip_rate_limited_total", &[]) > 0.0).then_some(())
    });

    let honest = TestNode::start("honest", &[hub.multiaddr()], false);
    honest.wait_meshed();
    let after = order(4);
    let (code, _) = honest.post_order(&after);
    assert_eq!(code, 201);
    wait_for("the honest order on the hub after the flood", Duration::from_secs(20), || {
        hub.has_order(&after.id()).then_some(())
    });
    let stored = hub.get(&format!("/v1/orders/{}/bids", target.id())).unwrap();
    let stored = stored.as_array().unwrap().len();
    eprintln!("flood: 1500 bids sent, {stored} stored on the hub");
    assert!(stored < 1500, "the rate limit let every flooded bid through");
    let score = hub.score_of(&bad.peer_id);
    assert!(score.is_none_or(|s| s < -10.0), "flooder's score: {score:?}");

    // Lying and then flooding kept its score below the graylist: the hub bans it and drops
    // the connection, while the honest peer stays.
    wait_for("the hub to ban the bad peer", Duration::from_secs(40), || {
        let s = hub.status();
        let banned = s["banned_peers"].as_array()?.iter().any(|p| p == &bad.peer_id);
        (banned && hub.score_of(&bad.peer_id).is_none()).then_some(())
    });
    let honest_score = hub.score_of(&honest.peer_id).expect("the honest peer was dropped too");
    assert!(honest_score >= 0.0, "honest peer's score: {honest_score}");
    assert_eq!(hub.metric("leasemesh_peers_banned_total", &[]), 1.0);
}

/// A node killed with SIGKILL keeps what it acknowledged, fetches what it missed by pull sync
/// when it comes back, and then follows gossip again; a node that joins late catches up too.
#[test]
fn killed_node_keeps_its_store_and_late_joiner_pulls_live_orders() {
    let a = TestNode::start("a", &[], false);
    let mut b = TestNode::start("b", &[a.multiaddr()], false);
    a.wait_meshed();
    b.wait_meshed();

    let o1 = order(10);
    let (code, _) = b.post_order(&o1);
    assert_eq!(code, 201);
    wait_for("o1 on a", Duration::from_secs(20), || a.has_order(&o1.id()).then_some(()));

    b.kill();
    let o2 = order(11);
    let (code, body) = a.post_order(&o2);
    assert_eq!(code, 201, "{body}");

    b.run();
    // o1 was acknowledged by b before the kill: it comes back from b's own disk.
    assert!(b.has_order(&o1.id()), "b lost an order it acknowledged");
    // o2 arrives by pull sync from a.
    wait_for("o2 on b by pull sync", Duration::from_secs(30), || {
        b.has_order(&o2.id()).then_some(())
    });
    assert_eq!(b.metric("leasemesh_sync_fetched_total", &["kind=\"order\""]), 1.0);

    // b rejoined the mesh: new orders reach it by gossip.
    b.wait_meshed();
    let o3 = order(12);
    let (code, _) = a.post_order(&o3);
    assert_eq!(code, 201);
    wait_for("o3 on b by gossip", Duration::from_secs(20), || b.has_order(&o3.id()).then_some(()));

    // A node that joins now (over QUIC) gets every live order by pull sync.
    let c = TestNode::start("c", &[a.quic_multiaddr()], false);
    for o in [&o1, &o2, &o3] {
        wait_for("live orders on the late joiner", Duration::from_secs(30), || {
            c.has_order(&o.id()).then_some(())
        });
    }
    assert!(c.metric("leasemesh_sync_fetched_total", &["kind=\"order\""]) >= 3.0);
    let listed = c.get("/v1/orders").unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);

    // SIGTERM is a clean shutdown.
    let status = b.terminate();
    assert!(status.success(), "b exited with {status}");
    let _ = Signed::<leasemesh_protocol::Order>::decode(&o1.encode()).unwrap();
}
