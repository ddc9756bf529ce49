//! The demo SDL turns into one signed order and a manifest the order commits to, with the
//! resources and price a tenant wrote.

use leasemesh_client::deploy::{prepare, DeployOptions};
use leasemesh_protocol::{Keypair, Signed};

#[test]
fn demo_sdl_becomes_a_signed_order_committing_to_the_manifest() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/demo.yaml"))
            .unwrap();
    let key = Keypair::from_seed_label("tenant");
    let opts = DeployOptions { bid_window_ms: 2_000, ..DeployOptions::default() };
    let (orders, manifest) = prepare(&text, &key, &opts, 1_700_000_000_000).unwrap();
    assert_eq!(orders.len(), 1);
    let o = &orders[0];
    // Signed by the tenant and valid on the wire.
    let back = Signed::decode_verified(&o.encode()).unwrap();
    assert_eq!(&back, o);
    assert_eq!(o.body.tenant, key.public());
    assert_eq!(o.body.manifest_hash, manifest.hash());
    assert_eq!(o.body.bid_window_ms, 2_000);
    let g = &o.body.groups[0];
    assert_eq!((g.name.as_str(), g.count), ("web", 1));
    assert_eq!(g.resources.cpu_millis, 250);
    assert_eq!(g.resources.memory_bytes, 64 << 20);
    assert_eq!(g.resources.ephemeral_storage_bytes, 128 << 20);
    // 100 uakt per block, 600 blocks an hour.
    assert_eq!(o.body.max_price_per_hour.denom, "uakt");
    assert_eq!(o.body.max_price_per_hour.amount, 60_000);
    let svc = &manifest.group("dcloud").unwrap().services[0];
    assert_eq!(svc.image, "leasemesh-demo/web:1");
    assert_eq!(svc.expose[0].port, 8080);
}

#[test]
fn a_broken_sdl_is_refused_with_its_key_path() {
    let key = Keypair::from_seed_label("tenant");
    let err =
        prepare("version: \"2.0\"\nservices: 5\n", &key, &DeployOptions::default(), 1).unwrap_err();
    assert!(err.to_string().contains("services"), "{err}");
}
