//! `leasemesh-testnet bench`: a mesh of node processes on 127.0.0.1 under a steady order rate,
//! measured from outside (each node's event stream, `/proc`, `ss`, the devnet's blocks), and
//! optionally an Akash-style on-chain market on the same devnet for comparison ([`akash`]).
//!
//! Providers run the real bid engine on the `none` container runtime (a lease whose manifest
//! matches is Running at once), so Docker is not what is measured. Tenants post signed orders
//! built from `testdata/demo.yaml` through the light client, send the sealed manifest to each
//! winner, and their leases end after `--lease-term-ms`, so settlement pays and anchors them
//! during the run.

pub mod akash;
pub mod load;
pub mod memory;
pub mod procfs;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

/// Where the mesh settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchChain {
    /// The settler's embedded ledger.
    Local,
    /// A fresh injectived devnet.
    Injective,
}

/// The comparison run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    None,
    /// Orders, bids, leases and withdrawals as transactions on the devnet.
    Akash,
}

/// `leasemesh-testnet bench` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Node processes in all (one settler, the providers, the rest relays and tenant nodes).
    #[arg(long, default_value_t = 8)]
    pub nodes: usize,
    #[arg(long, default_value_t = 2)]
    pub providers: usize,
    /// Settlers; the mesh harness runs one (node 0), other values are refused.
    #[arg(long, default_value_t = 1)]
    pub settlers: usize,
    /// Tenant clients, each posting to its own non-provider node.
    #[arg(long, default_value_t = 2)]
    pub tenants: usize,
    #[arg(long, default_value_t = 5.0)]
    pub orders_per_s: f64,
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    #[arg(long, default_value_t = 250)]
    pub bid_window_ms: u64,
    #[arg(long, default_value_t = 250)]
    pub epoch_ms: u64,
    /// How long each lease runs before its provider closes it (then it is settled).
    #[arg(long, default_value_t = 3_000)]
    pub lease_term_ms: u64,
    #[arg(long, value_enum, default_value = "local")]
    pub chain: BenchChain,
    /// The devnet's block time (CometBFT timeout_commit).
    #[arg(long, default_value_t = 500)]
    pub block_time_ms: u64,
    #[arg(long, value_enum, default_value = "none")]
    pub baseline: Baseline,
    /// Concurrent tenants of the baseline (each with its own provider accounts).
    #[arg(long, default_value_t = 6)]
    pub baseline_lanes: usize,
    /// Report directory (report.md and the SVG plots).
    #[arg(long, default_value = "target/bench")]
    pub report: PathBuf,
    /// Keep the nodes' temp directory (logs, stores).
    #[arg(long)]
    pub keep: bool,
    /// Instead of the mesh run: fill one node with live orders and bids through its API and
    /// measure its RSS.
    #[arg(long)]
    pub memory: bool,
    #[arg(long, default_value_t = 100_000)]
    pub memory_orders: usize,
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_bids: usize,
}

impl BenchArgs {
    /// Refuses what the bench cannot honour.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.settlers != 1 {
            bail!(
                "--settlers {}: the mesh harness runs exactly one settler (node 0)",
                self.settlers
            );
        }
        if self.providers == 0 || self.tenants == 0 {
            bail!("at least one provider and one tenant are needed");
        }
        if self.nodes < self.providers + 1 + self.tenants {
            bail!(
                "--nodes {} cannot hold a settler, {} providers and {} tenant nodes",
                self.nodes,
                self.providers,
                self.tenants
            );
        }
        if !(self.orders_per_s > 0.0 && self.orders_per_s <= 10_000.0) {
            bail!("--orders-per-s must be in (0, 10000]");
        }
        if self.duration_s == 0 {
            bail!("--duration-s must be at least 1");
        }
        if self.baseline == Baseline::Akash && self.chain != BenchChain::Injective {
            bail!("--baseline akash runs on the devnet: pass --chain injective");
        }
        if self.baseline == Baseline::Akash && self.baseline_lanes == 0 {
            bail!("--baseline-lanes must be at least 1");
        }
        Ok(())
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_s)
    }
}

/// The bench's JSON line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchLine {
    pub nodes: usize,
    pub providers: usize,
    pub tenants: usize,
    pub orders: usize,
    pub orders_per_s: f64,
    pub duration_s: u64,
    pub runtime: &'static str,
    pub chain: String,
    pub block_time_ms: u64,
    pub awarded: usize,
    pub p50_order_to_first_bid_ms: Option<u64>,
    pub p99_order_to_first_bid_ms: Option<u64>,
    pub p50_order_to_award_ms: Option<u64>,
    pub p99_order_to_award_ms: Option<u64>,
    /// Median over orders of the time until 50/90/99/100 % of the nodes stored the order.
    pub coverage_p50_ms: Option<u64>,
    pub coverage_p90_ms: Option<u64>,
    pub coverage_p99_ms: Option<u64>,
    pub coverage_p100_ms: Option<u64>,
    /// The 99th percentile over orders of the time until 99 % of the nodes stored the order.
    pub coverage_p99_ms_worst_orders: Option<u64>,
    pub rss_mb_median: f64,
    pub rss_mb_max: f64,
    /// CPU of one node over the load phase, in % of one core.
    pub cpu_pct_median: f64,
    pub cpu_pct_max: f64,
    /// TCP payload bytes sent on the p2p sockets (kernel `bytes_sent` via `ss`), per node per
    /// order posted.
    pub bytes_sent_per_node_per_order: Option<u64>,
    pub leases: usize,
    pub settle_txs: Option<u64>,
    pub settle_gas: Option<u64>,
    pub txs_per_lease: Option<f64>,
    pub gas_per_lease: Option<f64>,
    pub akash_leases: Option<usize>,
    pub akash_p50_order_to_lease_ms: Option<u64>,
    pub akash_p99_order_to_lease_ms: Option<u64>,
    pub akash_txs_per_lease: Option<f64>,
    pub akash_gas_per_lease: Option<f64>,
    pub speedup_p50: Option<f64>,
    pub gas_ratio: Option<f64>,
    pub loadavg_1m: f64,
    pub report: String,
}

/// `leasemesh-testnet bench`: runs the mesh load, the baseline, writes the report and prints
/// the JSON line (stdout); progress goes to stderr.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    if args.memory {
        let line = tokio::task::spawn_blocking(move || {
            let mut progress = |l: &str| eprintln!("[{:>6.1}s] {l}", start.elapsed().as_secs_f64());
            memory::run(args.memory_orders, args.memory_bids, args.keep, &mut progress)
        })
        .await??;
        println!("{}", serde_json::to_string(&line)?);
        return Ok(());
    }
    args.check()?;
    let line = tokio::task::spawn_blocking(move || {
        let mut progress = |l: &str| eprintln!("[{:>6.1}s] {l}", start.elapsed().as_secs_f64());
        load::run(&args, &mut progress)
    })
    .await??;
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}
