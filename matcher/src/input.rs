//! What the matcher consumes for one epoch.

use std::collections::BTreeMap;

use leasemesh_protocol::{Bid, Hash, Id, Order, ProviderInfo, PublicKey, Signed};

/// One epoch's inputs. Each object comes with its id (the id of its signed body: use
/// [`EpochInput::from_signed`] to compute them). The lists may be in any order and may hold
/// duplicates: the matcher sorts and deduplicates them, so a permutation gives the same outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochInput {
    pub orders: Vec<(Id, Order)>,
    pub bids: Vec<(Id, Bid)>,
    /// Capacity snapshots; per provider the one with the highest sequence counts.
    pub providers: Vec<(Id, ProviderInfo)>,
    /// Anchored uptime per provider in basis points; a missing provider counts as 0.
    pub uptime_bps: BTreeMap<PublicKey, u16>,
}

impl EpochInput {
    /// Builds the input from signed objects (already checked and verified by the caller),
    /// computing each id from its body.
    pub fn from_signed(
        orders: &[Signed<Order>],
        bids: &[Signed<Bid>],
        providers: &[Signed<ProviderInfo>],
        uptime_bps: BTreeMap<PublicKey, u16>,
    ) -> EpochInput {
        EpochInput {
            orders: orders.iter().map(|s| (s.id(), s.body.clone())).collect(),
            bids: bids.iter().map(|s| (s.id(), s.body.clone())).collect(),
            providers: providers.iter().map(|s| (s.id(), s.body.clone())).collect(),
            uptime_bps,
        }
    }

    /// The sorted, distinct ids of every input, as a [`MatchBatch`](leasemesh_protocol::MatchBatch)
    /// lists them. Excluded inputs are included: a verifier needs them to recompute the
    /// same exclusions.
    pub fn input_ids(&self) -> InputIds {
        InputIds {
            order_ids: sorted_ids(self.orders.iter().map(|(id, _)| *id)),
            bid_ids: sorted_ids(self.bids.iter().map(|(id, _)| *id)),
            provider_info_ids: sorted_ids(self.providers.iter().map(|(id, _)| *id)),
        }
    }
}

fn sorted_ids(ids: impl Iterator<Item = Id>) -> Vec<Id> {
    let mut v: Vec<Id> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The sorted, distinct input ids of an epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputIds {
    pub order_ids: Vec<Id>,
    pub bid_ids: Vec<Id>,
    pub provider_info_ids: Vec<Id>,
}

impl InputIds {
    /// Commits to the three lists (with their lengths, so no id can move from one list to the
    /// next). The matcher uses it as the tie-break salt and puts it in the outcome digest.
    pub fn digest(&self) -> Hash {
        // Streamed through a small buffer: the same bytes as `Hash::domain` over the whole
        // concatenation (length-prefixed domain tag, then the data), without a copy of a
        // million ids.
        const TAG: &str = "leasemesh/v1/match-inputs";
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[TAG.len() as u8]);
        hasher.update(TAG.as_bytes());
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        for list in [&self.order_ids, &self.bid_ids, &self.provider_info_ids] {
            buf.extend_from_slice(&(list.len() as u64).to_le_bytes());
            for id in list.iter() {
                if buf.len() + 32 > buf.capacity() {
                    hasher.update(&buf);
                    buf.clear();
                }
                buf.extend_from_slice(id.as_bytes());
            }
        }
        hasher.update(&buf);
        Hash(*hasher.finalize().as_bytes())
    }
}
