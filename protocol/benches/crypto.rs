//! Sign, verify, batch verify (64 and 1024 bids), encode and decode of an order and a bid.
//!
//! `cargo bench -p leasemesh-protocol --bench crypto`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leasemesh_protocol::{samples, verify_all, Bid, Order, Signed};

fn bids(n: u64) -> Vec<Signed<Bid>> {
    let key = samples::provider_key();
    (0..n)
        .map(|i| {
            let mut b = samples::bid();
            b.price_per_hour.amount = 1_000 + u128::from(i);
            Signed::sign(b, &key)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let key = samples::provider_key();
    let bid = samples::bid();
    let signed = samples::signed_bid();
    let order = samples::signed_order();

    c.bench_function("sign_bid", |b| b.iter(|| Signed::sign(bid.clone(), &key)));
    c.bench_function("verify_bid", |b| b.iter(|| signed.verify()));

    let mut g = c.benchmark_group("batch_verify");
    for n in [64u64, 1024] {
        let batch = bids(n);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("{n}_bids"), |b| b.iter(|| verify_all(&batch)));
    }
    g.finish();

    let order_bytes = order.encode();
    let bid_bytes = signed.encode();
    c.bench_function("encode_order", |b| b.iter(|| order.encode()));
    c.bench_function("decode_order", |b| b.iter(|| Signed::<Order>::decode(&order_bytes)));
    c.bench_function("encode_bid", |b| b.iter(|| signed.encode()));
    c.bench_function("decode_bid", |b| b.iter(|| Signed::<Bid>::decode(&bid_bytes)));
    c.bench_function("decode_verify_bid", |b| {
        b.iter_batched(
            || bid_bytes.clone(),
            |v| Signed::<Bid>::decode_verified(&v),
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
