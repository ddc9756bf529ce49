//! `leasemesh grant --limit AMOUNT --chain-key FILE` on a mesh that settles on a Cosmos chain
//! (feature `cosmos`): the authz grant on the chain, then the binding posted to the settler.

use std::path::Path;
use std::process::ExitCode;

use leasemesh_client::cosmos_grant::{grant_and_bind, load_chain_key, ChainParams};
use leasemesh_client::keys;
use leasemesh_protocol::Coin;

use super::Ctx;

/// Grants on the chain the node's settler settles on; `None` when the mesh settles on the
/// embedded ledger (the caller then posts the ledger grant).
pub fn grant(
    ctx: &Ctx,
    limit: &Coin,
    chain_key: &Path,
    chain_rpc: Option<&str>,
) -> anyhow::Result<Option<ExitCode>> {
    let status = ctx.client.settler_status()?;
    let Some(mut params) = ChainParams::from_status(&status)? else { return Ok(None) };
    if let Some(url) = chain_rpc {
        params.rpc_url = url.to_owned();
    }
    let key = keys::load(&ctx.home)?;
    let secret = load_chain_key(chain_key)?;
    ctx.note(&format!("granting on {} through {}", params.chain_id, params.rpc_url));
    let v = grant_and_bind(&ctx.client, &params, &secret, &key, limit)?;
    ctx.emit(&v, || {
        format!(
            "granted the settler {} up to {limit} from {} (tx {} at height {})\nbound {} to tenant key {}",
            v["grantee"].as_str().unwrap_or_default(),
            v["granter"].as_str().unwrap_or_default(),
            v["tx_hash"].as_str().unwrap_or_default(),
            v["height"],
            v["granter"].as_str().unwrap_or_default(),
            key.public(),
        )
    });
    Ok(Some(ExitCode::SUCCESS))
}
