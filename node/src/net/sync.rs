//! Pull sync: the request-response protocol a node uses after it joins late or restarts. It asks
//! a peer for the ids of its live orders and bids, page by page, then fetches the ones it lacks
//! by id. Gossip then only has to carry new items.
//!
//! Wire: JSON over libp2p request-response on [`SYNC_PROTOCOL`]. Objects travel as the hex of
//! their signed canonical bytes and go through the same validation as gossip.

use leasemesh_protocol::Id;
use serde::{Deserialize, Serialize};

/// Protocol id (versioned, like the topics).
pub const SYNC_PROTOCOL: &str = "/leasemesh/sync/1";
/// Most ids in one page.
pub const SYNC_PAGE_LIMIT: u32 = 512;
/// Most objects asked for in one fetch (orders are at most 64 KiB: 64 of them stay far below the
/// response limit).
pub const SYNC_FETCH_LIMIT: usize = 64;
/// Most pages walked per kind and peer, so a lying peer cannot keep us paging forever.
pub const SYNC_MAX_PAGES: usize = 64;

/// What is synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    Orders,
    Bids,
}

/// A pull-sync request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncRequest {
    /// Ids of live objects after `after` (exclusive), in id order.
    LiveIds { kind: SyncKind, after: Option<Id>, limit: u32 },
    /// The signed bytes of these objects.
    Fetch { kind: SyncKind, ids: Vec<Id> },
    /// The signed bytes of these provider infos (any stored snapshot, not only the latest):
    /// a match batch names the snapshots it used.
    FetchProviderInfos { ids: Vec<Id> },
}

/// A pull-sync response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncResponse {
    /// A page of ids; `next` is the cursor for the next page, `None` at the end.
    Ids { ids: Vec<Id>, next: Option<Id> },
    /// Hex of each signed object found (unknown ids are left out).
    Objects { items: Vec<String> },
    /// The peer will not answer (rate limit, busy, bad request).
    Refused { reason: String },
}
