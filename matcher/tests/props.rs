//! Property tests: the outcome does not depend on input order, no host is given more than its
//! free capacity, and every award satisfies the rules (checked by `common::check_outcome`,
//! which shares no code with the matcher).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use leasemesh_matcher::market::{generate, MarketParams};
use leasemesh_matcher::{match_epoch, EpochInput};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Small markets of varied shape; scarce capacity so that packing and competition matter.
fn params() -> impl Strategy<Value = MarketParams> {
    (1u32..40, 1u32..6, 1u32..8, 5u32..60, 0u32..80).prop_map(
        |(orders, bids, providers, size, gpu)| {
            let mut p = MarketParams::bench(orders, bids, providers);
            p.host_size_pct = size;
            p.gpu_order_pct = gpu;
            p.gpu_host_pct = 50;
            p.min_hosts = 1;
            p.max_hosts = 3;
            p
        },
    )
}

fn shuffled(input: &EpochInput, seed: u64) -> EpochInput {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = input.clone();
    out.orders.shuffle(&mut rng);
    out.bids.shuffle(&mut rng);
    out.providers.shuffle(&mut rng);
    out
}

/// Adds a copy of some inputs and an older snapshot of a provider: noise the matcher must
/// exclude the same way whatever the order.
fn with_noise(input: &EpochInput) -> EpochInput {
    let mut out = input.clone();
    if let Some(o) = input.orders.first() {
        out.orders.push(o.clone());
    }
    if let Some(b) = input.bids.last() {
        out.bids.push(b.clone());
    }
    if let Some((_, p)) = input.providers.first() {
        let mut older = p.clone();
        older.sequence = older.sequence.saturating_sub(1);
        older.hosts.iter_mut().for_each(|h| h.free.cpu_millis /= 2);
        out.providers.push((leasemesh_protocol::id_of(&older), older));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn shuffling_every_input_list_gives_the_same_digest(p in params(), seed: u64, perm: u64) {
        let input = with_noise(&generate(&p, seed));
        let a = match_epoch(&input);
        let b = match_epoch(&shuffled(&input, perm));
        prop_assert_eq!(a.digest, b.digest);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.digest, a.compute_digest());
    }

    #[test]
    fn awards_are_feasible_and_capacity_is_never_exceeded(p in params(), seed: u64) {
        let input = with_noise(&generate(&p, seed));
        let out = match_epoch(&input);
        if let Err(e) = common::check_outcome(&input, &out) {
            prop_assert!(false, "{}", e);
        }
        // Every order is accounted for exactly once: awarded, unmatched or excluded.
        let excluded_orders = out
            .excluded
            .iter()
            .filter(|e| e.kind == leasemesh_matcher::InputKind::Order
                && e.reason != leasemesh_matcher::ExcludedReason::Duplicate)
            .count();
        prop_assert_eq!(out.awards.len() + out.unmatched.len() + excluded_orders, out.order_ids.len());
    }
}

#[test]
fn the_checker_catches_an_over_capacity_award() {
    // Guard against a checker that accepts everything: shrink the host of an award after
    // matching, and the same awards must now be refused for capacity.
    let mut input = generate(&MarketParams::bench(60, 4, 4), 3);
    let out = match_epoch(&input);
    common::check_outcome(&input, &out).unwrap();
    let a = out.awards.first().expect("the market has awards");
    let host = a.assignments[0].host.clone();
    for (_, p) in input.providers.iter_mut().filter(|(_, p)| p.provider == a.provider) {
        for h in p.hosts.iter_mut().filter(|h| h.name == host) {
            h.free.cpu_millis = 0;
        }
    }
    let err = common::check_outcome(&input, &out).unwrap_err();
    assert!(err.contains("over capacity"), "{err}");
}
