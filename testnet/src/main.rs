//! `leasemesh-testnet`: local test networks for leasemesh.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::{Parser, Subcommand};
use leasemesh_protocol::{SettlementBatch, Signed};
use leasemesh_settlement::cosmos::{ChainConfig, Cosmos, CosmosConfig, SigningKey};
use leasemesh_settlement::journal::SettleStep;
use leasemesh_testnet::chain;
use leasemesh_testnet::devnet::{Devnet, DevnetConfig};

#[derive(Debug, Parser)]
#[command(name = "leasemesh-testnet", version, about = "Local test networks for leasemesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The one-command demo: 5 nodes on 127.0.0.1 (1 settler, 2 Docker providers), deploy
    /// testdata/demo.yaml through the client, fetch the page, close, settle, anchor, verify the
    /// lease proof; ends with one JSON line of timings. Cleans up even on Ctrl-C.
    Demo(leasemesh_testnet::demo::DemoArgs),
    /// A local network to try `leasemesh` against: nodes, providers on Docker, a settler
    /// (`--chain injective` for the devnet). Prints the node URLs, a funded tenant key file and
    /// the `leasemesh` commands to deploy, list, read logs and close; runs until Ctrl-C, then
    /// removes everything (`--keep-chain` leaves the devnet up).
    Up(leasemesh_testnet::up::UpArgs),
    /// The network bench: N node processes on 127.0.0.1 (providers on the no-op runtime) under
    /// a steady order rate, optionally against an Akash-style on-chain market on the same
    /// devnet; prints one JSON line and writes a report (report.md and SVG plots).
    Bench(leasemesh_testnet::bench::BenchArgs),
    /// Start a fresh one-validator Injective chain on loopback, print its RPC URL, chain id and
    /// funded accounts (with their secp256k1 secrets) as JSON, and run until Ctrl-C.
    /// Needs `injectived` on PATH: run scripts/install-chain.sh.
    Devnet {
        /// Home directory of the node (must not hold a chain yet); a temp dir by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Funded test accounts.
        #[arg(long, default_value_t = 4)]
        accounts: usize,
        /// Block time (CometBFT timeout_commit); 6000 mimics Akash mainnet.
        #[arg(long, default_value_t = 500)]
        block_time_ms: u64,
    },
    /// Settle the batch of a sample fleet of N leases on a fresh devnet through the journal and
    /// the Cosmos backend, and print one JSON line
    /// {"leases":..,"txs":..,"gas_per_lease":..,"leases_per_min":..}.
    SettleBench {
        #[arg(long, default_value_t = 1_000)]
        leases: usize,
        #[arg(long, default_value_t = 50)]
        tenants: usize,
        #[arg(long, default_value_t = 20)]
        providers: usize,
        #[arg(long, default_value_t = 500)]
        block_time_ms: u64,
    },
    /// Settle one batch file (or only resume) on a running chain through a journal; the
    /// devnet crash test runs this and kills it after a step.
    #[command(hide = true)]
    SettleOnce {
        #[arg(long)]
        rpc_url: String,
        #[arg(long)]
        chain_id: String,
        /// The settler's secp256k1 secret, hex.
        #[arg(long, env = "LEASEMESH_SETTLER_SECRET", hide_env_values = true)]
        settler_secret: String,
        #[arg(long)]
        journal: PathBuf,
        /// A signed settlement batch (its canonical bytes); without it, only resume.
        #[arg(long)]
        batch: Option<PathBuf>,
        /// Abort the process right after this step: stored|prepared|submitted|confirmed|anchored.
        #[arg(long)]
        crash_after: Option<String>,
    },
}

fn parse_step(s: &str) -> anyhow::Result<SettleStep> {
    Ok(match s {
        "stored" => SettleStep::BatchStored,
        "prepared" => SettleStep::Prepared,
        "submitted" => SettleStep::Submitted,
        "confirmed" => SettleStep::Confirmed,
        "anchored" => SettleStep::Anchored,
        other => return Err(anyhow!("unknown step {other:?}")),
    })
}

async fn run_devnet(
    dir: Option<PathBuf>,
    accounts: usize,
    block_time_ms: u64,
) -> anyhow::Result<()> {
    let mut devnet = Devnet::start(DevnetConfig {
        dir,
        accounts,
        block_time: Duration::from_millis(block_time_ms),
        ..DevnetConfig::default()
    })
    .await?;
    println!("{}", devnet.info_json());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {},
    }
    eprintln!("stopping the devnet");
    devnet.stop();
    Ok(())
}

async fn settle_once(
    rpc_url: String,
    chain_id: String,
    settler_secret: String,
    journal: PathBuf,
    batch: Option<PathBuf>,
    crash_after: Option<String>,
) -> anyhow::Result<()> {
    let secret = hex::decode(settler_secret.trim()).context("settler secret is not hex")?;
    let key = SigningKey::from_slice(&secret).map_err(|e| anyhow!("settler secret: {e}"))?;
    let mut cosmos =
        Cosmos::new(CosmosConfig::new(ChainConfig::injective(rpc_url, chain_id)), key)?;
    let batch = match batch {
        Some(path) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Some(Signed::<SettlementBatch>::decode(&bytes)?)
        }
        None => None,
    };
    let crash_after = crash_after.as_deref().map(parse_step).transpose()?;
    let anchors = chain::settle_with_journal(&journal, &mut cosmos, batch, crash_after).await?;
    for a in anchors {
        println!("{}", serde_json::to_string(&a)?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo(args) => leasemesh_testnet::demo::main(args.into_options()?).await,
        Command::Up(args) => leasemesh_testnet::up::main(args).await,
        Command::Bench(args) => leasemesh_testnet::bench::main(args).await,
        Command::Devnet { dir, accounts, block_time_ms } => {
            run_devnet(dir, accounts, block_time_ms).await
        }
        Command::SettleBench { leases, tenants, providers, block_time_ms } => {
            let report = chain::settle_bench(
                leases,
                tenants,
                providers,
                Duration::from_millis(block_time_ms),
            )
            .await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::SettleOnce { rpc_url, chain_id, settler_secret, journal, batch, crash_after } => {
            settle_once(rpc_url, chain_id, settler_secret, journal, batch, crash_after).await
        }
    }
}
