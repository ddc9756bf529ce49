//! The one-command demo: 5 node processes on 127.0.0.1 (1 settler, 2 providers on Docker, 2
//! relays), a tenant deploying `testdata/demo.yaml` through the light client, the page fetched
//! from the lease's endpoint, the lease closed, settled, anchored on the embedded ledger, and its
//! proof verified by the client. Ends with one JSON line of timings.
//!
//! Everything it starts is stopped on every path: the [`Mesh`] stops its processes when dropped,
//! [`DockerCleanup`] removes the containers and networks of this run (found by their owner
//! label), and Ctrl-C runs both before exiting.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use leasemesh_client::deploy::{self, DeployOptions, DeployedLease, Progress};
use leasemesh_client::{settle, NodeClient};
use leasemesh_protocol::{Coin, Id, Keypair, SettlementRecord};
use serde::Serialize;
use serde_json::Value;

use crate::chain::MeshChain;
use crate::mesh::{Funded, Mesh, MeshSpec, ProviderSpec};

/// The demo's image, built locally from `testdata/demo-web` and our `leasemesh-demo-web` server
/// (see [`crate::image`]).
pub const DEMO_IMAGE: &str = "leasemesh-demo/web:1";
/// Label the provider runtime puts on everything it creates, with its name prefix as value.
pub const LABEL_OWNER: &str = "leasemesh.owner";

fn short_key(k: &leasemesh_protocol::PublicKey) -> String {
    k.to_hex().chars().take(8).collect()
}

/// The repository's `testdata/` directory.
pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Connects to the local Docker daemon, agreeing on an API version it speaks.
pub async fn docker() -> anyhow::Result<Docker> {
    let d = Docker::connect_with_local_defaults().context("cannot reach Docker")?;
    d.negotiate_version().await.context("Docker version negotiation")
}

/// Builds the demo's web image (`FROM scratch` + `leasemesh-demo-web` and the libraries it
/// links + one page) through the Docker build API. The server binary is taken from beside this
/// executable and built with cargo only when missing (tests); [`build_image_fresh`] rebuilds it.
/// Cheap when cached.
pub async fn build_image(docker: &Docker, tag: &str) -> anyhow::Result<()> {
    build_image_with(docker, tag, false, &mut |l| tracing::info!("{l}")).await
}

/// [`build_image`], rebuilding the server first when run by cargo (a no-op when fresh).
pub async fn build_image_fresh(
    docker: &Docker,
    tag: &str,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    build_image_with(docker, tag, true, progress).await
}

async fn build_image_with(
    docker: &Docker,
    tag: &str,
    rebuild: bool,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let web = crate::mesh::workspace_binary(
        "leasemesh-testnet",
        "leasemesh-demo-web",
        rebuild,
        progress,
    )?;
    crate::image::build_web_image(docker, tag, &testdata_dir().join("demo-web"), &web).await
}

/// Builds `tag` from `dir` (its `Dockerfile` and `www/index.html`) plus the host's static
/// busybox, through the Docker build API (no registry needed). The provider tests use it
/// (busybox gives them a shell); the demo does not need it.
pub async fn build_busybox_image(docker: &Docker, tag: &str, dir: &Path) -> anyhow::Result<()> {
    let busybox = std::fs::read("/bin/busybox").context(
        "/bin/busybox is missing: install Debian's busybox-static (scripts/install-deps.sh)",
    )?;
    let mut ctx = crate::image::Context::default();
    ctx.add("Dockerfile", &std::fs::read(dir.join("Dockerfile"))?, 0o644)?;
    ctx.add("www/index.html", &std::fs::read(dir.join("www/index.html"))?, 0o644)?;
    ctx.add("busybox", &busybox, 0o755)?;
    crate::image::build(docker, tag, ctx).await
}

/// Removes every container and network whose owner label is `owner` (one run's name prefix).
pub async fn remove_owned(docker: &Docker, owner: &str) -> anyhow::Result<usize> {
    let filters: std::collections::HashMap<String, Vec<String>> =
        [("label".to_string(), vec![format!("{LABEL_OWNER}={owner}")])].into();
    let mut removed = 0;
    let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    for c in docker.list_containers(Some(opts)).await? {
        if let Some(id) = c.id {
            let rm = RemoveContainerOptionsBuilder::default().force(true).build();
            if docker.remove_container(&id, Some(rm)).await.is_ok() {
                removed += 1;
            }
        }
    }
    let prefix = format!("{owner}-");
    for n in docker.list_networks(Some(ListNetworksOptionsBuilder::default().build())).await? {
        if let Some(name) = n.name.filter(|x| x.starts_with(&prefix)) {
            if docker.remove_network(&name).await.is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Removes one run's containers and networks when dropped (from any thread, runtime or not).
#[derive(Debug)]
pub struct DockerCleanup {
    pub owner: String,
}

impl DockerCleanup {
    pub fn run(&self) -> usize {
        let owner = self.owner.clone();
        // A thread of its own: Drop may run inside a runtime, where block_on is not allowed.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let d = docker().await.ok()?;
                remove_owned(&d, &owner).await.ok()
            })
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or(0)
    }
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// The demo's result: the JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub order_to_first_bid_ms: u64,
    pub order_to_award_ms: u64,
    pub award_to_running_ms: u64,
    pub close_to_anchor_ms: u64,
    pub verified: bool,
}

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub sdl: PathBuf,
    pub keep: bool,
    pub bid_window_ms: u64,
    /// How long the lease runs (accrues) before it is closed.
    pub run_for: Duration,
    /// Where the lease is settled.
    pub chain: DemoChain,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            sdl: testdata_dir().join("demo.yaml"),
            keep: false,
            bid_window_ms: 1_000,
            run_for: Duration::from_secs(2),
            chain: DemoChain::Local,
        }
    }
}

/// Which backend anchors the demo's settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoChain {
    /// The embedded ledger (sled) of the settler.
    Local,
    /// The injectived devnet (Cosmos SDK) through the settler's Cosmos backend.
    Injective,
}

/// `leasemesh-testnet demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Settlement backend.
    #[arg(long, value_enum, default_value = "local")]
    pub chain: DemoChain,
    /// The SDL to deploy.
    #[arg(long)]
    pub sdl: Option<PathBuf>,
    /// Keep the temp directory (node logs and stores) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Auction length in ms.
    #[arg(long, default_value_t = 1_000)]
    pub bid_window_ms: u64,
}

impl DemoArgs {
    pub fn into_options(self) -> anyhow::Result<DemoOptions> {
        let d = DemoOptions::default();
        Ok(DemoOptions {
            sdl: self.sdl.unwrap_or(d.sdl),
            keep: self.keep,
            bid_window_ms: self.bid_window_ms,
            chain: self.chain,
            ..d
        })
    }
}

/// What a running demo must stop on Ctrl-C: the nodes first, then the chain they settle on.
#[derive(Debug, Default)]
pub struct Running {
    pub mesh: Option<Mesh>,
    pub chain: Option<MeshChain>,
}

impl Running {
    /// Stops the nodes, then the chain.
    pub fn stop(&mut self) {
        drop(self.mesh.take());
        drop(self.chain.take());
    }
}

/// Where a running demo keeps what must be cleaned up on Ctrl-C.
pub type MeshSlot = Arc<Mutex<Running>>;

/// What each tenant grants the settler on the devnet, in inj base units.
pub const CHAIN_GRANT: u128 = 1_000_000_000_000_000_000; // 1 INJ

/// `text` with every `denom: uakt` priced in `denom` instead.
pub fn with_denom(text: &str, denom: &str) -> String {
    text.replace("denom: uakt", &format!("denom: {denom}"))
}

/// Fetches a page, retrying while the service starts.
pub fn fetch_page(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
    let deadline = Instant::now() + timeout;
    loop {
        match agent.get(url).call() {
            Ok(r) => {
                let mut body = String::new();
                r.into_reader().take(1 << 20).read_to_string(&mut body)?;
                return Ok(body);
            }
            Err(e) if Instant::now() > deadline => return Err(anyhow!("GET {url}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Waits until the settlement settler serves an anchored proof that holds the lease's close;
/// returns when it first saw it.
pub fn wait_closed_anchored(
    settler: &NodeClient,
    lease: &Id,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let url = format!("/v1/leases/{lease}/proof");
    loop {
        if let Ok(v) = settler.get_json(&url) {
            let proofs = v.get("proofs").and_then(Value::as_array).cloned().unwrap_or_default();
            let closed = proofs.iter().any(|p| {
                let records = p
                    .pointer("/lease_proof/records")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                records.iter().any(|r| {
                    serde_json::from_value::<SettlementRecord>(
                        r.get("record").cloned().unwrap_or(Value::Null),
                    )
                    .is_ok_and(|rec| matches!(rec, SettlementRecord::LeaseClosed { .. }))
                })
            });
            if closed {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no anchored settlement batch with the lease's close within {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What [`launch`] starts: the mesh's shape and where it settles.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub chain: DemoChain,
    /// Node processes in all (settler, providers, relays).
    pub nodes: usize,
    pub providers: Vec<ProviderSpec>,
    /// Prefix (and owner label) of the providers' containers and networks.
    pub owner: String,
    /// Keep the mesh's temp directory (logs, stores) after it stops.
    pub keep: bool,
}

impl LaunchOptions {
    /// The demo's network: 5 nodes, two small providers at different prices.
    pub fn demo(chain: DemoChain, owner: &str, keep: bool) -> LaunchOptions {
        LaunchOptions {
            chain,
            nodes: 5,
            providers: vec![ProviderSpec::small(100_000), ProviderSpec::small(140_000)],
            owner: owner.to_owned(),
            keep,
        }
    }
}

/// A started network with a funded tenant that has granted the settler a spend limit. The
/// mesh and the chain themselves are in the [`MeshSlot`] given to [`launch`].
#[derive(Debug)]
pub struct Launched {
    pub tenant: Keypair,
    /// Where the tenant pays from (its chain account on the devnet).
    pub address: String,
    pub denom: String,
    pub chain_client: Option<leasemesh_settlement::cosmos::ChainClient>,
    /// The mesh's directory (node homes and logs).
    pub dir: PathBuf,
    pub settler: NodeClient,
    pub tenant_node: NodeClient,
    /// Every node's API URL, with its role.
    pub nodes: Vec<(String, &'static str)>,
    /// (provider key hex, price per core-hour).
    pub providers: Vec<(String, u64)>,
    /// How long building the binaries and the image took.
    pub build_time: Duration,
}

/// The start-up shared by the demo and `up`: the node binary and the web image (built when
/// needed), the devnet when asked, the mesh with a funded tenant, and the tenant's grant to the
/// settler (on chain: authz grant and key binding). Puts the mesh and chain into `slot` as soon
/// as they exist, so Ctrl-C can stop them.
pub fn launch(
    opts: &LaunchOptions,
    rt: &tokio::runtime::Runtime,
    slot: &MeshSlot,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Launched> {
    let started = Instant::now();
    let node_bin = crate::mesh::node_binary(true, progress)?;
    progress(&format!("building the image {DEMO_IMAGE} (FROM scratch + leasemesh-demo-web)"));
    rt.block_on(async {
        let d = docker().await?;
        build_image_fresh(&d, DEMO_IMAGE, progress).await
    })?;
    let build_time = started.elapsed();

    let tenant = Keypair::generate();
    let mut providers = opts.providers.clone();
    // On the devnet the tenant pays from its chain account, through the grant it gave the
    // settler; providers are paid to theirs.
    let chain = match opts.chain {
        DemoChain::Local => None,
        DemoChain::Injective => {
            progress("starting the injectived devnet (one validator on 127.0.0.1)");
            let c = rt.block_on(MeshChain::start(1, providers.len()))?;
            progress(&format!(
                "devnet {} at {} (up in {:.1} s)",
                c.devnet.chain_id,
                c.devnet.rpc_url,
                c.devnet.startup.as_secs_f64()
            ));
            for (p, a) in providers.iter_mut().zip(&c.providers) {
                p.chain_address = Some(a.address.clone());
            }
            Some(c)
        }
    };
    let chain_client = chain.as_ref().map(|c| c.client.clone());
    let (address, denom) = match &chain {
        Some(c) => (c.tenants[0].address.clone(), crate::devnet::DENOM.to_owned()),
        None => (leasemesh_client::keys::default_address(&tenant.public()), "uakt".to_owned()),
    };
    let chain_spec = chain.as_ref().map(MeshChain::spec);
    let lock = || slot.lock().map_err(|_| anyhow!("launch slot poisoned"));
    lock()?.chain = chain;
    let spec = MeshSpec {
        node_bin,
        nodes: opts.nodes,
        providers,
        funded: vec![Funded {
            address: address.clone(),
            key: tenant.public(),
            denom: denom.clone(),
            amount: 1_000_000_000_000,
            grant: 0,
        }],
        denom: denom.clone(),
        chain: chain_spec,
        epoch_ms: 500,
        settle_delay_ms: 200,
        container_prefix: opts.owner.clone(),
        keep: opts.keep,
        log_filter: "info,libp2p=warn".into(),
    };
    let mesh = Mesh::start(&spec, progress)?;
    let launched = Launched {
        tenant_node: mesh.tenant_node().client(),
        settler: mesh.settler().client(),
        nodes: mesh
            .nodes
            .iter()
            .map(|n| {
                let role = if n.settler {
                    "settler"
                } else if n.provider.is_some() {
                    "provider"
                } else {
                    "relay"
                };
                (n.api_url.clone(), role)
            })
            .collect(),
        providers: mesh
            .providers()
            .filter_map(|n| n.provider.as_ref().map(|p| (n.key.to_hex(), p.cpu_per_core)))
            .collect(),
        dir: mesh.dir.clone(),
        tenant,
        address,
        denom,
        chain_client,
        build_time,
    };
    lock()?.mesh = Some(mesh);
    progress(&format!(
        "mesh ready: settler {}, tenant talks to {}",
        launched.settler.base(),
        launched.tenant_node.base()
    ));
    grant(&launched, slot, progress)?;
    Ok(launched)
}

/// The tenant's spend grant to the settler: on the embedded ledger through the settler's API,
/// on the devnet as an authz grant plus the binding of the order key to the chain account.
fn grant(l: &Launched, slot: &MeshSlot, progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    if l.chain_client.is_none() {
        let limit = Coin::new("uakt", 100_000_000_000);
        settle::grant(&l.settler, &l.tenant, &l.address, &limit).context("spend grant")?;
        progress(&format!("tenant {}… granted the settler {limit}", &l.address[..16]));
        return Ok(());
    }
    let granted = slot
        .lock()
        .map_err(|_| anyhow!("launch slot poisoned"))?
        .chain
        .as_ref()
        .map(|c| c.grant_and_bind(&l.settler, 0, &l.tenant, CHAIN_GRANT))
        .transpose()
        .context("grant on chain")?;
    let tx = granted.as_ref().and_then(|g| g.get("tx_hash")).cloned().unwrap_or_default();
    progress(&format!(
        "tenant {} granted the settler {CHAIN_GRANT} inj on chain (tx {tx}) and bound its order key to that account",
        l.address
    ));
    Ok(())
}

/// Runs the demo. `slot` receives the mesh while it runs (so Ctrl-C can stop it);
/// `progress` gets one line per step.
pub fn run(
    opts: &DemoOptions,
    slot: &MeshSlot,
    owner: &str,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let sdl_text = std::fs::read_to_string(&opts.sdl)
        .with_context(|| format!("cannot read {}", opts.sdl.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let launched = launch(&LaunchOptions::demo(opts.chain, owner, opts.keep), &rt, slot, progress)?;
    let Launched {
        tenant,
        address,
        denom,
        chain_client,
        dir,
        settler,
        tenant_node,
        providers,
        build_time: t_build,
        ..
    } = launched;
    let sdl_text = with_denom(&sdl_text, &denom);
    let balance = |address: &str| -> anyhow::Result<u128> {
        match &chain_client {
            Some(c) => Ok(rt.block_on(c.balance(address, &denom))?),
            None => {
                let v = settler.get_json(&format!("/v1/ledger/balances/{address}"))?;
                let list = v.get("balances").and_then(Value::as_array).cloned().unwrap_or_default();
                Ok(list
                    .iter()
                    .filter(|c| c.get("denom").and_then(Value::as_str) == Some(denom.as_str()))
                    .filter_map(|c| c.get("amount")?.as_str()?.parse::<u128>().ok())
                    .sum())
            }
        }
    };
    let before = balance(&address)?;

    let dopts = DeployOptions {
        bid_window_ms: opts.bid_window_ms,
        tenant_address: Some(address.clone()),
        ..DeployOptions::default()
    };
    let mut show = |p: &Progress| match p {
        Progress::OrderPosted { order_id, max_price, .. } => {
            progress(&format!("order {} posted, max {max_price}/h", order_id.short()))
        }
        Progress::Bid { provider, price, after_ms, .. } => progress(&format!(
            "  bid {price}/h from provider {} (+{after_ms} ms)",
            short_key(provider)
        )),
        Progress::Awarded { lease_id, provider, price, after_ms, .. } => progress(&format!(
            "award: lease {} to provider {} at {}/h (+{after_ms} ms)",
            lease_id.short(),
            short_key(provider),
            price.as_ref().map(|c| c.to_string()).unwrap_or_default()
        )),
        Progress::ManifestSent { provider_api, .. } => {
            progress(&format!("manifest sealed to the winner, sent to {provider_api}"))
        }
        Progress::LeaseEvent { state, .. } => progress(&format!("lease {state}")),
        Progress::Running { endpoints, after_ms, .. } => {
            progress(&format!("running after {after_ms} ms at {}", endpoints.join(" ")))
        }
        _ => {}
    };
    let leases = deploy::deploy(&tenant_node, &tenant, &sdl_text, &dopts, &mut show)
        .with_context(|| format!("deploy (node logs in {})", dir.display()))?;
    let lease: DeployedLease =
        leases.into_iter().next().ok_or_else(|| anyhow!("the deployment made no lease"))?;
    let cheapest =
        providers.iter().min_by_key(|(_, c)| *c).map(|(k, _)| k.clone()).unwrap_or_default();
    progress(&format!(
        "winner {} ({} cheapest bid of {})",
        short_key(&lease.provider),
        if lease.provider.to_hex() == cheapest { "the" } else { "NOT the" },
        lease.bids.len()
    ));

    let endpoint =
        lease.endpoints.first().ok_or_else(|| anyhow!("the lease runs without an endpoint"))?;
    let page = fetch_page(endpoint, Duration::from_secs(10))?;
    let title = page.lines().find(|l| l.contains("<h1>")).unwrap_or("").trim().to_owned();
    progress(&format!("GET {endpoint} -> {} bytes: {title}", page.len()));
    if !page.contains("leasemesh demo") {
        bail!("the endpoint served something else: {page:.200}");
    }

    std::thread::sleep(opts.run_for);
    let t_close = Instant::now();
    deploy::close(&tenant_node, &tenant, &lease.lease_id).context("close")?;
    progress("lease closed by the tenant; waiting for settlement and the anchor");
    let anchored_at = wait_closed_anchored(&settler, &lease.lease_id, Duration::from_secs(60))?;
    let close_to_anchor = anchored_at.duration_since(t_close);
    let v = settle::verify_lease(&settler, &lease.lease_id, None)?;
    progress(&format!(
        "proof: merkle {}, batch signature {}, anchored {} ({})",
        v.proof_ok,
        v.batch_signature_ok,
        v.anchor_ok,
        v.anchor
            .as_ref()
            .map(|a| format!("{} height {}", a.chain_id, a.height))
            .unwrap_or_default()
    ));
    for p in &v.problems {
        progress(&format!("problem: {p}"));
    }
    let after = balance(&address)?;
    progress(&format!(
        "tenant {} paid {} {denom} ({before} -> {after}){}",
        address,
        before.saturating_sub(after),
        if chain_client.is_some() { ", read from the chain" } else { "" }
    ));
    let t = &lease.timings;
    progress(&format!(
        "done in {:.1} s after the build",
        (started.elapsed() - t_build).as_secs_f64()
    ));
    Ok(DemoReport {
        order_to_first_bid_ms: t
            .first_bid_ms
            .unwrap_or(t.award_ms)
            .saturating_sub(t.order_posted_ms),
        order_to_award_ms: t.award_ms.saturating_sub(t.order_posted_ms),
        award_to_running_ms: t.running_ms.saturating_sub(t.award_ms),
        close_to_anchor_ms: u64::try_from(close_to_anchor.as_millis()).unwrap_or(u64::MAX),
        verified: v.verified(),
    })
}

/// `leasemesh-testnet demo`: runs [`run`] on a thread, stops everything on Ctrl-C, prints the
/// JSON line. Progress goes to stderr, the JSON line to stdout.
pub async fn main(opts: DemoOptions) -> anyhow::Result<()> {
    let owner = format!("lmdemo{}", std::process::id());
    let cleanup = DockerCleanup { owner: owner.clone() };
    let slot: MeshSlot = Arc::new(Mutex::new(Running::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = {
        let slot = slot.clone();
        let start = Instant::now();
        std::thread::spawn(move || {
            let mut progress =
                |line: &str| eprintln!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64());
            let res = run(&opts, &slot, &owner, &mut progress);
            let _ = tx.send(res);
        })
    };
    let wait = tokio::task::spawn_blocking(move || rx.recv());
    let outcome = tokio::select! {
        r = wait => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    // Stop the nodes first (their runtimes may still touch containers), then the chain and
    // Docker.
    if let Ok(mut running) = slot.lock() {
        running.stop();
    }
    let removed = cleanup.run();
    match outcome {
        None => {
            eprintln!("interrupted: stopped the nodes, removed {removed} container(s)/network(s)");
            std::process::exit(130);
        }
        Some(r) => {
            let _ = worker.join();
            let report = r
                .map_err(|e| anyhow!("demo thread: {e}"))?
                .map_err(|e| anyhow!("demo thread: {e}"))??;
            println!("{}", serde_json::to_string(&report)?);
            if !report.verified {
                bail!("the lease proof did not verify");
            }
            Ok(())
        }
    }
}
