//! Golden tests: the wire bytes and ids of fixed sample objects, compared with checked-in hex.
//! A failure here means the wire format changed: that breaks every deployed node. If the change
//! is intended, regenerate with `LEASEMESH_UPDATE_GOLDEN=1 cargo test -p leasemesh-protocol
//! --test golden` and say why in the commit.

// Test helpers outside #[test] functions unwrap too: a failure here is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use leasemesh_protocol::{samples, Signable, Signed};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `name.hex` (wire bytes) and `name.id` (id) with the sample, or writes them.
fn check<T: Signable + std::fmt::Debug + PartialEq>(name: &str, signed: Signed<T>) {
    let bytes = hex::encode(signed.encode());
    let id = signed.id().to_hex();
    let hex_path = golden_dir().join(format!("{name}.hex"));
    let id_path = golden_dir().join(format!("{name}.id"));
    if std::env::var_os("LEASEMESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&hex_path, format!("{bytes}\n")).unwrap();
        std::fs::write(&id_path, format!("{id}\n")).unwrap();
        return;
    }
    let want_bytes = std::fs::read_to_string(&hex_path).unwrap();
    let want_id = std::fs::read_to_string(&id_path).unwrap();
    assert_eq!(bytes, want_bytes.trim(), "{name}: wire bytes changed");
    assert_eq!(id, want_id.trim(), "{name}: id changed");
    // And the checked-in bytes decode, verify and give back the same object.
    let raw = hex::decode(want_bytes.trim()).unwrap();
    let decoded = Signed::<T>::decode_verified(&raw).unwrap();
    assert_eq!(decoded, signed);
}

#[test]
fn order() {
    check("order", samples::signed_order());
}

/// Version 2 (a TEE): the version-1 bytes with version 2, then the extension.
#[test]
fn order_tee() {
    check("order_tee", Signed::sign(samples::tee_order(), &samples::tenant_key()));
}

#[test]
fn provider_info_tee() {
    check(
        "provider_info_tee",
        Signed::sign(samples::tee_provider_info(), &samples::provider_key()),
    );
}

/// A version-2 manifest: its bytes, and that they decode to the same manifest.
#[test]
fn manifest_extended() {
    let m = samples::extended_manifest();
    let hex_path = golden_dir().join("manifest_extended.hex");
    let bytes = hex::encode(m.encode());
    if std::env::var_os("LEASEMESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&hex_path, format!("{bytes}\n")).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&hex_path).unwrap();
    assert_eq!(bytes, want.trim(), "manifest_extended: wire bytes changed");
    let decoded = leasemesh_protocol::Manifest::decode(&hex::decode(want.trim()).unwrap()).unwrap();
    assert_eq!(decoded, m);
}

/// A version-2 body starts with its version-1 bytes (version byte aside): nothing else moved.
#[test]
fn version_2_extends_version_1_bytes() {
    let v1 = leasemesh_protocol::codec::to_canonical(&samples::order());
    let mut o = samples::tee_order();
    o.manifest_hash = samples::order().manifest_hash;
    let v2 = leasemesh_protocol::codec::to_canonical(&o);
    assert_eq!((v1[0], v2[0]), (1, 2));
    assert_eq!(v1[1..], v2[1..v1.len()]);
    // The extension: one entry per group, in group order (web: none, worker: cpu-gpu).
    assert_eq!(v2[v1.len()..], [2, 0, 1, 1]);
}

#[test]
fn bid() {
    check("bid", samples::signed_bid());
}

#[test]
fn provider_info() {
    check("provider_info", samples::signed_provider_info());
}

#[test]
fn heartbeat() {
    check("heartbeat", Signed::sign(samples::heartbeat(), &samples::provider_key()));
}

#[test]
fn match_batch() {
    check("match_batch", Signed::sign(samples::match_batch(), &samples::settler_key()));
}

#[test]
fn lease_event() {
    check("lease_event", Signed::sign(samples::lease_event(), &samples::provider_key()));
}

#[test]
fn settlement_batch() {
    check("settlement_batch", Signed::sign(samples::settlement_batch(), &samples::settler_key()));
}

#[test]
fn spend_grant() {
    check("spend_grant", Signed::sign(samples::spend_grant(), &samples::tenant_key()));
}

#[test]
fn manifest_hash_and_lease_id() {
    let path = golden_dir().join("derived.txt");
    let got = format!(
        "manifest_hash {}\nlease_id {}\nmerkle_root {}\n",
        samples::manifest().hash(),
        samples::award().lease_id(),
        samples::settlement_batch().merkle_root,
    );
    if std::env::var_os("LEASEMESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    assert_eq!(got, std::fs::read_to_string(&path).unwrap(), "derived hashes changed");
}

/// Keys derived from labels must not drift either: every golden depends on them.
#[test]
fn sample_keys_are_fixed() {
    let path = golden_dir().join("keys.txt");
    let got = format!(
        "tenant {}\nprovider {}\nsettler {}\n",
        samples::tenant_key().public(),
        samples::provider_key().public(),
        samples::settler_key().public()
    );
    if std::env::var_os("LEASEMESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    assert_eq!(got, std::fs::read_to_string(&path).unwrap(), "sample keys changed");
}
