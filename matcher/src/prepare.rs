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
    /// Summaries of what is free, for quick rejections: CPU over all hosts, the most CPU on
    /// one host, GPUs over all hosts.
    pub total_cpu: u64,
    pub max_host_cpu: u64,
    pub total_gpus: u64,
}

impl PProvider<'_> {
    /// Recomputes the summaries after capacity changed.
    pub fn refresh(&mut self) {
        self.total_cpu = self.hosts.iter().fold(0u64, |s, h| s.saturating_add(h.cpu));
        self.max_host_cpu = self.hosts.iter().map(|h| h.cpu).max().unwrap_or(0);
        self.total_gpus = self
            .hosts
            .iter()
            .flat_map(|h| &h.pools)
            .fold(0u64, |s, p| s.saturating_add(u64::from(p.free)));
    }

    /// False if the order certainly does not fit (the summaries are upper bounds).
    pub fn may_fit(&self, o: &POrder<'_>) -> bool {
        o.size <= self.total_cpu
            && o.max_replica_cpu <= self.max_host_cpu
            && o.gpus <= self.total_gpus
    }
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
        self.fit_at_most(h, u64::MAX)
    }

    /// `min(limit, fit_without_gpus(h))`, without dividing in the common cases (nothing fits,
    /// or only one replica is wanted).
    pub fn fit_at_most(&self, h: &HostState<'_>, limit: u64) -> u64 {
        if h.cpu < self.cpu || h.mem < self.mem || h.eph < self.eph || limit == 0 {
            return 0;
        }
        if limit == 1 {
            let storage_ok = self.storage.iter().all(|(c, b)| h.storage_free(*c) >= *b);
            return u64::from(storage_ok);
        }
        let mut n = per(h.cpu, self.cpu).min(per(h.mem, self.mem)).min(per(h.eph, self.eph));
        n = n.min(limit);
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
    /// Largest per-replica CPU of any group, and GPUs of all replicas: quick rejections.
    pub max_replica_cpu: u64,
    pub gpus: u64,
    /// Tie-break rank: the id (a hash) mixed with the epoch's salt.
    pub rank: [u8; 16],
}

/// A kept bid in compact form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub price: u128,
    /// Rank of the bid (index into the sorted bid ids).
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
    pub input: &'a EpochInput,
    /// Input position of each distinct bid, in id order (the bid's "rank").
    pub bid_pos: Vec<u32>,
    /// Every order's kept bids, cheapest first, equal prices in salted-hash order.
    pub cands: Vec<Cand>,
    pub excluded: Vec<Excluded>,
    pub ids: InputIds,
    pub inputs_digest: Hash,
}

impl<'a> Prepared<'a> {
    /// The id and body of the bid of rank `rank`.
    pub fn bid(&self, rank: u32) -> Option<(Id, &'a Bid)> {
        let id = *self.ids.bid_ids.get(rank as usize)?;
        let pos = *self.bid_pos.get(rank as usize)?;
        self.input.bids.get(pos as usize).map(|(_, b)| (id, b))
    }

    pub fn cands_of(&self, order: &POrder<'_>) -> &[Cand] {
        self.cands.get(order.cands.0 as usize..order.cands.1 as usize).unwrap_or(&[])
    }
}

/// An input list sorted by id with one entry per id.
struct Deduped {
    /// (id, input position) of the kept entries, sorted by id.
    sorted: Vec<(Id, u32)>,
    /// Per input position: its index in `sorted` if it is the copy that was kept, else `NONE`.
    rank_of_pos: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// The first eight bytes of an id, big-endian: sorts like the id.
fn prefix(id: &Id) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

/// Bits of the bucket table for `n` sorted ids: about one id per bucket, at most 2^16 buckets.
fn bucket_bits(n: usize) -> u32 {
    (usize::BITS - n.leading_zeros()).clamp(1, 16)
}

/// Sorts by id and keeps one entry per id; extra copies are excluded as duplicates. Entries
/// that share an id but differ (a caller bug) keep the one with the smallest canonical bytes,
/// so the choice never depends on list order.
///
/// Ids are hashes, so a bucket sort on their top bits followed by a comparison sort inside each
/// (small) bucket is linear on average; crafted ids that crowd one bucket only fall back to the
/// comparison sort.
fn dedupe<T: Serialize>(
    items: &[(Id, T)],
    kind: InputKind,
    excluded: &mut Vec<Excluded>,
) -> Deduped {
    // One scatter pass on the top 8 bits (256 output streams stay in cache), then a sort on
    // the 64-bit prefix inside each bucket, then full ids where prefixes tie.
    const SHIFT: u32 = 56;
    let mut starts = vec![0u32; 257];
    for (id, _) in items {
        starts[(prefix(id) >> SHIFT) as usize + 1] += 1;
    }
    for b in 0..256 {
        starts[b + 1] += starts[b];
    }
    let mut fill = starts.clone();
    let mut keyed: Vec<(Id, u32)> = vec![(Hash::ZERO, 0); items.len()];
    for (i, (id, _)) in items.iter().enumerate() {
        let slot = &mut fill[(prefix(id) >> SHIFT) as usize];
        keyed[*slot as usize] = (*id, i as u32);
        *slot += 1;
    }
    for b in 0..256 {
        let bucket = &mut keyed[starts[b] as usize..starts[b + 1] as usize];
        bucket.sort_unstable_by_key(|e| prefix(&e.0));
        let mut i = 0;
        while i < bucket.len() {
            let p = prefix(&bucket[i].0);
            let mut j = i + 1;
            while j < bucket.len() && prefix(&bucket[j].0) == p {
                j += 1;
            }
            if j - i > 1 {
                bucket[i..j].sort_unstable_by_key(|e| e.0);
            }
            i = j;
        }
    }
    // Compact in place: one entry per id (no second 36-byte-per-entry array).
    let mut rank_of_pos = vec![NONE; items.len()];
    let mut out = 0usize;
    let mut i = 0;
    while i < keyed.len() {
        let id = keyed[i].0;
        let mut j = i + 1;
        while j < keyed.len() && keyed[j].0 == id {
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
        rank_of_pos[pick as usize] = out as u32;
        keyed[out] = (id, pick);
        out += 1;
        i = j;
    }
    keyed.truncate(out);
    let sorted = keyed;
    Deduped { sorted, rank_of_pos }
}

/// Finds ids (or keys) in a sorted list in about constant time: a table of where each top-bits bucket
/// starts, then a binary search on 64-bit prefixes inside the bucket (so crafted ids that share
/// a bucket only cost a logarithm).
struct IdIndex {
    prefixes: Vec<u64>,
    shift: u32,
    bucket: Vec<u32>,
}

impl IdIndex {
    /// `prefixes`: the big-endian first eight bytes of sorted keys.
    fn new(prefixes: Vec<u64>) -> IdIndex {
        let shift = 64 - bucket_bits(prefixes.len());
        let mut bucket = vec![0u32; (1usize << (64 - shift)) + 1];
        let mut i = 0usize;
        for (b, slot) in bucket.iter_mut().enumerate() {
            while i < prefixes.len() && ((prefixes[i] >> shift) as usize) < b {
                i += 1;
            }
            *slot = i as u32;
        }
        IdIndex { prefixes, shift, bucket }
    }

    /// The index of `id`; `is_at(i)` confirms the full id at a prefix match.
    fn find(&self, p: u64, is_at: impl Fn(usize) -> bool) -> Option<usize> {
        let b = (p >> self.shift) as usize;
        let (lo, hi) = (*self.bucket.get(b)? as usize, *self.bucket.get(b + 1)? as usize);
        let slice = self.prefixes.get(lo..hi)?;
        let mut i = lo + slice.partition_point(|x| *x < p);
        while i < hi && self.prefixes[i] == p {
            if is_at(i) {
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

fn order_is_valid(o: &Order) -> bool {
    !o.groups.is_empty()
        && o.groups
            .iter()
            .all(|g| g.count > 0 && g.resources.gpu.as_ref().is_none_or(|x| x.units > 0))
}

pub(crate) fn prepare(input: &EpochInput) -> Prepared<'_> {
    let mut excluded = Vec::new();
    let orders_dd = dedupe(&input.orders, InputKind::Order, &mut excluded);
    let Deduped { sorted: bids_sorted, rank_of_pos: bid_rank } =
        dedupe(&input.bids, InputKind::Bid, &mut excluded);
    let infos_dd = dedupe(&input.providers, InputKind::ProviderInfo, &mut excluded);
    let ids = InputIds {
        order_ids: orders_dd.sorted.iter().map(|(id, _)| *id).collect(),
        bid_ids: bids_sorted.iter().map(|(id, _)| *id).collect(),
        provider_info_ids: infos_dd.sorted.iter().map(|(id, _)| *id).collect(),
    };
    let bid_pos: Vec<u32> = bids_sorted.iter().map(|(_, pos)| *pos).collect();
    drop(bids_sorted);
    let inputs_digest = ids.digest();
    let salt = inputs_digest;
    let infos: Vec<(Id, &ProviderInfo)> =
        infos_dd.sorted.iter().map(|(id, pos)| (*id, &input.providers[*pos as usize].1)).collect();

    // Providers: the highest (sequence, id) per key.
    let mut infos_sorted = infos;
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
                let mut p = PProvider {
                    key: info.provider,
                    uptime_bps: input.uptime_bps.get(&info.provider).copied().unwrap_or(0),
                    attrs,
                    hosts,
                    total_cpu: 0,
                    max_host_cpu: 0,
                    total_gpus: 0,
                };
                p.refresh();
                p
            })
            .collect();

    // Orders in integer form, walked in input (memory) order and put in id order by rank.
    let mut order_slots: Vec<Option<POrder<'_>>> =
        (0..orders_dd.sorted.len()).map(|_| None).collect();
    for (pos, (id, o)) in input.orders.iter().enumerate() {
        let rank = orders_dd.rank_of_pos[pos];
        if rank == NONE {
            continue;
        }
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
        let gpus = groups.iter().fold(0u64, |s, g| {
            s.saturating_add(
                u64::from(g.count).saturating_mul(g.gpu.as_ref().map_or(0, |x| u64::from(x.units))),
            )
        });
        let max_replica_cpu = groups.iter().map(|g| g.cpu).max().unwrap_or(0);
        // The id is a hash; mixing in the salt (unknown until the epoch closes) keeps tenants
        // from grinding ids that win ties.
        let mut rank = [0u8; 16];
        for (i, r) in rank.iter_mut().enumerate() {
            *r = id.as_bytes()[i] ^ salt.as_bytes()[i];
        }
        if let Some(slot) = order_slots.get_mut(orders_dd.rank_of_pos[pos] as usize) {
            *slot = Some(POrder {
                id: *id,
                order: o,
                groups,
                max_price: o.max_price_per_hour.amount,
                cands: (0, 0),
                eligible: 0,
                best_stage: 0,
                size,
                max_replica_cpu,
                gpus,
                rank,
            });
        }
    }
    let mut orders: Vec<POrder<'_>> = order_slots.into_iter().flatten().collect();

    // Bids: resolve order and provider, apply the static checks. Walk the input in its own
    // order (memory order, so no cache miss per bid); `bid_rank` makes the result independent
    // of that order.
    let mut denoms: Vec<&str> =
        orders.iter().map(|o| o.order.max_price_per_hour.denom.as_str()).collect();
    denoms.sort_unstable();
    denoms.dedup();
    /// What the bid checks need of an order, in one cache line.
    struct Slot {
        max_price: u128,
        id: Id,
        denom: u32,
        min_uptime: u16,
        has_attrs: bool,
    }
    let slots: Vec<Slot> = orders
        .iter()
        .map(|o| Slot {
            max_price: o.max_price,
            id: o.id,
            min_uptime: o.order.placement.min_uptime_bps,
            denom: denoms
                .binary_search(&o.order.max_price_per_hour.denom.as_str())
                .map_or(u32::MAX, |i| i as u32),
            has_attrs: !o.order.placement.attributes.is_empty(),
        })
        .collect();
    let order_index = IdIndex::new(orders.iter().map(|o| prefix(&o.id)).collect());
    let provider_index =
        IdIndex::new(providers.iter().map(|p| u64::from_be_bytes(key_prefix(&p.key))).collect());
    let mut staged_order: Vec<u32> = Vec::with_capacity(bid_pos.len());
    let mut staged: Vec<Cand> = Vec::with_capacity(bid_pos.len());
    for (pos, (id, bid)) in input.bids.iter().enumerate() {
        let rank = bid_rank[pos];
        if rank == NONE {
            continue;
        }
        let reject = |reason| Excluded { kind: InputKind::Bid, id: *id, reason };
        let Some(oi) = order_index.find(prefix(&bid.order_id), |i| slots[i].id == bid.order_id)
        else {
            excluded.push(reject(ExcludedReason::UnknownOrder));
            continue;
        };
        let Some(pi) = provider_index.find(u64::from_be_bytes(key_prefix(&bid.provider)), |i| {
            providers[i].key == bid.provider
        }) else {
            excluded.push(reject(ExcludedReason::NoProviderSnapshot));
            continue;
        };
        let brief = &slots[oi];
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
    // Equal prices: order by BLAKE3 keyed with the salt over the bid id, computed only where
    // prices tie, into a reused buffer.
    let tie_key =
        |rank: u32| blake3::keyed_hash(salt.as_bytes(), ids.bid_ids[rank as usize].as_bytes());
    let mut tied: Vec<([u8; 32], Cand)> = Vec::new();
    for (oi, o) in orders.iter_mut().enumerate() {
        let (s, e) = (starts[oi], starts[oi + 1]);
        o.cands = (s, e);
        let slice = &mut cands[s as usize..e as usize];
        slice.sort_unstable_by(|a, b| a.price.cmp(&b.price).then(a.bid.cmp(&b.bid)));
        let mut i = 0;
        while i < slice.len() {
            let mut j = i + 1;
            while j < slice.len() && slice[j].price == slice[i].price {
                j += 1;
            }
            if j - i > 1 {
                tied.clear();
                tied.extend(slice[i..j].iter().map(|c| (*tie_key(c.bid).as_bytes(), *c)));
                tied.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.bid.cmp(&b.1.bid)));
                for (dst, (_, c)) in slice[i..j].iter_mut().zip(&tied) {
                    *dst = *c;
                }
            }
            i = j;
        }
        o.eligible = slice.iter().filter(|c| c.stage == STAGE_ELIGIBLE).count() as u32;
        o.best_stage = slice.iter().map(|c| c.stage).max().unwrap_or(0);
    }

    excluded.sort_unstable();
    Prepared { input, orders, providers, bid_pos, cands, excluded, ids, inputs_digest }
}
