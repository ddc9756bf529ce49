//! [`Order`]: a tenant's signed request for compute, and the pieces it is made of.

use serde::{Deserialize, Serialize};

use super::{
    check_attributes, Attribute, Coin, GpuInterface, MAX_BID_WINDOW_MS, MAX_CLOCK_SKEW_MS,
    MAX_GPUS_PER_HOST, MAX_GRACE_PERIOD_MS, MAX_GROUPS, MAX_LEASE_TERM_MS, MAX_ORDER_SIZE,
    MAX_REPLICAS, MIN_BID_WINDOW_MS, MIN_GRACE_PERIOD_MS, MIN_LEASE_TERM_MS,
};
use crate::codec::Signable;
use crate::crypto::{Hash, PublicKey};
use crate::tee::TeeKind;
use crate::validate::{
    coin, ident, in_range, max_len, non_empty, nonzero, sorted_unique, TimeError, ValidationError,
};

/// A tenant's signed request for compute: what it needs, where, for how long, at what price.
/// Version 2 when a group asks for a TEE (see [`crate::tee`]), version 1 otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
    /// The TEE the replica must run in (the order's version-2 extension); `None` for none.
    #[serde(skip)]
    pub tee: Option<TeeKind>,
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
        if self.tee == Some(TeeKind::CpuGpu) && self.gpu.is_none() {
            return Err(ValidationError::Inconsistent {
                field: format!("{field}.tee"),
                why: "a cpu-gpu TEE needs GPUs".into(),
            });
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
    const MAX_VERSION: u8 = crate::tee::EXTENDED_VERSION;

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
        crate::tee::check_version("version", self.version, self.wire_version())?;
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
