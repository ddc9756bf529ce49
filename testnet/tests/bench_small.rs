//! A small run of `leasemesh-testnet bench`: 4 node processes (2 providers on the none
//! runtime), a few seconds of orders, settlement on a fresh injectived devnet, and the
//! Akash-style baseline on the same devnet. Checks the JSON line and the report files.
//!
//! Needs `injectived` (scripts/install-chain.sh), like the other devnet tests.

use std::process::Command;

use serde_json::Value;

#[test]
fn small_bench_with_the_akash_baseline() {
    let report = tempfile::tempdir().unwrap();
    // The test binaries are debug builds on a shared machine: a long bid window keeps every
    // order's bids inside its auction.
    let out = Command::new(env!("CARGO_BIN_EXE_leasemesh-testnet"))
        // Without CARGO the bench uses the leasemesh-node built beside it instead of running
        // cargo build (which would wait for the build lock inside the test).
        .env_remove("CARGO")
        .args([
            "bench",
            "--nodes",
            "4",
            "--providers",
            "2",
            "--tenants",
            "1",
            "--orders-per-s",
            "2",
            "--duration-s",
            "3",
            "--bid-window-ms",
            "3000",
            "--epoch-ms",
            "250",
            "--lease-term-ms",
            "1000",
            "--chain",
            "injective",
            "--baseline",
            "akash",
            "--baseline-lanes",
            "2",
            "--report",
        ])
        .arg(report.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
    for field in [
        "nodes",
        "orders",
        "p50_order_to_award_ms",
        "p99_order_to_award_ms",
        "akash_p50_order_to_lease_ms",
        "speedup_p50",
        "txs_per_lease",
        "akash_txs_per_lease",
        "gas_per_lease",
        "akash_gas_per_lease",
        "coverage_p99_ms",
        "rss_mb_max",
    ] {
        assert!(v.get(field).is_some_and(|f| !f.is_null()), "{field} missing in {line}");
    }
    assert_eq!(v["nodes"], 4);
    let orders = v["orders"].as_u64().unwrap();
    assert!(orders > 0, "{line}");
    assert_eq!(v["awarded"].as_u64().unwrap(), orders, "every order awarded: {line}");
    assert!(v["akash_leases"].as_u64().unwrap() >= 2, "a lease per baseline lane: {line}");
    // Per baseline lease: the order, one bid per provider, the lease, the withdrawal.
    assert_eq!(v["akash_txs_per_lease"].as_f64().unwrap(), 5.0, "{line}");
    assert!(v["settle_txs"].as_u64().unwrap() > 0, "the leases were settled on chain: {line}");
    assert!(v["rss_mb_max"].as_f64().unwrap() > 1.0);
    for f in ["report.md", "latency_cdf.svg", "coverage.svg", "rss.svg", "bench.json"] {
        let p = report.path().join(f);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!text.is_empty(), "{f} is empty");
    }
    let md = std::fs::read_to_string(report.path().join("report.md")).unwrap();
    assert!(md.contains("runtime: **none**") || md.contains("Container runtime: **none**"));
    assert!(md.contains("Akash-style baseline"));
}
