//! The objects of the marketplace: orders, bids, provider infos, heartbeats, match batches,
//! lease events and settlement batches. Every field is an integer, a string or a hash: no floats.
//!
//! Time is milliseconds since the Unix epoch (`*_ms`), resources are millicores and bytes,
//! amounts are `u128` in the denom's smallest unit.
//!
//! One module per message; everything is re-exported here, so `types::Order` and the crate's
//! root re-exports name the same items as before the split.

pub mod amount_serde;
mod attribute;
mod bid;
mod coin;
mod heartbeat;
mod lease;
mod limits;
mod match_batch;
mod order;
mod provider;
mod settlement;
mod spend_grant;

use crate::codec::PROTOCOL_VERSION;

pub use crate::tee::TeeKind;
use attribute::check_attributes;
pub use attribute::Attribute;
pub use bid::Bid;
pub use coin::Coin;
pub use heartbeat::Heartbeat;
pub use lease::{CloseReason, LeaseEvent, LeaseEventKind};
pub use limits::*;
pub use match_batch::{lease_id, Assignment, Award, MatchBatch};
pub use order::{
    GpuModelSpec, GpuRequest, Order, PersistentVolume, Placement, Resources, ServiceGroup,
};
pub use provider::{Capacity, Gpu, GpuInterface, Host, ProviderInfo, StorageClassCapacity};
pub use settlement::{Anchor, SettlementBatch, SettlementRecord};
pub use spend_grant::{SpendGrant, MAX_SPEND_GRANT_SIZE};

/// Convenience for building bodies: the current protocol version.
pub const fn v() -> u8 {
    PROTOCOL_VERSION
}
