//! The settler role: epoch matching and settlement.
//!
//! Every node with a genesis file (`[settler] genesis = "..."`) takes part in epoch matching as
//! a verifier: a [`MatchBatch`] is accepted only if its signer may lead its epoch and the
//! matcher, re-run on exactly the inputs the batch names, gives the same awards and digest
//! ([`matching::check_batch`]); inputs it lacks are fetched by id from connected peers first
//! (pull sync). A mismatch is rejected (gossip `Reject`: the sender's score drops), logged and
//! counted in `leasemesh_settler_batches_rejected_total{reason}`. Accepted awards become leases
//! (the ingest pipeline writes them and emits the `award` event).
//!
//! A node whose key is listed in the genesis also leads epochs ([`run_leader`]): after an epoch
//! closes and the settle delay passes, its leader gathers the epoch's orders, bids and provider
//! snapshots, runs the matcher, signs and publishes the batch; the next settler takes over after
//! each leader timeout without a batch. The first settler of the genesis also settles
//! ([`settle`]): accrual from lease events and heartbeats, batches anchored on the embedded
//! ledger through the journal.
//!
//! Files: [`genesis`] (the network file), [`settle`] (settlement), [`api`] (routes). The rules
//! they apply live in the library crates, without I/O: the clock and leader choice in
//! [`leasemesh_matcher::epoch`], gathering, building and checking a match batch in
//! [`leasemesh_matcher::batch_check`].
//!
//! Not here: the Cosmos backend is not wired yet (a genesis asking for it is refused at start).

pub mod api;
pub mod bindings;
pub mod genesis;
pub mod settle;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leasemesh_protocol::{Bid, Id, Keypair, MatchBatch, Order, ProviderInfo, Signed};
use libp2p::PeerId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::events::NodeEvent;
use crate::ingest::{BatchCheck, BatchRefusal, Kind, Reason};
use crate::net::service::NetworkHandle;
use crate::net::sync::{SyncKind, SyncRequest, SyncResponse, SYNC_FETCH_LIMIT};
use crate::node::Node;
use crate::now_ms;
use crate::store::Store;
use genesis::{Backend, Genesis};
use leasemesh_matcher::batch_check::{
    self as matching, check_batch, CheckError, Inputs, InputsError, Missing,
};
use leasemesh_matcher::epoch::{self, EpochClock};
use settle::Settlement;

/// How long a batch check waits for missing inputs to arrive from peers.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Queue of fetch jobs from batch checks to the fetcher task.
pub const FETCH_QUEUE_CAPACITY: usize = 16;
/// How often the leader looks for epochs to publish.
pub const LEADER_TICK: Duration = Duration::from_millis(50);
/// Epochs that closed longer ago than this without a batch are not matched any more.
pub const MAX_BACKFILL_MS: u64 = 10 * 60 * 1000;

/// Provider snapshots and heartbeat times older than this are dropped (the latest snapshot of
/// each provider is always kept): batch checks need them for minutes, accrual for a settle
/// interval or two.
pub const HISTORY_RETENTION_MS: u64 = 6 * 3600 * 1000;
/// How often that history is pruned.
pub const HISTORY_GC_INTERVAL: Duration = Duration::from_secs(60);

/// `[settler]` of the node's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettlerConfig {
    /// The network's genesis file (TOML, or JSON if it ends in .json), relative to the home
    /// directory unless absolute. Empty: no epoch matching here (the node only relays batches).
    pub genesis: String,
    /// Lead epochs (and settle, for the first settler) when this node's key is in the genesis.
    pub enabled: bool,
    /// How often the settlement settler builds and anchors a settlement batch, in ms.
    pub settle_interval_ms: u64,
    /// Also settle at once when a lease closes (the demo's "close → anchored" path).
    pub settle_on_close: bool,
    /// The settlement database (journal and embedded ledger), relative to the home directory.
    pub ledger_path: String,
    /// With the Cosmos backend: the settler's secp256k1 account secret (64 hex characters, a
    /// file only its owner may read), relative to the home directory.
    pub cosmos_key: String,
}

impl Default for SettlerConfig {
    fn default() -> Self {
        SettlerConfig {
            genesis: String::new(),
            enabled: true,
            settle_interval_ms: 10_000,
            settle_on_close: false,
            ledger_path: "settlement".into(),
            cosmos_key: "cosmos.key".into(),
        }
    }
}

fn resolve(home: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.join(p)
    }
}

/// Labels of a rejected batch.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// The settler's metrics (prefix `leasemesh_settler_`).
#[derive(Debug, Clone, Default)]
pub struct SettlerMetrics {
    /// Batches this node signed and published.
    pub batches_published: Counter,
    /// Batches that passed the check here.
    pub batches_accepted: Counter,
    /// Batches refused here, by reason (`awards_mismatch`, `digest_mismatch`, `not_a_settler`...).
    pub batches_rejected: Family<ReasonLabels, Counter>,
    /// Inputs fetched by id from peers to check a batch.
    pub inputs_fetched: Counter,
    /// Settlement batches anchored, and rounds that failed.
    pub settlements_anchored: Counter,
    pub settlement_failures: Counter,
}

impl SettlerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("settler");
        r.register(
            "batches_published",
            "Match batches this node signed and published",
            self.batches_published.clone(),
        );
        r.register(
            "batches_accepted",
            "Match batches that passed the re-computation here",
            self.batches_accepted.clone(),
        );
        r.register(
            "batches_rejected",
            "Match batches refused here, by reason",
            self.batches_rejected.clone(),
        );
        r.register(
            "inputs_fetched",
            "Batch inputs fetched by id from peers",
            self.inputs_fetched.clone(),
        );
        r.register(
            "settlements_anchored",
            "Settlement batches anchored",
            self.settlements_anchored.clone(),
        );
        r.register(
            "settlement_failures",
            "Settlement rounds that failed",
            self.settlement_failures.clone(),
        );
    }
}

/// The settler could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettlerError {
    #[error(transparent)]
    Genesis(#[from] genesis::GenesisError),
    #[error("node store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("settlement: {0}")]
    Settlement(#[from] settle::SettleError),
    #[error("the genesis asks for the {0:?} settlement backend, which this build does not have (build with the `cosmos` feature)")]
    Backend(Backend),
    #[error("Cosmos backend: {0}")]
    Cosmos(String),
}

/// `[settlement.cosmos]` of the genesis.
#[cfg(feature = "cosmos")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CosmosGenesis {
    /// CometBFT RPC of a node of the chain.
    rpc_url: String,
    chain_id: String,
    #[serde(default = "inj")]
    account_prefix: String,
    #[serde(default = "inj")]
    fee_denom: String,
    /// Price of a unit of gas in the fee denom (a string or an integer).
    #[serde(default)]
    gas_price: Option<toml::Value>,
}

#[cfg(feature = "cosmos")]
fn inj() -> String {
    "inj".into()
}

/// The Cosmos backend from the genesis' chain parameters and the settler's chain key.
#[cfg(feature = "cosmos")]
fn cosmos_backend(
    home: &Path,
    config: &SettlerConfig,
    genesis: &Genesis,
) -> Result<leasemesh_settlement::cosmos::Cosmos, SettlerError> {
    use leasemesh_settlement::cosmos::{ChainConfig, Cosmos, CosmosConfig, SigningKey};
    let table = genesis.settlement.cosmos.clone().unwrap_or_default();
    let g: CosmosGenesis = toml::Value::Table(table)
        .try_into()
        .map_err(|e| SettlerError::Cosmos(format!("[settlement.cosmos]: {e}")))?;
    let mut chain = ChainConfig::injective(g.rpc_url, g.chain_id);
    chain.account_prefix = g.account_prefix;
    chain.fee_denom = g.fee_denom;
    if let Some(p) = g.gas_price {
        chain.gas_price = match p {
            toml::Value::Integer(i) => u128::try_from(i).ok(),
            toml::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| SettlerError::Cosmos("gas_price must be a non-negative integer".into()))?;
    }
    let key_path = resolve(home, &config.cosmos_key);
    let hex_key = std::fs::read_to_string(&key_path).map_err(|e| {
        SettlerError::Cosmos(format!("cannot read the chain key {}: {e}", key_path.display()))
    })?;
    let bytes = hex::decode(hex_key.trim()).map_err(|e| {
        SettlerError::Cosmos(format!("the chain key {} is not hex: {e}", key_path.display()))
    })?;
    let key = SigningKey::from_slice(&bytes).map_err(|e| {
        SettlerError::Cosmos(format!(
            "the chain key {} is not a secp256k1 secret: {e}",
            key_path.display()
        ))
    })?;
    let backend = Cosmos::new(CosmosConfig::new(chain), key)
        .map_err(|e| SettlerError::Cosmos(e.to_string()))?;
    tracing::info!(address = backend.address(), "settling on a Cosmos chain");
    Ok(backend)
}

/// Missing inputs to fetch, and where to say how many arrived.
#[derive(Debug)]
struct FetchJob {
    missing: Missing,
    reply: std::sync::mpsc::SyncSender<usize>,
}

/// What the batch check, the tasks and the routes share.
#[derive(Debug)]
pub struct Shared {
    pub genesis: Genesis,
    pub clock: EpochClock,
    pub metrics: SettlerMetrics,
    pub store: Store,
    /// Epoch (big endian) → id of the batch accepted for it.
    by_epoch: sled::Tree,
    /// `last_batch` → id of the latest accepted batch.
    meta: sled::Tree,
    fetch_tx: mpsc::Sender<FetchJob>,
    /// The settlement settler's state; `None` on other nodes.
    pub settlement: Option<Settlement>,
}

const LAST_BATCH: &[u8] = b"last_batch";

/// The settler's index of accepted batches could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("settler index: {0}")]
    Db(#[from] sled::Error),
    #[error("settler index: the {what} record holds {len} bytes, not a 32-byte batch id")]
    Corrupt { what: &'static str, len: usize },
}

fn batch_id(what: &'static str, v: &[u8]) -> Result<Id, IndexError> {
    <[u8; 32]>::try_from(v)
        .map(leasemesh_protocol::Hash)
        .map_err(|_| IndexError::Corrupt { what, len: v.len() })
}

impl Shared {
    /// The batch accepted for epoch `e`.
    pub fn batch_id_for_epoch(&self, e: u64) -> Result<Option<Id>, IndexError> {
        self.by_epoch.get(e.to_be_bytes())?.map(|v| batch_id("epoch", &v)).transpose()
    }

    /// The latest accepted batch ([`leasemesh_protocol::Hash::ZERO`] before the first). A
    /// record that cannot be read is an error, never the start of the chain again.
    pub fn last_batch(&self) -> Result<Id, IndexError> {
        match self.meta.get(LAST_BATCH)? {
            Some(v) => batch_id("last batch", &v),
            None => Ok(leasemesh_protocol::Hash::ZERO),
        }
    }

    fn reject(
        &self,
        batch: &Signed<MatchBatch>,
        reason: Reason,
        label: &str,
        detail: String,
    ) -> Result<(), BatchRefusal> {
        self.metrics.batches_rejected.get_or_create(&ReasonLabels { reason: label.into() }).inc();
        tracing::warn!(epoch = batch.body.epoch, batch = %batch.id().short(), signer = %batch.signer, reason = label, verdict = reason.verdict().as_str(), %detail, "match batch refused");
        Err(BatchRefusal { reason, detail: format!("{label}: {detail}") })
    }

    /// Asks the fetcher task for missing inputs and waits (this runs on a blocking thread).
    fn fetch_blocking(&self, missing: Missing) -> usize {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        if self.fetch_tx.try_send(FetchJob { missing, reply }).is_err() {
            tracing::warn!("fetch queue full or fetcher stopped; checking with what is here");
            return 0;
        }
        rx.recv_timeout(FETCH_TIMEOUT + Duration::from_millis(500)).unwrap_or(0)
    }
}

struct StoreInputs<'a>(&'a Store);

fn unreadable(e: crate::store::StoreError) -> InputsError {
    InputsError(e.to_string())
}

impl Inputs for StoreInputs<'_> {
    fn order(&self, id: &Id) -> Result<Option<Signed<Order>>, InputsError> {
        self.0.order(id).map_err(unreadable)
    }
    fn bid(&self, id: &Id) -> Result<Option<Signed<Bid>>, InputsError> {
        self.0.bid(id).map_err(unreadable)
    }
    fn provider_info(&self, id: &Id) -> Result<Option<Signed<ProviderInfo>>, InputsError> {
        self.0.provider_info_by_id(id).map_err(unreadable)
    }
}

/// The batch check plugged into the ingest pipeline.
#[derive(Debug)]
struct Check(Arc<Shared>);

impl BatchCheck for Check {
    fn check(&self, batch: &Signed<MatchBatch>, store: &Store) -> Result<(), BatchRefusal> {
        let s = &self.0;
        let inputs = StoreInputs(store);
        let mut result = check_batch(&s.clock, &s.genesis.settlers, batch, &inputs, now_ms());
        if let Err(CheckError::Missing(m)) = &result {
            let n = s.fetch_blocking(m.clone());
            tracing::debug!(
                epoch = batch.body.epoch,
                wanted = m.total(),
                fetched = n,
                "fetched batch inputs"
            );
            result = check_batch(&s.clock, &s.genesis.settlers, batch, &inputs, now_ms());
        }
        if let Err(e) = result {
            // Inputs nobody could give us: plausible, not provably wrong, so only ignored.
            let reason = match &e {
                CheckError::Missing(_) => Reason::UnknownOrder,
                CheckError::Inputs(_) => Reason::Store,
                CheckError::Turn(epoch::TurnError::NotASettler { .. }) => Reason::WrongSigner,
                _ => Reason::BatchMismatch,
            };
            return s.reject(batch, reason, e.label(), e.to_string());
        }
        let id = batch.id();
        let key = batch.body.epoch.to_be_bytes();
        match s.by_epoch.compare_and_swap(
            key,
            None as Option<&[u8]>,
            Some(id.as_bytes().as_slice()),
        ) {
            Ok(Ok(())) => {}
            Ok(Err(cur)) if cur.current.as_deref() == Some(id.as_bytes().as_slice()) => {}
            Ok(Err(_)) => {
                // A valid batch that came second (the leader's, late, after the fallback's): an
                // honest peer may relay it, so it is ignored, not held against the sender.
                return s.reject(
                    batch,
                    Reason::Stale,
                    "epoch_taken",
                    format!("epoch {} already has an accepted batch", batch.body.epoch),
                );
            }
            Err(e) => {
                return Err(BatchRefusal { reason: Reason::Store, detail: format!("store: {e}") })
            }
        }
        // Not recorded: refused, so the batch comes again (its epoch entry is the same id then).
        if let Err(e) = s.meta.insert(LAST_BATCH, id.as_bytes().as_slice()) {
            return Err(BatchRefusal {
                reason: Reason::Store,
                detail: format!("cannot record the last batch: {e}"),
            });
        }
        s.metrics.batches_accepted.inc();
        tracing::info!(epoch = batch.body.epoch, batch = %id.short(), awards = batch.body.awards.len(), digest = %batch.body.outcome_digest.short(), "match batch accepted");
        Ok(())
    }
}

/// The settler role of one node, between [`Settler::prepare`] (before the node starts) and
/// [`Settler::spawn`] (once it runs).
#[derive(Debug)]
pub struct Settler {
    pub shared: Arc<Shared>,
    fetch_rx: mpsc::Receiver<FetchJob>,
    /// This node leads epochs (its key is a settler and the role is enabled).
    leads: bool,
}

impl Settler {
    /// Loads the genesis and opens the role's state. `None` when no genesis is configured.
    pub async fn prepare(
        home: &Path,
        config: &SettlerConfig,
        key: &Keypair,
        store: &Store,
        registry: &mut Registry,
    ) -> Result<Option<Settler>, SettlerError> {
        if config.genesis.trim().is_empty() {
            return Ok(None);
        }
        let genesis = Genesis::load(&resolve(home, &config.genesis))?;
        let clock = EpochClock {
            epoch_ms: genesis.epoch_ms,
            settle_delay_ms: genesis.settle_delay_ms,
            leader_timeout_ms: genesis.leader_timeout_ms,
        };
        let me = key.public();
        let leads = config.enabled && genesis.settlers.contains(&me);
        let settles = leads && genesis.settlement_settler() == Some(&me);
        let settlement = if settles {
            let path = resolve(home, &config.ledger_path);
            #[cfg(feature = "cosmos")]
            let chain = match genesis.settlement.backend {
                Backend::Local => None,
                Backend::Cosmos => Some(cosmos_backend(home, config, &genesis)?),
            };
            #[cfg(not(feature = "cosmos"))]
            if genesis.settlement.backend != Backend::Local {
                return Err(SettlerError::Backend(genesis.settlement.backend));
            }
            Some(
                Settlement::open(
                    &path,
                    key.clone(),
                    genesis.clone(),
                    #[cfg(feature = "cosmos")]
                    chain,
                )
                .await?,
            )
        } else {
            None
        };
        tracing::info!(network = %genesis.network, genesis = %genesis.digest().short(), settlers = genesis.settlers.len(), leads, settles, "genesis loaded");
        let metrics = SettlerMetrics::default();
        metrics.register(registry);
        let (fetch_tx, fetch_rx) = mpsc::channel(FETCH_QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            clock,
            metrics,
            store: store.clone(),
            by_epoch: store.tree("settler/batches_by_epoch")?,
            meta: store.tree("settler/meta")?,
            fetch_tx,
            settlement,
            genesis,
        });
        Ok(Some(Settler { shared, fetch_rx, leads }))
    }

    /// The check to install in the ingest pipeline.
    pub fn batch_check(&self) -> Arc<dyn BatchCheck> {
        Arc::new(Check(self.shared.clone()))
    }

    /// The role's API routes.
    pub fn router(&self) -> axum::Router {
        api::router(self.shared.clone())
    }

    /// Starts the role's tasks: the input fetcher always, the leader and settlement when this
    /// node has those jobs.
    pub fn spawn(self, node: &Node, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(run_fetcher(
            self.fetch_rx,
            node.store.clone(),
            node.net.clone(),
            self.shared.clone(),
            shutdown.clone(),
        ))];
        tasks.push(tokio::spawn(run_history_gc(node.store.clone(), shutdown.clone())));
        if self.leads {
            tasks.push(tokio::spawn(run_leader(
                node.clone(),
                self.shared.clone(),
                shutdown.clone(),
            )));
        }
        if self.shared.settlement.is_some() {
            tasks.push(tokio::spawn(run_settlement(node.clone(), self.shared.clone(), shutdown)));
        }
        tasks
    }
}

// --- history ---------------------------------------------------------------------------------

/// Drops provider snapshots created before `before_ms` (except each provider's latest) and
/// heartbeat times before it. Returns how many entries went.
pub fn prune_history(store: &Store, before_ms: u64) -> Result<usize, crate::store::StoreError> {
    let history = store.tree("provider_history")?;
    let by_seq = store.tree("provider_by_seq")?;
    let beats = store.tree("heartbeat_times")?;
    let mut removed = 0;
    let mut prev: Option<(Vec<u8>, sled::IVec)> = None;
    // Keys are provider ‖ sequence: the last key of each provider is its latest snapshot.
    for kv in by_seq.iter() {
        let (k, id) = kv?;
        if let Some((pk, pid)) = prev.take() {
            let same_provider = pk.get(..32) == k.get(..32);
            if same_provider {
                // A snapshot that is gone or does not decode is dropped as old, and said so.
                let old = match history.get(&pid)? {
                    None => true,
                    Some(v) => match Signed::<ProviderInfo>::decode(&v) {
                        Ok(i) => i.body.created_at_ms < before_ms,
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable provider snapshot pruned");
                            true
                        }
                    },
                };
                if old {
                    history.remove(&pid)?;
                    by_seq.remove(&pk)?;
                    removed += 1;
                }
            }
        }
        prev = Some((k.to_vec(), id));
    }
    for kv in beats.iter() {
        let (k, _) = kv?;
        let at = k.get(32..40).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
        if at.is_none() {
            tracing::warn!(len = k.len(), "malformed heartbeat-time key pruned");
        }
        if at.is_none_or(|at| at < before_ms) {
            beats.remove(&k)?;
            removed += 1;
        }
    }
    Ok(removed)
}

async fn run_history_gc(store: Store, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HISTORY_GC_INTERVAL);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
        }
        let s = store.clone();
        let before = now_ms().saturating_sub(HISTORY_RETENTION_MS);
        match tokio::task::spawn_blocking(move || prune_history(&s, before)).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(removed = n, "provider history pruned"),
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning provider history failed"),
            _ => {}
        }
    }
}

// --- fetching inputs ---------------------------------------------------------------------------

async fn run_fetcher(
    mut rx: mpsc::Receiver<FetchJob>,
    store: Store,
    net: NetworkHandle,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let job = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            j = rx.recv() => match j { Some(j) => j, None => break },
        };
        let n = tokio::time::timeout(FETCH_TIMEOUT, fetch_missing(&store, &net, job.missing))
            .await
            .unwrap_or(0);
        shared.metrics.inputs_fetched.inc_by(n as u64);
        let _ = job.reply.try_send(n);
    }
}

/// Asks connected peers for the missing inputs, stores the ones that verify; returns how many.
async fn fetch_missing(store: &Store, net: &NetworkHandle, mut missing: Missing) -> usize {
    let Some(status) = net.status().await else { return 0 };
    let peers: Vec<PeerId> =
        status.connected_peers.iter().filter_map(|p| p.peer_id.parse().ok()).collect();
    let mut got = 0;
    for peer in peers {
        if missing.is_empty() {
            break;
        }
        // Orders first: a bid is checked against its order.
        for chunk in missing.orders.clone().chunks(SYNC_FETCH_LIMIT) {
            let req = SyncRequest::Fetch { kind: SyncKind::Orders, ids: chunk.to_vec() };
            for bytes in objects(net, peer, req).await {
                if let Ok(o) = Signed::<Order>::decode_verified(&bytes) {
                    let id = o.id();
                    if missing.orders.contains(&id) && stored(store.put_order(&id, &bytes)) {
                        missing.orders.retain(|x| *x != id);
                        got += 1;
                    }
                }
            }
        }
        for chunk in missing.provider_infos.clone().chunks(SYNC_FETCH_LIMIT) {
            let req = SyncRequest::FetchProviderInfos { ids: chunk.to_vec() };
            for bytes in objects(net, peer, req).await {
                if let Ok(p) = Signed::<ProviderInfo>::decode_verified(&bytes) {
                    let id = p.id();
                    if missing.provider_infos.contains(&id) && stored(store.put_provider_info(&p)) {
                        missing.provider_infos.retain(|x| *x != id);
                        got += 1;
                    }
                }
            }
        }
        for chunk in missing.bids.clone().chunks(SYNC_FETCH_LIMIT) {
            let req = SyncRequest::Fetch { kind: SyncKind::Bids, ids: chunk.to_vec() };
            for bytes in objects(net, peer, req).await {
                let Ok(b) = Signed::<Bid>::decode_verified(&bytes) else { continue };
                let id = b.id();
                if !missing.bids.contains(&id) {
                    continue;
                }
                let order = match store.order(&b.body.order_id) {
                    Ok(Some(o)) => o,
                    // Orders come first: a bid whose order did not arrive is not ours to judge.
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read a fetched bid's order");
                        continue;
                    }
                };
                if b.body.check_against(&b.body.order_id, &order.body).is_ok()
                    && stored(store.put_bid(&id, &b.body.order_id, &bytes))
                {
                    missing.bids.retain(|x| *x != id);
                    got += 1;
                }
            }
        }
    }
    got
}

/// Whether a fetched input was stored; a store error is logged, and the input stays missing.
fn stored<T>(r: Result<T, crate::store::StoreError>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store a fetched input");
            false
        }
    }
}

async fn objects(net: &NetworkHandle, peer: PeerId, req: SyncRequest) -> Vec<Vec<u8>> {
    match net.request(peer, req).await {
        Ok(SyncResponse::Objects { items }) => {
            items.iter().filter_map(|h| hex::decode(h).ok()).collect()
        }
        Ok(other) => {
            tracing::debug!(peer = %peer, answer = ?other, "peer did not send objects");
            Vec::new()
        }
        Err(e) => {
            tracing::debug!(peer = %peer, error = %e, "fetch failed");
            Vec::new()
        }
    }
}

// --- leading epochs ----------------------------------------------------------------------------

/// Orders by the epoch their auction closes in, as this node learns of them.
#[derive(Debug, Default)]
struct OrderIndex {
    by_epoch: BTreeMap<u64, BTreeSet<Id>>,
}

impl OrderIndex {
    fn add(&mut self, clock: &EpochClock, id: Id, closes_at_ms: u64) {
        self.by_epoch.entry(clock.epoch_of(closes_at_ms)).or_default().insert(id);
    }

    fn rescan(&mut self, clock: &EpochClock, store: &Store, now: u64) {
        match store.orders(None) {
            Ok(orders) => {
                for o in orders {
                    let close = o.body.auction_closes_at_ms();
                    if close.saturating_add(MAX_BACKFILL_MS) > now {
                        self.add(clock, o.id(), close);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot scan orders"),
        }
    }
}

/// Leads the epochs this node is due to lead: matches, signs and publishes their batches.
pub async fn run_leader(node: Node, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let clock = shared.clock;
    let me = node.key.public();
    let mut events = node.events.subscribe();
    let mut index = OrderIndex::default();
    index.rescan(&clock, &node.store, now_ms());
    let mut tick = tokio::time::interval(LEADER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            ev = events.recv() => match ev {
                Ok(NodeEvent::Order { id, closes_at_ms, .. }) => index.add(&clock, id, closes_at_ms),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => index.rescan(&clock, &node.store, now_ms()),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                let now = now_ms();
                let due: Vec<u64> = index.by_epoch.keys().copied().take_while(|e| clock.end_ms(*e) + clock.settle_delay_ms <= now).collect();
                for e in due {
                    if clock.end_ms(e).saturating_add(MAX_BACKFILL_MS) < now {
                        index.by_epoch.remove(&e);
                        continue;
                    }
                    match shared.batch_id_for_epoch(e) {
                        Ok(Some(_)) => {
                            index.by_epoch.remove(&e);
                            continue;
                        }
                        Ok(None) => {}
                        Err(err) => {
                            // Kept in the index: tried again next tick.
                            tracing::error!(epoch = e, error = %err, "cannot tell whether the epoch has a batch");
                            continue;
                        }
                    }
                    let Some(rank) = epoch::rank_of(&shared.genesis.settlers, e, &me) else { break };
                    if clock.turn_starts_ms(e, rank) > now {
                        continue;
                    }
                    let ids = index.by_epoch.remove(&e).unwrap_or_default();
                    publish_epoch(&node, &shared, e, ids, rank).await;
                }
            }
        }
    }
}

async fn publish_epoch(node: &Node, shared: &Arc<Shared>, e: u64, ids: BTreeSet<Id>, rank: usize) {
    let store = node.store.clone();
    let clock = shared.clock;
    let gathered = tokio::task::spawn_blocking(move || {
        let mut orders = Vec::new();
        for id in &ids {
            // An order the index names but the store lost is skipped; a failed read is not.
            if let Some(o) = store.order(id)? {
                orders.push(o);
            }
        }
        matching::gather(
            &clock,
            e,
            orders,
            |id| store.bids_for_order(id),
            |p, at| store.provider_info_as_of(p, at),
        )
    })
    .await;
    let inputs = match gathered {
        Ok(Ok(i)) if !i.is_empty() => i,
        Ok(Ok(_)) => return,
        Ok(Err(err)) => {
            tracing::error!(epoch = e, error = %err, "cannot read the epoch's inputs: not published");
            return;
        }
        Err(err) => {
            tracing::error!(epoch = e, error = %err, "gathering the epoch's inputs failed");
            return;
        }
    };
    let prev = match shared.last_batch() {
        Ok(id) => id,
        Err(err) => {
            tracing::error!(epoch = e, error = %err, "cannot read the last batch: not published");
            return;
        }
    };
    let batch = matching::build_batch(&node.key, e, prev, now_ms(), &inputs);
    let id = batch.id();
    let awards = batch.body.awards.len();
    match node.submit(Kind::MatchBatch, batch.encode()).await {
        Ok(s) => {
            shared.metrics.batches_published.inc();
            tracing::info!(epoch = e, rank, batch = %id.short(), orders = inputs.orders.len(), bids = inputs.bids.len(), awards, gossiped = s.publish_error.is_none(), "match batch published");
        }
        Err(o) => {
            tracing::error!(epoch = e, batch = %id.short(), reason = %o.reason, detail = %o.detail, "own match batch refused")
        }
    }
}

// --- settlement --------------------------------------------------------------------------------

/// Settles every interval, and at once after a lease closes when `settle_on_close` is on.
pub async fn run_settlement(node: Node, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Some(settlement) = &shared.settlement else { return };
    let cfg = node.config.settler.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.settle_interval_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events = node.events.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            ev = events.recv() => match ev {
                Ok(NodeEvent::Lease { state, .. }) if cfg.settle_on_close && state.is_final() => {}
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {}
        }
        match settlement.settle_once(&node.store, now_ms()).await {
            Ok(Some(_)) => {
                shared.metrics.settlements_anchored.inc();
            }
            Ok(None) => {}
            Err(e) => {
                shared.metrics.settlement_failures.inc();
                tracing::warn!(error = %e, "settlement round failed");
            }
        }
        // Leases closed for lack of funds or provider silence: the signed closes go out like any
        // lease event (the provider stops the containers); kept and retried until the store
        // holds them.
        let closes = settlement.closes_to_publish(&node.store);
        for ev in closes.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the closes to publish");
            Vec::new()
        }) {
            let lease = ev.body.lease_id;
            let why = ev.body.kind.clone();
            match node.submit(Kind::LeaseEvent, ev.encode()).await {
                Ok(_) => {
                    tracing::info!(lease = %lease.short(), ?why, "lease closed by the settler")
                }
                Err(o) => {
                    tracing::warn!(lease = %lease.short(), ?why, reason = %o.detail, "settler close refused")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::samples;

    #[cfg(feature = "cosmos")]
    #[test]
    fn the_cosmos_backend_comes_from_the_genesis_and_the_chain_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = toml::Table::new();
        table.insert("rpc_url".into(), "http://127.0.0.1:26657".into());
        table.insert("chain_id".into(), "leasemesh-devnet-1".into());
        table.insert("gas_price".into(), "160000000".into());
        let genesis = Genesis {
            network: "c".into(),
            epoch_ms: 1000,
            settle_delay_ms: 300,
            leader_timeout_ms: 2000,
            settlers: vec![samples::settler_key().public()],
            settlement: genesis::SettlementGenesis {
                backend: Backend::Cosmos,
                cosmos: Some(table),
            },
            balances: vec![],
            grants: vec![],
        };
        let cfg = SettlerConfig::default();
        let err = cosmos_backend(dir.path(), &cfg, &genesis).unwrap_err();
        assert!(err.to_string().contains("cannot read the chain key"), "{err}");
        std::fs::write(dir.path().join("cosmos.key"), "zz").unwrap();
        assert!(cosmos_backend(dir.path(), &cfg, &genesis).is_err());
        std::fs::write(dir.path().join("cosmos.key"), hex::encode([7u8; 32])).unwrap();
        let backend = cosmos_backend(dir.path(), &cfg, &genesis).unwrap();
        assert!(backend.address().starts_with("inj1"), "{}", backend.address());
        let mut bad = genesis.clone();
        bad.settlement.cosmos.as_mut().unwrap().insert("rpc".into(), "x".into());
        assert!(cosmos_backend(dir.path(), &cfg, &bad).is_err(), "unknown keys are refused");
    }

    /// A last-batch record that does not hold a batch id is an error for the leader and the
    /// status route, not a chain that starts again at zero.
    #[test]
    fn a_corrupt_last_batch_record_is_an_error_not_zero() {
        let store = Store::temporary().unwrap();
        let (fetch_tx, _rx) = mpsc::channel(1);
        let g = Genesis {
            network: "t".into(),
            epoch_ms: 1000,
            settle_delay_ms: 300,
            leader_timeout_ms: 2000,
            settlers: vec![samples::settler_key().public()],
            settlement: Default::default(),
            balances: vec![],
            grants: vec![],
        };
        let shared = Shared {
            clock: EpochClock { epoch_ms: 1000, settle_delay_ms: 300, leader_timeout_ms: 2000 },
            genesis: g,
            metrics: SettlerMetrics::default(),
            by_epoch: store.tree("settler/batches_by_epoch").unwrap(),
            meta: store.tree("settler/meta").unwrap(),
            store: store.clone(),
            fetch_tx,
            settlement: None,
        };
        assert_eq!(shared.last_batch().unwrap(), leasemesh_protocol::Hash::ZERO, "no batch yet");
        let id = leasemesh_protocol::Hash([7; 32]);
        shared.meta.insert(LAST_BATCH, id.as_bytes().as_slice()).unwrap();
        assert_eq!(shared.last_batch().unwrap(), id);
        shared.meta.insert(LAST_BATCH, &b"torn"[..]).unwrap();
        assert!(matches!(
            shared.last_batch(),
            Err(IndexError::Corrupt { what: "last batch", len: 4 })
        ));
        shared.by_epoch.insert(5u64.to_be_bytes(), &b"short"[..]).unwrap();
        assert!(shared.batch_id_for_epoch(5).is_err());
        assert_eq!(shared.batch_id_for_epoch(6).unwrap(), None);
    }

    #[test]
    fn pruning_keeps_each_providers_latest_snapshot() {
        let store = Store::temporary().unwrap();
        let key = samples::provider_key();
        let mut ids = Vec::new();
        for seq in 1..=4u64 {
            let mut info = samples::provider_info();
            info.sequence = seq;
            info.created_at_ms = seq * 1000;
            let info = Signed::sign(info, &key);
            ids.push(info.id());
            store.put_provider_info(&info).unwrap();
        }
        assert_eq!(prune_history(&store, 2500).unwrap(), 2);
        assert!(store.provider_info_by_id(&ids[0]).unwrap().is_none());
        assert!(store.provider_info_by_id(&ids[1]).unwrap().is_none());
        assert!(store.provider_info_by_id(&ids[2]).unwrap().is_some());
        // Even when old, the latest stays: a batch of the next epoch may name it.
        assert_eq!(prune_history(&store, 99_999).unwrap(), 1);
        assert!(store.provider_info_by_id(&ids[3]).unwrap().is_some());
        assert_eq!(store.provider_info_as_of(&key.public(), 99_999).unwrap().unwrap().id(), ids[3]);
    }
}
