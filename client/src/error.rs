//! What can go wrong between the tenant and a node.

use leasemesh_protocol::DecodeError;

/// Why a client call failed. The message says what to do where it can.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered with an error status.
    #[error("{url}: HTTP {status} {code}: {detail}")]
    Api { url: String, status: u16, code: String, detail: String },
    /// The node could not be reached at all.
    #[error("cannot reach {url}: {reason} (is the node running? pass --node URL)")]
    Transport { url: String, reason: String },
    /// The node answered something this client does not understand.
    #[error("{url}: unexpected answer: {reason}")]
    BadAnswer { url: String, reason: String },
    /// A signed object from the node failed to decode or verify: the node is broken or lying.
    #[error("{what} from the node does not verify: {source}")]
    Unverified {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("SDL {path}: {reason}")]
    Sdl { path: String, reason: String },
    #[error("manifest sealing: {0}")]
    Seal(#[from] leasemesh_protocol::seal::SealError),
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout { what: String, waited_ms: u64 },
    #[error("lease {lease} failed: {reason}")]
    LeaseFailed { lease: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The HTTP status of an API error, if it is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;
