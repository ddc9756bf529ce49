//! Every number that decides how the node judges its peers, in one place: gossipsub peer-score
//! weights and thresholds, per-peer rate limits, the ban threshold and the application-score
//! penalties of [`PeerAction`].
//!
//! The shape follows the gossipsub v1.1 spec: invalid messages (P4) weigh heavily, so a peer that
//! forwards a few undecodable or badly signed messages falls below the gossip and publish
//! thresholds and, if it keeps going, below the ban threshold. Mesh-delivery penalties (P3) are
//! off: in a small mesh an honest peer often has nothing to deliver.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicScoreParams};

use super::topics::Topic;

// --- score decay ---
/// How often scores decay.
pub const DECAY_INTERVAL: Duration = Duration::from_secs(1);
/// Counters below this decay to zero.
pub const DECAY_TO_ZERO: f64 = 0.01;
/// How long a disconnected peer's score is remembered (so reconnecting does not wash it).
pub const RETAIN_SCORE: Duration = Duration::from_secs(3600);

// --- per-topic weights ---
pub const TOPIC_WEIGHT: f64 = 1.0;
/// P1: a little credit for time in the mesh, capped.
pub const TIME_IN_MESH_WEIGHT: f64 = 0.01;
pub const TIME_IN_MESH_QUANTUM: Duration = Duration::from_secs(1);
pub const TIME_IN_MESH_CAP: f64 = 300.0;
/// P2: credit for being first to deliver a valid message.
pub const FIRST_DELIVERIES_WEIGHT: f64 = 0.5;
pub const FIRST_DELIVERIES_DECAY: f64 = 0.99;
pub const FIRST_DELIVERIES_CAP: f64 = 20.0;
/// P4: squared count of invalid messages times this weight. Two invalid messages give -40:
/// below the gossip threshold; three give -90: graylisted.
pub const INVALID_DELIVERIES_WEIGHT: f64 = -10.0;
/// Invalid-message counters halve in about 5 minutes.
pub const INVALID_DELIVERIES_DECAY: f64 = 0.9977;

// --- whole-peer weights ---
/// P5: application score (from [`PeerAction`]).
pub const APP_SPECIFIC_WEIGHT: f64 = 1.0;
/// P6: penalty for many peers behind one IP. Loopback is exempt (local test meshes).
pub const IP_COLOCATION_WEIGHT: f64 = -5.0;
pub const IP_COLOCATION_THRESHOLD: f64 = 8.0;
/// P7: protocol misbehaviour (broken promises, backoff violations).
pub const BEHAVIOUR_PENALTY_WEIGHT: f64 = -10.0;
pub const BEHAVIOUR_PENALTY_THRESHOLD: f64 = 6.0;
pub const BEHAVIOUR_PENALTY_DECAY: f64 = 0.99;
pub const TOPIC_SCORE_CAP: f64 = 50.0;

// --- thresholds ---
/// Below this we stop gossiping (IHAVE/IWANT) with the peer.
pub const GOSSIP_THRESHOLD: f64 = -10.0;
/// Below this we do not publish to the peer.
pub const PUBLISH_THRESHOLD: f64 = -50.0;
/// Below this we ignore everything the peer sends.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Peer exchange is accepted only from peers above this.
pub const ACCEPT_PX_THRESHOLD: f64 = 10.0;
pub const OPPORTUNISTIC_GRAFT_THRESHOLD: f64 = 5.0;
/// A peer whose score stays below this for [`BAN_AFTER_CHECKS`] checks in a row is
/// disconnected and blocked for the life of the process. It equals the publish threshold: a
/// peer we would not even publish to, for that long, only costs us. (Not the graylist
/// threshold: a graylisted peer's messages are dropped unscored, so its score floats back just
/// above the graylist and never stays below it.)
pub const BAN_THRESHOLD: f64 = PUBLISH_THRESHOLD;
/// Consecutive score checks below [`BAN_THRESHOLD`] before a ban (10 s).
pub const BAN_AFTER_CHECKS: u32 = 5;
/// How often the swarm task checks scores against [`BAN_THRESHOLD`].
pub const BAN_CHECK_INTERVAL: Duration = Duration::from_secs(2);

// --- rate limits ---
/// Default gossip messages per second accepted from one peer (all topics together); the
/// config's `network.gossip_rate_per_sec` overrides it. A busy relay forwards a few hundred bids
/// a second; this leaves it room.
pub const GOSSIP_RATE_PER_SEC: u32 = 1000;
/// Default burst of gossip messages one peer may send at once (`network.gossip_rate_burst`).
pub const GOSSIP_RATE_BURST: u32 = 2000;
/// Pull-sync requests per second served to one peer.
pub const SYNC_RATE_PER_SEC: u32 = 20;
pub const SYNC_RATE_BURST: u32 = 40;

/// How bad a peer's action was; each maps to an application-score penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAction {
    /// Sent more than its rate limit allows.
    RateLimited,
    /// Sent a response that does not decode or does not verify.
    BadSyncResponse,
}

impl PeerAction {
    /// The application-score change.
    pub fn penalty(self) -> f64 {
        match self {
            PeerAction::RateLimited => -1.0,
            PeerAction::BadSyncResponse => -20.0,
        }
    }
}
/// The application score never goes below this (a flood alone gets a peer graylisted, not
/// banned forever).
pub const APP_SCORE_FLOOR: f64 = -150.0;
/// Each score check, the application score moves this fraction back toward zero (a flooder's
/// penalty halves in about two minutes).
pub const APP_SCORE_RECOVERY: f64 = 0.01;

fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: TOPIC_WEIGHT,
        time_in_mesh_weight: TIME_IN_MESH_WEIGHT,
        time_in_mesh_quantum: TIME_IN_MESH_QUANTUM,
        time_in_mesh_cap: TIME_IN_MESH_CAP,
        first_message_deliveries_weight: FIRST_DELIVERIES_WEIGHT,
        first_message_deliveries_decay: FIRST_DELIVERIES_DECAY,
        first_message_deliveries_cap: FIRST_DELIVERIES_CAP,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_DELIVERIES_WEIGHT,
        invalid_message_deliveries_decay: INVALID_DELIVERIES_DECAY,
        ..TopicScoreParams::default()
    }
}

/// Peer-score parameters for every topic.
pub fn peer_score_params() -> PeerScoreParams {
    let mut whitelist = HashSet::new();
    whitelist.insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
    whitelist.insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
    PeerScoreParams {
        topics: Topic::ALL.iter().map(|t| (t.hash(), topic_params())).collect(),
        topic_score_cap: TOPIC_SCORE_CAP,
        app_specific_weight: APP_SPECIFIC_WEIGHT,
        ip_colocation_factor_weight: IP_COLOCATION_WEIGHT,
        ip_colocation_factor_threshold: IP_COLOCATION_THRESHOLD,
        ip_colocation_factor_whitelist: whitelist,
        behaviour_penalty_weight: BEHAVIOUR_PENALTY_WEIGHT,
        behaviour_penalty_threshold: BEHAVIOUR_PENALTY_THRESHOLD,
        behaviour_penalty_decay: BEHAVIOUR_PENALTY_DECAY,
        decay_interval: DECAY_INTERVAL,
        decay_to_zero: DECAY_TO_ZERO,
        retain_score: RETAIN_SCORE,
        ..PeerScoreParams::default()
    }
}

pub fn peer_score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: ACCEPT_PX_THRESHOLD,
        opportunistic_graft_threshold: OPPORTUNISTIC_GRAFT_THRESHOLD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_accepted_by_gossipsub() {
        peer_score_params().validate().unwrap();
        peer_score_thresholds().validate().unwrap();
        const {
            assert!(BAN_THRESHOLD < GOSSIP_THRESHOLD);
            assert!(GRAYLIST_THRESHOLD < PUBLISH_THRESHOLD);
            assert!(PUBLISH_THRESHOLD < GOSSIP_THRESHOLD);
        }
    }
}
