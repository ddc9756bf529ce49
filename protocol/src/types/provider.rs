//! [`ProviderInfo`]: a provider's signed description of its hosts, their GPUs and free capacity.

use serde::{Deserialize, Serialize};

use super::{check_attributes, Attribute, MAX_GPUS_PER_HOST, MAX_HOSTS, MAX_PROVIDER_INFO_SIZE};
use crate::codec::Signable;
use crate::crypto::PublicKey;
use crate::tee::TeeKind;
use crate::validate::{ident, max_len, non_empty, sorted_unique, text, ValidationError};

/// How a GPU attaches to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuInterface {
    Pcie,
    Sxm,
}

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
    /// The TEE kinds the host offers, sorted (the info's version-2 extension); empty for none.
    #[serde(skip)]
    pub tee: Vec<TeeKind>,
}

/// A provider's signed description of itself and its free capacity, per host.
/// Version 2 when a host offers a TEE (see [`crate::tee`]), version 1 otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
    const MAX_VERSION: u8 = crate::tee::EXTENDED_VERSION;

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        crate::tee::check_version("version", self.version, self.wire_version())?;
        check_attributes("attributes", &self.attributes)?;
        non_empty("hosts", &self.hosts)?;
        for h in &self.hosts {
            sorted_unique(&format!("hosts.{}.tee", h.name), h.tee.iter())?;
        }
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
