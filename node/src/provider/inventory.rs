//! The provider's live inventory: what each host has, what is sold (allocated to leases), what is
//! promised (reserved for open bids), and so what is free.
//!
//! `free = total − system reserve − allocated − reserved`, per host. Reservations belong to an
//! order and expire at the auction's close plus a grace for the epoch's batch; they are released
//! at once when another provider wins. An award turns the reservation into an allocation that
//! lives until the lease closes.
//!
//! The fit rule ([`place`]) is the same one the matcher applies: every replica fits on one host,
//! all GPUs of one replica are of one acceptable model on that host (vendor, VRAM, interface).
//!
//! GPUs come from the config or from NVML (behind [`GpuProbe`], so tests use a fake). No I/O
//! here besides the probe; everything else is plain data and `now` in milliseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use leasemesh_protocol::{
    Assignment, Attribute, Capacity, Gpu, GpuInterface, GpuRequest, Host, Id, Keypair, Order,
    ProviderInfo, Resources, Signed, StorageClassCapacity,
};
use serde::{Deserialize, Serialize};

const GIB: u64 = 1 << 30;

// ---------------------------------------------------------------------------------------------
// Config.

/// One host of the provider, as the operator describes it (`[[provider.hosts]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
        }
    }
}

/// Resources a host keeps for itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReservedConfig {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
}

/// A GPU given in the config (`[[provider.hosts.gpus]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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

// ---------------------------------------------------------------------------------------------
// GPU detection.

/// A GPU as a driver library reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedGpu {
    pub index: u32,
    /// Stable device id ("GPU-8e4b…"); what Docker's device request names.
    pub uuid: String,
    /// Marketing name ("NVIDIA A100-SXM4-40GB").
    pub name: String,
    pub memory_bytes: u64,
}

/// Why GPU detection found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    #[error("the NVIDIA management library (libnvidia-ml.so) is not present: {0}")]
    LibraryMissing(String),
    #[error("NVML failed: {0}")]
    Driver(String),
}

/// Something that lists the GPUs of this machine. [`NvmlProbe`] in production, a fake in tests.
pub trait GpuProbe {
    fn probe(&self) -> Result<Vec<DetectedGpu>, ProbeError>;
}

/// NVML, loaded at run time (dlopen): a machine without the library simply has no GPUs.
#[derive(Debug, Default, Clone, Copy)]
pub struct NvmlProbe;

impl GpuProbe for NvmlProbe {
    fn probe(&self) -> Result<Vec<DetectedGpu>, ProbeError> {
        use nvml_wrapper::error::NvmlError;
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| match e {
            NvmlError::LibloadingError(e) => ProbeError::LibraryMissing(e.to_string()),
            other => ProbeError::Driver(other.to_string()),
        })?;
        let count = nvml.device_count().map_err(|e| ProbeError::Driver(e.to_string()))?;
        let mut out = Vec::new();
        for index in 0..count {
            let dev = nvml.device_by_index(index).map_err(|e| ProbeError::Driver(e.to_string()))?;
            let name = dev.name().map_err(|e| ProbeError::Driver(e.to_string()))?;
            let uuid = dev.uuid().map_err(|e| ProbeError::Driver(e.to_string()))?;
            let memory_bytes =
                dev.memory_info().map_err(|e| ProbeError::Driver(e.to_string()))?.total;
            out.push(DetectedGpu { index, uuid, name, memory_bytes });
        }
        Ok(out)
    }
}

/// Turns a marketing name into the short lower-case model orders ask for:
/// "NVIDIA A100-SXM4-40GB" → "a100", "NVIDIA GeForce RTX 4090" → "rtx4090",
/// "NVIDIA H100 80GB HBM3" → "h100", "Tesla V100-SXM2-16GB" → "v100".
pub fn normalize_gpu_model(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let head = lower.split('-').next().unwrap_or("");
    head.split_whitespace()
        .filter(|t| !matches!(*t, "nvidia" | "geforce" | "tesla" | "quadro" | "pcie" | "sxm"))
        .filter(|t| !t.starts_with("hbm"))
        .filter(|t| !(t.ends_with("gb") && t.starts_with(|c: char| c.is_ascii_digit())))
        .collect::<Vec<_>>()
        .join("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._".contains(*c))
        .collect()
}

/// The GPUs NVML reports, as protocol GPUs. The interface is read from the name (SXM boards say
/// so; anything else is PCIe).
pub fn gpus_from_detected(detected: &[DetectedGpu]) -> Vec<Gpu> {
    let mut out: Vec<Gpu> = detected
        .iter()
        .map(|d| Gpu {
            id: d.uuid.clone(),
            vendor: "nvidia".into(),
            model: normalize_gpu_model(&d.name),
            vram_bytes: d.memory_bytes,
            interface: if d.name.to_ascii_lowercase().contains("sxm") {
                GpuInterface::Sxm
            } else {
                GpuInterface::Pcie
            },
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

// ---------------------------------------------------------------------------------------------
// Fit rule.

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
fn take_replica(host: &mut FreeHost, r: &Resources) -> Option<(Option<String>, Vec<String>)> {
    if r.cpu_millis > host.cpu_millis
        || r.memory_bytes > host.memory_bytes
        || r.ephemeral_storage_bytes > host.ephemeral_storage_bytes
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
fn place_owned(order: &Order, mut free: Vec<FreeHost>) -> Option<Plan> {
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

// ---------------------------------------------------------------------------------------------
// Inventory.

/// Resources taken from a host by one reservation or allocation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Usage {
    cpu_millis: u64,
    memory_bytes: u64,
    ephemeral_storage_bytes: u64,
    persistent_storage: BTreeMap<String, u64>,
    gpus: BTreeSet<String>,
}

impl Usage {
    fn add(&mut self, r: &Resources, gpus: &[String]) {
        self.cpu_millis = self.cpu_millis.saturating_add(r.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(r.memory_bytes);
        self.ephemeral_storage_bytes =
            self.ephemeral_storage_bytes.saturating_add(r.ephemeral_storage_bytes);
        for (class, bytes) in r.persistent_by_class() {
            let e = self.persistent_storage.entry(class).or_default();
            *e = e.saturating_add(bytes);
        }
        self.gpus.extend(gpus.iter().cloned());
    }

    fn remove(&mut self, other: &Usage) {
        self.cpu_millis = self.cpu_millis.saturating_sub(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_sub(other.memory_bytes);
        self.ephemeral_storage_bytes =
            self.ephemeral_storage_bytes.saturating_sub(other.ephemeral_storage_bytes);
        for (class, bytes) in &other.persistent_storage {
            if let Some(e) = self.persistent_storage.get_mut(class) {
                *e = e.saturating_sub(*bytes);
            }
        }
        for g in &other.gpus {
            self.gpus.remove(g);
        }
    }

    fn merge(&mut self, other: &Usage) {
        self.cpu_millis = self.cpu_millis.saturating_add(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.ephemeral_storage_bytes =
            self.ephemeral_storage_bytes.saturating_add(other.ephemeral_storage_bytes);
        for (class, bytes) in &other.persistent_storage {
            let e = self.persistent_storage.entry(class.clone()).or_default();
            *e = e.saturating_add(*bytes);
        }
        self.gpus.extend(other.gpus.iter().cloned());
    }
}

#[derive(Debug, Clone)]
struct HostState {
    name: String,
    total: Capacity,
    system: ReservedConfig,
    /// Allocated plus reserved.
    used: Usage,
}

impl HostState {
    fn free(&self) -> FreeHost {
        self.free_with(true)
    }

    /// What is free; GPUs only when `with_gpus` (an order without GPUs needs no device list).
    fn free_with(&self, with_gpus: bool) -> FreeHost {
        let sub = |t: u64, s: u64, u: u64| t.saturating_sub(s).saturating_sub(u);
        FreeHost {
            name: self.name.clone(),
            cpu_millis: sub(self.total.cpu_millis, self.system.cpu_millis, self.used.cpu_millis),
            memory_bytes: sub(
                self.total.memory_bytes,
                self.system.memory_bytes,
                self.used.memory_bytes,
            ),
            ephemeral_storage_bytes: sub(
                self.total.ephemeral_storage_bytes,
                self.system.ephemeral_storage_bytes,
                self.used.ephemeral_storage_bytes,
            ),
            persistent_storage: self
                .total
                .persistent_storage
                .iter()
                .map(|s| {
                    let used = self.used.persistent_storage.get(&s.class).copied().unwrap_or(0);
                    (s.class.clone(), s.bytes.saturating_sub(used))
                })
                .collect(),
            gpus: if with_gpus {
                self.total
                    .gpus
                    .iter()
                    .filter(|g| !self.used.gpus.contains(&g.id))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// The GPU devices and host of each replica of a lease: what the runtime starts, and what a
/// restarted node restores ([`Inventory::restore_allocation`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub order_id: Id,
    pub plan: Plan,
    /// Per-replica resources of each group, copied from the order.
    pub group_resources: Vec<Resources>,
}

#[derive(Debug, Clone)]
struct Reservation {
    expires_at_ms: u64,
    per_host: BTreeMap<String, Usage>,
}

/// Why an inventory change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    #[error("host {0:?} is configured twice")]
    DuplicateHost(String),
    #[error("host {0:?} is not one of this provider's hosts")]
    UnknownHost(String),
    #[error("order {0} already holds a reservation")]
    AlreadyReserved(Id),
    #[error("lease {0} is already allocated")]
    AlreadyAllocated(Id),
    #[error("the award does not fit: {0}")]
    AwardDoesNotFit(String),
    #[error("the award names group {0}, which the order does not have")]
    UnknownGroup(u32),
}

/// Per-host totals, system reserves, and the reservations and allocations taken from them.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Sorted by name.
    hosts: Vec<HostState>,
    reservations: HashMap<Id, Reservation>,
    allocations: HashMap<Id, Allocation>,
}

fn plan_usage(plan: &Plan, group_resources: &[Resources]) -> BTreeMap<String, Usage> {
    let mut per_host: BTreeMap<String, Usage> = BTreeMap::new();
    for s in &plan.slots {
        let Some(r) = group_resources.get(s.group as usize) else { continue };
        let u = per_host.entry(s.host.clone()).or_default();
        for ids in &s.replica_gpus {
            u.add(r, ids);
        }
    }
    per_host
}

impl Inventory {
    /// Builds the inventory from the config. Hosts with `detect_gpus` and no configured GPUs get
    /// the probe's devices; a failed probe means no GPUs (the caller logs the returned note).
    pub fn from_config(
        hosts: &[HostConfig],
        probe: &dyn GpuProbe,
    ) -> Result<(Inventory, Option<ProbeError>), InventoryError> {
        let mut detected: Option<Result<Vec<Gpu>, ProbeError>> = None;
        let mut note = None;
        let mut states = Vec::with_capacity(hosts.len());
        for h in hosts {
            let gpus = if !h.gpus.is_empty() {
                let mut g: Vec<Gpu> = h
                    .gpus
                    .iter()
                    .map(|c| Gpu {
                        id: c.id.clone(),
                        vendor: c.vendor.clone(),
                        model: c.model.clone(),
                        vram_bytes: c.vram_bytes,
                        interface: c.interface,
                    })
                    .collect();
                g.sort_by(|a, b| a.id.cmp(&b.id));
                g
            } else if h.detect_gpus {
                let d =
                    detected.get_or_insert_with(|| probe.probe().map(|d| gpus_from_detected(&d)));
                match d {
                    Ok(g) => g.clone(),
                    Err(e) => {
                        note = Some(e.clone());
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            states.push(HostState {
                name: h.name.clone(),
                total: Capacity {
                    cpu_millis: h.cpu_millis,
                    memory_bytes: h.memory_bytes,
                    ephemeral_storage_bytes: h.ephemeral_storage_bytes,
                    persistent_storage: h
                        .persistent_storage
                        .iter()
                        .map(|(class, bytes)| StorageClassCapacity {
                            class: class.clone(),
                            bytes: *bytes,
                        })
                        .collect(),
                    gpus,
                },
                system: h.system_reserved.clone(),
                used: Usage::default(),
            });
        }
        states.sort_by(|a, b| a.name.cmp(&b.name));
        for w in states.windows(2) {
            if w[0].name == w[1].name {
                return Err(InventoryError::DuplicateHost(w[0].name.clone()));
            }
        }
        Ok((
            Inventory { hosts: states, reservations: HashMap::new(), allocations: HashMap::new() },
            note,
        ))
    }

    /// Free capacity of every host, sorted by name.
    pub fn free_hosts(&self) -> Vec<FreeHost> {
        self.hosts.iter().map(HostState::free).collect()
    }

    /// Where the order would go now, without taking anything.
    pub fn plan(&self, order: &Order) -> Option<Plan> {
        let with_gpus = order.groups.iter().any(|g| g.resources.gpu.is_some());
        place_owned(order, self.hosts.iter().map(|h| h.free_with(with_gpus)).collect())
    }

    /// Holds a plan's resources for an open bid until `expires_at_ms`.
    pub fn reserve(
        &mut self,
        order_id: Id,
        order: &Order,
        plan: &Plan,
        expires_at_ms: u64,
    ) -> Result<(), InventoryError> {
        if self.reservations.contains_key(&order_id) {
            return Err(InventoryError::AlreadyReserved(order_id));
        }
        let resources: Vec<Resources> = order.groups.iter().map(|g| g.resources.clone()).collect();
        let per_host = plan_usage(plan, &resources);
        self.take(&per_host)?;
        self.reservations.insert(order_id, Reservation { expires_at_ms, per_host });
        Ok(())
    }

    fn take(&mut self, per_host: &BTreeMap<String, Usage>) -> Result<(), InventoryError> {
        for name in per_host.keys() {
            if self.host_index(name).is_none() {
                return Err(InventoryError::UnknownHost(name.clone()));
            }
        }
        for (name, u) in per_host {
            if let Some(i) = self.host_index(name) {
                self.hosts[i].used.merge(u);
            }
        }
        Ok(())
    }

    fn give_back(&mut self, per_host: &BTreeMap<String, Usage>) {
        for (name, u) in per_host {
            if let Some(i) = self.host_index(name) {
                self.hosts[i].used.remove(u);
            }
        }
    }

    fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.binary_search_by(|h| h.name.as_str().cmp(name)).ok()
    }

    /// Releases an order's reservation (the auction was lost). True if there was one.
    pub fn release_reservation(&mut self, order_id: &Id) -> bool {
        match self.reservations.remove(order_id) {
            Some(r) => {
                self.give_back(&r.per_host);
                true
            }
            None => false,
        }
    }

    /// Releases every reservation whose time has passed; returns their order ids (sorted).
    pub fn expire_reservations(&mut self, now_ms: u64) -> Vec<Id> {
        let mut gone: Vec<Id> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.expires_at_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        gone.sort();
        for id in &gone {
            self.release_reservation(id);
        }
        gone
    }

    pub fn has_reservation(&self, order_id: &Id) -> bool {
        self.reservations.contains_key(order_id)
    }

    /// Turns an award into an allocation: the order's reservation is released and the award's
    /// assignments (host, replicas, GPU model per group) are taken, with concrete GPU devices.
    /// Nothing changes on error.
    pub fn allocate(
        &mut self,
        lease_id: Id,
        order_id: Id,
        order: &Order,
        assignments: &[Assignment],
    ) -> Result<Allocation, InventoryError> {
        if self.allocations.contains_key(&lease_id) {
            return Err(InventoryError::AlreadyAllocated(lease_id));
        }
        let reservation = self.reservations.remove(&order_id);
        if let Some(r) = &reservation {
            self.give_back(&r.per_host);
        }
        match self.plan_assignments(order, assignments) {
            Ok(plan) => {
                let group_resources: Vec<Resources> =
                    order.groups.iter().map(|g| g.resources.clone()).collect();
                let alloc = Allocation { order_id, plan, group_resources };
                self.restore_allocation(lease_id, alloc.clone())?;
                Ok(alloc)
            }
            Err(e) => {
                if let Some(r) = reservation {
                    // Put the reservation back: an award we cannot honour changes nothing.
                    let _ = self.take(&r.per_host);
                    self.reservations.insert(order_id, r);
                }
                Err(e)
            }
        }
    }

    fn plan_assignments(
        &self,
        order: &Order,
        assignments: &[Assignment],
    ) -> Result<Plan, InventoryError> {
        let mut free = self.free_hosts();
        let mut placed = vec![0u64; order.groups.len()];
        let mut slots = Vec::new();
        for a in assignments {
            let group =
                order.groups.get(a.group as usize).ok_or(InventoryError::UnknownGroup(a.group))?;
            let hi = free
                .binary_search_by(|h| h.name.as_str().cmp(&a.host))
                .map_err(|_| InventoryError::UnknownHost(a.host.clone()))?;
            let mut r = group.resources.clone();
            if let (Some(req), Some(model)) = (&mut r.gpu, &a.gpu_model) {
                // Only the awarded model counts.
                req.models.retain(|m| &m.name == model);
                if req.models.is_empty() {
                    return Err(InventoryError::AwardDoesNotFit(format!(
                        "GPU model {model} is not acceptable to group {}",
                        group.name
                    )));
                }
            }
            let mut replica_gpus = Vec::new();
            let mut model = None;
            for _ in 0..a.replicas {
                let (m, ids) = take_replica(&mut free[hi], &r).ok_or_else(|| {
                    InventoryError::AwardDoesNotFit(format!(
                        "a replica of group {} does not fit on host {}",
                        group.name, a.host
                    ))
                })?;
                model = m;
                replica_gpus.push(ids);
            }
            placed[a.group as usize] += u64::from(a.replicas);
            slots.push(Slot {
                group: a.group,
                host: a.host.clone(),
                replica_gpus,
                gpu_model: model,
            });
        }
        for (g, n) in order.groups.iter().zip(&placed) {
            if u64::from(g.count) != *n {
                return Err(InventoryError::AwardDoesNotFit(format!(
                    "group {} has {} replicas, the award places {n}",
                    g.name, g.count
                )));
            }
        }
        Ok(Plan { slots })
    }

    /// Records an allocation as it was (after a restart, from the store).
    pub fn restore_allocation(
        &mut self,
        lease_id: Id,
        alloc: Allocation,
    ) -> Result<(), InventoryError> {
        if self.allocations.contains_key(&lease_id) {
            return Err(InventoryError::AlreadyAllocated(lease_id));
        }
        let per_host = plan_usage(&alloc.plan, &alloc.group_resources);
        self.take(&per_host)?;
        self.allocations.insert(lease_id, alloc);
        Ok(())
    }

    /// Frees a closed lease's resources. True if it was allocated.
    pub fn release_lease(&mut self, lease_id: &Id) -> bool {
        match self.allocations.remove(lease_id) {
            Some(a) => {
                let per_host = plan_usage(&a.plan, &a.group_resources);
                self.give_back(&per_host);
                true
            }
            None => false,
        }
    }

    pub fn allocation(&self, lease_id: &Id) -> Option<&Allocation> {
        self.allocations.get(lease_id)
    }

    /// Ids of allocated leases, sorted.
    pub fn leases(&self) -> Vec<Id> {
        let mut v: Vec<Id> = self.allocations.keys().copied().collect();
        v.sort();
        v
    }

    /// The protocol view: every host with its total and what is free now.
    pub fn hosts(&self) -> Vec<Host> {
        self.hosts
            .iter()
            .map(|h| {
                let f = h.free();
                Host {
                    name: h.name.clone(),
                    total: h.total.clone(),
                    free: Capacity {
                        cpu_millis: f.cpu_millis,
                        memory_bytes: f.memory_bytes,
                        ephemeral_storage_bytes: f.ephemeral_storage_bytes,
                        persistent_storage: f
                            .persistent_storage
                            .into_iter()
                            .map(|(class, bytes)| StorageClassCapacity { class, bytes })
                            .collect(),
                        gpus: f.gpus,
                    },
                }
            })
            .collect()
    }
}

/// Who the provider is on the mesh: signing key, encryption key and what it advertises.
#[derive(Debug, Clone)]
pub struct ProviderIdentity {
    pub key: Keypair,
    /// X25519 public key manifests are sealed to.
    pub encryption_key: [u8; 32],
    /// Sorted by key.
    pub attributes: Vec<Attribute>,
    pub api_endpoint: String,
    pub chain_address: String,
}

impl ProviderIdentity {
    /// True if the provider has every attribute the placement requires (same key and value).
    pub fn satisfies(&self, required: &[Attribute]) -> bool {
        required.iter().all(|r| self.attributes.binary_search(r).is_ok())
    }

    /// The first required attribute the provider lacks.
    pub fn missing_attribute<'a>(&self, required: &'a [Attribute]) -> Option<&'a Attribute> {
        required.iter().find(|r| self.attributes.binary_search(r).is_err())
    }
}

/// The signed provider info with per-host free capacity, for gossip (on change and as a
/// heartbeat). `sequence` must grow with every info the provider publishes.
pub fn provider_info(
    identity: &ProviderIdentity,
    inventory: &Inventory,
    sequence: u64,
    now_ms: u64,
) -> Signed<ProviderInfo> {
    Signed::sign(
        ProviderInfo {
            version: leasemesh_protocol::v(),
            provider: identity.key.public(),
            sequence,
            created_at_ms: now_ms,
            attributes: identity.attributes.clone(),
            hosts: inventory.hosts(),
            api_endpoint: identity.api_endpoint.clone(),
            chain_address: identity.chain_address.clone(),
            encryption_key: identity.encryption_key,
        },
        &identity.key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::{samples, GpuModelSpec, ServiceGroup};

    struct FakeNvml(Result<Vec<DetectedGpu>, ProbeError>);
    impl GpuProbe for FakeNvml {
        fn probe(&self) -> Result<Vec<DetectedGpu>, ProbeError> {
            self.0.clone()
        }
    }

    fn a100(i: u32) -> DetectedGpu {
        DetectedGpu {
            index: i,
            uuid: format!("GPU-a100-{i}"),
            name: "NVIDIA A100-SXM4-40GB".into(),
            memory_bytes: 40 * GIB,
        }
    }

    fn host(name: &str, cpu: u64, mem_gib: u64) -> HostConfig {
        HostConfig {
            name: name.into(),
            cpu_millis: cpu,
            memory_bytes: mem_gib * GIB,
            ephemeral_storage_bytes: 500 * GIB,
            persistent_storage: [("beta3".to_string(), 1000 * GIB)].into(),
            detect_gpus: false,
            ..HostConfig::default()
        }
    }

    fn cpu_order(count: u32, cpu: u64, mem_gib: u64) -> Order {
        let mut o = samples::order();
        o.groups = vec![ServiceGroup {
            name: "web".into(),
            count,
            resources: Resources {
                cpu_millis: cpu,
                memory_bytes: mem_gib * GIB,
                ephemeral_storage_bytes: GIB,
                persistent_storage: vec![],
                gpu: None,
            },
        }];
        o
    }

    #[test]
    fn model_names_normalize() {
        assert_eq!(normalize_gpu_model("NVIDIA A100-SXM4-40GB"), "a100");
        assert_eq!(normalize_gpu_model("NVIDIA GeForce RTX 4090"), "rtx4090");
        assert_eq!(normalize_gpu_model("NVIDIA H100 80GB HBM3"), "h100");
        assert_eq!(normalize_gpu_model("Tesla V100-SXM2-16GB"), "v100");
        assert_eq!(normalize_gpu_model("NVIDIA L4"), "l4");
    }

    #[test]
    fn nvml_gpus_fill_a_detecting_host_and_config_overrides() {
        let probe = FakeNvml(Ok(vec![a100(1), a100(0)]));
        let mut detect = host("gpu-1", 32_000, 256);
        detect.detect_gpus = true;
        let mut configured = host("gpu-2", 32_000, 256);
        configured.gpus = vec![GpuConfig {
            id: "0".into(),
            model: "h100".into(),
            vram_bytes: 80 * GIB,
            interface: GpuInterface::Sxm,
            ..GpuConfig::default()
        }];
        let (inv, note) = Inventory::from_config(&[detect, configured], &probe).unwrap();
        assert!(note.is_none());
        let hosts = inv.hosts();
        assert_eq!(hosts[0].total.gpus.len(), 2);
        assert_eq!(hosts[0].total.gpus[0].id, "GPU-a100-0");
        assert_eq!(hosts[0].total.gpus[0].model, "a100");
        assert_eq!(hosts[0].total.gpus[0].interface, GpuInterface::Sxm);
        assert_eq!(hosts[0].total.gpus[0].vram_bytes, 40 * GIB);
        assert_eq!(hosts[1].total.gpus[0].model, "h100");
    }

    #[test]
    fn missing_nvml_means_no_gpus_and_a_note() {
        let probe = FakeNvml(Err(ProbeError::LibraryMissing("libnvidia-ml.so: not found".into())));
        let mut h = host("a", 1000, 1);
        h.detect_gpus = true;
        let (inv, note) = Inventory::from_config(&[h], &probe).unwrap();
        assert!(matches!(note, Some(ProbeError::LibraryMissing(_))));
        assert!(inv.hosts()[0].total.gpus.is_empty());
    }

    #[test]
    fn real_nvml_probe_without_library_reports_missing() {
        // These machines have no NVIDIA driver: the probe must fail softly, not panic.
        if std::path::Path::new("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1").exists() {
            return;
        }
        assert!(NvmlProbe.probe().is_err());
    }

    #[test]
    fn free_is_total_minus_system_allocated_reserved() {
        let mut h = host("a", 8_000, 16);
        h.system_reserved =
            ReservedConfig { cpu_millis: 1_000, memory_bytes: GIB, ..Default::default() };
        let (mut inv, _) = Inventory::from_config(&[h], &FakeNvml(Ok(vec![]))).unwrap();
        assert_eq!(inv.hosts()[0].free.cpu_millis, 7_000);
        let order = cpu_order(2, 1_500, 2);
        let id = Id::domain("o", &[b"1"]);
        let plan = inv.plan(&order).unwrap();
        inv.reserve(id, &order, &plan, 100).unwrap();
        assert_eq!(inv.hosts()[0].free.cpu_millis, 4_000);
        assert_eq!(inv.hosts()[0].free.memory_bytes, 11 * GIB);
        // Award: the reservation becomes an allocation, free stays the same.
        let lease = Id::domain("l", &[b"1"]);
        inv.allocate(lease, id, &order, &plan.assignments()).unwrap();
        assert!(!inv.has_reservation(&id));
        assert_eq!(inv.hosts()[0].free.cpu_millis, 4_000);
        // Expiry does not touch allocations.
        assert!(inv.expire_reservations(1_000).is_empty());
        assert!(inv.release_lease(&lease));
        assert_eq!(inv.hosts()[0].free.cpu_millis, 7_000);
        assert_eq!(inv.hosts()[0].free.memory_bytes, 15 * GIB);
    }

    #[test]
    fn reservations_expire_and_release_on_loss() {
        let (mut inv, _) =
            Inventory::from_config(&[host("a", 4_000, 8)], &FakeNvml(Ok(vec![]))).unwrap();
        let order = cpu_order(1, 3_000, 1);
        let (a, b) = (Id::domain("o", &[b"a"]), Id::domain("o", &[b"b"]));
        let plan = inv.plan(&order).unwrap();
        inv.reserve(a, &order, &plan, 1_000).unwrap();
        assert!(inv.plan(&order).is_none(), "the reservation holds the capacity");
        assert_eq!(inv.expire_reservations(999), Vec::<Id>::new());
        assert_eq!(inv.expire_reservations(1_000), vec![a]);
        let plan = inv.plan(&order).unwrap();
        inv.reserve(b, &order, &plan, 5_000).unwrap();
        assert!(inv.release_reservation(&b));
        assert!(!inv.release_reservation(&b));
        assert_eq!(inv.hosts()[0].free.cpu_millis, 4_000);
    }

    #[test]
    fn every_replica_must_fit_on_one_host() {
        // Two hosts with 3 cores free each: 6 cores in total, but a 4-core replica fits nowhere.
        let (inv, _) = Inventory::from_config(
            &[host("a", 3_000, 8), host("b", 3_000, 8)],
            &FakeNvml(Ok(vec![])),
        )
        .unwrap();
        assert!(inv.plan(&cpu_order(1, 4_000, 1)).is_none());
        let plan = inv.plan(&cpu_order(2, 2_000, 1)).unwrap();
        let a = plan.assignments();
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].host.as_str(), a[0].replicas), ("a", 1));
        assert_eq!((a[1].host.as_str(), a[1].replicas), ("b", 1));
    }

    fn gpu_order(units: u32, models: Vec<GpuModelSpec>) -> Order {
        let mut o = cpu_order(1, 1_000, 1);
        o.groups[0].resources.gpu = Some(GpuRequest { units, vendor: "nvidia".into(), models });
        o
    }

    fn gpu_host(name: &str, gpus: &[(&str, &str, u64, GpuInterface)]) -> HostConfig {
        let mut h = host(name, 64_000, 512);
        h.gpus = gpus
            .iter()
            .map(|(id, model, vram, interface)| GpuConfig {
                id: (*id).into(),
                vendor: "nvidia".into(),
                model: (*model).into(),
                vram_bytes: vram * GIB,
                interface: *interface,
            })
            .collect();
        h
    }

    #[test]
    fn gpus_of_one_replica_are_one_model_on_one_host() {
        use GpuInterface::*;
        // Host a: one a100 and one h100 (two GPUs, but of two models). Host b: two a100 PCIe.
        let (inv, _) = Inventory::from_config(
            &[
                gpu_host("a", &[("0", "a100", 80, Sxm), ("1", "h100", 80, Sxm)]),
                gpu_host("b", &[("0", "a100", 40, Pcie), ("1", "a100", 40, Pcie)]),
            ],
            &FakeNvml(Ok(vec![])),
        )
        .unwrap();
        let any =
            |name: &str| GpuModelSpec { name: name.into(), min_vram_bytes: 0, interface: None };
        let plan = inv.plan(&gpu_order(2, vec![any("a100"), any("h100")])).unwrap();
        assert_eq!(plan.slots[0].host, "b");
        assert_eq!(plan.slots[0].replica_gpus, vec![vec!["0".to_string(), "1".to_string()]]);
        assert_eq!(plan.slots[0].gpu_model.as_deref(), Some("a100"));
        // VRAM: 80 GiB a100 only on host a.
        let big = GpuModelSpec { name: "a100".into(), min_vram_bytes: 80 * GIB, interface: None };
        let plan = inv.plan(&gpu_order(1, vec![big.clone()])).unwrap();
        assert_eq!(plan.slots[0].host, "a");
        assert!(inv.plan(&gpu_order(2, vec![big])).is_none());
        // Interface: SXM a100 only on host a.
        let sxm = GpuModelSpec { name: "a100".into(), min_vram_bytes: 0, interface: Some(Sxm) };
        assert_eq!(inv.plan(&gpu_order(1, vec![sxm])).unwrap().slots[0].host, "a");
        // A model nobody has.
        assert!(inv.plan(&gpu_order(1, vec![any("b200")])).is_none());
        // Vendor mismatch.
        let mut amd = gpu_order(1, vec![]);
        if let Some(g) = &mut amd.groups[0].resources.gpu {
            g.vendor = "amd".into();
        }
        assert!(inv.plan(&amd).is_none());
    }

    #[test]
    fn award_on_other_host_than_reserved_is_honoured_or_refused_whole() {
        let (mut inv, _) = Inventory::from_config(
            &[host("a", 4_000, 8), host("b", 4_000, 8)],
            &FakeNvml(Ok(vec![])),
        )
        .unwrap();
        let order = cpu_order(1, 3_000, 1);
        let oid = Id::domain("o", &[b"x"]);
        let plan = inv.plan(&order).unwrap();
        inv.reserve(oid, &order, &plan, 10_000).unwrap();
        let bad = vec![Assignment {
            group: 0,
            host: "b".into(),
            replicas: 2,
            gpu_model: None,
            gpus_per_replica: 0,
        }];
        assert!(inv.allocate(Id::domain("l", &[b"x"]), oid, &order, &bad).is_err());
        assert!(inv.has_reservation(&oid), "a refused award changes nothing");
        let good = vec![Assignment { replicas: 1, ..bad[0].clone() }];
        inv.allocate(Id::domain("l", &[b"x"]), oid, &order, &good).unwrap();
        let hosts = inv.hosts();
        assert_eq!(hosts[0].free.cpu_millis, 4_000);
        assert_eq!(hosts[1].free.cpu_millis, 1_000);
    }

    #[test]
    fn provider_info_is_signed_and_valid() {
        let (inv, _) =
            Inventory::from_config(&[host("a", 4_000, 8)], &FakeNvml(Ok(vec![]))).unwrap();
        let id = ProviderIdentity {
            key: Keypair::from_seed_label("p"),
            encryption_key: [7; 32],
            attributes: vec![Attribute::new("region", "eu-west")],
            api_endpoint: "http://127.0.0.1:8080".into(),
            chain_address: "inj1provider".into(),
        };
        let info = provider_info(&id, &inv, 3, 1_000);
        let back = Signed::<ProviderInfo>::decode_verified(&info.encode()).unwrap();
        assert_eq!(back.body.sequence, 3);
        assert_eq!(back.body.hosts[0].free.cpu_millis, 4_000);
        assert_eq!(back.body.hosts[0].total.persistent_bytes("beta3"), 1000 * GIB);
    }
}
