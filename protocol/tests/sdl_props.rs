//! Property tests: SDL text generated from random specs converts to orders whose resources and
//! prices are exactly what the text asked; random input never panics.

use proptest::prelude::*;

use leasemesh_protocol::sdl::{self, OrderParams, IMPLICIT_EPHEMERAL_BYTES};
use leasemesh_protocol::{GpuInterface, Keypair};

#[derive(Debug, Clone)]
enum VolSpec {
    Ephemeral(u64),
    Persistent(u64, &'static str),
    Ram(u64),
}

#[derive(Debug, Clone)]
struct GpuSpec {
    units: u32,
    /// (name, vram GiB or 0, interface)
    models: Vec<(String, u64, Option<GpuInterface>)>,
}

#[derive(Debug, Clone)]
struct ServiceSpec {
    cpu_millis: u64,
    cpu_text: String,
    memory_bytes: u64,
    memory_text: String,
    volumes: Vec<VolSpec>,
    gpu: Option<GpuSpec>,
    count: u32,
    /// Price per block as mantissa / 10^scale.
    mantissa: u64,
    scale: u32,
}

#[derive(Debug, Clone)]
struct PlacementSpec {
    denom: &'static str,
    services: Vec<ServiceSpec>,
}

fn cpu() -> impl Strategy<Value = (u64, String)> {
    (1u64..=64_000, 0u8..3).prop_map(|(m, form)| {
        let text = match form {
            0 => format!("{m}m"),
            1 if m % 1000 == 0 => format!("{}", m / 1000),
            _ => {
                let frac = format!("{:03}", m % 1000);
                format!("{}.{}", m / 1000, frac.trim_end_matches('0'))
                    .trim_end_matches('.')
                    .to_string()
            }
        };
        (m, text)
    })
}

fn size() -> impl Strategy<Value = (u64, String)> {
    let units = prop_oneof![
        Just(("Ki", 1u64 << 10)),
        Just(("Mi", 1 << 20)),
        Just(("Gi", 1 << 30)),
        Just(("M", 1_000_000)),
        Just(("G", 1_000_000_000)),
        Just(("", 1)),
    ];
    (1u64..=2048, units).prop_map(|(v, (u, f))| (v * f, format!("{v}{u}")))
}

fn volume() -> impl Strategy<Value = VolSpec> {
    prop_oneof![
        (1u64..=500).prop_map(|g| VolSpec::Ephemeral(g << 30)),
        (1u64..=500, prop_oneof![Just("beta1"), Just("beta2"), Just("beta3")])
            .prop_map(|(g, c)| VolSpec::Persistent(g << 30, c)),
        (1u64..=64).prop_map(|g| VolSpec::Ram(g << 30)),
    ]
}

fn gpu() -> impl Strategy<Value = GpuSpec> {
    let model = (
        prop_oneof![Just("a100"), Just("h100"), Just("rtx4090"), Just("t4"), Just("l40s")],
        prop_oneof![Just(0u64), Just(24), Just(80)],
        prop_oneof![Just(None), Just(Some(GpuInterface::Pcie)), Just(Some(GpuInterface::Sxm))],
    );
    (1u32..=8, proptest::collection::vec(model, 0..4)).prop_map(|(units, ms)| {
        let mut models: Vec<(String, u64, Option<GpuInterface>)> = Vec::new();
        for (n, r, i) in ms {
            if models.iter().all(|(m, _, _)| m != n) {
                models.push((n.to_string(), r, i));
            }
        }
        GpuSpec { units, models }
    })
}

fn service() -> impl Strategy<Value = ServiceSpec> {
    (
        cpu(),
        size(),
        proptest::collection::vec(volume(), 1..4),
        proptest::option::of(gpu()),
        1u32..=20,
        1u64..=1_000_000_000,
        0u32..=3,
    )
        .prop_map(
            |(
                (cpu_millis, cpu_text),
                (memory_bytes, memory_text),
                volumes,
                gpu,
                count,
                mantissa,
                scale,
            )| {
                ServiceSpec {
                    cpu_millis,
                    cpu_text,
                    memory_bytes,
                    memory_text,
                    volumes,
                    gpu,
                    count,
                    mantissa,
                    scale,
                }
            },
        )
}

fn placements() -> impl Strategy<Value = Vec<PlacementSpec>> {
    let placement = (
        prop_oneof![
            Just("uakt"),
            Just("uact"),
            Just("ibc/170C677610AC31DF0904FFE09CD3B5C657492170E7E52372E48756B71E56F2AC")
        ],
        proptest::collection::vec(service(), 1..4),
    )
        .prop_map(|(denom, services)| PlacementSpec { denom, services });
    proptest::collection::vec(placement, 1..4)
}

fn render(spec: &[PlacementSpec]) -> String {
    let mut services = String::from("version: \"2.0\"\nservices:\n");
    let mut compute = String::from("profiles:\n  compute:\n");
    let mut placement = String::from("  placement:\n");
    let mut deployment = String::from("deployment:\n");
    for (pi, p) in spec.iter().enumerate() {
        placement +=
            &format!("    place{pi}:\n      attributes:\n        region: r{pi}\n      pricing:\n");
        for (si, s) in p.services.iter().enumerate() {
            let name = format!("svc{pi}x{si}");
            services += &format!("  {name}:\n    image: example/{name}:1\n    expose:\n      - port: 80\n        to:\n          - global: true\n");
            let mounts: Vec<String> = s
                .volumes
                .iter()
                .enumerate()
                .filter(|(_, v)| !matches!(v, VolSpec::Ephemeral(_)))
                .map(|(vi, _)| format!("        v{vi}:\n          mount: /mnt/v{vi}\n"))
                .collect();
            if !mounts.is_empty() {
                services += &format!("    params:\n      storage:\n{}", mounts.concat());
            }
            compute += &format!(
                "    {name}:\n      resources:\n        cpu:\n          units: {}\n        memory:\n          size: {}\n        storage:\n",
                s.cpu_text, s.memory_text
            );
            for (vi, v) in s.volumes.iter().enumerate() {
                match v {
                    VolSpec::Ephemeral(b) => compute += &format!("          - name: v{vi}\n            size: {b}\n"),
                    VolSpec::Persistent(b, c) => {
                        compute += &format!("          - name: v{vi}\n            size: {b}\n            attributes:\n              persistent: true\n              class: {c}\n")
                    }
                    VolSpec::Ram(b) => {
                        compute += &format!("          - name: v{vi}\n            size: {b}\n            attributes:\n              class: ram\n")
                    }
                }
            }
            if let Some(g) = &s.gpu {
                compute += &format!("        gpu:\n          units: {}\n          attributes:\n            vendor:\n              nvidia:\n", g.units);
                for (m, r, i) in &g.models {
                    compute += &format!("                - model: {m}\n");
                    if *r > 0 {
                        compute += &format!("                  ram: {r}Gi\n");
                    }
                    match i {
                        Some(GpuInterface::Pcie) => {
                            compute += "                  interface: pcie\n"
                        }
                        Some(GpuInterface::Sxm) => compute += "                  interface: sxm\n",
                        None => {}
                    }
                }
            }
            let amount = if s.scale == 0 {
                s.mantissa.to_string()
            } else {
                let d = 10u64.pow(s.scale);
                format!("{}.{:0width$}", s.mantissa / d, s.mantissa % d, width = s.scale as usize)
            };
            placement += &format!(
                "        {name}:\n          denom: {}\n          amount: {amount}\n",
                p.denom
            );
            deployment += &format!(
                "  {name}:\n    place{pi}:\n      profile: {name}\n      count: {}\n",
                s.count
            );
        }
    }
    format!("{services}{compute}{placement}{deployment}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5d1), ..ProptestConfig::default() })]

    #[test]
    fn orders_ask_for_exactly_what_the_sdl_says(spec in placements()) {
        let text = render(&spec);
        let parsed = sdl::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let params = OrderParams::new(Keypair::from_seed_label("props").public(), "akash1tenant");
        // Expected price per order: Σ count × mantissa × 10^(3 - scale) milli-units per block,
        // × 600 blocks per hour, ÷ 1000, rounded down.
        let prices: Vec<u128> = spec
            .iter()
            .map(|p| {
                let milli: u128 = p.services.iter().map(|s| {
                    u128::from(s.count) * u128::from(s.mantissa) * 10u128.pow(3 - s.scale)
                }).sum();
                milli * 600 / 1000
            })
            .collect();
        let result = sdl::to_orders(&parsed, &params);
        if prices.contains(&0) {
            let e = result.err().ok_or_else(|| TestCaseError::fail("a zero price must be refused"))?;
            prop_assert_eq!(e.kind(), "bad_value");
            return Ok(());
        }
        let d = result.map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(d.orders.len(), spec.len());
        for (pi, (p, order)) in spec.iter().zip(&d.orders).enumerate() {
            prop_assert_eq!(&order.placement.name, &format!("place{pi}"));
            prop_assert_eq!(&order.max_price_per_hour.denom, p.denom);
            prop_assert_eq!(order.max_price_per_hour.amount, prices[pi]);
            prop_assert_eq!(order.manifest_hash, d.manifest.hash());
            prop_assert_eq!(order.groups.len(), p.services.len());
            for (si, s) in p.services.iter().enumerate() {
                let name = format!("svc{pi}x{si}");
                let g = order.groups.iter().find(|g| g.name == name).ok_or_else(|| TestCaseError::fail("group missing"))?;
                let r = &g.resources;
                prop_assert_eq!(g.count, s.count);
                prop_assert_eq!(r.cpu_millis, s.cpu_millis);
                let ram: u64 = s.volumes.iter().map(|v| if let VolSpec::Ram(b) = v { *b } else { 0 }).sum();
                prop_assert_eq!(r.memory_bytes, s.memory_bytes + ram);
                let eph: u64 = s.volumes.iter().map(|v| if let VolSpec::Ephemeral(b) = v { *b } else { 0 }).sum();
                prop_assert_eq!(r.ephemeral_storage_bytes, if eph == 0 { IMPLICIT_EPHEMERAL_BYTES } else { eph });
                let persistent: Vec<(String, String, u64)> = s.volumes.iter().enumerate().filter_map(|(vi, v)| match v {
                    VolSpec::Persistent(b, c) => Some((format!("v{vi}"), c.to_string(), *b)),
                    _ => None,
                }).collect();
                let got: Vec<(String, String, u64)> = r.persistent_storage.iter().map(|v| (v.name.clone(), v.class.clone(), v.bytes)).collect();
                prop_assert_eq!(got, persistent);
                match (&s.gpu, &r.gpu) {
                    (None, None) => {}
                    (Some(want), Some(got)) => {
                        prop_assert_eq!(got.units, want.units);
                        prop_assert_eq!(&got.vendor, "nvidia");
                        let mut models: Vec<(String, u64, Option<GpuInterface>)> =
                            want.models.iter().map(|(m, r, i)| (m.clone(), r << 30, *i)).collect();
                        models.sort();
                        let got_models: Vec<(String, u64, Option<GpuInterface>)> =
                            got.models.iter().map(|m| (m.name.clone(), m.min_vram_bytes, m.interface)).collect();
                        prop_assert_eq!(got_models, models);
                    }
                    (w, g) => prop_assert!(false, "gpu mismatch: want {:?}, got {:?}", w, g),
                }
                let svc = d.manifest.group(&order.placement.name).and_then(|grp| grp.services.iter().find(|x| x.name == name))
                    .ok_or_else(|| TestCaseError::fail("service missing from the manifest"))?;
                prop_assert_eq!(svc.count, s.count);
                prop_assert_eq!(svc.gpu_units, s.gpu.as_ref().map_or(0, |g| g.units));
                prop_assert_eq!(svc.mounts.len(), s.volumes.iter().filter(|v| !matches!(v, VolSpec::Ephemeral(_))).count());
            }
            prop_assert_eq!(order.gpus(), p.services.iter().map(|s| u64::from(s.count) * u64::from(s.gpu.as_ref().map_or(0, |g| g.units))).sum::<u64>());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(s) = sdl::parse(&text) {
            let _ = sdl::to_orders(&s, &OrderParams::new(Keypair::from_seed_label("x").public(), "a"));
        }
    }

    #[test]
    fn yaml_like_noise_never_panics(text in "[a-z0-9 :\\-\\[\\]{},&*!|>'\"#\n.]{0,300}") {
        if let Ok(s) = sdl::parse(&text) {
            let _ = sdl::to_orders(&s, &OrderParams::new(Keypair::from_seed_label("x").public(), "a"));
        }
    }
}
