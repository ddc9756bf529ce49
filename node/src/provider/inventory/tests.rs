use super::config::GIB;
use super::*;
use leasemesh_protocol::{samples, GpuInterface, GpuModelSpec, GpuRequest, ServiceGroup};

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
            tee: None,
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
    let (inv, _) =
        Inventory::from_config(&[host("a", 3_000, 8), host("b", 3_000, 8)], &FakeNvml(Ok(vec![])))
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
    let any = |name: &str| GpuModelSpec { name: name.into(), min_vram_bytes: 0, interface: None };
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
    let (mut inv, _) =
        Inventory::from_config(&[host("a", 4_000, 8), host("b", 4_000, 8)], &FakeNvml(Ok(vec![])))
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
    let (inv, _) = Inventory::from_config(&[host("a", 4_000, 8)], &FakeNvml(Ok(vec![]))).unwrap();
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
