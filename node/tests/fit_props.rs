//! One fit rule for the provider and the matcher (issue #12): for random hosts, capacity
//! already promised to other orders, and a random order, the provider plans (and so bids)
//! exactly when the matcher finds its bid feasible on the capacity the provider advertises;
//! and when the matcher awards it, the provider can reserve its plan and honour the award.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use leasemesh_matcher::{match_epoch, EpochInput};
use leasemesh_node::provider::inventory::{
    provider_info, DetectedGpu, GpuConfig, GpuProbe, HostConfig, Inventory, ProbeError,
    ProviderIdentity, ReservedConfig,
};
use leasemesh_protocol::{
    samples, Bid, Coin, GpuInterface, GpuModelSpec, GpuRequest, Keypair, Order, PersistentVolume,
    Resources, ServiceGroup, Signed,
};
use proptest::prelude::*;

const GIB: u64 = 1 << 30;
const NOW_MS: u64 = 1_700_000_000_000;

/// No NVML in these tests: every GPU comes from the config.
struct NoNvml;
impl GpuProbe for NoNvml {
    fn probe(&self) -> Result<Vec<DetectedGpu>, ProbeError> {
        Err(ProbeError::LibraryMissing("not in tests".into()))
    }
}

const MODELS: [&str; 3] = ["a100", "h100", "v100"];
const CLASSES: [&str; 2] = ["beta2", "beta3"];

fn interface() -> impl Strategy<Value = GpuInterface> {
    prop_oneof![Just(GpuInterface::Pcie), Just(GpuInterface::Sxm)]
}

fn gpu(host: usize, i: usize) -> impl Strategy<Value = GpuConfig> {
    (0..MODELS.len(), prop_oneof![Just(40 * GIB), Just(80 * GIB)], interface()).prop_map(
        move |(m, vram_bytes, interface)| GpuConfig {
            id: format!("GPU-{host}-{i:02}"),
            vendor: "nvidia".into(),
            model: MODELS[m].into(),
            vram_bytes,
            interface,
        },
    )
}

fn host(i: usize) -> impl Strategy<Value = HostConfig> {
    let gpus = (0usize..6).prop_flat_map(move |n| (0..n).map(|g| gpu(i, g)).collect::<Vec<_>>());
    (1u64..=8, 1u64..=8, 0u64..=2, 0u64..=4, 0u64..=4, gpus).prop_map(
        move |(cpu, mem, reserved_cpu, beta2, beta3, gpus)| HostConfig {
            // Names out of order on purpose: both sides must sort them.
            name: format!("host-{}", (i * 7) % 10),
            cpu_millis: cpu * 1000,
            memory_bytes: mem * GIB,
            ephemeral_storage_bytes: 16 * GIB,
            persistent_storage: [
                (CLASSES[0].to_string(), beta2 * GIB),
                (CLASSES[1].into(), beta3 * GIB),
            ]
            .into_iter()
            .filter(|(_, b)| *b > 0)
            .collect(),
            system_reserved: ReservedConfig {
                cpu_millis: reserved_cpu * 500,
                ..ReservedConfig::default()
            },
            gpus,
            detect_gpus: false,
            tee: Vec::new(),
        },
    )
}

fn hosts() -> impl Strategy<Value = Vec<HostConfig>> {
    (1usize..=4).prop_flat_map(|n| (0..n).map(host).collect::<Vec<_>>())
}

fn gpu_request() -> impl Strategy<Value = GpuRequest> {
    let spec = (
        0..MODELS.len(),
        prop_oneof![Just(0), Just(40 * GIB), Just(80 * GIB)],
        proptest::option::of(interface()),
    )
        .prop_map(|(m, min_vram_bytes, interface)| GpuModelSpec {
            name: MODELS[m].into(),
            min_vram_bytes,
            interface,
        });
    let vendor = prop_oneof![9 => Just("nvidia"), 1 => Just("amd")];
    (1u32..=3, vendor, proptest::collection::vec(spec, 0..3)).prop_map(
        |(units, vendor, mut models)| {
            models.sort_by(|a, b| a.name.cmp(&b.name));
            models.dedup_by(|a, b| a.name == b.name);
            GpuRequest { units, vendor: vendor.into(), models }
        },
    )
}

fn group(i: usize) -> impl Strategy<Value = ServiceGroup> {
    let volume = (0..CLASSES.len(), 1u64..=2).prop_map(|(c, gib)| PersistentVolume {
        name: "data".into(),
        class: CLASSES[c].into(),
        bytes: gib * GIB,
    });
    (
        1u32..=4,
        1u64..=8,
        1u64..=4,
        proptest::option::weighted(0.3, volume),
        proptest::option::weighted(0.4, gpu_request()),
    )
        .prop_map(move |(count, cpu, mem, volume, gpu)| ServiceGroup {
            name: format!("svc{i}"),
            count,
            resources: Resources {
                cpu_millis: cpu * 500,
                memory_bytes: mem * GIB / 2,
                ephemeral_storage_bytes: GIB,
                persistent_storage: volume.into_iter().collect(),
                tee: None,
                gpu,
            },
        })
}

fn order() -> impl Strategy<Value = Order> {
    (1usize..=3, any::<u64>()).prop_flat_map(|(n, nonce)| {
        (0..n).map(group).collect::<Vec<_>>().prop_map(move |groups| {
            let mut o = samples::order();
            o.nonce = nonce;
            o.created_at_ms = NOW_MS;
            o.groups = groups;
            o.placement.attributes.clear();
            o.placement.min_uptime_bps = 0;
            o
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_provider_bids_exactly_when_the_matcher_finds_the_bid_feasible(
        hosts in hosts(),
        earlier in proptest::collection::vec(order(), 0..3),
        order in order(),
    ) {
        let (mut inventory, _) = Inventory::from_config(&hosts, &NoNvml).expect("distinct hosts");
        let tenant = Keypair::from_seed_label("fit-props tenant");
        // Capacity already promised to open bids: what the advertised info leaves out.
        for o in &earlier {
            let o = Signed::sign(o.clone(), &tenant);
            if let Some(plan) = inventory.plan(&o.body) {
                inventory.reserve(o.id(), &o.body, &plan, u64::MAX).expect("planned, so it fits");
            }
        }
        let key = Keypair::from_seed_label("fit-props provider");
        let identity = ProviderIdentity {
            key: key.clone(),
            encryption_key: [7; 32],
            attributes: Vec::new(),
            api_endpoint: "http://127.0.0.1:1".into(),
            chain_address: "provider".into(),
        };
        let info = provider_info(&identity, &inventory, 1, NOW_MS);
        let order = Signed::sign(order, &tenant);
        let plan = inventory.plan(&order.body);

        let bid = Bid {
            version: leasemesh_protocol::v(),
            order_id: order.id(),
            provider: key.public(),
            price_per_hour: Coin::new(order.body.max_price_per_hour.denom.clone(), 1),
            created_at_ms: NOW_MS,
            expires_at_ms: NOW_MS + 60_000,
        };
        let bid = Signed::sign(bid, &key);
        let input = EpochInput::from_signed(
            std::slice::from_ref(&order),
            &[bid],
            &[info],
            BTreeMap::new(),
        );
        let outcome = match_epoch(&input);
        let award = outcome.awards.first();
        prop_assert_eq!(plan.is_some(), award.is_some(), "plan {:?}, award {:?}", plan, award);
        if let (Some(plan), Some(award)) = (plan, award) {
            prop_assert_eq!(plan.assignments(), award.assignments.clone());
            let mut reserved = inventory.clone();
            prop_assert!(reserved.reserve(order.id(), &order.body, &plan, u64::MAX).is_ok());
            let alloc = reserved.allocate(award.lease_id(), order.id(), &order.body, &award.assignments);
            prop_assert!(alloc.is_ok(), "the award cannot be honoured: {:?}", alloc);
            // Honouring it straight from the advertised capacity works too (no reservation).
            let direct = inventory.allocate(award.lease_id(), order.id(), &order.body, &award.assignments);
            prop_assert!(direct.is_ok(), "the award cannot be honoured: {:?}", direct);
        }
    }
}
