//! Tenants' containers on the Docker Engine, through `bollard` (never the `docker` command).
//!
//! One container per replica, one bridge network per lease (replicas reach each other by
//! service name), labels `leasemesh.lease=<lease id hex>` and `leasemesh.service=<name>` on
//! everything, CPU (NanoCpus) and memory limits from the order, GPU device requests (driver
//! `nvidia`, the leased device ids), env, command and args from the manifest, ports published on
//! the configured host address, a restart policy, never privileged. Close stops and removes the
//! containers and the network. After a restart, [`DockerRuntime::reconcile`] re-adopts the
//! containers of live leases and removes the rest.
//!
//! The translation from a lease to Docker objects ([`lease_spec`], [`container_body`]) is pure
//! and unit-tested; [`DockerRuntime`] does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, HostConfig, NetworkCreateRequest,
    NetworkingConfig, PortBinding, RestartPolicy as DockerRestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::stream::{BoxStream, StreamExt};
use leasemesh_protocol::manifest::{Manifest, PortProto};
use leasemesh_protocol::{Id, Order};
use serde::{Deserialize, Serialize};

use super::inventory::Allocation;

/// Label with the lease id (hex) on every container and network of a lease.
pub const LABEL_LEASE: &str = "leasemesh.lease";
/// Label with the service name on every container.
pub const LABEL_SERVICE: &str = "leasemesh.service";
/// Label with the replica index within its service.
pub const LABEL_REPLICA: &str = "leasemesh.replica";
/// Label with the runtime's `name_prefix`: a provider only ever touches its own containers,
/// even when several providers (a local testnet) share one Docker daemon.
pub const LABEL_OWNER: &str = "leasemesh.owner";

/// Which runtime runs the leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Containers on the Docker Engine.
    #[default]
    Docker,
    /// Nothing runs: a lease whose manifest matches its order is Running at once, with no
    /// endpoints. For benchmarks that measure the market, not Docker; never for tenants.
    None,
}

/// When Docker restarts a tenant's container (`[provider.runtime] restart_policy`). Spelled as
/// Docker spells it; any other value is a config error, never a silent default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// `no`: never.
    No,
    /// `on-failure`: when it exits non-zero, at most `max_restarts` times.
    #[default]
    OnFailure,
    /// `always`.
    Always,
    /// `unless-stopped`.
    UnlessStopped,
}

/// `[provider.runtime]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `docker` (the default) or `none` (see [`RuntimeKind::None`]); anything else is refused.
    pub kind: RuntimeKind,
    /// Docker endpoint; empty means the local default (`DOCKER_HOST` or /var/run/docker.sock).
    pub docker_host: String,
    /// Address ports are published on (`0.0.0.0` for everyone, `127.0.0.1` for tests).
    pub host_address: String,
    /// Host name or address put in the endpoint URIs tenants receive.
    pub advertise_host: String,
    /// `no`, `on-failure`, `always` or `unless-stopped`.
    pub restart_policy: RestartPolicy,
    /// Restarts allowed with `on-failure`.
    pub max_restarts: i64,
    /// Seconds a container gets to stop before it is killed.
    pub stop_timeout_s: i32,
    /// Most processes in one container (fork bombs stay inside their lease).
    pub pids_limit: i64,
    /// Prefix of container and network names, and the owner label: unique per provider on one
    /// Docker daemon.
    pub name_prefix: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            kind: RuntimeKind::Docker,
            docker_host: String::new(),
            host_address: "0.0.0.0".into(),
            advertise_host: "127.0.0.1".into(),
            restart_policy: RestartPolicy::OnFailure,
            max_restarts: 5,
            stop_timeout_s: 10,
            pids_limit: 4096,
            name_prefix: "leasemesh".into(),
        }
    }
}

/// Why the runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("the manifest does not match the order: {0}")]
    Spec(String),
    #[error("container {name} is not running after start (state {state})")]
    NotRunning { name: String, state: String },
}

/// One port a replica exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub port: u16,
    pub proto: PortProto,
    /// Serve as HTTP (an `http://` endpoint) rather than raw TCP.
    pub http: bool,
}

/// Everything Docker needs for one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSpec {
    pub service: String,
    pub index: u32,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `NAME=value`, sorted.
    pub env: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Leased GPU device ids (empty without GPUs).
    pub gpu_ids: Vec<String>,
    pub gpu_vendor: Option<String>,
}

/// All replicas of one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSpec {
    pub lease_id: Id,
    pub replicas: Vec<ReplicaSpec>,
}

/// Ties order, manifest and allocation together: each order group is a manifest service of the
/// same name in the placement's manifest group, with the same replica count.
pub fn lease_spec(
    lease_id: Id,
    order: &Order,
    manifest: &Manifest,
    alloc: &Allocation,
) -> Result<LeaseSpec, RuntimeError> {
    let group = manifest.group(&order.placement.name).ok_or_else(|| {
        RuntimeError::Spec(format!("no manifest group named {}", order.placement.name))
    })?;
    let mut replicas = Vec::new();
    for (gi, og) in order.groups.iter().enumerate() {
        let svc = group.services.iter().find(|s| s.name == og.name).ok_or_else(|| {
            RuntimeError::Spec(format!("the manifest has no service {}", og.name))
        })?;
        if svc.count != og.count {
            return Err(RuntimeError::Spec(format!(
                "service {} has {} replicas in the manifest, {} in the order",
                og.name, svc.count, og.count
            )));
        }
        let mut index = 0;
        for slot in alloc.plan.slots.iter().filter(|s| s.group as usize == gi) {
            for gpu_ids in &slot.replica_gpus {
                replicas.push(ReplicaSpec {
                    service: svc.name.clone(),
                    index,
                    image: svc.image.clone(),
                    command: svc.command.clone(),
                    args: svc.args.clone(),
                    env: svc.env.iter().map(|e| format!("{}={}", e.name, e.value)).collect(),
                    ports: svc
                        .expose
                        .iter()
                        .map(|p| PortSpec {
                            port: p.port,
                            proto: p.proto,
                            http: p.proto == PortProto::Tcp
                                && (!p.hosts.is_empty() || matches!(p.external_port, 80 | 8080)),
                        })
                        .collect(),
                    cpu_millis: og.resources.cpu_millis,
                    memory_bytes: og.resources.memory_bytes,
                    gpu_ids: gpu_ids.clone(),
                    gpu_vendor: og.resources.gpu.as_ref().map(|g| g.vendor.clone()),
                });
                index += 1;
            }
        }
        if index != og.count {
            return Err(RuntimeError::Spec(format!(
                "the allocation places {index} replicas of {}, the order has {}",
                og.name, og.count
            )));
        }
    }
    Ok(LeaseSpec { lease_id, replicas })
}

fn proto_str(p: PortProto) -> &'static str {
    match p {
        PortProto::Tcp => "tcp",
        PortProto::Udp => "udp",
    }
}

impl RuntimeConfig {
    /// Docker network of a lease.
    pub fn network_name(&self, lease_id: &Id) -> String {
        format!("{}-{}", self.name_prefix, lease_id.to_hex())
    }

    /// Container name of a replica.
    pub fn container_name(&self, lease_id: &Id, r: &ReplicaSpec) -> String {
        format!("{}-{}-{}-{}", self.name_prefix, &lease_id.to_hex()[..16], r.service, r.index)
    }

    fn restart(&self) -> DockerRestartPolicy {
        let (name, retries) = match self.restart_policy {
            RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
            RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
            RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
            RestartPolicy::OnFailure => {
                (RestartPolicyNameEnum::ON_FAILURE, Some(self.max_restarts))
            }
        };
        DockerRestartPolicy { name: Some(name), maximum_retry_count: retries }
    }
}

/// The Docker create request for one replica.
pub fn container_body(cfg: &RuntimeConfig, lease_id: &Id, r: &ReplicaSpec) -> ContainerCreateBody {
    let network = cfg.network_name(lease_id);
    let labels: HashMap<String, String> = [
        (LABEL_LEASE.to_string(), lease_id.to_hex()),
        (LABEL_SERVICE.to_string(), r.service.clone()),
        (LABEL_REPLICA.to_string(), r.index.to_string()),
        (LABEL_OWNER.to_string(), cfg.name_prefix.clone()),
    ]
    .into();
    let exposed: Vec<String> =
        r.ports.iter().map(|p| format!("{}/{}", p.port, proto_str(p.proto))).collect();
    let bindings: HashMap<String, Option<Vec<PortBinding>>> = exposed
        .iter()
        .map(|k| {
            // An empty host port lets Docker choose a free one; the endpoint reports it.
            let b = PortBinding {
                host_ip: Some(cfg.host_address.clone()),
                host_port: Some(String::new()),
            };
            (k.clone(), Some(vec![b]))
        })
        .collect();
    let device_requests = (!r.gpu_ids.is_empty()).then(|| {
        vec![DeviceRequest {
            driver: Some(r.gpu_vendor.clone().unwrap_or_else(|| "nvidia".into())),
            device_ids: Some(r.gpu_ids.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    });
    let memory = i64::try_from(r.memory_bytes).unwrap_or(i64::MAX);
    ContainerCreateBody {
        image: Some(r.image.clone()),
        entrypoint: (!r.command.is_empty()).then(|| r.command.clone()),
        cmd: (!r.args.is_empty()).then(|| r.args.clone()),
        env: Some(r.env.clone()),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        hostname: Some(format!("{}-{}", r.service, r.index)),
        host_config: Some(HostConfig {
            nano_cpus: Some(
                i64::try_from(r.cpu_millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
            ),
            memory: Some(memory),
            // No swap beyond the memory that was sold.
            memory_swap: Some(memory),
            pids_limit: Some(cfg.pids_limit),
            port_bindings: Some(bindings),
            restart_policy: Some(cfg.restart()),
            privileged: Some(false),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(network.clone()),
            device_requests,
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(
                [(
                    network,
                    EndpointSettings {
                        aliases: Some(vec![r.service.clone()]),
                        ..Default::default()
                    },
                )]
                .into(),
            ),
        }),
        ..Default::default()
    }
}

/// One replica as Docker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub container: String,
    pub service: String,
    /// Docker state: created, running, restarting, exited, …
    pub state: String,
    /// Human status ("Up 3 minutes").
    pub status: String,
    /// Endpoint URIs of this replica's published ports.
    pub endpoints: Vec<String>,
}

/// What `GET /v1/leases/{id}/status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub lease_id: Id,
    pub replicas: Vec<ReplicaStatus>,
}

impl LeaseStatus {
    pub fn all_running(&self) -> bool {
        !self.replicas.is_empty() && self.replicas.iter().all(|r| r.state == "running")
    }
}

/// One log line of a lease, with the service it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub container: String,
    pub service: String,
    pub stream: String,
    pub line: String,
}

/// What [`DockerRuntime::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Live leases whose containers were found and kept.
    pub adopted: Vec<Id>,
    /// Containers removed because their lease is not live (or their label is not a lease id).
    pub removed_containers: Vec<String>,
}

/// The Docker Engine, for the provider's leases.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    cfg: RuntimeConfig,
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// Docker filter for this owner's objects, of one lease or of all leases (labels are ANDed).
fn lease_filter(owner: &str, lease_id: Option<&Id>) -> HashMap<String, Vec<String>> {
    let lease = match lease_id {
        Some(id) => format!("{LABEL_LEASE}={}", id.to_hex()),
        None => LABEL_LEASE.to_string(),
    };
    [("label".to_string(), vec![lease, format!("{LABEL_OWNER}={owner}")])].into()
}

impl DockerRuntime {
    /// Connects to the configured Docker endpoint and agrees on an API version the daemon speaks.
    /// With kind `none` nothing is contacted: the handle is never used.
    pub async fn connect(cfg: RuntimeConfig) -> Result<DockerRuntime, RuntimeError> {
        if cfg.kind == RuntimeKind::None {
            let docker =
                Docker::connect_with_http("http://127.0.0.1:9", 1, bollard::API_DEFAULT_VERSION)?;
            return Ok(DockerRuntime { docker, cfg });
        }
        let docker = if cfg.docker_host.is_empty() {
            Docker::connect_with_local_defaults()?
        } else if let Some(path) = cfg.docker_host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)?
        } else {
            Docker::connect_with_http(&cfg.docker_host, 120, bollard::API_DEFAULT_VERSION)?
        };
        let docker = docker.negotiate_version().await?;
        Ok(DockerRuntime { docker, cfg })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    /// Creates the lease's network and containers and starts them. Returns the endpoint URIs.
    /// On any failure everything of the lease is removed again.
    pub async fn start(&self, spec: &LeaseSpec) -> Result<Vec<String>, RuntimeError> {
        if self.cfg.kind == RuntimeKind::None {
            return Ok(Vec::new());
        }
        match self.start_inner(spec).await {
            Ok(endpoints) => Ok(endpoints),
            Err(e) => {
                if let Err(clean) = self.close(&spec.lease_id).await {
                    tracing::warn!(lease = %spec.lease_id.short(), error = %clean, "cleanup after a failed start");
                }
                Err(e)
            }
        }
    }

    async fn start_inner(&self, spec: &LeaseSpec) -> Result<Vec<String>, RuntimeError> {
        let network = self.cfg.network_name(&spec.lease_id);
        let labels: HashMap<String, String> = [
            (LABEL_LEASE.to_string(), spec.lease_id.to_hex()),
            (LABEL_OWNER.to_string(), self.cfg.name_prefix.clone()),
        ]
        .into();
        let create = NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(create).await {
            Ok(_) => {}
            // Already there (a retried start): keep it.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut names = Vec::with_capacity(spec.replicas.len());
        for r in &spec.replicas {
            let name = self.cfg.container_name(&spec.lease_id, r);
            let opts = CreateContainerOptionsBuilder::default().name(&name).build();
            self.docker
                .create_container(Some(opts), container_body(&self.cfg, &spec.lease_id, r))
                .await?;
            names.push(name);
        }
        for name in &names {
            self.docker.start_container(name, None).await?;
        }
        let mut endpoints = Vec::new();
        for (name, r) in names.iter().zip(&spec.replicas) {
            let info = self.docker.inspect_container(name, None).await?;
            let state = info.state.as_ref();
            if !state.and_then(|s| s.running).unwrap_or(false) {
                let state = state
                    .and_then(|s| s.status)
                    .map_or_else(|| "unknown".to_string(), |s| s.to_string());
                return Err(RuntimeError::NotRunning { name: name.clone(), state });
            }
            let ports = info.network_settings.and_then(|n| n.ports).unwrap_or_default();
            endpoints.extend(self.endpoints_of(&r.ports, &ports));
        }
        endpoints.sort();
        Ok(endpoints)
    }

    fn endpoints_of(
        &self,
        specs: &[PortSpec],
        ports: &HashMap<String, Option<Vec<PortBinding>>>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for p in specs {
            let key = format!("{}/{}", p.port, proto_str(p.proto));
            let Some(Some(bindings)) = ports.get(&key) else { continue };
            for b in bindings {
                let Some(host_port) = b.host_port.as_deref().filter(|s| !s.is_empty()) else {
                    continue;
                };
                // Docker lists IPv6 bindings too; one URI per port is enough.
                if b.host_ip.as_deref().is_some_and(|ip| ip.contains(':')) {
                    continue;
                }
                let scheme = match (p.proto, p.http) {
                    (PortProto::Udp, _) => "udp",
                    (PortProto::Tcp, true) => "http",
                    (PortProto::Tcp, false) => "tcp",
                };
                out.push(format!("{scheme}://{}:{host_port}", self.cfg.advertise_host));
            }
        }
        out
    }

    /// Status of every replica of a lease (empty when nothing of it runs here).
    pub async fn status(&self, lease_id: &Id) -> Result<LeaseStatus, RuntimeError> {
        if self.cfg.kind == RuntimeKind::None {
            return Ok(LeaseStatus { lease_id: *lease_id, replicas: Vec::new() });
        }
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&lease_filter(&self.cfg.name_prefix, Some(lease_id)))
            .build();
        let mut replicas = Vec::new();
        for c in self.docker.list_containers(Some(opts)).await? {
            let container = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let service =
                c.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE)).cloned().unwrap_or_default();
            let mut endpoints: Vec<String> = c
                .ports
                .iter()
                .flatten()
                .filter(|p| p.ip.as_deref().is_none_or(|ip| !ip.contains(':')))
                .filter_map(|p| {
                    let public = p.public_port?;
                    let proto = p.typ.map_or_else(|| "tcp".to_string(), |t| t.to_string());
                    Some(format!("{proto}://{}:{public}", self.cfg.advertise_host))
                })
                .collect();
            endpoints.sort();
            replicas.push(ReplicaStatus {
                container,
                service,
                state: c.state.map_or_else(String::new, |s| s.to_string()),
                status: c.status.unwrap_or_default(),
                endpoints,
            });
        }
        replicas.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(LeaseStatus { lease_id: *lease_id, replicas })
    }

    /// The lease's logs, all replicas merged; with `follow` the stream stays open for new lines.
    pub async fn logs(
        &self,
        lease_id: &Id,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<BoxStream<'static, Result<LogLine, RuntimeError>>, RuntimeError> {
        let status = self.status(lease_id).await?;
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let mut streams = Vec::new();
        for r in status.replicas {
            let opts = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .follow(follow)
                .tail(&tail)
                .build();
            let (container, service) = (r.container.clone(), r.service.clone());
            let s = self.docker.logs(&r.container, Some(opts)).map(move |item| {
                let out = item?;
                let stream = match &out {
                    bollard::container::LogOutput::StdErr { .. } => "stderr",
                    _ => "stdout",
                };
                Ok(LogLine {
                    container: container.clone(),
                    service: service.clone(),
                    stream: stream.to_string(),
                    line: String::from_utf8_lossy(&out.into_bytes()).trim_end().to_string(),
                })
            });
            streams.push(s.boxed());
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    /// Stops and removes every container and the network of a lease. Missing objects are fine:
    /// closing twice is closing once.
    pub async fn close(&self, lease_id: &Id) -> Result<(), RuntimeError> {
        if self.cfg.kind == RuntimeKind::None {
            return Ok(());
        }
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&lease_filter(&self.cfg.name_prefix, Some(lease_id)))
            .build();
        for c in self.docker.list_containers(Some(opts)).await? {
            if let Some(id) = c.id {
                self.remove_container(&id).await?;
            }
        }
        match self.docker.remove_network(&self.cfg.network_name(lease_id)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let stop = StopContainerOptionsBuilder::default().t(self.cfg.stop_timeout_s).build();
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            // 304: already stopped; 404: already gone.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let rm = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(id, Some(rm)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            // Someone (a concurrent close) is already removing it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// After a restart: keeps the containers of `live` leases (starting any that stopped) and
    /// removes every other container and network carrying the lease label.
    pub async fn reconcile(&self, live: &BTreeSet<Id>) -> Result<Reconciled, RuntimeError> {
        if self.cfg.kind == RuntimeKind::None {
            return Ok(Reconciled::default());
        }
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&lease_filter(&self.cfg.name_prefix, None))
            .build();
        let mut adopted = BTreeSet::new();
        let mut removed = Vec::new();
        let mut dead_leases = BTreeSet::new();
        for c in self.docker.list_containers(Some(opts)).await? {
            let Some(cid) = c.id.clone() else { continue };
            let lease = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_LEASE))
                .and_then(|v| Id::from_hex(v).ok());
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map_or_else(|| cid.clone(), |n| n.trim_start_matches('/').to_string());
            match lease {
                Some(id) if live.contains(&id) => {
                    if c.state.map(|s| s.to_string()).as_deref() != Some("running") {
                        self.docker.start_container(&cid, None).await?;
                    }
                    adopted.insert(id);
                }
                other => {
                    self.remove_container(&cid).await?;
                    removed.push(name);
                    if let Some(id) = other {
                        dead_leases.insert(id);
                    }
                }
            }
        }
        // Networks of dead leases, including ones whose containers were already gone.
        let nopts = ListNetworksOptionsBuilder::default()
            .filters(&lease_filter(&self.cfg.name_prefix, None))
            .build();
        for n in self.docker.list_networks(Some(nopts)).await? {
            let lease = n
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_LEASE))
                .and_then(|v| Id::from_hex(v).ok());
            if lease.is_some_and(|id| live.contains(&id)) {
                continue;
            }
            if let Some(name) = n.name {
                match self.docker.remove_network(&name).await {
                    Ok(()) => {}
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        removed.sort();
        let _ = dead_leases;
        Ok(Reconciled { adopted: adopted.into_iter().collect(), removed_containers: removed })
    }

    /// Ids of the leases with containers here (from the labels).
    pub async fn leases_present(&self) -> Result<BTreeMap<Id, usize>, RuntimeError> {
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&lease_filter(&self.cfg.name_prefix, None))
            .build();
        let mut out = BTreeMap::new();
        for c in self.docker.list_containers(Some(opts)).await? {
            if let Some(id) = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_LEASE))
                .and_then(|v| Id::from_hex(v).ok())
            {
                *out.entry(id).or_insert(0) += 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::inventory::{Plan, Slot};
    use leasemesh_protocol::samples;

    fn sample_alloc() -> Allocation {
        let order = samples::order();
        Allocation {
            order_id: samples::signed_order().id(),
            plan: Plan {
                slots: vec![
                    Slot {
                        group: 0,
                        host: "h".into(),
                        replica_gpus: vec![vec![], vec![]],
                        gpu_model: None,
                    },
                    Slot {
                        group: 1,
                        host: "h".into(),
                        replica_gpus: vec![vec!["GPU-aaaa".into()]],
                        gpu_model: Some("a100".into()),
                    },
                ],
            },
            group_resources: order.groups.iter().map(|g| g.resources.clone()).collect(),
        }
    }

    #[test]
    fn spec_ties_groups_to_services_and_gpus() {
        let lease = Id::domain("lease", &[b"1"]);
        let spec =
            lease_spec(lease, &samples::order(), &samples::manifest(), &sample_alloc()).unwrap();
        assert_eq!(spec.replicas.len(), 3);
        let worker = &spec.replicas[2];
        assert_eq!(worker.service, "worker");
        assert_eq!(worker.gpu_ids, vec!["GPU-aaaa".to_string()]);
        assert_eq!(worker.command, vec!["python".to_string()]);
        assert_eq!(spec.replicas[1].index, 1);
        assert_eq!(spec.replicas[0].env, vec!["MODE=prod".to_string()]);
        assert!(spec.replicas[0].ports[0].http);
    }

    #[test]
    fn spec_refuses_a_manifest_that_does_not_match() {
        let lease = Id::domain("lease", &[b"1"]);
        let mut m = samples::manifest();
        m.groups[0].services[0].count = 5;
        assert!(lease_spec(lease, &samples::order(), &m, &sample_alloc()).is_err());
        let mut m = samples::manifest();
        m.groups[0].name = "elsewhere".into();
        assert!(lease_spec(lease, &samples::order(), &m, &sample_alloc()).is_err());
    }

    #[test]
    fn gpu_replica_gets_a_device_request_for_its_devices() {
        let lease = Id::domain("lease", &[b"1"]);
        let spec =
            lease_spec(lease, &samples::order(), &samples::manifest(), &sample_alloc()).unwrap();
        let cfg = RuntimeConfig::default();
        let body = container_body(&cfg, &lease, &spec.replicas[2]);
        let hc = body.host_config.unwrap();
        let req = &hc.device_requests.unwrap()[0];
        assert_eq!(req.driver.as_deref(), Some("nvidia"));
        assert_eq!(req.device_ids.as_deref(), Some(&["GPU-aaaa".to_string()][..]));
        assert_eq!(req.capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert_eq!(req.count, None, "named devices, not a count");
        assert_eq!(hc.nano_cpus, Some(4_000_000_000));
        assert_eq!(hc.memory, Some(16 << 30));
        assert_eq!(hc.privileged, Some(false));
        // A replica without GPUs asks for none.
        let web = container_body(&cfg, &lease, &spec.replicas[0]);
        assert!(web.host_config.unwrap().device_requests.is_none());
    }

    #[test]
    fn labels_ports_and_restart_policy() {
        let lease = Id::domain("lease", &[b"1"]);
        let spec =
            lease_spec(lease, &samples::order(), &samples::manifest(), &sample_alloc()).unwrap();
        let cfg = RuntimeConfig { host_address: "127.0.0.1".into(), ..RuntimeConfig::default() };
        let body = container_body(&cfg, &lease, &spec.replicas[0]);
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_LEASE], lease.to_hex());
        assert_eq!(labels[LABEL_SERVICE], "web");
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let hc = body.host_config.unwrap();
        let b = &hc.port_bindings.unwrap()["80/tcp"].clone().unwrap()[0];
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        let rp = hc.restart_policy.unwrap();
        assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(rp.maximum_retry_count, Some(5));
        assert_eq!(hc.network_mode, Some(cfg.network_name(&lease)));
    }

    #[test]
    fn kind_none_parses_and_unknown_kinds_are_refused() {
        let cfg: RuntimeConfig = toml::from_str("kind = \"none\"").unwrap();
        assert_eq!(cfg.kind, RuntimeKind::None);
        assert_eq!(RuntimeConfig::default().kind, RuntimeKind::Docker);
        let err = toml::from_str::<RuntimeConfig>("kind = \"podman\"").unwrap_err();
        assert!(err.to_string().contains("podman"), "{err}");
    }

    #[tokio::test]
    async fn kind_none_runs_leases_without_docker() {
        // An endpoint where no Docker answers: the none runtime must not contact it.
        let cfg = RuntimeConfig {
            kind: RuntimeKind::None,
            docker_host: "unix:///nonexistent/docker.sock".into(),
            ..RuntimeConfig::default()
        };
        let rt = DockerRuntime::connect(cfg).await.unwrap();
        let lease = Id::domain("lease", &[b"1"]);
        let spec =
            lease_spec(lease, &samples::order(), &samples::manifest(), &sample_alloc()).unwrap();
        assert_eq!(rt.start(&spec).await.unwrap(), Vec::<String>::new());
        assert!(rt.status(&lease).await.unwrap().replicas.is_empty());
        rt.close(&lease).await.unwrap();
        assert_eq!(rt.reconcile(&BTreeSet::from([lease])).await.unwrap(), Reconciled::default());
        // The same config with Docker asked for fails to connect there.
        let docker = RuntimeConfig { kind: RuntimeKind::Docker, ..rt.config().clone() };
        assert!(DockerRuntime::connect(docker).await.is_err());
    }
}
