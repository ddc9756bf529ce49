//! The provider role inside a running node: bids on the orders the node stores, follows awards,
//! publishes its provider info on change and as a heartbeat, runs awarded leases when their
//! sealed manifest arrives, and serves the lease routes of the HTTP API:
//!
//! - `POST /v1/leases/{id}/manifest`: the sealed manifest ([`SealedManifest`] bytes) of a lease
//!   awarded to this provider; answered 202, then the lease events are gossiped.
//! - `GET /v1/leases/{id}/status`: the replicas as Docker sees them.
//! - `GET /v1/leases/{id}/logs?follow=true&tail=N`: the logs, streamed (one JSON line each).
//!
//! The bid engine sits behind a plain mutex that is never held across an await: every step in
//! it is pure and takes microseconds.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use leasemesh_protocol::seal::{encryption_secret_from_seed, SealedManifest};
use leasemesh_protocol::{
    Award, CloseReason, Id, Keypair, LeaseEventKind, Order, PublicKey, Signed,
};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::bid::{BidEngine, NoBid};
use super::inventory::{InventoryError, NvmlProbe};
use super::lease::{failure, lease_event, term_ended, LeaseRunner, PendingLeases};
use super::runtime::DockerRuntime;
use super::{ProviderConfig, ProviderMetrics};
use crate::events::NodeEvent;
use crate::ingest::Kind;
use crate::node::Node;
use crate::now_ms;
use crate::store::{LeaseRecord, LeaseState, StoreError};

/// Why the provider role could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("inventory: {0}")]
    Inventory(#[from] InventoryError),
}

struct Shared {
    cfg: ProviderConfig,
    engine: Mutex<BidEngine>,
    pending: Mutex<PendingLeases>,
    /// `None` when Docker could not be reached at start: the provider still bids (and says so
    /// in the log) but cannot run leases.
    runner: Option<LeaseRunner>,
    metrics: ProviderMetrics,
    /// Free capacity changed (a reservation, an award, a release): publish a fresh info soon.
    changed: tokio::sync::Notify,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, BidEngine> {
        // A panic while holding the lock cannot leave the engine half-changed in a way that
        // matters more than stopping to bid: keep going with its state.
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, PendingLeases> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The provider role, prepared and ready to spawn.
#[derive(Clone)]
pub struct ProviderRole {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProviderRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRole").finish_non_exhaustive()
    }
}

impl ProviderRole {
    /// Builds the role when `cfg.enabled`: inventory (GPUs from NVML where asked), rates, the
    /// Docker runtime, metrics registered on the node's registry (prefix `leasemesh`).
    pub async fn prepare(
        cfg: &ProviderConfig,
        key: &Keypair,
        registry: &mut Registry,
    ) -> Result<Option<ProviderRole>, ProviderError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let metrics = ProviderMetrics::default();
        metrics.register(registry);
        let engine = cfg.bid_engine(key.clone(), &NvmlProbe, metrics.clone())?;
        let runner = match DockerRuntime::connect(cfg.runtime.clone()).await {
            Ok(runtime) => Some(LeaseRunner {
                runtime,
                key: key.clone(),
                encryption_secret: encryption_secret_from_seed(&key.secret_bytes()),
                metrics: metrics.clone(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "Docker is not reachable: bidding only, leases cannot run");
                None
            }
        };
        Ok(Some(ProviderRole {
            shared: Arc::new(Shared {
                cfg: cfg.clone(),
                engine: Mutex::new(engine),
                pending: Mutex::new(PendingLeases::default()),
                changed: tokio::sync::Notify::new(),
                runner,
                metrics,
            }),
        }))
    }

    /// The lease routes, to merge into the node's router.
    pub fn router(&self, node: Node) -> Router {
        Router::new()
            .route("/v1/leases/{id}/manifest", post(post_manifest))
            .route("/v1/leases/{id}/status", get(lease_status))
            .route("/v1/leases/{id}/logs", get(lease_logs))
            .with_state((self.shared.clone(), node))
    }

    /// Starts the role's tasks: bidding and award handling, and the heartbeat.
    pub fn spawn(self, node: &Node, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        // After a restart the live leases take their capacity again before anything is
        // published: the inventory starts empty.
        let me = node.key.public();
        // A failed read restores nothing and reconciles nothing (an empty list would remove
        // the containers of live leases): the market loop rescans until the store answers.
        let live = match node.store.leases() {
            Ok(all) => {
                let live: Vec<LeaseRecord> =
                    all.into_iter().filter(|l| l.provider == me && !l.state.is_final()).collect();
                restore_allocations(node, &self.shared, &live);
                Some(live.iter().map(|l| l.lease_id).collect())
            }
            Err(e) => {
                self.shared.metrics.store_read_errors.inc();
                tracing::error!(error = %e, "cannot read the leases at start: will rescan");
                None
            }
        };
        vec![
            tokio::spawn(run_market(node.clone(), self.shared.clone(), live, shutdown.clone())),
            tokio::spawn(run_heartbeat(node.clone(), self.shared.clone(), shutdown)),
        ]
    }
}

async fn run_market(
    node: Node,
    shared: Arc<Shared>,
    live: Option<BTreeSet<Id>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = node.events.subscribe();
    // A rescan is due when events were missed or the store could not be read.
    let mut rescan_due = live.is_none();
    // After a restart: keep the containers of live leases, remove the rest.
    if let (Some(r), Some(live)) = (&shared.runner, &live) {
        match r.runtime.reconcile(live).await {
            Ok(rec) => tracing::info!(
                adopted = rec.adopted.len(),
                removed = rec.removed_containers.len(),
                "containers reconciled"
            ),
            Err(e) => tracing::warn!(error = %e, "could not reconcile containers"),
        }
    }
    loop {
        let ev = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            ev = events.recv() => ev,
            _ = tokio::time::sleep(RESCAN_RETRY), if rescan_due => {
                rescan_due = !rescan(&node, &shared);
                continue;
            }
        };
        match ev {
            Ok(NodeEvent::Order { id, .. }) => on_order(&node, &shared, id).await,
            Ok(NodeEvent::Award { order_id, lease_id, provider, batch_id, .. }) => {
                if provider == node.key.public() {
                    on_award(&node, &shared, batch_id, order_id, lease_id);
                } else if shared.engine().inventory.release_reservation(&order_id) {
                    shared.changed.notify_one();
                    tracing::debug!(order = %order_id.short(), "auction lost: reservation released");
                }
            }
            // Whoever closed it (the tenant, this provider at the end of the term, or a genesis
            // settler when the tenant's funds ran out: the ingest pipeline checked the signer),
            // the lease stops here.
            Ok(NodeEvent::Lease { lease_id, state: LeaseState::Closed, event_id }) => {
                on_closed(&node, &shared, lease_id, event_id);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "provider fell behind the node's events: rescanning");
                rescan_due = !rescan(&node, &shared);
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

async fn on_order(node: &Node, shared: &Shared, id: Id) {
    let Ok(Some(order)) = node.store.order(&id) else { return };
    let now = now_ms();
    let bid = if shared.cfg.pricing.command.is_set() {
        let quote = shared.engine().quote(id, &order.body, now);
        match quote {
            Ok(q) => match shared.cfg.pricing.command.price(&id, &order.body, &q.plan).await {
                Ok(price) => shared.engine().commit(q, &order.body, price, now_ms()),
                Err(e) => {
                    shared.metrics.price_command_failures.inc();
                    tracing::warn!(order = %id.short(), error = %e, "price command failed: no bid");
                    Err(NoBid::Price(e))
                }
            },
            Err(e) => Err(e),
        }
    } else {
        shared.engine().on_order(&order, now)
    };
    match bid {
        Ok(bid) => {
            if let Err(o) = node.submit(Kind::Bid, bid.encode()).await {
                tracing::warn!(order = %id.short(), reason = %o.detail, "own bid refused");
                shared.engine().inventory.release_reservation(&id);
            }
            shared.changed.notify_one();
        }
        Err(e) => tracing::debug!(order = %id.short(), reason = %e, "no bid"),
    }
}

/// A closed lease (by its tenant, by us, or by the settler for insufficient funds): stop and
/// remove its containers, free its capacity.
fn on_closed(node: &Node, shared: &Arc<Shared>, lease_id: Id, event_id: Id) {
    if shared.engine().inventory.allocation(&lease_id).is_none() {
        return;
    }
    let reason = node.store.lease_events(&lease_id).ok().and_then(|evs| {
        evs.into_iter().find(|e| e.id() == event_id).and_then(|e| match e.body.kind {
            LeaseEventKind::Closed { reason } => Some(reason),
            _ => None,
        })
    });
    tracing::info!(lease = %lease_id.short(), ?reason, "lease closed: stopping its containers");
    release_closed(shared, lease_id);
}

/// Stops a closed or failed lease's containers and frees its capacity.
fn release_closed(shared: &Arc<Shared>, lease_id: Id) {
    shared.pending().settle(&lease_id);
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Some(r) = &shared.runner {
            if let Err(e) = r.runtime.close(&lease_id).await {
                tracing::warn!(lease = %lease_id.short(), error = %e, "closing the containers failed");
            }
        }
        shared.engine().inventory.release_lease(&lease_id);
        shared.changed.notify_one();
        tracing::info!(lease = %lease_id.short(), "lease closed: containers removed, capacity freed");
    });
}

/// The award of `order_id` in batch `batch_id`, and the order, as this node stores them.
fn stored_award(node: &Node, batch_id: &Id, order_id: &Id) -> Option<(Award, Signed<Order>)> {
    let award = node
        .store
        .batch(batch_id)
        .ok()
        .flatten()
        .and_then(|b| b.body.awards.into_iter().find(|a| a.order_id == *order_id))?;
    let order = node.store.order(order_id).ok().flatten()?;
    Some((award, order))
}

/// Takes the capacity of leases that were live when the provider stopped, so a restarted
/// provider never offers what its running containers hold. A lease still waiting for its
/// manifest gets a fresh deadline.
fn restore_allocations(node: &Node, shared: &Shared, leases: &[LeaseRecord]) {
    let mut restored = 0usize;
    for l in leases {
        let Some((award, order)) = stored_award(node, &l.batch_id, &l.order_id) else {
            tracing::warn!(lease = %l.lease_id.short(), "live lease without its batch or order here: capacity not restored");
            continue;
        };
        let res = shared.engine().inventory.allocate(
            l.lease_id,
            l.order_id,
            &order.body,
            &award.assignments,
        );
        match res {
            Ok(_) => {
                restored += 1;
                if l.state == LeaseState::Awarded {
                    let deadline = now_ms().saturating_add(shared.cfg.manifest_deadline_ms);
                    shared.pending().add(l.lease_id, l.order_id, deadline);
                }
            }
            Err(e) => {
                tracing::warn!(lease = %l.lease_id.short(), error = %e, "cannot restore a live lease's capacity")
            }
        }
    }
    if restored > 0 {
        shared.changed.notify_one();
        tracing::info!(leases = restored, "capacity of live leases restored");
    }
}

fn on_award(node: &Node, shared: &Shared, batch_id: Id, order_id: Id, lease_id: Id) {
    let Some((award, order)) = stored_award(node, &batch_id, &order_id) else {
        tracing::warn!(lease = %lease_id.short(), "award without its batch or order here");
        return;
    };
    match shared.engine().inventory.allocate(lease_id, order_id, &order.body, &award.assignments) {
        Ok(_) => {
            shared.changed.notify_one();
            let deadline = now_ms().saturating_add(shared.cfg.manifest_deadline_ms);
            shared.pending().add(lease_id, order_id, deadline);
            tracing::info!(lease = %lease_id.short(), "lease awarded: waiting for the manifest");
        }
        Err(e) => tracing::warn!(lease = %lease_id.short(), error = %e, "cannot honour the award"),
    }
}

/// How long the market loop waits before retrying a rescan the store could not answer.
const RESCAN_RETRY: Duration = Duration::from_millis(500);

/// What a rescan changes: leases to allocate (and whether they still wait for their manifest)
/// and allocated leases to release.
#[derive(Debug, Default, PartialEq, Eq)]
struct RescanPlan {
    allocate: Vec<(LeaseRecord, bool)>,
    release: Vec<Id>,
}

/// Compares the stored leases of provider `me` with the allocated ones: a live lease without
/// an allocation is allocated (awaiting its manifest while Awarded); an allocated lease that
/// the store holds as Closed or Failed is released. Other providers' leases are ignored.
fn rescan_plan(me: &PublicKey, leases: &[LeaseRecord], allocated: &BTreeSet<Id>) -> RescanPlan {
    let mut plan = RescanPlan::default();
    for l in leases.iter().filter(|l| l.provider == *me) {
        let held = allocated.contains(&l.lease_id);
        match l.state {
            LeaseState::Closed | LeaseState::Failed if held => plan.release.push(l.lease_id),
            LeaseState::Awarded | LeaseState::ManifestAccepted | LeaseState::Running if !held => {
                plan.allocate.push((l.clone(), l.state == LeaseState::Awarded))
            }
            _ => {}
        }
    }
    plan
}

/// Brings the inventory in line with the store after missed events, as the settler leader
/// rescans its order index. False when the store could not be read (retry later).
fn rescan(node: &Node, shared: &Arc<Shared>) -> bool {
    let leases = match node.store.leases() {
        Ok(l) => l,
        Err(e) => {
            shared.metrics.store_read_errors.inc();
            tracing::error!(error = %e, "cannot read the leases to rescan: retrying");
            return false;
        }
    };
    let allocated: BTreeSet<Id> = shared.engine().inventory.leases().into_iter().collect();
    let plan = rescan_plan(&node.key.public(), &leases, &allocated);
    tracing::info!(
        allocate = plan.allocate.len(),
        release = plan.release.len(),
        "provider rescanned its leases"
    );
    for (l, awaiting) in plan.allocate {
        if awaiting {
            on_award(node, shared, l.batch_id, l.order_id, l.lease_id);
        } else {
            restore_allocations(node, shared, std::slice::from_ref(&l));
        }
    }
    for lease_id in plan.release {
        release_closed(shared, lease_id);
    }
    true
}

/// This provider's running leases whose term has run out, with their order ids. The term runs
/// from the provider's own Running event.
fn ended_terms(node: &Node, now: u64) -> Result<Vec<(Id, Id)>, StoreError> {
    let me = node.key.public();
    let leases = node.store.leases()?;
    Ok(leases
        .into_iter()
        .filter(|l| l.provider == me && l.state == LeaseState::Running)
        .filter_map(|l| {
            let order = node.store.order(&l.order_id).ok().flatten()?;
            let events = node.store.lease_events(&l.lease_id).ok()?;
            let running_at = events.iter().filter(|e| e.signer == me).find_map(|e| {
                matches!(e.body.kind, LeaseEventKind::Running { .. }).then_some(e.body.at_ms)
            })?;
            term_ended(running_at, order.body.lease_term_ms, now)
                .then_some((l.lease_id, l.order_id))
        })
        .collect())
}

/// Changes are published at most this often: a burst of bids makes one info, not one each.
const MIN_INFO_INTERVAL: Duration = Duration::from_millis(250);

/// Publishes the provider info on every capacity change (rate-limited) and as a heartbeat every
/// `heartbeat_interval_ms`; expires reservations and fails leases past their deadline.
async fn run_heartbeat(node: Node, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.cfg.heartbeat_interval_ms.max(100));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
            _ = shared.changed.notified() => {}
        }
        let now = now_ms();
        // The sequence is the clock: it grows across restarts without a counter on disk.
        let info = {
            let mut e = shared.engine();
            e.expire(now);
            e.provider_info(now, now)
        };
        if let Err(o) = node.submit(Kind::ProviderInfo, info.encode()).await {
            tracing::debug!(reason = %o.detail, "provider info not accepted");
        }
        let overdue = shared.pending().overdue(now);
        for (lease_id, order_id) in overdue {
            shared.engine().inventory.release_lease(&lease_id);
            let ev = lease_event(
                &node.key,
                lease_id,
                order_id,
                failure("no manifest and no Running before the deadline"),
                now,
            );
            shared.metrics.leases_failed.inc();
            let _ = node.submit(Kind::LeaseEvent, ev.encode()).await;
        }
        // Leases whose term ran out: closing them stops accrual at the settler and, through
        // the node's Lease event, removes the containers and frees the capacity.
        let ended = ended_terms(&node, now).unwrap_or_else(|e| {
            // Not "no lease ended": counted, logged, and read again on the next tick.
            shared.metrics.store_read_errors.inc();
            tracing::error!(error = %e, "cannot read the leases for ended terms: retrying");
            Vec::new()
        });
        for (lease_id, order_id) in ended {
            let closed = LeaseEventKind::Closed { reason: CloseReason::TermEnded };
            let ev = lease_event(&node.key, lease_id, order_id, closed, now);
            match node.submit(Kind::LeaseEvent, ev.encode()).await {
                Ok(_) => tracing::info!(lease = %lease_id.short(), "lease term ended: closing"),
                Err(o) => {
                    tracing::warn!(lease = %lease_id.short(), reason = %o.detail, "term close refused")
                }
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(MIN_INFO_INTERVAL) => {}
        }
    }
}

fn api_error(status: StatusCode, error: &str, detail: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": error, "detail": detail.to_string() }))).into_response()
}

fn bad_id() -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad_id", "a lease id is 64 hex characters")
}

type RoleState = (Arc<Shared>, Node);

async fn post_manifest(
    State((shared, node)): State<RoleState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(lease_id) = Id::from_hex(&id) else { return bad_id() };
    let Some(runner) = &shared.runner else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "no_runtime", "Docker is not reachable");
    };
    let sealed = match SealedManifest::decode(&body) {
        Ok(s) => s,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "malformed", e),
    };
    let Some(deadline) = shared.pending().deadline(&lease_id) else {
        return api_error(StatusCode::NOT_FOUND, "not_found", "no lease awaiting a manifest here");
    };
    let alloc = shared.engine().inventory.allocation(&lease_id).cloned();
    let lease = node.store.lease(&lease_id).ok().flatten();
    let order = lease.as_ref().and_then(|l| node.store.order(&l.order_id).ok().flatten());
    let (Some(alloc), Some(order)) = (alloc, order) else {
        return api_error(StatusCode::NOT_FOUND, "not_found", "lease or order unknown here");
    };
    let remaining = Duration::from_millis(deadline.saturating_sub(now_ms()));
    // Open now so a wrong manifest is refused in the answer (and the lease keeps waiting).
    if let Err(e) = leasemesh_protocol::seal::open(
        &sealed,
        &runner.encryption_secret,
        &order.body.manifest_hash,
    ) {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "manifest_refused", e);
    }
    shared.pending().settle(&lease_id);
    let order_id = order.id();
    tokio::spawn(async move {
        let Some(runner) = &shared.runner else { return };
        let events = runner.run(lease_id, order_id, &order.body, &sealed, &alloc, remaining).await;
        for ev in events {
            if matches!(ev.body.kind, LeaseEventKind::Failed { .. }) {
                shared.engine().inventory.release_lease(&lease_id);
            }
            if let Err(o) = node.submit(Kind::LeaseEvent, ev.encode()).await {
                tracing::warn!(lease = %lease_id.short(), reason = %o.detail, "lease event refused");
            }
        }
    });
    (StatusCode::ACCEPTED, Json(json!({ "lease_id": lease_id }))).into_response()
}

async fn lease_status(State((shared, _)): State<RoleState>, Path(id): Path<String>) -> Response {
    let Ok(lease_id) = Id::from_hex(&id) else { return bad_id() };
    let Some(runner) = &shared.runner else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "no_runtime", "Docker is not reachable");
    };
    match runner.runtime.status(&lease_id).await {
        Ok(s) if s.replicas.is_empty() => {
            api_error(StatusCode::NOT_FOUND, "not_found", "no containers of this lease here")
        }
        Ok(s) => Json(s).into_response(),
        Err(e) => api_error(StatusCode::BAD_GATEWAY, "docker", e),
    }
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<u64>,
}

async fn lease_logs(
    State((shared, _)): State<RoleState>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    let Ok(lease_id) = Id::from_hex(&id) else { return bad_id() };
    let Some(runner) = &shared.runner else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "no_runtime", "Docker is not reachable");
    };
    match runner.runtime.logs(&lease_id, q.follow, q.tail).await {
        Ok(stream) => {
            // One JSON object per line (NDJSON); the body streams as Docker delivers.
            let body = stream.map(|item| {
                let line = match item {
                    Ok(l) => serde_json::to_string(&l).unwrap_or_default(),
                    Err(e) => json!({ "error": e.to_string() }).to_string(),
                };
                Ok::<_, std::convert::Infallible>(Bytes::from(line + "\n"))
            });
            ([("content-type", "application/x-ndjson")], Body::from_stream(body)).into_response()
        }
        Err(e) => api_error(StatusCode::BAD_GATEWAY, "docker", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::Hash;

    #[tokio::test]
    async fn disabled_role_is_not_built() {
        let mut reg = Registry::default();
        let cfg = ProviderConfig::default();
        assert!(ProviderRole::prepare(&cfg, &Keypair::from_seed_label("p"), &mut reg)
            .await
            .unwrap()
            .is_none());
    }

    fn rec(n: u8, provider: &Keypair, state: LeaseState) -> LeaseRecord {
        LeaseRecord {
            lease_id: Hash([n; 32]),
            order_id: Hash([n.wrapping_add(100); 32]),
            bid_id: Id::ZERO,
            batch_id: Id::ZERO,
            provider: provider.public(),
            tenant: None,
            price_per_hour: leasemesh_protocol::Coin::new("uinj", 1),
            state,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn rescan_allocates_missed_awards_and_releases_closed_leases() {
        let me = Keypair::from_seed_label("me");
        let other = Keypair::from_seed_label("other");
        let leases = vec![
            rec(1, &me, LeaseState::Awarded), // missed award: allocate, await manifest
            rec(2, &me, LeaseState::Running), // running, not held: allocate
            rec(3, &me, LeaseState::Awarded), // already held: nothing
            rec(4, &me, LeaseState::Closed),  // held but closed: release
            rec(5, &me, LeaseState::Failed),  // held but failed: release
            rec(6, &me, LeaseState::Closed),  // not held, closed: nothing
            rec(7, &other, LeaseState::Awarded), // someone else's: nothing
            rec(8, &me, LeaseState::ManifestAccepted), // live, not held: allocate
        ];
        let held: BTreeSet<Id> = [3u8, 4, 5].iter().map(|n| Hash([*n; 32])).collect();
        let plan = rescan_plan(&me.public(), &leases, &held);
        let alloc: Vec<(Id, bool)> = plan.allocate.iter().map(|(l, w)| (l.lease_id, *w)).collect();
        assert_eq!(
            alloc,
            vec![(Hash([1; 32]), true), (Hash([2; 32]), false), (Hash([8; 32]), false)]
        );
        assert_eq!(plan.release, vec![Hash([4; 32]), Hash([5; 32])]);
    }

    #[test]
    fn rescan_of_a_consistent_inventory_changes_nothing() {
        let me = Keypair::from_seed_label("me");
        let leases = vec![rec(1, &me, LeaseState::Running), rec(2, &me, LeaseState::Closed)];
        let held: BTreeSet<Id> = [Hash([1; 32])].into_iter().collect();
        assert_eq!(rescan_plan(&me.public(), &leases, &held), RescanPlan::default());
    }
}
