//! A running node: its config, key, store, network handle, event broadcast, metrics and the
//! validation pipeline, plus the tasks around them. Roles (provider, settler) hold a [`Node`]
//! and add their own tasks and API routes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leasemesh_protocol::{Id, Keypair};
use libp2p::Multiaddr;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, IDENTITY_FILE};
use crate::events::{NodeEvent, EVENT_CHANNEL_CAPACITY};
use crate::ingest::{Ingest, Kind, Outcome, Reason};
use crate::metrics::{KindLabels, Metrics};
use crate::net::behaviour::build_swarm;
use crate::net::service::{
    NetworkHandle, NetworkService, PublishError, ServiceOutputs, SYNC_JOB_QUEUE_CAPACITY,
    SYNC_SERVER_QUEUE_CAPACITY, VALIDATION_QUEUE_CAPACITY,
};
use crate::net::topics::Topic;
use crate::net::workers;
use crate::store::Store;
use crate::{identity, now_ms};

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("cannot open the store at {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("bad multiaddress {addr:?} in the config: {reason}")]
    Multiaddr { addr: String, reason: String },
    #[error("network: {0}")]
    Network(String),
    #[error("settler role: {0}")]
    Settler(#[from] crate::settler::SettlerError),
    #[error("provider role: {0}")]
    Provider(#[from] crate::provider::role::ProviderError),
    #[error("cannot listen on the API address {addr}: {source}")]
    Api {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a submission through the API did.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: Id,
    /// `None` if gossiped; otherwise why not (the object is stored either way).
    pub publish_error: Option<PublishError>,
}

/// Everything a role needs to work with the node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    pub home: PathBuf,
    pub config: Arc<Config>,
    /// The node's key: its libp2p identity and its leasemesh signing key.
    pub key: Keypair,
    pub store: Store,
    pub net: NetworkHandle,
    pub events: broadcast::Sender<NodeEvent>,
    pub metrics: Arc<Metrics>,
    pub ingest: Ingest,
}

impl Node {
    /// Validates, stores and gossips an object from this node's own API or roles.
    pub async fn submit(&self, kind: Kind, bytes: Vec<u8>) -> Result<Submitted, Outcome> {
        let ingest = self.ingest.clone();
        let (bytes, outcome) = tokio::task::spawn_blocking(move || {
            let mut o = ingest.ingest(kind, &[&bytes], now_ms());
            // What the API acknowledges is on disk before the answer leaves.
            if let Some(first) = o.first_mut().filter(|f| f.reason == Reason::Ok) {
                if let Err(e) = ingest.store().flush() {
                    first.reason = Reason::Store;
                    first.detail = format!("stored but not flushed to disk: {e}");
                }
            }
            (bytes, o)
        })
        .await
        .map_err(|e| Outcome {
            reason: Reason::Store,
            id: None,
            missing_order: None,
            detail: e.to_string(),
        })?;
        let outcome = outcome.into_iter().next().unwrap_or(Outcome {
            reason: Reason::Store,
            id: None,
            missing_order: None,
            detail: "no outcome".into(),
        });
        let Some(id) = outcome.id.filter(|_| outcome.reason == Reason::Ok) else {
            return Err(outcome);
        };
        self.metrics.api_submissions.get_or_create(&KindLabels { kind: kind.name().into() }).inc();
        let publish_error = self.net.publish(kind_topic(kind), bytes).await.err();
        if let Some(e) = &publish_error {
            tracing::debug!(id = %id.short(), error = %e, "stored but not gossiped");
        }
        Ok(Submitted { id, publish_error })
    }
}

/// The topic an object kind travels on.
pub fn kind_topic(kind: Kind) -> Topic {
    match kind {
        Kind::Order => Topic::Orders { shard: None },
        Kind::Bid => Topic::Bids,
        Kind::ProviderInfo => Topic::Providers,
        Kind::Heartbeat => Topic::Heartbeats,
        Kind::MatchBatch => Topic::Batches,
        Kind::LeaseEvent => Topic::Leases,
    }
}

/// A started node and its tasks.
#[derive(Debug)]
pub struct Running {
    pub node: Node,
    pub api_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn parse_addrs(list: &[String]) -> Result<Vec<Multiaddr>, StartError> {
    list.iter()
        .map(|a| {
            a.parse::<Multiaddr>()
                .map_err(|e| StartError::Multiaddr { addr: a.clone(), reason: e.to_string() })
        })
        .collect()
}

/// Starts a node from its home directory and config. `routes` are extra API routes of roles.
pub async fn start(
    home: &Path,
    config: Config,
    routes: Vec<axum::Router>,
) -> Result<Running, StartError> {
    let key = identity::load(&home.join(IDENTITY_FILE))?;
    let p2p_key = identity::to_libp2p(&key)?;
    let store_path = config.store_path(home);
    let store = Store::open(&store_path)
        .map_err(|source| StartError::Store { path: store_path, source })?;
    let mut metrics = Metrics::new();
    let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
    let ingest = Ingest::new(store.clone(), events.clone());
    // The settler role (genesis, batch check, leading epochs, settlement) when configured.
    let settler = crate::settler::Settler::prepare(
        home,
        &config.settler,
        &key,
        &store,
        &mut metrics.registry,
    )
    .await?;
    let ingest = match &settler {
        Some(s) => ingest
            .with_batch_check(s.batch_check())
            .with_settlers(s.shared.genesis.settlers.clone()),
        None => ingest,
    };
    // The provider role (inventory, bids, containers) when enabled.
    let provider =
        crate::provider::role::ProviderRole::prepare(&config.provider, &key, &mut metrics.registry)
            .await?;
    let swarm = build_swarm(p2p_key, &config.network, &mut metrics.registry)
        .map_err(|e| StartError::Network(e.to_string()))?;
    let metrics = Arc::new(metrics);

    let listen = parse_addrs(&config.network.p2p_listen)?;
    let bootstrap = parse_addrs(&config.network.bootstrap)?;
    let (gossip_tx, gossip_rx) = mpsc::channel(VALIDATION_QUEUE_CAPACITY);
    let (serve_tx, serve_rx) = mpsc::channel(SYNC_SERVER_QUEUE_CAPACITY);
    let (jobs_tx, jobs_rx) = mpsc::channel(SYNC_JOB_QUEUE_CAPACITY);
    let (service, net) = NetworkService::new(
        swarm,
        &listen,
        &bootstrap,
        config.network.target_peers,
        (config.network.gossip_rate_per_sec, config.network.gossip_rate_burst),
        ServiceOutputs { gossip: gossip_tx, sync_serve: serve_tx, sync_jobs: jobs_tx.clone() },
        metrics.clone(),
    )
    .map_err(StartError::Network)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(service.run(shutdown_rx.clone()))];
    tasks.push(tokio::spawn(workers::run_validation(
        gossip_rx,
        ingest.clone(),
        net.clone(),
        jobs_tx,
        metrics.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(workers::run_sync_server(
        serve_rx,
        ingest.clone(),
        net.clone(),
        metrics.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(workers::run_sync_driver(
        jobs_rx,
        ingest.clone(),
        net.clone(),
        metrics.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(run_gc(
        store.clone(),
        Duration::from_secs(config.store.gc_interval_secs.max(1)),
        shutdown_rx.clone(),
    )));

    let node = Node {
        home: home.to_path_buf(),
        config: Arc::new(config),
        key,
        store,
        net,
        events,
        metrics,
        ingest,
    };
    let mut router = crate::api::router(node.clone());
    if let Some(s) = settler {
        router = router.merge(s.router());
        tasks.extend(s.spawn(&node, shutdown_rx.clone()));
    }
    if let Some(p) = provider {
        router = router.merge(p.router(node.clone()));
        tasks.extend(p.spawn(&node, shutdown_rx.clone()));
    }
    for r in routes {
        router = router.merge(r);
    }
    let listener = tokio::net::TcpListener::bind(&node.config.api.listen)
        .await
        .map_err(|source| StartError::Api { addr: node.config.api.listen.clone(), source })?;
    let api_addr = listener
        .local_addr()
        .map_err(|source| StartError::Api { addr: node.config.api.listen.clone(), source })?;
    tracing::info!(addr = %api_addr, peer = %node.net.peer_id(), "HTTP API listening");
    let mut api_shutdown = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = api_shutdown.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    }));
    Ok(Running { node, api_addr, shutdown, tasks })
}

impl Running {
    /// Stops every task and flushes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
                tracing::warn!("a task did not stop within 5 s");
            }
        }
        match self.node.store.flush() {
            Ok(()) => tracing::info!("store flushed; bye"),
            Err(e) => tracing::error!(error = %e, "store flush failed"),
        }
    }
}

async fn run_gc(store: Store, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = tick.tick() => {
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.gc(now_ms())).await {
                    Ok(Ok(r)) if r.orders + r.bids + r.seen > 0 => {
                        tracing::debug!(orders = r.orders, bids = r.bids, seen = r.seen, "gc");
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "gc failed"),
                    _ => {}
                }
            }
        }
    }
}
