//! leasemesh-node: the daemon.
//!
//! A node joins the libp2p mesh, spreads and checks orders, bids, provider infos, match batches
//! and lease events, keeps them in its store (sled) and serves them over an HTTP API. Layers, in
//! the folder names:
//! - [`net`]: the libp2p wrapper ([`net::behaviour`], [`net::topics`], [`net::scoring`]), the
//!   swarm task ([`net::service`], the only owner of the `Swarm`), and the workers that validate
//!   and sync off the swarm task ([`net::workers`]).
//! - [`ingest`]: the validation pipeline (no libp2p, no async), shared by gossip, sync and API.
//! - [`store`], [`api`], [`config`], [`identity`], [`metrics`], [`events`].
//! - [`node`]: a running node that roles (provider, settler) build on.
//!
//! It must not trust anything from the network or the API before the pipeline checked it, and
//! must not block the swarm task.

pub mod api;
pub mod config;
pub mod events;
pub mod identity;
pub mod ingest;
pub mod metrics;
pub mod net;
pub mod node;
pub mod provider;
pub mod settler;
pub mod store;

pub use node::{start, Node, Running};

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
