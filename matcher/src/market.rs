//! Reproducible random markets for tests, benches and the greedy-versus-optimum measurement.
//!
//! [`generate`] is deterministic: the same parameters and seed give the same objects, byte for
//! byte, on every machine (ChaCha8, only fixed-width integer draws, no floats). Keys are random
//! bytes, not real key pairs, and nothing is signed: the matcher never looks at signatures.

use std::collections::BTreeMap;

use leasemesh_protocol::{
    id_of, v, Attribute, Bid, Capacity, Coin, Gpu, GpuInterface, GpuModelSpec, GpuRequest, Hash,
    Host, Id, Order, Placement, ProviderInfo, PublicKey, Resources, ServiceGroup,
    StorageClassCapacity,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::input::EpochInput;

const GIB: u64 = 1 << 30;
/// The denom of generated prices.
pub const DENOM: &str = "uakt";
const REGIONS: [&str; 3] = ["ap-south", "eu-west", "us-east"];
/// (vendor, model, VRAM GiB, interface).
const GPU_MODELS: [(&str, &str, u64, GpuInterface); 4] = [
    ("amd", "mi300x", 192, GpuInterface::Sxm),
    ("nvidia", "a100", 40, GpuInterface::Pcie),
    ("nvidia", "a100", 80, GpuInterface::Sxm),
    ("nvidia", "rtx4090", 24, GpuInterface::Pcie),
];
/// Price per hour of one CPU core and of one GPU, before the random margins.
const CPU_CORE_PRICE: u64 = 1_000;
const GPU_PRICE: u64 = 40_000;
const TIME_MS: u64 = 1_767_225_600_000;

/// The shape of a generated market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketParams {
    pub orders: u32,
    /// Bids per order, each from a different provider (at most `providers`).
    pub bids_per_order: u32,
    pub providers: u32,
    /// Hosts per provider, inclusive range.
    pub min_hosts: u32,
    pub max_hosts: u32,
    /// Percent of orders with a GPU group.
    pub gpu_order_pct: u32,
    /// Percent of hosts with GPUs.
    pub gpu_host_pct: u32,
    /// Groups per order and replicas per group, at most.
    pub max_groups: u32,
    pub max_replicas: u32,
    /// Host size in percent of the default (32–128 cores): lower means scarcer capacity.
    pub host_size_pct: u32,
    /// Percent of orders that require a region.
    pub placement_pct: u32,
}

impl MarketParams {
    /// A market of about the bench's shape: 1–3 groups, a third of the orders with GPUs,
    /// 2–6 hosts per provider, capacity for roughly two thirds of the demand when each provider
    /// gets its share.
    pub fn bench(orders: u32, bids_per_order: u32, providers: u32) -> MarketParams {
        MarketParams {
            orders,
            bids_per_order,
            providers,
            min_hosts: 2,
            max_hosts: 6,
            gpu_order_pct: 30,
            gpu_host_pct: 40,
            max_groups: 3,
            max_replicas: 4,
            host_size_pct: host_size_for(orders, providers),
            placement_pct: 20,
        }
    }

    /// Small markets where capacity is scarce, for the exact solver: a few orders compete for
    /// two or three small providers.
    pub fn small_scarce(orders: u32) -> MarketParams {
        MarketParams {
            orders,
            bids_per_order: 3,
            providers: 3,
            min_hosts: 1,
            max_hosts: 2,
            gpu_order_pct: 35,
            gpu_host_pct: 50,
            max_groups: 2,
            max_replicas: 3,
            host_size_pct: 12,
            placement_pct: 15,
        }
    }
}

/// Hosts sized so that total free capacity is about two thirds of total demand.
fn host_size_for(orders: u32, providers: u32) -> u32 {
    // Average demand per order is about 9 cores; an average host offers about 60 free cores
    // at 100 % and a provider about 4 hosts.
    let per_provider_orders = u64::from(orders) / u64::from(providers.max(1));
    let pct = per_provider_orders.saturating_mul(9).saturating_mul(100) * 2 / 3 / 240;
    u32::try_from(pct.clamp(5, 400)).unwrap_or(100)
}

fn key(rng: &mut ChaCha8Rng) -> PublicKey {
    PublicKey(rng.gen())
}

/// Builds a random market. Same params and seed, same market.
pub fn generate(params: &MarketParams, seed: u64) -> EpochInput {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut providers: Vec<(Id, ProviderInfo)> = Vec::with_capacity(params.providers as usize);
    let mut uptime_bps: BTreeMap<PublicKey, u16> = BTreeMap::new();
    // A per-provider price factor in percent: some providers are cheap, some dear.
    let mut factors: Vec<u64> = Vec::with_capacity(params.providers as usize);
    for p in 0..params.providers {
        let provider = key(&mut rng);
        let n_hosts =
            rng.gen_range(params.min_hosts.max(1)..=params.max_hosts.max(params.min_hosts).max(1));
        let hosts: Vec<Host> = (0..n_hosts).map(|h| host(&mut rng, params, h)).collect();
        let info = ProviderInfo {
            version: v(),
            provider,
            sequence: rng.gen_range(1..1000u64),
            created_at_ms: TIME_MS,
            attributes: vec![
                Attribute::new("region", REGIONS[rng.gen_range(0..REGIONS.len() as u32) as usize]),
                Attribute::new(
                    "tier",
                    if rng.gen_range(0..2u32) == 0 { "community" } else { "premium" },
                ),
            ],
            hosts,
            api_endpoint: format!("https://p{p}.example:8443"),
            chain_address: format!("inj1provider{p}"),
            encryption_key: rng.gen(),
        };
        uptime_bps.insert(provider, rng.gen_range(8_500..=10_000u16));
        factors.push(rng.gen_range(70..=120u64));
        providers.push((id_of(&info), info));
    }

    let mut orders: Vec<(Id, Order)> = Vec::with_capacity(params.orders as usize);
    let mut bids: Vec<(Id, Bid)> =
        Vec::with_capacity(params.orders as usize * params.bids_per_order as usize);
    let mut pick: Vec<u32> = (0..params.providers).collect();
    for n in 0..params.orders {
        let (order, fair) = order(&mut rng, params, n);
        let order_id = id_of(&order);
        // Distinct providers: a partial Fisher-Yates shuffle.
        let k = params.bids_per_order.min(params.providers);
        for i in 0..k {
            let j = rng.gen_range(i..params.providers);
            pick.swap(i as usize, j as usize);
            let pi = pick[i as usize] as usize;
            let (_, info) = &providers[pi];
            let pct = factors[pi] * rng.gen_range(80..=125u64) / 100;
            let bid = Bid {
                version: v(),
                order_id,
                provider: info.provider,
                price_per_hour: Coin::new(DENOM, u128::from(fair.saturating_mul(pct) / 100).max(1)),
                created_at_ms: TIME_MS + 1 + u64::from(i),
                expires_at_ms: TIME_MS + 600_000,
            };
            bids.push((id_of(&bid), bid));
        }
        orders.push((order_id, order));
    }
    EpochInput { orders, bids, providers, uptime_bps }
}

fn host(rng: &mut ChaCha8Rng, params: &MarketParams, h: u32) -> Host {
    let cores =
        [32u64, 64, 128][rng.gen_range(0..3u32) as usize] * u64::from(params.host_size_pct) / 100;
    let cpu = (cores * 1000).max(1000);
    let mut total = Capacity {
        cpu_millis: cpu,
        memory_bytes: cpu / 1000 * 4 * GIB,
        ephemeral_storage_bytes: cpu / 1000 * 20 * GIB,
        persistent_storage: vec![StorageClassCapacity {
            class: "ssd".into(),
            bytes: cpu / 1000 * 50 * GIB,
        }],
        gpus: Vec::new(),
    };
    if rng.gen_range(0..100u32) < params.gpu_host_pct {
        let (vendor, model, vram, interface) =
            GPU_MODELS[rng.gen_range(0..GPU_MODELS.len() as u32) as usize];
        let n = [2u32, 4, 8][rng.gen_range(0..3u32) as usize] * params.host_size_pct.max(25) / 100;
        total.gpus = (0..n.max(1))
            .map(|i| Gpu {
                id: format!("{i}"),
                vendor: vendor.into(),
                model: model.into(),
                vram_bytes: vram * GIB,
                interface,
            })
            .collect();
    }
    let used = rng.gen_range(0..=40u64);
    let mut free = total.clone();
    free.cpu_millis = total.cpu_millis * (100 - used) / 100;
    free.memory_bytes = total.memory_bytes * (100 - used) / 100;
    let busy = rng.gen_range(0..=total.gpus.len() as u32 / 2) as usize;
    free.gpus.truncate(total.gpus.len() - busy);
    Host { name: format!("host-{h:02}"), total, free, tee: vec![] }
}

/// A random order and its fair price per hour (before margins).
fn order(rng: &mut ChaCha8Rng, params: &MarketParams, n: u32) -> (Order, u64) {
    let n_groups = rng.gen_range(1..=params.max_groups.max(1));
    let gpu_group = if rng.gen_range(0..100u32) < params.gpu_order_pct {
        Some(rng.gen_range(0..n_groups))
    } else {
        None
    };
    let mut fair: u64 = 0;
    let groups: Vec<ServiceGroup> = (0..n_groups)
        .map(|g| {
            let count = rng.gen_range(1..=params.max_replicas.max(1));
            let cpu = [500u64, 1000, 2000, 4000][rng.gen_range(0..4u32) as usize];
            let gpu = (gpu_group == Some(g)).then(|| {
                let (vendor, _, _, _) =
                    GPU_MODELS[rng.gen_range(0..GPU_MODELS.len() as u32) as usize];
                let mut models: Vec<GpuModelSpec> = Vec::new();
                for (v, m, vram, _) in GPU_MODELS {
                    if v == vendor
                        && rng.gen_range(0..3u32) > 0
                        && !models.iter().any(|x| x.name == m)
                    {
                        let min = if rng.gen_range(0..2u32) == 0 { 0 } else { vram * GIB };
                        models.push(GpuModelSpec {
                            name: m.into(),
                            min_vram_bytes: min,
                            interface: None,
                        });
                    }
                }
                models.sort_by(|a, b| a.name.cmp(&b.name));
                GpuRequest { units: rng.gen_range(1..=2u32), vendor: vendor.into(), models }
            });
            let units = gpu.as_ref().map_or(0, |x| u64::from(x.units));
            fair += u64::from(count) * (cpu * CPU_CORE_PRICE / 1000 + units * GPU_PRICE);
            ServiceGroup {
                name: format!("svc{g}"),
                count,
                resources: Resources {
                    cpu_millis: cpu,
                    memory_bytes: cpu / 1000 * 2 * GIB + GIB / 2,
                    ephemeral_storage_bytes: 5 * GIB,
                    persistent_storage: Vec::new(),
                    tee: None,
                    gpu,
                },
            }
        })
        .collect();
    let attributes = if rng.gen_range(0..100u32) < params.placement_pct {
        vec![Attribute::new("region", REGIONS[rng.gen_range(0..REGIONS.len() as u32) as usize])]
    } else {
        Vec::new()
    };
    let min_uptime_bps = [0u16, 0, 9_000, 9_500][rng.gen_range(0..4u32) as usize];
    let max = fair * rng.gen_range(90..=130u64) / 100;
    let order = Order {
        version: v(),
        tenant: key(rng),
        nonce: u64::from(n),
        created_at_ms: TIME_MS,
        bid_window_ms: 2_000,
        lease_term_ms: 3_600_000,
        grace_period_ms: 30_000,
        groups,
        placement: Placement { name: "dcloud".into(), attributes, min_uptime_bps },
        max_price_per_hour: Coin::new(DENOM, u128::from(max.max(1))),
        tenant_address: format!("inj1tenant{n}"),
        manifest_hash: Hash::domain("leasemesh/bench-manifest", &[&n.to_le_bytes()]),
    };
    (order, fair)
}
