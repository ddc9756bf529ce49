//! leasemesh-client: the tenant's light client, a library and the `leasemesh` CLI.
//!
//! It talks HTTP to any node ([`http::NodeClient`]), keeps the tenant's key on this machine
//! ([`keys`]), turns an Akash SDL into signed orders and a manifest and follows them to a running
//! lease ([`deploy`]), and verifies lease proofs locally ([`proof`]), a chain anchor on the chain
//! itself ([`anchor`]). Everything signed that a node returns is decoded from its exact bytes and
//! its signature checked here.
//!
//! It must not depend on libp2p, sled or the node: only on `leasemesh-protocol`.

pub mod anchor;
#[cfg(feature = "cosmos")]
pub mod cosmos_grant;
pub mod deploy;
pub mod error;
pub mod http;
pub mod keys;
pub mod proof;
pub mod settle;

pub use error::{ClientError, Result};
pub use http::{NodeClient, DEFAULT_NODE_URL};
