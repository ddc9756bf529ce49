//! The fit rule, one for the matcher and the provider: where the replicas of an order go on one
//! provider's free hosts.
//!
//! Every replica fits on one host (CPU, memory, ephemeral storage, persistent storage per
//! class); a replica's GPUs are all of one acceptable kind on that host. Groups are placed in
//! order; a group's replicas may spread over hosts in name order (CPU-only replicas go to hosts
//! without free GPUs first); GPUs come from the smallest acceptable VRAM first.
//!
//! The matcher runs the rule on interned integer forms ([`crate::greedy`]); [`place`] runs the
//! same code on one provider's [`Host`]s, so the provider bids exactly when the matcher would
//! find its bid feasible. The leaf checks ([`covers`], [`spec_accepts`]) are small inline
//! functions over plain values that both the matcher and the provider's device-level
//! allocation call.

use std::collections::{BTreeMap, BTreeSet};

use leasemesh_protocol::{Assignment, Gpu, GpuInterface, GpuRequest, Hash, Host, Order, PublicKey};

use crate::greedy;
use crate::prepare::{host_form, order_form, order_is_valid, HostState, PProvider};

/// True if what is free (CPU millicores, memory bytes, ephemeral storage bytes) covers what one
/// replica needs.
#[inline]
pub fn covers(free: [u64; 3], need: [u64; 3]) -> bool {
    free[0] >= need[0] && free[1] >= need[1] && free[2] >= need[2]
}

/// True if a GPU of `model`, `vram` bytes and `iface` meets one acceptable model of a request:
/// the model (any when `want_model` is `None`), at least `min_vram` bytes, the interface (any
/// when `want_iface` is `None`). The vendor is checked by the caller. `M` is a model name or
/// its interned number.
#[inline]
pub fn spec_accepts<M: PartialEq>(
    want_model: Option<M>,
    min_vram: u64,
    want_iface: Option<GpuInterface>,
    model: M,
    vram: u64,
    iface: GpuInterface,
) -> bool {
    want_model.is_none_or(|m| m == model)
        && vram >= min_vram
        && want_iface.is_none_or(|i| i == iface)
}

/// True if `gpu` is one the request accepts: same vendor, and an acceptable model (any model
/// of the vendor when none is listed).
pub fn gpu_accepts(req: &GpuRequest, gpu: &Gpu) -> bool {
    gpu.vendor == req.vendor
        && (req.models.is_empty()
            || req.models.iter().any(|m| {
                spec_accepts(
                    Some(m.name.as_str()),
                    m.min_vram_bytes,
                    m.interface,
                    gpu.model.as_str(),
                    gpu.vram_bytes,
                    gpu.interface,
                )
            }))
}

/// Where every replica of `order` goes on one provider's hosts (their `free` capacity counts),
/// by the rule the matcher applies to that provider's bid: the award's assignments, or `None`
/// if some replica fits nowhere. Price, placement attributes and uptime are not checked here.
pub fn place(order: &Order, hosts: &[Host]) -> Option<Vec<Assignment>> {
    if !order_is_valid(order) {
        return None;
    }
    // Interned in sorted order, as the matcher does over all providers: only equality and the
    // relative order of the numbers matter, and both are the same for a subset of the names.
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for h in hosts {
        names.extend(h.free.persistent_storage.iter().map(|s| s.class.as_str()));
        for g in &h.free.gpus {
            names.insert(&g.vendor);
            names.insert(&g.model);
        }
    }
    let names: BTreeMap<&str, u32> =
        names.into_iter().enumerate().map(|(i, n)| (n, i as u32)).collect();
    let intern = |s: &str| names.get(s).copied();
    let mut groups = Vec::with_capacity(order.groups.len());
    let form = order_form(Hash::ZERO, order, &intern, &Hash::ZERO, &mut groups);
    if !form.satisfiable {
        return None;
    }
    let mut host_forms: Vec<HostState<'_>> = hosts.iter().map(|h| host_form(h, &intern)).collect();
    host_forms.sort_by(|a, b| a.name.cmp(b.name));
    let mut provider = PProvider {
        key: PublicKey([0; 32]),
        uptime_bps: 0,
        attrs: Vec::new(),
        hosts: host_forms,
        total_cpu: 0,
        max_host_cpu: 0,
        total_gpus: 0,
    };
    provider.refresh();
    if !provider.may_fit(&form) {
        return None;
    }
    let mut log = Vec::new();
    greedy::place(&mut provider, &groups, &mut log)
        .then(|| greedy::assignments(&provider, &groups, &log))
}
