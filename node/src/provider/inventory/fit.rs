//! The fit rule: where the replicas of an order go on a provider's free hosts. Pure: plain data
//! in, a [`Plan`] out.

use std::collections::BTreeMap;

use leasemesh_protocol::{Assignment, Gpu, GpuRequest, Order, Resources, TeeKind};
use serde::{Deserialize, Serialize};

/// What is free on one host, as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FreeHost {
    pub name: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    /// Sorted by class.
    pub persistent_storage: Vec<(String, u64)>,
    /// Free devices, sorted by id.
    pub gpus: Vec<Gpu>,
    /// The TEE kinds the host offers.
    pub tee: Vec<TeeKind>,
}

/// Where the replicas of one group go on one host, with the GPU devices of each replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// Index into the order's groups.
    pub group: u32,
    pub host: String,
    /// GPU device ids, one list per replica placed here (empty lists without GPUs).
    pub replica_gpus: Vec<Vec<String>>,
    /// Model of every GPU in this slot.
    pub gpu_model: Option<String>,
}

impl Slot {
    pub fn replicas(&self) -> u32 {
        u32::try_from(self.replica_gpus.len()).unwrap_or(u32::MAX)
    }
}

/// A whole order placed on a provider's hosts. Slots are sorted by (group, host, model).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub slots: Vec<Slot>,
}

impl Plan {
    /// The matcher's view of this plan: one assignment per (group, host, model), sorted.
    pub fn assignments(&self) -> Vec<Assignment> {
        let mut out: Vec<Assignment> = self
            .slots
            .iter()
            .map(|s| Assignment {
                group: s.group,
                host: s.host.clone(),
                replicas: s.replicas(),
                gpu_model: s.gpu_model.clone(),
                gpus_per_replica: s
                    .replica_gpus
                    .first()
                    .map_or(0, |g| u32::try_from(g.len()).unwrap_or(u32::MAX)),
            })
            .collect();
        out.sort();
        out
    }
}

/// True if `gpu` is one the request accepts: same vendor, a listed model (any if none listed),
/// enough VRAM, the right interface.
pub fn gpu_acceptable(req: &GpuRequest, gpu: &Gpu) -> bool {
    if gpu.vendor != req.vendor {
        return false;
    }
    if req.models.is_empty() {
        return true;
    }
    req.models.iter().any(|m| {
        m.name == gpu.model
            && gpu.vram_bytes >= m.min_vram_bytes
            && m.interface.is_none_or(|i| i == gpu.interface)
    })
}

/// Picks `units` free GPUs of one acceptable model on a host: models in name order, devices in
/// id order, so the choice is deterministic.
fn pick_gpus(req: &GpuRequest, free: &[Gpu]) -> Option<(String, Vec<String>)> {
    let mut by_model: BTreeMap<&str, Vec<&Gpu>> = BTreeMap::new();
    for g in free.iter().filter(|g| gpu_acceptable(req, g)) {
        by_model.entry(g.model.as_str()).or_default().push(g);
    }
    let units = usize::try_from(req.units).ok()?;
    by_model.into_iter().find(|(_, gs)| gs.len() >= units).map(|(model, gs)| {
        (model.to_string(), gs.iter().take(units).map(|g| g.id.clone()).collect())
    })
}

/// Takes one replica's resources out of a host if they fit; returns the GPU model and ids.
pub(super) fn take_replica(
    host: &mut FreeHost,
    r: &Resources,
) -> Option<(Option<String>, Vec<String>)> {
    if r.cpu_millis > host.cpu_millis
        || r.memory_bytes > host.memory_bytes
        || r.ephemeral_storage_bytes > host.ephemeral_storage_bytes
        || r.tee.is_some_and(|t| !host.tee.contains(&t))
    {
        return None;
    }
    let by_class = r.persistent_by_class();
    for (class, bytes) in &by_class {
        let have = host.persistent_storage.iter().find(|(c, _)| c == class).map_or(0, |(_, b)| *b);
        if *bytes > have {
            return None;
        }
    }
    let gpu = match &r.gpu {
        Some(req) => Some(pick_gpus(req, &host.gpus)?),
        None => None,
    };
    host.cpu_millis -= r.cpu_millis;
    host.memory_bytes -= r.memory_bytes;
    host.ephemeral_storage_bytes -= r.ephemeral_storage_bytes;
    for (class, bytes) in &by_class {
        if let Some((_, b)) = host.persistent_storage.iter_mut().find(|(c, _)| c == class) {
            *b -= bytes;
        }
    }
    Some(match gpu {
        Some((model, ids)) => {
            host.gpus.retain(|g| !ids.contains(&g.id));
            (Some(model), ids)
        }
        None => (None, Vec::new()),
    })
}

/// Places every replica of every group on the hosts (first fit, hosts in name order, groups in
/// order). `None` if some replica fits nowhere. `hosts` is not changed.
pub fn place(order: &Order, hosts: &[FreeHost]) -> Option<Plan> {
    place_owned(order, hosts.to_vec())
}

/// [`place`] on a copy the caller no longer needs (saves cloning it again on the bid path).
pub(super) fn place_owned(order: &Order, mut free: Vec<FreeHost>) -> Option<Plan> {
    let mut slots: BTreeMap<(u32, usize, Option<String>), Vec<Vec<String>>> = BTreeMap::new();
    for (gi, group) in order.groups.iter().enumerate() {
        let gi = u32::try_from(gi).ok()?;
        for _ in 0..group.count {
            let (hi, (model, ids)) = free
                .iter_mut()
                .enumerate()
                .find_map(|(hi, h)| take_replica(h, &group.resources).map(|t| (hi, t)))?;
            slots.entry((gi, hi, model)).or_default().push(ids);
        }
    }
    let slots = slots
        .into_iter()
        .map(|((group, hi, gpu_model), replica_gpus)| Slot {
            group,
            host: free[hi].name.clone(),
            replica_gpus,
            gpu_model,
        })
        .collect();
    Some(Plan { slots })
}
