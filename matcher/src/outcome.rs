//! What the matcher produces, its digest, and the check of a leader's match batch.

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::{Award, Hash, Id, MatchBatch};
use serde::{Deserialize, Serialize};

use crate::input::EpochInput;

/// Version of the matching rule. It is part of the digest: changing the rule changes it.
pub const MATCHER_VERSION: u8 = 1;

/// Domain tag of the outcome digest.
pub const OUTCOME_DOMAIN: &str = "leasemesh/v1/match-outcome";

/// Why an order got no award. When several bids failed at different steps, the reason is the
/// furthest step any bid reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmatchedReason {
    /// No bid counted (none arrived, or all were excluded).
    NoBids,
    /// Every bid asked more than the order's maximum price.
    OverPrice,
    /// Bids within the price came only from providers lacking a placement attribute or the
    /// minimum uptime.
    Placement,
    /// Eligible providers had no room: some replica (or GPU) did not fit on their free capacity,
    /// or earlier awards of the epoch took it.
    Capacity,
}

/// An order without an award.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unmatched {
    pub order_id: Id,
    pub reason: UnmatchedReason,
}

/// Which input list an excluded entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Order,
    Bid,
    ProviderInfo,
}

/// Why an input took no part in matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExcludedReason {
    /// A second copy of an id already in the list (one entry per extra copy).
    Duplicate,
    /// An order that cannot be awarded as written (no groups, a group of zero replicas, a GPU
    /// request of zero units).
    InvalidOrder,
    /// A bid for an order that is not in the epoch (or was excluded).
    UnknownOrder,
    /// A bid from a provider without a capacity snapshot in the epoch.
    NoProviderSnapshot,
    /// A bid in another denom than its order's maximum price.
    DenomMismatch,
    /// A provider snapshot replaced by a newer one (higher sequence; equal sequences keep the
    /// higher id).
    Superseded,
}

/// An input the matcher refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Excluded {
    pub kind: InputKind,
    pub id: Id,
    pub reason: ExcludedReason,
}

/// The result of one epoch. Every list is sorted; `digest` commits to everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochOutcome {
    /// Sorted, distinct ids of every input (what a `MatchBatch` lists).
    pub order_ids: Vec<Id>,
    pub bid_ids: Vec<Id>,
    pub provider_info_ids: Vec<Id>,
    /// [`InputIds::digest`](crate::InputIds::digest) of the three lists.
    pub inputs_digest: Hash,
    /// Sorted by order id.
    pub awards: Vec<Award>,
    /// Sorted by order id; every kept order without an award.
    pub unmatched: Vec<Unmatched>,
    /// Sorted by (kind, id, reason).
    pub excluded: Vec<Excluded>,
    /// `Hash::domain("leasemesh/v1/match-outcome", postcard(version, inputs_digest, awards,
    /// unmatched, excluded))`.
    pub digest: Hash,
}

#[derive(Serialize)]
struct DigestBody<'a> {
    version: u8,
    inputs_digest: &'a Hash,
    awards: &'a [Award],
    unmatched: &'a [Unmatched],
    excluded: &'a [Excluded],
}

/// A postcard output that feeds a BLAKE3 hasher through a small buffer.
struct HashSink {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

impl HashSink {
    const BUF: usize = 64 * 1024;
}

impl postcard::ser_flavors::Flavor for HashSink {
    type Output = blake3::Hasher;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.buf.len() == Self::BUF {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
        self.buf.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.buf.len() + data.len() > Self::BUF {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
        if data.len() > Self::BUF {
            self.hasher.update(data);
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<blake3::Hasher> {
        self.hasher.update(&self.buf);
        Ok(self.hasher)
    }
}

impl EpochOutcome {
    /// Recomputes the digest from the other fields.
    pub fn compute_digest(&self) -> Hash {
        let body = DigestBody {
            version: MATCHER_VERSION,
            inputs_digest: &self.inputs_digest,
            awards: &self.awards,
            unmatched: &self.unmatched,
            excluded: &self.excluded,
        };
        // Streamed into the hasher: the same bytes as `Hash::domain(OUTCOME_DOMAIN,
        // &[&to_canonical(&body)])` without building megabytes of canonical bytes first.
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[u8::try_from(OUTCOME_DOMAIN.len()).unwrap_or(u8::MAX)]);
        hasher.update(OUTCOME_DOMAIN.as_bytes());
        let sink = HashSink { hasher, buf: Vec::with_capacity(HashSink::BUF) };
        match postcard::serialize_with_flavor(&body, sink) {
            Ok(hasher) => Hash(*hasher.finalize().as_bytes()),
            // Cannot happen for these types; `to_canonical` has its own fallback.
            Err(_) => Hash::domain(OUTCOME_DOMAIN, &[&to_canonical(&body)]),
        }
    }

    /// The award of an order, if it has one.
    pub fn award_for(&self, order_id: &Id) -> Option<&Award> {
        self.awards
            .binary_search_by(|a| a.order_id.cmp(order_id))
            .ok()
            .and_then(|i| self.awards.get(i))
    }

    /// Sum of the awarded prices (one denom per epoch is the common case; callers that mix
    /// denoms should sum per denom themselves).
    pub fn total_price(&self) -> u128 {
        self.awards.iter().fold(0u128, |s, a| s.saturating_add(a.price_per_hour.amount))
    }
}

/// Why a match batch does not match the outcome recomputed from its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MismatchError {
    #[error(
        "the batch's {list} ({batch} ids) differ from the inputs' ({inputs} ids): the leader \
         and this node saw different inputs; fetch the missing objects and retry"
    )]
    Inputs { list: &'static str, batch: usize, inputs: usize },
    #[error(
        "the batch has {batch} awards, the matcher computes {recomputed}; first difference at \
         order {first_difference:?}: reject the batch"
    )]
    Awards { batch: usize, recomputed: usize, first_difference: Option<Id> },
    #[error("the batch's outcome digest is {batch}, the matcher computes {recomputed}: reject the batch")]
    Digest { batch: Hash, recomputed: Hash },
}

/// Re-runs the matcher on `input` and checks that `batch` names the same inputs, the same
/// awards and the same outcome digest.
pub fn verify_batch(batch: &MatchBatch, input: &EpochInput) -> Result<(), MismatchError> {
    let outcome = crate::match_epoch(input);
    for (list, b, r) in [
        ("order_ids", &batch.order_ids, &outcome.order_ids),
        ("bid_ids", &batch.bid_ids, &outcome.bid_ids),
        ("provider_info_ids", &batch.provider_info_ids, &outcome.provider_info_ids),
    ] {
        if b != r {
            return Err(MismatchError::Inputs { list, batch: b.len(), inputs: r.len() });
        }
    }
    if batch.awards != outcome.awards {
        let first_difference = batch
            .awards
            .iter()
            .zip(&outcome.awards)
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.order_id)
            .or_else(|| {
                let n = batch.awards.len().min(outcome.awards.len());
                batch.awards.get(n).or(outcome.awards.get(n)).map(|a| a.order_id)
            });
        return Err(MismatchError::Awards {
            batch: batch.awards.len(),
            recomputed: outcome.awards.len(),
            first_difference,
        });
    }
    if batch.outcome_digest != outcome.digest {
        return Err(MismatchError::Digest {
            batch: batch.outcome_digest,
            recomputed: outcome.digest,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::market::{generate, MarketParams};

    #[test]
    fn the_streamed_digest_is_the_domain_hash_of_the_canonical_bytes() {
        let input = generate(&MarketParams::bench(2_000, 4, 50), 7);
        let out = crate::match_epoch(&input);
        assert!(!out.awards.is_empty() && !out.unmatched.is_empty());
        let body = DigestBody {
            version: MATCHER_VERSION,
            inputs_digest: &out.inputs_digest,
            awards: &out.awards,
            unmatched: &out.unmatched,
            excluded: &out.excluded,
        };
        let bytes = to_canonical(&body);
        assert!(bytes.len() > HashSink::BUF, "the body must span several buffers");
        assert_eq!(out.digest, Hash::domain(OUTCOME_DOMAIN, &[&bytes]));
    }
}
