//! Checks that what earlier builds wrote still reads: the client and the node share their
//! types, so comparing one side with the other cannot fail. These tests instead pin bytes and
//! JSON that were written before, and decode them with the current types (and, where the
//! encoding is canonical, encode back to the same bytes). A change that breaks stored data or
//! another build on the wire fails here.
//!
//! The settlement proof, mirrored in the client, is checked against the settlement crate.

use leasemesh_client::http::{LeaseRecord, LeaseState, NodeEvent};
use leasemesh_client::proof::{self, Verification};
use leasemesh_client::settle::SpendGrant as ClientGrant;
use leasemesh_node::settler::settle::SpendGrant as SettlerGrant;
use leasemesh_protocol::api::{Page, SignedView, Status};
use leasemesh_protocol::{Keypair, LeaseEvent, SettlementRecord, Signed};
use leasemesh_settlement::batch::{prove_lease, record_lease};
use leasemesh_settlement::samples;
use serde_json::{json, Value};

fn golden_grant() -> ClientGrant {
    let key = Keypair::from_seed_label("wire-tenant");
    ClientGrant {
        version: leasemesh_protocol::v(),
        tenant_address: key.public().to_hex(),
        settler_address: "ab".repeat(32),
        denom: "uakt".into(),
        limit: 123_456_789_000,
        created_at_ms: 1_700_000_000_000,
    }
}

/// A spend grant signed by the tenant key `wire-tenant` (postcard, the bytes the client posts
/// and the settler stores), as written before the API types moved to `protocol::api`.
const GOLDEN_GRANT_HEX: [&str; 7] = [
    "01406363353734363164343933626239636331653530356665303262636136623861646264336332",
    "66666336363738666439393033326265366462633935343739654061626162616261626162616261",
    "62616261626162616261626162616261626162616261626162616261626162616261626162616261",
    "62616261626162616261620475616b7488b4e4f4cb0380d095ffbc3120cc57461d493bb9cc1e505f",
    "e02bca6b8adbd3c2ffc6678fd99032be6dbc95479e4064ab654e7f7736df61205082b2ad152bd569",
    "cd5a3f6b74250a6e68358da00e8807fd0e2b3f6ec97313c89a7ce589b3cb961d0920317431c90e57",
    "764cb3356105",
];

#[test]
fn a_grant_signed_earlier_decodes_and_signs_to_the_same_bytes() {
    let hex = GOLDEN_GRANT_HEX.concat();
    let golden: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let back = Signed::<SettlerGrant>::decode_verified(&golden).expect("the settler decodes it");
    assert_eq!(back.body, golden_grant(), "the decoded grant is the one that was signed");
    let key = Keypair::from_seed_label("wire-tenant");
    assert_eq!(back.signer, key.public());
    let again = Signed::sign(golden_grant(), &key);
    assert_eq!(again.encode(), golden, "the client signs the same bytes today");
    assert_eq!(again.id(), back.id());
}

/// A lease record as nodes have stored it in sled and served it on `/v1/leases` (JSON, the
/// state a snake-case word): every state reads into the enum and writes back unchanged.
#[test]
fn lease_records_stored_earlier_read_back_unchanged() {
    for (word, state) in [
        ("awarded", LeaseState::Awarded),
        ("manifest_accepted", LeaseState::ManifestAccepted),
        ("running", LeaseState::Running),
        ("failed", LeaseState::Failed),
        ("closed", LeaseState::Closed),
    ] {
        let stored = json!({
            "lease_id": "11".repeat(32),
            "order_id": "22".repeat(32),
            "bid_id": "33".repeat(32),
            "batch_id": "44".repeat(32),
            "provider": "55".repeat(32),
            "tenant": null,
            "price_per_hour": { "denom": "uakt", "amount": "1200" },
            "state": word,
            "updated_at_ms": 1_700_000_000_000u64
        });
        let lease: LeaseRecord = serde_json::from_value(stored.clone()).expect(word);
        assert_eq!(lease.state, state);
        assert_eq!(lease.price_per_hour.amount, 1200);
        assert_eq!(serde_json::to_value(&lease).unwrap(), stored, "{word}");
    }
    let typo = json!({ "lease_id": "11".repeat(32), "order_id": "22".repeat(32),
        "bid_id": "33".repeat(32), "batch_id": "44".repeat(32), "provider": "55".repeat(32),
        "tenant": null, "price_per_hour": { "denom": "uakt", "amount": "1" },
        "state": "Running", "updated_at_ms": 0 });
    assert!(serde_json::from_value::<LeaseRecord>(typo).is_err(), "no default for a bad state");
}

/// The data of `/v1/events` as nodes have sent it (tagged by `type`).
#[test]
fn events_sent_earlier_read_back_unchanged() {
    let id = "66".repeat(32);
    let key = "77".repeat(32);
    let sent = [
        json!({ "type": "order", "id": id, "tenant": key, "closes_at_ms": 5 }),
        json!({ "type": "bid", "id": id, "order_id": id, "provider": key, "price_per_hour": "10uakt" }),
        json!({ "type": "award", "batch_id": id, "order_id": id, "bid_id": id, "lease_id": id, "provider": key }),
        json!({ "type": "lease", "lease_id": id, "event_id": id, "state": "manifest_accepted" }),
        json!({ "type": "provider", "provider": key, "sequence": 3 }),
    ];
    for v in sent {
        let ev: NodeEvent = serde_json::from_value(v.clone()).expect("an event of an earlier node");
        assert_eq!(ev.name(), v["type"].as_str().unwrap());
        assert_eq!(serde_json::to_value(&ev).unwrap(), v);
    }
}

/// `/v1/status` and a lease event view as the node writes them: the field names the client
/// reads. A `/v1/status` without `store` (or with a renamed field) fails to read.
#[test]
fn status_and_views_keep_their_field_names() {
    let status = json!({
        "peer_id": "12D3KooW", "node_key": "77".repeat(32), "listen_addrs": ["/ip4/127.0.0.1/tcp/1"],
        "connected_peers": [{ "peer_id": "12D3KooX", "score": 1.5, "app_score": 0.0 }],
        "mesh": { "orders": 2 }, "banned_peers": [],
        "store": { "orders": 1, "bids": 2, "providers": 3, "batches": 4, "leases": 5,
                   "lease_events": 6, "seen": 7 },
        "time_ms": 9
    });
    let s: Status = serde_json::from_value(status.clone()).unwrap();
    assert_eq!((s.store.leases, s.connected_peers.len()), (5, 1));
    assert_eq!(serde_json::to_value(&s).unwrap(), status);
    let mut no_store = status;
    no_store.as_object_mut().unwrap().remove("store");
    assert!(serde_json::from_value::<Status>(no_store).is_err());

    let key = Keypair::from_seed_label("wire-provider");
    let ev = Signed::sign(
        LeaseEvent {
            version: leasemesh_protocol::v(),
            lease_id: leasemesh_protocol::Hash([1; 32]),
            order_id: leasemesh_protocol::Hash([2; 32]),
            at_ms: 7,
            kind: leasemesh_protocol::LeaseEventKind::ManifestAccepted,
        },
        &key,
    );
    let hex: String = ev.encode().iter().map(|b| format!("{b:02x}")).collect();
    let page = json!({ "items": [{ "id": ev.id(), "signer": key.public(), "body": ev.body,
        "signed_hex": hex }], "next": null });
    let read: Page<SignedView<LeaseEvent>> = serde_json::from_value(page).unwrap();
    let verified = leasemesh_client::http::verify_view(&read.items[0]).unwrap();
    assert_eq!(verified, ev);
    let mut lying: Value = serde_json::to_value(&read.items[0]).unwrap();
    lying["id"] = json!("00".repeat(32));
    let lying: SignedView<LeaseEvent> = serde_json::from_value(lying).unwrap();
    assert!(leasemesh_client::http::verify_view(&lying).is_err(), "a view's id must be its own");
}
#[test]
fn a_settlement_proof_verifies_with_the_client_and_tampering_fails() {
    let batch = samples::crash_test_fleet().signed_batch().expect("sample batch");
    let lease = batch.body.records.iter().find_map(record_lease).copied().expect("a lease");
    let p = prove_lease(&batch.body, &lease).expect("a proof");
    let json = serde_json::to_value(&p).unwrap();
    let mirrored: proof::LeaseProof = serde_json::from_value(json).unwrap();
    let mut v = Verification::default();
    proof::check(&mirrored, Some(&batch), &mut v);
    assert!(v.proof_ok && v.batch_signature_ok, "{v:?}");

    let mut bad = mirrored.clone();
    for r in &mut bad.records {
        if let SettlementRecord::Accrual { amount, .. } = &mut r.record {
            *amount += 1;
        }
    }
    assert!(!proof::verify_lease_proof(&bad, &batch.body.merkle_root));
}
