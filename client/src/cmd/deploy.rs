//! `leasemesh deploy FILE.yaml`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use leasemesh_client::deploy::{self, DeployOptions, Progress};
use leasemesh_client::keys;
use serde_json::json;

use super::{CmdResult, Ctx};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// An Akash SDL file (deploy.yaml, v2.0 or v2.1).
    pub file: PathBuf,
    /// How long providers may bid, in ms.
    #[arg(long, default_value_t = 3_000)]
    pub bid_window_ms: u64,
    /// Lease term in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    pub lease_term_s: u64,
    /// Where the tenant pays from on the settlement backend (default: derived from the key).
    #[arg(long)]
    pub address: Option<String>,
    /// Seconds to wait for the award after the auction, and again for Running.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
}

pub fn run(ctx: &Ctx, args: DeployArgs) -> CmdResult {
    let key = keys::load(&ctx.home)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let opts = DeployOptions {
        bid_window_ms: args.bid_window_ms,
        lease_term_ms: args.lease_term_s.saturating_mul(1000),
        tenant_address: args.address,
        award_timeout: Duration::from_secs(args.timeout_s),
        running_timeout: Duration::from_secs(args.timeout_s),
        ..DeployOptions::default()
    };
    let mut show = |p: &Progress| match p {
        Progress::OrderPosted { order_id, closes_at_ms, max_price } => ctx.note(&format!(
            "order {order_id} posted (max {max_price}/h), auction closes at {closes_at_ms}"
        )),
        Progress::Bid { provider, price, after_ms, .. } => ctx.note(&format!(
            "  bid  {price}/h from {} (+{after_ms} ms)",
            provider.to_hex().get(..16).unwrap_or("")
        )),
        Progress::Awarded { lease_id, provider, price, after_ms, .. } => ctx.note(&format!(
            "award lease {lease_id} to {} at {}/h (+{after_ms} ms)",
            provider.to_hex().get(..16).unwrap_or(""),
            price.as_ref().map(|c| c.to_string()).unwrap_or_default()
        )),
        Progress::ManifestSent { provider_api, .. } => {
            ctx.note(&format!("manifest sealed and sent to {provider_api}"))
        }
        Progress::LeaseEvent { state, .. } => ctx.note(&format!("lease {state}")),
        Progress::Running { endpoints, after_ms, .. } => {
            ctx.note(&format!("running after {after_ms} ms: {}", endpoints.join(" ")))
        }
        _ => {}
    };
    let leases = deploy::deploy(&ctx.client, &key, &text, &opts, &mut show)?;
    ctx.emit(&json!({ "leases": leases }), || {
        let mut s = String::new();
        for l in &leases {
            s.push_str(&format!(
                "lease     {}\norder     {}\nprovider  {} ({})\nprice     {}/h\nendpoints {}\n",
                l.lease_id,
                l.order_id,
                l.provider,
                l.provider_api,
                l.price_per_hour.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                l.endpoints.join(" ")
            ));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}
