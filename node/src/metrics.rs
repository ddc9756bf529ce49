//! The node's metrics, registered once per node (no global statics) and served on `/metrics`
//! in the Prometheus text format. Every name starts with `leasemesh_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a gossip verdict.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// Topic kind: orders, bids, providers, heartbeats, batches, leases.
    pub topic: String,
    /// accept, reject or ignore.
    pub verdict: String,
    /// Why: ok, too_large, malformed, bad_signature, invalid, expired, duplicate, unknown_order,
    /// rate_limited, queue_full, ...
    pub reason: String,
}

/// Labels carrying a topic kind only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

/// Labels carrying an object kind only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Every metric of a node.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// `leasemesh_gossip_messages_total{topic,verdict,reason}`: every gossip message by verdict.
    pub gossip_verdicts: Family<VerdictLabels, Counter>,
    /// `leasemesh_gossip_rate_limited_total{topic}`: messages dropped by a per-peer rate limit.
    pub gossip_rate_limited: Family<TopicLabels, Counter>,
    /// `leasemesh_validation_queue_full_total{topic}`: messages ignored because the queue was full.
    pub validation_queue_full: Family<TopicLabels, Counter>,
    /// `leasemesh_validation_queue_depth`: messages waiting for a validation worker.
    pub validation_queue_depth: Gauge,
    /// `leasemesh_api_submissions_total{kind}`: objects accepted through the HTTP API.
    pub api_submissions: Family<KindLabels, Counter>,
    /// `leasemesh_sync_fetched_total{kind}`: objects fetched from peers by pull sync.
    pub sync_fetched: Family<KindLabels, Counter>,
    /// `leasemesh_sync_requests_served_total`: pull-sync requests answered.
    pub sync_served: Counter,
    /// `leasemesh_peers_connected`: peers with at least one connection.
    pub peers_connected: Gauge,
    /// `leasemesh_peers_banned_total`: peers blocked for a score below the ban threshold.
    pub peers_banned: Counter,
    /// `leasemesh_store_orders` and friends: objects in the store (updated on scrape).
    pub store_orders: Gauge,
    pub store_bids: Gauge,
    pub store_providers: Gauge,
    pub store_leases: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("leasemesh");
        let m = Metrics {
            gossip_verdicts: Family::default(),
            gossip_rate_limited: Family::default(),
            validation_queue_full: Family::default(),
            validation_queue_depth: Gauge::default(),
            api_submissions: Family::default(),
            sync_fetched: Family::default(),
            sync_served: Counter::default(),
            peers_connected: Gauge::default(),
            peers_banned: Counter::default(),
            store_orders: Gauge::default(),
            store_bids: Gauge::default(),
            store_providers: Gauge::default(),
            store_leases: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "gossip_messages",
            "Gossip messages by topic, verdict and reason",
            m.gossip_verdicts.clone(),
        );
        registry.register(
            "gossip_rate_limited",
            "Gossip messages dropped by a per-peer rate limit",
            m.gossip_rate_limited.clone(),
        );
        registry.register(
            "validation_queue_full",
            "Gossip messages ignored because the validation queue was full",
            m.validation_queue_full.clone(),
        );
        registry.register(
            "validation_queue_depth",
            "Gossip messages waiting for a validation worker",
            m.validation_queue_depth.clone(),
        );
        registry.register(
            "api_submissions",
            "Objects accepted through the HTTP API",
            m.api_submissions.clone(),
        );
        registry.register("sync_fetched", "Objects fetched by pull sync", m.sync_fetched.clone());
        registry.register(
            "sync_requests_served",
            "Pull-sync requests answered",
            m.sync_served.clone(),
        );
        registry.register("peers_connected", "Connected peers", m.peers_connected.clone());
        registry.register("peers_banned", "Peers banned for a low score", m.peers_banned.clone());
        registry.register("store_orders", "Orders in the store", m.store_orders.clone());
        registry.register("store_bids", "Bids in the store", m.store_bids.clone());
        registry.register(
            "store_providers",
            "Provider infos in the store",
            m.store_providers.clone(),
        );
        registry.register("store_leases", "Leases in the store", m.store_leases.clone());
        Metrics { registry, ..m }
    }

    /// Counts one verdict.
    pub fn verdict(&self, topic: &str, verdict: &str, reason: &str) {
        self.gossip_verdicts
            .get_or_create(&VerdictLabels {
                topic: topic.into(),
                verdict: verdict.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
