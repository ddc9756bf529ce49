//! [`SettlementBatch`]: a settler's signed batch of [`SettlementRecord`]s with their Merkle root,
//! and the [`Anchor`] that records where it was anchored.

use serde::{Deserialize, Serialize};

use super::{amount_serde, CloseReason, Coin, MAX_SETTLEMENT_BATCH_SIZE};
use crate::codec::Signable;
use crate::crypto::{Hash, Id, PublicKey};
use crate::validate::{sorted_unique, ValidationError};

/// One line of a settlement batch. Each is a Merkle leaf.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementRecord {
    /// A lease started: who pays whom, at what rate.
    LeaseOpened {
        lease_id: Id,
        order_id: Id,
        tenant_address: String,
        provider_address: String,
        price_per_hour: Coin,
        started_at_ms: u64,
    },
    /// What a lease earned over `[from_ms, to_ms)`.
    Accrual {
        lease_id: Id,
        tenant_address: String,
        provider_address: String,
        denom: String,
        #[serde(with = "amount_serde")]
        amount: u128,
        from_ms: u64,
        to_ms: u64,
    },
    /// A lease ended.
    LeaseClosed { lease_id: Id, closed_at_ms: u64, reason: CloseReason },
    /// The netted transfer from one tenant to one provider in one denom.
    Payment {
        tenant_address: String,
        provider_address: String,
        denom: String,
        #[serde(with = "amount_serde")]
        amount: u128,
    },
}

/// A settler's signed batch of records with their Merkle root. Anchoring puts the root (and the
/// payments) on the settlement backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBatch {
    pub version: u8,
    pub settler: PublicKey,
    pub sequence: u64,
    /// Id of the previous batch, [`Hash::ZERO`] for the first.
    pub prev_batch: Id,
    pub created_at_ms: u64,
    /// In canonical (sorted) order.
    pub records: Vec<SettlementRecord>,
    /// Root of the Merkle tree over the records, see [`crate::merkle`].
    pub merkle_root: Hash,
}

impl Signable for SettlementBatch {
    const DOMAIN: &'static str = "leasemesh/v1/settlement-batch";
    const MAX_SIZE: usize = MAX_SETTLEMENT_BATCH_SIZE;
    const NAME: &'static str = "settlement batch";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.settler)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        sorted_unique("records", self.records.iter())?;
        let root = crate::merkle::root(&self.records);
        if root != self.merkle_root {
            return Err(ValidationError::Inconsistent {
                field: "merkle_root".into(),
                why: format!("the records hash to {root}, not {}", self.merkle_root),
            });
        }
        Ok(())
    }
}

/// Where and when a settlement batch was anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// "local" for the embedded ledger, the chain id otherwise.
    pub chain_id: String,
    /// One transaction per chunk, in chunk order (hex upper case for Cosmos).
    pub tx_hashes: Vec<String>,
    pub height: u64,
}
