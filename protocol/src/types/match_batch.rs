//! [`MatchBatch`]: the epoch leader's signed awards, and the [`Award`]s and [`Assignment`]s in it.

use serde::{Deserialize, Serialize};

use super::{Coin, MAX_MATCH_BATCH_SIZE};
use crate::codec::Signable;
use crate::crypto::{Hash, Id, PublicKey};
use crate::validate::{coin, non_empty, sorted_unique, ValidationError};

/// Where the replicas of one group of an award run: a host, how many replicas, which GPUs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Assignment {
    /// Index into the order's `groups`.
    pub group: u32,
    pub host: String,
    pub replicas: u32,
    /// Model of every GPU of these replicas; `None` without GPUs.
    pub gpu_model: Option<String>,
    pub gpus_per_replica: u32,
}

/// What was sold: an order to a provider, at a price, on named hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    pub order_id: Id,
    pub bid_id: Id,
    pub provider: PublicKey,
    /// What the tenant pays per hour (the clearing price).
    pub price_per_hour: Coin,
    /// Sorted; every replica of every group appears exactly once.
    pub assignments: Vec<Assignment>,
}

impl Award {
    /// The id of the lease this award creates.
    pub fn lease_id(&self) -> Id {
        lease_id(&self.order_id, &self.bid_id)
    }
}

/// The id of the lease made by awarding `bid_id` on `order_id`.
pub fn lease_id(order_id: &Id, bid_id: &Id) -> Id {
    Hash::domain("leasemesh/v1/lease", &[order_id.as_bytes(), bid_id.as_bytes()])
}

/// The epoch leader's signed result: the inputs it consumed and the awards it computed. Every
/// node re-runs the matcher on the same inputs and accepts the batch only if it gets the same
/// `outcome_digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchBatch {
    pub version: u8,
    pub epoch: u64,
    pub settler: PublicKey,
    /// Id of the previous accepted batch, [`Hash::ZERO`] for the first.
    pub prev_batch: Id,
    pub created_at_ms: u64,
    /// Sorted ids of every order, bid and provider info the matcher consumed.
    pub order_ids: Vec<Id>,
    pub bid_ids: Vec<Id>,
    pub provider_info_ids: Vec<Id>,
    /// Sorted by order id.
    pub awards: Vec<Award>,
    /// Digest of the matcher's canonical outcome.
    pub outcome_digest: Hash,
}

impl Signable for MatchBatch {
    const DOMAIN: &'static str = "leasemesh/v1/match-batch";
    const MAX_SIZE: usize = MAX_MATCH_BATCH_SIZE;
    const NAME: &'static str = "match batch";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.settler)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        sorted_unique("order_ids", self.order_ids.iter())?;
        sorted_unique("bid_ids", self.bid_ids.iter())?;
        sorted_unique("provider_info_ids", self.provider_info_ids.iter())?;
        sorted_unique("awards", self.awards.iter().map(|a| a.order_id))?;
        for a in &self.awards {
            if self.order_ids.binary_search(&a.order_id).is_err()
                || self.bid_ids.binary_search(&a.bid_id).is_err()
            {
                return Err(ValidationError::Inconsistent {
                    field: "awards".into(),
                    why: format!("award for order {} names an input not in the batch", a.order_id),
                });
            }
            coin("awards.price_per_hour", &a.price_per_hour)?;
            non_empty("awards.assignments", &a.assignments)?;
            sorted_unique("awards.assignments", a.assignments.iter())?;
        }
        Ok(())
    }
}
