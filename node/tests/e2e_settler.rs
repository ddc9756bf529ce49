//! End to end on real processes over loopback: one settler and three nodes share a genesis; a
//! tenant's order and three providers' competing bids go in through different nodes' APIs;
//! after the epoch every node holds the identical match batch, the cheapest feasible bid won
//! and the lease is listed everywhere. A batch with a tampered award, signed by the real
//! settler key, is refused by the API and by gossip peers, and counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leasemesh_matcher::epoch::{self, EpochClock};
use leasemesh_node::settler::genesis::{Genesis, GenesisBalance, GenesisGrant, SettlementGenesis};
use leasemesh_protocol::{
    samples, Bid, CloseReason, Coin, Keypair, LeaseEvent, LeaseEventKind, MatchBatch, Order,
    ProviderInfo, PublicKey, SettlementBatch, Signed,
};
use leasemesh_settlement::batch::{verify_lease_proof, LeaseProof};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_leasemesh-node");
const EPOCH_MS: u64 = 1000;
const LEADER_TIMEOUT_MS: u64 = 1000;

fn silent_settler() -> PublicKey {
    Keypair::from_seed_label("e2e-silent-settler").public()
}

/// A bid window of at least 1.2 s whose auction closes in an epoch led by `leader`.
fn window_led_by(leader: &PublicKey, settlers: &[PublicKey], created_at_ms: u64) -> u64 {
    (0..40)
        .map(|i| 1200 + i * EPOCH_MS / 2)
        .find(|w| epoch::settler_at(settlers, (created_at_ms + w) / EPOCH_MS, 0) == Some(*leader))
        .unwrap()
}
const TENANT_ADDRESS: &str = "tenant-e2e";
/// Bid prices per hour: 3, 1 (the cheapest) and 2 million uakt.
const PRICES: [u128; 3] = [3_000_000, 1_000_000, 2_000_000];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A node process; killed on drop.
struct TestNode {
    name: &'static str,
    home: PathBuf,
    api: String,
    p2p: String,
    key: Keypair,
    child: Option<Child>,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl TestNode {
    fn init(root: &Path, name: &'static str, raw_publish: bool) -> TestNode {
        let home = root.join(name);
        let (p2p_port, api_port) = (free_port(), free_port());
        let mut cmd = Command::new(BIN);
        cmd.args(["init", "--home"]).arg(&home);
        cmd.args(["--p2p-listen", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")]);
        cmd.args(["--api-listen", &format!("127.0.0.1:{api_port}")]);
        if raw_publish {
            cmd.arg("--unsafe-raw-publish");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "init {name}: {}", String::from_utf8_lossy(&out.stderr));
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        let secret = std::fs::read_to_string(home.join("identity.key")).unwrap();
        let secret: [u8; 32] = hex::decode(secret.trim()).unwrap().try_into().unwrap();
        let key = Keypair::from_secret(secret);
        assert_eq!(info["node_key"].as_str().unwrap(), key.public().to_hex());
        let peer = info["peer_id"].as_str().unwrap().to_string();
        TestNode {
            name,
            home,
            api: format!("http://127.0.0.1:{api_port}"),
            p2p: format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer}"),
            key,
            child: None,
        }
    }

    /// Points the config at the genesis and the bootstrap peers, then starts the process.
    fn start(
        &mut self,
        genesis: &Path,
        bootstrap: &[String],
        settler_extra: &[(&str, toml::Value)],
    ) {
        let path = self.home.join("config.toml");
        let mut cfg: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut settler = toml::Table::new();
        settler.insert("genesis".into(), genesis.display().to_string().into());
        for (k, v) in settler_extra {
            settler.insert((*k).into(), v.clone());
        }
        cfg.insert("settler".into(), settler.into());
        let net = cfg.entry("network").or_insert(toml::Table::new().into());
        net.as_table_mut().unwrap().insert(
            "bootstrap".into(),
            toml::Value::Array(bootstrap.iter().map(|b| b.clone().into()).collect()),
        );
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        let log = std::fs::File::create(self.home.join("node.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--home"])
            .arg(&self.home)
            .env("RUST_LOG", "info,leasemesh_node=debug,libp2p=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Result<Value, (u16, String)> {
        match ureq::get(&format!("{}{path}", self.api)).timeout(Duration::from_secs(5)).call() {
            Ok(r) => Ok(r.into_json().unwrap()),
            Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
            Err(e) => Err((0, e.to_string())),
        }
    }

    fn post_hex(&self, path: &str, bytes: &[u8]) -> Result<Value, (u16, String)> {
        let body = json!({ "signed_hex": hex::encode(bytes) });
        match ureq::post(&format!("{}{path}", self.api))
            .timeout(Duration::from_secs(10))
            .send_json(body)
        {
            Ok(r) => Ok(r.into_json().unwrap()),
            Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
            Err(e) => Err((0, e.to_string())),
        }
    }

    fn metrics(&self) -> String {
        ureq::get(&format!("{}/metrics", self.api)).call().unwrap().into_string().unwrap()
    }

    fn metric(&self, line_prefix: &str) -> u64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Polls `f` until it returns `Some`, or fails with `what` after `limit`.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    nodes: &[&TestNode],
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            for n in nodes {
                eprintln!("----- {} log -----\n{}", n.name, n.log());
            }
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_node_accepts_the_same_batch_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut settler = TestNode::init(dir.path(), "settler", false);
    let mut nodes = [
        TestNode::init(dir.path(), "node-a", true),
        TestNode::init(dir.path(), "node-b", false),
        TestNode::init(dir.path(), "node-c", false),
    ];
    let genesis = Genesis {
        network: "e2e".into(),
        epoch_ms: EPOCH_MS,
        settle_delay_ms: 300,
        leader_timeout_ms: LEADER_TIMEOUT_MS,
        // The second settler never runs: epochs it leads fall back to the first after the timeout.
        settlers: vec![settler.key.public(), silent_settler()],
        settlement: SettlementGenesis::default(),
        balances: vec![GenesisBalance {
            address: TENANT_ADDRESS.into(),
            denom: "uakt".into(),
            amount: 1_000_000_000,
            // The key that signs the tenant's orders controls the address they charge.
            key: Some(samples::tenant_key().public()),
        }],
        grants: vec![GenesisGrant {
            tenant: TENANT_ADDRESS.into(),
            denom: "uakt".into(),
            limit: 1_000_000,
        }],
    };
    let genesis_path = dir.path().join("genesis.toml");
    std::fs::write(&genesis_path, genesis.to_toml().unwrap()).unwrap();
    settler.start(
        &genesis_path,
        &[],
        &[("settle_on_close", true.into()), ("settle_interval_ms", 60_000.into())],
    );
    // Bootstrap peers are dialled once at start: the settler must listen first.
    wait_for("the settler's p2p listener", Duration::from_secs(20), &[&settler], || {
        let s = settler.get("/v1/status").ok()?;
        (!s["listen_addrs"].as_array()?.is_empty()).then_some(())
    });
    for n in nodes.iter_mut() {
        n.start(&genesis_path, std::slice::from_ref(&settler.p2p), &[]);
    }
    let all: Vec<&TestNode> = std::iter::once(&settler).chain(nodes.iter()).collect();
    for n in &all {
        wait_for("the API and a gossip mesh on every topic", Duration::from_secs(20), &all, || {
            let s = n.get("/v1/status").ok()?;
            let mesh = &s["mesh"];
            ["orders", "bids", "providers", "batches"]
                .iter()
                .all(|t| mesh[*t].as_u64().unwrap_or(0) >= 1)
                .then_some(())
        });
        let st = n.get("/v1/settler/status").unwrap();
        assert_eq!(
            st["genesis_digest"],
            json!(genesis.digest()),
            "{} loaded another genesis",
            n.name
        );
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    // Three providers declare capacity (through node A).
    let now = now_ms();
    let providers: Vec<Keypair> =
        (0..3).map(|i| Keypair::from_seed_label(&format!("e2e-provider-{i}"))).collect();
    for (i, key) in providers.iter().enumerate() {
        let mut info: ProviderInfo = samples::provider_info();
        info.provider = key.public();
        info.sequence = 1;
        info.created_at_ms = now;
        info.chain_address = format!("provider-{i}");
        a.post_hex("/v1/providers", &Signed::sign(info, key).encode()).unwrap();
    }
    for n in &all {
        wait_for("provider infos everywhere", Duration::from_secs(10), &all, || {
            (n.get("/v1/providers").ok()?["items"].as_array()?.len() == 3).then_some(())
        });
    }

    // The tenant's order (through node B); its auction closes 1.5 s later.
    let tenant = samples::tenant_key();
    let mut order: Order = samples::order();
    order.tenant = tenant.public();
    order.created_at_ms = now_ms();
    order.bid_window_ms =
        window_led_by(&settler.key.public(), &genesis.settlers, order.created_at_ms);
    order.placement.attributes.clear();
    order.max_price_per_hour = Coin::new("uakt", 10_000_000);
    order.tenant_address = TENANT_ADDRESS.into();
    let order = Signed::sign(order, &tenant);
    let order_id = order.id();
    b.post_hex("/v1/orders", &order.encode()).unwrap();
    wait_for("the order on node C", Duration::from_secs(5), &all, || {
        c.get(&format!("/v1/orders/{order_id}")).ok()
    });

    // Competing bids (through node C).
    let denom = order.body.max_price_per_hour.denom.clone();
    let close = order.body.auction_closes_at_ms();
    let mut bids = Vec::new();
    for (key, price) in providers.iter().zip(PRICES) {
        let bid = Signed::sign(
            Bid {
                version: leasemesh_protocol::v(),
                order_id,
                provider: key.public(),
                price_per_hour: Coin::new(denom.clone(), price),
                created_at_ms: now_ms(),
                expires_at_ms: close + 60_000,
            },
            key,
        );
        c.post_hex("/v1/bids", &bid.encode()).unwrap();
        bids.push(bid);
    }
    assert!(
        now_ms() < close,
        "the bids must be made before the auction closes; the machine is too slow"
    );
    let cheapest = &bids[1];
    let dearest = &bids[0];

    // After the epoch: the identical batch everywhere, the cheapest bid won.
    let epoch = close / EPOCH_MS;
    let views: Vec<Value> = all
        .iter()
        .map(|n| {
            wait_for("the epoch's batch on every node", Duration::from_secs(15), &all, || {
                n.get(&format!("/v1/batches/{epoch}")).ok()
            })
        })
        .collect();
    for (n, v) in all.iter().zip(&views) {
        assert_eq!(v["batch_id"], views[0]["batch_id"], "{} holds another batch", n.name);
        assert_eq!(v["outcome_digest"], views[0]["outcome_digest"], "{}", n.name);
    }
    let awards = views[0]["awards"].as_array().unwrap();
    assert_eq!(awards.len(), 1, "{awards:?}");
    assert_eq!(awards[0]["bid_id"], json!(cheapest.id()));
    assert_eq!(awards[0]["provider"], json!(providers[1].public()));
    let lease_id = awards[0]["lease_id"].as_str().unwrap().to_string();
    for n in &all {
        let leases = n.get("/v1/leases").unwrap();
        assert!(
            leases["items"].as_array().unwrap().iter().any(|l| l["lease_id"] == json!(lease_id)),
            "{} does not list the lease: {leases}",
            n.name
        );
        assert!(n.metric("leasemesh_settler_batches_accepted_total") >= 1, "{}", n.name);
    }
    assert_eq!(settler.metric("leasemesh_settler_batches_published_total"), 1);

    // A tampered batch: the award moved to the dearest bid, re-signed with the settler's key.
    let signed = hex::decode(views[0]["signed_hex"].as_str().unwrap()).unwrap();
    let mut body = Signed::<MatchBatch>::decode_verified(&signed).unwrap().body;
    body.awards[0].bid_id = dearest.id();
    body.awards[0].provider = dearest.body.provider;
    body.awards[0].price_per_hour = dearest.body.price_per_hour.clone();
    let tampered = Signed::sign(body, &settler.key);
    let (code, detail) = a.post_hex("/v1/batches", &tampered.encode()).unwrap_err();
    assert_eq!(code, 422, "{detail}");
    assert!(detail.contains("batch_mismatch") && detail.contains("awards_mismatch"), "{detail}");
    let rejected = r#"leasemesh_settler_batches_rejected_total{reason="awards_mismatch"}"#;
    assert_eq!(a.metric(rejected), 1);

    // A second valid batch for the epoch (the same outcome, signed a moment later, as a late
    // leader's would be): refused as late (409, gossip Ignore), not as wrong, since an honest
    // peer may relay it; the accepted batch stays.
    let mut again = Signed::<MatchBatch>::decode_verified(&signed).unwrap().body;
    again.created_at_ms += 1;
    let again = Signed::sign(again, &settler.key);
    let (code, detail) = a.post_hex("/v1/batches", &again.encode()).unwrap_err();
    assert_eq!(code, 409, "{detail}");
    assert!(detail.contains("stale") && detail.contains("epoch_taken"), "{detail}");
    assert_eq!(a.metric(r#"leasemesh_settler_batches_rejected_total{reason="epoch_taken"}"#), 1);
    assert_eq!(a.get(&format!("/v1/batches/{epoch}")).unwrap()["batch_id"], views[0]["batch_id"]);

    // The same bytes over gossip (node A plays a lying peer): its peers refuse and count it.
    let before: u64 =
        all[1..].iter().map(|n| n.metric(rejected)).sum::<u64>() + settler.metric(rejected);
    assert_eq!(before, 1);
    let resp = ureq::post(&format!("{}/v1/debug/publish", a.api))
        .send_json(json!({ "topic": "batches", "payloads_hex": [hex::encode(tampered.encode())] }))
        .unwrap()
        .into_json::<Value>()
        .unwrap();
    assert_eq!(resp["published"], 1, "{resp}");
    wait_for("a gossip peer to reject the tampered batch", Duration::from_secs(10), &all, || {
        (settler.metric(rejected) + b.metric(rejected) + c.metric(rejected) >= 1).then_some(())
    });
    let tampered_lease = leasemesh_protocol::lease_id(&order_id, &dearest.id());
    for n in &all {
        let leases = n.get("/v1/leases").unwrap();
        assert!(
            !leases["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["lease_id"] == json!(tampered_lease)),
            "{} took the tampered award",
            n.name
        );
        let v = n.get(&format!("/v1/batches/{epoch}")).unwrap();
        assert_eq!(v["batch_id"], views[0]["batch_id"], "{} replaced the batch", n.name);
    }

    // A node that joins after the epoch gets the batch by API: it fetches the order, the bids
    // and the provider snapshots it lacks by id from its peer, recomputes, and accepts.
    let mut late = TestNode::init(dir.path(), "node-late", false);
    late.start(&genesis_path, std::slice::from_ref(&settler.p2p), &[]);
    wait_for("the late node's mesh", Duration::from_secs(20), &[&late], || {
        (late.get("/v1/status").ok()?["mesh"]["batches"].as_u64()? >= 1).then_some(())
    });
    assert_eq!(late.get(&format!("/v1/batches/{epoch}")).unwrap_err().0, 404);
    late.post_hex("/v1/batches", &signed).unwrap();
    let v = late.get(&format!("/v1/batches/{epoch}")).unwrap();
    assert_eq!(v["outcome_digest"], views[0]["outcome_digest"]);
    assert!(late.metric("leasemesh_settler_inputs_fetched_total") >= 4, "{}", late.metrics());
    drop(late);

    // The winner reports Running (dated 3 s ago), the tenant closes: the settler accrues,
    // anchors a settlement batch on the embedded ledger, and proves the lease.
    let winner = &providers[1];
    let lease = leasemesh_protocol::Hash::from_hex(&lease_id).unwrap();
    let t = now_ms();
    let event = |key: &Keypair, kind: LeaseEventKind, at_ms: u64| {
        Signed::sign(
            LeaseEvent { version: leasemesh_protocol::v(), lease_id: lease, order_id, at_ms, kind },
            key,
        )
        .encode()
    };
    b.post_hex(
        "/v1/lease-events",
        &event(winner, LeaseEventKind::Running { endpoints: vec![] }, t - 3000),
    )
    .unwrap();
    wait_for("Running on the settler", Duration::from_secs(5), &all, || {
        (settler.get(&format!("/v1/leases/{lease_id}")).ok()?["lease"]["state"] == "running")
            .then_some(())
    });
    let closed = LeaseEventKind::Closed { reason: CloseReason::TenantClosed };
    b.post_hex("/v1/lease-events", &event(&tenant, closed, t)).unwrap();
    let proof = wait_for("an anchored proof of the lease", Duration::from_secs(10), &all, || {
        settler.get(&format!("/v1/leases/{lease_id}/proof")).ok()
    });
    let entry = &proof["proofs"][0];
    let lease_proof: LeaseProof = serde_json::from_value(entry["lease_proof"].clone()).unwrap();
    let batch = Signed::<SettlementBatch>::decode_verified(
        &hex::decode(entry["signed_batch_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(batch.signer, settler.key.public());
    assert!(verify_lease_proof(&lease_proof, &batch.body.merkle_root));
    assert_eq!(entry["anchor"]["chain_id"], "local");
    // 3 whole seconds at 1,000,000 an hour.
    let owed = PRICES[1] * 3 / 3600;
    let paid = settler.get("/v1/ledger/balances/provider-1").unwrap();
    assert_eq!(
        paid["balances"],
        json!([{ "denom": "uakt", "amount": owed.to_string() }]),
        "{paid}"
    );
    let left = settler.get(&format!("/v1/ledger/balances/{TENANT_ADDRESS}")).unwrap();
    assert_eq!(left["balances"][0]["amount"], json!((1_000_000_000 - owed).to_string()));
    // Only the settlement settler holds the ledger.
    assert_eq!(a.get(&format!("/v1/leases/{lease_id}/proof")).unwrap_err().0, 404);

    // An epoch led by the silent settler: the first settler takes it after the leader timeout.
    let mut order2: Order = order.body.clone();
    order2.nonce += 1;
    order2.created_at_ms = now_ms();
    order2.bid_window_ms =
        window_led_by(&silent_settler(), &genesis.settlers, order2.created_at_ms);
    let order2 = Signed::sign(order2, &tenant);
    b.post_hex("/v1/orders", &order2.encode()).unwrap();
    wait_for("the second order on node C", Duration::from_secs(5), &all, || {
        c.get(&format!("/v1/orders/{}", order2.id())).ok()
    });
    let close2 = order2.body.auction_closes_at_ms();
    let bid2 = Signed::sign(
        Bid {
            version: leasemesh_protocol::v(),
            order_id: order2.id(),
            provider: providers[2].public(),
            price_per_hour: Coin::new(denom.clone(), PRICES[2]),
            created_at_ms: now_ms(),
            expires_at_ms: close2 + 60_000,
        },
        &providers[2],
    );
    c.post_hex("/v1/bids", &bid2.encode()).unwrap();
    let epoch2 = close2 / EPOCH_MS;
    let clock = EpochClock {
        epoch_ms: EPOCH_MS,
        settle_delay_ms: 300,
        leader_timeout_ms: LEADER_TIMEOUT_MS,
    };
    let views2: Vec<Value> = all
        .iter()
        .map(|n| {
            wait_for("the fallback batch on every node", Duration::from_secs(20), &all, || {
                n.get(&format!("/v1/batches/{epoch2}")).ok()
            })
        })
        .collect();
    for v in &views2 {
        assert_eq!(v["batch_id"], views2[0]["batch_id"]);
        assert_eq!(v["settler"], json!(settler.key.public()));
    }
    let b2 = Signed::<MatchBatch>::decode_verified(
        &hex::decode(views2[0]["signed_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(
        b2.body.created_at_ms >= clock.turn_starts_ms(epoch2, 1),
        "published before the leader's timeout"
    );
    assert_eq!(b2.body.awards.len(), 1);
    assert_eq!(b2.body.awards[0].bid_id, bid2.id());
}
