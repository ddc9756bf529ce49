//! Helpers for the matcher's integration tests: small hand-made objects, and an independent
//! checker that re-derives every rule from the protocol types (it shares no code with the
//! matcher's own checks, so a bug in one is caught by the other).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use leasemesh_matcher::{EpochInput, EpochOutcome};
use leasemesh_protocol::{
    id_of, v, Attribute, Bid, Capacity, Coin, Gpu, GpuInterface, GpuModelSpec, GpuRequest, Hash,
    Host, Id, Order, Placement, ProviderInfo, PublicKey, Resources, ServiceGroup,
    StorageClassCapacity,
};

pub const GIB: u64 = 1 << 30;
pub const T0: u64 = 1_767_225_600_000;

pub fn pk(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

/// A replica's resources: `cores` CPU cores, 1 GiB of memory per core, 1 GiB ephemeral.
pub fn res(cores: u64) -> Resources {
    Resources {
        cpu_millis: cores * 1000,
        memory_bytes: cores * GIB,
        ephemeral_storage_bytes: GIB,
        persistent_storage: vec![],
        tee: None,
        gpu: None,
    }
}

pub fn gpu_res(
    cores: u64,
    units: u32,
    vendor: &str,
    models: &[(&str, u64, Option<GpuInterface>)],
) -> Resources {
    let mut r = res(cores);
    r.gpu = Some(GpuRequest {
        units,
        vendor: vendor.into(),
        models: models
            .iter()
            .map(|(n, vram, i)| GpuModelSpec {
                name: (*n).into(),
                min_vram_bytes: vram * GIB,
                interface: *i,
            })
            .collect(),
    });
    r
}

pub fn group(name: &str, count: u32, resources: Resources) -> ServiceGroup {
    ServiceGroup { name: name.into(), count, resources }
}

pub fn order(nonce: u64, groups: Vec<ServiceGroup>, max_price: u128) -> Order {
    Order {
        version: v(),
        tenant: pk(200),
        nonce,
        created_at_ms: T0,
        bid_window_ms: 2_000,
        lease_term_ms: 3_600_000,
        grace_period_ms: 30_000,
        groups,
        placement: Placement { name: "dcloud".into(), attributes: vec![], min_uptime_bps: 0 },
        max_price_per_hour: Coin::new("uakt", max_price),
        tenant_address: "inj1tenant".into(),
        manifest_hash: Hash::ZERO,
    }
}

pub fn bid(order: &(Id, Order), provider: PublicKey, price: u128) -> (Id, Bid) {
    bid_denom(order, provider, price, "uakt", 0)
}

pub fn bid_denom(
    order: &(Id, Order),
    provider: PublicKey,
    price: u128,
    denom: &str,
    salt: u64,
) -> (Id, Bid) {
    let b = Bid {
        version: v(),
        order_id: order.0,
        provider,
        price_per_hour: Coin::new(denom, price),
        created_at_ms: T0 + 1 + salt,
        expires_at_ms: T0 + 60_000,
    };
    (id_of(&b), b)
}

pub fn with_id(o: Order) -> (Id, Order) {
    (id_of(&o), o)
}

pub fn cap(cores: u64, gpus: Vec<Gpu>) -> Capacity {
    Capacity {
        cpu_millis: cores * 1000,
        memory_bytes: cores * GIB,
        ephemeral_storage_bytes: 100 * GIB,
        persistent_storage: vec![StorageClassCapacity { class: "ssd".into(), bytes: 100 * GIB }],
        gpus,
    }
}

pub fn gpus(vendor: &str, model: &str, vram_gib: u64, iface: GpuInterface, n: u32) -> Vec<Gpu> {
    (0..n)
        .map(|i| Gpu {
            id: format!("{model}-{vram_gib}-{i}"),
            vendor: vendor.into(),
            model: model.into(),
            vram_bytes: vram_gib * GIB,
            interface: iface,
        })
        .collect()
}

/// A provider whose hosts are (name, free capacity); total = free.
pub fn provider(key: PublicKey, sequence: u64, hosts: Vec<(&str, Capacity)>) -> (Id, ProviderInfo) {
    let info = ProviderInfo {
        version: v(),
        provider: key,
        sequence,
        created_at_ms: T0,
        attributes: vec![Attribute::new("region", "eu-west")],
        hosts: hosts
            .into_iter()
            .map(|(name, c)| Host { name: name.into(), total: c.clone(), free: c, tee: vec![] })
            .collect(),
        api_endpoint: "https://p.example".into(),
        chain_address: "inj1p".into(),
        encryption_key: [0; 32],
    };
    (id_of(&info), info)
}

pub fn input(
    orders: Vec<(Id, Order)>,
    bids: Vec<(Id, Bid)>,
    providers: Vec<(Id, ProviderInfo)>,
) -> EpochInput {
    let uptime_bps = providers.iter().map(|(_, p)| (p.provider, 10_000)).collect();
    EpochInput { orders, bids, providers, uptime_bps }
}

// ---------------------------------------------------------------------------------------------
// The independent checker.

/// The snapshot that counts for each provider: highest sequence, then highest id.
fn latest(input: &EpochInput) -> BTreeMap<PublicKey, &ProviderInfo> {
    let mut best: BTreeMap<PublicKey, (u64, Id, &ProviderInfo)> = BTreeMap::new();
    for (id, p) in &input.providers {
        let e = best.entry(p.provider).or_insert((p.sequence, *id, p));
        if (p.sequence, *id) > (e.0, e.1) {
            *e = (p.sequence, *id, p);
        }
    }
    best.into_iter().map(|(k, (_, _, p))| (k, p)).collect()
}

/// Checks every award against the rules from scratch and returns a description of the first
/// violation. Also checks that no host's free capacity is exceeded by the awards together.
pub fn check_outcome(input: &EpochInput, out: &EpochOutcome) -> Result<(), String> {
    let orders: BTreeMap<Id, &Order> = input.orders.iter().map(|(id, o)| (*id, o)).collect();
    let bids: BTreeMap<Id, &Bid> = input.bids.iter().map(|(id, b)| (*id, b)).collect();
    let snaps = latest(input);
    // Per (provider, host): used cpu, mem, eph, storage per class, and GPU demands.
    type Use<'a> = (u64, u64, u64, BTreeMap<String, u64>, Vec<(&'a GpuRequest, String)>);
    let mut used: BTreeMap<(PublicKey, String), Use<'_>> = BTreeMap::new();
    let mut seen_orders = std::collections::BTreeSet::new();
    for a in &out.awards {
        if !seen_orders.insert(a.order_id) {
            return Err(format!("order {} awarded twice", a.order_id));
        }
        let o = orders.get(&a.order_id).ok_or("award for an order not in the input")?;
        let b = bids.get(&a.bid_id).ok_or("award names a bid not in the input")?;
        if b.order_id != a.order_id || b.provider != a.provider {
            return Err("award's bid is for another order or provider".into());
        }
        if b.price_per_hour != a.price_per_hour {
            return Err("award price is not the bid price (pay-as-bid)".into());
        }
        if b.price_per_hour.denom != o.max_price_per_hour.denom
            || b.price_per_hour.amount > o.max_price_per_hour.amount
        {
            return Err("award over the order's max price or in another denom".into());
        }
        let p = snaps.get(&a.provider).ok_or("award to a provider without a snapshot")?;
        for attr in &o.placement.attributes {
            if !p.attributes.contains(attr) {
                return Err(format!("provider lacks placement attribute {}", attr.key));
            }
        }
        let uptime = input.uptime_bps.get(&a.provider).copied().unwrap_or(0);
        if uptime < o.placement.min_uptime_bps {
            return Err("provider below the minimum uptime".into());
        }
        let mut per_group = vec![0u64; o.groups.len()];
        for asg in &a.assignments {
            let g = o.groups.get(asg.group as usize).ok_or("assignment names a missing group")?;
            per_group[asg.group as usize] += u64::from(asg.replicas);
            let Some(host) = p.hosts.iter().find(|h| h.name == asg.host) else {
                return Err(format!("assignment names unknown host {}", asg.host));
            };
            let r = &g.resources;
            if r.tee.is_some_and(|t| !host.tee.contains(&t)) {
                return Err(format!("host {} lacks the TEE the group asks for", asg.host));
            }
            let e = used.entry((a.provider, asg.host.clone())).or_default();
            let k = u64::from(asg.replicas);
            e.0 += k * r.cpu_millis;
            e.1 += k * r.memory_bytes;
            e.2 += k * r.ephemeral_storage_bytes;
            for v in &r.persistent_storage {
                *e.3.entry(v.class.clone()).or_default() += k * v.bytes;
            }
            match (&r.gpu, &asg.gpu_model) {
                (None, None) => {
                    if asg.gpus_per_replica != 0 {
                        return Err("GPUs assigned to a replica without GPUs".into());
                    }
                }
                (Some(req), Some(model)) => {
                    if asg.gpus_per_replica != req.units {
                        return Err("wrong GPU count per replica".into());
                    }
                    if !req.models.is_empty() && !req.models.iter().any(|m| m.name == *model) {
                        return Err(format!("GPU model {model} not accepted"));
                    }
                    for _ in 0..asg.replicas {
                        e.4.push((req, model.clone()));
                    }
                }
                _ => return Err("GPU model present iff the group asks for GPUs".into()),
            }
        }
        for (i, g) in o.groups.iter().enumerate() {
            if per_group[i] != u64::from(g.count) {
                return Err(format!("group {i} got {} replicas, wants {}", per_group[i], g.count));
            }
        }
        let mut sorted = a.assignments.clone();
        sorted.sort();
        if sorted != a.assignments {
            return Err("assignments not sorted".into());
        }
    }
    for ((key, host_name), (cpu, mem, eph, storage, gpu_demands)) in &used {
        let host = snaps[key].hosts.iter().find(|h| h.name == *host_name).expect("checked above");
        let free = &host.free;
        if *cpu > free.cpu_millis || *mem > free.memory_bytes || *eph > free.ephemeral_storage_bytes
        {
            return Err(format!("host {host_name} over capacity: cpu {cpu}/{}", free.cpu_millis));
        }
        for (class, bytes) in storage {
            if *bytes > free.persistent_bytes(class) {
                return Err(format!("host {host_name} over {class} storage"));
            }
        }
        if !gpus_fit(gpu_demands, &free.gpus) {
            return Err(format!("host {host_name}: GPU demands cannot be met by its free devices"));
        }
    }
    // Every kept order is either awarded or unmatched, once.
    let mut covered: Vec<Id> = out
        .awards
        .iter()
        .map(|a| a.order_id)
        .chain(out.unmatched.iter().map(|u| u.order_id))
        .collect();
    covered.sort();
    if covered.windows(2).any(|w| w[0] == w[1]) {
        return Err("an order is both awarded and unmatched".into());
    }
    Ok(())
}

/// Whether each replica's GPUs can be given distinct devices of its assigned model that satisfy
/// its request (vendor, VRAM, interface), all of one model. Exact bipartite matching of GPU
/// units to devices (augmenting paths).
fn gpus_fit(demands: &[(&GpuRequest, String)], devices: &[Gpu]) -> bool {
    let mut units: Vec<Vec<usize>> = Vec::new();
    for (req, model) in demands {
        let ok: Vec<usize> = devices
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.vendor == req.vendor
                    && d.model == *model
                    && (req.models.is_empty()
                        || req.models.iter().any(|m| {
                            m.name == d.model
                                && d.vram_bytes >= m.min_vram_bytes
                                && m.interface.is_none_or(|i| i == d.interface)
                        }))
            })
            .map(|(i, _)| i)
            .collect();
        for _ in 0..req.units {
            units.push(ok.clone());
        }
    }
    if units.len() > devices.len() {
        return false;
    }
    let mut owner: Vec<Option<usize>> = vec![None; devices.len()];
    fn augment(
        u: usize,
        units: &[Vec<usize>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for &d in &units[u] {
            if !seen[d] {
                seen[d] = true;
                if owner[d].is_none_or(|o| augment(o, units, owner, seen)) {
                    owner[d] = Some(u);
                    return true;
                }
            }
        }
        false
    }
    (0..units.len()).all(|u| augment(u, &units, &mut owner, &mut vec![false; devices.len()]))
}
