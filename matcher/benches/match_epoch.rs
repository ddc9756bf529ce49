//! Criterion bench of `match_epoch` on a small reproducible market (kept quick for CI).

use criterion::{criterion_group, criterion_main, Criterion};
use leasemesh_matcher::market::{generate, MarketParams};
use leasemesh_matcher::match_epoch;

fn bench(c: &mut Criterion) {
    let input = generate(&MarketParams::bench(2_000, 10, 50), 7);
    let mut group = c.benchmark_group("match_epoch");
    group.sample_size(10);
    group.bench_function("2k_orders_x10_bids_50_providers", |b| b.iter(|| match_epoch(&input)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
