//! `bench --memory`: one node filled through its API (the same ingest path gossip takes) with
//! live orders and bids, and its RSS measured. A second node (the settler the harness needs)
//! receives everything by gossip and is measured too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use leasemesh_client::deploy::{self, now_ms, DeployOptions};
use leasemesh_protocol::{Bid, Coin, Keypair, Signed};
use serde::Serialize;

use super::procfs;
use crate::mesh::{Mesh, MeshSpec};

/// The memory run's JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryLine {
    pub mode: &'static str,
    pub orders: usize,
    pub bids: usize,
    pub refused: usize,
    pub fill_s: f64,
    pub rss_mb_empty: f64,
    pub rss_mb: f64,
    pub rss_mb_gossip_peer: f64,
    pub store_orders: u64,
    pub store_bids: u64,
    pub loadavg_1m: f64,
}

const TENANTS: usize = 100;
const PROVIDERS: usize = 10;
/// The longest bid window an order may have: the orders stay live while the node fills.
const WINDOW_MS: u64 = 600_000;

fn metric(client: &leasemesh_client::NodeClient, name: &str) -> u64 {
    let text = client.get_text_url(&format!("{}/metrics", client.base())).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Signed objects, encoded.
type Encoded = Vec<Vec<u8>>;

/// Signs `orders` orders (from 100 tenants) and `bids` bids (from 10 providers, spread evenly).
fn sign_all(orders: usize, bids: usize) -> anyhow::Result<(Encoded, Encoded)> {
    let sdl = std::fs::read_to_string(crate::demo::testdata_dir().join("demo.yaml"))?;
    let tenants: Vec<Keypair> = (0..TENANTS).map(|_| Keypair::generate()).collect();
    let providers: Vec<Keypair> = (0..PROVIDERS).map(|_| Keypair::generate()).collect();
    let opts = DeployOptions { bid_window_ms: WINDOW_MS, ..DeployOptions::default() };
    let start = now_ms();
    let mut o_bytes = Vec::with_capacity(orders);
    let mut signed = Vec::with_capacity(orders);
    for i in 0..orders {
        // Nonces per tenant stay distinct: tenant i % 100, time start + i / 100.
        let (os, _) =
            deploy::prepare(&sdl, &tenants[i % TENANTS], &opts, start + (i / TENANTS) as u64)?;
        let o = os.into_iter().next().ok_or_else(|| anyhow!("the SDL gave no order"))?;
        o_bytes.push(o.encode());
        signed.push(o);
    }
    let mut b_bytes = Vec::with_capacity(bids);
    for j in 0..bids {
        let o = &signed[j % orders.max(1)];
        let p = &providers[(j / orders.max(1)) % PROVIDERS];
        let bid = Bid {
            version: leasemesh_protocol::v(),
            order_id: o.id(),
            provider: p.public(),
            price_per_hour: Coin::new(
                o.body.max_price_per_hour.denom.clone(),
                o.body.max_price_per_hour.amount / 2 + (j % 97) as u128,
            ),
            created_at_ms: now_ms(),
            expires_at_ms: o.body.auction_closes_at_ms(),
        };
        b_bytes.push(Signed::sign(bid, p).encode());
    }
    Ok((o_bytes, b_bytes))
}

/// Posts every item to `url` from 4 threads; returns how many were refused.
fn post_all(base: &str, path: &str, items: &[Vec<u8>]) -> usize {
    let refused = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let client = leasemesh_client::NodeClient::new(base);
                let url = format!("{base}{path}");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if client.post_bytes_url(&url, item).is_err() {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    refused.into_inner()
}

/// Runs the memory bench.
pub fn run(
    orders: usize,
    bids: usize,
    keep: bool,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<MemoryLine> {
    let node_bin = crate::mesh::node_binary(true, progress)?;
    let spec = MeshSpec {
        node_bin,
        nodes: 2,
        providers: vec![],
        funded: vec![],
        denom: "uakt".into(),
        chain: None,
        epoch_ms: 1_000,
        settle_delay_ms: 200,
        container_prefix: format!("lmbenchmem{}", std::process::id()),
        keep,
        log_filter: "warn".into(),
    };
    progress(&format!("signing {orders} orders and {bids} bids"));
    let (o_bytes, b_bytes) = sign_all(orders, bids)?;
    let mesh = Mesh::start(&spec, progress)?;
    let node = &mesh.nodes[1];
    let pid = procfs::pid_of_home(&node.home).ok_or_else(|| anyhow!("node 1 not in /proc"))?;
    let peer = procfs::pid_of_home(&mesh.nodes[0].home).ok_or_else(|| anyhow!("node 0?"))?;
    let mb = |p: u32| procfs::rss_bytes(p).unwrap_or(0) as f64 / 1e6;
    let rss_empty = mb(pid);
    let started = Instant::now();
    progress("posting the orders");
    let mut refused = post_all(&node.api_url, "/v1/orders", &o_bytes);
    progress(&format!("posting the bids ({refused} orders refused so far)"));
    refused += post_all(&node.api_url, "/v1/bids", &b_bytes);
    let fill_s = started.elapsed().as_secs_f64();
    // Let the store settle (flushes, caches) before the figure.
    std::thread::sleep(Duration::from_secs(5));
    let client = node.client();
    let line = MemoryLine {
        mode: "memory",
        orders,
        bids,
        refused,
        fill_s: (fill_s * 10.0).round() / 10.0,
        rss_mb_empty: (rss_empty * 10.0).round() / 10.0,
        rss_mb: (mb(pid) * 10.0).round() / 10.0,
        rss_mb_gossip_peer: (mb(peer) * 10.0).round() / 10.0,
        store_orders: metric(&client, "leasemesh_store_orders"),
        store_bids: metric(&client, "leasemesh_store_bids"),
        loadavg_1m: procfs::loadavg_1m(),
    };
    if fill_s * 1000.0 > WINDOW_MS as f64 {
        progress("the fill outlasted the orders' bid window: later bids were refused as late");
    }
    Ok(line)
}
