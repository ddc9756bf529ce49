//! `leasemesh verify-lease`: checks, on the tenant's machine, that a lease is in a settlement
//! batch signed by a settler and anchored. The Merkle proof is recomputed here from the records'
//! canonical bytes; the batch's signature and root are checked here; only the anchor's
//! existence is asked of the node (or, for a chain, of the chain).
//!
//! The proof format and its checker are [`leasemesh_protocol::proof`], shared with the settlement
//! crate, so the light client needs nothing but the protocol crate.

use leasemesh_protocol::{Anchor, Hash, Id, SettlementBatch, Signed};
use serde::Serialize;

use crate::anchor::ChainCheck;

/// The proof format and its checker: the protocol crate's, the same the settler builds with.
pub use leasemesh_protocol::proof::{record_lease, verify_lease_proof, LeaseProof, ProvenRecord};

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
    /// For a chain anchor, what the chain itself says of each batch's transactions.
    pub chain: Vec<ChainCheck>,
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
    use leasemesh_protocol::{merkle, samples, Keypair, SettlementRecord};

    /// The sample batch holds one lease and its payment: prove all of it.
    fn proof_of(b: &SettlementBatch) -> LeaseProof {
        let leaves: Vec<Hash> = b.records.iter().map(merkle::leaf_hash).collect();
        LeaseProof {
            lease_id: b.records.iter().find_map(record_lease).copied().unwrap(),
            batch_sequence: b.sequence,
            merkle_root: b.merkle_root,
            records: (0..leaves.len())
                .map(|i| ProvenRecord {
                    record: b.records[i].clone(),
                    proof: merkle::prove(&leaves, i).unwrap(),
                })
                .collect(),
        }
    }

    #[test]
    fn check_wants_the_settlers_signature_the_root_and_the_sequence() {
        let b = samples::settlement_batch();
        let signed = Signed::sign(b.clone(), &samples::settler_key());
        let p = proof_of(&b);
        let mut v = Verification::default();
        check(&p, Some(&signed), &mut v);
        assert!(v.proof_ok && v.batch_signature_ok && v.problems.is_empty(), "{v:?}");

        // A batch signed by someone else's signature fails.
        let mut forged = signed.clone();
        forged.sig = Keypair::from_seed_label("mallory").sign(&signed.signing_message());
        let mut v = Verification::default();
        check(&p, Some(&forged), &mut v);
        assert!(!v.batch_signature_ok && !v.verified());

        // A proof that names another batch sequence or root fails.
        let mut other_seq = p.clone();
        other_seq.batch_sequence += 1;
        let mut v = Verification::default();
        check(&other_seq, Some(&signed), &mut v);
        assert!(!v.batch_signature_ok);
        let mut tampered = p.clone();
        if let Some(SettlementRecord::Accrual { amount, .. }) = tampered
            .records
            .iter_mut()
            .map(|r| &mut r.record)
            .find(|r| matches!(r, SettlementRecord::Accrual { .. }))
        {
            *amount += 1;
        }
        let mut v = Verification::default();
        check(&tampered, Some(&signed), &mut v);
        assert!(!v.proof_ok && v.batch_signature_ok);

        // No batch at all is a problem, whatever the proof.
        let mut v = Verification::default();
        check(&p, None, &mut v);
        assert!(!v.verified());
    }
}
