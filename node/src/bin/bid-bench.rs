//! bid-bench: how long a provider takes from an order's bytes to a signed bid's bytes.
//!
//! Measures, per order: strict decode and signature check of the order, placement on 8 hosts
//! (one with GPUs), table pricing, reservation, signing the bid, encoding it. Prints one JSON
//! line: `{"orders":..,"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..,"bids":..}`.
//!
//! Orders are generated from a fixed seed: 4 in 5 are CPU-only web services, 1 in 5 asks for
//! one or two GPUs. The auctions of the last 300 orders stay open (their reservations held; older
//! ones are released as lost, outside the timed section), as on a busy provider; orders that no
//! longer fit get no bid and count in the timing too.
//!
//! Usage: `cargo run --release -p leasemesh-node --bin bid-bench -- [--orders N] [--seed S]`

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{bail, Context};
use leasemesh_node::provider::fixtures::{engine, GIB};
use leasemesh_node::provider::inventory::{GpuConfig, HostConfig};
use leasemesh_node::provider::pricing::Rates;
use leasemesh_protocol::{
    samples, GpuInterface, GpuModelSpec, GpuRequest, Order, Resources, ServiceGroup, Signed,
};
use rand::{Rng, SeedableRng};

const OPEN_RESERVATIONS: usize = 300;

fn hosts() -> Vec<HostConfig> {
    let mut hosts: Vec<HostConfig> = (0..7)
        .map(|i| HostConfig {
            name: format!("cpu-{i}"),
            cpu_millis: 256_000,
            memory_bytes: 1024 * GIB,
            ephemeral_storage_bytes: 20_000 * GIB,
            persistent_storage: [("beta3".to_string(), 50_000 * GIB)].into(),
            detect_gpus: false,
            ..HostConfig::default()
        })
        .collect();
    hosts.push(HostConfig {
        name: "gpu-0".into(),
        cpu_millis: 256_000,
        memory_bytes: 2048 * GIB,
        ephemeral_storage_bytes: 20_000 * GIB,
        persistent_storage: [("beta3".to_string(), 50_000 * GIB)].into(),
        detect_gpus: false,
        gpus: (0..64)
            .map(|i| GpuConfig {
                id: format!("GPU-{i:02}"),
                model: if i < 32 { "a100" } else { "h100" }.into(),
                vram_bytes: 80 * GIB,
                interface: GpuInterface::Sxm,
                ..GpuConfig::default()
            })
            .collect(),
        ..HostConfig::default()
    });
    hosts
}

fn order(rng: &mut rand::rngs::StdRng, nonce: u64, now: u64) -> Order {
    let mut o = samples::order();
    o.nonce = nonce;
    o.created_at_ms = now;
    o.bid_window_ms = 60_000;
    let gpu = rng.gen_ratio(1, 5).then(|| GpuRequest {
        units: rng.gen_range(1..=2),
        vendor: "nvidia".into(),
        models: vec![
            GpuModelSpec { name: "a100".into(), min_vram_bytes: 40 * GIB, interface: None },
            GpuModelSpec { name: "h100".into(), min_vram_bytes: 0, interface: None },
        ],
    });
    o.groups = vec![ServiceGroup {
        name: "web".into(),
        count: rng.gen_range(1..=4),
        resources: Resources {
            cpu_millis: rng.gen_range(1..=8) * 250,
            memory_bytes: rng.gen_range(1..=8) * 512 * (1 << 20),
            ephemeral_storage_bytes: rng.gen_range(1..=10) * GIB,
            persistent_storage: vec![],
            tee: None,
            gpu,
        },
    }];
    o.max_price_per_hour.amount = 10_000_000;
    o
}

fn main() -> anyhow::Result<()> {
    let mut n: usize = 20_000;
    let mut seed: u64 = 42;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--orders" => n = args.next().context("--orders N")?.parse()?,
            "--seed" => seed = args.next().context("--seed S")?.parse()?,
            other => bail!("unknown argument {other}; usage: bid-bench [--orders N] [--seed S]"),
        }
    }
    let mut rates = Rates::default();
    rates.gpu_by_model.insert("a100".into(), 150_000);
    rates.gpu_by_model.insert("h100".into(), 250_000);
    let mut engine = engine(hosts(), rates)?;
    let now = samples::SAMPLE_TIME_MS;
    let tenant = samples::tenant_key();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Encode every order up front: the timed section starts from the bytes a node receives.
    let wire: Vec<Vec<u8>> =
        (0..n as u64).map(|i| Signed::sign(order(&mut rng, i, now), &tenant).encode()).collect();

    let mut open = VecDeque::new();
    let mut micros = Vec::with_capacity(n);
    let mut bids = 0u64;
    let mut out_bytes = 0usize;
    for bytes in &wire {
        let t = Instant::now();
        let decoded = Signed::<Order>::decode_verified(bytes);
        let b = decoded
            .as_ref()
            .ok()
            .and_then(|o| engine.on_order(o, now + 1).ok())
            .map(|b| b.encode());
        let dt = t.elapsed();
        micros.push(dt.as_nanos() as f64 / 1000.0);
        let order_id = decoded.context("a generated order did not decode")?.id();
        if let Some(b) = b {
            bids += 1;
            out_bytes += b.len();
        }
        open.push_back(order_id);
        if open.len() > OPEN_RESERVATIONS {
            if let Some(old) = open.pop_front() {
                engine.inventory.release_reservation(&old);
            }
        }
    }
    micros.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| micros[((micros.len() as f64 * p) as usize).min(micros.len() - 1)];
    println!(
        "{{\"orders\":{n},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"bids\":{bids},\"avg_bid_bytes\":{}}}",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        micros.last().copied().unwrap_or(0.0),
        out_bytes / (bids.max(1) as usize),
    );
    Ok(())
}
