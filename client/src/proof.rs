//! `leasemesh verify-lease`: checks, on the tenant's machine, that a lease is in a settlement
//! batch signed by a settler and anchored. The Merkle proof is recomputed here from the records'
//! canonical bytes; the batch's signature and root are checked here; only the anchor's
//! existence is asked of the node (or, for a chain, of the chain).
//!
//! The proof format is the settlement crate's `LeaseProof` (JSON); it is mirrored here so the
//! light client needs nothing but the protocol crate.

use std::collections::BTreeSet;

use leasemesh_protocol::merkle::Proof;
use leasemesh_protocol::{Anchor, Hash, Id, SettlementBatch, SettlementRecord, Signed};
use serde::{Deserialize, Serialize};

/// One record and its Merkle proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenRecord {
    pub record: SettlementRecord,
    pub proof: Proof,
}

/// A lease's records in one batch, each with a proof to the batch root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseProof {
    pub lease_id: Id,
    pub batch_sequence: u64,
    pub merkle_root: Hash,
    pub records: Vec<ProvenRecord>,
}

fn record_lease(r: &SettlementRecord) -> Option<&Id> {
    match r {
        SettlementRecord::LeaseOpened { lease_id, .. }
        | SettlementRecord::Accrual { lease_id, .. }
        | SettlementRecord::LeaseClosed { lease_id, .. } => Some(lease_id),
        SettlementRecord::Payment { .. } => None,
    }
}

/// True if every record is a leaf under `root` (at distinct positions), the proof names `root`,
/// at least one record is about the lease and no other lease, and a payment, if present, is the
/// one between the lease's tenant and provider in the lease's denom.
pub fn verify_lease_proof(proof: &LeaseProof, root: &Hash) -> bool {
    if proof.merkle_root != *root || proof.records.is_empty() {
        return false;
    }
    let mut positions = BTreeSet::new();
    let mut lease_records = 0usize;
    let mut triple: Option<(&str, &str, &str)> = None;
    let mut payment: Option<(&str, &str, &str)> = None;
    for pr in &proof.records {
        if !pr.proof.verify(&pr.record, root) || !positions.insert(pr.proof.index) {
            return false;
        }
        match &pr.record {
            SettlementRecord::Payment { tenant_address, provider_address, denom, .. } => {
                if payment.replace((tenant_address, provider_address, denom)).is_some() {
                    return false;
                }
            }
            other => {
                if record_lease(other) != Some(&proof.lease_id) {
                    return false;
                }
                lease_records += 1;
                match other {
                    SettlementRecord::LeaseOpened {
                        tenant_address,
                        provider_address,
                        price_per_hour,
                        ..
                    } => triple = Some((tenant_address, provider_address, &price_per_hour.denom)),
                    SettlementRecord::Accrual {
                        tenant_address, provider_address, denom, ..
                    } => triple = Some((tenant_address, provider_address, denom)),
                    _ => {}
                }
            }
        }
    }
    lease_records > 0 && (payment.is_none() || triple == payment)
}

/// What `verify-lease` checked, each step on its own line of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub lease_id: Option<Id>,
    pub batch_sequence: Option<u64>,
    pub merkle_root: Option<Hash>,
    /// The Merkle proof of every record leads to the root.
    pub proof_ok: bool,
    /// The settlement batch decodes, its signature verifies and it has the proof's root.
    pub batch_signature_ok: bool,
    pub settler: Option<String>,
    /// The anchor the node reports for the batch, and whether the backend confirms it.
    pub anchor: Option<Anchor>,
    pub anchor_ok: bool,
    /// What was wrong, if anything.
    pub problems: Vec<String>,
}

impl Verification {
    /// Every check passed.
    pub fn verified(&self) -> bool {
        self.proof_ok && self.batch_signature_ok && self.anchor_ok && self.problems.is_empty()
    }
}

/// Checks a proof against a signed batch (signature, root, sequence and the record bytes).
pub fn check(proof: &LeaseProof, batch: Option<&Signed<SettlementBatch>>, v: &mut Verification) {
    v.lease_id = Some(proof.lease_id);
    v.batch_sequence = Some(proof.batch_sequence);
    v.merkle_root = Some(proof.merkle_root);
    let root = match batch {
        Some(b) => {
            let mut ok = true;
            if let Err(e) = b.check().and_then(|()| b.verify()) {
                v.problems.push(format!("settlement batch: {e}"));
                ok = false;
            }
            if b.body.merkle_root != proof.merkle_root {
                v.problems.push(format!(
                    "the batch root is {}, the proof names {}",
                    b.body.merkle_root, proof.merkle_root
                ));
                ok = false;
            }
            if b.body.sequence != proof.batch_sequence {
                v.problems.push(format!(
                    "the batch is #{}, the proof names #{}",
                    b.body.sequence, proof.batch_sequence
                ));
                ok = false;
            }
            v.settler = Some(b.signer.to_hex());
            v.batch_signature_ok = ok;
            b.body.merkle_root
        }
        None => {
            v.problems.push("the node gave no signed settlement batch".into());
            proof.merkle_root
        }
    };
    v.proof_ok = verify_lease_proof(proof, &root);
    if !v.proof_ok {
        v.problems.push("the Merkle proof does not lead to the batch root".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::{merkle, CloseReason, Coin, Keypair};

    fn batch(lease: Id) -> SettlementBatch {
        let mut records = vec![
            SettlementRecord::LeaseOpened {
                lease_id: lease,
                order_id: Id::domain("o", &[]),
                tenant_address: "t".into(),
                provider_address: "p".into(),
                price_per_hour: Coin::new("uakt", 3600),
                started_at_ms: 0,
            },
            SettlementRecord::Accrual {
                lease_id: lease,
                tenant_address: "t".into(),
                provider_address: "p".into(),
                denom: "uakt".into(),
                amount: 10,
                from_ms: 0,
                to_ms: 10_000,
            },
            SettlementRecord::LeaseClosed {
                lease_id: lease,
                closed_at_ms: 10_000,
                reason: CloseReason::TenantClosed,
            },
            SettlementRecord::Payment {
                tenant_address: "t".into(),
                provider_address: "p".into(),
                denom: "uakt".into(),
                amount: 10,
            },
            SettlementRecord::LeaseClosed {
                lease_id: Id::domain("other", &[]),
                closed_at_ms: 1,
                reason: CloseReason::TermEnded,
            },
        ];
        records.sort();
        let merkle_root = merkle::root(&records);
        SettlementBatch {
            version: leasemesh_protocol::v(),
            settler: Keypair::from_seed_label("settler").public(),
            sequence: 1,
            prev_batch: Hash::ZERO,
            created_at_ms: 1,
            records,
            merkle_root,
        }
    }

    fn prove(b: &SettlementBatch, lease: Id) -> LeaseProof {
        let leaves: Vec<Hash> = b.records.iter().map(merkle::leaf_hash).collect();
        let records = b
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                record_lease(r) == Some(&lease) || matches!(r, SettlementRecord::Payment { .. })
            })
            .map(|(i, r)| ProvenRecord {
                record: r.clone(),
                proof: merkle::prove(&leaves, i).unwrap(),
            })
            .collect();
        LeaseProof {
            lease_id: lease,
            batch_sequence: b.sequence,
            merkle_root: b.merkle_root,
            records,
        }
    }

    #[test]
    fn a_true_proof_verifies_and_tampering_fails() {
        let lease = Id::domain("lease", &[]);
        let key = Keypair::from_seed_label("settler");
        let b = batch(lease);
        let signed = Signed::sign(b.clone(), &key);
        let p = prove(&b, lease);
        let mut v = Verification::default();
        check(&p, Some(&signed), &mut v);
        assert!(v.proof_ok && v.batch_signature_ok, "{v:?}");

        // A different amount in a record breaks its proof.
        let mut bad = p.clone();
        if let Some(SettlementRecord::Accrual { amount, .. }) = bad
            .records
            .iter_mut()
            .map(|r| &mut r.record)
            .find(|r| matches!(r, SettlementRecord::Accrual { .. }))
        {
            *amount += 1;
        }
        assert!(!verify_lease_proof(&bad, &b.merkle_root));

        // A batch signed by someone else's signature fails.
        let mut forged = signed.clone();
        forged.sig = Keypair::from_seed_label("mallory").sign(&signed.signing_message());
        let mut v = Verification::default();
        check(&p, Some(&forged), &mut v);
        assert!(!v.batch_signature_ok);

        // A proof that names another lease fails.
        let mut other = p.clone();
        other.lease_id = Id::domain("other", &[]);
        assert!(!verify_lease_proof(&other, &b.merkle_root));
    }
}
