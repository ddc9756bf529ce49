//! The seam between the settler and a settlement backend (the embedded ledger or a Cosmos
//! chain). The journal drives a backend through three steps, writing each result to sled
//! before taking the next, so that a crash at any point resumes without paying twice:
//!
//! 1. [`Anchor::prepare`]: turn a signed batch into the exact bytes to submit (signed
//!    transactions, or a ledger entry) and their hashes. Deterministic for a given backend state;
//!    the journal stores the result before anything leaves the process.
//! 2. [`Anchor::submit`]: send the stored bytes. Sending the same bytes twice must be harmless
//!    (the chain refuses a duplicate tx; the ledger keys entries by hash).
//! 3. [`Anchor::confirm`]: look the submission up by hash; `Some` once it is final.

use leasemesh_protocol::{Anchor as AnchorRecord, SettlementBatch, Signed};
use serde::{Deserialize, Serialize};

/// One transaction (or ledger entry) ready to send: its bytes and the hash it is found by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedTx {
    /// Chunk number, from 0.
    pub chunk: u32,
    /// Exactly the bytes that are broadcast; rebroadcasts send these again.
    pub bytes: Vec<u8>,
    /// How the backend names it (upper-case hex SHA-256 for Cosmos).
    pub hash: String,
}

/// Everything a backend needs to finish anchoring one batch after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedAnchor {
    pub batch_sequence: u64,
    pub txs: Vec<PreparedTx>,
}

/// How a submission stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Confirmation {
    /// Not seen yet (or not final): poll again, or resubmit the same bytes.
    Pending,
    /// Final, with where it landed.
    Final(AnchorRecord),
    /// The backend refused it for good (for example a spend grant too small). Nothing was paid:
    /// the journal frees the batch's sequence and the settler builds a new batch.
    Rejected { code: u32, log: String },
    /// Some transactions of the batch are final and another was refused for good: part of the
    /// batch was paid. The journal keeps the batch (and its sequence) and stops for an operator,
    /// since building a new batch would pay the landed part twice.
    PartlyApplied { final_txs: Vec<String>, code: u32, log: String },
}

/// Errors a backend reports. `Unavailable` is retried with backoff; the others are not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    #[error("settlement backend unavailable (will retry): {0}")]
    Unavailable(String),
    /// From `submit`: refused before anything of the batch could be paid. With several
    /// transactions the journal double-checks with `confirm` before freeing the sequence.
    #[error("settlement backend refused the batch: code {code}: {log}")]
    Rejected { code: u32, log: String },
    #[error("settlement batch cannot be anchored: {0}")]
    Invalid(String),
    #[error("settlement store: {0}")]
    Store(String),
}

/// A settlement backend. Async because the chain backend talks over the network; the embedded
/// ledger simply completes at once.
#[allow(async_fn_in_trait)]
pub trait Anchor {
    /// Builds the bytes to submit for `batch`. Must not send anything.
    async fn prepare(
        &mut self,
        batch: &Signed<SettlementBatch>,
    ) -> Result<PreparedAnchor, AnchorError>;

    /// Sends the prepared bytes (again, if called twice).
    async fn submit(&mut self, prepared: &PreparedAnchor) -> Result<(), AnchorError>;

    /// Looks the submission up by hash.
    async fn confirm(&mut self, prepared: &PreparedAnchor) -> Result<Confirmation, AnchorError>;
}
