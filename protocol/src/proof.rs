//! Lease inclusion proofs: one lease's records in a settlement batch, each with a Merkle proof to
//! the batch root, and the one checker every side uses (the settlement crate builds proofs, the
//! node serves them as JSON at `GET /v1/leases/{id}/proof`, the light client checks them).
//!
//! A [`LeaseProof`] carries every record of one lease in a batch (its `LeaseOpened`, `Accrual`,
//! `LeaseClosed`) and, if it accrued anything, the netted `Payment` of its (tenant, provider,
//! denom). [`verify_lease_proof`] checks it against a root and needs nothing else.
//!
//! [`AnchorMemo`] is the memo each anchoring transaction carries on a Cosmos chain, so that the
//! root a proof verifies against can be read back from the chain.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::crypto::{Hash, Id};
use crate::merkle::Proof;
use crate::types::SettlementRecord;

/// One record and the Merkle proof that it is a leaf under the batch root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenRecord {
    pub record: SettlementRecord,
    pub proof: Proof,
}

/// Everything a light client needs to check that a lease is in an anchored batch: its records
/// (and the payment that carried its accrual) with a Merkle proof each. Serializes to JSON with
/// ids and hashes as hex and amounts as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseProof {
    pub lease_id: Id,
    pub batch_sequence: u64,
    /// The root the proofs lead to; compare it with the anchored root, not just with itself.
    pub merkle_root: Hash,
    pub records: Vec<ProvenRecord>,
}

/// The lease a record belongs to; `None` for payments (netted over many leases).
pub fn record_lease(record: &SettlementRecord) -> Option<&Id> {
    match record {
        SettlementRecord::LeaseOpened { lease_id, .. }
        | SettlementRecord::Accrual { lease_id, .. }
        | SettlementRecord::LeaseClosed { lease_id, .. } => Some(lease_id),
        SettlementRecord::Payment { .. } => None,
    }
}

/// (tenant, provider, denom) of a record that names them; `LeaseClosed` names none.
fn record_triple(record: &SettlementRecord) -> Option<(&str, &str, &str)> {
    match record {
        SettlementRecord::LeaseOpened {
            tenant_address, provider_address, price_per_hour, ..
        } => Some((tenant_address, provider_address, &price_per_hour.denom)),
        SettlementRecord::Accrual { tenant_address, provider_address, denom, .. }
        | SettlementRecord::Payment { tenant_address, provider_address, denom, .. } => {
            Some((tenant_address, provider_address, denom))
        }
        SettlementRecord::LeaseClosed { .. } => None,
    }
}

/// True if every record of the proof is a leaf under `root` (at distinct positions), the proof
/// names `root`, at least one record is about the lease, every non-payment record is about the
/// lease, there is at most one payment, and a payment, if present, is the one for the lease's
/// (tenant, provider, denom).
pub fn verify_lease_proof(proof: &LeaseProof, root: &Hash) -> bool {
    if proof.merkle_root != *root || proof.records.is_empty() {
        return false;
    }
    let mut indices = BTreeSet::new();
    let mut lease_records = 0usize;
    let mut triple = None;
    let mut payment = None;
    for pr in &proof.records {
        if !pr.proof.verify(&pr.record, root) || !indices.insert(pr.proof.index) {
            return false;
        }
        if let SettlementRecord::Payment { .. } = pr.record {
            if payment.replace(record_triple(&pr.record)).is_some() {
                return false;
            }
            continue;
        }
        if record_lease(&pr.record) != Some(&proof.lease_id) {
            return false;
        }
        lease_records += 1;
        if let Some(t) = record_triple(&pr.record) {
            triple = Some(t);
        }
    }
    lease_records > 0
        && match payment {
            None => true,
            Some(p) => triple.is_some() && triple == p,
        }
}

/// What each anchoring transaction of a batch carries as its memo on a Cosmos chain:
/// `lm:v1:<batch sequence>:<chunk>/<chunks>:<merkle root hex>`, chunk counted from 0, root in
/// lower-case hex (at most 117 bytes, under the chain's 256). The settlement crate's Cosmos
/// backend writes it; the light client reads it back from the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorMemo {
    pub batch_sequence: u64,
    pub chunk: u64,
    pub chunks: u64,
    pub merkle_root: Hash,
}

/// The memo prefix: the leasemesh anchor format, version 1.
pub const ANCHOR_MEMO_PREFIX: &str = "lm:v1:";

/// Why a memo is not an anchor memo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoError {
    #[error("memo {0:?} does not start with {ANCHOR_MEMO_PREFIX}")]
    NotAnchor(String),
    #[error("memo {memo:?}: {reason}")]
    Malformed { memo: String, reason: &'static str },
}

impl std::fmt::Display for AnchorMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{ANCHOR_MEMO_PREFIX}{}:{}/{}:{}",
            self.batch_sequence, self.chunk, self.chunks, self.merkle_root
        )
    }
}

impl std::str::FromStr for AnchorMemo {
    type Err = MemoError;

    /// Strict: only the exact bytes [`Display`](std::fmt::Display) writes parse (no leading
    /// zeros, no upper-case hex, nothing after the root), and `chunk < chunks`.
    fn from_str(memo: &str) -> Result<AnchorMemo, MemoError> {
        let bad = |reason| MemoError::Malformed { memo: memo.to_owned(), reason };
        let rest = memo
            .strip_prefix(ANCHOR_MEMO_PREFIX)
            .ok_or_else(|| MemoError::NotAnchor(memo.into()))?;
        let mut parts = rest.splitn(3, ':');
        let (Some(seq), Some(chunk_of), Some(root)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <seq>:<chunk>/<chunks>:<root>"));
        };
        let (chunk, chunks) = chunk_of.split_once('/').ok_or_else(|| bad("no <chunk>/<chunks>"))?;
        let number = |s: &str, what| s.parse::<u64>().map_err(|_| bad(what));
        let parsed = AnchorMemo {
            batch_sequence: number(seq, "the batch sequence is not a number")?,
            chunk: number(chunk, "the chunk is not a number")?,
            chunks: number(chunks, "the chunk count is not a number")?,
            merkle_root: Hash::from_hex(root).map_err(|_| bad("the root is not 64 hex digits"))?,
        };
        if parsed.chunk >= parsed.chunks {
            return Err(bad("the chunk is not below the chunk count"));
        }
        if parsed.to_string() != memo {
            return Err(bad("not in canonical form"));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::{merkle, CloseReason, Coin};

    fn records(lease: Id) -> Vec<SettlementRecord> {
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
            SettlementRecord::Payment {
                tenant_address: "t2".into(),
                provider_address: "p".into(),
                denom: "uakt".into(),
                amount: 4,
            },
            SettlementRecord::LeaseClosed {
                lease_id: Id::domain("other", &[]),
                closed_at_ms: 1,
                reason: CloseReason::TermEnded,
            },
        ];
        records.sort();
        records
    }

    /// Proves the records at the positions `pick` selects.
    fn prove(
        records: &[SettlementRecord],
        lease: Id,
        pick: impl Fn(&SettlementRecord) -> bool,
    ) -> LeaseProof {
        let leaves: Vec<Hash> = records.iter().map(merkle::leaf_hash).collect();
        LeaseProof {
            lease_id: lease,
            batch_sequence: 1,
            merkle_root: merkle::root(records),
            records: records
                .iter()
                .enumerate()
                .filter(|(_, r)| pick(r))
                .map(|(i, r)| ProvenRecord {
                    record: r.clone(),
                    proof: merkle::prove(&leaves, i).unwrap(),
                })
                .collect(),
        }
    }

    fn is_own_payment(r: &SettlementRecord) -> bool {
        matches!(r, SettlementRecord::Payment { tenant_address, .. } if tenant_address == "t")
    }

    #[test]
    fn a_true_proof_verifies_and_every_kind_of_tampering_fails() {
        let lease = Id::domain("lease", &[]);
        let recs = records(lease);
        let root = merkle::root(&recs);
        let p = prove(&recs, lease, |r| record_lease(r) == Some(&lease) || is_own_payment(r));
        assert_eq!(p.records.len(), 4);
        assert!(verify_lease_proof(&p, &root));

        // Another root, or a proof naming another root.
        assert!(!verify_lease_proof(&p, &Hash::ZERO));
        // A changed amount breaks its Merkle proof.
        let mut bad = p.clone();
        for r in &mut bad.records {
            if let SettlementRecord::Accrual { amount, .. } = &mut r.record {
                *amount += 1;
            }
        }
        assert!(!verify_lease_proof(&bad, &root));
        // The proof names another lease.
        let mut other = p.clone();
        other.lease_id = Id::domain("other", &[]);
        assert!(!verify_lease_proof(&other, &root));
        // Another tenant's payment instead of the lease's own.
        let wrong_pay = prove(&recs, lease, |r| {
            record_lease(r) == Some(&lease)
                || matches!(r, SettlementRecord::Payment { tenant_address, .. } if tenant_address == "t2")
        });
        assert!(!verify_lease_proof(&wrong_pay, &root));
        // Two payments.
        let two = prove(&recs, lease, |r| {
            record_lease(r) == Some(&lease) || matches!(r, SettlementRecord::Payment { .. })
        });
        assert!(!verify_lease_proof(&two, &root));
        // A payment alone proves no lease.
        let alone = prove(&recs, lease, is_own_payment);
        assert!(!verify_lease_proof(&alone, &root));
        // The same record twice.
        let mut dup = p.clone();
        dup.records.push(dup.records[0].clone());
        assert!(!verify_lease_proof(&dup, &root));
        // Nothing at all.
        let mut empty = p.clone();
        empty.records.clear();
        assert!(!verify_lease_proof(&empty, &root));
    }

    #[test]
    fn anchor_memos_round_trip_and_anything_else_is_refused() {
        let root = Hash::domain("root", &[]);
        let m = AnchorMemo { batch_sequence: 3, chunk: 0, chunks: 2, merkle_root: root };
        let text = m.to_string();
        // The Cosmos backend's format, pinned literally on both sides.
        assert_eq!(text, format!("lm:v1:3:0/2:{}", root.to_hex()));
        assert_eq!(text.parse::<AnchorMemo>(), Ok(m));
        let max = AnchorMemo { batch_sequence: u64::MAX, chunk: 9_999, chunks: 10_000, ..m };
        assert!(max.to_string().len() <= 256);
        assert_eq!(max.to_string().parse::<AnchorMemo>(), Ok(max));

        let hex = root.to_hex();
        for bad in [
            String::new(),
            "hello".to_owned(),
            format!("lm:v2:3:0/2:{hex}"),
            format!("lm:v1:3:0/2:{}", hex.to_uppercase()),
            format!("lm:v1:03:0/2:{hex}"),
            format!("lm:v1:3:2/2:{hex}"),
            format!("lm:v1:3:0/0:{hex}"),
            format!("lm:v1:3:0-2:{hex}"),
            format!("lm:v1:3:0/2:{hex}:"),
            format!("lm:v1:3:0/2:{}", &hex[..62]),
            format!("lm:v1:-3:0/2:{hex}"),
            "lm:v1:3:0/2".to_owned(),
            format!("lm:v1:99999999999999999999:0/2:{hex}"),
        ] {
            assert!(bad.parse::<AnchorMemo>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_json_form_is_stable() {
        let lease = Id::domain("lease", &[]);
        let recs = records(lease);
        let p = prove(
            &recs,
            lease,
            |r| matches!(r, SettlementRecord::LeaseClosed { lease_id, .. } if *lease_id == lease),
        );
        let json = serde_json::to_value(&p).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["batch_sequence", "lease_id", "merkle_root", "records"]);
        assert_eq!(json["lease_id"], lease.to_hex());
        let rec = &json["records"][0];
        assert!(rec["record"].is_object() && rec["proof"]["siblings"].is_array(), "{json}");
        let back: LeaseProof = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
