//! The tenant's side of settlement: the spend grant for the settler, and checking a lease's
//! proof against a signed, anchored settlement batch.

use leasemesh_protocol::{Coin, Id, Keypair, SettlementBatch, Signed};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::anchor::{check_chain_anchor, RpcSource};
use crate::error::{ClientError, Result};
use crate::http::NodeClient;
use crate::proof::{check, LeaseProof, Verification};

/// The signed spend grant the settler's ledger accepts (a protocol type).
pub use leasemesh_protocol::SpendGrant;

/// Checks a ledger anchor itself rather than the node's word for it: on the embedded ledger
/// (`chain_id` "local") each anchoring entry is fetched by its hash: its bytes must hash to that
/// hash and carry the batch's id and Merkle root. (A chain anchor is checked on the chain, by
/// [`check_chain`].)
fn check_ledger_anchor(
    client: &NodeClient,
    batch: &Signed<SettlementBatch>,
    anchor: &leasemesh_protocol::Anchor,
    problems: &mut Vec<String>,
) -> bool {
    let id = batch.id();
    let root = batch.body.merkle_root;
    let mut ok = true;
    for hash in &anchor.tx_hashes {
        let url = format!("{}/v1/ledger/entries/{hash}", client.base());
        let bytes = client
            .get_json_url(&url)
            .ok()
            .and_then(|v| v.get("bytes_hex").and_then(Value::as_str).map(str::to_owned))
            .and_then(|h| hex::decode(h).ok());
        let Some(bytes) = bytes else {
            problems.push(format!("ledger entry {hash} could not be fetched"));
            ok = false;
            continue;
        };
        if blake3::hash(&bytes).to_hex().as_str() != hash.to_ascii_lowercase() {
            problems.push(format!("ledger entry {hash}: its bytes hash to something else"));
            ok = false;
        } else if !contains(&bytes, id.as_bytes()) || !contains(&bytes, root.as_bytes()) {
            problems.push(format!("ledger entry {hash} does not carry this batch and its root"));
            ok = false;
        }
    }
    ok
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The chain RPC the node reports in its settler status (`settlement_chain.rpc_url`), if any.
pub fn node_chain_rpc(client: &NodeClient) -> Option<String> {
    let status = client.settler_status().ok()?;
    status.pointer("/settlement_chain/rpc_url").and_then(Value::as_str).map(str::to_owned)
}

/// Checks a chain anchor on the chain: through `chain_rpc` if the tenant named one, else through
/// the RPC the node reports (asked once, kept in `node_rpc`).
fn check_chain(
    client: &NodeClient,
    chain_rpc: Option<&str>,
    node_rpc: &mut Option<Option<String>>,
    batch: &Signed<SettlementBatch>,
    anchor: &leasemesh_protocol::Anchor,
    v: &mut Verification,
) -> bool {
    let (rpc, source) = match chain_rpc {
        Some(url) => (Some(url.to_owned()), RpcSource::Flag),
        None => (node_rpc.get_or_insert_with(|| node_chain_rpc(client)).clone(), RpcSource::Node),
    };
    let Some(rpc) = rpc else {
        v.problems.push(format!(
            "batch #{} is anchored on chain {}, but no chain RPC is known: pass --chain-rpc URL",
            batch.body.sequence, anchor.chain_id
        ));
        return false;
    };
    let check = check_chain_anchor(
        |url| client.get_json_url(url),
        &rpc,
        source,
        anchor,
        batch.body.sequence,
        &batch.body.merkle_root,
    );
    for t in &check.txs {
        for p in &t.problems {
            v.problems.push(format!("chain tx {}: {p}", t.hash));
        }
    }
    for p in &check.problems {
        v.problems.push(format!("chain anchor of batch #{}: {p}", batch.body.sequence));
    }
    let ok = check.ok;
    v.chain.push(check);
    ok
}

/// The settlement settler's ledger address, from the node's settler status.
pub fn settlement_address(client: &NodeClient) -> Result<String> {
    let v = client.settler_status()?;
    v.get("settlement_address").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
        ClientError::BadAnswer {
            url: format!("{}/v1/settler/status", client.base()),
            reason: "no settlement_address: the mesh has no settlement settler".into(),
        }
    })
}

/// Grants the settlement settler a spend limit from `address` on the embedded ledger. The grant
/// is signed by the tenant key, so no one else can raise a tenant's limit. The node asked must
/// be the settlement settler (the first settler of the genesis).
pub fn grant(client: &NodeClient, key: &Keypair, address: &str, limit: &Coin) -> Result<Value> {
    let settler_address = settlement_address(client)?;
    let g = Signed::sign(
        SpendGrant {
            version: leasemesh_protocol::v(),
            tenant_address: address.to_owned(),
            settler_address,
            denom: limit.denom.clone(),
            limit: limit.amount,
            created_at_ms: crate::deploy::now_ms(),
        },
        key,
    );
    client.post_json("/v1/ledger/grants", &json!({ "signed_hex": hex::encode(g.encode()) }))
}

/// One proof entry as the settlement settler serves it.
#[derive(Debug, Clone, Deserialize)]
struct ProofEntry {
    signed_batch_hex: String,
    lease_proof: LeaseProof,
    #[serde(default)]
    anchor: Option<leasemesh_protocol::Anchor>,
}

/// Fetches the proofs of a lease from the settlement settler and checks each here: the Merkle
/// proof, the batch's signature and root, and that the batch is anchored. All batches holding
/// the lease must check; the result describes the last one (its `problems` and `chain` gather
/// every batch's).
///
/// The anchor is checked where it is: an embedded-ledger anchor through the node's ledger
/// entries (their bytes must hash to the anchored hashes), a Cosmos anchor on the chain through
/// `chain_rpc` (a CometBFT RPC URL), or, without it, through the RPC the node reports in its
/// settler status, which is trusted less (see [`crate::anchor`]).
pub fn verify_lease(
    client: &NodeClient,
    lease_id: &Id,
    chain_rpc: Option<&str>,
) -> Result<Verification> {
    let url = format!("{}/v1/leases/{lease_id}/proof", client.base());
    let v = client.get_json_url(&url)?;
    let entries: Vec<ProofEntry> =
        serde_json::from_value(v.get("proofs").cloned().unwrap_or(Value::Null)).map_err(|e| {
            ClientError::BadAnswer { url: url.clone(), reason: format!("proofs: {e}") }
        })?;
    if entries.is_empty() {
        return Err(ClientError::BadAnswer { url, reason: "no proofs".into() });
    }
    let mut out = Verification::default();
    let mut node_rpc = None;
    for e in &entries {
        let mut v = Verification::default();
        let bytes = hex::decode(&e.signed_batch_hex).map_err(|err| ClientError::BadAnswer {
            url: url.clone(),
            reason: format!("batch hex: {err}"),
        })?;
        let batch = Signed::<SettlementBatch>::decode(&bytes)
            .map_err(|source| ClientError::Unverified { what: "settlement batch", source })?;
        if e.lease_proof.lease_id != *lease_id {
            v.problems.push(format!("the proof is for lease {}", e.lease_proof.lease_id));
        }
        check(&e.lease_proof, Some(&batch), &mut v);
        match &e.anchor {
            Some(a) if !a.tx_hashes.is_empty() => {
                v.anchor_ok = if a.chain_id == "local" {
                    check_ledger_anchor(client, &batch, a, &mut v.problems)
                } else {
                    check_chain(client, chain_rpc, &mut node_rpc, &batch, a, &mut v)
                };
                v.anchor = Some(a.clone());
            }
            _ => v.problems.push(format!("batch #{} is not anchored", batch.body.sequence)),
        }
        out.problems.extend(v.problems.clone());
        out.chain.extend(v.chain.clone());
        let (problems, chain) = (std::mem::take(&mut out.problems), std::mem::take(&mut out.chain));
        out = Verification { problems, chain, ..v };
    }
    Ok(out)
}
