//! Fixed sample objects: the inputs of the golden tests, the benches and the fuzz seeds, and a
//! quick way for other crates' tests to get a valid object. Keys come from fixed labels, so the
//! bytes never change unless the format does.

use crate::codec::Signed;
use crate::crypto::{Hash, Keypair};
use crate::manifest::{
    EnvVar, ExposedPort, HttpOptions, Manifest, ManifestGroup, PortProto, ServiceManifest,
};
use crate::types::*;

/// Fixed time for samples: 2026-01-01T00:00:00Z in ms.
pub const SAMPLE_TIME_MS: u64 = 1_767_225_600_000;

const GIB: u64 = 1 << 30;

pub fn tenant_key() -> Keypair {
    Keypair::from_seed_label("sample-tenant")
}

pub fn provider_key() -> Keypair {
    Keypair::from_seed_label("sample-provider")
}

pub fn settler_key() -> Keypair {
    Keypair::from_seed_label("sample-settler")
}

/// A web service with one GPU worker, as an SDL file would produce.
pub fn manifest() -> Manifest {
    Manifest {
        version: v(),
        groups: vec![ManifestGroup {
            name: "dcloud".into(),
            services: vec![
                ServiceManifest {
                    name: "web".into(),
                    image: "nginx:1.27".into(),
                    command: vec![],
                    args: vec![],
                    env: vec![EnvVar { name: "MODE".into(), value: "prod".into() }],
                    expose: vec![ExposedPort {
                        port: 80,
                        external_port: 80,
                        proto: PortProto::Tcp,
                        global: true,
                        hosts: vec![],
                        to_services: vec![],
                        ip_endpoint: None,
                        http_options: None,
                    }],
                    mounts: vec![],
                    count: 2,
                    gpu_units: 0,
                    tee: None,
                },
                ServiceManifest {
                    name: "worker".into(),
                    image: "pytorch/pytorch:2.4".into(),
                    command: vec!["python".into()],
                    args: vec!["train.py".into()],
                    env: vec![],
                    expose: vec![],
                    mounts: vec![],
                    count: 1,
                    gpu_units: 1,
                    tee: None,
                },
            ],
        }],
    }
}

pub fn order() -> Order {
    Order {
        version: v(),
        tenant: tenant_key().public(),
        nonce: 7,
        created_at_ms: SAMPLE_TIME_MS,
        bid_window_ms: 2_000,
        lease_term_ms: 3_600_000,
        grace_period_ms: 30_000,
        groups: vec![
            ServiceGroup {
                name: "web".into(),
                count: 2,
                resources: Resources {
                    cpu_millis: 500,
                    memory_bytes: 512 << 20,
                    ephemeral_storage_bytes: GIB,
                    persistent_storage: vec![],
                    tee: None,
                    gpu: None,
                },
            },
            ServiceGroup {
                name: "worker".into(),
                count: 1,
                resources: Resources {
                    cpu_millis: 4_000,
                    memory_bytes: 16 * GIB,
                    ephemeral_storage_bytes: 50 * GIB,
                    persistent_storage: vec![PersistentVolume {
                        name: "data".into(),
                        class: "beta3".into(),
                        bytes: 100 * GIB,
                    }],
                    tee: None,
                    gpu: Some(GpuRequest {
                        units: 1,
                        vendor: "nvidia".into(),
                        models: vec![
                            GpuModelSpec {
                                name: "a100".into(),
                                min_vram_bytes: 40 * GIB,
                                interface: Some(GpuInterface::Sxm),
                            },
                            GpuModelSpec {
                                name: "h100".into(),
                                min_vram_bytes: 0,
                                interface: None,
                            },
                        ],
                    }),
                },
            },
        ],
        placement: Placement {
            name: "dcloud".into(),
            attributes: vec![Attribute::new("region", "eu-west")],
            min_uptime_bps: 9_500,
        },
        max_price_per_hour: Coin::new("uakt", 600_000),
        tenant_address: "inj1tenant0000000000000000000000000000000".into(),
        manifest_hash: manifest().hash(),
    }
}

pub fn signed_order() -> Signed<Order> {
    Signed::sign(order(), &tenant_key())
}

/// The sample manifest with version-2 content: `worker` runs in a cpu-gpu TEE and `web`'s port
/// has HTTP options.
pub fn extended_manifest() -> Manifest {
    let mut m = manifest();
    for s in m.groups.iter_mut().flat_map(|g| g.services.iter_mut()) {
        if s.name == "worker" {
            s.tee = Some(TeeKind::CpuGpu);
        }
        for p in &mut s.expose {
            p.http_options = Some(HttpOptions {
                max_body_size: 4 << 20,
                proxy_buffer_size: 0,
                read_timeout_ms: 30_000,
                send_timeout_ms: 60_000,
                next_tries: 3,
                next_timeout_ms: 0,
                next_cases: vec!["error".into(), "timeout".into()],
            });
        }
    }
    m.version = m.wire_version();
    m
}

/// A version-2 order: the sample order whose GPU group asks for a cpu-gpu TEE.
pub fn tee_order() -> Order {
    let mut o = order();
    for g in &mut o.groups {
        if g.resources.gpu.is_some() {
            g.resources.tee = Some(TeeKind::CpuGpu);
        }
    }
    o.manifest_hash = extended_manifest().hash();
    o.version = o.wire_version();
    o
}

/// A version-2 provider info: the sample's host offers both TEE kinds.
pub fn tee_provider_info() -> ProviderInfo {
    let mut p = provider_info();
    for h in &mut p.hosts {
        h.tee = vec![TeeKind::Cpu, TeeKind::CpuGpu];
    }
    p.version = p.wire_version();
    p
}

pub fn bid() -> Bid {
    Bid {
        version: v(),
        order_id: signed_order().id(),
        provider: provider_key().public(),
        price_per_hour: Coin::new("uakt", 450_000),
        created_at_ms: SAMPLE_TIME_MS + 3,
        expires_at_ms: SAMPLE_TIME_MS + 60_000,
    }
}

pub fn signed_bid() -> Signed<Bid> {
    Signed::sign(bid(), &provider_key())
}

fn gpu(id: &str) -> Gpu {
    Gpu {
        id: id.into(),
        vendor: "nvidia".into(),
        model: "a100".into(),
        vram_bytes: 80 * GIB,
        interface: GpuInterface::Sxm,
    }
}

pub fn provider_info() -> ProviderInfo {
    let total = Capacity {
        cpu_millis: 64_000,
        memory_bytes: 512 * GIB,
        ephemeral_storage_bytes: 2_000 * GIB,
        persistent_storage: vec![StorageClassCapacity {
            class: "beta3".into(),
            bytes: 4_000 * GIB,
        }],
        gpus: vec![gpu("0"), gpu("1")],
    };
    let mut free = total.clone();
    free.cpu_millis = 60_000;
    free.gpus.truncate(1);
    ProviderInfo {
        version: v(),
        provider: provider_key().public(),
        sequence: 3,
        created_at_ms: SAMPLE_TIME_MS,
        attributes: vec![Attribute::new("region", "eu-west"), Attribute::new("tier", "premium")],
        hosts: vec![Host { name: "gpu-1".into(), total, free, tee: vec![] }],
        api_endpoint: "https://provider.example:8443".into(),
        chain_address: "inj1provider00000000000000000000000000000".into(),
        encryption_key: *Hash::domain("sample-x25519", &[]).as_bytes(),
    }
}

pub fn signed_provider_info() -> Signed<ProviderInfo> {
    Signed::sign(provider_info(), &provider_key())
}

pub fn heartbeat() -> Heartbeat {
    Heartbeat {
        version: v(),
        provider: provider_key().public(),
        sequence: 42,
        at_ms: SAMPLE_TIME_MS + 5_000,
        info_sequence: 3,
    }
}

pub fn award() -> Award {
    let bid = signed_bid();
    Award {
        order_id: bid.body.order_id,
        bid_id: bid.id(),
        provider: bid.body.provider,
        price_per_hour: bid.body.price_per_hour.clone(),
        assignments: vec![
            Assignment {
                group: 0,
                host: "gpu-1".into(),
                replicas: 2,
                gpu_model: None,
                gpus_per_replica: 0,
            },
            Assignment {
                group: 1,
                host: "gpu-1".into(),
                replicas: 1,
                gpu_model: Some("a100".into()),
                gpus_per_replica: 1,
            },
        ],
    }
}

pub fn match_batch() -> MatchBatch {
    let a = award();
    MatchBatch {
        version: v(),
        epoch: 883_000,
        settler: settler_key().public(),
        prev_batch: Hash::ZERO,
        created_at_ms: SAMPLE_TIME_MS + 2_500,
        order_ids: vec![a.order_id],
        bid_ids: vec![a.bid_id],
        provider_info_ids: vec![signed_provider_info().id()],
        awards: vec![a],
        outcome_digest: Hash::domain("sample-outcome", &[]),
    }
}

pub fn lease_event() -> LeaseEvent {
    let a = award();
    LeaseEvent {
        version: v(),
        lease_id: a.lease_id(),
        order_id: a.order_id,
        at_ms: SAMPLE_TIME_MS + 9_000,
        kind: LeaseEventKind::Running { endpoints: vec!["http://127.0.0.1:32768".into()] },
    }
}

pub fn settlement_batch() -> SettlementBatch {
    let a = award();
    let o = order();
    let info = provider_info();
    let mut records = vec![
        SettlementRecord::LeaseOpened {
            lease_id: a.lease_id(),
            order_id: a.order_id,
            tenant_address: o.tenant_address.clone(),
            provider_address: info.chain_address.clone(),
            price_per_hour: a.price_per_hour.clone(),
            started_at_ms: SAMPLE_TIME_MS + 9_000,
        },
        SettlementRecord::Accrual {
            lease_id: a.lease_id(),
            tenant_address: o.tenant_address.clone(),
            provider_address: info.chain_address.clone(),
            denom: "uakt".into(),
            amount: 225_000,
            from_ms: SAMPLE_TIME_MS + 9_000,
            to_ms: SAMPLE_TIME_MS + 9_000 + 1_800_000,
        },
        SettlementRecord::Payment {
            tenant_address: o.tenant_address,
            provider_address: info.chain_address,
            denom: "uakt".into(),
            amount: 225_000,
        },
    ];
    records.sort();
    SettlementBatch {
        version: v(),
        settler: settler_key().public(),
        sequence: 1,
        prev_batch: Hash::ZERO,
        created_at_ms: SAMPLE_TIME_MS + 1_900_000,
        merkle_root: crate::merkle::root(&records),
        records,
    }
}

pub fn spend_grant() -> SpendGrant {
    SpendGrant {
        version: v(),
        tenant_address: tenant_key().public().to_hex(),
        settler_address: settler_key().public().to_hex(),
        denom: "uakt".into(),
        limit: 50_000_000,
        created_at_ms: SAMPLE_TIME_MS,
    }
}
