//! The tasks beside the swarm task: gossip validation workers, the pull-sync server and the
//! pull-sync driver. Each blocking step (signature checks, sled) runs on `spawn_blocking`, at
//! most [`VALIDATION_WORKERS`] at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use leasemesh_protocol::Id;
use libp2p::PeerId;
use tokio::sync::{mpsc, watch, Semaphore};

use super::ratelimit::RateLimiter;
use super::scoring::{self, PeerAction};
use super::service::{Command, GossipJob, NetworkHandle, SyncJob, SyncServe};
use super::sync::{
    SyncKind, SyncRequest, SyncResponse, SYNC_FETCH_LIMIT, SYNC_MAX_PAGES, SYNC_PAGE_LIMIT,
};
use super::topics::Topic;
use crate::ingest::{Ingest, Kind, Reason};
use crate::metrics::{KindLabels, Metrics};
use crate::now_ms;

/// Validation batches running at once (one per core of a small machine).
pub const VALIDATION_WORKERS: usize = 2;
/// Most order ids remembered as already asked for (then the memory starts over).
pub const MAX_ASKED_ORDERS: usize = 100_000;
/// Most gossip messages validated in one batch (bids in a batch are verified together).
pub const VALIDATION_BATCH: usize = 128;

/// The kind of object a topic carries.
pub fn topic_kind(t: Topic) -> Kind {
    match t {
        Topic::Orders { .. } => Kind::Order,
        Topic::Bids => Kind::Bid,
        Topic::Providers => Kind::ProviderInfo,
        Topic::Heartbeats => Kind::Heartbeat,
        Topic::Batches => Kind::MatchBatch,
        Topic::Leases => Kind::LeaseEvent,
    }
}

/// Drains the gossip queue in batches and validates them off the swarm task; every message gets
/// its verdict reported.
pub async fn run_validation(
    mut rx: mpsc::Receiver<GossipJob>,
    ingest: Ingest,
    net: NetworkHandle,
    sync_jobs: mpsc::Sender<SyncJob>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let workers = Arc::new(Semaphore::new(VALIDATION_WORKERS));
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            j = rx.recv() => match j { Some(j) => j, None => break },
        };
        let mut batch = vec![first];
        while batch.len() < VALIDATION_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        metrics.validation_queue_depth.dec_by(batch.len() as i64);
        let Ok(permit) = workers.clone().acquire_owned().await else { break };
        let ingest = ingest.clone();
        let net = net.clone();
        let metrics = metrics.clone();
        let sync_jobs = sync_jobs.clone();
        tokio::spawn(async move {
            let _permit = permit;
            validate_batch(batch, ingest, net, sync_jobs, metrics).await;
        });
    }
}

async fn validate_batch(
    batch: Vec<GossipJob>,
    ingest: Ingest,
    net: NetworkHandle,
    sync_jobs: mpsc::Sender<SyncJob>,
    metrics: Arc<Metrics>,
) {
    // Group by kind, keeping each job's place.
    let mut groups: HashMap<Kind, Vec<GossipJob>> = HashMap::new();
    for job in batch {
        groups.entry(topic_kind(job.topic)).or_default().push(job);
    }
    for (kind, jobs) in groups {
        let (jobs, outcomes) = {
            let ingest = ingest.clone();
            let res = tokio::task::spawn_blocking(move || {
                let items: Vec<&[u8]> = jobs.iter().map(|j| j.data.as_slice()).collect();
                let outcomes = ingest.ingest(kind, &items, now_ms());
                (jobs, outcomes)
            })
            .await;
            match res {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "validation worker failed");
                    continue;
                }
            }
        };
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let verdict = outcome.verdict();
            metrics.verdict(job.topic.kind(), verdict.as_str(), outcome.reason.as_str());
            if outcome.reason != Reason::Ok && outcome.reason != Reason::Duplicate {
                tracing::debug!(
                    topic = job.topic.kind(),
                    peer = %job.source,
                    reason = outcome.reason.as_str(),
                    detail = %outcome.detail,
                    "gossip message not accepted"
                );
            } else if outcome.reason == Reason::Ok {
                tracing::debug!(
                    topic = job.topic.kind(),
                    id = %outcome.id.map(|i| i.short()).unwrap_or_default(),
                    micros = job.received.elapsed().as_micros() as u64,
                    "gossip message accepted"
                );
            }
            if let Some(order_id) = outcome.missing_order {
                let fetch =
                    SyncJob::FetchOrder { peer: job.source, order_id, bid: job.data.clone() };
                if sync_jobs.try_send(fetch).is_err() {
                    tracing::debug!(order = %order_id.short(), "sync queue full; not fetching order");
                }
            }
            net.send(Command::Report { msg_id: job.msg_id, source: job.source, verdict }).await;
        }
    }
}

/// Answers pull-sync requests from the store, rate-limited per peer.
pub async fn run_sync_server(
    mut rx: mpsc::Receiver<SyncServe>,
    ingest: Ingest,
    net: NetworkHandle,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rate = RateLimiter::new(scoring::SYNC_RATE_PER_SEC, scoring::SYNC_RATE_BURST);
    loop {
        let serve = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            s = rx.recv() => match s { Some(s) => s, None => break },
        };
        let SyncServe { peer, request, channel } = serve;
        let response = if rate.allow(&peer, Instant::now()) {
            let store = ingest.store().clone();
            tokio::task::spawn_blocking(move || answer(&store, request))
                .await
                .unwrap_or_else(|e| SyncResponse::Refused { reason: e.to_string() })
        } else {
            net.send(Command::Penalize { peer, action: PeerAction::RateLimited }).await;
            SyncResponse::Refused { reason: "rate limited".into() }
        };
        metrics.sync_served.inc();
        net.send(Command::Respond { channel, response }).await;
    }
}

fn answer(store: &crate::store::Store, request: SyncRequest) -> SyncResponse {
    let now = now_ms();
    let res = match request {
        SyncRequest::LiveIds { kind, after, limit } => {
            let limit = limit.clamp(1, SYNC_PAGE_LIMIT) as usize;
            let page = match kind {
                SyncKind::Orders => store.live_order_ids(after, limit, now),
                SyncKind::Bids => store.live_bid_ids(after, limit, now),
            };
            page.map(|(ids, next)| SyncResponse::Ids { ids, next })
        }
        SyncRequest::Fetch { kind, ids } => {
            let mut items = Vec::new();
            let mut result = Ok(());
            for id in ids.iter().take(SYNC_FETCH_LIMIT) {
                let got = match kind {
                    SyncKind::Orders => store.order_bytes(id),
                    SyncKind::Bids => store.bid_bytes(id),
                };
                match got {
                    Ok(Some(b)) => items.push(hex::encode(b)),
                    Ok(None) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            result.map(|()| SyncResponse::Objects { items })
        }
        SyncRequest::FetchProviderInfos { ids } => ids
            .iter()
            .take(SYNC_FETCH_LIMIT)
            .filter_map(|id| store.provider_info_bytes_by_id(id).transpose())
            .map(|r| r.map(hex::encode))
            .collect::<Result<Vec<_>, _>>()
            .map(|items| SyncResponse::Objects { items }),
    };
    res.unwrap_or_else(|e| SyncResponse::Refused { reason: e.to_string() })
}

/// Pulls what this node lacks from peers: every new peer once, and orders that bids named.
pub async fn run_sync_driver(
    mut rx: mpsc::Receiver<SyncJob>,
    ingest: Ingest,
    net: NetworkHandle,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut synced: HashSet<PeerId> = HashSet::new();
    let mut asked: HashSet<Id> = HashSet::new();
    loop {
        let job = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            j = rx.recv() => match j { Some(j) => j, None => break },
        };
        match job {
            SyncJob::PeerConnected(peer) => {
                if !synced.insert(peer) {
                    continue;
                }
                for kind in [SyncKind::Orders, SyncKind::Bids] {
                    match sync_kind(peer, kind, &ingest, &net, &metrics).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(peer = %peer, ?kind, fetched = n, "pull sync")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(peer = %peer, ?kind, error = %e, "pull sync failed");
                            // Try again on the next connection.
                            synced.remove(&peer);
                            break;
                        }
                    }
                }
            }
            SyncJob::FetchOrder { peer, order_id, bid } => {
                if asked.len() > MAX_ASKED_ORDERS {
                    asked.clear();
                }
                let known = {
                    let store = ingest.store().clone();
                    tokio::task::spawn_blocking(move || store.has_order(&order_id).unwrap_or(false))
                        .await
                        .unwrap_or(false)
                };
                if !known && asked.insert(order_id) {
                    let _ = fetch(peer, SyncKind::Orders, vec![order_id], &ingest, &net, &metrics)
                        .await;
                }
                let ingest = ingest.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    ingest.ingest(Kind::Bid, &[&bid], now_ms())
                })
                .await;
            }
        }
    }
}

async fn sync_kind(
    peer: PeerId,
    kind: SyncKind,
    ingest: &Ingest,
    net: &NetworkHandle,
    metrics: &Metrics,
) -> Result<usize, String> {
    let mut after = None;
    let mut fetched = 0;
    for _ in 0..SYNC_MAX_PAGES {
        let resp =
            net.request(peer, SyncRequest::LiveIds { kind, after, limit: SYNC_PAGE_LIMIT }).await?;
        let (ids, next) = match resp {
            SyncResponse::Ids { ids, next } => (ids, next),
            SyncResponse::Refused { reason } => return Err(format!("refused: {reason}")),
            SyncResponse::Objects { .. } => return Err("answered ids with objects".into()),
        };
        let store = ingest.store().clone();
        let missing: Vec<Id> = tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .filter(|id| match kind {
                    SyncKind::Orders => !store.has_order(id).unwrap_or(true),
                    SyncKind::Bids => !store.has_bid(id).unwrap_or(true),
                })
                .collect()
        })
        .await
        .map_err(|e| e.to_string())?;
        for chunk in missing.chunks(SYNC_FETCH_LIMIT) {
            fetched += fetch(peer, kind, chunk.to_vec(), ingest, net, metrics).await?;
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(fetched)
}

/// Fetches objects by id and runs them through the pipeline; returns how many were new.
async fn fetch(
    peer: PeerId,
    kind: SyncKind,
    ids: Vec<Id>,
    ingest: &Ingest,
    net: &NetworkHandle,
    metrics: &Metrics,
) -> Result<usize, String> {
    let resp = net.request(peer, SyncRequest::Fetch { kind, ids }).await?;
    let items = match resp {
        SyncResponse::Objects { items } => items,
        SyncResponse::Refused { reason } => return Err(format!("refused: {reason}")),
        SyncResponse::Ids { .. } => return Err("answered a fetch with ids".into()),
    };
    let ingest = ingest.clone();
    let (ok, bad) = tokio::task::spawn_blocking(move || {
        let mut bad = 0usize;
        let bytes: Vec<Vec<u8>> = items
            .iter()
            .filter_map(|h| match hex::decode(h) {
                Ok(b) => Some(b),
                Err(_) => {
                    bad += 1;
                    None
                }
            })
            .collect();
        let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        let k = match kind {
            SyncKind::Orders => Kind::Order,
            SyncKind::Bids => Kind::Bid,
        };
        let outcomes = ingest.ingest(k, &refs, now_ms());
        let ok = outcomes.iter().filter(|o| o.reason == Reason::Ok).count();
        bad += outcomes.iter().filter(|o| o.verdict() == crate::ingest::Verdict::Reject).count();
        (ok, bad)
    })
    .await
    .map_err(|e| e.to_string())?;
    let kind_name = match kind {
        SyncKind::Orders => "order",
        SyncKind::Bids => "bid",
    };
    metrics.sync_fetched.get_or_create(&KindLabels { kind: kind_name.into() }).inc_by(ok as u64);
    if bad > 0 {
        net.send(Command::Penalize { peer, action: PeerAction::BadSyncResponse }).await;
    }
    Ok(ok)
}
