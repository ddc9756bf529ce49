//! Plans with concrete GPU devices. Where replicas go is the matcher's rule
//! ([`leasemesh_matcher::fit`]); this module turns its assignments into devices, replica by
//! replica, with the same leaf checks. Pure: plain data in, a [`Plan`] out.

use leasemesh_matcher::fit::{covers, gpu_accepts};
use leasemesh_protocol::{Assignment, Gpu, GpuInterface, GpuRequest, Resources, TeeKind};
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

/// Picks `units` free GPUs of one acceptable kind on a host, as the matcher does: pools of
/// identical devices (VRAM, vendor, model, interface) smallest VRAM first, the first pool with
/// enough free devices, its devices in id order. So an award's GPUs, taken replica by replica,
/// are always found where the matcher counted them.
fn pick_gpus(req: &GpuRequest, free: &[Gpu]) -> Option<(String, Vec<String>)> {
    fn kind(g: &Gpu) -> (u64, &str, &str, GpuInterface) {
        (g.vram_bytes, &g.vendor, &g.model, g.interface)
    }
    let units = usize::try_from(req.units).ok()?;
    let mut acceptable: Vec<&Gpu> = free.iter().filter(|g| gpu_accepts(req, g)).collect();
    acceptable.sort_unstable_by(|a, b| kind(a).cmp(&kind(b)).then_with(|| a.id.cmp(&b.id)));
    let pool = acceptable.chunk_by(|a, b| kind(a) == kind(b)).find(|pool| pool.len() >= units)?;
    let model = pool.first().map_or_else(String::new, |g| g.model.clone());
    Some((model, pool.iter().take(units).map(|g| g.id.clone()).collect()))
}

/// Takes one replica's resources out of a host if they fit; returns the GPU model and ids.
pub(super) fn take_replica(
    host: &mut FreeHost,
    r: &Resources,
) -> Option<(Option<String>, Vec<String>)> {
    let free = [host.cpu_millis, host.memory_bytes, host.ephemeral_storage_bytes];
    if !covers(free, [r.cpu_millis, r.memory_bytes, r.ephemeral_storage_bytes])
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
