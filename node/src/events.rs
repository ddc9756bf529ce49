//! What the node tells its API clients as it happens (server-sent events on `/v1/events`).
//! The event type itself is shared with the light client: [`leasemesh_protocol::api::NodeEvent`].

pub use leasemesh_protocol::api::NodeEvent;

/// Capacity of the event broadcast; a subscriber that falls this far behind skips events and is
/// told how many it missed.
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;
