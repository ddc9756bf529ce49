//! The libp2p stack of a node: transports (TCP and QUIC, noise, yamux), and the behaviours
//! (connection limits, block list, gossipsub, Kademlia, identify, ping, mDNS, pull sync).

use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, kad, mdns, noise, ping,
    request_response, tcp, yamux, StreamProtocol, Swarm, SwarmBuilder,
};

use prometheus_client::registry::Registry;

use super::scoring;
use super::sync::{SyncRequest, SyncResponse, SYNC_PROTOCOL};
use super::topics::max_transmit_size;
use crate::config::NetworkConfig;

/// Identify protocol version: peers on another version are not leasemesh peers.
pub const IDENTIFY_PROTOCOL: &str = "/leasemesh/id/1";
/// Kademlia protocol id: a leasemesh DHT separate from the public IPFS one.
pub const KAD_PROTOCOL: &str = "/leasemesh/kad/1";
/// Gossipsub heartbeat.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_millis(700);
/// How long a pull-sync request may take.
pub const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Every behaviour of a node.
// The derive generates the event type; the behaviours inside have no useful Debug.
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub gossipsub: gossipsub::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub sync: request_response::json::Behaviour<SyncRequest, SyncResponse>,
}

/// The swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("behaviour: {0}")]
    Behaviour(String),
}

/// Gossipsub message id: the hash of the payload, so the same object sent twice (by anyone) is
/// one message.
pub fn message_id(msg: &gossipsub::Message) -> gossipsub::MessageId {
    let h = leasemesh_protocol::Hash::domain("leasemesh/v1/gossip-id", &[&msg.data]);
    gossipsub::MessageId::from(h.0.to_vec())
}

/// Registers gossipsub's own metrics under `leasemesh_gossipsub_*`, among them
/// `leasemesh_gossipsub_invalid_messages_per_topic_total{hash}`: messages that gossipsub refused
/// before the node saw them (a bad envelope signature, a malformed sequence number or source).
fn gossipsub_behaviour(
    key: &identity::Keypair,
    sign: bool,
    registry: &mut Registry,
) -> Result<gossipsub::Behaviour, String> {
    let config = gossipsub::ConfigBuilder::default()
        // Accept what other implementations send by default (go-libp2p and py-libp2p sign and set
        // from + seqno) as well as unsigned messages; a signature that is present is checked.
        // The payloads are signed objects already, so the envelope adds no trust: the id stays
        // the payload hash and the same object from two authors is one message.
        .validation_mode(gossipsub::ValidationMode::Permissive)
        .validate_messages()
        .message_id_fn(message_id)
        .max_transmit_size(max_transmit_size())
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .build()
        .map_err(|e| e.to_string())?;
    // Signed outbound envelopes by default (`sign_gossip`): peers on a default go-libp2p or
    // py-libp2p config (strict signing) drop unsigned messages. docs/interop.md has the cost.
    let authenticity = if sign {
        gossipsub::MessageAuthenticity::Signed(key.clone())
    } else {
        gossipsub::MessageAuthenticity::Anonymous
    };
    let mut gs = gossipsub::Behaviour::new(authenticity, config)?.with_metrics(
        registry.sub_registry_with_prefix("gossipsub"),
        libp2p_gossipsub::MetricsConfig::default(),
    );
    gs.with_peer_score(scoring::peer_score_params(), scoring::peer_score_thresholds())?;
    Ok(gs)
}

fn behaviour(
    key: &identity::Keypair,
    cfg: &NetworkConfig,
    registry: &mut Registry,
) -> Result<Behaviour, String> {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        .with_max_established_per_peer(Some(cfg.max_connections_per_peer))
        .with_max_pending_incoming(Some(cfg.max_pending_incoming));
    let mut kad_cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_cfg.set_query_timeout(Duration::from_secs(30));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = if cfg.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        gossipsub: gossipsub_behaviour(key, cfg.sign_gossip, registry)?,
        kad,
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(format!("leasemesh-node/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::default(),
        mdns: mdns.into(),
        sync: request_response::json::Behaviour::new(
            [(StreamProtocol::new(SYNC_PROTOCOL), request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(SYNC_REQUEST_TIMEOUT),
        ),
    })
}

/// Builds the swarm for `key` with TCP and QUIC transports; the behaviours' own metrics go into
/// `registry`.
pub fn build_swarm(
    key: identity::Keypair,
    cfg: &NetworkConfig,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, BuildError> {
    let cfg = cfg.clone();
    let idle = Duration::from_secs(cfg.idle_timeout_secs);
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| behaviour(key, &cfg, registry).map_err(Into::into))
        .map_err(|e| BuildError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
