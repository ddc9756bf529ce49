//! `leasemesh-testnet up`: a local network to try `leasemesh` against. It starts what the demo
//! starts (through [`crate::demo::launch`]: nodes, providers on Docker, a settler, optionally
//! the injectived devnet), writes a funded tenant's key file that has already granted the
//! settler a spend limit, prints the node URLs and the exact `leasemesh` commands to deploy,
//! list, read logs and close, then runs until Ctrl-C (or SIGTERM) and removes everything it
//! made: node processes, containers, networks, temp directories. With `--keep-chain` the devnet
//! process and its home stay, and it prints how to query the anchors with `injectived q tx`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context as _};

use crate::chain::MeshChain;
use crate::demo::{
    launch, with_denom, DemoChain, DockerCleanup, LaunchOptions, Launched, MeshSlot, Running,
    LABEL_OWNER,
};
use crate::mesh::ProviderSpec;

/// `leasemesh-testnet up` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Settlement backend: the embedded ledger, or a fresh injectived devnet
    /// (scripts/install-chain.sh).
    #[arg(long, value_enum, default_value = "local")]
    pub chain: DemoChain,
    /// With `--chain injective`: leave the devnet running and its home on disk at exit.
    #[arg(long)]
    pub keep_chain: bool,
    /// Provider nodes (each with one host on the local Docker daemon).
    #[arg(long, default_value_t = 2)]
    pub providers: usize,
    /// Relay nodes besides the settler and the providers (the tenant talks to the last one).
    #[arg(long, default_value_t = 1)]
    pub relays: usize,
    /// Keep the mesh's temp directory (node logs and stores) at exit.
    #[arg(long)]
    pub keep: bool,
}

/// Shell words of one `leasemesh` command.
fn cli_cmd(bin: &Path, node: &str, home: &Path, rest: &str) -> String {
    format!("{} --node {node} --home {} {rest}", bin.display(), home.display())
}

/// Writes the tenant's key file and the SDL to deploy, and builds the text `up` prints.
fn ready_text(
    l: &Launched,
    args: &UpArgs,
    owner: &str,
    cli_bin: &Path,
    chain: Option<(&str, &str)>,
) -> anyhow::Result<String> {
    let home = l.dir.join("tenant");
    leasemesh_client::keys::write_key(&home, &l.tenant).context("tenant key file")?;
    let demo_sdl = crate::demo::testdata_dir().join("demo.yaml");
    // On the devnet the demo's prices must be in the chain's denom.
    let sdl = if l.denom == "uakt" {
        demo_sdl.canonicalize().unwrap_or(demo_sdl)
    } else {
        let text = std::fs::read_to_string(&demo_sdl)
            .with_context(|| format!("cannot read {}", demo_sdl.display()))?;
        let p = l.dir.join("demo.yaml");
        std::fs::write(&p, with_denom(&text, &l.denom))?;
        p
    };
    let node = l.tenant_node.base().to_owned();
    let address = if chain.is_some() { format!(" --address {}", l.address) } else { String::new() };
    let mut t = String::new();
    let _ = writeln!(t, "leasemesh local network is up; Ctrl-C stops it and removes everything.");
    let _ = writeln!(t, "nodes:");
    for (url, role) in &l.nodes {
        let _ = writeln!(t, "  {role:<9} {url}");
    }
    let _ = writeln!(t, "mesh dir: {}", l.dir.display());
    let _ = writeln!(t, "containers: owner label {LABEL_OWNER}={owner}");
    let _ = writeln!(
        t,
        "tenant key file: {} (pays from {}, funded with 1000000000000 {}; the settler may spend from it)",
        home.join(leasemesh_client::keys::KEY_FILE).display(),
        l.address,
        l.denom
    );
    if let Some((rpc, chain_id)) = chain {
        let _ = writeln!(t, "chain: {chain_id} at {rpc}");
    }
    let _ = writeln!(t, "try it (the lease id is in deploy's output):");
    let verify = match chain {
        Some((rpc, _)) => format!("verify-lease LEASE_ID --chain-rpc {rpc}"),
        None => "verify-lease LEASE_ID".to_owned(),
    };
    for (what, node, rest) in [
        ("deploy", &node, format!("-o json deploy {}{address}", sdl.display())),
        ("list", &node, "leases".to_owned()),
        ("logs", &node, "lease logs LEASE_ID".to_owned()),
        ("close", &node, "lease close LEASE_ID".to_owned()),
        ("verify", &l.settler.base().to_owned(), verify),
    ] {
        let _ = writeln!(t, "  {what:<7}$ {}", cli_cmd(cli_bin, node, &home, &rest));
    }
    if args.keep_chain && chain.is_some() {
        let _ =
            writeln!(t, "--keep-chain: the devnet stays up after Ctrl-C (see the exit message).");
    }
    let _ = writeln!(t, "ready");
    Ok(t)
}

/// Starts the network on this thread; the mesh and chain go into `slot`.
fn start(
    args: &UpArgs,
    owner: &str,
    slot: &MeshSlot,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let prices = [100_000, 140_000, 120_000, 160_000];
    let providers = (0..args.providers)
        .map(|i| ProviderSpec::small(prices[i % prices.len()] + 1_000 * (i / prices.len()) as u64))
        .collect::<Vec<_>>();
    let opts = LaunchOptions {
        chain: args.chain,
        nodes: 1 + args.providers + args.relays.max(1),
        providers,
        owner: owner.to_owned(),
        keep: args.keep,
    };
    let launched = launch(&opts, &rt, slot, progress)?;
    let cli_bin = crate::mesh::workspace_binary("leasemesh-client", "leasemesh", true, progress)?;
    let chain = slot
        .lock()
        .map_err(|_| anyhow!("slot poisoned"))?
        .chain
        .as_ref()
        .map(|c| (c.devnet.rpc_url.clone(), c.devnet.chain_id.clone()));
    ready_text(
        &launched,
        args,
        owner,
        &cli_bin,
        chain.as_ref().map(|(r, c)| (r.as_str(), c.as_str())),
    )
}

/// Leaves the devnet running (its process and home), saying how to use and stop it.
fn detach_chain(chain: MeshChain) -> String {
    let MeshChain { devnet, .. } = chain;
    let rpc = devnet.rpc_url.clone();
    let (pid, home) = devnet.detach();
    let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
    format!(
        "the devnet keeps running (pid {pid}, home {home}):\n  \
         anchors: take a hash from `checks.anchor.tx_hashes` of the verify command's JSON, then\n  \
         $ injectived q tx HASH --node {rpc} --home {home} -o json\n  \
         stop it: kill -TERM -{pid}; rm -rf {home}",
        home = home.display()
    )
}

/// `leasemesh-testnet up`: starts, prints, waits for Ctrl-C/SIGTERM, cleans up.
pub async fn main(args: UpArgs) -> anyhow::Result<()> {
    let owner = format!("lmup{}", std::process::id());
    let cleanup = DockerCleanup { owner: owner.clone() };
    let slot: MeshSlot = Arc::new(Mutex::new(Running::default()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let (slot, owner, args) = (slot.clone(), owner.clone(), args.clone());
        let t0 = Instant::now();
        std::thread::spawn(move || {
            let mut progress =
                |line: &str| eprintln!("[{:>6.1}s] {line}", t0.elapsed().as_secs_f64());
            let _ = tx.send(start(&args, &owner, &slot, &mut progress));
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopped = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    tokio::pin!(stopped);
    let result = tokio::select! {
        r = rx => Some(r.map_err(|_| anyhow!("the start-up thread died")).and_then(|r| r)),
        _ = &mut stopped => None,
    };
    let failed = match result {
        Some(Ok(text)) => {
            print!("{text}");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            (&mut stopped).await;
            None
        }
        Some(Err(e)) => Some(e),
        None => None,
    };
    eprintln!("stopping");
    let mut kept = None;
    if let Ok(mut running) = slot.lock() {
        if args.keep_chain {
            kept = running.chain.take().map(detach_chain);
        }
        running.stop();
    }
    let removed = cleanup.run();
    eprintln!("stopped the nodes, removed {removed} container(s)/network(s) and the temp dirs");
    if let Some(k) = kept {
        println!("{k}");
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The dir `up` printed as its mesh dir, from its output.
pub fn printed_dir(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|l| l.strip_prefix("mesh dir: ")).map(PathBuf::from)
}
