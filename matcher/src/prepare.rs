//! Shared first step of the greedy matcher and the exact solver: sort and deduplicate the
//! inputs, record exclusions, intern names, turn snapshots and orders into compact integer
//! forms, and list each order's bids cheapest first.

use std::collections::{BTreeMap, BTreeSet};

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::{Attribute, Bid, GpuInterface, Hash, Id, Order, ProviderInfo, PublicKey};
use serde::Serialize;

use crate::input::{EpochInput, InputIds};
use crate::outcome::{Excluded, ExcludedReason, InputKind};

/// How far a bid got through the static checks.
pub(crate) const STAGE_OVER_PRICE: u8 = 1;
pub(crate) const STAGE_PLACEMENT: u8 = 2;
pub(crate) const STAGE_ELIGIBLE: u8 = 3;

/// GPUs of one kind (vendor, model, VRAM, interface) free on a host.
#[derive(Debug, Clone)]
pub(crate) struct Pool<'a> {
    pub vendor: u32,
    pub model: u32,
    pub model_name: &'a str,
    pub vram: u64,
    pub iface: GpuInterface,
    pub free: u32,
}

/// What is free on one host.
#[derive(Debug, Clone)]
pub(crate) struct HostState<'a> {
    pub name: &'a str,
    pub cpu: u64,
    pub mem: u64,
    pub eph: u64,
    /// (interned class, bytes), sorted by class.
    pub storage: Vec<(u32, u64)>,
    /// Sorted by (VRAM, vendor, model, interface): the smallest acceptable GPU is used first.
    pub pools: Vec<Pool<'a>>,
}

impl HostState<'_> {
    pub fn storage_free(&self, class: u32) -> u64 {
        self.storage.iter().find(|(c, _)| *c == class).map_or(0, |(_, b)| *b)
    }

    pub fn storage_mut(&mut self, class: u32) -> Option<&mut u64> {
        self.storage.iter_mut().find(|(c, _)| *c == class).map(|(_, b)| b)
    }

    pub fn has_free_gpus(&self) -> bool {
        self.pools.iter().any(|p| p.free > 0)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PProvider<'a> {
    pub key: PublicKey,
    pub uptime_bps: u16,
    /// Sorted.
    pub attrs: Vec<&'a Attribute>,
    /// Sorted by name.
    pub hosts: Vec<HostState<'a>>,
}

#[derive(Debug, Clone)]
pub(crate) struct GpuSpec {
    /// `None`: any model of the vendor.
    pub model: Option<u32>,
    pub min_vram: u64,
    pub iface: Option<GpuInterface>,
}

#[derive(Debug, Clone)]
pub(crate) struct GpuReq {
    pub units: u32,
    pub vendor: u32,
    /// Never empty: an order accepting any model gets one spec with `model: None`.
    pub specs: Vec<GpuSpec>,
}

impl GpuReq {
    pub fn accepts(&self, p: &Pool<'_>) -> bool {
        p.vendor == self.vendor
            && self.specs.iter().any(|s| {
                s.model.is_none_or(|m| m == p.model)
                    && p.vram >= s.min_vram
                    && s.iface.is_none_or(|i| i == p.iface)
            })
    }
}

/// One group of an order in integer form: per-replica needs and the replica count.
#[derive(Debug, Clone)]
pub(crate) struct GroupReq {
    pub count: u32,
    pub cpu: u64,
    pub mem: u64,
    pub eph: u64,
    /// (interned class, bytes per replica), summed per class.
    pub storage: Vec<(u32, u64)>,
    pub gpu: Option<GpuReq>,
    /// False when it names a storage class, GPU vendor or model no provider offers.
    pub satisfiable: bool,
}

impl GroupReq {
    /// Replicas of this group that fit on the host's CPU, memory and storage (GPUs aside).
    pub fn fit_without_gpus(&self, h: &HostState<'_>) -> u64 {
        let mut n = per(h.cpu, self.cpu).min(per(h.mem, self.mem)).min(per(h.eph, self.eph));
        for (class, bytes) in &self.storage {
            n = n.min(per(h.storage_free(*class), *bytes));
        }
        n
    }

    /// Takes `k` replicas' CPU, memory and storage from the host (the caller checked they fit).
    pub fn take(&self, h: &mut HostState<'_>, k: u64) {
        h.cpu = h.cpu.saturating_sub(k.saturating_mul(self.cpu));
        h.mem = h.mem.saturating_sub(k.saturating_mul(self.mem));
        h.eph = h.eph.saturating_sub(k.saturating_mul(self.eph));
        for (class, bytes) in &self.storage {
            if let Some(free) = h.storage_mut(*class) {
                *free = free.saturating_sub(k.saturating_mul(*bytes));
            }
        }
    }

    /// Gives back what [`GroupReq::take`] took.
    pub fn give(&self, h: &mut HostState<'_>, k: u64) {
        h.cpu = h.cpu.saturating_add(k.saturating_mul(self.cpu));
        h.mem = h.mem.saturating_add(k.saturating_mul(self.mem));
        h.eph = h.eph.saturating_add(k.saturating_mul(self.eph));
        for (class, bytes) in &self.storage {
            if let Some(free) = h.storage_mut(*class) {
                *free = free.saturating_add(k.saturating_mul(*bytes));
            }
        }
    }
}

/// How many `need`s fit in `free`; a zero need never limits.
fn per(free: u64, need: u64) -> u64 {
    free.checked_div(need).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone)]
pub(crate) struct POrder<'a> {
    pub id: Id,
    pub order: &'a Order,
    pub groups: Vec<GroupReq>,
    pub max_price: u128,
    /// Range of this order's bids in `Prepared::cands`.
    pub cands: (u32, u32),
    /// Bids that passed the static checks.
    pub eligible: u32,
    /// Furthest stage any bid reached (0: no bids).
    pub best_stage: u8,
    /// Sum of CPU millicores over all replicas: the size used to order equally scarce orders.
    pub size: u64,
    /// Tie-break rank: a salted hash of the id.
    pub rank: [u8; 16],
}

/// A kept bid in compact form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub price: u128,
    /// Index into `Prepared::bids`.
    pub bid: u32,
    /// Index into `Prepared::providers`.
    pub provider: u32,
    pub stage: u8,
}

#[derive(Debug)]
pub(crate) struct Prepared<'a> {
    /// Kept orders, sorted by id.
    pub orders: Vec<POrder<'a>>,
    /// Kept snapshots, sorted by provider key.
    pub providers: Vec<PProvider<'a>>,
    /// Kept bids, sorted by id (including those excluded after deduplication).
    pub bids: Vec<(Id, &'a Bid)>,
    /// Every order's kept bids, cheapest first, equal prices in salted-hash order.
    pub cands: Vec<Cand>,
    pub excluded: Vec<Excluded>,
    pub ids: InputIds,
    pub inputs_digest: Hash,
}

impl<'a> Prepared<'a> {
    pub fn cands_of(&self, order: &POrder<'_>) -> &[Cand] {
        self.cands.get(order.cands.0 as usize..order.cands.1 as usize).unwrap_or(&[])
    }
}

/// An input list sorted by id with one entry per id.
struct Deduped<'a, T> {
    /// Sorted by id, one per id.
    list: Vec<(Id, &'a T)>,
    /// Per input position: its index in `list` if it is the copy that was kept, else `NONE`.
    rank_of_pos: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// The first eight bytes of an id, big-endian: sorts like the id.
fn prefix(id: &Id) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

/// Sorts by id and keeps one entry per id; extra copies are excluded as duplicates. Entries
/// that share an id but differ (a caller bug) keep the one with the smallest canonical bytes,
/// so the choice never depends on list order.
fn dedupe<'a, T: Serialize>(
    items: &'a [(Id, T)],
    kind: InputKind,
    excluded: &mut Vec<Excluded>,
) -> Deduped<'a, T> {
    let mut keyed: Vec<(u64, u32)> =
        items.iter().enumerate().map(|(i, (id, _))| (prefix(id), i as u32)).collect();
    // Compare the prefix first (no memcmp call); full ids only when prefixes tie.
    keyed.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| items[a.1 as usize].0.cmp(&items[b.1 as usize].0))
    });
    let mut list = Vec::with_capacity(keyed.len());
    let mut rank_of_pos = vec![NONE; items.len()];
    let mut i = 0;
    while i < keyed.len() {
        let id = items[keyed[i].1 as usize].0;
        let mut j = i + 1;
        while j < keyed.len() && keyed[j].0 == keyed[i].0 && items[keyed[j].1 as usize].0 == id {
            j += 1;
        }
        let pick = if j - i == 1 {
            keyed[i].1
        } else {
            for _ in i + 1..j {
                excluded.push(Excluded { kind, id, reason: ExcludedReason::Duplicate });
            }
            keyed[i..j]
                .iter()
                .map(|(_, k)| (to_canonical(&items[*k as usize].1), *k))
                .min()
                .map_or(keyed[i].1, |(_, k)| k)
        };
        rank_of_pos[pick as usize] = list.len() as u32;
        list.push((id, &items[pick as usize].1));
        i = j;
    }
    Deduped { list, rank_of_pos }
}

/// Finds ids in a sorted list in about constant time: a table of where each top-bits bucket
/// starts, then a binary search on 64-bit prefixes inside the bucket (so crafted ids that share
/// a bucket only cost a logarithm).
struct IdIndex {
    prefixes: Vec<u64>,
    shift: u32,
    bucket: Vec<u32>,
}

impl IdIndex {
    fn new(sorted: &[Id]) -> IdIndex {
        let bits = (usize::BITS - sorted.len().leading_zeros()).clamp(1, 16);
        let shift = 64 - bits;
        let prefixes: Vec<u64> = sorted.iter().map(prefix).collect();
        let mut bucket = vec![0u32; (1usize << bits) + 1];
        let mut i = 0usize;
        for (b, slot) in bucket.iter_mut().enumerate() {
            while i < prefixes.len() && ((prefixes[i] >> shift) as usize) < b {
                i += 1;
            }
            *slot = i as u32;
        }
        IdIndex { prefixes, shift, bucket }
    }

    fn find(&self, id: &Id, sorted: &[Id]) -> Option<usize> {
        let p = prefix(id);
        let b = (p >> self.shift) as usize;
        let (lo, hi) = (*self.bucket.get(b)? as usize, *self.bucket.get(b + 1)? as usize);
        let slice = self.prefixes.get(lo..hi)?;
        let mut i = lo + slice.partition_point(|x| *x < p);
        while i < hi && self.prefixes[i] == p {
            if sorted[i] == *id {
                return Some(i);
            }
            i += 1;
        }
        None
    }
}

fn key_prefix(k: &PublicKey) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k.0[..8]);
    b
}

/// Binary search on key prefixes (no memcmp call per step), then the full key.
fn find_provider(providers: &[PProvider<'_>], prefixes: &[u64], key: &PublicKey) -> Option<usize> {
    let p = u64::from_be_bytes(key_prefix(key));
    let mut i = prefixes.partition_point(|x| *x < p);
    while i < prefixes.len() && prefixes[i] == p {
        if providers[i].key == *key {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn order_is_valid(o: &Order) -> bool {
    !o.groups.is_empty()
        && o.groups
            .iter()
            .all(|g| g.count > 0 && g.resources.gpu.as_ref().is_none_or(|x| x.units > 0))
}

pub(crate) fn prepare(input: &EpochInput) -> Prepared<'_> {
    let mut excluded = Vec::new();
    let orders_all = dedupe(&input.orders, InputKind::Order, &mut excluded).list;
    let Deduped { list: bids, rank_of_pos: bid_rank } =
        dedupe(&input.bids, InputKind::Bid, &mut excluded);
    let infos = dedupe(&input.providers, InputKind::ProviderInfo, &mut excluded).list;
    let ids = InputIds {
        order_ids: orders_all.iter().map(|(id, _)| *id).collect(),
        bid_ids: bids.iter().map(|(id, _)| *id).collect(),
        provider_info_ids: infos.iter().map(|(id, _)| *id).collect(),
    };
    let inputs_digest = ids.digest();
    let salt = inputs_digest;

    // Providers: the highest (sequence, id) per key.
    let mut infos_sorted: Vec<(Id, &ProviderInfo)> = infos;
    infos_sorted.sort_unstable_by(|a, b| {
        a.1.provider.cmp(&b.1.provider).then(b.1.sequence.cmp(&a.1.sequence)).then(b.0.cmp(&a.0))
    });
    let mut kept_infos: Vec<&ProviderInfo> = Vec::new();
    for (id, info) in &infos_sorted {
        if kept_infos.last().is_some_and(|k| k.provider == info.provider) {
            excluded.push(Excluded {
                kind: InputKind::ProviderInfo,
                id: *id,
                reason: ExcludedReason::Superseded,
            });
        } else {
            kept_infos.push(info);
        }
    }

    // Names (vendors, models, storage classes) interned in sorted order.
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for info in &kept_infos {
        for h in &info.hosts {
            for s in &h.free.persistent_storage {
                names.insert(&s.class);
            }
            for g in &h.free.gpus {
                names.insert(&g.vendor);
                names.insert(&g.model);
            }
        }
    }
    let names: BTreeMap<&str, u32> =
        names.into_iter().enumerate().map(|(i, n)| (n, i as u32)).collect();
    let intern = |s: &str| names.get(s).copied();

    let providers: Vec<PProvider<'_>> =
        kept_infos
            .iter()
            .map(|info| {
                let mut attrs: Vec<&Attribute> = info.attributes.iter().collect();
                attrs.sort();
                let mut hosts: Vec<HostState<'_>> =
                    info.hosts
                        .iter()
                        .map(|h| {
                            let mut storage: BTreeMap<u32, u64> = BTreeMap::new();
                            for s in &h.free.persistent_storage {
                                if let Some(c) = intern(&s.class) {
                                    let e = storage.entry(c).or_insert(0);
                                    *e = e.saturating_add(s.bytes);
                                }
                            }
                            let mut pools: BTreeMap<(u64, u32, u32, GpuInterface), (&str, u32)> =
                                BTreeMap::new();
                            for g in &h.free.gpus {
                                if let (Some(v), Some(m)) = (intern(&g.vendor), intern(&g.model)) {
                                    let e = pools
                                        .entry((g.vram_bytes, v, m, g.interface))
                                        .or_insert((g.model.as_str(), 0));
                                    e.1 = e.1.saturating_add(1);
                                }
                            }
                            HostState {
                                name: h.name.as_str(),
                                cpu: h.free.cpu_millis,
                                mem: h.free.memory_bytes,
                                eph: h.free.ephemeral_storage_bytes,
                                storage: storage.into_iter().collect(),
                                pools: pools
                                    .into_iter()
                                    .map(|((vram, vendor, model, iface), (model_name, free))| {
                                        Pool { vendor, model, model_name, vram, iface, free }
                                    })
                                    .collect(),
                            }
                        })
                        .collect();
                hosts.sort_by(|a, b| a.name.cmp(b.name));
                PProvider {
                    key: info.provider,
                    uptime_bps: input.uptime_bps.get(&info.provider).copied().unwrap_or(0),
                    attrs,
                    hosts,
                }
            })
            .collect();

    // Orders in integer form.
    let mut orders: Vec<POrder<'_>> = Vec::with_capacity(orders_all.len());
    for (id, o) in &orders_all {
        if !order_is_valid(o) {
            excluded.push(Excluded {
                kind: InputKind::Order,
                id: *id,
                reason: ExcludedReason::InvalidOrder,
            });
            continue;
        }
        let groups: Vec<GroupReq> = o
            .groups
            .iter()
            .map(|g| {
                let r = &g.resources;
                let mut satisfiable = true;
                let mut storage: Vec<(u32, u64)> = Vec::new();
                for (class, bytes) in r.persistent_by_class() {
                    match intern(&class) {
                        Some(c) => storage.push((c, bytes)),
                        None => satisfiable = false,
                    }
                }
                storage.sort_unstable();
                let gpu = r.gpu.as_ref().map(|req| {
                    let vendor = intern(&req.vendor).unwrap_or(u32::MAX);
                    let specs: Vec<GpuSpec> = if req.models.is_empty() {
                        vec![GpuSpec { model: None, min_vram: 0, iface: None }]
                    } else {
                        req.models
                            .iter()
                            .filter_map(|m| {
                                intern(&m.name).map(|model| GpuSpec {
                                    model: Some(model),
                                    min_vram: m.min_vram_bytes,
                                    iface: m.interface,
                                })
                            })
                            .collect()
                    };
                    if vendor == u32::MAX || specs.is_empty() {
                        satisfiable = false;
                    }
                    GpuReq { units: req.units, vendor, specs }
                });
                GroupReq {
                    count: g.count,
                    cpu: r.cpu_millis,
                    mem: r.memory_bytes,
                    eph: r.ephemeral_storage_bytes,
                    storage,
                    gpu,
                    satisfiable,
                }
            })
            .collect();
        let size = groups
            .iter()
            .fold(0u64, |s, g| s.saturating_add(g.cpu.saturating_mul(u64::from(g.count))));
        let h = Hash::domain("leasemesh/v1/match-order-rank", &[salt.as_bytes(), id.as_bytes()]);
        let mut rank = [0u8; 16];
        rank.copy_from_slice(&h.as_bytes()[..16]);
        orders.push(POrder {
            id: *id,
            order: o,
            groups,
            max_price: o.max_price_per_hour.amount,
            cands: (0, 0),
            eligible: 0,
            best_stage: 0,
            size,
            rank,
        });
    }

    // Bids: resolve order and provider, apply the static checks. Walk the input in its own
    // order (memory order, so no cache miss per bid); `bid_rank` makes the result independent
    // of that order.
    let order_keys: Vec<Id> = orders.iter().map(|o| o.id).collect();
    let order_index = IdIndex::new(&order_keys);
    let provider_prefixes: Vec<u64> =
        providers.iter().map(|p| u64::from_be_bytes(key_prefix(&p.key))).collect();
    let mut denoms: Vec<&str> =
        orders.iter().map(|o| o.order.max_price_per_hour.denom.as_str()).collect();
    denoms.sort_unstable();
    denoms.dedup();
    struct Brief {
        max_price: u128,
        min_uptime: u16,
        denom: u32,
        has_attrs: bool,
    }
    let briefs: Vec<Brief> = orders
        .iter()
        .map(|o| Brief {
            max_price: o.max_price,
            min_uptime: o.order.placement.min_uptime_bps,
            denom: denoms
                .binary_search(&o.order.max_price_per_hour.denom.as_str())
                .map_or(u32::MAX, |i| i as u32),
            has_attrs: !o.order.placement.attributes.is_empty(),
        })
        .collect();
    let mut staged_order: Vec<u32> = Vec::with_capacity(bids.len());
    let mut staged: Vec<Cand> = Vec::with_capacity(bids.len());
    for (pos, (id, bid)) in input.bids.iter().enumerate() {
        let rank = bid_rank[pos];
        if rank == NONE {
            continue;
        }
        let reject = |reason| Excluded { kind: InputKind::Bid, id: *id, reason };
        let Some(oi) = order_index.find(&bid.order_id, &order_keys) else {
            excluded.push(reject(ExcludedReason::UnknownOrder));
            continue;
        };
        let Some(pi) = find_provider(&providers, &provider_prefixes, &bid.provider) else {
            excluded.push(reject(ExcludedReason::NoProviderSnapshot));
            continue;
        };
        let brief = &briefs[oi];
        if denoms.get(brief.denom as usize).is_none_or(|d| *d != bid.price_per_hour.denom) {
            excluded.push(reject(ExcludedReason::DenomMismatch));
            continue;
        }
        let p = &providers[pi];
        let price = bid.price_per_hour.amount;
        let stage = if price > brief.max_price {
            STAGE_OVER_PRICE
        } else if p.uptime_bps < brief.min_uptime
            || (brief.has_attrs
                && !orders[oi]
                    .order
                    .placement
                    .attributes
                    .iter()
                    .all(|a| p.attrs.binary_search(&a).is_ok()))
        {
            STAGE_PLACEMENT
        } else {
            STAGE_ELIGIBLE
        };
        staged_order.push(oi as u32);
        staged.push(Cand { price, bid: rank, provider: pi as u32, stage });
    }

    // Group by order (a counting sort), then cheapest first within each order.
    let mut starts = vec![0u32; orders.len() + 1];
    for oi in &staged_order {
        starts[*oi as usize + 1] += 1;
    }
    for i in 0..orders.len() {
        starts[i + 1] += starts[i];
    }
    let mut fill = starts.clone();
    let mut cands = vec![Cand { price: 0, bid: 0, provider: 0, stage: 0 }; staged.len()];
    for (oi, c) in staged_order.into_iter().zip(staged) {
        let slot = &mut fill[oi as usize];
        cands[*slot as usize] = c;
        *slot += 1;
    }
    for (oi, o) in orders.iter_mut().enumerate() {
        let (s, e) = (starts[oi], starts[oi + 1]);
        o.cands = (s, e);
        let slice = &mut cands[s as usize..e as usize];
        slice.sort_unstable_by(|a, b| a.price.cmp(&b.price).then(a.bid.cmp(&b.bid)));
        // Equal prices: order by a salted hash of the bid id, computed only where needed.
        let mut i = 0;
        while i < slice.len() {
            let mut j = i + 1;
            while j < slice.len() && slice[j].price == slice[i].price {
                j += 1;
            }
            if j - i > 1 {
                slice[i..j].sort_by_cached_key(|c| {
                    let bid_id = bids[c.bid as usize].0;
                    Hash::domain(
                        "leasemesh/v1/match-bid-rank",
                        &[salt.as_bytes(), bid_id.as_bytes()],
                    )
                });
            }
            i = j;
        }
        o.eligible = slice.iter().filter(|c| c.stage == STAGE_ELIGIBLE).count() as u32;
        o.best_stage = slice.iter().map(|c| c.stage).max().unwrap_or(0);
    }

    excluded.sort_unstable();
    Prepared { orders, providers, bids, cands, excluded, ids, inputs_digest }
}
