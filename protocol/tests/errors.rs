//! Every way bad input is refused: a typed error whose message tells the user what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::types::{MAX_BID_SIZE, MAX_BID_WINDOW_MS, MAX_CLOCK_SKEW_MS};
use leasemesh_protocol::{
    samples, Bid, DecodeError, Keypair, Order, Signed, TimeError, ValidationError,
};

fn sign_order(o: Order) -> Vec<u8> {
    Signed::sign(o, &samples::tenant_key()).encode()
}

fn invalid(bytes: &[u8]) -> ValidationError {
    match Signed::<Order>::decode(bytes) {
        Err(DecodeError::Invalid { source, .. }) => source,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = samples::signed_bid().encode();
    bytes.push(0);
    let err = Signed::<Bid>::decode(&bytes).unwrap_err();
    assert_eq!(err, DecodeError::TrailingBytes { what: "bid", extra: 1 });
    assert_eq!(err.to_string(), "bid has 1 trailing bytes after a complete value");
}

#[test]
fn truncated_input_is_malformed() {
    let bytes = samples::signed_bid().encode();
    for cut in [0, 1, 10, bytes.len() - 1] {
        let err = Signed::<Bid>::decode(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { what: "bid", .. }), "{cut}: {err:?}");
    }
}

#[test]
fn oversize_input_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_BID_SIZE + 1];
    let err = Signed::<Bid>::decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLarge { what: "bid", size: MAX_BID_SIZE + 1, max: MAX_BID_SIZE }
    );
    assert!(err.to_string().contains("over the limit of 1024 bytes"));
}

#[test]
fn unknown_version_is_refused() {
    let mut o = samples::order();
    o.version = 3;
    let err = Signed::<Order>::decode(&sign_order(o)).unwrap_err();
    assert_eq!(err, DecodeError::UnknownVersion { what: "order", got: 3, supported: 2 });
    assert!(err.to_string().contains("upgrade"));
    // Version 2 is for orders that ask for a TEE: one without is refused, one spelling each.
    let mut o = samples::order();
    o.version = 2;
    let err = Signed::<Order>::decode(&sign_order(o)).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { what: "order", .. }), "{err}");
}

#[test]
fn non_canonical_varint_is_refused() {
    // The nonce 7 is one varint byte; spell it with two (0x87 0x00) and the decoder must refuse,
    // or one object would have two ids.
    let signed = samples::signed_order();
    let bytes = signed.encode();
    // version(1) + tenant (1 length byte + 32) then the nonce.
    let nonce_at = 1 + 1 + 32;
    assert_eq!(bytes[nonce_at], 7);
    let mut longer = bytes[..nonce_at].to_vec();
    longer.extend_from_slice(&[0x87, 0x00]);
    longer.extend_from_slice(&bytes[nonce_at + 1..]);
    let err = Signed::<Order>::decode(&longer).unwrap_err();
    assert!(
        matches!(err, DecodeError::NonCanonical { .. } | DecodeError::Malformed { .. }),
        "{err:?}"
    );
}

#[test]
fn zero_resources_are_refused() {
    let mut o = samples::order();
    o.groups[0].resources.cpu_millis = 0;
    let e = invalid(&sign_order(o));
    assert_eq!(e, ValidationError::Zero { field: "groups[0].resources.cpu_millis".into() });
    assert_eq!(e.to_string(), "groups[0].resources.cpu_millis must not be zero");

    let mut o = samples::order();
    o.groups[1].resources.memory_bytes = 0;
    assert!(matches!(invalid(&sign_order(o)), ValidationError::Zero { .. }));

    let mut o = samples::order();
    o.groups[1].resources.gpu.as_mut().unwrap().units = 0;
    assert!(matches!(invalid(&sign_order(o)), ValidationError::Zero { .. }));

    let mut o = samples::order();
    o.groups.clear();
    assert_eq!(invalid(&sign_order(o)), ValidationError::Empty { field: "groups".into() });

    let mut o = samples::order();
    o.max_price_per_hour.amount = 0;
    assert!(matches!(invalid(&sign_order(o)), ValidationError::Zero { .. }));
}

#[test]
fn overflowing_amounts_are_refused() {
    let mut o = samples::order();
    o.max_price_per_hour.amount = u128::MAX / 2;
    let e = invalid(&sign_order(o));
    assert!(matches!(e, ValidationError::Overflow { .. }), "{e:?}");

    let mut o = samples::order();
    o.groups[0].count = 1000;
    o.groups[0].resources.memory_bytes = u64::MAX / 10;
    assert!(matches!(invalid(&sign_order(o)), ValidationError::Overflow { .. }));
}

#[test]
fn bid_window_out_of_range_is_refused() {
    for w in [0, 99, MAX_BID_WINDOW_MS + 1] {
        let mut o = samples::order();
        o.bid_window_ms = w;
        let e = invalid(&sign_order(o));
        assert!(
            matches!(&e, ValidationError::OutOfRange { field, got, .. } if field == "bid_window_ms" && *got == u128::from(w)),
            "{e:?}"
        );
        assert!(e.to_string().contains("outside the allowed range 100..=600000"));
    }
}

#[test]
fn unsorted_or_duplicate_lists_are_refused() {
    let mut o = samples::order();
    o.groups.swap(0, 1);
    assert!(matches!(invalid(&sign_order(o)), ValidationError::NotSortedUnique { .. }));

    let mut o = samples::order();
    o.placement.attributes.push(o.placement.attributes[0].clone());
    assert!(matches!(invalid(&sign_order(o)), ValidationError::NotSortedUnique { .. }));
}

#[test]
fn bad_denom_is_refused() {
    let mut o = samples::order();
    o.max_price_per_hour.denom = "1x".into();
    assert!(matches!(invalid(&sign_order(o)), ValidationError::BadValue { .. }));
}

#[test]
fn expired_and_future_objects_are_refused_by_time_checks() {
    let o = samples::order();
    let closes = o.auction_closes_at_ms();
    assert!(o.check_time(o.created_at_ms).is_ok());
    assert_eq!(
        o.check_time(closes),
        Err(TimeError::Expired { what: "order auction", expires_at_ms: closes, now_ms: closes })
    );
    let early = o.created_at_ms - MAX_CLOCK_SKEW_MS - 1;
    assert!(matches!(o.check_time(early), Err(TimeError::FromTheFuture { .. })));

    let b = samples::bid();
    assert!(b.check_time(b.created_at_ms).is_ok());
    let e = b.check_time(b.expires_at_ms).unwrap_err();
    assert!(e.to_string().contains("bid expired"));
}

#[test]
fn bid_over_max_price_or_other_denom_is_refused() {
    let order = samples::signed_order();
    let mut b = samples::bid();
    assert!(b.check_against(&order.id(), &order.body).is_ok());
    b.price_per_hour.amount = order.body.max_price_per_hour.amount + 1;
    let e = b.check_against(&order.id(), &order.body).unwrap_err();
    assert!(e.to_string().contains("over the order's maximum"), "{e}");
    let mut b = samples::bid();
    b.price_per_hour.denom = "uusdc".into();
    assert!(b.check_against(&order.id(), &order.body).is_err());
}

#[test]
fn bid_expiring_before_creation_is_refused() {
    let mut b = samples::bid();
    b.expires_at_ms = b.created_at_ms;
    let bytes = Signed::sign(b, &samples::provider_key()).encode();
    assert!(matches!(Signed::<Bid>::decode(&bytes), Err(DecodeError::Invalid { .. })));
}

#[test]
fn order_signed_by_someone_else_is_refused() {
    let mallory = Keypair::from_seed_label("mallory");
    let bytes = Signed::sign(samples::order(), &mallory).encode();
    let err = Signed::<Order>::decode(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::WrongSigner { .. }));
    assert!(err.to_string().contains("but its author is"));
}

#[test]
fn bad_signature_is_refused_with_a_signature_error() {
    let mut signed = samples::signed_bid();
    signed.sig.0[10] ^= 1;
    let bytes = signed.encode();
    assert!(Signed::<Bid>::decode(&bytes).is_ok(), "structure is fine");
    let err = Signed::<Bid>::decode_verified(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::Signature { what: "bid", .. }));
}

#[test]
fn tampered_settlement_root_is_refused() {
    let mut batch = samples::settlement_batch();
    batch.merkle_root.0[0] ^= 1;
    let bytes = Signed::sign(batch, &samples::settler_key()).encode();
    let err = Signed::<leasemesh_protocol::SettlementBatch>::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("merkle_root"), "{err}");
}

#[test]
fn provider_free_over_total_is_refused() {
    let mut info = samples::provider_info();
    info.hosts[0].free.cpu_millis = info.hosts[0].total.cpu_millis + 1;
    let bytes = Signed::sign(info, &samples::provider_key()).encode();
    let err = Signed::<leasemesh_protocol::ProviderInfo>::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("free capacity exceeds"), "{err}");
}

#[test]
fn manifest_hash_covers_every_field() {
    let m = samples::manifest();
    let mut m2 = m.clone();
    m2.groups[0].services[0].env[0].value = "dev".into();
    assert_ne!(m.hash(), m2.hash());
    assert_eq!(leasemesh_protocol::Manifest::decode(&m.encode()).unwrap(), m);
    let mut bytes = to_canonical(&m);
    bytes.push(1);
    assert!(leasemesh_protocol::Manifest::decode(&bytes).is_err());
}

#[test]
fn spend_grant_with_a_bad_denom_or_address_is_refused() {
    let mut g = samples::spend_grant();
    g.denom = "x".into();
    let bytes = Signed::sign(g, &samples::tenant_key()).encode();
    let err = Signed::<leasemesh_protocol::SpendGrant>::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("denom"), "{err}");

    let mut g = samples::spend_grant();
    g.tenant_address = String::new();
    let bytes = Signed::sign(g, &samples::tenant_key()).encode();
    let err = Signed::<leasemesh_protocol::SpendGrant>::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("tenant_address must not be empty"), "{err}");
}
