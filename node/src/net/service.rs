//! The network service: the one task that owns the [`Swarm`]. Everything else talks to it
//! through [`Command`]s over a bounded channel (with a oneshot for the reply). It never verifies a
//! signature or touches the database: gossip goes to the validation workers, sync requests to the
//! sync server, and their answers come back as commands.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, mdns, Multiaddr, PeerId, Swarm};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::ratelimit::RateLimiter;
use super::scoring::{self, PeerAction};
use super::sync::{SyncRequest, SyncResponse, SYNC_PROTOCOL};
use super::topics::Topic;
use crate::ingest::{Reason, Verdict};
use crate::metrics::{Metrics, TopicLabels};

/// Capacity of the command channel into the swarm task.
pub const COMMAND_CHANNEL_CAPACITY: usize = 4096;
/// Capacity of the queue of gossip messages waiting for validation. When full, a message is
/// ignored (reported, counted), never silently dropped.
pub const VALIDATION_QUEUE_CAPACITY: usize = 4096;
/// Capacity of the queue of inbound sync requests. When full, the request is refused.
pub const SYNC_SERVER_QUEUE_CAPACITY: usize = 64;
/// Capacity of the queue of sync jobs (new peers, missing orders). When full, the job is dropped
/// and logged: a later peer or message triggers another.
pub const SYNC_JOB_QUEUE_CAPACITY: usize = 256;
/// How often Kademlia walks the network for more peers.
pub const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30);
/// While a node has no peer, it redials its bootstrap peers after this long, doubling up to
/// [`BOOTSTRAP_REDIAL_MAX`] (the Kademlia walk's interval): a node started just before its
/// bootstrap peer listens joins within seconds, not at the next walk. A peer with a dial still
/// pending or banned by this node is not redialled.
pub const BOOTSTRAP_REDIAL_FIRST: Duration = Duration::from_secs(1);
pub const BOOTSTRAP_REDIAL_MAX: Duration = KAD_BOOTSTRAP_INTERVAL;
/// Most peers remembered as not speaking pull sync (then the memory starts over).
pub const MAX_PEERS_WITHOUT_SYNC: usize = 4096;

/// A request to the swarm task.
#[derive(Debug)]
pub enum Command {
    /// Gossips a payload that the caller has validated.
    Publish { topic: Topic, data: Vec<u8>, reply: oneshot::Sender<Result<(), PublishError>> },
    /// The verdict of the validation workers on one gossip message.
    Report { msg_id: MessageId, source: PeerId, verdict: Verdict },
    /// Sends a pull-sync request and waits for the answer.
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, String>>,
    },
    /// Answers an inbound pull-sync request.
    Respond { channel: ResponseChannel<SyncResponse>, response: SyncResponse },
    /// Lowers a peer's application score.
    Penalize { peer: PeerId, action: PeerAction },
    /// Reports the network's state.
    Status { reply: oneshot::Sender<NetStatus> },
}

/// Why a publish did not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum PublishError {
    /// No peer on the topic yet: the object is stored and will reach peers by pull sync.
    #[error("no peer subscribed to the topic yet")]
    NoPeers,
    /// Gossipsub already saw this payload.
    #[error("already published")]
    Duplicate,
    #[error("publish failed: {0}")]
    Other(String),
    #[error("the network service has stopped")]
    Stopped,
}

/// One connected peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub peer_id: String,
    /// Gossipsub peer score (application score included).
    pub score: f64,
    pub app_score: f64,
}

/// The network's state for `/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct NetStatus {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub connected_peers: Vec<PeerStatus>,
    /// Mesh size per topic kind.
    pub mesh: HashMap<String, usize>,
    pub banned_peers: Vec<String>,
}

/// A gossip message handed to the validation workers.
#[derive(Debug)]
pub struct GossipJob {
    pub topic: Topic,
    pub msg_id: MessageId,
    pub source: PeerId,
    pub data: Vec<u8>,
    pub received: Instant,
}

/// An inbound pull-sync request handed to the sync server.
#[derive(Debug)]
pub struct SyncServe {
    pub peer: PeerId,
    pub request: SyncRequest,
    pub channel: ResponseChannel<SyncResponse>,
}

/// Work for the sync driver.
#[derive(Debug, Clone)]
pub enum SyncJob {
    /// A new peer: ask it for what we lack.
    PeerConnected(PeerId),
    /// A bid named an order we lack: fetch it from the peer that sent the bid, then take the
    /// bid in (gossipsub will not deliver the same bid twice).
    FetchOrder { peer: PeerId, order_id: leasemesh_protocol::Id, bid: Vec<u8> },
}

/// A cheap handle to the swarm task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
}

impl NetworkHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Sends a command, waiting for room in the queue.
    pub async fn send(&self, cmd: Command) -> bool {
        self.tx.send(cmd).await.is_ok()
    }

    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), PublishError> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Publish { topic, data, reply }).await {
            return Err(PublishError::Stopped);
        }
        rx.await.unwrap_or(Err(PublishError::Stopped))
    }

    pub async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, String> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Request { peer, request, reply }).await {
            return Err("network stopped".into());
        }
        rx.await.unwrap_or_else(|_| Err("network stopped".into()))
    }

    pub async fn status(&self) -> Option<NetStatus> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Command::Status { reply }).await {
            return None;
        }
        rx.await.ok()
    }
}

/// The queues the swarm task feeds.
#[derive(Debug)]
pub struct ServiceOutputs {
    pub gossip: mpsc::Sender<GossipJob>,
    pub sync_serve: mpsc::Sender<SyncServe>,
    pub sync_jobs: mpsc::Sender<SyncJob>,
}

/// The swarm task's state.
pub struct NetworkService {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    out: ServiceOutputs,
    metrics: Arc<Metrics>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, String>>>,
    rate: RateLimiter<PeerId>,
    app_scores: HashMap<PeerId, f64>,
    banned: HashSet<PeerId>,
    /// Consecutive score checks each peer spent below the ban threshold.
    low_score_checks: HashMap<PeerId, u32>,
    target_peers: u32,
    /// Connected peers whose pull sync was started (once per connection, after identify).
    sync_started: HashSet<PeerId>,
    /// Peers whose identify did not list [`SYNC_PROTOCOL`] (another implementation, or a light
    /// peer): no pull sync is tried with them, on this connection or the next.
    without_sync: HashSet<PeerId>,
    /// The configured bootstrap peers, redialled while no peer is connected.
    bootstrap: Vec<Multiaddr>,
    /// When to check for peers (and redial) next, and the wait after a redial.
    redial_at: tokio::time::Instant,
    redial_backoff: Duration,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkService").field("peer_id", self.swarm.local_peer_id()).finish()
    }
}

/// An error with its sources ("a: b: c"): libp2p's transport errors say nothing themselves
/// (an address in use is only in the source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Splits `/ip4/.../tcp/1/p2p/<id>` into the peer id and the address without it.
pub fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut a = addr.clone();
    match a.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, a)),
        _ => None,
    }
}

impl NetworkService {
    /// Subscribes to every topic, starts listening and dials the bootstrap peers.
    pub fn new(
        mut swarm: Swarm<Behaviour>,
        listen: &[Multiaddr],
        bootstrap: &[Multiaddr],
        target_peers: u32,
        gossip_rate: (u32, u32),
        out: ServiceOutputs,
        metrics: Arc<Metrics>,
    ) -> Result<(NetworkService, NetworkHandle), String> {
        for t in Topic::ALL {
            swarm.behaviour_mut().gossipsub.subscribe(&t.ident()).map_err(|e| e.to_string())?;
        }
        for a in listen {
            swarm
                .listen_on(a.clone())
                .map_err(|e| format!("cannot listen on {a}: {}", error_chain(&e)))?;
        }
        for a in bootstrap {
            if let Some((peer, addr)) = split_peer(a) {
                swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
        let (tx, commands) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
        let handle = NetworkHandle { tx, peer_id: *swarm.local_peer_id() };
        let mut service = NetworkService {
            swarm,
            commands,
            out,
            metrics,
            pending_requests: HashMap::new(),
            rate: RateLimiter::new(gossip_rate.0, gossip_rate.1),
            app_scores: HashMap::new(),
            banned: HashSet::new(),
            low_score_checks: HashMap::new(),
            target_peers,
            sync_started: HashSet::new(),
            without_sync: HashSet::new(),
            bootstrap: bootstrap.to_vec(),
            redial_at: tokio::time::Instant::now() + BOOTSTRAP_REDIAL_FIRST,
            redial_backoff: BOOTSTRAP_REDIAL_FIRST,
        };
        service.dial_bootstrap();
        Ok((service, handle))
    }

    /// Dials the bootstrap peers this node is not connected to, has not banned and is not
    /// dialling already (an address without a peer id only when no dial is pending at all).
    fn dial_bootstrap(&mut self) {
        let pending = self.swarm.network_info().connection_counters().num_pending_outgoing();
        for a in self.bootstrap.clone() {
            let opts = match split_peer(&a) {
                Some((peer, _))
                    if self.banned.contains(&peer) || self.swarm.is_connected(&peer) =>
                {
                    continue
                }
                Some((peer, addr)) => DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None if pending > 0 => continue,
                None => DialOpts::from(a.clone()),
            };
            match self.swarm.dial(opts) {
                Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {}
                Err(e) => tracing::warn!(addr = %a, error = %e, "cannot dial bootstrap peer"),
            }
        }
    }

    /// While no peer is connected, redials the bootstrap peers with a doubling wait; once one
    /// is, the wait starts over (a node that loses every peer later redials quickly too).
    fn redial_bootstrap(&mut self) {
        if self.swarm.connected_peers().next().is_some() {
            self.redial_backoff = BOOTSTRAP_REDIAL_FIRST;
            self.redial_at = tokio::time::Instant::now() + BOOTSTRAP_REDIAL_FIRST;
            return;
        }
        tracing::debug!(after = ?self.redial_backoff, "no peers: redialling the bootstrap peers");
        self.dial_bootstrap();
        self.redial_at = tokio::time::Instant::now() + self.redial_backoff;
        self.redial_backoff = (self.redial_backoff * 2).min(BOOTSTRAP_REDIAL_MAX);
    }

    /// Runs until `shutdown` flips.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut score_tick = tokio::time::interval(scoring::BAN_CHECK_INTERVAL);
        let mut kad_tick = tokio::time::interval(KAD_BOOTSTRAP_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                _ = score_tick.tick() => self.check_scores(),
                _ = kad_tick.tick() => {
                    // No known peers yet is normal for the first node of a mesh.
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                _ = tokio::time::sleep_until(self.redial_at), if !self.bootstrap.is_empty() => {
                    self.redial_bootstrap();
                }
            }
        }
        tracing::info!("network service stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { topic, data, reply } => {
                let r = self.swarm.behaviour_mut().gossipsub.publish(topic.hash(), data);
                let r = r.map(|_| ()).map_err(|e| match e {
                    gossipsub::PublishError::NoPeersSubscribedToTopic => PublishError::NoPeers,
                    gossipsub::PublishError::Duplicate => PublishError::Duplicate,
                    other => PublishError::Other(other.to_string()),
                });
                let _ = reply.send(r);
            }
            Command::Report { msg_id, source, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&msg_id, &source, acceptance);
            }
            Command::Request { peer, request, reply } => {
                if self.without_sync.contains(&peer) {
                    let _ = reply.send(Err(format!("peer does not speak {SYNC_PROTOCOL}")));
                    return;
                }
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending_requests.insert(id, reply);
            }
            Command::Respond { channel, response } => {
                // The peer may have gone; nothing to do then.
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
            }
            Command::Penalize { peer, action } => self.penalize(peer, action),
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn penalize(&mut self, peer: PeerId, action: PeerAction) {
        let s = self.app_scores.entry(peer).or_insert(0.0);
        *s = (*s + action.penalty()).max(scoring::APP_SCORE_FLOOR);
        let s = *s;
        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, s);
    }

    fn status(&self) -> NetStatus {
        let gs = &self.swarm.behaviour().gossipsub;
        NetStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            connected_peers: self
                .swarm
                .connected_peers()
                .map(|p| PeerStatus {
                    peer_id: p.to_string(),
                    score: gs.peer_score(p).unwrap_or(0.0),
                    app_score: self.app_scores.get(p).copied().unwrap_or(0.0),
                })
                .collect(),
            mesh: Topic::ALL
                .iter()
                .map(|t| (t.kind().to_string(), gs.mesh_peers(&t.hash()).count()))
                .collect(),
            banned_peers: self.banned.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Bans peers whose score fell below the ban threshold; lets application scores recover.
    fn check_scores(&mut self) {
        let now = Instant::now();
        self.rate.prune(now, Duration::from_secs(60));
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let score = self.swarm.behaviour().gossipsub.peer_score(&p).unwrap_or(0.0);
            if score >= scoring::BAN_THRESHOLD {
                self.low_score_checks.remove(&p);
                continue;
            }
            let n = self.low_score_checks.entry(p).or_insert(0);
            *n += 1;
            if *n >= scoring::BAN_AFTER_CHECKS && self.banned.insert(p) {
                tracing::warn!(peer = %p, score, "banning peer for its score");
                self.metrics.peers_banned.inc();
                self.low_score_checks.remove(&p);
                self.swarm.behaviour_mut().blocked.block_peer(p);
            }
        }
        let mut recovered = Vec::new();
        for (p, s) in self.app_scores.iter_mut() {
            *s *= 1.0 - scoring::APP_SCORE_RECOVERY;
            if s.abs() < 0.01 {
                *s = 0.0;
            }
            recovered.push((*p, *s));
        }
        for (p, s) in recovered {
            self.swarm.behaviour_mut().gossipsub.set_application_score(&p, s);
        }
        self.app_scores.retain(|_, s| *s != 0.0);
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identify(peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, ..
            })) => {
                let connected = self.swarm.connected_peers().count();
                if !self.swarm.is_connected(&peer)
                    && connected < self.target_peers as usize
                    && !self.banned.contains(&peer)
                {
                    let _ = self.swarm.dial(peer);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                // Only dialled: identify tells whether the peer belongs in the DHT.
                for (peer, addr) in list {
                    if !self.swarm.is_connected(&peer) && !self.banned.contains(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.metrics.peers_connected.set(self.swarm.connected_peers().count() as i64);
                // Pull sync starts once identify says the peer speaks it (`on_identify`).
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                self.metrics.peers_connected.set(self.swarm.connected_peers().count() as i64);
                if num_established == 0 {
                    self.rate.forget(&peer_id);
                    self.low_score_checks.remove(&peer_id);
                    self.sync_started.remove(&peer_id);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(addr = %address, peer = %self.swarm.local_peer_id(), "listening");
            }
            _ => {}
        }
    }

    /// What identify says about a peer decides whether it joins the DHT (only peers that speak
    /// [`KAD_PROTOCOL`]: another implementation's peer would spread through the routing tables and
    /// be redialled on every walk) and whether pull sync is tried with it.
    fn on_identify(&mut self, peer: PeerId, info: identify::Info) {
        let speaks = |id: &str| info.protocols.iter().any(|p| p.as_ref() == id);
        if speaks(KAD_PROTOCOL) {
            for a in info.listen_addrs.iter() {
                self.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
            }
        }
        if !speaks(SYNC_PROTOCOL) {
            if self.without_sync.len() >= MAX_PEERS_WITHOUT_SYNC {
                self.without_sync.clear();
            }
            if self.without_sync.insert(peer) {
                tracing::debug!(peer = %peer, agent = %info.agent_version, "peer has no pull sync");
            }
            return;
        }
        self.without_sync.remove(&peer);
        // Identify runs on every connection: the first one since the peer connected starts sync.
        if !self.sync_started.insert(peer) {
            return;
        }
        if self.out.sync_jobs.try_send(SyncJob::PeerConnected(peer)).is_err() {
            tracing::debug!(peer = %peer, "sync queue full; skipping sync with peer");
            self.sync_started.remove(&peer);
        }
    }

    fn report(&mut self, msg_id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(msg_id, source, acceptance);
    }

    fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source, message_id, message } = e else {
            return;
        };
        let Some(topic) = Topic::from_hash(&message.topic) else {
            // A topic we never subscribed to cannot arrive; be safe anyway.
            self.report(&message_id, &propagation_source, MessageAcceptance::Ignore);
            return;
        };
        let kind = topic.kind();
        if !self.rate.allow(&propagation_source, Instant::now()) {
            self.metrics
                .gossip_rate_limited
                .get_or_create(&TopicLabels { topic: kind.into() })
                .inc();
            self.metrics.verdict(kind, "ignore", Reason::RateLimited.as_str());
            self.report(&message_id, &propagation_source, MessageAcceptance::Ignore);
            self.penalize(propagation_source, PeerAction::RateLimited);
            return;
        }
        if message.data.len() > topic.max_size() {
            self.metrics.verdict(kind, "reject", Reason::TooLarge.as_str());
            self.report(&message_id, &propagation_source, MessageAcceptance::Reject);
            return;
        }
        let job = GossipJob {
            topic,
            msg_id: message_id.clone(),
            source: propagation_source,
            data: message.data,
            received: Instant::now(),
        };
        match self.out.gossip.try_send(job) {
            Ok(()) => {
                self.metrics.validation_queue_depth.inc();
            }
            Err(_) => {
                self.metrics
                    .validation_queue_full
                    .get_or_create(&TopicLabels { topic: kind.into() })
                    .inc();
                self.metrics.verdict(kind, "ignore", Reason::QueueFull.as_str());
                self.report(&message_id, &propagation_source, MessageAcceptance::Ignore);
            }
        }
    }

    fn on_sync(&mut self, e: request_response::Event<SyncRequest, SyncResponse>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    if let Err(err) =
                        self.out.sync_serve.try_send(SyncServe { peer, request, channel })
                    {
                        let serve = err.into_inner();
                        let _ = self.swarm.behaviour_mut().sync.send_response(
                            serve.channel,
                            SyncResponse::Refused { reason: "busy".into() },
                        );
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkConfig;
    use crate::net::behaviour::build_swarm;

    fn message(topic: Topic, data: &[u8]) -> gossipsub::Event {
        gossipsub::Event::Message {
            propagation_source: PeerId::random(),
            message_id: MessageId::from(data.to_vec()),
            message: gossipsub::Message {
                source: None,
                data: data.to_vec(),
                sequence_number: None,
                topic: topic.hash(),
            },
        }
    }

    struct Harness {
        svc: NetworkService,
        gossip_rx: mpsc::Receiver<GossipJob>,
        jobs_rx: mpsc::Receiver<SyncJob>,
        metrics: Arc<Metrics>,
    }

    fn service(gossip_capacity: usize) -> Harness {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut metrics = Metrics::new();
        let swarm = build_swarm(key, &NetworkConfig::default(), &mut metrics.registry).unwrap();
        let metrics = Arc::new(metrics);
        let (gossip, gossip_rx) = mpsc::channel(gossip_capacity);
        let (sync_serve, _serve_rx) = mpsc::channel(1);
        let (sync_jobs, jobs_rx) = mpsc::channel(8);
        let (svc, _handle) = NetworkService::new(
            swarm,
            &[],
            &[],
            1,
            (1000, 3),
            ServiceOutputs { gossip, sync_serve, sync_jobs },
            metrics.clone(),
        )
        .unwrap();
        Harness { svc, gossip_rx, jobs_rx, metrics }
    }

    /// An identify answer listing `protocols`, from a peer listening on `addr`.
    fn identify_info(protocols: &[&'static str], addr: &str) -> identify::Info {
        identify::Info {
            public_key: libp2p::identity::Keypair::generate_ed25519().public(),
            protocol_version: "ipfs/0.1.0".into(),
            agent_version: "py-libp2p/0.8.1".into(),
            listen_addrs: vec![addr.parse().unwrap()],
            protocols: protocols.iter().map(|p| libp2p::StreamProtocol::new(p)).collect(),
            observed_addr: Multiaddr::empty(),
            signed_peer_record: None,
        }
    }

    fn in_dht(svc: &mut NetworkService, peer: &PeerId) -> bool {
        svc.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .any(|b| b.iter().any(|e| e.node.key.preimage() == peer))
    }

    /// Only a peer whose identify lists the leasemesh Kademlia protocol goes into the DHT; a
    /// foreign peer (gossipsub only) does not, so it is neither spread to others nor redialled
    /// on every walk.
    #[tokio::test]
    async fn identify_adds_only_peers_that_speak_leasemesh_kad_to_the_dht() {
        let mut h = service(8);
        let leasemesh = PeerId::random();
        let foreign = PeerId::random();
        h.svc.on_identify(
            leasemesh,
            identify_info(
                &[KAD_PROTOCOL, SYNC_PROTOCOL, "/meshsub/1.1.0"],
                "/ip4/127.0.0.1/tcp/4001",
            ),
        );
        h.svc.on_identify(
            foreign,
            identify_info(
                &["/meshsub/1.1.0", "/ipfs/id/1.0.0", "/ipfs/kad/1.0.0"],
                "/ip4/127.0.0.1/tcp/4002",
            ),
        );
        assert!(in_dht(&mut h.svc, &leasemesh));
        assert!(!in_dht(&mut h.svc, &foreign));
    }

    /// Pull sync starts once per connection, after identify, and only with a peer that lists the
    /// protocol; a request to a peer known to lack it fails at once instead of dialling a stream.
    #[tokio::test]
    async fn pull_sync_is_tried_only_with_peers_that_speak_it() {
        let mut h = service(8);
        let leasemesh = PeerId::random();
        let foreign = PeerId::random();
        let with_sync = || identify_info(&[KAD_PROTOCOL, SYNC_PROTOCOL], "/ip4/127.0.0.1/tcp/1");
        let without = || identify_info(&["/meshsub/1.1.0"], "/ip4/127.0.0.1/tcp/2");

        h.svc.on_identify(leasemesh, with_sync());
        // Identify again on the same connection (a push, a second connection): no second sync.
        h.svc.on_identify(leasemesh, with_sync());
        h.svc.on_identify(foreign, without());
        h.svc.on_identify(foreign, without());
        match h.jobs_rx.try_recv() {
            Ok(SyncJob::PeerConnected(p)) => assert_eq!(p, leasemesh),
            other => panic!("expected one sync job, got {other:?}"),
        }
        assert!(h.jobs_rx.try_recv().is_err(), "one sync job only");

        let (reply, mut rx) = oneshot::channel();
        h.svc.on_command(Command::Request {
            peer: foreign,
            request: SyncRequest::LiveIds {
                kind: super::super::sync::SyncKind::Orders,
                after: None,
                limit: 1,
            },
            reply,
        });
        let answer = rx.try_recv().expect("answered at once");
        assert!(answer.unwrap_err().contains(SYNC_PROTOCOL));
        assert!(h.svc.pending_requests.is_empty());
    }

    /// Starts a network service on its own task; the handle and the receiving ends of its
    /// queues (kept alive by the caller).
    #[allow(clippy::type_complexity)]
    fn spawn_service(
        key: libp2p::identity::Keypair,
        listen: &[Multiaddr],
        bootstrap: &[Multiaddr],
        shutdown: watch::Receiver<bool>,
    ) -> (
        NetworkHandle,
        (mpsc::Receiver<GossipJob>, mpsc::Receiver<SyncServe>, mpsc::Receiver<SyncJob>),
    ) {
        let mut metrics = Metrics::new();
        let swarm = build_swarm(key, &NetworkConfig::default(), &mut metrics.registry).unwrap();
        let (gossip, gossip_rx) = mpsc::channel(64);
        let (sync_serve, serve_rx) = mpsc::channel(64);
        let (sync_jobs, jobs_rx) = mpsc::channel(64);
        let (svc, handle) = NetworkService::new(
            swarm,
            listen,
            bootstrap,
            8,
            (1000, 100),
            ServiceOutputs { gossip, sync_serve, sync_jobs },
            Arc::new(metrics),
        )
        .unwrap();
        tokio::spawn(svc.run(shutdown));
        (handle, (gossip_rx, serve_rx, jobs_rx))
    }

    /// A node started before its bootstrap peer listens connects within seconds of the peer
    /// coming up (the redial), not at the next Kademlia walk 30 s later. Real TCP on loopback.
    #[tokio::test]
    async fn a_node_started_before_its_bootstrap_peer_connects_once_it_listens() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let key_a = libp2p::identity::Keypair::generate_ed25519();
        let addr_a: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let boot = addr_a.clone().with(Protocol::P2p(key_a.public().to_peer_id()));
        let (_stop, shutdown) = watch::channel(false);

        let local: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        let key_b = libp2p::identity::Keypair::generate_ed25519();
        let (b, _b_queues) = spawn_service(key_b, &[local], &[boot], shutdown.clone());
        // B's first dial and its first redials find nobody listening.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(b.status().await.unwrap().connected_peers.is_empty());

        let (_a, _a_queues) = spawn_service(key_a, &[addr_a], &[], shutdown);
        let since = Instant::now();
        loop {
            if !b.status().await.unwrap().connected_peers.is_empty() {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(12),
                "B did not reach its bootstrap peer within 12 s of it listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("B connected {} ms after A listened", since.elapsed().as_millis());
    }

    /// A full validation queue, an oversized payload and a rate-limited peer each get a verdict
    /// (Ignore or Reject), counted by reason, without reaching the workers.
    #[tokio::test]
    async fn every_early_path_reports_a_verdict() {
        let Harness { mut svc, mut gossip_rx, metrics, .. } = service(1);
        let orders = Topic::Orders { shard: None };

        svc.on_gossip(message(orders, b"first"));
        svc.on_gossip(message(orders, b"second: the queue of one is full"));
        assert_eq!(gossip_rx.try_recv().unwrap().data, b"first");
        assert!(gossip_rx.try_recv().is_err());

        svc.on_gossip(message(Topic::Heartbeats, &vec![0u8; Topic::Heartbeats.max_size() + 1]));

        // One peer with a burst of 3: the fourth message is rate-limited.
        let peer = PeerId::random();
        for i in 0..4u8 {
            let gossipsub::Event::Message { message_id, message, .. } = message(Topic::Bids, &[i])
            else {
                unreachable!()
            };
            svc.on_gossip(gossipsub::Event::Message {
                propagation_source: peer,
                message_id,
                message,
            });
            let _ = gossip_rx.try_recv();
        }

        let text = metrics.encode();
        for want in [
            r#"leasemesh_gossip_messages_total{topic="orders",verdict="ignore",reason="queue_full"} 1"#,
            r#"leasemesh_gossip_messages_total{topic="heartbeats",verdict="reject",reason="too_large"} 1"#,
            r#"leasemesh_gossip_messages_total{topic="bids",verdict="ignore",reason="rate_limited"} 1"#,
            r#"leasemesh_validation_queue_full_total{topic="orders"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(svc.app_scores.get(&peer).is_some_and(|s| *s < 0.0));
    }
}
