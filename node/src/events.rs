//! What the node tells its API clients as it happens (server-sent events on `/v1/events`).

use leasemesh_protocol::{Id, PublicKey};
use serde::Serialize;

/// Capacity of the event broadcast; a subscriber that falls this far behind skips events and is
/// told how many it missed.
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// One event. The SSE event name is the variant name in snake case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A new order was stored.
    Order { id: Id, tenant: PublicKey, closes_at_ms: u64 },
    /// A new bid was stored.
    Bid { id: Id, order_id: Id, provider: PublicKey, price_per_hour: String },
    /// A match batch awarded an order to a bid.
    Award { batch_id: Id, order_id: Id, bid_id: Id, lease_id: Id, provider: PublicKey },
    /// A lease event was stored.
    Lease { lease_id: Id, event_id: Id, state: String },
    /// A provider published new info.
    Provider { provider: PublicKey, sequence: u64 },
}

impl NodeEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            NodeEvent::Order { .. } => "order",
            NodeEvent::Bid { .. } => "bid",
            NodeEvent::Award { .. } => "award",
            NodeEvent::Lease { .. } => "lease",
            NodeEvent::Provider { .. } => "provider",
        }
    }
}
