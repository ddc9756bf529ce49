//! The provider's live inventory: what each host has, what is sold (allocated to leases), what is
//! promised (reserved for open bids), and so what is free.
//!
//! `free = total − system reserve − allocated − reserved`, per host. Reservations belong to an
//! order and expire at the auction's close plus a grace for the epoch's batch; they are released
//! at once when another provider wins. An award turns the reservation into an allocation that
//! lives until the lease closes.
//!
//! The fit rule is the matcher's ([`leasemesh_matcher::fit`]): every replica fits on one host,
//! all GPUs of one replica are of one acceptable model on that host (vendor, VRAM, interface).
//!
//! GPUs come from the config or from NVML (behind [`GpuProbe`], so tests use a fake). No I/O
//! here besides the probe; everything else is plain data and `now` in milliseconds.
//!
//! Modules: [`config`] (the operator's hosts), [`probe`] (NVML), [`fit`] (GPU devices for a placement),
//! and here the inventory itself and the signed provider info built from it.

pub mod config;
pub mod fit;
pub mod probe;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use leasemesh_protocol::{
    Assignment, Attribute, Capacity, Gpu, GpuModelSpec, Host, Id, Keypair, Order, ProviderInfo,
    Resources, Signed, StorageClassCapacity, TeeKind,
};
use serde::{Deserialize, Serialize};

pub use config::{GpuConfig, HostConfig, ReservedConfig};
use fit::take_replica;
pub use fit::{FreeHost, Plan, Slot};
pub use probe::{
    gpus_from_detected, normalize_gpu_model, DetectedGpu, GpuProbe, NvmlProbe, ProbeError,
};

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
    /// Sorted, without repeats.
    tee: Vec<TeeKind>,
}

impl HostState {
    /// What is free: total − system reserve − allocated − reserved.
    fn free(&self) -> FreeHost {
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
            gpus: self
                .total
                .gpus
                .iter()
                .filter(|g| !self.used.gpus.contains(&g.id))
                .cloned()
                .collect(),
            tee: self.tee.clone(),
        }
    }

    /// [`HostState::free`] as the protocol's capacity (what the provider info advertises).
    fn free_capacity(&self) -> Capacity {
        let f = self.free();
        Capacity {
            cpu_millis: f.cpu_millis,
            memory_bytes: f.memory_bytes,
            ephemeral_storage_bytes: f.ephemeral_storage_bytes,
            persistent_storage: f
                .persistent_storage
                .into_iter()
                .map(|(class, bytes)| StorageClassCapacity { class, bytes })
                .collect(),
            gpus: f.gpus,
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
                tee: {
                    let mut t = h.tee.clone();
                    t.sort();
                    t.dedup();
                    t
                },
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

    /// Where the order would go now, without taking anything: the matcher's fit rule
    /// ([`leasemesh_matcher::fit::place`]) on the capacity this provider advertises, turned into
    /// concrete GPU devices. So the provider bids exactly when the matcher would find the bid
    /// feasible, and reserves what an award of it takes.
    pub fn plan(&self, order: &Order) -> Option<Plan> {
        let assignments = leasemesh_matcher::fit::place(order, &self.free_as_hosts())?;
        self.plan_assignments(order, &assignments).ok()
    }

    /// What is free on each host, as the matcher's rule reads it (totals left empty: unused).
    fn free_as_hosts(&self) -> Vec<Host> {
        self.hosts
            .iter()
            .map(|h| Host {
                name: h.name.clone(),
                total: Capacity::default(),
                free: h.free_capacity(),
                tee: h.tee.clone(),
            })
            .collect()
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
                // Only the awarded model counts (any model of the vendor when none is listed).
                if req.models.is_empty() {
                    req.models.push(GpuModelSpec {
                        name: model.clone(),
                        min_vram_bytes: 0,
                        interface: None,
                    });
                }
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
        slots.sort_by(|a, b| {
            (a.group, &a.host, &a.gpu_model).cmp(&(b.group, &b.host, &b.gpu_model))
        });
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
            .map(|h| Host {
                name: h.name.clone(),
                total: h.total.clone(),
                free: h.free_capacity(),
                tee: h.tee.clone(),
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
    let mut info = ProviderInfo {
        version: leasemesh_protocol::v(),
        provider: identity.key.public(),
        sequence,
        created_at_ms: now_ms,
        attributes: identity.attributes.clone(),
        hosts: inventory.hosts(),
        api_endpoint: identity.api_endpoint.clone(),
        chain_address: identity.chain_address.clone(),
        encryption_key: identity.encryption_key,
    };
    // Version 2 when a host offers a TEE: a node that cannot read it never takes the host for
    // a plain one.
    info.version = info.wire_version();
    Signed::sign(info, &identity.key)
}
