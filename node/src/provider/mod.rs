//! The provider role: live inventory, sub-millisecond bids, and tenants' containers on Docker.
//!
//! Components, each usable on its own and wired into the swarm by the node:
//! - [`inventory`]: hosts, GPUs (config or NVML), reservations for open bids, allocations for
//!   leases, the fit rule, and the signed [`ProviderInfo`](leasemesh_protocol::ProviderInfo).
//! - [`pricing`]: a rate table per denom, or an external price command with a time limit.
//! - [`bid`]: the pure bid engine (order → placement → price → reserve → signed bid).
//! - [`runtime`]: Docker Engine through `bollard`: one container per replica, a network per
//!   lease, labels, limits, GPUs, ports, logs, status, close, re-adoption after a restart.
//! - [`lease`]: manifest (sealed) → runtime → signed lease events, with a deadline.
//! - [`role`]: all of the above inside a running node (events in, bids and infos out, routes).
//!
//! What this module does not do: networking, storage, HTTP. The node owns those and calls in.

pub mod bid;
#[cfg(any(test, feature = "test-utils"))]
pub mod fixtures;
pub mod inventory;
pub mod lease;
pub mod pricing;
pub mod role;
pub mod runtime;

use std::collections::BTreeMap;

use leasemesh_protocol::seal::{encryption_secret_from_seed, public_key};
use leasemesh_protocol::{Attribute, Keypair};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use bid::{BidEngine, BidPolicy};
use inventory::{GpuProbe, HostConfig, Inventory, InventoryError, ProviderIdentity};
use pricing::{PriceCommand, RateTable};
use runtime::RuntimeConfig;

/// The `[provider]` section of the node's config. Every field has a default; the role is off
/// unless `enabled = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Run the provider role (bid on orders, run leases).
    pub enabled: bool,
    /// Attributes advertised and matched against orders' placement (`region = "eu-west"`).
    pub attributes: BTreeMap<String, String>,
    /// Where tenants reach this provider's API (advertised in the provider info).
    pub api_endpoint: String,
    /// Where this provider is paid on the settlement backend.
    pub chain_address: String,
    /// This provider's uptime in basis points from anchored history; orders asking more get no
    /// bid. Until history exists the operator states it (10000 = 100 %).
    pub uptime_bps: u16,
    /// Reservations and bids live until the auction closes plus this grace (ms), for the batch.
    pub award_grace_ms: u64,
    /// After an award, the manifest must arrive and the lease run within this time (ms), or
    /// the lease fails and nothing is charged.
    pub manifest_deadline_ms: u64,
    /// How often the provider info is re-published as a heartbeat (ms).
    pub heartbeat_interval_ms: u64,
    /// The hosts this provider sells (`[[provider.hosts]]`).
    pub hosts: Vec<HostConfig>,
    pub pricing: PricingConfig,
    pub runtime: RuntimeConfig,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            enabled: false,
            attributes: BTreeMap::new(),
            api_endpoint: "http://127.0.0.1:8080".into(),
            chain_address: "local-provider".into(),
            uptime_bps: 10_000,
            award_grace_ms: 10_000,
            manifest_deadline_ms: 120_000,
            heartbeat_interval_ms: 5_000,
            hosts: vec![HostConfig::default()],
            pricing: PricingConfig::default(),
            runtime: RuntimeConfig::default(),
        }
    }
}

/// `[provider.pricing]`: rates per denom (`[provider.pricing.rates.uakt]`), or a command.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    pub rates: RateTable,
    /// When `command.argv` is set, prices come from the command instead of the table.
    pub command: PriceCommand,
}

impl ProviderConfig {
    /// The provider's identity for a node key: the X25519 encryption key is derived from the
    /// node's ed25519 seed, so there is no second key file.
    pub fn identity(&self, key: Keypair) -> ProviderIdentity {
        let encryption_key = public_key(&encryption_secret_from_seed(&key.secret_bytes()));
        ProviderIdentity {
            key,
            encryption_key,
            attributes: self.attributes.iter().map(|(k, v)| Attribute::new(k, v)).collect(),
            api_endpoint: self.api_endpoint.clone(),
            chain_address: self.chain_address.clone(),
        }
    }

    /// Builds the bid engine: inventory from the hosts (GPUs from `probe` where asked; a probe
    /// that fails is logged and means no detected GPUs).
    pub fn bid_engine(
        &self,
        key: Keypair,
        probe: &dyn GpuProbe,
        metrics: ProviderMetrics,
    ) -> Result<BidEngine, InventoryError> {
        let (inventory, note) = Inventory::from_config(&self.hosts, probe)?;
        if let Some(e) = note {
            tracing::info!(error = %e, "no GPUs detected; GPUs only from the config");
        }
        Ok(BidEngine {
            identity: self.identity(key),
            inventory,
            rates: self.pricing.rates.clone(),
            policy: BidPolicy { award_grace_ms: self.award_grace_ms, uptime_bps: self.uptime_bps },
            external_pricing: self.pricing.command.is_set(),
            metrics,
        })
    }
}

/// The provider's metrics, registered once per node on its registry (whose prefix is
/// `leasemesh`), under `provider`.
#[derive(Debug, Clone, Default)]
pub struct ProviderMetrics {
    /// Bids signed (`leasemesh_provider_bids_total`).
    pub bids: Counter,
    /// Valid orders not bid on (`leasemesh_provider_no_bids_total`).
    pub no_bids: Counter,
    /// Price command failures: error, bad output or time-out (`..._price_command_failures_total`).
    pub price_command_failures: Counter,
    /// Reservations dropped after the auction plus grace (`..._reservations_expired_total`).
    pub reservations_expired: Counter,
    /// Leases that reached Running / Failed.
    pub leases_running: Counter,
    pub leases_failed: Counter,
    /// Store reads that failed in the provider's loops; retried on the next tick
    /// (`..._store_read_errors_total`).
    pub store_read_errors: Counter,
}

impl ProviderMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("provider");
        r.register("bids", "Bids signed", self.bids.clone());
        r.register("no_bids", "Valid orders not bid on", self.no_bids.clone());
        r.register(
            "price_command_failures",
            "Price command failures (error, bad output, time-out)",
            self.price_command_failures.clone(),
        );
        r.register(
            "reservations_expired",
            "Reservations released after the auction closed plus grace",
            self.reservations_expired.clone(),
        );
        r.register("leases_running", "Leases that reached Running", self.leases_running.clone());
        r.register("leases_failed", "Leases that failed to start", self.leases_failed.clone());
        r.register(
            "store_read_errors",
            "Store reads that failed in the provider role (retried)",
            self.store_read_errors.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_toml_round_trip() {
        let cfg: ProviderConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, ProviderConfig::default());
        let text = r#"
            enabled = true
            attributes = { region = "eu-west" }
            [[hosts]]
            name = "gpu-1"
            cpu_millis = 64000
            persistent_storage = { beta3 = 1099511627776 }
            [[hosts.gpus]]
            id = "GPU-1"
            model = "a100"
            vram_bytes = 42949672960
            interface = "sxm"
            [pricing.rates.uakt]
            cpu_per_core = 2000
            gpu_by_model = { a100 = 150000 }
            [pricing.command]
            argv = ["/usr/local/bin/price"]
            timeout_ms = 200
            [runtime]
            host_address = "127.0.0.1"
        "#;
        let cfg: ProviderConfig = toml::from_str(text).unwrap();
        assert!(cfg.enabled);
        assert_eq!(cfg.hosts[0].gpus[0].model, "a100");
        assert_eq!(cfg.hosts[0].memory_bytes, HostConfig::default().memory_bytes);
        assert_eq!(cfg.pricing.rates.rates["uakt"].cpu_per_core, 2000);
        assert_eq!(cfg.pricing.rates.rates["uakt"].gpu_by_model["a100"], 150_000);
        assert_eq!(cfg.pricing.command.timeout_ms, 200);
        assert_eq!(cfg.runtime.host_address, "127.0.0.1");
        let again: ProviderConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn metrics_render_with_prefix() {
        let m = ProviderMetrics::default();
        let mut reg = Registry::with_prefix("leasemesh");
        m.register(&mut reg);
        m.price_command_failures.inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("leasemesh_provider_price_command_failures_total 1"), "{out}");
    }
}
