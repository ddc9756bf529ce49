//! The error of building and signing (feature `sign`).

/// Why a transaction, a key or a chain answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosmosError {
    /// Our own input cannot become a transaction (address, denom, amount, chain id, encoding).
    #[error("cannot build the transaction: {0}")]
    Build(String),
    /// A key that is not a secp256k1 key, or a multisig that cannot be formed.
    #[error("key: {0}")]
    Key(String),
    /// Bytes from the chain that do not decode as what they should be.
    #[error("cannot decode {what}: {detail}")]
    Decode { what: String, detail: String },
}

pub(crate) fn build(what: &str) -> impl Fn(cosmrs::ErrorReport) -> CosmosError + '_ {
    move |e| CosmosError::Build(format!("{what}: {e}"))
}

pub(crate) fn decode(what: &str) -> impl Fn(prost::DecodeError) -> CosmosError + '_ {
    move |e| CosmosError::Decode { what: what.into(), detail: e.to_string() }
}
