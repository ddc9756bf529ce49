//! Ready-made provider parts for tests, benches and demos: a bid engine with a fixed key and
//! attributes. Not for production configs.

use leasemesh_protocol::Keypair;

use super::bid::{BidEngine, BidPolicy};
use super::inventory::{
    DetectedGpu, GpuProbe, HostConfig, Inventory, InventoryError, ProbeError, ProviderIdentity,
};
use super::pricing::{RateTable, Rates};
use super::ProviderMetrics;

pub const GIB: u64 = 1 << 30;

/// A GPU probe that finds nothing (as on a machine without NVIDIA's library).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoGpus;

impl GpuProbe for NoGpus {
    fn probe(&self) -> Result<Vec<DetectedGpu>, ProbeError> {
        Ok(Vec::new())
    }
}

/// A bid engine over `hosts` with `rates` in `uakt`, key label "bench-provider", attribute
/// region=eu-west, a 10 s award grace and full uptime.
pub fn engine(hosts: Vec<HostConfig>, rates: Rates) -> Result<BidEngine, InventoryError> {
    let (inventory, _) = Inventory::from_config(&hosts, &NoGpus)?;
    Ok(BidEngine {
        identity: ProviderIdentity {
            key: Keypair::from_seed_label("bench-provider"),
            encryption_key: [9; 32],
            attributes: vec![leasemesh_protocol::Attribute::new("region", "eu-west")],
            api_endpoint: "http://127.0.0.1:8080".into(),
            chain_address: "inj1benchprovider".into(),
        },
        inventory,
        rates: RateTable { rates: [("uakt".to_string(), rates)].into() },
        policy: BidPolicy { award_grace_ms: 10_000, uptime_bps: 10_000 },
        external_pricing: false,
        metrics: ProviderMetrics::default(),
    })
}
