//! `leasemesh grant --limit AMOUNT` and `leasemesh verify-lease ID [--chain-rpc URL]`.

use std::process::ExitCode;

use leasemesh_client::keys;
use leasemesh_client::proof::Verification;
use leasemesh_protocol::Id;
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

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The lease id (64 hex digits).
    pub lease: String,
    /// CometBFT RPC of the chain a Cosmos anchor is on (for example http://127.0.0.1:26657).
    /// Without it the RPC the node reports is used, which is trusted less: the node is what is
    /// being checked.
    #[arg(long, env = "LEASEMESH_CHAIN_RPC")]
    pub chain_rpc: Option<String>,
}

pub fn verify_lease(ctx: &Ctx, args: VerifyArgs) -> CmdResult {
    let id = parse_id("lease", &args.lease)?;
    let v = leasemesh_client::settle::verify_lease(&ctx.client, &id, args.chain_rpc.as_deref())?;
    let ok = v.verified();
    ctx.emit(&json!({ "verified": ok, "checks": v }), || report(&id, &v));
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The text report: one line per check, one per chain transaction.
fn report(id: &Id, v: &Verification) -> String {
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
    for c in &v.chain {
        s.push_str(&format!(
            "\nchain rpc         {} ({})\nchain             {} (the RPC says {}), batch #{}: {}",
            c.rpc_url,
            c.rpc_source.describe(),
            c.chain_id,
            c.rpc_chain_id.as_deref().unwrap_or("nothing"),
            c.batch_sequence,
            mark(c.ok),
        ));
        for t in &c.txs {
            s.push_str(&format!(
                "\n  tx {} {} height {} code {} memo {}",
                t.hash,
                mark(t.ok),
                t.height.map(|h| h.to_string()).unwrap_or_else(|| "?".into()),
                t.code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                t.memo.as_deref().unwrap_or("?"),
            ));
        }
    }
    for p in &v.problems {
        s.push_str(&format!("\nproblem: {p}"));
    }
    s.push_str(if v.verified() { "\nverified" } else { "\nNOT verified" });
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_client::anchor::{judge, RpcAnswers, RpcSource};
    use leasemesh_protocol::{Anchor, Hash};
    use serde_json::Value;

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn the_report_names_the_rpc_its_source_and_each_transaction() {
        let hashes = [
            "4F409F6A47035E345AB518C4DCEC3134AB64D2453EDF7AAD297BCF84F79D987F",
            "6681EFF5F2DF1B1F7AD02358BD9B9521AE49264C1BFC020FBF8864926AA5C82C",
        ];
        let anchor = Anchor {
            chain_id: "leasemesh-devnet-1".into(),
            tx_hashes: hashes.iter().map(|h| (*h).to_owned()).collect(),
            height: 4,
        };
        let root =
            Hash::from_hex("4cbeda830477a7f35db8ed9f8d74afd158b33fee8a45a6b0069cfa1b76cd7aea")
                .unwrap();
        let answers = RpcAnswers {
            status: Ok(json(include_str!("../../testdata/cometbft/status.json"))),
            txs: vec![
                Ok(json(include_str!("../../testdata/cometbft/tx0.json"))),
                Ok(json(include_str!("../../testdata/cometbft/tx1.json"))),
            ],
        };
        let rpc = "http://127.0.0.1:26657";
        let check = judge(&anchor, 1, &root, rpc, RpcSource::Node, &answers);
        let v = Verification {
            proof_ok: true,
            batch_signature_ok: true,
            anchor_ok: check.ok,
            anchor: Some(anchor),
            chain: vec![check],
            ..Verification::default()
        };
        let id = Hash::domain("lease", &[]);
        let text = report(&id, &v);
        assert!(
            text.contains(&format!("chain rpc         {rpc} (reported by the node: trusted less"))
        );
        assert!(text.contains(&format!("  tx {} ok height 4 code 0 memo lm:v1:1:1/2:", hashes[1])));
        assert!(text.ends_with("\nverified"), "{text}");
        // The JSON document carries the per-transaction verdicts.
        let doc = serde_json::to_value(&v).unwrap();
        assert_eq!(doc["chain"][0]["rpc_source"], "node");
        assert_eq!(doc["chain"][0]["txs"][0]["hash"], hashes[0]);
        assert_eq!(doc["chain"][0]["txs"][0]["ok"], true);
    }
}
