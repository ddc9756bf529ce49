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
//!
//! # Shape
//! The rules of a round (plan, cap to funds, draft, pending fate) are
//! [`leasemesh_settlement::round`]'s, fed from the node's store through [`StoreLeases`]. This
//! file owns the settlement database and the anchoring: a round takes the [`Backend`] (the
//! only lock here) for as long as the journal needs it, while everything the routes read
//! (proofs, shortfalls, balances, grants, bindings) is read from sled or the chain without it.

use std::collections::BTreeSet;
use std::path::Path;

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::{
    Anchor as AnchorRecord, Coin, Id, Keypair, LeaseEvent, Order, ProviderInfo, PublicKey,
    SettlementBatch, Signed,
};
use leasemesh_settlement::accrual::AccrualCursor;
use leasemesh_settlement::anchor::{Anchor, AnchorError, Confirmation, PreparedAnchor};
use leasemesh_settlement::batch::LeaseProof;
use leasemesh_settlement::journal::{BatchStatus, Journal, JournalError};
use leasemesh_settlement::ledger::LocalLedger;
use leasemesh_settlement::round::{
    self, pending_fate, Draft, Funds, LeaseSource, LeaseView, PendingFate, Plan, RoundError,
    SourceError,
};
use serde::Serialize;
use tokio::sync::Mutex;

use super::bindings::Bindings;
use super::genesis::Genesis;
use crate::store::{LeaseState, Store, StoreError};

pub use leasemesh_settlement::round::Shortfall;

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
    #[error("settlement round: {0}")]
    Round(#[from] RoundError),
    #[error("bindings: {0}")]
    Bind(#[from] leasemesh_settlement::control::BindError),
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

/// The node's store as the round's [`LeaseSource`].
#[derive(Debug, Clone, Copy)]
pub struct StoreLeases<'a>(pub &'a Store);

impl LeaseSource for StoreLeases<'_> {
    fn leases(&self) -> Result<Vec<LeaseView>, SourceError> {
        let leases = self.0.leases().map_err(SourceError::new)?;
        Ok(leases
            .into_iter()
            .map(|l| LeaseView {
                lease_id: l.lease_id,
                order_id: l.order_id,
                provider: l.provider,
                tenant: l.tenant,
                started: l.state != LeaseState::Awarded,
                ended: matches!(l.state, LeaseState::Closed | LeaseState::Failed),
                price_per_hour: l.price_per_hour,
            })
            .collect())
    }
    fn order(&self, id: &Id) -> Result<Option<Signed<Order>>, SourceError> {
        self.0.order(id).map_err(SourceError::new)
    }
    fn provider_info(&self, p: &PublicKey) -> Result<Option<Signed<ProviderInfo>>, SourceError> {
        self.0.provider_info(p).map_err(SourceError::new)
    }
    fn lease_events(&self, lease: &Id) -> Result<Vec<Signed<LeaseEvent>>, SourceError> {
        self.0.lease_events(lease).map_err(SourceError::new)
    }
    fn proofs_of_life(&self, p: &PublicKey, from: u64, to: u64) -> Result<Vec<u64>, SourceError> {
        self.0.proofs_of_life(p, from, to).map_err(SourceError::new)
    }
}

/// Where batches are anchored.
#[derive(Debug)]
pub enum Backend {
    /// The embedded ledger (the default).
    Local(LocalLedger),
    /// A Cosmos SDK chain: payments move by authz from the tenants' own grants on the chain.
    #[cfg(feature = "cosmos")]
    Cosmos(Box<leasemesh_settlement::cosmos::Cosmos>),
    /// Tests: the embedded ledger behind a gate that holds every step until it is opened.
    #[cfg(test)]
    #[allow(private_interfaces)]
    Gated(tests::Gated),
}

impl Anchor for Backend {
    async fn prepare(
        &mut self,
        batch: &Signed<SettlementBatch>,
    ) -> Result<PreparedAnchor, AnchorError> {
        match self {
            Backend::Local(l) => l.prepare(batch).await,
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => c.prepare(batch).await,
            #[cfg(test)]
            Backend::Gated(g) => g.prepare(batch).await,
        }
    }

    async fn submit(&mut self, prepared: &PreparedAnchor) -> Result<(), AnchorError> {
        match self {
            Backend::Local(l) => l.submit(prepared).await,
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => c.submit(prepared).await,
            #[cfg(test)]
            Backend::Gated(g) => g.submit(prepared).await,
        }
    }

    async fn confirm(&mut self, prepared: &PreparedAnchor) -> Result<Confirmation, AnchorError> {
        match self {
            Backend::Local(l) => l.confirm(prepared).await,
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => c.confirm(prepared).await,
            #[cfg(test)]
            Backend::Gated(g) => g.confirm(prepared).await,
        }
    }
}

/// What the routes ask the backend, without taking it from the round: the settler's address,
/// and on a chain, a client of its own for queries.
#[derive(Debug, Clone)]
enum Reader {
    Local,
    #[cfg(feature = "cosmos")]
    Chain {
        address: String,
        client: Box<leasemesh_settlement::cosmos::ChainClient>,
    },
}

impl Reader {
    fn of(backend: &Backend) -> Reader {
        match backend {
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => Reader::Chain {
                address: c.address().to_string(),
                client: Box::new(c.client().clone()),
            },
            _ => Reader::Local,
        }
    }

    /// The chain's address prefix; `None` on the embedded ledger.
    fn chain_prefix(&self) -> Option<String> {
        match self {
            Reader::Local => None,
            #[cfg(feature = "cosmos")]
            Reader::Chain { client, .. } => Some(client.config().account_prefix.clone()),
        }
    }

    /// What `tenant` can pay `settler` in `denom`: the lesser of its balance and its grant.
    async fn spendable(
        &self,
        ledger: &LocalLedger,
        tenant: &str,
        settler: &str,
        denom: &str,
    ) -> Result<u128, SettleError> {
        match self {
            Reader::Local => Ok(ledger.spendable(tenant, settler, denom)?),
            #[cfg(feature = "cosmos")]
            Reader::Chain { client, .. } => {
                use leasemesh_settlement::cosmos::SendAllowance;
                let chain =
                    |e: leasemesh_settlement::cosmos::ChainError| SettleError::Chain(e.to_string());
                let balance = client.balance(tenant, denom).await.map_err(chain)?;
                Ok(match client.send_allowance(tenant, settler, denom).await.map_err(chain)? {
                    SendAllowance::Unlimited => balance,
                    SendAllowance::Limited(limit) => balance.min(limit),
                    SendAllowance::None => 0,
                })
            }
        }
    }
}

/// The settlement settler's state: journal, ledger and cursors in one sled database.
#[derive(Debug)]
pub struct Settlement {
    journal: Journal,
    /// The embedded ledger (unused, and empty, with the Cosmos backend).
    ledger: LocalLedger,
    /// Taken by a round for as long as it anchors; nothing else waits on it.
    backend: Mutex<Backend>,
    reader: Reader,
    /// Lease id → its cursor as of the last anchored batch.
    cursors: sled::Tree,
    /// Batch sequence → the cursors of that batch, until it is anchored or dropped.
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
    bindings: Bindings,
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
        let ledger = LocalLedger::with_db(&db, settler_address(&key.public()))?;
        #[cfg(feature = "cosmos")]
        let backend = match chain {
            Some(c) => Backend::Cosmos(Box::new(c)),
            None => Backend::Local(ledger.clone()),
        };
        #[cfg(not(feature = "cosmos"))]
        let backend = Backend::Local(ledger.clone());
        Settlement::with_backend(db, ledger, backend, key, genesis).await
    }

    async fn with_backend(
        db: sled::Db,
        ledger: LocalLedger,
        backend: Backend,
        key: Keypair,
        genesis: Genesis,
    ) -> Result<Settlement, SettleError> {
        let reader = Reader::of(&backend);
        let s = Settlement {
            journal: Journal::with_db(&db)?,
            ledger,
            backend: Mutex::new(backend),
            bindings: Bindings::open(&db, &genesis, reader.chain_prefix())?,
            reader,
            cursors: db.open_tree("settler/cursors")?,
            pending: db.open_tree("settler/pending_cursors")?,
            pending_shortfalls: db.open_tree("settler/pending_shortfalls")?,
            shortfalls: db.open_tree("settler/shortfalls")?,
            pending_closes: db.open_tree("settler/pending_closes")?,
            unpublished: db.open_tree("settler/unpublished_closes")?,
            meta: db.open_tree("settler/meta")?,
            key,
            genesis,
        };
        if s.is_local() {
            s.apply_genesis()?;
            db.flush_async().await?;
        }
        s.journal.resume(&mut *s.backend.lock().await).await?;
        s.apply_pending()?;
        Ok(s)
    }

    /// Funds the genesis balances and grants on the embedded ledger, once.
    fn apply_genesis(&self) -> Result<(), SettleError> {
        let digest = self.genesis.digest();
        match self.meta.get(GENESIS_APPLIED)? {
            Some(d) if d.as_ref() == digest.as_bytes().as_slice() => return Ok(()),
            Some(_) => {
                tracing::warn!(
                    "the genesis changed since the ledger was created; balances are not re-applied"
                );
                return Ok(());
            }
            None => {}
        }
        let address = self.address();
        for b in &self.genesis.balances {
            self.ledger.fund(&b.address, &Coin::new(b.denom.clone(), b.amount))?;
        }
        for g in &self.genesis.grants {
            self.ledger.set_grant(&g.tenant, &address, &Coin::new(g.denom.clone(), g.limit))?;
        }
        self.meta.insert(GENESIS_APPLIED, digest.as_bytes().as_slice())?;
        Ok(())
    }

    /// True on the embedded ledger (balances and grants live here).
    pub fn is_local(&self) -> bool {
        matches!(self.reader, Reader::Local)
    }

    /// The settler's address on the backend: its key in hex on the embedded ledger, its chain
    /// account on Cosmos (the grantee of the tenants' spend grants).
    pub fn address(&self) -> String {
        match &self.reader {
            Reader::Local => settler_address(&self.key.public()),
            #[cfg(feature = "cosmos")]
            Reader::Chain { address, .. } => address.clone(),
        }
    }

    #[cfg(test)]
    pub(crate) fn ledger(&self) -> &LocalLedger {
        &self.ledger
    }

    /// Who controls which tenant address.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// The fate of pending batch `key` (its sequence, big endian).
    fn fate(&self, key: &[u8], head: u64) -> Result<PendingFate, SettleError> {
        let seq = <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .map_err(|_| SettleError::Corrupt("pending key".into()))?;
        let anchored =
            self.journal.status(seq)?.is_some_and(|st| st.status == BatchStatus::Anchored);
        let in_flight = self.journal.in_flight()?.map(|(s, _)| s);
        Ok(pending_fate(seq, anchored, head, in_flight))
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
                PendingFate::Anchored => {
                    let list: Vec<T> = postcard::from_bytes(&v)
                        .map_err(|e| SettleError::Corrupt(e.to_string()))?;
                    for item in list {
                        apply(item)?;
                    }
                    tree.remove(&k)?;
                }
                PendingFate::Dropped => {
                    tree.remove(&k)?;
                }
                PendingFate::InFlight => {}
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
    /// batches that `store` does not hold yet: submit them through the node (they are gossiped
    /// like any lease event). Those already stored are forgotten here, so each is handed out
    /// until it lands, then never again.
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

    /// What each payer of `plan` can pay: the lesser of its balance and its remaining grant to
    /// the settler.
    async fn funds(&self, plan: &Plan) -> Result<Funds, SettleError> {
        let settler = self.address();
        let mut out = Funds::new();
        for (tenant, denom) in plan.payers() {
            let can = self.reader.spendable(&self.ledger, &tenant, &settler, &denom).await?;
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
    pub fn plan(&self, store: &Store, now_ms: u64) -> Result<Plan, SettleError> {
        let cursor = |id: &Id| self.cursor(id).map_err(SourceError::new);
        Ok(round::plan(&StoreLeases(store), &self.genesis.settlers, cursor, now_ms)?)
    }

    /// Drafts the next batch as of `now_ms` and writes what follows from it beside its
    /// sequence; `None` when nothing is owed.
    async fn draft(&self, store: &Store, now_ms: u64) -> Result<Option<Draft>, SettleError> {
        let plan = self.plan(store, now_ms)?;
        if plan.accruals.is_empty() {
            return Ok(None);
        }
        let funds = self.funds(&plan).await?;
        let uncontrolled =
            plan.uncontrolled(|address, signer| self.bindings.controls(address, signer))?;
        for lease in &uncontrolled {
            tracing::warn!(lease = %lease.short(), "the order's signer does not control the tenant address: not charged, lease closed");
        }
        let header = round::next_header(self.key.public(), self.journal.head()?, now_ms);
        let d = round::draft(plan, &funds, &uncontrolled, &header, &self.key)?;
        let seq = header.sequence.to_be_bytes();
        self.pending.insert(seq, to_canonical(&d.cursors))?;
        put_or_clear(&self.pending_shortfalls, seq, &d.shortfalls)?;
        put_or_clear(&self.pending_closes, seq, &d.silent_closes)?;
        Ok(Some(d))
    }

    /// Builds, signs and anchors one batch of everything owed as of `now_ms`; `None` when
    /// nothing changed. Only this takes the backend; the routes never wait for it.
    pub async fn settle_once(
        &self,
        store: &Store,
        now_ms: u64,
    ) -> Result<Option<Round>, SettleError> {
        let mut backend = self.backend.lock().await;
        self.journal.resume(&mut *backend).await?;
        self.apply_pending()?;
        let Some(d) = self.draft(store, now_ms).await? else { return Ok(None) };
        let batch_id = d.batch.id();
        let (sequence, records) = (d.batch.body.sequence, d.batch.body.records.len());
        let result = self.journal.settle(&mut *backend, d.batch).await;
        drop(backend);
        self.apply_pending()?;
        let anchor = result?;
        for sf in &d.shortfalls {
            tracing::warn!(
                lease = %sf.lease_id.short(), tenant = %sf.tenant_address, owed = %sf.owed,
                paid = %sf.paid, unpaid = %sf.unpaid, denom = %sf.denom,
                "tenant short of funds: lease closed"
            );
        }
        for lease in &d.provider_silent {
            tracing::warn!(lease = %lease.short(), "provider silent past the grace period: lease closed");
        }
        tracing::info!(sequence, batch = %batch_id.short(), leases = d.leases, records, height = anchor.height, "settlement batch anchored");
        Ok(Some(Round {
            sequence,
            batch_id,
            leases: d.leases,
            records,
            anchor,
            shortfalls: d.shortfalls,
            provider_silent: d.provider_silent,
        }))
    }

    /// Proofs for a lease in every anchored batch that holds it.
    pub fn proofs(&self, lease: &Id) -> Result<Vec<ProofView>, SettleError> {
        let mut out = Vec::new();
        for (lease_proof, anchor) in self.journal.lease_proofs(lease)? {
            let seq = lease_proof.batch_sequence;
            let batch = self.journal.batch(seq)?.ok_or_else(|| {
                SettleError::Corrupt(format!(
                    "the journal proves a lease in batch {seq}, which it does not hold"
                ))
            })?;
            out.push(ProofView {
                batch_sequence: seq,
                batch_id: batch.id(),
                signed_batch_hex: hex::encode(batch.encode()),
                lease_proof,
                anchor,
            });
        }
        Ok(out)
    }

    /// An anchored entry of the embedded ledger by its hash (the anchor's tx hash), so anyone
    /// can check that the bytes hash to it and carry the batch's root.
    pub fn ledger_entry(
        &self,
        hash: &str,
    ) -> Result<Option<leasemesh_settlement::ledger::AnchoredEntry>, SettleError> {
        if !self.is_local() {
            return Ok(None);
        }
        Ok(self.ledger.entry(hash)?)
    }

    /// Balances of an address on the backend (on Cosmos: in the genesis' denoms and the fee
    /// denom).
    pub async fn balances(&self, address: &str) -> Result<Vec<Coin>, SettleError> {
        match &self.reader {
            Reader::Local => Ok(self.ledger.balances(address)?),
            #[cfg(feature = "cosmos")]
            Reader::Chain { client, .. } => {
                let mut denoms: Vec<String> =
                    self.genesis.balances.iter().map(|b| b.denom.clone()).collect();
                denoms.push(client.config().fee_denom.clone());
                let denoms: BTreeSet<String> = denoms.into_iter().collect();
                let mut out = Vec::new();
                for d in denoms {
                    let amount = client
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
        if !self.bindings.listed_controls(&b.tenant_address, &g.signer) {
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

/// Writes `list` under `key`, or removes the key when it is empty.
fn put_or_clear<T: Serialize>(
    tree: &sled::Tree,
    key: [u8; 8],
    list: &[T],
) -> Result<(), SettleError> {
    if list.is_empty() {
        tree.remove(key)?;
    } else {
        tree.insert(key, to_canonical(&list))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::ingest::{Ingest, Kind, Reason};
    use leasemesh_protocol::{
        samples, Award, CloseReason, Hash, Keypair, LeaseEventKind, MatchBatch,
    };
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
        let s = open(&dir.path().join("s"), g.clone()).await;
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
        let s = open(&dir.path().join("s"), g).await;
        assert!(s.settle_once(&store, t0 + 30_000).await.unwrap().is_none());
        assert_eq!(s.balances(&info.body.chain_address).await.unwrap(), paid);
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
        let s = open(&dir.path().join("s"), g.clone()).await;
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
        assert_eq!(store.lease(&poor_lease).unwrap().unwrap().state, LeaseState::Closed);
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
        let s = open(&dir.path().join("s"), g).await;
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
        let s = open(&dir.path().join("s"), g.clone()).await;
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
        assert_eq!(store.lease(&dark).unwrap().unwrap().state, LeaseState::Running);

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
        let s = open(&dir.path().join("s"), g.clone()).await;
        let closes = s.closes_to_publish(&store).unwrap();
        check(&closes);
        while rx.try_recv().is_ok() {}
        ok(Kind::LeaseEvent, &closes[0].encode());
        assert_eq!(store.lease(&dark).unwrap().unwrap().state, LeaseState::Closed);
        assert_eq!(store.lease(&steady).unwrap().unwrap().state, LeaseState::Running);
        // The node announces the close: what the provider role stops the containers on.
        match rx.try_recv() {
            Ok(crate::events::NodeEvent::Lease { lease_id, state, .. }) => {
                assert_eq!((lease_id, state), (dark, LeaseState::Closed));
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
        let s = open(&dir.path().join("s"), g).await;
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
        let s = open(&dir.path().join("s"), g).await;
        let round = s.settle_once(&store, t0 + 120_000).await.unwrap().expect("a batch");
        // Accrual: silent from the start, so nothing owed, and the batch says why.
        assert_eq!(round.provider_silent, vec![samples::award().lease_id()]);
        assert_eq!(s.balances(&info.body.chain_address).await.unwrap(), vec![]);
        assert!(s.closes_to_publish(&store).unwrap().is_empty());
    }

    /// The embedded ledger behind a gate: every anchoring step waits until the test opens it,
    /// like a chain that does not answer.
    #[derive(Debug)]
    pub struct Gated {
        pub ledger: LocalLedger,
        /// No permits until the test opens the gate.
        pub gate: std::sync::Arc<tokio::sync::Semaphore>,
        /// A permit each time a step reaches the gate.
        pub reached: std::sync::Arc<tokio::sync::Semaphore>,
    }

    impl Gated {
        async fn pass(&self) -> Result<(), AnchorError> {
            self.reached.add_permits(1);
            let permit =
                self.gate.acquire().await.map_err(|e| AnchorError::Unavailable(e.to_string()))?;
            drop(permit);
            Ok(())
        }

        pub(super) async fn prepare(
            &mut self,
            batch: &Signed<SettlementBatch>,
        ) -> Result<PreparedAnchor, AnchorError> {
            self.pass().await?;
            self.ledger.prepare(batch).await
        }

        pub(super) async fn submit(
            &mut self,
            prepared: &PreparedAnchor,
        ) -> Result<(), AnchorError> {
            self.pass().await?;
            self.ledger.submit(prepared).await
        }

        pub(super) async fn confirm(
            &mut self,
            prepared: &PreparedAnchor,
        ) -> Result<Confirmation, AnchorError> {
            self.pass().await?;
            self.ledger.confirm(prepared).await
        }
    }

    /// GET `path` on `addr`: the status and how long the answer took.
    async fn timed_get(addr: std::net::SocketAddr, path: &str) -> (u16, std::time::Duration) {
        let url = format!("http://{addr}{path}");
        tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            let status = match ureq::get(&url).timeout(std::time::Duration::from_secs(10)).call() {
                Ok(r) => r.status(),
                Err(ureq::Error::Status(code, _)) => code,
                Err(e) => panic!("{url}: {e}"),
            };
            (status, t.elapsed())
        })
        .await
        .unwrap()
    }

    /// While a round is stuck at the backend (a chain that does not answer), the settler's
    /// routes still answer at once; once the backend answers, the round anchors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_routes_answer_while_anchoring_is_blocked() {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = Store::temporary().unwrap();
        let ing = Ingest::new(store.clone(), tx);
        let now = samples::SAMPLE_TIME_MS + 1;
        let ok = |kind, bytes: &[u8]| {
            let r = ing.ingest(kind, &[bytes], now);
            assert_eq!(r[0].reason, Reason::Ok, "{}", r[0].detail);
        };
        let order = samples::signed_order();
        ok(Kind::Order, &order.encode());
        let pk = samples::provider_key();
        let info = Signed::sign(samples::provider_info(), &pk);
        ok(Kind::ProviderInfo, &info.encode());
        ok(
            Kind::MatchBatch,
            &Signed::sign(samples::match_batch(), &samples::settler_key()).encode(),
        );
        let award = samples::award();
        let t0 = now + 1000;
        ok(Kind::LeaseEvent, &running(&award, &pk, t0));
        for i in 1..=10u64 {
            ok(Kind::Heartbeat, &heartbeat(&pk, i, t0 + i * 1000, 1));
        }

        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("s")).unwrap();
        let key = samples::settler_key();
        let ledger = LocalLedger::with_db(&db, settler_address(&key.public())).unwrap();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let reached = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let backend = Backend::Gated(Gated {
            ledger: ledger.clone(),
            gate: gate.clone(),
            reached: reached.clone(),
        });
        let g = genesis(&order.body.tenant_address, &award.price_per_hour.denom);
        gate.add_permits(1000); // open while the settlement opens (it resumes nothing)
        let settlement =
            Settlement::with_backend(db, ledger, backend, key, g.clone()).await.unwrap();
        gate.acquire_many(1000).await.unwrap().forget(); // closed again
        let (fetch_tx, _fetch_rx) = tokio::sync::mpsc::channel(1);
        let shared = std::sync::Arc::new(super::super::Shared {
            clock: leasemesh_matcher::epoch::EpochClock {
                epoch_ms: g.epoch_ms,
                settle_delay_ms: g.settle_delay_ms,
                leader_timeout_ms: g.leader_timeout_ms,
            },
            genesis: g,
            metrics: Default::default(),
            by_epoch: store.tree("settler/batches_by_epoch").unwrap(),
            meta: store.tree("settler/meta").unwrap(),
            store: store.clone(),
            fetch_tx,
            settlement: Some(settlement),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = super::super::api::router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let round = {
            let (shared, store) = (shared.clone(), store.clone());
            tokio::spawn(async move {
                let s = shared.settlement.as_ref().unwrap();
                s.settle_once(&store, t0 + 5_000).await
            })
        };
        // The round holds the backend, waiting on it.
        reached.acquire().await.unwrap().forget();
        let lease = award.lease_id().to_hex();
        let provider = &info.body.chain_address;
        let mut slowest = std::time::Duration::ZERO;
        for (path, want) in [
            ("/v1/settler/status".to_string(), 200),
            (format!("/v1/leases/{lease}/proof"), 404),
            (format!("/v1/ledger/balances/{provider}"), 200),
            (format!("/v1/ledger/grants/{}/uakt", order.body.tenant_address), 200),
            ("/v1/ledger/bindings/inj1nobody".to_string(), 404),
        ] {
            let (status, took) = timed_get(addr, &path).await;
            println!("{path}: {status} in {took:?} while anchoring is blocked");
            assert_eq!(status, want, "{path}");
            slowest = slowest.max(took);
        }
        assert!(slowest < std::time::Duration::from_secs(1), "a route took {slowest:?}");
        assert!(!round.is_finished(), "the round is still waiting on the backend");

        // The backend answers: the round anchors and the proof is served.
        gate.add_permits(1000);
        let r = round.await.unwrap().unwrap().expect("a batch");
        assert_eq!(r.sequence, 1);
        let (status, _) = timed_get(addr, &format!("/v1/leases/{lease}/proof")).await;
        assert_eq!(status, 200);
    }
}
