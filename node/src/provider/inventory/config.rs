//! The operator's description of the provider's hosts (`[[provider.hosts]]` in the config).

use std::collections::BTreeMap;

use leasemesh_protocol::{GpuInterface, TeeKind};
use serde::{Deserialize, Serialize};

pub(super) const GIB: u64 = 1 << 30;

/// One host of the provider, as the operator describes it (`[[provider.hosts]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Host name, unique per provider (`[A-Za-z0-9._:/-]`).
    pub name: String,
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    /// Persistent storage per class (`beta3 = 1099511627776`).
    pub persistent_storage: BTreeMap<String, u64>,
    /// Kept back for the host itself (kubelet, docker, the node): never sold.
    pub system_reserved: ReservedConfig,
    /// GPUs of this host. When non-empty, they override NVML detection.
    pub gpus: Vec<GpuConfig>,
    /// Ask NVML for this host's GPUs when `gpus` is empty (only the host the node runs on).
    pub detect_gpus: bool,
    /// The TEE kinds this host offers (`tee = ["cpu", "cpu-gpu"]`), declared like its GPUs:
    /// only orders asking for one of these land here, and only here.
    pub tee: Vec<TeeKind>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            name: "local".into(),
            cpu_millis: 4_000,
            memory_bytes: 8 * GIB,
            ephemeral_storage_bytes: 100 * GIB,
            persistent_storage: BTreeMap::new(),
            system_reserved: ReservedConfig::default(),
            gpus: Vec::new(),
            detect_gpus: true,
            tee: Vec::new(),
        }
    }
}

/// Resources a host keeps for itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReservedConfig {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
}

/// A GPU given in the config (`[[provider.hosts.gpus]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// Device id passed to Docker (index "0" or a UUID "GPU-…").
    pub id: String,
    /// Vendor, lower case.
    pub vendor: String,
    /// Model, lower case ("a100", "rtx4090").
    pub model: String,
    pub vram_bytes: u64,
    pub interface: GpuInterface,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            id: "0".into(),
            vendor: "nvidia".into(),
            model: String::new(),
            vram_bytes: 0,
            interface: GpuInterface::Pcie,
        }
    }
}
