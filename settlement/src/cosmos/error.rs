//! Errors of the chain client, and how the text of a refused broadcast is read.

use crate::anchor::AnchorError;

/// What went wrong talking to the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The node did not answer (down, restarting, timed out): retry later, nothing changed.
    #[error("chain node unavailable at {url}: {detail}")]
    Unavailable { url: String, detail: String },
    /// The node refused a transaction (`CheckTx` or delivery failed).
    #[error("chain refused the transaction: code {code}: {log}")]
    Rejected { code: u32, log: String },
    /// A query answered with an error.
    #[error("chain query {path} failed: code {code}: {log}")]
    Query { path: String, code: u32, log: String },
    /// The node answered with bytes we cannot read.
    #[error("cannot decode the chain's answer to {what}: {detail}")]
    Decode { what: String, detail: String },
    /// Our own input cannot become a transaction (bad address, key, amount).
    #[error("cannot build the transaction: {0}")]
    Build(String),
    /// The node answered with an RPC error that is neither a refusal nor "not found".
    #[error("chain RPC error: {0}")]
    Rpc(String),
}

impl From<ChainError> for AnchorError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Unavailable { .. } => AnchorError::Unavailable(e.to_string()),
            ChainError::Rejected { code, log } => AnchorError::Rejected { code, log },
            ChainError::Rpc(_) => AnchorError::Unavailable(e.to_string()),
            other => AnchorError::Invalid(other.to_string()),
        }
    }
}

impl From<leasemesh_cosmos::CosmosError> for ChainError {
    fn from(e: leasemesh_cosmos::CosmosError) -> Self {
        use leasemesh_cosmos::CosmosError as E;
        match e {
            E::Decode { what, detail } => ChainError::Decode { what, detail },
            other => ChainError::Build(other.to_string()),
        }
    }
}

// How a refused broadcast reads: shared with the light client.
pub use leasemesh_cosmos::rpc::{
    is_already_known, parse_rejection, parse_sequence_mismatch, CODE_WRONG_SEQUENCE,
};
