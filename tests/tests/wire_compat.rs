//! The light client does not link the node or the settlement crate. The spend grant is a
//! protocol type both sides share; the lease proof is mirrored in the client. These checks pin
//! that a grant the client signs is the grant the settler decodes, with the same id, and that a
//! proof the settlement crate builds verifies with the client's own checker (tampering fails).

use leasemesh_client::proof::{self, Verification};
use leasemesh_client::settle::SpendGrant as ClientGrant;
use leasemesh_node::settler::settle::SpendGrant as SettlerGrant;
use leasemesh_protocol::{Keypair, SettlementRecord, Signed};
use leasemesh_settlement::batch::{prove_lease, record_lease};
use leasemesh_settlement::samples;

#[test]
fn a_client_signed_grant_is_the_settlers_grant() {
    let key = Keypair::from_seed_label("wire-tenant");
    let g = Signed::sign(
        ClientGrant {
            version: leasemesh_protocol::v(),
            tenant_address: key.public().to_hex(),
            settler_address: "ab".repeat(32),
            denom: "uakt".into(),
            limit: 123_456_789_000,
            created_at_ms: 1_700_000_000_000,
        },
        &key,
    );
    let back =
        Signed::<SettlerGrant>::decode_verified(&g.encode()).expect("the settler decodes it");
    assert_eq!(back.id(), g.id());
    assert_eq!(back.body.limit, 123_456_789_000);
    assert_eq!(back.body.tenant_address, key.public().to_hex());
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
