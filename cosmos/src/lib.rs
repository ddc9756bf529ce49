//! Cosmos SDK transactions without I/O, shared by the light client and the settlement backend.
//!
//! - Always: reading a transaction from its bytes ([`tx`]: hash, memo, signer sequences, with
//!   prost-derived messages) and the meaning of CometBFT JSON-RPC answers ([`rpc`]). The light
//!   client's anchor check needs only this half.
//! - Feature `sign`: messages, fees and `SIGN_MODE_DIRECT` signing ([`sign`]), ABCI queries as
//!   bytes ([`query`]), and k-of-n transactions of the chain's own multisig ([`multisig`]).
//!
//! Not here: any socket, runtime or clock. The client sends with blocking HTTP, the settler
//! with tendermint-rpc; both only move the bytes this crate builds and reads.

pub mod rpc;
pub mod tx;

#[cfg(feature = "sign")]
mod error;
#[cfg(feature = "sign")]
pub mod multisig;
#[cfg(feature = "sign")]
pub mod query;
#[cfg(feature = "sign")]
pub mod sign;

#[cfg(feature = "sign")]
pub use cosmrs;
#[cfg(feature = "sign")]
pub use error::CosmosError;
