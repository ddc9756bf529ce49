//! The leasemesh side of the bench: the mesh, the tenants' steady order rate, one event stream
//! per node, the `/proc` sampler, and the chain's settlement transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use leasemesh_client::deploy::{self, now_ms, DeployOptions};
use leasemesh_client::http::StreamEvent;
use leasemesh_client::{ClientError, NodeClient};
use leasemesh_protocol::api::NodeEvent;
use leasemesh_protocol::manifest::Manifest;
use leasemesh_protocol::{Id, Keypair, PublicKey};

use super::{akash, procfs, report, Baseline, BenchArgs, BenchChain, BenchLine};
use crate::chain::MeshChain;
use crate::devnet::{Devnet, DevnetConfig, DENOM};
use crate::mesh::{Funded, Mesh, MeshSpec, NodeProc, ProviderSpec};

/// Largest memo the devnet accepts in the bench (the baseline's deployment memos).
pub const BENCH_MAX_MEMO: u64 = 4_096;

/// What the event streams and tenants record, in Unix ms.
#[derive(Debug, Default)]
pub struct Record {
    /// Order id → (posted at, tenant index).
    pub posted: HashMap<Id, (u64, usize)>,
    /// Order id → when each node first told of it.
    pub held: HashMap<Id, Vec<u64>>,
    /// (node, order) → first bid seen there.
    pub first_bid: HashMap<(usize, Id), u64>,
    /// (node, order) → award seen there.
    pub award: HashMap<(usize, Id), u64>,
}

type Shared = Arc<Mutex<Record>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Record> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// An award a tenant must answer with its manifest.
#[derive(Debug, Clone)]
struct Awarded {
    order_id: Id,
    lease_id: Id,
    provider: PublicKey,
}

/// Follows node `index`'s events until the node stops. Tenant nodes also note bids and awards
/// and forward awards to their tenant's manifest sender. An event the client cannot read ends
/// nothing: it is skipped, as a lagged stream is (the figures only count what was seen).
fn follow(index: usize, client: NodeClient, rec: Shared, awards: Option<mpsc::Sender<Awarded>>) {
    let Ok(mut stream) = client.events() else { return };
    while let Some(ev) = stream.next_event() {
        let at = now_ms();
        let Ok(StreamEvent::Node(ev)) = ev else { continue };
        match ev {
            NodeEvent::Order { id, .. } => {
                lock(&rec).held.entry(id).or_default().push(at);
            }
            NodeEvent::Bid { order_id, .. } if awards.is_some() => {
                lock(&rec).first_bid.entry((index, order_id)).or_insert(at);
            }
            NodeEvent::Award { order_id, lease_id, provider, .. } => {
                if let Some(tx) = &awards {
                    lock(&rec).award.entry((index, order_id)).or_insert(at);
                    let _ = tx.send(Awarded { order_id, lease_id, provider });
                }
            }
            _ => {}
        }
    }
}

/// Sends the sealed manifest of each award of `tenant`'s orders to the winner, retrying while
/// the provider has not taken the batch in yet.
fn send_manifests(
    tenant: usize,
    client: NodeClient,
    manifest: Manifest,
    rec: Shared,
    rx: mpsc::Receiver<Awarded>,
) {
    let mut infos: HashMap<PublicKey, (String, [u8; 32])> = HashMap::new();
    let mut done = std::collections::HashSet::new();
    while let Ok(a) = rx.recv() {
        if lock(&rec).posted.get(&a.order_id).map(|p| p.1) != Some(tenant)
            || !done.insert(a.lease_id)
        {
            continue;
        }
        for _ in 0..100 {
            if let std::collections::hash_map::Entry::Vacant(e) = infos.entry(a.provider) {
                if let Ok(Some(i)) = client.provider(&a.provider) {
                    e.insert((i.body.api_endpoint, i.body.encryption_key));
                }
            }
            let Some((api, key)) = infos.get(&a.provider) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let Ok(sealed) = leasemesh_protocol::seal::seal(&manifest, key) else { break };
            match client.send_manifest(api, &a.lease_id, &sealed) {
                Ok(_) => break,
                Err(ClientError::Api { status: 404 | 409 | 425 | 503, .. }) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => {
                    tracing::warn!(lease = %a.lease_id.short(), error = %e, "manifest not sent");
                    break;
                }
            }
        }
    }
}

/// Posts tenant `k`'s share of the order rate until `until`.
#[allow(clippy::too_many_arguments)]
fn post_orders(
    k: usize,
    tenants: usize,
    key: &Keypair,
    sdl: &str,
    opts: &DeployOptions,
    client: &NodeClient,
    rate: f64,
    start: Instant,
    until: Instant,
    rec: &Shared,
) -> usize {
    let mut failed = 0;
    let mut last = 0u64;
    for j in 0u64.. {
        let due = start + Duration::from_secs_f64((j as f64 * tenants as f64 + k as f64) / rate);
        if due >= until {
            break;
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // Distinct nonces: one order per millisecond and tenant at most.
        let now = now_ms().max(last + 1);
        last = now;
        let Ok((orders, _)) = deploy::prepare(sdl, key, opts, now) else { return failed + 1 };
        for o in orders {
            let posted = now_ms();
            let id = o.id();
            lock(rec).posted.insert(id, (posted, k));
            if client.submit_order(&o).is_err() {
                lock(rec).posted.remove(&id);
                failed += 1;
            }
        }
    }
    failed
}

/// Provider `i` of the bench: room for thousands of demo leases, a price of its own.
fn provider_spec(i: usize, chain_address: Option<String>) -> ProviderSpec {
    ProviderSpec {
        cpu_millis: 4_000_000,
        memory_bytes: 16 << 40,
        ephemeral_storage_bytes: 64 << 40,
        chain_address,
        runtime_kind: Some("none".into()),
        ..ProviderSpec::small(100_000 + 10_000 * i as u64)
    }
}

/// The devnet of a bench: settler, tenants, mesh providers, then the baseline's accounts.
fn start_chain(args: &BenchArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<MeshChain> {
    let baseline = if args.baseline == Baseline::Akash {
        akash::accounts_needed(args.baseline_lanes, args.providers)
    } else {
        0
    };
    let devnet = rt.block_on(Devnet::start(DevnetConfig {
        accounts: 1 + args.tenants + args.providers + baseline,
        block_time: Duration::from_millis(args.block_time_ms),
        max_memo_characters: Some(BENCH_MAX_MEMO),
        ..DevnetConfig::default()
    }))?;
    let a = devnet.accounts.clone();
    let client =
        leasemesh_settlement::cosmos::ChainClient::new(crate::chain::chain_config(&devnet))?;
    Ok(MeshChain {
        settler: a[0].clone(),
        tenants: a[1..=args.tenants].to_vec(),
        providers: a[1 + args.tenants..1 + args.tenants + args.providers].to_vec(),
        client,
        devnet,
    })
}

/// What the sampler saw: (ms since load start, orders in the tenant node's store, RSS median
/// MB, RSS max MB).
pub type RssSample = (u64, u64, f64, f64);

fn store_orders(client: &NodeClient) -> Option<u64> {
    let text = client.get_text_url(&format!("{}/metrics", client.base())).ok()?;
    text.lines()
        .find(|l| l.starts_with("leasemesh_store_orders "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

fn sample_rss(pids: &[u32], tenant: &NodeClient, t0: Instant, stop: &AtomicBool) -> Vec<RssSample> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut rss: Vec<f64> =
            pids.iter().filter_map(|p| procfs::rss_bytes(*p)).map(|b| b as f64 / 1e6).collect();
        rss.sort_by(f64::total_cmp);
        let orders = store_orders(tenant).unwrap_or(0);
        if let (Some(max), false) = (rss.last(), rss.is_empty()) {
            out.push((t0.elapsed().as_millis() as u64, orders, rss[rss.len() / 2], *max));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    out
}

/// Everything measured on the mesh, for the report.
#[derive(Debug, Default)]
pub struct MeshFigures {
    pub rec: Record,
    pub tenant_nodes: Vec<usize>,
    pub nodes: usize,
    pub rss: Vec<RssSample>,
    /// Per node: CPU % of one core over the load phase.
    pub cpu_pct: Vec<f64>,
    /// Per node: bytes sent on p2p sockets during the load phase.
    pub bytes_sent: Vec<u64>,
    pub rss_end_mb: Vec<f64>,
    pub threads: Vec<u64>,
    pub load_ms: u64,
    pub failed_posts: usize,
}

/// Runs the bench and returns its line.
pub fn run(args: &BenchArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<BenchLine> {
    let node_bin = crate::mesh::node_binary(true, progress)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let chain = match args.chain {
        BenchChain::Local => None,
        BenchChain::Injective => {
            progress(&format!("starting the devnet ({} ms blocks)", args.block_time_ms));
            Some(start_chain(args, &rt)?)
        }
    };
    let keys: Vec<Keypair> = (0..args.tenants).map(|_| Keypair::generate()).collect();
    let (denom, addresses): (&str, Vec<String>) = match &chain {
        Some(c) => (DENOM, c.tenants.iter().map(|a| a.address.clone()).collect()),
        None => (
            "uakt",
            keys.iter().map(|k| leasemesh_client::keys::default_address(&k.public())).collect(),
        ),
    };
    let providers = (0..args.providers)
        .map(|i| provider_spec(i, chain.as_ref().map(|c| c.providers[i].address.clone())))
        .collect();
    let spec = MeshSpec {
        node_bin,
        nodes: args.nodes,
        providers,
        funded: keys
            .iter()
            .zip(&addresses)
            .map(|(k, a)| Funded {
                address: a.clone(),
                key: k.public(),
                denom: denom.into(),
                amount: 1 << 100,
                grant: 1 << 90,
            })
            .collect(),
        denom: denom.into(),
        chain: chain.as_ref().map(MeshChain::spec),
        epoch_ms: args.epoch_ms,
        settle_delay_ms: 100,
        container_prefix: format!("lmbench{}", std::process::id()),
        keep: args.keep,
        log_filter: "warn".into(),
    };
    let mesh = start_mesh(&spec, progress)?;
    if let Some(c) = &chain {
        for (i, k) in keys.iter().enumerate() {
            c.grant_and_bind(&mesh.settler().client(), i, k, crate::demo::CHAIN_GRANT)
                .with_context(|| format!("grant of tenant {i}"))?;
        }
        progress(&format!(
            "{} tenants granted the settler on chain and bound their keys",
            keys.len()
        ));
    }
    let (figs, settle) =
        drive(args, &mesh, &keys, &addresses, denom, chain.as_ref(), &rt, progress)?;
    drop(mesh);
    let baseline = match (&chain, args.baseline) {
        (Some(c), Baseline::Akash) => {
            progress("Akash-style baseline on the same devnet");
            Some(rt.block_on(akash::run(args, &c.devnet, progress))?)
        }
        _ => None,
    };
    report::finish(args, &figs, settle, baseline.as_ref(), progress)
}

/// Starts the mesh, again (up to 3 times) when a node lost its free port to another process
/// between the harness picking it and the node binding it: with hundreds of nodes dialing,
/// their outgoing connections take ports from the same ephemeral range.
fn start_mesh(spec: &MeshSpec, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Mesh> {
    let mut attempt = 1;
    loop {
        match Mesh::start(spec, progress) {
            Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                progress(&format!("a node's port was taken under it; starting again ({e:#})"));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Chain transactions and gas of the leasemesh run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettleFigures {
    pub txs: u64,
    pub gas: u64,
}

/// The load phase and its measurements.
#[allow(clippy::too_many_arguments)]
fn drive(
    args: &BenchArgs,
    mesh: &Mesh,
    keys: &[Keypair],
    addresses: &[String],
    denom: &str,
    chain: Option<&MeshChain>,
    rt: &tokio::runtime::Runtime,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(MeshFigures, Option<SettleFigures>)> {
    let sdl = crate::demo::with_denom(
        &std::fs::read_to_string(crate::demo::testdata_dir().join("demo.yaml"))?,
        denom,
    );
    let rec: Shared = Arc::default();
    // Tenant k talks to the k-th node from the end (never the settler or a provider).
    let tenant_nodes: Vec<usize> = (0..keys.len()).map(|k| mesh.nodes.len() - 1 - k).collect();
    let mut senders = HashMap::new();
    for (k, &n) in tenant_nodes.iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        senders.insert(n, tx);
        let opts = DeployOptions {
            bid_window_ms: args.bid_window_ms,
            lease_term_ms: args.lease_term_ms,
            tenant_address: Some(addresses[k].clone()),
            ..DeployOptions::default()
        };
        let (_, manifest) = deploy::prepare(&sdl, &keys[k], &opts, now_ms())?;
        let (client, rec) = (mesh.nodes[n].client(), rec.clone());
        std::thread::spawn(move || send_manifests(k, client, manifest, rec, rx));
    }
    for n in &mesh.nodes {
        let (client, rec, tx) = (n.client(), rec.clone(), senders.get(&n.index).cloned());
        let index = n.index;
        std::thread::spawn(move || follow(index, client, rec, tx));
    }
    drop(senders);
    let pids: Vec<u32> = mesh.nodes.iter().filter_map(|n| procfs::pid_of_home(&n.home)).collect();
    if pids.len() != mesh.nodes.len() {
        return Err(anyhow!(
            "found {} of {} node processes in /proc",
            pids.len(),
            mesh.nodes.len()
        ));
    }
    let api_ports: Vec<u16> = mesh.nodes.iter().filter_map(api_port).collect();
    // Let the event streams connect before the first order.
    std::thread::sleep(Duration::from_millis(500));
    let h0 = chain.map(|c| rt.block_on(c.client.latest_height())).transpose()?;
    let settler_seq0 = chain.map(|c| settler_sequence(rt, c)).transpose()?.unwrap_or(0);
    progress(&format!(
        "load: {} orders/s for {} s from {} tenants",
        args.orders_per_s,
        args.duration_s,
        keys.len()
    ));
    let (figs_partial, load_ms, failed) =
        load_phase(args, mesh, keys, addresses, &sdl, &tenant_nodes, &pids, &api_ports, &rec)?;
    let posted = lock(&rec).posted.len();
    progress(&format!("posted {posted} orders ({failed} refused); waiting for the awards"));
    wait_awards(&rec, &tenant_nodes, Duration::from_millis(args.bid_window_ms + 15_000));
    let settle = match (chain, h0) {
        (Some(c), Some(h0)) => {
            progress("waiting until every lease has ended and its batch is anchored");
            Some(wait_settled(args, rt, c, h0, settler_seq0, progress)?)
        }
        _ => None,
    };
    let (rss, cpu_pct, bytes_sent) = figs_partial;
    let rss_end_mb = pids.iter().map(|p| procfs::rss_bytes(*p).unwrap_or(0) as f64 / 1e6).collect();
    let threads = pids.iter().map(|p| procfs::threads(*p).unwrap_or(0)).collect();
    let rec = std::mem::take(&mut *lock(&rec));
    Ok((
        MeshFigures {
            rec,
            tenant_nodes,
            nodes: mesh.nodes.len(),
            rss,
            cpu_pct,
            bytes_sent,
            rss_end_mb,
            threads,
            load_ms,
            failed_posts: failed,
        },
        settle,
    ))
}

fn api_port(n: &NodeProc) -> Option<u16> {
    n.api_url.rsplit(':').next()?.parse().ok()
}

type LoadOut = ((Vec<RssSample>, Vec<f64>, Vec<u64>), u64, usize);

/// The tenants post for the run's duration while the sampler watches RSS; CPU and bytes are
/// taken before and after.
#[allow(clippy::too_many_arguments)]
fn load_phase(
    args: &BenchArgs,
    mesh: &Mesh,
    keys: &[Keypair],
    addresses: &[String],
    sdl: &str,
    tenant_nodes: &[usize],
    pids: &[u32],
    api_ports: &[u16],
    rec: &Shared,
) -> anyhow::Result<LoadOut> {
    let ticks0: Vec<u64> = pids.iter().map(|p| procfs::cpu_ticks(*p).unwrap_or(0)).collect();
    let bytes0 = procfs::tcp_bytes_sent(api_ports);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let until = start + args.duration();
    let sampler = {
        let (pids, stop) = (pids.to_vec(), stop.clone());
        let tenant = mesh.nodes[tenant_nodes[0]].client();
        std::thread::spawn(move || sample_rss(&pids, &tenant, start, &stop))
    };
    let failed = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(k, key)| {
                let client = mesh.nodes[tenant_nodes[k]].client();
                let opts = DeployOptions {
                    bid_window_ms: args.bid_window_ms,
                    lease_term_ms: args.lease_term_ms,
                    tenant_address: Some(addresses[k].clone()),
                    ..DeployOptions::default()
                };
                s.spawn(move || {
                    post_orders(
                        k,
                        keys.len(),
                        key,
                        sdl,
                        &opts,
                        &client,
                        args.orders_per_s,
                        start,
                        until,
                        rec,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum::<usize>()
    });
    // The gossip and bids of the last orders, then the CPU and bytes of the phase.
    std::thread::sleep(Duration::from_millis(args.bid_window_ms + 2 * args.epoch_ms + 500));
    let load_ms = start.elapsed().as_millis() as u64;
    let hz = procfs::ticks_per_s() as f64;
    let cpu_pct = pids
        .iter()
        .zip(&ticks0)
        .map(|(p, t0)| {
            let t = procfs::cpu_ticks(*p).unwrap_or(*t0).saturating_sub(*t0) as f64;
            100.0 * t / hz / (load_ms as f64 / 1000.0)
        })
        .collect();
    let bytes1 = procfs::tcp_bytes_sent(api_ports);
    let bytes = pids
        .iter()
        .map(|p| {
            bytes1.get(p).copied().unwrap_or(0).saturating_sub(bytes0.get(p).copied().unwrap_or(0))
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    let rss = sampler.join().map_err(|_| anyhow!("the RSS sampler panicked"))?;
    Ok(((rss, cpu_pct, bytes), load_ms, failed))
}

/// Waits until every posted order has an award at its tenant's node, or `timeout`.
fn wait_awards(rec: &Shared, tenant_nodes: &[usize], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let r = lock(rec);
        let all =
            r.posted.iter().all(|(id, (_, k))| r.award.contains_key(&(tenant_nodes[*k], *id)));
        drop(r);
        if all {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn settler_sequence(rt: &tokio::runtime::Runtime, c: &MeshChain) -> anyhow::Result<u64> {
    Ok(rt.block_on(c.client.account(&c.settler.address))?.map_or(0, |a| a.sequence))
}

/// Waits until the leases have ended (their term) and the settler has stopped sending
/// transactions for a while, then counts the transactions and gas of the blocks since `h0`
/// (only the settler sends during the run).
fn wait_settled(
    args: &BenchArgs,
    rt: &tokio::runtime::Runtime,
    c: &MeshChain,
    h0: u64,
    seq0: u64,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<SettleFigures> {
    // Term, the provider's close, the settle interval (2 s), the anchor's blocks.
    let quiet_for = Duration::from_millis((4 * args.block_time_ms).max(5_000));
    std::thread::sleep(Duration::from_millis(args.lease_term_ms + 3_000));
    let deadline = Instant::now() + Duration::from_secs(120) + 10 * quiet_for;
    let mut seq = settler_sequence(rt, c)?;
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < quiet_for {
        std::thread::sleep(Duration::from_millis(500));
        let s = settler_sequence(rt, c)?;
        if s != seq {
            seq = s;
            since = Instant::now();
        }
    }
    let h1 = rt.block_on(c.client.latest_height())?;
    progress(&format!("settler sent {} txs (blocks {h0}..{h1})", seq.saturating_sub(seq0)));
    let (txs, gas) = rt.block_on(akash::txs_and_gas(&c.devnet.rpc_url, h0 + 1, h1))?;
    Ok(SettleFigures { txs, gas })
}
