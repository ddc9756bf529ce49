//! Gossip topics. Names carry the wire version (`/leasemesh/1/...`): a node that speaks another
//! version sits on other topics instead of being scored down for messages it cannot read.
//!
//! Orders have one topic today. [`Topic::Orders`] carries a shard so that orders can later be
//! split by resource class (`/leasemesh/1/orders/gpu`, ...) without touching the callers: shard
//! `None` is the one topic every node uses now.

use leasemesh_protocol::types::{
    MAX_BID_SIZE, MAX_HEARTBEAT_SIZE, MAX_LEASE_EVENT_SIZE, MAX_MATCH_BATCH_SIZE, MAX_ORDER_SIZE,
    MAX_PROVIDER_INFO_SIZE,
};
use libp2p::gossipsub::{IdentTopic, TopicHash};

/// The wire version in topic names.
pub const TOPIC_VERSION: u32 = 1;

/// A gossip topic of leasemesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Signed orders, optionally sharded by resource class.
    Orders { shard: Option<&'static str> },
    /// Signed bids.
    Bids,
    /// Signed provider infos.
    Providers,
    /// Signed provider heartbeats (a topic of their own: they are small and frequent, and a
    /// receiver must not have to guess which of two types a payload is).
    Heartbeats,
    /// Signed match batches.
    Batches,
    /// Signed lease events.
    Leases,
}

impl Topic {
    /// Every topic a node subscribes to.
    pub const ALL: [Topic; 6] = [
        Topic::Orders { shard: None },
        Topic::Bids,
        Topic::Providers,
        Topic::Heartbeats,
        Topic::Batches,
        Topic::Leases,
    ];

    /// The short kind name used in metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Topic::Orders { .. } => "orders",
            Topic::Bids => "bids",
            Topic::Providers => "providers",
            Topic::Heartbeats => "heartbeats",
            Topic::Batches => "batches",
            Topic::Leases => "leases",
        }
    }

    /// The full topic name, for example `/leasemesh/1/orders`.
    pub fn name(&self) -> String {
        match self {
            Topic::Orders { shard: Some(s) } => format!("/leasemesh/{TOPIC_VERSION}/orders/{s}"),
            t => format!("/leasemesh/{TOPIC_VERSION}/{}", t.kind()),
        }
    }

    pub fn ident(&self) -> IdentTopic {
        IdentTopic::new(self.name())
    }

    pub fn hash(&self) -> TopicHash {
        self.ident().hash()
    }

    /// The topic of a hash, if it is one of ours.
    pub fn from_hash(hash: &TopicHash) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.hash() == *hash)
    }

    /// Largest payload on this topic: the protocol's limit for the type it carries.
    pub fn max_size(&self) -> usize {
        match self {
            Topic::Orders { .. } => MAX_ORDER_SIZE,
            Topic::Bids => MAX_BID_SIZE,
            Topic::Providers => MAX_PROVIDER_INFO_SIZE,
            Topic::Heartbeats => MAX_HEARTBEAT_SIZE,
            Topic::Batches => MAX_MATCH_BATCH_SIZE,
            Topic::Leases => MAX_LEASE_EVENT_SIZE,
        }
    }

    /// Parses a kind name (`orders`, `bids`, ...), as the debug API takes it.
    pub fn from_kind(kind: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.kind() == kind)
    }
}

/// Largest gossip frame: the biggest payload plus room for the gossipsub framing.
pub fn max_transmit_size() -> usize {
    Topic::ALL.iter().map(Topic::max_size).max().unwrap_or(MAX_ORDER_SIZE) + 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_versioned_and_round_trip() {
        assert_eq!(Topic::Orders { shard: None }.name(), "/leasemesh/1/orders");
        assert_eq!(Topic::Bids.name(), "/leasemesh/1/bids");
        assert_eq!(Topic::Orders { shard: Some("gpu") }.name(), "/leasemesh/1/orders/gpu");
        for t in Topic::ALL {
            assert_eq!(Topic::from_hash(&t.hash()), Some(t));
            assert_eq!(Topic::from_kind(t.kind()), Some(t));
        }
        assert!(max_transmit_size() > MAX_MATCH_BATCH_SIZE);
    }
}
