//! The same market matched in a separate process (the bench binary) gives the same digest as
//! in this process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use leasemesh_matcher::market::{generate, MarketParams};
use leasemesh_matcher::match_epoch;

fn digest_from_bench(orders: u32, bids: u32, providers: u32, seed: u64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_matcher-bench"))
        .args(["--orders", &orders.to_string(), "--bids-per-order", &bids.to_string()])
        .args(["--providers", &providers.to_string(), "--seed", &seed.to_string(), "--runs", "2"])
        .output()
        .expect("run matcher-bench");
    assert!(out.status.success(), "matcher-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.lines().count(), 1, "one JSON line: {line}");
    let start = line.find("\"digest\":\"").expect("a digest field") + 10;
    line[start..start + 64].to_string()
}

#[test]
fn a_separate_process_computes_the_same_digest() {
    for (orders, bids, providers, seed) in [(400, 5, 30, 42), (50, 3, 4, 7)] {
        let input = generate(&MarketParams::bench(orders, bids, providers), seed);
        let here = match_epoch(&input);
        assert!(!here.awards.is_empty() && !here.unmatched.is_empty(), "a market with contention");
        assert_eq!(digest_from_bench(orders, bids, providers, seed), here.digest.to_hex());
    }
    // A different seed is a different market.
    assert_ne!(digest_from_bench(50, 3, 4, 8), digest_from_bench(50, 3, 4, 7));
}
