//! The node's HTTP API as plain serde types, shared by the node (which serializes them) and the
//! light client (which reads them), so the two cannot drift apart.
//!
//! Only data and the rules of its spelling live here: no I/O, no HTTP client or server. JSON is
//! the intended format; ids and keys are hex strings there, as everywhere in JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Coin, Heartbeat, Id, LeaseEventKind, PublicKey};

// ---------------------------------------------------------------------------------------------
// Leases.

/// Where a lease stands. Stored and sent as the snake-case name (`"manifest_accepted"`), the
/// same spelling the node has always used, so existing databases and JSON stay readable; any
/// other spelling is refused on decode rather than read as some default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// A match batch awarded the order; the manifest has not been accepted yet.
    Awarded,
    /// The provider opened the manifest and its hash matched the order.
    ManifestAccepted,
    /// Every replica runs.
    Running,
    /// The lease could not start or broke. Final.
    Failed,
    /// The lease ended. Final.
    Closed,
}

/// A lease state spelled in a way no version of the node writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown lease state {0:?} (expected awarded, manifest_accepted, running, failed or closed)"
)]
pub struct UnknownLeaseState(pub String);

impl LeaseState {
    /// Every state, in the order a lease goes through them.
    pub const ALL: [LeaseState; 5] = [
        LeaseState::Awarded,
        LeaseState::ManifestAccepted,
        LeaseState::Running,
        LeaseState::Failed,
        LeaseState::Closed,
    ];

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Awarded => "awarded",
            LeaseState::ManifestAccepted => "manifest_accepted",
            LeaseState::Running => "running",
            LeaseState::Failed => "failed",
            LeaseState::Closed => "closed",
        }
    }

    /// Failed and closed are final: no later event changes them.
    pub fn is_final(self) -> bool {
        matches!(self, LeaseState::Failed | LeaseState::Closed)
    }

    /// The state a signed lease event puts a lease in.
    pub fn after(kind: &LeaseEventKind) -> LeaseState {
        match kind {
            LeaseEventKind::ManifestAccepted => LeaseState::ManifestAccepted,
            LeaseEventKind::Running { .. } => LeaseState::Running,
            LeaseEventKind::Failed { .. } => LeaseState::Failed,
            LeaseEventKind::Closed { .. } => LeaseState::Closed,
        }
    }
}

impl fmt::Display for LeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for LeaseState {
    type Err = UnknownLeaseState;

    fn from_str(s: &str) -> Result<LeaseState, UnknownLeaseState> {
        LeaseState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownLeaseState(s.to_owned()))
    }
}

/// What a lease is, from the award that made it, and where it stands. The node stores this as
/// JSON and serves it on `GET /v1/leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub lease_id: Id,
    pub order_id: Id,
    pub bid_id: Id,
    pub batch_id: Id,
    pub provider: PublicKey,
    /// The order's tenant, when the order is known to the node.
    pub tenant: Option<PublicKey>,
    pub price_per_hour: Coin,
    pub state: LeaseState,
    pub updated_at_ms: u64,
}

// ---------------------------------------------------------------------------------------------
// Server-sent events.

/// One server-sent event of `GET /v1/events`. The SSE event name is [`NodeEvent::name`]; the
/// data is this value as JSON, tagged with `"type"` (the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeEvent {
    /// A new order was stored.
    Order { id: Id, tenant: PublicKey, closes_at_ms: u64 },
    /// A new bid was stored. The price is the coin's text (`"1000uakt"`).
    Bid { id: Id, order_id: Id, provider: PublicKey, price_per_hour: String },
    /// A match batch awarded an order to a bid.
    Award { batch_id: Id, order_id: Id, bid_id: Id, lease_id: Id, provider: PublicKey },
    /// A lease event was stored; `state` is what that event says, even when the lease was
    /// already final.
    Lease { lease_id: Id, event_id: Id, state: LeaseState },
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

/// SSE event name the node sends when a subscriber fell behind; the data is how many events
/// it missed (a decimal number).
pub const LAGGED_EVENT: &str = "lagged";

// ---------------------------------------------------------------------------------------------
// Answers.

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code (`not_found`, `bad_id`, `bad_limit`, …).
    pub error: String,
    /// A sentence for people.
    pub detail: String,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// The answer to an accepted submission (`201`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub id: Id,
    /// False if the node stored the object but could not gossip it yet (no peers).
    pub published: bool,
    /// Why it was not published.
    #[serde(default)]
    pub publish_note: Option<String>,
}

/// How many of each thing a node's store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounts {
    pub orders: usize,
    pub bids: usize,
    pub providers: usize,
    pub batches: usize,
    pub leases: usize,
    pub lease_events: usize,
    pub seen: usize,
}

/// One connected peer in `/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub peer_id: String,
    /// Gossipsub peer score (application score included).
    pub score: f64,
    pub app_score: f64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub peer_id: String,
    pub node_key: PublicKey,
    pub listen_addrs: Vec<String>,
    pub connected_peers: Vec<PeerStatus>,
    /// Mesh size per topic kind (`orders`, `bids`, …).
    pub mesh: BTreeMap<String, usize>,
    pub banned_peers: Vec<String>,
    pub store: StoreCounts,
    pub time_ms: u64,
}

/// A signed object as the API shows it: its id, signer, body and exact signed bytes, plus what
/// the node adds about it (`X`, flattened into the same JSON object). A reader must decode and
/// verify `signed_hex` rather than trust `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedView<T, X = NoExtra> {
    pub id: Id,
    pub signer: PublicKey,
    #[serde(flatten)]
    pub extra: X,
    pub body: T,
    pub signed_hex: String,
}

/// Nothing added to a [`SignedView`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoExtra {}

/// What an order view adds: whether its auction is still open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderExtra {
    pub live: bool,
}

/// What a provider view adds: the provider's latest heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderExtra {
    pub heartbeat: Option<Heartbeat>,
}

/// `GET /v1/leases/{id}`: the lease and its signed events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDetail {
    pub lease: LeaseRecord,
    pub events: Vec<SignedView<crate::LeaseEvent>>,
}

/// `POST /v1/debug/publish` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawPublished {
    pub published: usize,
    pub errors: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Pagination.

/// Items per page when the request names no `limit`.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// The largest `limit` a node accepts; a larger one is refused (`400 bad_limit`).
pub const MAX_PAGE_LIMIT: usize = 1000;

/// The query of a listing (`GET /v1/orders`, `/v1/leases`, `/v1/providers`):
/// `?limit=N&after=<hex>`. Items come in key order (order id, lease id, provider key); `after`
/// is the `next` of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A limit outside `1..=MAX_PAGE_LIMIT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {0} is out of range: give 1 to {MAX_PAGE_LIMIT}")]
pub struct BadPageLimit(pub usize);

impl PageQuery {
    /// The limit to apply: the default when none was given, an error when out of range.
    pub fn limit(&self) -> Result<usize, BadPageLimit> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_LIMIT),
            Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(BadPageLimit(n)),
        }
    }
}

/// One page of a listing. `next` is absent on the last page; otherwise pass it as `after` to get
/// the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_state_spellings_are_the_stored_ones() {
        for st in LeaseState::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(serde_json::from_str::<LeaseState>(&json).unwrap(), st);
            assert_eq!(st.as_str().parse::<LeaseState>().unwrap(), st);
        }
        assert!(serde_json::from_str::<LeaseState>("\"Running\"").is_err());
        assert_eq!("runing".parse::<LeaseState>(), Err(UnknownLeaseState("runing".into())));
    }

    #[test]
    fn page_limit_has_a_default_and_a_maximum() {
        assert_eq!(PageQuery::default().limit(), Ok(DEFAULT_PAGE_LIMIT));
        let q = |n| PageQuery { limit: Some(n), after: None };
        assert_eq!(q(MAX_PAGE_LIMIT).limit(), Ok(MAX_PAGE_LIMIT));
        assert_eq!(q(MAX_PAGE_LIMIT + 1).limit(), Err(BadPageLimit(MAX_PAGE_LIMIT + 1)));
        assert_eq!(q(0).limit(), Err(BadPageLimit(0)));
    }
}
