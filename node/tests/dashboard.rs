//! packaging/grafana-dashboard.json is a Grafana dashboard whose every query names only
//! metrics a node exports: the node's own, the provider role's and the settler role's, read
//! from the registries `/metrics` encodes (a renamed metric breaks this test, not a dashboard in
//! production).

use std::collections::BTreeSet;

use leasemesh_node::metrics::Metrics;
use leasemesh_node::provider::ProviderMetrics;
use leasemesh_node::settler::SettlerMetrics;
use serde_json::Value;

/// Every sample name `/metrics` can carry: from the `# TYPE` lines, with `_total` on counters
/// and `_bucket`/`_sum`/`_count` on histograms.
fn exported() -> BTreeSet<String> {
    let mut m = Metrics::new();
    ProviderMetrics::default().register(&mut m.registry);
    SettlerMetrics::default().register(&mut m.registry);
    let mut names = BTreeSet::new();
    for line in m.encode().lines() {
        let mut w = line.split_whitespace();
        if (w.next(), w.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(name), Some(kind)) = (w.next(), w.next()) else { continue };
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The `leasemesh_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("leasemesh_") {
        let tail = &rest[i..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_parses_and_uses_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/grafana-dashboard.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(d["title"].is_string() && d["uid"].is_string() && d["schemaVersion"].is_u64());
    let exported = exported();
    assert!(exported.contains("leasemesh_peers_connected"), "{exported:?}");
    let panels = d["panels"].as_array().unwrap();
    let mut titles = Vec::new();
    let mut used = BTreeSet::new();
    for p in panels {
        titles.push(p["title"].as_str().unwrap().to_lowercase());
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} names no leasemesh metric");
            for n in names {
                assert!(exported.contains(&n), "{n} (in {expr}) is not exported: {exported:?}");
                used.insert(n);
            }
        }
    }
    for want in ["peers", "ingest", "reject", "bid", "epoch", "settlement lag", "chain error"] {
        assert!(titles.iter().any(|t| t.contains(want)), "no {want} panel in {titles:?}");
    }
    // The instance variable's query names an exported metric too.
    let var = d.pointer("/templating/list/1/definition").and_then(Value::as_str).unwrap();
    assert!(metric_names(var).iter().all(|n| exported.contains(n)), "{var}");
    assert!(used.len() >= 15, "the dashboard covers few metrics: {used:?}");
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names("sum by (t) (rate(leasemesh_a_total{x=\"y\"}[5m])) / leasemesh_b"),
        vec!["leasemesh_a_total", "leasemesh_b"]
    );
}
