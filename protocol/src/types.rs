//! The objects of the marketplace: orders, bids, provider infos, heartbeats, match batches,
//! lease events and settlement batches. Every field is an integer, a string or a hash: no floats.
//!
//! Time is milliseconds since the Unix epoch (`*_ms`), resources are millicores and bytes,
//! amounts are `u128` in the denom's smallest unit.

use serde::{Deserialize, Serialize};

use crate::codec::{Signable, PROTOCOL_VERSION};
use crate::crypto::{Hash, Id, PublicKey};
use crate::validate::{
    coin, ident, in_range, max_len, non_empty, nonzero, sorted_unique, text, TimeError,
    ValidationError,
};

// ---------------------------------------------------------------------------------------------
// Limits. They are part of the wire format: changing one is a protocol change.

/// Largest encoded signed order, in bytes.
pub const MAX_ORDER_SIZE: usize = 64 * 1024;
/// Largest encoded signed bid, in bytes.
pub const MAX_BID_SIZE: usize = 1024;
/// Largest encoded signed provider info, in bytes.
pub const MAX_PROVIDER_INFO_SIZE: usize = 256 * 1024;
/// Largest encoded signed heartbeat, in bytes.
pub const MAX_HEARTBEAT_SIZE: usize = 512;
/// Largest encoded signed match batch, in bytes (about 250k order and bid ids).
pub const MAX_MATCH_BATCH_SIZE: usize = 16 * 1024 * 1024;
/// Largest encoded signed lease event, in bytes.
pub const MAX_LEASE_EVENT_SIZE: usize = 8 * 1024;
/// Largest encoded signed settlement batch, in bytes.
pub const MAX_SETTLEMENT_BATCH_SIZE: usize = 32 * 1024 * 1024;

/// Shortest and longest auction an order may ask for.
pub const MIN_BID_WINDOW_MS: u64 = 100;
pub const MAX_BID_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Shortest and longest lease term.
pub const MIN_LEASE_TERM_MS: u64 = 1000;
pub const MAX_LEASE_TERM_MS: u64 = 366 * 24 * 3600 * 1000;
/// Shortest and longest grace period for a silent provider.
pub const MIN_GRACE_PERIOD_MS: u64 = 1000;
pub const MAX_GRACE_PERIOD_MS: u64 = 24 * 3600 * 1000;
/// Longest a bid may stay valid after it was made.
pub const MAX_BID_VALIDITY_MS: u64 = 3600 * 1000;
/// How far ahead of the local clock a creation time may be before it is refused.
pub const MAX_CLOCK_SKEW_MS: u64 = 5_000;
/// At most this many service groups in one order, replicas in one group.
pub const MAX_GROUPS: usize = 64;
pub const MAX_REPLICAS: u32 = 1000;
/// At most this many hosts per provider, GPUs per host.
pub const MAX_HOSTS: usize = 1024;
pub const MAX_GPUS_PER_HOST: usize = 64;
/// Placement and provider attributes.
pub const MAX_ATTRIBUTES: usize = 32;
/// Basis points in a whole (uptime is given in basis points: 10000 = 100 %).
pub const BPS_ONE: u16 = 10_000;

// ---------------------------------------------------------------------------------------------
// Shared pieces.

/// An amount of one denom, in its smallest unit (for example `uakt`, `inj`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Coin {
    pub denom: String,
    #[serde(with = "amount_serde")]
    pub amount: u128,
}

impl Coin {
    pub fn new(denom: impl Into<String>, amount: u128) -> Coin {
        Coin { denom: denom.into(), amount }
    }
}

impl std::fmt::Display for Coin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.amount, self.denom)
    }
}

/// Amounts are decimal strings in JSON (as in Cosmos SDK), plain varints on the wire: a `u128`
/// does not survive a JavaScript number.
pub mod amount_serde {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&v.to_string())
        } else {
            s.serialize_u128(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(|_| de::Error::custom(format!("amount {s:?} is not an integer")))
        } else {
            u128::deserialize(d)
        }
    }
}

/// A key-value attribute of a provider (`region=eu-west`), or one a placement requires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attribute {
    pub key: String,
    pub value: String,
}

impl Attribute {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Attribute {
        Attribute { key: key.into(), value: value.into() }
    }
}

fn check_attributes(field: &str, attrs: &[Attribute]) -> Result<(), ValidationError> {
    max_len(field, attrs, MAX_ATTRIBUTES)?;
    for a in attrs {
        ident(&format!("{field}.key"), &a.key, 64)?;
        text(&format!("{field}.{}", a.key), &a.value, 128)?;
    }
    sorted_unique(field, attrs.iter().map(|a| a.key.as_str()))
}

/// How a GPU attaches to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuInterface {
    Pcie,
    Sxm,
}

// ---------------------------------------------------------------------------------------------
// Order.

/// A tenant's signed request for compute: what it needs, where, for how long, at what price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub version: u8,
    /// The tenant's key: the order must be signed by it.
    pub tenant: PublicKey,
    /// Makes otherwise identical orders distinct.
    pub nonce: u64,
    pub created_at_ms: u64,
    /// The auction closes at `created_at_ms + bid_window_ms`.
    pub bid_window_ms: u64,
    /// How long the lease runs once it starts.
    pub lease_term_ms: u64,
    /// A provider silent for longer than this stops earning.
    pub grace_period_ms: u64,
    /// What to run: one or more groups of identical replicas. All are won together or not at all.
    pub groups: Vec<ServiceGroup>,
    pub placement: Placement,
    /// The most the tenant pays per hour for the whole order (all groups, all replicas).
    pub max_price_per_hour: Coin,
    /// Where the tenant pays from on the settlement backend.
    pub tenant_address: String,
    /// Hash of the [`Manifest`](crate::manifest::Manifest) delivered privately to the winner.
    pub manifest_hash: Hash,
}

/// `count` replicas of the same resources. Named after the service (or SDL profile) it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceGroup {
    pub name: String,
    pub count: u32,
    pub resources: Resources,
}

/// What one replica needs. Every replica must fit on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    /// Persistent volumes, each of a storage class the provider must offer. Sorted by name.
    pub persistent_storage: Vec<PersistentVolume>,
    /// `None` for a replica without GPUs.
    pub gpu: Option<GpuRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistentVolume {
    pub name: String,
    pub class: String,
    pub bytes: u64,
}

/// GPUs per replica: all of one model, on the replica's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRequest {
    pub units: u32,
    /// Vendor, lower case ("nvidia").
    pub vendor: String,
    /// Acceptable models, sorted by name; empty means any model of the vendor.
    pub models: Vec<GpuModelSpec>,
}

/// One acceptable GPU model and what it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuModelSpec {
    /// Model name, lower case ("a100", "rtx4090").
    pub name: String,
    /// Minimum memory per GPU in bytes; 0 accepts any.
    pub min_vram_bytes: u64,
    /// Required interface; `None` accepts any.
    pub interface: Option<GpuInterface>,
}

/// Where the order may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Placement name (the SDL placement group), used to pick the manifest's group.
    pub name: String,
    /// Attributes the provider must have, sorted by key.
    pub attributes: Vec<Attribute>,
    /// Minimum provider uptime in basis points (10000 = 100 %), from anchored history.
    pub min_uptime_bps: u16,
}

impl Order {
    /// When the auction closes: bids after this do not count.
    pub fn auction_closes_at_ms(&self) -> u64 {
        self.created_at_ms.saturating_add(self.bid_window_ms)
    }

    /// Total replicas across groups.
    pub fn replicas(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.count)).sum()
    }

    /// Total GPUs across groups and replicas.
    pub fn gpus(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| {
                u64::from(g.count) * u64::from(g.resources.gpu.as_ref().map_or(0, |x| x.units))
            })
            .sum()
    }

    /// Refuses an order from the future or whose auction already closed.
    pub fn check_time(&self, now_ms: u64) -> Result<(), TimeError> {
        if self.created_at_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(TimeError::FromTheFuture {
                what: "order",
                created_at_ms: self.created_at_ms,
                now_ms,
                skew_ms: MAX_CLOCK_SKEW_MS,
            });
        }
        if self.auction_closes_at_ms() <= now_ms {
            return Err(TimeError::Expired {
                what: "order auction",
                expires_at_ms: self.auction_closes_at_ms(),
                now_ms,
            });
        }
        Ok(())
    }
}

impl Resources {
    fn validate(&self, field: &str) -> Result<(), ValidationError> {
        nonzero(&format!("{field}.cpu_millis"), self.cpu_millis)?;
        nonzero(&format!("{field}.memory_bytes"), self.memory_bytes)?;
        nonzero(&format!("{field}.ephemeral_storage_bytes"), self.ephemeral_storage_bytes)?;
        max_len(&format!("{field}.persistent_storage"), &self.persistent_storage, 16)?;
        for v in &self.persistent_storage {
            ident(&format!("{field}.persistent_storage.name"), &v.name, 64)?;
            ident(&format!("{field}.persistent_storage.{}.class", v.name), &v.class, 64)?;
            nonzero(&format!("{field}.persistent_storage.{}.bytes", v.name), v.bytes)?;
        }
        sorted_unique(
            &format!("{field}.persistent_storage"),
            self.persistent_storage.iter().map(|v| v.name.as_str()),
        )?;
        if let Some(gpu) = &self.gpu {
            let f = format!("{field}.gpu");
            nonzero(&format!("{f}.units"), u64::from(gpu.units))?;
            in_range(&format!("{f}.units"), u128::from(gpu.units), 1, MAX_GPUS_PER_HOST as u128)?;
            ident(&format!("{f}.vendor"), &gpu.vendor, 32)?;
            max_len(&format!("{f}.models"), &gpu.models, 64)?;
            for m in &gpu.models {
                ident(&format!("{f}.models.name"), &m.name, 64)?;
            }
            sorted_unique(&format!("{f}.models"), gpu.models.iter().map(|m| m.name.as_str()))?;
        }
        Ok(())
    }

    /// Total persistent bytes per class, summed.
    pub fn persistent_by_class(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for v in &self.persistent_storage {
            match out.iter_mut().find(|(c, _)| *c == v.class) {
                Some((_, b)) => *b = b.saturating_add(v.bytes),
                None => out.push((v.class.clone(), v.bytes)),
            }
        }
        out.sort();
        out
    }
}

impl Signable for Order {
    const DOMAIN: &'static str = "leasemesh/v1/order";
    const MAX_SIZE: usize = MAX_ORDER_SIZE;
    const NAME: &'static str = "order";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.tenant)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        in_range(
            "bid_window_ms",
            self.bid_window_ms.into(),
            MIN_BID_WINDOW_MS.into(),
            MAX_BID_WINDOW_MS.into(),
        )?;
        in_range(
            "lease_term_ms",
            self.lease_term_ms.into(),
            MIN_LEASE_TERM_MS.into(),
            MAX_LEASE_TERM_MS.into(),
        )?;
        in_range(
            "grace_period_ms",
            self.grace_period_ms.into(),
            MIN_GRACE_PERIOD_MS.into(),
            MAX_GRACE_PERIOD_MS.into(),
        )?;
        if self.created_at_ms.checked_add(self.bid_window_ms + self.lease_term_ms).is_none() {
            return Err(ValidationError::Overflow {
                field: "created_at_ms".into(),
                why: "created_at_ms plus window and term passes the end of time",
            });
        }
        non_empty("groups", &self.groups)?;
        max_len("groups", &self.groups, MAX_GROUPS)?;
        let mut total_cpu: u64 = 0;
        let mut total_mem: u64 = 0;
        for (i, g) in self.groups.iter().enumerate() {
            let field = format!("groups[{i}]");
            ident(&format!("{field}.name"), &g.name, 64)?;
            in_range(&format!("{field}.count"), g.count.into(), 1, MAX_REPLICAS.into())?;
            g.resources.validate(&format!("{field}.resources"))?;
            let overflow = || ValidationError::Overflow {
                field: format!("{field}.count"),
                why: "count times resources does not fit in 64 bits",
            };
            let cpu = g.resources.cpu_millis.checked_mul(g.count.into()).ok_or_else(overflow)?;
            let mem = g.resources.memory_bytes.checked_mul(g.count.into()).ok_or_else(overflow)?;
            g.resources.ephemeral_storage_bytes.checked_mul(g.count.into()).ok_or_else(overflow)?;
            total_cpu = total_cpu.checked_add(cpu).ok_or_else(overflow)?;
            total_mem = total_mem.checked_add(mem).ok_or_else(overflow)?;
        }
        sorted_unique("groups", self.groups.iter().map(|g| g.name.as_str()))?;
        ident("placement.name", &self.placement.name, 64)?;
        check_attributes("placement.attributes", &self.placement.attributes)?;
        in_range("placement.min_uptime_bps", self.placement.min_uptime_bps.into(), 0, 10_000)?;
        coin("max_price_per_hour", &self.max_price_per_hour)?;
        if self.max_price_per_hour.amount == 0 {
            return Err(ValidationError::Zero { field: "max_price_per_hour.amount".into() });
        }
        // The whole term's cost must be representable: price × term in ms.
        if self.max_price_per_hour.amount.checked_mul(u128::from(self.lease_term_ms)).is_none() {
            return Err(ValidationError::Overflow {
                field: "max_price_per_hour.amount".into(),
                why: "price per hour times the lease term does not fit in 128 bits",
            });
        }
        ident("tenant_address", &self.tenant_address, 128)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Bid.

/// A provider's signed offer to run a whole order for a price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    pub version: u8,
    pub order_id: Id,
    pub provider: PublicKey,
    /// Price per hour for the whole order, in the order's denom.
    pub price_per_hour: Coin,
    pub created_at_ms: u64,
    /// The bid is void after this time.
    pub expires_at_ms: u64,
}

impl Bid {
    pub fn check_time(&self, now_ms: u64) -> Result<(), TimeError> {
        if self.created_at_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(TimeError::FromTheFuture {
                what: "bid",
                created_at_ms: self.created_at_ms,
                now_ms,
                skew_ms: MAX_CLOCK_SKEW_MS,
            });
        }
        if self.expires_at_ms <= now_ms {
            return Err(TimeError::Expired {
                what: "bid",
                expires_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        Ok(())
    }

    /// Checks the bid against the order it answers: same id, same denom, price within the max.
    pub fn check_against(&self, order_id: &Id, order: &Order) -> Result<(), ValidationError> {
        if self.order_id != *order_id {
            return Err(ValidationError::Inconsistent {
                field: "order_id".into(),
                why: "the bid answers another order".into(),
            });
        }
        if self.price_per_hour.denom != order.max_price_per_hour.denom {
            return Err(ValidationError::Inconsistent {
                field: "price_per_hour.denom".into(),
                why: format!(
                    "the order pays in {}, the bid asks {}",
                    order.max_price_per_hour.denom, self.price_per_hour.denom
                ),
            });
        }
        if self.price_per_hour.amount > order.max_price_per_hour.amount {
            return Err(ValidationError::Inconsistent {
                field: "price_per_hour.amount".into(),
                why: format!(
                    "{} is over the order's maximum of {}",
                    self.price_per_hour, order.max_price_per_hour
                ),
            });
        }
        Ok(())
    }
}

impl Signable for Bid {
    const DOMAIN: &'static str = "leasemesh/v1/bid";
    const MAX_SIZE: usize = MAX_BID_SIZE;
    const NAME: &'static str = "bid";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        coin("price_per_hour", &self.price_per_hour)?;
        if self.expires_at_ms <= self.created_at_ms {
            return Err(ValidationError::Inconsistent {
                field: "expires_at_ms".into(),
                why: "a bid must expire after it was created".into(),
            });
        }
        in_range(
            "expires_at_ms - created_at_ms",
            u128::from(self.expires_at_ms - self.created_at_ms),
            1,
            MAX_BID_VALIDITY_MS.into(),
        )?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Provider info and heartbeat.

/// One GPU device on a host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Gpu {
    /// Device id as the runtime knows it (an index or a UUID).
    pub id: String,
    pub vendor: String,
    pub model: String,
    pub vram_bytes: u64,
    pub interface: GpuInterface,
}

/// Resources of one host: a total, or what is free of it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    /// Persistent storage per class, sorted by class.
    pub persistent_storage: Vec<StorageClassCapacity>,
    /// GPU devices, sorted by id.
    pub gpus: Vec<Gpu>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StorageClassCapacity {
    pub class: String,
    pub bytes: u64,
}

impl Capacity {
    fn validate(&self, field: &str) -> Result<(), ValidationError> {
        max_len(&format!("{field}.persistent_storage"), &self.persistent_storage, 16)?;
        for s in &self.persistent_storage {
            ident(&format!("{field}.persistent_storage.class"), &s.class, 64)?;
        }
        sorted_unique(
            &format!("{field}.persistent_storage"),
            self.persistent_storage.iter().map(|s| s.class.as_str()),
        )?;
        max_len(&format!("{field}.gpus"), &self.gpus, MAX_GPUS_PER_HOST)?;
        for g in &self.gpus {
            ident(&format!("{field}.gpus.id"), &g.id, 64)?;
            ident(&format!("{field}.gpus.{}.vendor", g.id), &g.vendor, 32)?;
            ident(&format!("{field}.gpus.{}.model", g.id), &g.model, 64)?;
        }
        sorted_unique(&format!("{field}.gpus"), self.gpus.iter().map(|g| g.id.as_str()))
    }

    /// Persistent bytes of one class (0 when the class is not offered).
    pub fn persistent_bytes(&self, class: &str) -> u64 {
        self.persistent_storage.iter().find(|s| s.class == class).map_or(0, |s| s.bytes)
    }

    /// True if every resource of `self` is at most that of `other` and its GPUs are among
    /// `other`'s.
    pub fn fits_within(&self, other: &Capacity) -> bool {
        self.cpu_millis <= other.cpu_millis
            && self.memory_bytes <= other.memory_bytes
            && self.ephemeral_storage_bytes <= other.ephemeral_storage_bytes
            && self.persistent_storage.iter().all(|s| s.bytes <= other.persistent_bytes(&s.class))
            && self.gpus.iter().all(|g| other.gpus.contains(g))
    }
}

/// One host of a provider: what it has and what is free now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub total: Capacity,
    pub free: Capacity,
}

/// A provider's signed description of itself and its free capacity, per host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub version: u8,
    pub provider: PublicKey,
    /// Increases with every new info; a node keeps the highest it has seen.
    pub sequence: u64,
    pub created_at_ms: u64,
    /// Sorted by key.
    pub attributes: Vec<Attribute>,
    /// Sorted by name.
    pub hosts: Vec<Host>,
    /// Where tenants reach the provider's API (URL).
    pub api_endpoint: String,
    /// Where the provider is paid on the settlement backend.
    pub chain_address: String,
    /// X25519 public key that manifests are sealed to.
    pub encryption_key: [u8; 32],
}

impl Signable for ProviderInfo {
    const DOMAIN: &'static str = "leasemesh/v1/provider-info";
    const MAX_SIZE: usize = MAX_PROVIDER_INFO_SIZE;
    const NAME: &'static str = "provider info";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check_attributes("attributes", &self.attributes)?;
        non_empty("hosts", &self.hosts)?;
        max_len("hosts", &self.hosts, MAX_HOSTS)?;
        for h in &self.hosts {
            let field = format!("hosts.{}", h.name);
            ident("hosts.name", &h.name, 64)?;
            h.total.validate(&format!("{field}.total"))?;
            h.free.validate(&format!("{field}.free"))?;
            if !h.free.fits_within(&h.total) {
                return Err(ValidationError::Inconsistent {
                    field: format!("{field}.free"),
                    why: "free capacity exceeds the host's total".into(),
                });
            }
        }
        sorted_unique("hosts", self.hosts.iter().map(|h| h.name.as_str()))?;
        text("api_endpoint", &self.api_endpoint, 256)?;
        ident("chain_address", &self.chain_address, 128)?;
        Ok(())
    }
}

/// A provider's signed "still here". Silence longer than an order's grace period stops accrual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: u8,
    pub provider: PublicKey,
    pub sequence: u64,
    pub at_ms: u64,
    /// Sequence of the provider's latest [`ProviderInfo`].
    pub info_sequence: u64,
}

impl Signable for Heartbeat {
    const DOMAIN: &'static str = "leasemesh/v1/heartbeat";
    const MAX_SIZE: usize = MAX_HEARTBEAT_SIZE;
    const NAME: &'static str = "heartbeat";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Matching.

/// Where the replicas of one group of an award run: a host, how many replicas, which GPUs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Assignment {
    /// Index into the order's `groups`.
    pub group: u32,
    pub host: String,
    pub replicas: u32,
    /// Model of every GPU of these replicas; `None` without GPUs.
    pub gpu_model: Option<String>,
    pub gpus_per_replica: u32,
}

/// What was sold: an order to a provider, at a price, on named hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    pub order_id: Id,
    pub bid_id: Id,
    pub provider: PublicKey,
    /// What the tenant pays per hour (the clearing price).
    pub price_per_hour: Coin,
    /// Sorted; every replica of every group appears exactly once.
    pub assignments: Vec<Assignment>,
}

impl Award {
    /// The id of the lease this award creates.
    pub fn lease_id(&self) -> Id {
        lease_id(&self.order_id, &self.bid_id)
    }
}

/// The id of the lease made by awarding `bid_id` on `order_id`.
pub fn lease_id(order_id: &Id, bid_id: &Id) -> Id {
    Hash::domain("leasemesh/v1/lease", &[order_id.as_bytes(), bid_id.as_bytes()])
}

/// The epoch leader's signed result: the inputs it consumed and the awards it computed. Every
/// node re-runs the matcher on the same inputs and accepts the batch only if it gets the same
/// `outcome_digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchBatch {
    pub version: u8,
    pub epoch: u64,
    pub settler: PublicKey,
    /// Id of the previous accepted batch, [`Hash::ZERO`] for the first.
    pub prev_batch: Id,
    pub created_at_ms: u64,
    /// Sorted ids of every order, bid and provider info the matcher consumed.
    pub order_ids: Vec<Id>,
    pub bid_ids: Vec<Id>,
    pub provider_info_ids: Vec<Id>,
    /// Sorted by order id.
    pub awards: Vec<Award>,
    /// Digest of the matcher's canonical outcome.
    pub outcome_digest: Hash,
}

impl Signable for MatchBatch {
    const DOMAIN: &'static str = "leasemesh/v1/match-batch";
    const MAX_SIZE: usize = MAX_MATCH_BATCH_SIZE;
    const NAME: &'static str = "match batch";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.settler)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        sorted_unique("order_ids", self.order_ids.iter())?;
        sorted_unique("bid_ids", self.bid_ids.iter())?;
        sorted_unique("provider_info_ids", self.provider_info_ids.iter())?;
        sorted_unique("awards", self.awards.iter().map(|a| a.order_id))?;
        for a in &self.awards {
            if self.order_ids.binary_search(&a.order_id).is_err()
                || self.bid_ids.binary_search(&a.bid_id).is_err()
            {
                return Err(ValidationError::Inconsistent {
                    field: "awards".into(),
                    why: format!("award for order {} names an input not in the batch", a.order_id),
                });
            }
            coin("awards.price_per_hour", &a.price_per_hour)?;
            non_empty("awards.assignments", &a.assignments)?;
            sorted_unique("awards.assignments", a.assignments.iter())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Leases.

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The tenant closed it.
    TenantClosed,
    /// The lease term ran out.
    TermEnded,
    /// The tenant's funds or spend grant ran out.
    InsufficientFunds,
    /// The provider closed it.
    ProviderClosed,
    /// The provider stayed silent longer than the grace period.
    ProviderSilent,
}

/// What happened to a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEventKind {
    /// The provider opened the manifest and its hash matches the order.
    ManifestAccepted,
    /// Every replica runs; endpoints are URIs the tenant can reach.
    Running {
        endpoints: Vec<String>,
    },
    /// The lease could not start or broke; the tenant pays nothing from this point.
    Failed {
        reason: String,
    },
    Closed {
        reason: CloseReason,
    },
}

/// A signed event in a lease's life, by its provider or its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEvent {
    pub version: u8,
    pub lease_id: Id,
    pub order_id: Id,
    pub at_ms: u64,
    pub kind: LeaseEventKind,
}

impl Signable for LeaseEvent {
    const DOMAIN: &'static str = "leasemesh/v1/lease-event";
    const MAX_SIZE: usize = MAX_LEASE_EVENT_SIZE;
    const NAME: &'static str = "lease event";

    fn version(&self) -> u8 {
        self.version
    }

    /// Provider or tenant may sign: the node checks the signer against the lease.
    fn author(&self) -> Option<&PublicKey> {
        None
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match &self.kind {
            LeaseEventKind::Running { endpoints } => {
                max_len("kind.running.endpoints", endpoints, 64)?;
                for e in endpoints {
                    text("kind.running.endpoints", e, 256)?;
                }
            }
            LeaseEventKind::Failed { reason } => text("kind.failed.reason", reason, 1024)?,
            LeaseEventKind::ManifestAccepted | LeaseEventKind::Closed { .. } => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Settlement.

/// One line of a settlement batch. Each is a Merkle leaf.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementRecord {
    /// A lease started: who pays whom, at what rate.
    LeaseOpened {
        lease_id: Id,
        order_id: Id,
        tenant_address: String,
        provider_address: String,
        price_per_hour: Coin,
        started_at_ms: u64,
    },
    /// What a lease earned over `[from_ms, to_ms)`.
    Accrual {
        lease_id: Id,
        tenant_address: String,
        provider_address: String,
        denom: String,
        #[serde(with = "amount_serde")]
        amount: u128,
        from_ms: u64,
        to_ms: u64,
    },
    /// A lease ended.
    LeaseClosed { lease_id: Id, closed_at_ms: u64, reason: CloseReason },
    /// The netted transfer from one tenant to one provider in one denom.
    Payment {
        tenant_address: String,
        provider_address: String,
        denom: String,
        #[serde(with = "amount_serde")]
        amount: u128,
    },
}

/// A settler's signed batch of records with their Merkle root. Anchoring puts the root (and the
/// payments) on the settlement backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBatch {
    pub version: u8,
    pub settler: PublicKey,
    pub sequence: u64,
    /// Id of the previous batch, [`Hash::ZERO`] for the first.
    pub prev_batch: Id,
    pub created_at_ms: u64,
    /// In canonical (sorted) order.
    pub records: Vec<SettlementRecord>,
    /// Root of the Merkle tree over the records, see [`crate::merkle`].
    pub merkle_root: Hash,
}

impl Signable for SettlementBatch {
    const DOMAIN: &'static str = "leasemesh/v1/settlement-batch";
    const MAX_SIZE: usize = MAX_SETTLEMENT_BATCH_SIZE;
    const NAME: &'static str = "settlement batch";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.settler)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        sorted_unique("records", self.records.iter())?;
        let root = crate::merkle::root(&self.records);
        if root != self.merkle_root {
            return Err(ValidationError::Inconsistent {
                field: "merkle_root".into(),
                why: format!("the records hash to {root}, not {}", self.merkle_root),
            });
        }
        Ok(())
    }
}

/// Where and when a settlement batch was anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// "local" for the embedded ledger, the chain id otherwise.
    pub chain_id: String,
    /// One transaction per chunk, in chunk order (hex upper case for Cosmos).
    pub tx_hashes: Vec<String>,
    pub height: u64,
}

/// Largest encoded signed spend grant, in bytes.
pub const MAX_SPEND_GRANT_SIZE: usize = 1024;

/// A tenant's signed permission for the settlement settler to move up to `limit` of `denom`
/// from `tenant_address` on the embedded ledger (`POST /v1/ledger/grants`). On a Cosmos chain the
/// same permission is an authz `SendAuthorization` instead. The settler checks that the signer
/// controls `tenant_address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendGrant {
    pub version: u8,
    pub tenant_address: String,
    /// The settlement settler's ledger address.
    pub settler_address: String,
    pub denom: String,
    /// Most the settler may move from the tenant in this denom; 0 revokes.
    #[serde(with = "amount_serde")]
    pub limit: u128,
    pub created_at_ms: u64,
}

impl Signable for SpendGrant {
    const DOMAIN: &'static str = "leasemesh/v1/spend-grant";
    const MAX_SIZE: usize = MAX_SPEND_GRANT_SIZE;
    const NAME: &'static str = "spend grant";

    fn version(&self) -> u8 {
        self.version
    }

    /// The settler decides whether the signer controls `tenant_address`.
    fn author(&self) -> Option<&PublicKey> {
        None
    }

    fn validate(&self) -> Result<(), ValidationError> {
        ident("tenant_address", &self.tenant_address, 128)?;
        ident("settler_address", &self.settler_address, 128)?;
        coin("denom", &Coin::new(self.denom.clone(), self.limit))
    }
}

/// Convenience for building bodies: the current protocol version.
pub const fn v() -> u8 {
    PROTOCOL_VERSION
}
