//! The tenant's side of settlement: the spend grant for the settler, and checking a lease's
//! proof against a signed, anchored settlement batch.

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::crypto::signing_message;
use leasemesh_protocol::{Anchor, Coin, Hash, Id, Keypair, SettlementBatch, Signed};
use serde_json::{json, Value};

use crate::error::{ClientError, Result};
use crate::http::{decode_view, NodeClient};
use crate::proof::{check, LeaseProof, Verification};

/// Domain tag of a tenant's signed grant request to the embedded ledger.
pub const GRANT_DOMAIN: &str = "leasemesh/v1/ledger-grant";

/// Grants the settler a spend limit from `address` on the node's settlement backend. The request
/// is signed by the tenant key, so no one else can raise a tenant's limit.
pub fn grant(client: &NodeClient, key: &Keypair, address: &str, limit: &Coin) -> Result<Value> {
    let msg = signing_message(GRANT_DOMAIN, &to_canonical(&(address, limit)));
    let sig = key.sign(&msg);
    client.post_json(
        "/v1/ledger/grants",
        &json!({
            "tenant_address": address,
            "limit": limit,
            "tenant_key": key.public(),
            "signature": sig,
        }),
    )
}

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n)).filter(|x| !x.is_null())
}

/// Fetches the proof, the signed batch and the anchor of a lease and checks them: the Merkle
/// proof and the batch signature here, the anchor against the node's ledger view.
pub fn verify_lease(client: &NodeClient, lease_id: &Id) -> Result<Verification> {
    let url = format!("{}/v1/leases/{lease_id}/proof", client.base());
    let v = client.get_json_url(&url)?;
    let proof_v = field(&v, &["proof", "lease_proof"]).cloned().unwrap_or_else(|| v.clone());
    let proof: LeaseProof = serde_json::from_value(proof_v).map_err(|e| {
        ClientError::BadAnswer { url: url.clone(), reason: format!("lease proof: {e}") }
    })?;
    let batch: Option<Signed<SettlementBatch>> = match field(&v, &["batch", "settlement_batch"]) {
        Some(b) if b.get("signed_hex").is_some() => Some(decode_view(b)?),
        _ => match field(&v, &["batch_signed_hex", "signed_batch_hex"]).and_then(Value::as_str) {
            Some(h) => {
                let bytes = hex::decode(h).map_err(|e| ClientError::BadAnswer {
                    url: url.clone(),
                    reason: format!("batch hex: {e}"),
                })?;
                Some(Signed::<SettlementBatch>::decode(&bytes).map_err(|source| {
                    ClientError::Unverified { what: "settlement batch", source }
                })?)
            }
            None => None,
        },
    };
    let mut out = Verification::default();
    check(&proof, batch.as_ref(), &mut out);
    let anchor: Option<Anchor> =
        field(&v, &["anchor"]).and_then(|a| serde_json::from_value(a.clone()).ok());
    out.anchor = anchor.clone();
    match (&anchor, &batch) {
        (Some(_), Some(b)) => match check_anchor(client, &b.id(), &b.body.merkle_root) {
            Ok(()) => out.anchor_ok = true,
            Err(e) => out.problems.push(format!("anchor: {e}")),
        },
        (None, _) => out.problems.push("the batch is not anchored yet".into()),
        (Some(_), None) => out.problems.push("no batch to check the anchor of".into()),
    }
    Ok(out)
}

/// Asks the node's settlement backend view whether the batch is anchored with this root.
fn check_anchor(client: &NodeClient, batch_id: &Id, root: &Hash) -> Result<()> {
    let url = format!("{}/v1/ledger/batches/{batch_id}", client.base());
    let v = client.get_json_url(&url)?;
    let anchored_root =
        field(&v, &["merkle_root"]).and_then(Value::as_str).and_then(|s| Hash::from_hex(s).ok());
    match anchored_root {
        Some(r) if r == *root => Ok(()),
        Some(r) => Err(ClientError::Invalid(format!(
            "the backend anchored root {r}, the batch has {root}"
        ))),
        None => {
            Err(ClientError::BadAnswer { url, reason: "no merkle_root in the ledger entry".into() })
        }
    }
}
