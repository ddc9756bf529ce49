//! Settlement on the settlement settler (the first settler of the genesis): leases' events and
//! their providers' proofs of life go into accrual; each round builds a [`SettlementBatch`],
//! signs it, and anchors it through the [`Journal`] on the embedded [`LocalLedger`].
//!
//! Cursors (what each lease has been charged up to) move only once a batch is anchored: they
//! are written beside the batch's sequence before it is settled and applied when the journal
//! reports it anchored, also after a crash ([`Settlement::open`] finishes what was in flight).
//!
//! Which events count: `Running`, `ManifestAccepted` and `Failed` only when signed by the
//! lease's provider; `Closed` by the provider or the tenant (the ingest pipeline already refused
//! any other signer).

use std::path::Path;

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::{
    Anchor as AnchorRecord, Coin, Hash, Id, Keypair, LeaseEvent, LeaseEventKind, PublicKey,
    SettlementBatch, Signed,
};
use leasemesh_settlement::accrual::{
    accrue, AccrualCursor, LeaseAccrual, LeaseTerms, LeaseTimeline,
};
use leasemesh_settlement::batch::{build_batch, BatchHeader, LeaseProof};
use leasemesh_settlement::journal::{Journal, JournalError};
use leasemesh_settlement::ledger::LocalLedger;
use serde::Serialize;

use super::genesis::Genesis;
use crate::store::{LeaseRecord, Store, StoreError};

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

    /// Moves cursors of anchored batches from pending to current; drops those of rejected ones.
    fn apply_pending(&self) -> Result<(), SettleError> {
        let head = self.journal.head()?.map_or(0, |(s, _)| s);
        for kv in self.pending.iter() {
            let (k, v) = kv?;
            let seq = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| SettleError::Corrupt("pending key".into()))?;
            let anchored = self.journal.status(seq)?.is_some_and(|st| {
                st.status == leasemesh_settlement::journal::BatchStatus::Anchored
            });
            if anchored {
                let cursors: Vec<(Id, AccrualCursor)> =
                    postcard::from_bytes(&v).map_err(|e| SettleError::Corrupt(e.to_string()))?;
                for (lease, c) in cursors {
                    self.cursors.insert(lease.as_bytes(), to_canonical(&c))?;
                }
                self.pending.remove(&k)?;
            } else if seq <= head || self.journal.in_flight()?.is_none_or(|(s, _)| s != seq) {
                // Rejected (its sequence was freed) or superseded: it paid nothing.
                self.pending.remove(&k)?;
            }
        }
        Ok(())
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
            let events = counted_events(&lease, store.lease_events(&lease.lease_id)?);
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
        let accruals = self.plan(store, now_ms)?;
        if accruals.is_empty() {
            return Ok(None);
        }
        let (sequence, prev_batch) =
            self.journal.head()?.map_or((1, Hash::ZERO), |(s, id)| (s + 1, id));
        let header =
            BatchHeader { settler: self.key.public(), sequence, prev_batch, created_at_ms: now_ms };
        let body: SettlementBatch = build_batch(&header, &accruals)?;
        let records = body.records.len();
        let batch = Signed::sign(body, &self.key);
        let batch_id = batch.id();
        let cursors: Vec<(Id, AccrualCursor)> =
            accruals.iter().map(|a| (a.terms.lease_id, a.cursor)).collect();
        self.pending.insert(sequence.to_be_bytes(), to_canonical(&cursors))?;
        let result = match &mut self.backend {
            Backend::Local(l) => self.journal.settle(l, batch).await,
            #[cfg(feature = "cosmos")]
            Backend::Cosmos(c) => self.journal.settle(c.as_mut(), batch).await,
        };
        self.apply_pending()?;
        let anchor = result?;
        tracing::info!(sequence, batch = %batch_id.short(), leases = accruals.len(), records, height = anchor.height, "settlement batch anchored");
        Ok(Some(Round { sequence, batch_id, leases: accruals.len(), records, anchor }))
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
        let controls = b.tenant_address == g.signer.to_hex()
            || self
                .genesis
                .balances
                .iter()
                .any(|x| x.address == b.tenant_address && x.key == Some(g.signer));
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

/// The events accrual may rely on: the provider's, plus the tenant's `Closed`.
fn counted_events(lease: &LeaseRecord, events: Vec<Signed<LeaseEvent>>) -> Vec<LeaseEvent> {
    events
        .into_iter()
        .filter(|e| {
            e.signer == lease.provider
                || (matches!(e.body.kind, LeaseEventKind::Closed { .. })
                    && Some(e.signer) == lease.tenant)
        })
        .map(|e| e.body)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Ingest, Kind, Reason};
    use leasemesh_protocol::{samples, CloseReason, Keypair};
    use leasemesh_settlement::batch::verify_lease_proof;

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
        // No grant yet: the ledger refuses, nothing is paid, the cursor does not move.
        assert!(s.settle_once(&store, t0 + 10_000).await.is_err());
        assert_eq!(s.balances(&info.body.chain_address).await.unwrap(), vec![]);

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

        // A rejected batch is never retried as is: the next round is a new batch.
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
}
