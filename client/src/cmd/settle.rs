//! `leasemesh grant --limit AMOUNT` and `leasemesh verify-lease ID`.

use std::process::ExitCode;

use leasemesh_client::keys;
use serde_json::json;

use super::{parse_id, CmdResult, Ctx};

#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// Spend limit, an integer amount with its denom (for example 5000000uakt).
    #[arg(long)]
    pub limit: String,
    /// Where the tenant pays from (default: derived from the key).
    #[arg(long)]
    pub address: Option<String>,
    /// On a mesh that settles on a Cosmos chain: the tenant's secp256k1 chain key (a file
    /// holding the hex secret). The grant is then an authz grant on the chain, and the chain
    /// address is bound to the tenant key (ADR-036) so the settler charges it.
    #[cfg(feature = "cosmos")]
    #[arg(long)]
    pub chain_key: Option<std::path::PathBuf>,
    /// The chain's CometBFT RPC URL, if not the one the settler's genesis names.
    #[cfg(feature = "cosmos")]
    #[arg(long, requires = "chain_key")]
    pub chain_rpc: Option<String>,
}

/// Splits `5000000uakt` into amount and denom.
pub fn parse_coin(s: &str) -> anyhow::Result<leasemesh_protocol::Coin> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let denom = &s[digits.len()..];
    if digits.is_empty() || denom.is_empty() {
        anyhow::bail!("{s:?} is not AMOUNTDENOM, for example 5000000uakt");
    }
    let amount: u128 = digits.parse().map_err(|e| anyhow::anyhow!("amount {digits}: {e}"))?;
    Ok(leasemesh_protocol::Coin::new(denom, amount))
}

pub fn grant(ctx: &Ctx, args: GrantArgs) -> CmdResult {
    let key = keys::load(&ctx.home)?;
    let limit = parse_coin(&args.limit)?;
    #[cfg(feature = "cosmos")]
    if let Some(path) = &args.chain_key {
        let rpc = args.chain_rpc.as_deref();
        if let Some(code) = super::cosmos_grant::grant(ctx, &limit, path, rpc)? {
            return Ok(code);
        }
        ctx.note("this mesh settles on the embedded ledger: --chain-key is not needed");
    }
    let address = args.address.unwrap_or_else(|| keys::default_address(&key.public()));
    let v = leasemesh_client::settle::grant(&ctx.client, &key, &address, &limit)?;
    ctx.emit(&v, || format!("granted the settler up to {limit} from {address}"));
    Ok(ExitCode::SUCCESS)
}

pub fn verify_lease(ctx: &Ctx, lease: &str) -> CmdResult {
    let id = parse_id("lease", lease)?;
    let v = leasemesh_client::settle::verify_lease(&ctx.client, &id)?;
    let ok = v.verified();
    ctx.emit(&json!({ "verified": ok, "checks": v }), || {
        let mark = |b: bool| if b { "ok" } else { "FAILED" };
        let mut s = format!(
            "lease {id}\nmerkle proof      {}\nbatch signature   {} (batch #{}, settler {})\nanchor            {}",
            mark(v.proof_ok),
            mark(v.batch_signature_ok),
            v.batch_sequence.map(|x| x.to_string()).unwrap_or_default(),
            v.settler.clone().unwrap_or_default(),
            mark(v.anchor_ok),
        );
        if let Some(a) = &v.anchor {
            s.push_str(&format!(" ({} height {} tx {})", a.chain_id, a.height, a.tx_hashes.join(",")));
        }
        for p in &v.problems {
            s.push_str(&format!("\nproblem: {p}"));
        }
        s.push_str(if ok { "\nverified" } else { "\nNOT verified" });
        s
    });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
