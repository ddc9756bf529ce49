//! Property tests over the wire format: round trips, tampering, and signature separation.

use leasemesh_protocol::crypto::{signing_message, Keypair};
use leasemesh_protocol::{samples, Bid, Coin, DecodeError, Order, Signable, Signed};
use proptest::prelude::*;

/// A valid order with fields drawn from the strategy's values.
fn order_strategy() -> impl Strategy<Value = Order> {
    (
        any::<u64>(),
        100u64..=600_000,
        1_000u64..=3_600_000_000,
        1u32..=100,
        1u64..=256_000,
        1u64..=(1 << 40),
        1u128..=u128::from(u64::MAX),
        proptest::option::of(1u32..=8),
    )
        .prop_map(|(nonce, window, term, count, cpu, mem, price, gpus)| {
            let mut o = samples::order();
            o.nonce = nonce;
            o.bid_window_ms = window;
            o.lease_term_ms = term;
            o.groups[0].count = count;
            o.groups[0].resources.cpu_millis = cpu;
            o.groups[0].resources.memory_bytes = mem;
            o.max_price_per_hour.amount = price;
            match (gpus, o.groups[1].resources.gpu.as_mut()) {
                (Some(units), Some(g)) => g.units = units,
                (None, _) => o.groups[1].resources.gpu = None,
                _ => {}
            }
            o
        })
}

fn bid_strategy() -> impl Strategy<Value = Bid> {
    (any::<[u8; 32]>(), 0u128..=u128::MAX, 0u64..u64::MAX / 2, 1u64..=3_600_000).prop_map(
        |(order, price, created, validity)| {
            let mut b = samples::bid();
            b.order_id = leasemesh_protocol::Hash(order);
            b.price_per_hour = Coin::new("uakt", price);
            b.created_at_ms = created;
            b.expires_at_ms = created + validity;
            b
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn order_round_trips(order in order_strategy()) {
        let signed = Signed::sign(order, &samples::tenant_key());
        let bytes = signed.encode();
        let back = Signed::<Order>::decode_verified(&bytes).unwrap();
        prop_assert_eq!(back.id(), signed.id());
        prop_assert_eq!(back, signed);
    }

    #[test]
    fn bid_round_trips(bid in bid_strategy()) {
        let signed = Signed::sign(bid, &samples::provider_key());
        let back = Signed::<Bid>::decode_verified(&signed.encode()).unwrap();
        prop_assert_eq!(back, signed);
    }

    /// Any single flipped bit either fails to decode/verify or yields a different object
    /// (different id or different signature): it is never silently the same object.
    #[test]
    fn flipped_bit_is_detected(order in order_strategy(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let signed = Signed::sign(order, &samples::tenant_key());
        let mut bytes = signed.encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        match Signed::<Order>::decode_verified(&bytes) {
            Err(_) => {}
            Ok(other) => prop_assert!(false, "tampered bytes verified: {:?} vs {:?}", other.id(), signed.id()),
        }
        // Without signature verification, a successful decode must give a different id or
        // a different envelope.
        if let Ok(other) = Signed::<Order>::decode(&bytes) {
            let same = other.id() == signed.id() && other.sig == signed.sig && other.signer == signed.signer;
            prop_assert!(!same, "a flipped bit decoded to the same object");
        }
    }

    #[test]
    fn flipped_bit_in_bid_is_detected(bid in bid_strategy(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let signed = Signed::sign(bid, &samples::provider_key());
        let mut bytes = signed.encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(Signed::<Bid>::decode_verified(&bytes).is_err());
    }

    /// A signature made by another key, or over another domain, never verifies.
    #[test]
    fn signature_by_other_key_or_domain_fails(bid in bid_strategy(), label in "[a-z]{1,12}") {
        let body_bytes = leasemesh_protocol::codec::to_canonical(&bid);
        let other = Keypair::from_seed_label(&label);
        // Another key, claiming to be the provider.
        let forged = Signed { sig: other.sign(&signing_message(Bid::DOMAIN, &body_bytes)), ..Signed::sign(bid.clone(), &samples::provider_key()) };
        let forged_ok = matches!(forged.verify(), Err(DecodeError::Signature { .. }));
        prop_assert!(forged_ok, "a signature by another key verified");
        // The right key over another type's domain.
        let wrong_domain = Signed {
            sig: samples::provider_key().sign(&signing_message(Order::DOMAIN, &body_bytes)),
            ..Signed::sign(bid, &samples::provider_key())
        };
        prop_assert!(wrong_domain.verify().is_err());
    }

    /// Decoding never panics on arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Signed::<Order>::decode(&bytes);
        let _ = Signed::<Bid>::decode(&bytes);
        let _ = Signed::<leasemesh_protocol::ProviderInfo>::decode(&bytes);
        let _ = Signed::<leasemesh_protocol::MatchBatch>::decode(&bytes);
        let _ = Signed::<leasemesh_protocol::LeaseEvent>::decode(&bytes);
        let _ = Signed::<leasemesh_protocol::SettlementBatch>::decode(&bytes);
        let _ = leasemesh_protocol::Manifest::decode(&bytes);
    }
}

#[test]
fn batch_verification_names_the_bad_ones() {
    let key = samples::provider_key();
    let mut bids: Vec<Signed<Bid>> = (0..64)
        .map(|i| {
            let mut b = samples::bid();
            b.price_per_hour.amount = 1000 + i;
            Signed::sign(b, &key)
        })
        .collect();
    assert!(leasemesh_protocol::verify_all(&bids).is_ok());
    bids[3].body.price_per_hour.amount += 1;
    bids[40].sig = bids[41].sig;
    assert_eq!(leasemesh_protocol::verify_all(&bids), Err(vec![3, 40]));
}
