//! Settlement on the settlement settler (the first settler of the genesis): leases' events and
//! their providers' proofs of life go into accrual; each round builds a [`SettlementBatch`],
//! signs it, and anchors it through the [`Journal`] on the embedded [`LocalLedger`].
//!
//! Cursors (what each lease has been charged up to) move only once a batch is anchored: they
//! are written beside the batch's sequence before it is settled and applied when the journal
//! reports it anchored, also after a crash ([`Settlement::open`] finishes what was in flight).
//!
//! Which events count: `Running`, `ManifestAccepted` and `Failed` only when signed by the
//! lease's provider; `Closed` by the provider or the tenant, and `Closed(InsufficientFunds)` or
//! `Closed(ProviderSilent)` by a genesis settler (the ingest pipeline already refused any other
//! signer).
//!
//! # When a provider falls silent
//! Accrual ends a lease whose provider sent no proof of life for longer than the order's grace
//! period, at its last proof of life ([`CloseReason::ProviderSilent`]). The batch records
//! `LeaseClosed(ProviderSilent)` and the lease's cursor is closed, so it is never charged again.
//! Unless the lease already carries a close or a failure of its own, the settler also signs a
//! `Closed(ProviderSilent)` event, dated at that last proof of life, and publishes it once the
//! batch is anchored, exactly like a funds close: every node's store then shows the lease
//! closed, the tenant's client learns it, and a provider that comes back stops the containers
//! instead of running them unpaid.
//!
//! # When a tenant cannot pay
//! Before a batch is built the settler reads, per tenant and denom, what it can pay: the lesser
//! of its balance and its remaining spend grant to the settler (from the embedded ledger, or
//! from the chain's bank and authz queries). A tenant that owes no more than that is charged in
//! full. A tenant that owes more is charged exactly what it has, spread over its leases in that
//! denom in lease-id order, and every one of those leases ends in this batch: its accrual stops
//! at the point it was charged to, the batch records `LeaseClosed(InsufficientFunds)`, and once
//! the batch is anchored the settler publishes a signed `Closed(InsufficientFunds)` event so the
//! provider stops the containers. So the batch always applies, the other tenants are paid in
//! full, and the provider is paid what the tenant could pay. The rest is never charged later
//! (the lease is closed, its cursor too): it is kept as a [`Shortfall`] (owed, paid, unpaid)
//! that [`Settlement::shortfall`] serves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::{
    amount_serde, Anchor as AnchorRecord, CloseReason, Coin, Hash, Id, Keypair, LeaseEvent,
    LeaseEventKind, PublicKey, SettlementBatch, Signed,
};
use leasemesh_settlement::accrual::{
    accrue, AccrualCursor, LeaseAccrual, LeaseEnd, LeaseTerms, LeaseTimeline,
};
use leasemesh_settlement::batch::{build_batch, BatchHeader, LeaseProof};
use leasemesh_settlement::journal::{Journal, JournalError};
use leasemesh_settlement::ledger::LocalLedger;
use serde::{Deserialize, Serialize};

use super::genesis::Genesis;
use crate::store::{LeaseRecord, Store, StoreError};

pub mod tenant_bindings;

const GENESIS_APPLIED: &[u8] = b"genesis_applied";

/// Why settling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettleError {
    #[error("settlement database: {0}")]
    Db(#[from] sled::Error),
    #[error("node store: {0}")]
    Store(#[from] StoreError),
    #[error("ledger: {0}")]
    Ledger(#[from] leasemesh_settlement::ledger::LedgerError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("accrual: {0}")]
    Accrual(#[from] leasemesh_settlement::accrual::AccrualError),
    #[error("batch: {0}")]
    Batch(#[from] leasemesh_settlement::batch::BatchError),
    #[error("stored cursor state is corrupt: {0}")]
    Corrupt(String),
    #[error("spend grant refused: {0}")]
    Grant(String),
    #[error("chain: {0}")]
    Chain(String),
}

/// The signed spend grant (`POST /v1/ledger/grants`, body `{"signed_hex": "<hex of
/// Signed<SpendGrant>>"}`): a protocol type, so the light client signs the same bytes. The
/// signer must control `tenant_address`: the address is the signer's key in hex, or a genesis
/// balance names the signer's key for it.
pub use leasemesh_protocol::SpendGrant;

/// One lease's proof in one anchored batch, as the API serves it.
#[derive(Debug, Clone, Serialize)]
pub struct ProofView {
    pub batch_sequence: u64,
    pub batch_id: Id,
    /// Hex of the signed settlement batch's canonical bytes.
    pub signed_batch_hex: String,
    pub lease_proof: LeaseProof,
    pub anchor: AnchorRecord,
}

/// What one round did.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub sequence: u64,
    pub batch_id: Id,
    pub leases: usize,
    pub records: usize,
    pub anchor: AnchorRecord,
    /// Leases of this batch whose tenant could not pay all it owed.
    pub shortfalls: Vec<Shortfall>,
    /// Leases this batch closed because their provider fell silent for longer than the grace
    /// period, in lease-id order.
    pub provider_silent: Vec<Id>,
}

/// A lease whose tenant could not pay all it owed in the batch that closed it. `unpaid` is
/// never charged later: the provider is paid `paid`, and the lease is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub lease_id: Id,
    pub tenant_address: String,
    pub provider_address: String,
    pub denom: String,
    /// What the lease accrued in that batch.
    #[serde(with = "amount_serde")]
    pub owed: u128,
    /// What the tenant paid of it.
    #[serde(with = "amount_serde")]
    pub paid: u128,
    /// `owed - paid`.
    #[serde(with = "amount_serde")]
    pub unpaid: u128,
    /// The batch that charged and closed the lease.
    pub batch_sequence: u64,
    /// The lease was charged up to here and ends here.
    pub closed_at_ms: u64,
    /// Hex of the settler's signed `Closed(InsufficientFunds)` event; `None` when the lease had
    /// already ended for another reason (its own close stands).
    pub close_hex: Option<String>,
}

/// What a tenant can pay, per (tenant address, denom).
pub type Funds = BTreeMap<(String, String), u128>;

/// A tenant short of funds: how much of its accruals each lease keeps. Pure and deterministic.
///
/// For each (tenant, denom) whose accruals sum to more than `funds` holds (no entry: nothing),
/// the funds are spread over its accruals in lease-id order, each capped at what it owes, and
/// each of those accruals ends at its `to_ms` with `InsufficientFunds` unless it already ended.
/// Returns, per capped accrual's index, `(owed, paid)`. Accruals of tenants that can pay are
/// left as they are, so the batch built from the result never spends more than `funds`.
pub fn cap_to_funds(accruals: &mut [LeaseAccrual], funds: &Funds) -> BTreeMap<usize, (u128, u128)> {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, a) in accruals.iter().enumerate() {
        let key = (a.terms.tenant_address.clone(), a.terms.price_per_hour.denom.clone());
        groups.entry(key).or_default().push(i);
    }
    let mut out = BTreeMap::new();
    for (key, mut idx) in groups {
        let owed = idx.iter().fold(0u128, |s, &i| s.saturating_add(accruals[i].amount));
        let mut left = funds.get(&key).copied().unwrap_or(0);
        if owed <= left {
            continue;
        }
        idx.sort_by_key(|&i| accruals[i].terms.lease_id);
        for i in idx {
            let a = &mut accruals[i];
            let owed = a.amount;
            let paid = owed.min(left);
            left -= paid;
            a.amount = paid;
            a.cursor.accrued_amount = a.cursor.accrued_amount.saturating_sub(owed - paid);
            if a.closed.is_none() {
                a.closed =
                    Some(LeaseEnd { at_ms: a.to_ms, reason: CloseReason::InsufficientFunds });
            }
            a.cursor.closed = true;
            out.insert(i, (owed, paid));
        }
    }
    out
}

/// Where batches are anchored.
#[derive(Debug)]
pub enum Backend {
    /// The embedded ledger (the default).
    Local(LocalLedger),
    /// A Cosmos SDK chain: payments move by authz from the tenants' own grants on the chain.
    #[cfg(feature = "cosmos")]
    Cosmos(Box<leasemesh_settlement::cosmos::Cosmos>),
}

/// The settlement settler's state: journal, ledger and cursors in one sled database.
#[derive(Debug)]
pub struct Settlement {
    journal: Journal,
    /// The embedded ledger (unused, and empty, with the Cosmos backend).
    ledger: LocalLedger,
    backend: Backend,
    cursors: sled::Tree,
    pending: sled::Tree,
    /// Batch sequence → the [`Shortfall`]s of that batch, until it is anchored or dropped.
    pending_shortfalls: sled::Tree,
    /// Lease id → its [`Shortfall`], once anchored.
    shortfalls: sled::Tree,
    /// Batch sequence → the settler's signed `Closed(ProviderSilent)` events of that batch (as
    /// `(lease id, bytes)`), until it is anchored or dropped.
    pending_closes: sled::Tree,
    /// Lease id → the settler's signed close, until the node's store holds it.
    unpublished: sled::Tree,
    /// Chain address → the tenant key it is bound to ([`tenant_bindings`]).
    bindings: sled::Tree,
    meta: sled::Tree,
    key: Keypair,
    genesis: Genesis,
}

/// The ledger address of a settler: its key in hex.
pub fn settler_address(key: &PublicKey) -> String {
    key.to_hex()
}

impl Settlement {
    /// Opens the database at `path`, applies the genesis balances and grants once, and finishes
    /// a batch a crash left in flight. `chain`: anchor on this Cosmos backend instead of the
    /// embedded ledger.
    pub async fn open(
        path: &Path,
        key: Keypair,
        genesis: Genesis,
        #[cfg(feature = "cosmos")] chain: Option<leasemesh_settlement::cosmos::Cosmos>,
    ) -> Result<Settlement, SettleError> {
        let db = sled::open(path)?;
        let address = settler_address(&key.public());
        let ledger = LocalLedger::with_db(&db, address.clone())?;
        #[cfg(feature = "cosmos")]
        let backend = match chain {
            Some(c) => Backend::Cosmos(Box::new(c)),
            None => Backend::Local(ledger.clone()),
        };
        #[cfg(not(feature = "cosmos"))]
        let backend = Backend::Local(ledger.clone());
        let mut s = Settlement {
            journal: Journal::with_db(&db)?,
            ledger,
            backend,
            cursors: db.open_tree("settler/cursors")?,
            pending: db.open_tree("settler/pending_cursors")?,
            pending_shortfalls: db.open_tree("settler/pending_shortfalls")?,
            shortfalls: db.open_tree("settler/shortfalls")?,
            pending_closes: db.open_tree("settler/pending_closes")?,
            unpublished: db.open_tree("settler/unpublished_closes")?,
            bindings: db.open_tree(tenant_bindings::TREE)?,
            meta: db.open_tree("settler/meta")?,
            key,
            genesis,
        };
        let digest = s.genesis.digest();
        let local = matches!(s.backend, Backend::Local(_));
        if local && s.meta.get(GENESIS_APPLIED)?.as_deref() != Some(digest.as_bytes().as_slice()) {
            if s.meta.get(GENESIS_APPLIED)?.is_some() {
                tracing::warn!(
                    "the genesis changed since the ledger was created; balances are not re-applied"
                );
            } else {
                for b in &s.genesis.balances {
                    s.ledger.fund(&b.address, &Coin::new(b.denom.clone(), b.amount))?;
                }
                for g in &s.genesis.grants {
                    s.ledger.set_grant(
                        &g.tenant,
                        &address,
                        &Coin::new(g.denom.clone(), g.limit),
                    )?;
                }
                s.meta.insert(GENESIS_APPLIED, digest.as_bytes().as_slice())?;
                db.flush_async().await?;
            }
        }
        s.resume().await?;
        s.apply_pending()?;
        Ok(s)
    }

    /// Finishes a batch left in flight.
    async fn resume(&mut self) -> Result<(), JournalError> {
        match &mut self.backend {
            Backend::Local(l) => self.journal.resume(l).await.map(|_| ()),
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => self.journal.resume(c.as_mut()).await.map(|_| ()),
        }
    }

    /// True on the embedded ledger (balances and grants live here).
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// The settler's address on the backend: its key in hex on the embedded ledger, its chain
    /// account on Cosmos (the grantee of the tenants' spend grants).
    pub fn address(&self) -> String {
        match &self.backend {
            Backend::Local(_) => settler_address(&self.key.public()),
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => c.address().to_string(),
        }
    }

    /// Whether pending batch `seq` was anchored (`Some(true)`), paid nothing and is dropped
    /// (`Some(false)`), or is still in flight (`None`).
    fn fate(&self, key: &[u8], head: u64) -> Result<Option<bool>, SettleError> {
        let seq = <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .map_err(|_| SettleError::Corrupt("pending key".into()))?;
        let anchored = self
            .journal
            .status(seq)?
            .is_some_and(|st| st.status == leasemesh_settlement::journal::BatchStatus::Anchored);
        if anchored {
            return Ok(Some(true));
        }
        // Rejected (its sequence was freed) or superseded: it paid nothing.
        let dropped = seq <= head || self.journal.in_flight()?.is_none_or(|(s, _)| s != seq);
        Ok(dropped.then_some(false))
    }

    /// For each entry of `tree` (a list keyed by its batch's sequence): once that batch is
    /// anchored, hands every item to `apply` and removes the entry; drops it when the batch paid
    /// nothing. Applying again after a crash writes the same values.
    fn settle_tree<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        head: u64,
        mut apply: impl FnMut(T) -> Result<(), SettleError>,
    ) -> Result<(), SettleError> {
        for kv in tree.iter() {
            let (k, v) = kv?;
            match self.fate(&k, head)? {
                Some(true) => {
                    let list: Vec<T> = postcard::from_bytes(&v)
                        .map_err(|e| SettleError::Corrupt(e.to_string()))?;
                    for item in list {
                        apply(item)?;
                    }
                    tree.remove(&k)?;
                }
                Some(false) => {
                    tree.remove(&k)?;
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Moves cursors, shortfalls and closes of anchored batches from pending to current (a
    /// close then waits to be published); drops those of rejected ones.
    fn apply_pending(&self) -> Result<(), SettleError> {
        let head = self.journal.head()?.map_or(0, |(s, _)| s);
        self.settle_tree(&self.pending, head, |(lease, c): (Id, AccrualCursor)| {
            self.cursors.insert(lease.as_bytes(), to_canonical(&c))?;
            Ok(())
        })?;
        self.settle_tree(&self.pending_shortfalls, head, |sf: Shortfall| {
            if let Some(close) = &sf.close_hex {
                let bytes = hex::decode(close).map_err(|e| SettleError::Corrupt(e.to_string()))?;
                self.unpublished.insert(sf.lease_id.as_bytes(), bytes)?;
            }
            self.shortfalls.insert(sf.lease_id.as_bytes(), to_canonical(&sf))?;
            Ok(())
        })?;
        self.settle_tree(&self.pending_closes, head, |(lease, bytes): (Id, Vec<u8>)| {
            self.unpublished.insert(lease.as_bytes(), bytes)?;
            Ok(())
        })
    }

    /// The shortfall of a lease its tenant could not pay in full, once anchored.
    pub fn shortfall(&self, lease: &Id) -> Result<Option<Shortfall>, SettleError> {
        self.shortfalls
            .get(lease.as_bytes())?
            .map(|v| postcard::from_bytes(&v).map_err(|e| SettleError::Corrupt(e.to_string())))
            .transpose()
    }

    /// The settler's `Closed(InsufficientFunds)` and `Closed(ProviderSilent)` events of anchored
    /// batches that `store` does not hold yet: submit them through the node (they are gossiped like any lease event). Those
    /// already stored are forgotten here, so each is handed out until it lands, then never again.
    pub fn closes_to_publish(&self, store: &Store) -> Result<Vec<Signed<LeaseEvent>>, SettleError> {
        let mut out = Vec::new();
        for kv in self.unpublished.iter() {
            let (k, v) = kv?;
            let ev = Signed::<LeaseEvent>::decode(&v)
                .map_err(|e| SettleError::Corrupt(format!("stored close: {e}")))?;
            let id = ev.id();
            if store.lease_events(&ev.body.lease_id)?.iter().any(|e| e.id() == id) {
                self.unpublished.remove(&k)?;
            } else {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// What each (tenant, denom) of `accruals` can pay: the lesser of its balance and its
    /// remaining grant to the settler.
    async fn funds(&self, accruals: &[LeaseAccrual]) -> Result<Funds, SettleError> {
        let keys: BTreeSet<(String, String)> = accruals
            .iter()
            .map(|a| (a.terms.tenant_address.clone(), a.terms.price_per_hour.denom.clone()))
            .collect();
        let settler = self.address();
        let mut out = Funds::new();
        for (tenant, denom) in keys {
            let can = match &self.backend {
                Backend::Local(l) => l.spendable(&tenant, &settler, &denom)?,
                #[cfg(feature = "cosmos")]
                Backend::Cosmos(c) => {
                    use leasemesh_settlement::cosmos::SendAllowance;
                    let client = c.client();
                    let chain = |e: leasemesh_settlement::cosmos::ChainError| {
                        SettleError::Chain(e.to_string())
                    };
                    let balance = client.balance(&tenant, &denom).await.map_err(chain)?;
                    match client.send_allowance(&tenant, &settler, &denom).await.map_err(chain)? {
                        SendAllowance::Unlimited => balance,
                        SendAllowance::Limited(limit) => balance.min(limit),
                        SendAllowance::None => 0,
                    }
                }
            };
            out.insert((tenant, denom), can);
        }
        Ok(out)
    }

    fn cursor(&self, lease: &Id) -> Result<Option<AccrualCursor>, SettleError> {
        self.cursors
            .get(lease.as_bytes())?
            .map(|v| postcard::from_bytes(&v).map_err(|e| SettleError::Corrupt(e.to_string())))
            .transpose()
    }

    /// What every lease owes as of `now_ms`. Blocking (sled).
    pub fn plan(&self, store: &Store, now_ms: u64) -> Result<Vec<LeaseAccrual>, SettleError> {
        let mut out = Vec::new();
        for lease in store.leases()? {
            if lease.state == "awarded" {
                continue;
            }
            let cursor = self.cursor(&lease.lease_id)?;
            if cursor.is_some_and(|c| c.closed) {
                continue;
            }
            let Some(terms) = lease_terms(store, &lease)? else { continue };
            let events = counted_events(
                &lease,
                &self.genesis.settlers,
                store.lease_events(&lease.lease_id)?,
            );
            let timeline = LeaseTimeline::from_events(&lease.lease_id, &events);
            let Some(started) = timeline.running_at_ms else { continue };
            let beats = store.proofs_of_life(&lease.provider, started, now_ms)?;
            if let Some(a) = accrue(&terms, &timeline, &beats, cursor.as_ref(), now_ms)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Builds, signs and anchors one batch of everything owed as of `now_ms`; `None` when
    /// nothing changed. Blocking sled calls inside are short.
    pub async fn settle_once(
        &mut self,
        store: &Store,
        now_ms: u64,
    ) -> Result<Option<Round>, SettleError> {
        self.resume().await?;
        self.apply_pending()?;
        let mut accruals = self.plan(store, now_ms)?;
        if accruals.is_empty() {
            return Ok(None);
        }
        let funds = self.funds(&accruals).await?;
        // An order's signer that does not control its tenant address: nothing to charge there.
        let uncontrolled = self.uncontrolled(store, &accruals)?;
        let capped = tenant_bindings::cap_to_funds_controlled(&mut accruals, &funds, &uncontrolled);
        let (sequence, prev_batch) =
            self.journal.head()?.map_or((1, Hash::ZERO), |(s, id)| (s + 1, id));
        let shortfalls: Vec<Shortfall> = capped
            .into_iter()
            .map(|(i, (owed, paid))| self.shortfall_of(&accruals[i], owed, paid, sequence))
            .collect();
        let silent = self.silent_closes(store, &accruals)?;
        let provider_silent: Vec<Id> = accruals
            .iter()
            .filter(|a| a.closed.is_some_and(|e| e.reason == CloseReason::ProviderSilent))
            .map(|a| a.terms.lease_id)
            .collect();
        let header =
            BatchHeader { settler: self.key.public(), sequence, prev_batch, created_at_ms: now_ms };
        let body: SettlementBatch = build_batch(&header, &accruals)?;
        let records = body.records.len();
        let batch = Signed::sign(body, &self.key);
        let batch_id = batch.id();
        let cursors: Vec<(Id, AccrualCursor)> =
            accruals.iter().map(|a| (a.terms.lease_id, a.cursor)).collect();
        self.pending.insert(sequence.to_be_bytes(), to_canonical(&cursors))?;
        if shortfalls.is_empty() {
            self.pending_shortfalls.remove(sequence.to_be_bytes())?;
        } else {
            self.pending_shortfalls.insert(sequence.to_be_bytes(), to_canonical(&shortfalls))?;
        }
        if silent.is_empty() {
            self.pending_closes.remove(sequence.to_be_bytes())?;
        } else {
            self.pending_closes.insert(sequence.to_be_bytes(), to_canonical(&silent))?;
        }
        let result = match &mut self.backend {
            Backend::Local(l) => self.journal.settle(l, batch).await,
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => self.journal.settle(c.as_mut(), batch).await,
        };
        self.apply_pending()?;
        let anchor = result?;
        for sf in &shortfalls {
            tracing::warn!(
                lease = %sf.lease_id.short(), tenant = %sf.tenant_address, owed = %sf.owed,
                paid = %sf.paid, unpaid = %sf.unpaid, denom = %sf.denom,
                "tenant short of funds: lease closed"
            );
        }
        for lease in &provider_silent {
            tracing::warn!(lease = %lease.short(), "provider silent past the grace period: lease closed");
        }
        tracing::info!(sequence, batch = %batch_id.short(), leases = accruals.len(), records, height = anchor.height, "settlement batch anchored");
        Ok(Some(Round {
            sequence,
            batch_id,
            leases: accruals.len(),
            records,
            anchor,
            shortfalls,
            provider_silent,
        }))
    }

    /// The settler's signed `Closed(ProviderSilent)` for each accrual that ended for provider
    /// silence, as `(lease id, bytes)` in lease-id order; none for a lease whose store record
    /// is already closed or failed (its own event ended it for everyone).
    fn silent_closes(
        &self,
        store: &Store,
        accruals: &[LeaseAccrual],
    ) -> Result<Vec<(Id, Vec<u8>)>, SettleError> {
        let mut out = Vec::new();
        for a in accruals {
            let Some(end) = a.closed.filter(|e| e.reason == CloseReason::ProviderSilent) else {
                continue;
            };
            let lease = a.terms.lease_id;
            let ended = store
                .lease(&lease)?
                .is_some_and(|l| matches!(l.state.as_str(), "closed" | "failed"));
            if !ended {
                out.push((lease, self.settler_close(a, end).encode()));
            }
        }
        out.sort_by_key(|(lease, _)| *lease);
        Ok(out)
    }

    /// The settler's signed close of an accrual's lease, dated when it ended.
    fn settler_close(&self, a: &LeaseAccrual, end: LeaseEnd) -> Signed<LeaseEvent> {
        let ev = LeaseEvent {
            version: leasemesh_protocol::v(),
            lease_id: a.terms.lease_id,
            order_id: a.terms.order_id,
            at_ms: end.at_ms,
            kind: LeaseEventKind::Closed { reason: end.reason },
        };
        Signed::sign(ev, &self.key)
    }

    /// The record of a capped accrual, with the settler's signed close when the lease was still
    /// open.
    fn shortfall_of(&self, a: &LeaseAccrual, owed: u128, paid: u128, sequence: u64) -> Shortfall {
        let close_hex = a
            .closed
            .filter(|e| e.reason == CloseReason::InsufficientFunds)
            .map(|end| hex::encode(self.settler_close(a, end).encode()));
        Shortfall {
            lease_id: a.terms.lease_id,
            tenant_address: a.terms.tenant_address.clone(),
            provider_address: a.terms.provider_address.clone(),
            denom: a.terms.price_per_hour.denom.clone(),
            owed,
            paid,
            unpaid: owed - paid,
            batch_sequence: sequence,
            closed_at_ms: a.closed.map_or(a.to_ms, |e| e.at_ms),
            close_hex,
        }
    }

    /// Proofs for a lease in every anchored batch that holds it.
    pub fn proofs(&self, lease: &Id) -> Result<Vec<ProofView>, SettleError> {
        let mut out = Vec::new();
        for (lease_proof, anchor) in self.journal.lease_proofs(lease)? {
            let Some(batch) = self.journal.batch(lease_proof.batch_sequence)? else { continue };
            out.push(ProofView {
                batch_sequence: lease_proof.batch_sequence,
                batch_id: batch.id(),
                signed_batch_hex: hex::encode(batch.encode()),
                lease_proof,
                anchor,
            });
        }
        Ok(out)
    }

    /// Balances of an address on the backend (on Cosmos: in the genesis' denoms and the fee
    /// denom).
    /// An anchored entry of the embedded ledger by its hash (the anchor's tx hash), so anyone
    /// can check that the bytes hash to it and carry the batch's root.
    pub fn ledger_entry(
        &self,
        hash: &str,
    ) -> Result<Option<leasemesh_settlement::ledger::AnchoredEntry>, SettleError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.entry(hash)?),
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(_) => Ok(None),
        }
    }

    pub async fn balances(&self, address: &str) -> Result<Vec<Coin>, SettleError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.balances(address)?),
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => {
                let mut denoms: Vec<String> =
                    self.genesis.balances.iter().map(|b| b.denom.clone()).collect();
                denoms.push(c.client().config().fee_denom.clone());
                denoms.sort();
                denoms.dedup();
                let mut out = Vec::new();
                for d in denoms {
                    let amount = c
                        .client()
                        .balance(address, &d)
                        .await
                        .map_err(|e| SettleError::Chain(e.to_string()))?;
                    if amount > 0 {
                        out.push(Coin::new(d, amount));
                    }
                }
                Ok(out)
            }
        }
    }

    /// The remaining grant of `tenant` to this settler in `denom`.
    pub fn grant_left(&self, tenant: &str, denom: &str) -> Result<Option<u128>, SettleError> {
        Ok(self.ledger.grant(tenant, &self.address(), denom)?)
    }

    /// Applies a signed spend grant after checking who signed it.
    pub fn apply_grant(&self, g: &Signed<SpendGrant>) -> Result<(), SettleError> {
        if !self.is_local() {
            return Err(SettleError::Grant(
                "this mesh settles on a Cosmos chain: grant the settler a SendAuthorization on \
                 the chain"
                    .into(),
            ));
        }
        let b = &g.body;
        if b.settler_address != self.address() {
            return Err(SettleError::Grant(format!(
                "the grant names settler {}, this settler is {}",
                b.settler_address,
                self.address()
            )));
        }
        let controls =
            tenant_bindings::listed_controls(&self.genesis, &b.tenant_address, &g.signer);
        if !controls {
            return Err(SettleError::Grant(format!(
                "key {} does not control address {} (use the key's hex as the address, or list the key in the genesis balance)",
                g.signer, b.tenant_address
            )));
        }
        self.ledger.set_grant(
            &b.tenant_address,
            &self.address(),
            &Coin::new(b.denom.clone(), b.limit),
        )?;
        Ok(())
    }
}

/// The lease's terms from its order and its provider's latest info; `None` while either is
/// unknown here.
fn lease_terms(store: &Store, lease: &LeaseRecord) -> Result<Option<LeaseTerms>, StoreError> {
    let Some(order) = store.order(&lease.order_id)? else { return Ok(None) };
    let Some(info) = store.provider_info(&lease.provider)? else { return Ok(None) };
    Ok(Some(LeaseTerms {
        lease_id: lease.lease_id,
        order_id: lease.order_id,
        tenant_address: order.body.tenant_address.clone(),
        provider_address: info.body.chain_address.clone(),
        price_per_hour: lease.price_per_hour.clone(),
        lease_term_ms: order.body.lease_term_ms,
        grace_period_ms: order.body.grace_period_ms,
    }))
}

/// The events accrual may rely on: the provider's, the tenant's `Closed`, and a settler's
/// `Closed(InsufficientFunds)` or `Closed(ProviderSilent)`.
fn counted_events(
    lease: &LeaseRecord,
    settlers: &[PublicKey],
    events: Vec<Signed<LeaseEvent>>,
) -> Vec<LeaseEvent> {
    let settler_close = |k: &LeaseEventKind| {
        matches!(
            k,
            LeaseEventKind::Closed {
                reason: CloseReason::InsufficientFunds | CloseReason::ProviderSilent
            }
        )
    };
    events
        .into_iter()
        .filter(|e| {
            e.signer == lease.provider
                || (matches!(e.body.kind, LeaseEventKind::Closed { .. })
                    && Some(e.signer) == lease.tenant)
                || (settler_close(&e.body.kind) && settlers.contains(&e.signer))
        })
        .map(|e| e.body)
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ingest::{Ingest, Kind, Reason};
    use leasemesh_protocol::{samples, Award, CloseReason, Keypair, MatchBatch};
    use leasemesh_settlement::batch::verify_lease_proof;

    /// The sample settler's match batch awarding `awards`, its lists sorted as a batch must be.
    pub(crate) fn batch_awarding(awards: &[Award]) -> Signed<MatchBatch> {
        let mut mb = samples::match_batch();
        mb.order_ids = awards.iter().map(|a| a.order_id).collect();
        mb.order_ids.sort();
        mb.bid_ids = awards.iter().map(|a| a.bid_id).collect();
        mb.bid_ids.sort();
        mb.awards = awards.to_vec();
        mb.awards.sort_by_key(|a| a.order_id);
        Signed::sign(mb, &samples::settler_key())
    }

    /// `award`'s lease Running at `at`, signed by its provider `pk`.
    pub(crate) fn running(award: &Award, pk: &Keypair, at: u64) -> Vec<u8> {
        let ev = LeaseEvent {
            version: leasemesh_protocol::v(),
            lease_id: award.lease_id(),
            order_id: award.order_id,
            at_ms: at,
            kind: LeaseEventKind::Running { endpoints: vec![] },
        };
        Signed::sign(ev, pk).encode()
    }

    /// Provider `pk`'s heartbeat number `seq` at `at_ms`.
    pub(crate) fn heartbeat(pk: &Keypair, seq: u64, at_ms: u64, info_sequence: u64) -> Vec<u8> {
        let hb = leasemesh_protocol::Heartbeat {
            version: leasemesh_protocol::v(),
            provider: pk.public(),
            sequence: seq,
            at_ms,
            info_sequence,
        };
        Signed::sign(hb, pk).encode()
    }

    fn genesis(tenant_address: &str, denom: &str) -> Genesis {
        Genesis {
            network: "t".into(),
            epoch_ms: 1000,
            settle_delay_ms: 300,
            leader_timeout_ms: 2000,
            settlers: vec![samples::settler_key().public()],
            settlement: Default::default(),
            balances: vec![super::super::genesis::GenesisBalance {
                address: tenant_address.into(),
                denom: denom.into(),
                amount: 1_000_000_000,
                key: Some(samples::tenant_key().public()),
            }],
            grants: vec![],
        }
    }

    async fn open(path: &Path, g: Genesis) -> Settlement {
        Settlement::open(
            path,
            samples::settler_key(),
            g,
            #[cfg(feature = "cosmos")]
            None,
        )
        .await
        .unwrap()
    }

    fn ev(key: &Keypair, kind: LeaseEventKind, at: u64) -> Vec<u8> {
        let a = samples::award();
        Signed::sign(
            LeaseEvent {
                version: leasemesh_protocol::v(),
                lease_id: a.lease_id(),
                order_id: a.order_id,
                at_ms: at,
                kind,
            },
            key,
        )
        .encode()
    }

    #[tokio::test]
    async fn a_closed_lease_is_paid_anchored_and_proven() {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = Store::temporary().unwrap();
        let ing = Ingest::new(store.clone(), tx);
        let order = samples::signed_order();
        let now = samples::SAMPLE_TIME_MS + 1;
        assert_eq!(ing.ingest(Kind::Order, &[&order.encode()], now)[0].reason, Reason::Ok);
        let info = Signed::sign(samples::provider_info(), &samples::provider_key());
        assert_eq!(ing.ingest(Kind::ProviderInfo, &[&info.encode()], now)[0].reason, Reason::Ok);
        let batch = Signed::sign(samples::match_batch(), &samples::settler_key());
        assert_eq!(ing.ingest(Kind::MatchBatch, &[&batch.encode()], now)[0].reason, Reason::Ok);
        let price = samples::award().price_per_hour;
        let t0 = now + 1000;
        let pk = samples::provider_key();
        let running = ev(&pk, LeaseEventKind::Running { endpoints: vec![] }, t0);
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&running], now)[0].reason, Reason::Ok);
        // The tenant signs Running: does not count.
        let fake =
            ev(&samples::tenant_key(), LeaseEventKind::Running { endpoints: vec![] }, t0 - 500);
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&fake], now)[0].reason, Reason::Ok);
        let hb = |seq: u64, at: u64| {
            Signed::sign(
                leasemesh_protocol::Heartbeat {
                    version: leasemesh_protocol::v(),
                    provider: pk.public(),
                    sequence: seq,
                    at_ms: at,
                    info_sequence: 1,
                },
                &pk,
            )
            .encode()
        };
        for i in 1..=3u64 {
            ing.ingest(Kind::Heartbeat, &[&hb(i, t0 + i * 1000)], now);
        }
        let closed = ev(
            &samples::tenant_key(),
            LeaseEventKind::Closed { reason: CloseReason::TenantClosed },
            t0 + 3600,
        );
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&closed], now)[0].reason, Reason::Ok);

        let dir = tempfile::tempdir().unwrap();
        let tenant_address = order.body.tenant_address.clone();
        let g = genesis(&tenant_address, &price.denom);
        let mut s = open(&dir.path().join("s"), g.clone()).await;
        let grant = Signed::sign(
            SpendGrant {
                version: 1,
                tenant_address: tenant_address.clone(),
                settler_address: s.address(),
                denom: price.denom.clone(),
                limit: 1_000_000_000,
                created_at_ms: now,
            },
            &samples::tenant_key(),
        );
        s.apply_grant(&grant).unwrap();
        let stranger = Signed::sign(grant.body.clone(), &Keypair::from_seed_label("x"));
        assert!(s.apply_grant(&stranger).is_err());

        let round = s.settle_once(&store, t0 + 10_001).await.unwrap().unwrap();
        let want = price.amount * 3 / 3600; // 3.6 s run, whole seconds only
        let paid = s.balances(&info.body.chain_address).await.unwrap();
        assert_eq!(
            paid,
            if want == 0 { vec![] } else { vec![Coin::new(price.denom.clone(), want)] }
        );
        let proofs = s.proofs(&samples::award().lease_id()).unwrap();
        assert_eq!(proofs.len(), 1);
        assert_eq!(proofs[0].batch_sequence, round.sequence);
        assert!(round.shortfalls.is_empty());
        assert!(verify_lease_proof(&proofs[0].lease_proof, &proofs[0].lease_proof.merkle_root));
        let signed = Signed::<SettlementBatch>::decode_verified(
            &hex::decode(&proofs[0].signed_batch_hex).unwrap(),
        )
        .unwrap();
        assert_eq!(signed.body.merkle_root, proofs[0].lease_proof.merkle_root);
        // Closed: nothing more to settle, and a reopen does not pay twice.
        assert!(s.settle_once(&store, t0 + 20_000).await.unwrap().is_none());
        drop(s);
        let mut s = open(&dir.path().join("s"), g).await;
        assert!(s.settle_once(&store, t0 + 30_000).await.unwrap().is_none());
        assert_eq!(s.balances(&info.body.chain_address).await.unwrap(), paid);
    }

    fn accrual(lease: u8, tenant: &str, amount: u128, closed: Option<CloseReason>) -> LeaseAccrual {
        LeaseAccrual {
            terms: LeaseTerms {
                // Ids that sort as the numbers do.
                lease_id: Hash([lease; 32]),
                order_id: Hash::domain("test/order", &[&[lease]]),
                tenant_address: tenant.into(),
                provider_address: "p".into(),
                price_per_hour: Coin::new("uakt", 3600),
                lease_term_ms: 3_600_000,
                grace_period_ms: 60_000,
            },
            opened_at_ms: None,
            from_ms: 1000,
            to_ms: 5000,
            amount,
            closed: closed.map(|reason| LeaseEnd { at_ms: 4000, reason }),
            cursor: AccrualCursor {
                started_at_ms: 0,
                accrued_to_ms: 5000,
                accrued_amount: amount + 100,
                closed: closed.is_some(),
            },
        }
    }

    #[test]
    fn a_short_tenant_pays_what_it_has_in_lease_order_and_its_leases_end() {
        let mut accruals = vec![
            accrual(3, "poor", 40, None),
            accrual(1, "poor", 50, Some(CloseReason::TenantClosed)),
            accrual(2, "rich", 70, None),
            accrual(4, "poor", 0, None),
        ];
        let mut funds = Funds::new();
        funds.insert(("poor".into(), "uakt".into()), 60);
        funds.insert(("rich".into(), "uakt".into()), 70);
        let capped = cap_to_funds(&mut accruals, &funds);
        // Lease 1 comes first by id: paid in full; lease 3 gets the last 10; lease 4 nothing.
        assert_eq!(capped, BTreeMap::from([(0, (40, 10)), (1, (50, 50)), (3, (0, 0))]));
        assert_eq!(accruals.iter().map(|a| a.amount).collect::<Vec<_>>(), vec![10, 50, 70, 0]);
        // The rich tenant can pay exactly what it owes: untouched.
        assert_eq!(accruals[2], accrual(2, "rich", 70, None));
        // Still-open leases end where they were charged to; a lease that already ended keeps
        // its own reason. All are closed for good.
        let end = |a: &LeaseAccrual| a.closed.map(|e| (e.at_ms, e.reason));
        assert_eq!(end(&accruals[0]), Some((5000, CloseReason::InsufficientFunds)));
        assert_eq!(end(&accruals[1]), Some((4000, CloseReason::TenantClosed)));
        assert_eq!(end(&accruals[3]), Some((5000, CloseReason::InsufficientFunds)));
        assert!(accruals
            .iter()
            .filter(|a| a.terms.tenant_address == "poor")
            .all(|a| a.cursor.closed));
        assert_eq!(accruals[0].cursor.accrued_amount, 110, "the cursor counts what was charged");
        // Nothing known about a tenant: it can pay nothing.
        let mut lone = vec![accrual(9, "unknown", 1, None)];
        assert_eq!(cap_to_funds(&mut lone, &Funds::new()), BTreeMap::from([(0, (1, 0))]));
        // Zero owed with zero funds is not a shortfall.
        let mut free = vec![accrual(9, "unknown", 0, None)];
        assert!(cap_to_funds(&mut free, &Funds::new()).is_empty());
    }

    /// Three tenants lease from one provider; one granted the settler too little. The batch
    /// still anchors, the others pay in full, the short tenant pays what its grant allows and
    /// its lease is closed by a settler-signed `Closed(InsufficientFunds)`; nothing is charged
    /// twice, also across a restart.
    #[tokio::test]
    async fn a_tenant_out_of_funds_is_closed_and_the_batch_still_anchors() {
        let settler = samples::settler_key();
        let (tx, _) = tokio::sync::broadcast::channel(64);
        let store = Store::temporary().unwrap();
        let ing = Ingest::new(store.clone(), tx).with_settlers(vec![settler.public()]);
        let now = samples::SAMPLE_TIME_MS + 1;
        let ok = |kind, bytes: &[u8]| {
            let r = ing.ingest(kind, &[bytes], now);
            assert_eq!(r[0].reason, Reason::Ok, "{}", r[0].detail);
        };
        let pk = samples::provider_key();
        let info = Signed::sign(samples::provider_info(), &pk);
        ok(Kind::ProviderInfo, &info.encode());
        let provider_address = info.body.chain_address.clone();
        let price = Coin::new("uakt", 450_000); // 125 per second
        let names = ["rich-a", "rich-b", "poor"];
        let mut awards = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let key = Keypair::from_seed_label(name);
            let mut o = samples::order();
            o.tenant = key.public();
            o.tenant_address = format!("addr-{name}");
            o.nonce = i as u64;
            let o = Signed::sign(o, &key);
            ok(Kind::Order, &o.encode());
            awards.push(leasemesh_protocol::Award {
                order_id: o.id(),
                bid_id: Hash::domain("test/bid", &[name.as_bytes()]),
                provider: pk.public(),
                price_per_hour: price.clone(),
                assignments: samples::award().assignments,
            });
        }
        ok(Kind::MatchBatch, &batch_awarding(&awards).encode());
        let t0 = now + 1000;
        for a in &awards {
            ok(Kind::LeaseEvent, &running(a, &pk, t0));
        }
        for i in 1..=10u64 {
            ok(Kind::Heartbeat, &heartbeat(&pk, i, t0 + i * 1000, 1));
        }

        let poor_lease = awards[2].lease_id();
        let mut g = genesis("addr-rich-a", &price.denom);
        g.balances.clear();
        for name in names {
            g.balances.push(super::super::genesis::GenesisBalance {
                address: format!("addr-{name}"),
                denom: price.denom.clone(),
                amount: 1_000_000,
                // The order's signer controls the address it names.
                key: Some(Keypair::from_seed_label(name).public()),
            });
            // The poor tenant granted the settler 300: less than 5 s of its lease (625).
            let limit = if name == "poor" { 300 } else { 1_000_000 };
            g.grants.push(super::super::genesis::GenesisGrant {
                tenant: format!("addr-{name}"),
                denom: price.denom.clone(),
                limit,
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir.path().join("s"), g.clone()).await;
        let balance = |s: &Settlement, a: &str| s.ledger.balance(a, &price.denom).unwrap();

        let round = s.settle_once(&store, t0 + 5_000).await.unwrap().expect("a batch");
        assert_eq!(round.leases, 3);
        assert_eq!(balance(&s, "addr-rich-a"), 1_000_000 - 625);
        assert_eq!(balance(&s, "addr-rich-b"), 1_000_000 - 625);
        assert_eq!(balance(&s, "addr-poor"), 1_000_000 - 300);
        assert_eq!(balance(&s, &provider_address), 625 + 625 + 300);
        assert_eq!(s.grant_left("addr-poor", &price.denom).unwrap(), None, "grant spent");
        let want = Shortfall {
            lease_id: poor_lease,
            tenant_address: "addr-poor".into(),
            provider_address: provider_address.clone(),
            denom: price.denom.clone(),
            owed: 625,
            paid: 300,
            unpaid: 325,
            batch_sequence: round.sequence,
            closed_at_ms: t0 + 5_000,
            close_hex: round.shortfalls.first().and_then(|x| x.close_hex.clone()),
        };
        assert_eq!(round.shortfalls, vec![want.clone()]);
        assert_eq!(s.shortfall(&poor_lease).unwrap(), Some(want));
        assert_eq!(s.shortfall(&awards[0].lease_id()).unwrap(), None);

        // The anchored batch says why the lease ended, and what it was charged.
        let proof = &s.proofs(&poor_lease).unwrap()[0].lease_proof;
        let has =
            |r: &leasemesh_protocol::SettlementRecord| proof.records.iter().any(|p| &p.record == r);
        assert!(has(&leasemesh_protocol::SettlementRecord::LeaseClosed {
            lease_id: poor_lease,
            closed_at_ms: t0 + 5_000,
            reason: CloseReason::InsufficientFunds,
        }));
        assert!(proof.records.iter().any(|p| matches!(
            &p.record,
            leasemesh_protocol::SettlementRecord::Accrual { amount: 300, .. }
        )));

        // The settler's close, to publish; the node accepts it and the lease is closed.
        let closes = s.closes_to_publish(&store).unwrap();
        assert_eq!(closes.len(), 1);
        let close = &closes[0];
        assert_eq!(close.signer, settler.public());
        assert_eq!(close.body.lease_id, poor_lease);
        assert_eq!(close.body.order_id, awards[2].order_id);
        assert_eq!(
            close.body.kind,
            LeaseEventKind::Closed { reason: CloseReason::InsufficientFunds }
        );
        assert_eq!(close.body.at_ms, t0 + 5_000);
        ok(Kind::LeaseEvent, &close.encode());
        assert_eq!(store.lease(&poor_lease).unwrap().unwrap().state, "closed");
        assert!(s.closes_to_publish(&store).unwrap().is_empty(), "published once");

        // The next round pays the others in full and nothing more for the closed lease, even
        // though the provider's heartbeats go on and the tenant is funded again.
        s.ledger
            .set_grant("addr-poor", &s.address(), &Coin::new(price.denom.clone(), 1_000_000))
            .unwrap();
        let round = s.settle_once(&store, t0 + 10_000).await.unwrap().expect("a batch");
        assert_eq!(round.leases, 2);
        assert!(round.shortfalls.is_empty());
        assert_eq!(balance(&s, "addr-rich-a"), 1_000_000 - 1250);
        assert_eq!(balance(&s, "addr-poor"), 1_000_000 - 300);
        assert_eq!(balance(&s, &provider_address), 1250 + 1250 + 300);
        assert_eq!(s.proofs(&poor_lease).unwrap().len(), 1);
        drop(s);
        let mut s = open(&dir.path().join("s"), g).await;
        assert!(s.settle_once(&store, t0 + 10_000).await.unwrap().is_none());
        assert_eq!(balance(&s, &provider_address), 1250 + 1250 + 300);
        assert!(s.closes_to_publish(&store).unwrap().is_empty());
    }

    /// Two providers each run one lease; one provider's heartbeats stop. Its lease is charged
    /// up to its last heartbeat and no further, the batch that sees the silence past the grace
    /// period closes it (`LeaseClosed(ProviderSilent)`), the settler publishes a signed
    /// `Closed(ProviderSilent)` once that batch is anchored (kept across a restart until the
    /// store holds it), and when the provider comes back nothing more is charged for the lease.
    #[tokio::test]
    async fn a_silent_provider_lease_is_closed_and_never_charged_again() {
        use leasemesh_protocol::SettlementRecord;
        let settler = samples::settler_key();
        let (tx, mut rx) = tokio::sync::broadcast::channel(64);
        let store = Store::temporary().unwrap();
        let ing = Ingest::new(store.clone(), tx).with_settlers(vec![settler.public()]);
        let now = samples::SAMPLE_TIME_MS + 1;
        let ok = |kind, bytes: &[u8]| {
            let r = ing.ingest(kind, &[bytes], now);
            assert_eq!(r[0].reason, Reason::Ok, "{}", r[0].detail);
        };
        // "dark" falls silent; "steady" keeps beating.
        let providers: Vec<(Keypair, String)> = ["dark", "steady"]
            .iter()
            .map(|name| {
                let key = Keypair::from_seed_label(&format!("provider-{name}"));
                let mut info = samples::provider_info();
                info.provider = key.public();
                info.chain_address = format!("addr-provider-{name}");
                ok(Kind::ProviderInfo, &Signed::sign(info, &key).encode());
                (key, format!("addr-provider-{name}"))
            })
            .collect();
        let price = Coin::new("uakt", 450_000); // 125 per second
        let grace = samples::order().grace_period_ms;
        assert_eq!(grace, 30_000);
        let mut awards = Vec::new();
        for (i, (pk, _)) in providers.iter().enumerate() {
            let key = Keypair::from_seed_label(&format!("tenant-{i}"));
            let mut o = samples::order();
            o.tenant = key.public();
            o.tenant_address = format!("addr-tenant-{i}");
            o.nonce = i as u64;
            let o = Signed::sign(o, &key);
            ok(Kind::Order, &o.encode());
            awards.push(leasemesh_protocol::Award {
                order_id: o.id(),
                bid_id: Hash::domain("test/bid", &[&[i as u8]]),
                provider: pk.public(),
                price_per_hour: price.clone(),
                assignments: samples::award().assignments,
            });
        }
        ok(Kind::MatchBatch, &batch_awarding(&awards).encode());
        let t0 = now + 1000;
        for (a, (pk, _)) in awards.iter().zip(&providers) {
            ok(Kind::LeaseEvent, &running(a, pk, t0));
        }
        let beat = |pk: &Keypair, seq: u64, at_ms: u64| {
            ok(Kind::Heartbeat, &heartbeat(pk, seq, at_ms, 3));
        };
        // The dark provider beats for 10 s, then nothing; the steady one for a minute.
        for i in 1..=10u64 {
            beat(&providers[0].0, i, t0 + i * 1000);
        }
        for i in 1..=60u64 {
            beat(&providers[1].0, i, t0 + i * 1000);
        }
        let dark = awards[0].lease_id();
        let steady = awards[1].lease_id();

        let mut g = genesis("addr-tenant-0", &price.denom);
        g.balances.clear();
        for i in 0..2 {
            g.balances.push(super::super::genesis::GenesisBalance {
                address: format!("addr-tenant-{i}"),
                denom: price.denom.clone(),
                amount: 1_000_000,
                key: Some(Keypair::from_seed_label(&format!("tenant-{i}")).public()),
            });
            g.grants.push(super::super::genesis::GenesisGrant {
                tenant: format!("addr-tenant-{i}"),
                denom: price.denom.clone(),
                limit: 1_000_000,
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir.path().join("s"), g.clone()).await;
        let balance = |s: &Settlement, a: &str| s.ledger.balance(a, &price.denom).unwrap();
        let (dark_addr, steady_addr) = (providers[0].1.clone(), providers[1].1.clone());

        // 5 s in, both are alive: both pay 5 s.
        let round = s.settle_once(&store, t0 + 5_000).await.unwrap().expect("a batch");
        assert_eq!(round.leases, 2);
        assert!(round.provider_silent.is_empty());
        assert_eq!(balance(&s, &dark_addr), 625);
        assert_eq!(balance(&s, &steady_addr), 625);
        assert!(s.closes_to_publish(&store).unwrap().is_empty());

        // Within the grace period after the last heartbeat (t0 + 10 s), the dark lease is
        // charged up to that heartbeat and stays open.
        let round = s.settle_once(&store, t0 + 10_000 + grace).await.unwrap().expect("a batch");
        assert!(round.provider_silent.is_empty());
        assert_eq!(balance(&s, &dark_addr), 1250);
        assert!(s.closes_to_publish(&store).unwrap().is_empty());
        assert_eq!(store.lease(&dark).unwrap().unwrap().state, "running");

        // Past it: the lease ends at its last heartbeat, with nothing more charged for it.
        let round =
            s.settle_once(&store, t0 + 10_000 + grace + 1_000).await.unwrap().expect("a batch");
        assert_eq!(round.provider_silent, vec![dark]);
        assert!(round.shortfalls.is_empty());
        assert_eq!(balance(&s, &dark_addr), 1250, "charged up to the last heartbeat only");
        assert_eq!(balance(&s, "addr-tenant-0"), 1_000_000 - 1250);
        assert_eq!(balance(&s, &steady_addr), 41 * 125);
        let proofs = s.proofs(&dark).unwrap();
        assert_eq!(proofs.len(), 3);
        let last = &proofs[2].lease_proof;
        assert_eq!(last.batch_sequence, round.sequence);
        assert!(verify_lease_proof(last, &last.merkle_root));
        let records: Vec<&SettlementRecord> = last.records.iter().map(|p| &p.record).collect();
        assert_eq!(
            records,
            vec![&SettlementRecord::LeaseClosed {
                lease_id: dark,
                closed_at_ms: t0 + 10_000,
                reason: CloseReason::ProviderSilent,
            }],
            "the batch that saw the silence only closes the lease"
        );

        // The settler's close, signed after the batch anchored; a restart keeps it until the
        // store holds it.
        let check = |closes: &[Signed<LeaseEvent>]| {
            assert_eq!(closes.len(), 1);
            let c = &closes[0];
            assert_eq!(c.signer, settler.public());
            assert_eq!(c.body.lease_id, dark);
            assert_eq!(c.body.order_id, awards[0].order_id);
            assert_eq!(c.body.kind, LeaseEventKind::Closed { reason: CloseReason::ProviderSilent });
            assert_eq!(c.body.at_ms, t0 + 10_000);
        };
        check(&s.closes_to_publish(&store).unwrap());
        drop(s);
        let mut s = open(&dir.path().join("s"), g.clone()).await;
        let closes = s.closes_to_publish(&store).unwrap();
        check(&closes);
        while rx.try_recv().is_ok() {}
        ok(Kind::LeaseEvent, &closes[0].encode());
        assert_eq!(store.lease(&dark).unwrap().unwrap().state, "closed");
        assert_eq!(store.lease(&steady).unwrap().unwrap().state, "running");
        // The node announces the close: what the provider role stops the containers on.
        match rx.try_recv() {
            Ok(crate::events::NodeEvent::Lease { lease_id, state, .. }) => {
                assert_eq!((lease_id, state.as_str()), (dark, "closed"));
            }
            other => panic!("expected the lease's close, got {other:?}"),
        }
        assert!(s.closes_to_publish(&store).unwrap().is_empty(), "published once");

        // The dark provider comes back: its lease is closed, nothing more is charged for it.
        for i in 11..=20u64 {
            beat(&providers[0].0, i, t0 + 40_000 + i * 1000);
        }
        let round = s.settle_once(&store, t0 + 60_000).await.unwrap().expect("a batch");
        assert_eq!(round.leases, 1);
        assert!(round.provider_silent.is_empty());
        assert_eq!(balance(&s, &dark_addr), 1250);
        assert_eq!(balance(&s, &steady_addr), 60 * 125);
        assert_eq!(s.proofs(&dark).unwrap().len(), 3);
        drop(s);
        let mut s = open(&dir.path().join("s"), g).await;
        assert!(s.settle_once(&store, t0 + 60_000).await.unwrap().is_none());
        assert_eq!(balance(&s, &dark_addr), 1250);
        assert!(s.closes_to_publish(&store).unwrap().is_empty());
    }

    /// A lease that its own close already ended gets no settler close, even when accrual found
    /// its provider silent before that close.
    #[tokio::test]
    async fn a_lease_already_closed_gets_no_silence_close() {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = Store::temporary().unwrap();
        let ing =
            Ingest::new(store.clone(), tx).with_settlers(vec![samples::settler_key().public()]);
        let now = samples::SAMPLE_TIME_MS + 1;
        let order = samples::signed_order();
        assert_eq!(ing.ingest(Kind::Order, &[&order.encode()], now)[0].reason, Reason::Ok);
        let info = Signed::sign(samples::provider_info(), &samples::provider_key());
        assert_eq!(ing.ingest(Kind::ProviderInfo, &[&info.encode()], now)[0].reason, Reason::Ok);
        let batch = Signed::sign(samples::match_batch(), &samples::settler_key());
        assert_eq!(ing.ingest(Kind::MatchBatch, &[&batch.encode()], now)[0].reason, Reason::Ok);
        let t0 = now + 1000;
        let pk = samples::provider_key();
        let running = ev(&pk, LeaseEventKind::Running { endpoints: vec![] }, t0);
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&running], now)[0].reason, Reason::Ok);
        // No heartbeat at all; the tenant closes after a minute.
        let closed = ev(
            &samples::tenant_key(),
            LeaseEventKind::Closed { reason: CloseReason::TenantClosed },
            t0 + 60_000,
        );
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&closed], now)[0].reason, Reason::Ok);
        let dir = tempfile::tempdir().unwrap();
        let g = genesis(&order.body.tenant_address, &samples::award().price_per_hour.denom);
        let mut s = open(&dir.path().join("s"), g).await;
        let round = s.settle_once(&store, t0 + 120_000).await.unwrap().expect("a batch");
        // Accrual: silent from the start, so nothing owed, and the batch says why.
        assert_eq!(round.provider_silent, vec![samples::award().lease_id()]);
        assert_eq!(s.balances(&info.body.chain_address).await.unwrap(), vec![]);
        assert!(s.closes_to_publish(&store).unwrap().is_empty());
    }
}
