//! The batch builder and lease inclusion proofs. Pure: no clock, no store.
//!
//! A batch holds, for every lease that changed in the period, its `LeaseOpened` (first batch
//! only), `Accrual` and `LeaseClosed` records, plus one netted `Payment` per
//! (tenant_address, provider_address, denom): the sum of that triple's accruals. Records are in
//! canonical order (sorted by their derived `Ord`, no duplicates) and the Merkle root is
//! [`leasemesh_protocol::merkle::root`] over them, so the batch passes
//! `SettlementBatch::validate` and is ready for [`Signed::sign`](leasemesh_protocol::Signed::sign).
//!
//! A [`LeaseProof`] carries every record of one lease in a batch (and the payment that covers
//! it) with a Merkle proof each; a light client checks it against the anchored root with
//! [`verify_lease_proof`] and nothing else (both from [`leasemesh_protocol::proof`]).

use std::collections::{BTreeMap, BTreeSet};

use leasemesh_protocol::merkle::{self, Proof};
use leasemesh_protocol::{
    Hash, Id, PublicKey, SettlementBatch, SettlementRecord, PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

/// The proof format and its checker live in the protocol crate, so the light client and the
/// settler share one checker; re-exported here for the settlement crate's users.
pub use leasemesh_protocol::proof::{record_lease, verify_lease_proof, LeaseProof, ProvenRecord};

use crate::accrual::{AccrualCursor, LeaseAccrual};

/// The batch fields that do not come from the accruals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub settler: PublicKey,
    /// 1 for the first batch, then +1 per anchored batch.
    pub sequence: u64,
    /// Id of the previous batch, [`Hash::ZERO`] for the first.
    pub prev_batch: Id,
    pub created_at_ms: u64,
}

/// Why a batch could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    #[error("lease {0} appears twice in the batch input: pass one accrual per lease")]
    DuplicateLease(Id),
    #[error("netted payment {tenant} -> {provider} in {denom} overflows 128 bits")]
    Overflow { tenant: String, provider: String, denom: String },
}

/// The key payments are netted under.
pub type PaymentKey = (String, String, String);

/// Sums accrual amounts per (tenant_address, provider_address, denom). Zero sums are dropped.
pub fn net_payments(accruals: &[LeaseAccrual]) -> Result<BTreeMap<PaymentKey, u128>, BatchError> {
    let mut net: BTreeMap<PaymentKey, u128> = BTreeMap::new();
    for a in accruals {
        let t = &a.terms;
        let key =
            (t.tenant_address.clone(), t.provider_address.clone(), t.price_per_hour.denom.clone());
        let slot = net.entry(key).or_insert(0);
        *slot = slot.checked_add(a.amount).ok_or_else(|| BatchError::Overflow {
            tenant: t.tenant_address.clone(),
            provider: t.provider_address.clone(),
            denom: t.price_per_hour.denom.clone(),
        })?;
    }
    net.retain(|_, v| *v > 0);
    Ok(net)
}

/// Builds the unsigned batch body from one accrual per lease.
pub fn build_batch(
    header: &BatchHeader,
    accruals: &[LeaseAccrual],
) -> Result<SettlementBatch, BatchError> {
    let mut seen = BTreeSet::new();
    for a in accruals {
        if !seen.insert(a.terms.lease_id) {
            return Err(BatchError::DuplicateLease(a.terms.lease_id));
        }
    }
    let mut records: Vec<SettlementRecord> =
        accruals.iter().flat_map(LeaseAccrual::records).collect();
    for ((tenant_address, provider_address, denom), amount) in net_payments(accruals)? {
        records.push(SettlementRecord::Payment { tenant_address, provider_address, denom, amount });
    }
    records.sort();
    // One accrual per lease and one payment per triple already make records unique; dedup
    // keeps the invariant even for an accrual whose records coincide (none today).
    records.dedup();
    Ok(SettlementBatch {
        version: PROTOCOL_VERSION,
        settler: header.settler,
        sequence: header.sequence,
        prev_batch: header.prev_batch,
        created_at_ms: header.created_at_ms,
        merkle_root: merkle::root(&records),
        records,
    })
}

/// The netted payments of a batch, in record order.
pub fn payments(batch: &SettlementBatch) -> Vec<(PaymentKey, u128)> {
    batch
        .records
        .iter()
        .filter_map(|r| match r {
            SettlementRecord::Payment { tenant_address, provider_address, denom, amount } => {
                Some(((tenant_address.clone(), provider_address.clone(), denom.clone()), *amount))
            }
            _ => None,
        })
        .collect()
}

/// Advances per-lease cursors over one batch's records, so a settler that restarts can rebuild
/// what every lease was already charged from its anchored batches alone (feed them in sequence
/// order). Leases first seen in `batch` get a cursor from their `LeaseOpened` record.
pub fn advance_cursors(cursors: &mut BTreeMap<Id, AccrualCursor>, batch: &SettlementBatch) {
    // Records are sorted by kind first: every LeaseOpened comes before any Accrual or
    // LeaseClosed of the batch.
    for r in &batch.records {
        match r {
            SettlementRecord::LeaseOpened { lease_id, started_at_ms, .. } => {
                cursors.entry(*lease_id).or_insert(AccrualCursor {
                    started_at_ms: *started_at_ms,
                    accrued_to_ms: *started_at_ms,
                    accrued_amount: 0,
                    closed: false,
                });
            }
            SettlementRecord::Accrual { lease_id, amount, to_ms, .. } => {
                if let Some(c) = cursors.get_mut(lease_id) {
                    c.accrued_to_ms = c.accrued_to_ms.max(*to_ms);
                    c.accrued_amount = c.accrued_amount.saturating_add(*amount);
                }
            }
            SettlementRecord::LeaseClosed { lease_id, .. } => {
                if let Some(c) = cursors.get_mut(lease_id) {
                    c.closed = true;
                }
            }
            SettlementRecord::Payment { .. } => {}
        }
    }
}

/// Builds the proof for `lease_id` in `batch`, or `None` if the batch has no record of it.
/// To prove many leases of one batch, build a [`BatchProver`] once.
pub fn prove_lease(batch: &SettlementBatch, lease_id: &Id) -> Option<LeaseProof> {
    BatchProver::new(batch).prove(lease_id)
}

/// A batch's Merkle tree kept in memory, to prove many leases without rehashing the batch:
/// O(records) to build, O(log records) per proved record.
#[derive(Debug)]
pub struct BatchProver<'a> {
    batch: &'a SettlementBatch,
    /// Level 0 is the leaves; the last level is the root.
    levels: Vec<Vec<Hash>>,
    by_lease: BTreeMap<Id, Vec<usize>>,
    payment_at: BTreeMap<(&'a str, &'a str, &'a str), usize>,
}

impl<'a> BatchProver<'a> {
    pub fn new(batch: &'a SettlementBatch) -> BatchProver<'a> {
        let mut by_lease: BTreeMap<Id, Vec<usize>> = BTreeMap::new();
        let mut payment_at = BTreeMap::new();
        for (i, r) in batch.records.iter().enumerate() {
            match r {
                SettlementRecord::Payment { tenant_address, provider_address, denom, .. } => {
                    payment_at.insert(
                        (tenant_address.as_str(), provider_address.as_str(), denom.as_str()),
                        i,
                    );
                }
                other => {
                    if let Some(l) = record_lease(other) {
                        by_lease.entry(*l).or_default().push(i);
                    }
                }
            }
        }
        let mut levels = vec![batch.records.iter().map(merkle::leaf_hash).collect::<Vec<_>>()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let prev = levels.last().map(Vec::as_slice).unwrap_or_default();
            // The same pairing as `merkle::root`: an odd node at the end is carried up as is.
            // A two-leaf root is exactly the inner-node hash of the pair.
            let next = prev
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => merkle::root_of_leaves(vec![*l, *r]),
                    [single] => *single,
                    _ => Hash::ZERO,
                })
                .collect();
            levels.push(next);
        }
        BatchProver { batch, levels, by_lease, payment_at }
    }

    /// The root of the records as they are (equal to the batch's `merkle_root` for a valid batch).
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(r) => *r,
            None => merkle::root_of_leaves(Vec::new()),
        }
    }

    fn prove_index(&self, index: usize) -> Option<Proof> {
        let leaves = self.levels.first()?.len();
        if index >= leaves {
            return None;
        }
        let mut siblings = Vec::new();
        let mut idx = index;
        for level in &self.levels[..self.levels.len().saturating_sub(1)] {
            if let Some(s) = level.get(idx ^ 1) {
                siblings.push(*s);
            }
            idx /= 2;
        }
        Some(Proof { index: index as u64, leaves: leaves as u64, siblings })
    }

    /// The proof for `lease_id`: its records, then the payment of its (tenant, provider, denom)
    /// if it accrued anything in this batch.
    pub fn prove(&self, lease_id: &Id) -> Option<LeaseProof> {
        let wanted = self.by_lease.get(lease_id)?;
        let records = &self.batch.records;
        let payment = wanted.iter().find_map(|&i| match records.get(i) {
            Some(SettlementRecord::Accrual {
                tenant_address,
                provider_address,
                denom,
                amount,
                ..
            }) if *amount > 0 => self
                .payment_at
                .get(&(tenant_address.as_str(), provider_address.as_str(), denom.as_str()))
                .copied(),
            _ => None,
        });
        let proven = wanted
            .iter()
            .copied()
            .chain(payment)
            .map(|i| {
                let proof = self.prove_index(i)?;
                Some(ProvenRecord { record: records.get(i)?.clone(), proof })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(LeaseProof {
            lease_id: *lease_id,
            batch_sequence: self.batch.sequence,
            merkle_root: self.batch.merkle_root,
            records: proven,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accrual::{LeaseEnd, LeaseTerms};
    use leasemesh_protocol::{samples, CloseReason, Coin, Signable, Signed};
    use proptest::prelude::*;

    fn accrual(lease: u32, tenant: u32, provider: u32, denom: &str, amount: u128) -> LeaseAccrual {
        let lease_id = Hash::domain("test/lease", &[&lease.to_be_bytes()]);
        LeaseAccrual {
            terms: LeaseTerms {
                lease_id,
                order_id: Hash::domain("test/order", &[&lease.to_be_bytes()]),
                tenant_address: format!("tenant{tenant}"),
                provider_address: format!("provider{provider}"),
                price_per_hour: Coin::new(denom, 1_000),
                lease_term_ms: 3_600_000,
                grace_period_ms: 60_000,
            },
            opened_at_ms: (lease % 2 == 0).then_some(1_000),
            from_ms: 1_000,
            to_ms: 2_000 + u64::from(lease),
            amount,
            closed: (lease % 3 == 0)
                .then_some(LeaseEnd { at_ms: 5_000, reason: CloseReason::TenantClosed }),
            cursor: AccrualCursor {
                started_at_ms: 1_000,
                accrued_to_ms: 2_000,
                accrued_amount: amount,
                closed: lease % 3 == 0,
            },
        }
    }

    fn header() -> BatchHeader {
        BatchHeader {
            settler: samples::settler_key().public(),
            sequence: 1,
            prev_batch: Hash::ZERO,
            created_at_ms: 10_000,
        }
    }

    #[test]
    fn builds_a_valid_signable_batch_with_one_payment_per_triple() {
        let accruals = vec![
            accrual(1, 1, 1, "uakt", 100),
            accrual(2, 1, 1, "uakt", 50),
            accrual(3, 1, 1, "inj", 7),
            accrual(4, 2, 1, "uakt", 0),
            accrual(5, 1, 2, "uakt", 1),
        ];
        let batch = build_batch(&header(), &accruals).unwrap();
        batch.validate().unwrap();
        let signed = Signed::sign(batch.clone(), &samples::settler_key());
        Signed::<SettlementBatch>::decode_verified(&signed.encode()).unwrap();
        let pays = payments(&batch);
        assert_eq!(
            pays,
            vec![
                (("tenant1".into(), "provider1".into(), "inj".into()), 7),
                (("tenant1".into(), "provider1".into(), "uakt".into()), 150),
                (("tenant1".into(), "provider2".into(), "uakt".into()), 1),
            ]
        );
        // Payments come last, after every lease record.
        assert!(matches!(batch.records.last(), Some(SettlementRecord::Payment { .. })));
        assert_eq!(
            build_batch(&header(), &[accrual(1, 1, 1, "uakt", 1), accrual(1, 2, 2, "uakt", 1)]),
            Err(BatchError::DuplicateLease(accrual(1, 1, 1, "uakt", 1).terms.lease_id))
        );
    }

    #[test]
    fn proof_round_trips_through_json_and_names_the_payment() {
        let accruals = vec![accrual(1, 1, 1, "uakt", 100), accrual(2, 1, 1, "uakt", 50)];
        let batch = build_batch(&header(), &accruals).unwrap();
        let lease = accruals[0].terms.lease_id;
        let proof = prove_lease(&batch, &lease).unwrap();
        let json = serde_json::to_string(&proof).unwrap();
        assert!(json.contains(&lease.to_hex()) && json.contains("\"150\""), "{json}");
        let back: LeaseProof = serde_json::from_str(&json).unwrap();
        assert!(verify_lease_proof(&back, &batch.merkle_root));
        assert!(matches!(back.records.last().unwrap().record, SettlementRecord::Payment { .. }));
        assert!(prove_lease(&batch, &Hash::domain("test/lease", &[b"none"])).is_none());
        // Not valid against another root, nor with records of another lease mixed in.
        assert!(!verify_lease_proof(&back, &Hash::ZERO));
        let other = prove_lease(&batch, &accruals[1].terms.lease_id).unwrap();
        let mut mixed = back.clone();
        mixed.records.push(other.records[0].clone());
        assert!(!verify_lease_proof(&mixed, &batch.merkle_root));
        // A payment for another triple is refused.
        let mut payment_only = back.clone();
        payment_only.records.retain(|r| matches!(r.record, SettlementRecord::Payment { .. }));
        assert!(!verify_lease_proof(&payment_only, &batch.merkle_root));
    }

    fn arb_accruals() -> impl Strategy<Value = Vec<LeaseAccrual>> {
        proptest::collection::vec(
            (0u32..5, 0u32..4, prop_oneof!["uakt", "inj"], 0u128..1_000_000_000_000),
            1..60,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (t, p, d, a))| accrual(i as u32, t, p, &d, a))
                .collect()
        })
    }

    proptest! {
        /// Netting keeps every (tenant, provider, denom) total and makes one payment per triple.
        #[test]
        fn netting_preserves_totals(accruals in arb_accruals()) {
            let batch = build_batch(&header(), &accruals).unwrap();
            let mut expected: BTreeMap<PaymentKey, u128> = BTreeMap::new();
            for a in &accruals {
                let k = (a.terms.tenant_address.clone(), a.terms.provider_address.clone(),
                    a.terms.price_per_hour.denom.clone());
                *expected.entry(k).or_default() += a.amount;
            }
            expected.retain(|_, v| *v > 0);
            let got: BTreeMap<PaymentKey, u128> = payments(&batch).into_iter().collect();
            prop_assert_eq!(got.len(), payments(&batch).len());
            prop_assert_eq!(got, expected);
            // Accrual records sum to the same total as payments.
            let accrued: u128 = batch.records.iter().map(|r| match r {
                SettlementRecord::Accrual { amount, .. } => *amount, _ => 0 }).sum();
            let paid: u128 = payments(&batch).iter().map(|(_, a)| a).sum();
            prop_assert_eq!(accrued, paid);
        }

        /// Every lease's proof verifies; changing any record of it makes it fail.
        #[test]
        fn proofs_verify_and_tampering_fails(accruals in arb_accruals(), pick in any::<usize>()) {
            let batch = build_batch(&header(), &accruals).unwrap();
            // The prover's tree is the protocol's tree.
            let prover = BatchProver::new(&batch);
            prop_assert_eq!(prover.root(), batch.merkle_root);
            let leaves: Vec<Hash> = batch.records.iter().map(merkle::leaf_hash).collect();
            for i in 0..leaves.len() {
                prop_assert_eq!(prover.prove_index(i), merkle::prove(&leaves, i));
            }
            for a in &accruals {
                let proof = prove_lease(&batch, &a.terms.lease_id).unwrap();
                prop_assert!(verify_lease_proof(&proof, &batch.merkle_root));
                let mut bad = proof.clone();
                let i = pick % bad.records.len();
                match &mut bad.records[i].record {
                    SettlementRecord::LeaseOpened { started_at_ms, .. } => *started_at_ms += 1,
                    SettlementRecord::Accrual { amount, .. } => *amount += 1,
                    SettlementRecord::LeaseClosed { closed_at_ms, .. } => *closed_at_ms -= 1,
                    SettlementRecord::Payment { amount, .. } => *amount -= 1,
                }
                prop_assert!(!verify_lease_proof(&bad, &batch.merkle_root));
            }
        }
    }
}
