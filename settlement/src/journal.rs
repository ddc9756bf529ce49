//! The settlement journal: drives a batch through a backend one durable step at a time, so that
//! a crash at any point resumes without paying twice and without losing a payment.
//!
//! # Order of writes
//! 1. The signed batch is stored with status `Stored` (flushed). Batches must follow each other:
//!    sequence 1 with a zero `prev_batch` first, then each names the last anchored batch.
//!    Only one batch is in flight at a time.
//! 2. [`Anchor::prepare`] makes the bytes; they are stored with their hashes, status `Prepared`
//!    (flushed), before anything is sent. From here on these bytes are the batch: a batch with
//!    prepared bytes is never prepared again.
//! 3. [`Anchor::submit`] sends them. `Unavailable` is retried with capped exponential backoff.
//! 4. [`Anchor::confirm`] is polled with backoff; while it says `Pending` the same bytes are
//!    resubmitted now and then (harmless: the backend refuses a duplicate).
//! 5. The final [`Anchor`](leasemesh_protocol::Anchor) record is stored with status `Anchored`,
//!    the lease index and the head, in one transaction (flushed).
//!
//! A refusal (`Rejected`) marks the batch `Rejected` and frees its sequence: the settler builds a
//! new batch. Running out of retries returns [`JournalError::Unavailable`] and leaves the batch
//! in flight: [`Journal::resume`] (or settling the same batch again) picks it up, confirming by
//! hash first and resubmitting the stored bytes only if the backend has not seen them.
//!
//! # sled trees (all under the `journal/` prefix)
//! | tree                 | key                                  | value                          |
//! |----------------------|--------------------------------------|--------------------------------|
//! | `journal/batches`    | batch id (32 bytes)                  | encoded `Signed<SettlementBatch>` |
//! | `journal/states`     | batch id                             | postcard [`BatchState`]        |
//! | `journal/sequences`  | sequence, `u64` big-endian           | batch id (in flight or anchored) |
//! | `journal/leases`     | lease id ++ sequence (big-endian)    | batch id (anchored batches only) |
//! | `journal/meta`       | `head`                               | postcard `(sequence, batch id)` of the last anchored batch |

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::{Anchor as AnchorRecord, DecodeError, Hash, Id, SettlementBatch, Signed};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::accrual::AccrualCursor;
use crate::anchor::{Anchor, AnchorError, Confirmation, PreparedAnchor};
use crate::batch::{advance_cursors, prove_lease, record_lease, LeaseProof};

const HEAD: &[u8] = b"head";

/// Where a batch stands in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchStatus {
    /// Stored; nothing prepared or sent yet.
    Stored,
    /// Bytes prepared and stored; maybe sent, maybe not.
    Prepared,
    /// Final on the backend.
    Anchored,
    /// Refused by the backend; nothing was paid.
    Rejected,
    /// Part of the batch was paid and part refused: stopped for an operator, sequence kept.
    PartlyApplied,
}

/// Everything the journal knows about one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchState {
    pub sequence: u64,
    pub status: BatchStatus,
    pub prepared: Option<PreparedAnchor>,
    pub anchor: Option<AnchorRecord>,
    /// Code and log of a refusal.
    pub rejection: Option<(u32, String)>,
}

/// A point in [`Journal::settle`] just after a durable step, reported to the step hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleStep {
    /// The batch is stored.
    BatchStored,
    /// The prepared bytes are stored; nothing sent yet.
    Prepared,
    /// The bytes were handed to the backend; not confirmed yet.
    Submitted,
    /// The backend confirmed; the anchor record is not stored yet.
    Confirmed,
    /// The anchor record is stored.
    Anchored,
}

/// Called after each step (for metrics, logs, and the crash tests that abort there).
pub type StepHook = Box<dyn Fn(SettleStep) + Send + Sync>;

/// How long and how often to retry a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First wait after `Unavailable` or `Pending`; doubled each time up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up (with the batch kept in flight) after this many waits in one call.
    pub max_waits: u32,
    /// While `Pending`, resubmit the same bytes every this many polls.
    pub resubmit_every: u32,
}

impl Default for RetryPolicy {
    /// About ten minutes of patience: enough for a chain restart, short enough to report.
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_waits: 70,
            resubmit_every: 10,
        }
    }
}

/// Why settling (or resuming) stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("journal store: {0}")]
    Store(#[from] sled::Error),
    #[error("journal store is corrupt: {0}; restore it from a backup")]
    Corrupt(String),
    #[error("settlement batch is invalid: {0}")]
    InvalidBatch(#[source] DecodeError),
    #[error("batch {sequence} (prev {prev}) does not follow the journal: expected sequence {expected_sequence} after batch {expected_prev}")]
    OutOfOrder { sequence: u64, prev: Id, expected_sequence: u64, expected_prev: Id },
    #[error("batch {sequence} ({batch_id}) is still in flight: resume it before settling another")]
    InFlight { sequence: u64, batch_id: Id },
    #[error("batch {sequence} was rejected by the backend (code {code}): {log}; nothing was paid, build a new batch")]
    Rejected { sequence: u64, code: u32, log: String },
    #[error("batch {sequence} was partly paid and partly refused (code {code}): {log}; it stays in the journal and blocks new batches until an operator reconciles it")]
    PartlyApplied { sequence: u64, code: u32, log: String },
    #[error("batch {sequence}: backend unavailable after {waits} waits ({last}); the batch is kept, resume later")]
    Unavailable { sequence: u64, waits: u32, last: String },
    #[error("batch {sequence}: backend error: {source}")]
    Backend {
        sequence: u64,
        #[source]
        source: AnchorError,
    },
}

/// The journal. One settler task drives it; its getters may be called from anywhere.
pub struct Journal {
    db: sled::Db,
    batches: sled::Tree,
    states: sled::Tree,
    sequences: sled::Tree,
    leases: sled::Tree,
    meta: sled::Tree,
    retry: RetryPolicy,
    hook: Option<StepHook>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("retry", &self.retry)
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> JournalError {
    JournalError::Corrupt(format!("{what}: {e}"))
}

fn id_from(bytes: &[u8]) -> Result<Id, JournalError> {
    <[u8; 32]>::try_from(bytes).map(Hash).map_err(|_| corrupt("batch id", "not 32 bytes"))
}

fn lease_key(lease: &Id, sequence: u64) -> Vec<u8> {
    let mut k = lease.as_bytes().to_vec();
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

impl Journal {
    /// Opens (or creates) a journal in its own sled database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        let db = sled::open(path)?;
        Journal::with_db(&db)
    }

    /// Uses the `journal/*` trees of an open sled database.
    pub fn with_db(db: &sled::Db) -> Result<Journal, JournalError> {
        Ok(Journal {
            db: db.clone(),
            batches: db.open_tree("journal/batches")?,
            states: db.open_tree("journal/states")?,
            sequences: db.open_tree("journal/sequences")?,
            leases: db.open_tree("journal/leases")?,
            meta: db.open_tree("journal/meta")?,
            retry: RetryPolicy::default(),
            hook: None,
        })
    }

    pub fn set_retry_policy(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    /// Called after each durable step of [`Journal::settle`] and [`Journal::resume`].
    pub fn set_step_hook(&mut self, hook: StepHook) {
        self.hook = Some(hook);
    }

    fn step(&self, s: SettleStep) {
        if let Some(h) = &self.hook {
            h(s);
        }
    }

    // --- getters ---------------------------------------------------------------------------

    /// Sequence and id of the last anchored batch.
    pub fn head(&self) -> Result<Option<(u64, Id)>, JournalError> {
        match self.meta.get(HEAD)? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v).map(Some).map_err(|e| corrupt("head", e)),
        }
    }

    pub fn batch_by_id(&self, id: &Id) -> Result<Option<Signed<SettlementBatch>>, JournalError> {
        match self.batches.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => Signed::<SettlementBatch>::decode(&v)
                .map(Some)
                .map_err(|e| corrupt("stored batch", e)),
        }
    }

    /// The batch holding `sequence` (anchored or in flight).
    pub fn batch(&self, sequence: u64) -> Result<Option<Signed<SettlementBatch>>, JournalError> {
        match self.sequences.get(sequence.to_be_bytes())? {
            None => Ok(None),
            Some(id) => self.batch_by_id(&id_from(&id)?),
        }
    }

    pub fn state(&self, id: &Id) -> Result<Option<BatchState>, JournalError> {
        match self.states.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v).map(Some).map_err(|e| corrupt("batch state", e)),
        }
    }

    /// The state of the batch holding `sequence`.
    pub fn status(&self, sequence: u64) -> Result<Option<BatchState>, JournalError> {
        match self.sequences.get(sequence.to_be_bytes())? {
            None => Ok(None),
            Some(id) => self.state(&id_from(&id)?),
        }
    }

    /// The batch in flight (stored or prepared, not yet anchored), if any.
    pub fn in_flight(&self) -> Result<Option<(u64, Id)>, JournalError> {
        let after = self.head()?.map_or(0, |(s, _)| s);
        let Some(kv) = self.sequences.range((after + 1).to_be_bytes()..).next() else {
            return Ok(None);
        };
        let (k, v) = kv?;
        let seq = <[u8; 8]>::try_from(k.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt("sequence key", "not 8 bytes"))?;
        Ok(Some((seq, id_from(&v)?)))
    }

    /// Sequences of the anchored batches that hold records of `lease_id`, ascending.
    pub fn batches_with_lease(&self, lease_id: &Id) -> Result<Vec<u64>, JournalError> {
        let mut out = Vec::new();
        for kv in self.leases.scan_prefix(lease_id.as_bytes()) {
            let (k, _) = kv?;
            let seq = k
                .get(32..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("lease key", "bad length"))?;
            out.push(seq);
        }
        Ok(out)
    }

    /// A proof for every anchored batch that holds `lease_id`, with where it was anchored.
    pub fn lease_proofs(
        &self,
        lease_id: &Id,
    ) -> Result<Vec<(LeaseProof, AnchorRecord)>, JournalError> {
        let mut out = Vec::new();
        for seq in self.batches_with_lease(lease_id)? {
            let Some(batch) = self.batch(seq)? else { continue };
            let anchor = self.state(&batch.id())?.and_then(|s| s.anchor);
            if let (Some(proof), Some(anchor)) = (prove_lease(&batch.body, lease_id), anchor) {
                out.push((proof, anchor));
            }
        }
        Ok(out)
    }

    /// What every lease was charged so far, folded over the anchored batches in sequence
    /// order: the cursors to pass to the next [`accrue`](crate::accrual::accrue) after a restart.
    pub fn cursors(&self) -> Result<BTreeMap<Id, AccrualCursor>, JournalError> {
        let mut out = BTreeMap::new();
        let head = self.head()?.map_or(0, |(s, _)| s);
        for seq in 1..=head {
            let batch = self
                .batch(seq)?
                .ok_or_else(|| corrupt("journal", format!("anchored batch {seq} missing")))?;
            advance_cursors(&mut out, &batch.body);
        }
        Ok(out)
    }

    // --- settling --------------------------------------------------------------------------

    /// Anchors `batch` through `anchor`, journaling every step. Settling a batch already
    /// anchored returns its anchor again; settling the batch in flight continues it.
    pub async fn settle<A: Anchor>(
        &self,
        anchor: &mut A,
        batch: Signed<SettlementBatch>,
    ) -> Result<AnchorRecord, JournalError> {
        batch.check().map_err(JournalError::InvalidBatch)?;
        batch.verify().map_err(JournalError::InvalidBatch)?;
        let id = batch.id();
        let sequence = batch.body.sequence;
        if let Some(state) = self.state(&id)? {
            return match state.status {
                BatchStatus::Anchored => state.anchor.ok_or_else(|| corrupt("state", "no anchor")),
                BatchStatus::Rejected => {
                    let (code, log) = state.rejection.unwrap_or_default();
                    Err(JournalError::Rejected { sequence, code, log })
                }
                BatchStatus::PartlyApplied => {
                    let (code, log) = state.rejection.unwrap_or_default();
                    Err(JournalError::PartlyApplied { sequence, code, log })
                }
                BatchStatus::Stored | BatchStatus::Prepared => {
                    self.drive(anchor, &batch, state, true).await
                }
            };
        }
        if let Some((seq, batch_id)) = self.in_flight()? {
            return Err(JournalError::InFlight { sequence: seq, batch_id });
        }
        let (expected_sequence, expected_prev) =
            self.head()?.map_or((1, Hash::ZERO), |(s, id)| (s + 1, id));
        if sequence != expected_sequence || batch.body.prev_batch != expected_prev {
            return Err(JournalError::OutOfOrder {
                sequence,
                prev: batch.body.prev_batch,
                expected_sequence,
                expected_prev,
            });
        }
        let state = BatchState {
            sequence,
            status: BatchStatus::Stored,
            prepared: None,
            anchor: None,
            rejection: None,
        };
        let encoded = batch.encode();
        let state_bytes = to_canonical(&state);
        (&self.batches, &self.states, &self.sequences)
            .transaction(|(batches, states, sequences)| {
                // Another call may have claimed the sequence since the checks above.
                if let Some(other) = sequences.get(sequence.to_be_bytes())? {
                    return Err(ConflictableTransactionError::Abort(other));
                }
                batches.insert(id.as_bytes(), encoded.as_slice())?;
                states.insert(id.as_bytes(), state_bytes.as_slice())?;
                sequences.insert(&sequence.to_be_bytes(), id.as_bytes())?;
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(other) => match id_from(&other) {
                    Ok(batch_id) => JournalError::InFlight { sequence, batch_id },
                    Err(e) => e,
                },
                TransactionError::Storage(e) => JournalError::Store(e),
            })?;
        self.db.flush_async().await?;
        tracing::info!(sequence, batch = %id.short(), records = batch.body.records.len(), "settlement batch stored");
        self.step(SettleStep::BatchStored);
        self.drive(anchor, &batch, state, false).await
    }

    /// Gives up a batch in flight that was never prepared (its bytes could not be built, for
    /// example a backend that refuses its size): marks it rejected and frees its sequence so a
    /// new batch can take it. A batch with prepared bytes may already be on its way and can
    /// only be resumed; this returns [`JournalError::InFlight`] for it.
    pub async fn abandon_unsent(&self, sequence: u64) -> Result<(), JournalError> {
        let Some((seq, id)) = self.in_flight()? else { return Ok(()) };
        let state = self.state(&id)?.ok_or_else(|| corrupt("journal", "state missing"))?;
        if seq != sequence || state.prepared.is_some() {
            return Err(JournalError::InFlight { sequence: seq, batch_id: id });
        }
        self.reject(&id, state, 0, "abandoned before anything was sent".into()).await?;
        Ok(())
    }

    /// Finishes every batch left in flight by a crash or an unavailable backend. Returns the
    /// anchors obtained.
    pub async fn resume<A: Anchor>(
        &self,
        anchor: &mut A,
    ) -> Result<Vec<AnchorRecord>, JournalError> {
        let mut out = Vec::new();
        while let Some((sequence, id)) = self.in_flight()? {
            let batch = self
                .batch_by_id(&id)?
                .ok_or_else(|| corrupt("journal", format!("batch {sequence} missing")))?;
            let state = self
                .state(&id)?
                .ok_or_else(|| corrupt("journal", format!("state of batch {sequence} missing")))?;
            if state.status == BatchStatus::PartlyApplied {
                let (code, log) = state.rejection.unwrap_or_default();
                return Err(JournalError::PartlyApplied { sequence, code, log });
            }
            tracing::info!(sequence, batch = %id.short(), status = ?state.status, "resuming settlement batch");
            out.push(self.drive(anchor, &batch, state, true).await?);
        }
        Ok(out)
    }

    /// Takes a stored or prepared batch to the end. `resuming`: the bytes may already have been
    /// sent, so confirm by hash before sending them again.
    async fn drive<A: Anchor>(
        &self,
        anchor: &mut A,
        batch: &Signed<SettlementBatch>,
        mut state: BatchState,
        resuming: bool,
    ) -> Result<AnchorRecord, JournalError> {
        let id = batch.id();
        let sequence = state.sequence;
        let mut backoff = Backoff::new(&self.retry, sequence);

        let prepared = match state.prepared.clone() {
            Some(p) => p,
            None => {
                let p = loop {
                    match anchor.prepare(batch).await {
                        Ok(p) => break p,
                        Err(AnchorError::Unavailable(why)) => backoff.wait(why).await?,
                        Err(e) => return Err(self.backend_error(sequence, e)),
                    }
                };
                state.status = BatchStatus::Prepared;
                state.prepared = Some(p.clone());
                self.states.insert(id.as_bytes(), to_canonical(&state))?;
                self.db.flush_async().await?;
                let hashes: Vec<&str> = p.txs.iter().map(|t| t.hash.as_str()).collect();
                tracing::info!(sequence, ?hashes, "settlement bytes prepared and stored");
                self.step(SettleStep::Prepared);
                p
            }
        };

        // Confirm first when the bytes may have gone out before a restart; otherwise send.
        let mut need_submit = !resuming;
        let mut polls: u32 = 0;
        loop {
            if need_submit {
                match anchor.submit(&prepared).await {
                    Ok(()) => self.step(SettleStep::Submitted),
                    Err(AnchorError::Unavailable(why)) => {
                        backoff.wait(why).await?;
                        continue;
                    }
                    Err(AnchorError::Rejected { code, log }) if prepared.txs.len() <= 1 => {
                        return Err(self.reject(&id, state, code, log).await?);
                    }
                    Err(AnchorError::Rejected { code, log }) => {
                        // Earlier transactions of the batch may have been accepted: only the
                        // backend's confirmation can say whether anything was paid.
                        return self.after_multi_tx_refusal(anchor, batch, state, code, log).await;
                    }
                    Err(e) => return Err(self.backend_error(sequence, e)),
                }
                need_submit = false;
            }
            match anchor.confirm(&prepared).await {
                Ok(Confirmation::Final(record)) => {
                    self.step(SettleStep::Confirmed);
                    return self.record_anchor(&id, batch, state, record).await;
                }
                Ok(Confirmation::Rejected { code, log }) => {
                    return Err(self.reject(&id, state, code, log).await?);
                }
                Ok(Confirmation::PartlyApplied { final_txs, code, log }) => {
                    let log = format!("{log} (final: {})", final_txs.join(","));
                    return Err(self.stop_partly_applied(&id, state, code, log).await?);
                }
                Ok(Confirmation::Pending) => {
                    polls += 1;
                    // Never seen (fresh after a restart), or not final yet: send the same bytes
                    // again now and then.
                    if (resuming && polls == 1) || polls % self.retry.resubmit_every.max(1) == 0 {
                        need_submit = true;
                        if resuming && polls == 1 {
                            continue;
                        }
                    }
                    backoff.wait("not final yet".into()).await?;
                }
                Err(AnchorError::Unavailable(why)) => backoff.wait(why).await?,
                Err(e) => return Err(self.backend_error(sequence, e)),
            }
        }
    }

    fn backend_error(&self, sequence: u64, e: AnchorError) -> JournalError {
        tracing::error!(sequence, error = %e, "settlement backend error; the batch stays in the journal");
        JournalError::Backend { sequence, source: e }
    }

    /// `submit` refused one transaction of several. Asks the backend once: if it confirms
    /// that nothing was paid (or everything was), act on it; otherwise stop for an operator.
    async fn after_multi_tx_refusal<A: Anchor>(
        &self,
        anchor: &mut A,
        batch: &Signed<SettlementBatch>,
        state: BatchState,
        code: u32,
        log: String,
    ) -> Result<AnchorRecord, JournalError> {
        let id = batch.id();
        let Some(prepared) = state.prepared.clone() else {
            return Err(corrupt("journal", "refused batch has no prepared bytes"));
        };
        match anchor.confirm(&prepared).await {
            Ok(Confirmation::Rejected { code, log }) => {
                Err(self.reject(&id, state, code, log).await?)
            }
            // Everything landed after all: the refusal was of a duplicate.
            Ok(Confirmation::Final(record)) => self.record_anchor(&id, batch, state, record).await,
            Ok(Confirmation::PartlyApplied { final_txs, code, log }) => {
                let log = format!("{log} (final: {})", final_txs.join(","));
                Err(self.stop_partly_applied(&id, state, code, log).await?)
            }
            Ok(Confirmation::Pending) | Err(_) => {
                let log = format!("{log}; other transactions of the batch may still land");
                Err(self.stop_partly_applied(&id, state, code, log).await?)
            }
        }
    }

    async fn stop_partly_applied(
        &self,
        id: &Id,
        mut state: BatchState,
        code: u32,
        log: String,
    ) -> Result<JournalError, JournalError> {
        let sequence = state.sequence;
        tracing::error!(sequence, code, %log, "settlement batch partly applied; stopping for an operator");
        state.status = BatchStatus::PartlyApplied;
        state.rejection = Some((code, log.clone()));
        self.states.insert(id.as_bytes(), to_canonical(&state))?;
        self.db.flush_async().await?;
        Ok(JournalError::PartlyApplied { sequence, code, log })
    }

    async fn reject(
        &self,
        id: &Id,
        mut state: BatchState,
        code: u32,
        log: String,
    ) -> Result<JournalError, JournalError> {
        let sequence = state.sequence;
        tracing::warn!(sequence, code, %log, "settlement batch rejected; nothing paid, sequence freed");
        state.status = BatchStatus::Rejected;
        state.rejection = Some((code, log.clone()));
        let state_bytes = to_canonical(&state);
        (&self.states, &self.sequences)
            .transaction(|(states, sequences)| {
                states.insert(id.as_bytes(), state_bytes.as_slice())?;
                sequences.remove(&sequence.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(tx_err)?;
        self.db.flush_async().await?;
        Ok(JournalError::Rejected { sequence, code, log })
    }

    async fn record_anchor(
        &self,
        id: &Id,
        batch: &Signed<SettlementBatch>,
        mut state: BatchState,
        record: AnchorRecord,
    ) -> Result<AnchorRecord, JournalError> {
        let sequence = state.sequence;
        state.status = BatchStatus::Anchored;
        state.anchor = Some(record.clone());
        let state_bytes = to_canonical(&state);
        let head = to_canonical(&(sequence, *id));
        let mut lease_ids: Vec<&Id> = batch.body.records.iter().filter_map(record_lease).collect();
        lease_ids.dedup();
        let lease_keys: Vec<Vec<u8>> = lease_ids.iter().map(|l| lease_key(l, sequence)).collect();
        (&self.states, &self.meta, &self.leases)
            .transaction(|(states, meta, leases)| {
                states.insert(id.as_bytes(), state_bytes.as_slice())?;
                meta.insert(HEAD, head.as_slice())?;
                for k in &lease_keys {
                    leases.insert(k.as_slice(), id.as_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(tx_err)?;
        self.db.flush_async().await?;
        tracing::info!(sequence, chain = %record.chain_id, height = record.height, txs = record.tx_hashes.len(), "settlement batch anchored");
        self.step(SettleStep::Anchored);
        Ok(record)
    }
}

fn tx_err(e: TransactionError<()>) -> JournalError {
    match e {
        TransactionError::Storage(e) => JournalError::Store(e),
        TransactionError::Abort(()) => JournalError::Corrupt("transaction aborted".into()),
    }
}

/// Capped exponential backoff counting waits for one call.
struct Backoff {
    next: Duration,
    max: Duration,
    waits: u32,
    max_waits: u32,
    sequence: u64,
}

impl Backoff {
    fn new(p: &RetryPolicy, sequence: u64) -> Backoff {
        Backoff {
            next: p.first_backoff,
            max: p.max_backoff,
            waits: 0,
            max_waits: p.max_waits,
            sequence,
        }
    }

    async fn wait(&mut self, why: String) -> Result<(), JournalError> {
        if self.waits >= self.max_waits {
            return Err(JournalError::Unavailable {
                sequence: self.sequence,
                waits: self.waits,
                last: why,
            });
        }
        tracing::debug!(sequence = self.sequence, wait_ms = self.next.as_millis() as u64, %why, "settlement backend: waiting");
        tokio::time::sleep(self.next).await;
        self.waits += 1;
        self.next = (self.next * 2).min(self.max);
        Ok(())
    }
}
