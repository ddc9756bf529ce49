//! One test per matching rule, unmatched reason and exclusion reason, on hand-made markets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use leasemesh_matcher::{
    match_epoch, verify_batch, EpochInput, EpochOutcome, ExcludedReason, InputKind, MismatchError,
    UnmatchedReason,
};
use leasemesh_protocol::{
    samples, Assignment, Attribute, GpuInterface, Hash, Id, MatchBatch, Signed,
};

fn run(input: &EpochInput) -> EpochOutcome {
    let out = match_epoch(input);
    check_outcome(input, &out).unwrap();
    out
}

fn reason_of(out: &EpochOutcome, order: &Id) -> Option<UnmatchedReason> {
    out.unmatched.iter().find(|u| u.order_id == *order).map(|u| u.reason)
}

fn excluded(out: &EpochOutcome, kind: InputKind, id: &Id) -> Vec<ExcludedReason> {
    out.excluded.iter().filter(|e| e.kind == kind && e.id == *id).map(|e| e.reason).collect()
}

fn one_host(key: u8, cores: u64) -> (Id, leasemesh_protocol::ProviderInfo) {
    provider(pk(key), 1, vec![("h1", cap(cores, vec![]))])
}

#[test]
fn cheapest_eligible_bid_wins_at_its_own_price() {
    let o = with_id(order(1, vec![group("web", 1, res(2))], 100));
    let bids = vec![bid(&o, pk(1), 90), bid(&o, pk(2), 70), bid(&o, pk(3), 80)];
    let out = run(&input(
        vec![o.clone()],
        bids.clone(),
        vec![one_host(1, 8), one_host(2, 8), one_host(3, 8)],
    ));
    let a = out.award_for(&o.0).unwrap();
    assert_eq!(a.provider, pk(2));
    assert_eq!(a.bid_id, bids[1].0);
    assert_eq!(a.price_per_hour.amount, 70, "pay-as-bid");
    assert_eq!(
        a.assignments,
        vec![Assignment {
            group: 0,
            host: "h1".into(),
            replicas: 1,
            gpu_model: None,
            gpus_per_replica: 0
        }]
    );
}

#[test]
fn no_bids_over_price_placement_and_uptime_reasons() {
    let none = with_id(order(1, vec![group("a", 1, res(1))], 100));
    let dear = with_id(order(2, vec![group("a", 1, res(1))], 100));
    let mut placed = order(3, vec![group("a", 1, res(1))], 100);
    placed.placement.attributes = vec![Attribute::new("region", "us-east")];
    let placed = with_id(placed);
    let mut picky = order(4, vec![group("a", 1, res(1))], 100);
    picky.placement.min_uptime_bps = 9_900;
    let picky = with_id(picky);
    let bids = vec![bid(&dear, pk(1), 101), bid(&placed, pk(1), 50), bid(&picky, pk(1), 50)];
    let mut inp = input(
        vec![none.clone(), dear.clone(), placed.clone(), picky.clone()],
        bids,
        vec![one_host(1, 8)],
    );
    inp.uptime_bps.insert(pk(1), 9_899);
    let out = run(&inp);
    assert!(out.awards.is_empty());
    assert_eq!(reason_of(&out, &none.0), Some(UnmatchedReason::NoBids));
    assert_eq!(reason_of(&out, &dear.0), Some(UnmatchedReason::OverPrice));
    assert_eq!(reason_of(&out, &placed.0), Some(UnmatchedReason::Placement));
    assert_eq!(reason_of(&out, &picky.0), Some(UnmatchedReason::Placement));

    // Enough uptime: the picky order is served. A provider missing from the uptime map has 0.
    inp.uptime_bps.insert(pk(1), 9_900);
    assert!(run(&inp).award_for(&picky.0).is_some());
    inp.uptime_bps.clear();
    assert_eq!(reason_of(&run(&inp), &picky.0), Some(UnmatchedReason::Placement));
}

#[test]
fn placement_attribute_present_is_eligible() {
    let mut o = order(1, vec![group("a", 1, res(1))], 100);
    o.placement.attributes = vec![Attribute::new("region", "eu-west")];
    let o = with_id(o);
    let out = run(&input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![one_host(1, 8)]));
    assert!(out.award_for(&o.0).is_some());
}

#[test]
fn a_replica_must_fit_on_one_host() {
    // 10 cores per replica; two hosts of 6 cores hold 12 cores but not one replica.
    let o = with_id(order(1, vec![group("a", 1, res(10))], 100));
    let p = provider(pk(1), 1, vec![("h1", cap(6, vec![])), ("h2", cap(6, vec![]))]);
    let out = run(&input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![p]));
    assert_eq!(reason_of(&out, &o.0), Some(UnmatchedReason::Capacity));
}

#[test]
fn replicas_of_a_group_spread_over_hosts() {
    let o = with_id(order(1, vec![group("a", 3, res(4))], 100));
    let p = provider(pk(1), 1, vec![("h1", cap(8, vec![])), ("h2", cap(8, vec![]))]);
    let out = run(&input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![p]));
    let a = out.award_for(&o.0).unwrap();
    let replicas: Vec<(String, u32)> =
        a.assignments.iter().map(|x| (x.host.clone(), x.replicas)).collect();
    assert_eq!(replicas, vec![("h1".into(), 2), ("h2".into(), 1)]);
}

#[test]
fn an_order_wins_all_groups_from_one_provider_or_none() {
    // Provider 1 (cheaper) fits the web group but not the 12-core db group; provider 2 fits both.
    let o = with_id(order(1, vec![group("db", 1, res(12)), group("web", 2, res(2))], 100));
    let out = run(&input(
        vec![o.clone()],
        vec![bid(&o, pk(1), 10), bid(&o, pk(2), 20)],
        vec![one_host(1, 8), one_host(2, 16)],
    ));
    let a = out.award_for(&o.0).unwrap();
    assert_eq!(a.provider, pk(2));
    assert_eq!(a.assignments.iter().map(|x| x.replicas).sum::<u32>(), 3);
    // Without provider 2 nothing is awarded, and provider 1 keeps all its capacity for others.
    let small = with_id(order(2, vec![group("a", 1, res(8))], 100));
    let out = run(&input(
        vec![o.clone(), small.clone()],
        vec![bid(&o, pk(1), 10), bid(&small, pk(1), 50)],
        vec![one_host(1, 8)],
    ));
    assert_eq!(reason_of(&out, &o.0), Some(UnmatchedReason::Capacity));
    assert!(out.award_for(&small.0).is_some());
}

#[test]
fn capacity_is_consumed_across_the_epoch() {
    // Two orders of 6 cores, one provider of 8 cores: one of them only.
    let a = with_id(order(1, vec![group("a", 1, res(6))], 100));
    let b = with_id(order(2, vec![group("a", 1, res(6))], 100));
    let out = run(&input(
        vec![a.clone(), b.clone()],
        vec![bid(&a, pk(1), 10), bid(&b, pk(1), 10)],
        vec![one_host(1, 8)],
    ));
    assert_eq!(out.awards.len(), 1);
    assert_eq!(out.unmatched.len(), 1);
    assert_eq!(out.unmatched[0].reason, UnmatchedReason::Capacity);
}

#[test]
fn scarce_orders_go_first() {
    // Order `only` has one bid (provider 1); order `flex` bids on providers 1 and 2 and would
    // take provider 1 first if taken first. Scarcity order serves both.
    let only = with_id(order(1, vec![group("a", 1, res(6))], 100));
    let flex = with_id(order(2, vec![group("a", 1, res(6))], 100));
    let out = run(&input(
        vec![flex.clone(), only.clone()],
        vec![bid(&only, pk(1), 10), bid(&flex, pk(1), 5), bid(&flex, pk(2), 50)],
        vec![one_host(1, 8), one_host(2, 8)],
    ));
    assert_eq!(out.award_for(&only.0).unwrap().provider, pk(1));
    assert_eq!(out.award_for(&flex.0).unwrap().provider, pk(2));
}

#[test]
fn gpu_model_vram_and_interface_must_match() {
    let want = |min_vram, iface| {
        with_id(order(
            1,
            vec![group("g", 1, gpu_res(2, 1, "nvidia", &[("a100", min_vram, iface)]))],
            100,
        ))
    };
    let host40 = provider(
        pk(1),
        1,
        vec![("g1", cap(16, gpus("nvidia", "a100", 40, GpuInterface::Pcie, 2)))],
    );
    for (min_vram, iface, ok) in [
        (40, None, true),
        (80, None, false),
        (0, Some(GpuInterface::Pcie), true),
        (0, Some(GpuInterface::Sxm), false),
    ] {
        let o = want(min_vram, iface);
        let out = run(&input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![host40.clone()]));
        assert_eq!(out.award_for(&o.0).is_some(), ok, "min_vram {min_vram} iface {iface:?}");
        if let Some(a) = out.award_for(&o.0) {
            assert_eq!(a.assignments[0].gpu_model.as_deref(), Some("a100"));
            assert_eq!(a.assignments[0].gpus_per_replica, 1);
        } else {
            assert_eq!(reason_of(&out, &o.0), Some(UnmatchedReason::Capacity));
        }
    }
    // Wrong vendor, unknown model.
    let amd = with_id(order(2, vec![group("g", 1, gpu_res(2, 1, "amd", &[]))], 100));
    let h100 =
        with_id(order(3, vec![group("g", 1, gpu_res(2, 1, "nvidia", &[("h100", 0, None)]))], 100));
    let any = with_id(order(4, vec![group("g", 1, gpu_res(2, 1, "nvidia", &[]))], 100));
    let out = run(&input(
        vec![amd.clone(), h100.clone(), any.clone()],
        vec![bid(&amd, pk(1), 10), bid(&h100, pk(1), 10), bid(&any, pk(1), 10)],
        vec![host40],
    ));
    assert_eq!(reason_of(&out, &amd.0), Some(UnmatchedReason::Capacity));
    assert_eq!(reason_of(&out, &h100.0), Some(UnmatchedReason::Capacity));
    assert!(out.award_for(&any.0).is_some());
}

#[test]
fn a_replicas_gpus_are_of_one_model_on_its_host() {
    // Two GPUs per replica; the host has one a100 and one h100, both acceptable: no fit.
    let o = with_id(order(
        1,
        vec![group("g", 1, gpu_res(2, 2, "nvidia", &[("a100", 0, None), ("h100", 0, None)]))],
        100,
    ));
    let mut devices = gpus("nvidia", "a100", 80, GpuInterface::Sxm, 1);
    devices.extend(gpus("nvidia", "h100", 80, GpuInterface::Sxm, 1));
    let mixed = provider(pk(1), 1, vec![("g1", cap(16, devices))]);
    let out = run(&input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![mixed]));
    assert_eq!(reason_of(&out, &o.0), Some(UnmatchedReason::Capacity));
    // GPUs on two hosts do not add up for one replica either.
    let split = provider(
        pk(1),
        1,
        vec![
            ("g1", cap(16, gpus("nvidia", "a100", 80, GpuInterface::Sxm, 1))),
            ("g2", cap(16, gpus("nvidia", "a100", 80, GpuInterface::Sxm, 1))),
        ],
    );
    let out = run(&input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![split]));
    assert_eq!(reason_of(&out, &o.0), Some(UnmatchedReason::Capacity));
}

#[test]
fn gpus_are_consumed_across_awards() {
    let p =
        provider(pk(1), 1, vec![("g1", cap(64, gpus("nvidia", "a100", 80, GpuInterface::Sxm, 4)))]);
    let orders: Vec<_> = (0..3)
        .map(|n| with_id(order(n, vec![group("g", 1, gpu_res(2, 2, "nvidia", &[]))], 100)))
        .collect();
    let bids = orders.iter().map(|o| bid(o, pk(1), 10)).collect();
    let out = run(&input(orders, bids, vec![p]));
    assert_eq!(out.awards.len(), 2);
    assert_eq!(out.unmatched[0].reason, UnmatchedReason::Capacity);
}

#[test]
fn equal_prices_break_on_a_hash_not_on_arrival_order() {
    let o = with_id(order(1, vec![group("a", 1, res(1))], 100));
    let providers: Vec<_> = (1..=6).map(|k| one_host(k, 8)).collect();
    let bids: Vec<_> = (1..=6).map(|k| bid(&o, pk(k), 42)).collect();
    let first = run(&input(vec![o.clone()], bids.clone(), providers.clone()));
    let winner = first.award_for(&o.0).unwrap().bid_id;
    for rot in 1..6 {
        let mut b = bids.clone();
        b.rotate_left(rot);
        let mut p = providers.clone();
        p.reverse();
        let out = run(&input(vec![o.clone()], b, p));
        assert_eq!(out.award_for(&o.0).unwrap().bid_id, winner);
        assert_eq!(out.digest, first.digest);
    }
    // The salted hash decides, not the bid id itself or the list position.
    let chosen_by_salt = bids
        .iter()
        .map(|(id, _)| *id)
        .min_by_key(|id| {
            *blake3::keyed_hash(first.inputs_digest.as_bytes(), id.as_bytes()).as_bytes()
        })
        .unwrap();
    assert_eq!(winner, chosen_by_salt);
}

#[test]
fn exclusions_have_reasons() {
    let o = with_id(order(1, vec![group("a", 1, res(1))], 100));
    let ghost = with_id(order(99, vec![group("a", 1, res(1))], 100));
    let invalid = with_id(order(2, vec![], 100));
    let good = bid(&o, pk(1), 10);
    let unknown_order = bid(&ghost, pk(1), 10);
    let for_invalid = bid(&invalid, pk(1), 10);
    let no_snapshot = bid(&o, pk(7), 5);
    let other_denom = bid_denom(&o, pk(1), 5, "uatom", 0);
    let old = provider(pk(1), 1, vec![("h1", cap(1, vec![]))]);
    let new = provider(pk(1), 2, vec![("h1", cap(8, vec![]))]);
    let inp = input(
        vec![o.clone(), o.clone(), invalid.clone()],
        vec![
            good.clone(),
            good.clone(),
            unknown_order.clone(),
            for_invalid.clone(),
            no_snapshot.clone(),
            other_denom.clone(),
        ],
        vec![old.clone(), new.clone(), new.clone()],
    );
    let out = run(&inp);
    use ExcludedReason::*;
    assert_eq!(excluded(&out, InputKind::Order, &o.0), vec![Duplicate]);
    assert_eq!(excluded(&out, InputKind::Order, &invalid.0), vec![InvalidOrder]);
    assert_eq!(excluded(&out, InputKind::Bid, &good.0), vec![Duplicate]);
    assert_eq!(excluded(&out, InputKind::Bid, &unknown_order.0), vec![UnknownOrder]);
    assert_eq!(excluded(&out, InputKind::Bid, &for_invalid.0), vec![UnknownOrder]);
    assert_eq!(excluded(&out, InputKind::Bid, &no_snapshot.0), vec![NoProviderSnapshot]);
    assert_eq!(excluded(&out, InputKind::Bid, &other_denom.0), vec![DenomMismatch]);
    assert_eq!(excluded(&out, InputKind::ProviderInfo, &old.0), vec![Superseded]);
    assert_eq!(excluded(&out, InputKind::ProviderInfo, &new.0), vec![Duplicate]);
    // The cheaper bids were excluded; the order goes to the good bid on the newest snapshot.
    assert_eq!(out.award_for(&o.0).unwrap().bid_id, good.0);
    // Ids are listed once each, sorted, excluded ones included.
    assert_eq!(out.order_ids.len(), 2);
    assert_eq!(out.bid_ids.len(), 5);
    assert_eq!(out.provider_info_ids.len(), 2);
    assert!(out.bid_ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(inp.input_ids().bid_ids, out.bid_ids);
}

#[test]
fn the_newest_snapshot_decides_capacity() {
    // The old snapshot (seq 5) has room, the new one (seq 6) does not: no award.
    let o = with_id(order(1, vec![group("a", 1, res(4))], 100));
    let roomy = provider(pk(1), 5, vec![("h1", cap(8, vec![]))]);
    let full = provider(pk(1), 6, vec![("h1", cap(2, vec![]))]);
    let out = run(&input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![full, roomy]));
    assert_eq!(reason_of(&out, &o.0), Some(UnmatchedReason::Capacity));
}

#[test]
fn from_signed_uses_the_signed_ids_and_verify_batch_checks_them() {
    let order = samples::signed_order();
    let bid = samples::signed_bid();
    let info = samples::signed_provider_info();
    let uptime = [(info.body.provider, 9_990u16)].into_iter().collect();
    let inp = EpochInput::from_signed(
        std::slice::from_ref(&order),
        std::slice::from_ref(&bid),
        std::slice::from_ref(&info),
        uptime,
    );
    assert_eq!(inp.orders[0].0, order.id());
    assert_eq!(inp.bids[0].0, bid.id());
    let out = run(&inp);
    assert_eq!(out.awards.len(), 1, "the samples are meant to match: {:?}", out.unmatched);

    let mut batch = MatchBatch {
        version: 1,
        epoch: 1,
        settler: samples::settler_key().public(),
        prev_batch: Hash::ZERO,
        created_at_ms: T0,
        order_ids: out.order_ids.clone(),
        bid_ids: out.bid_ids.clone(),
        provider_info_ids: out.provider_info_ids.clone(),
        awards: out.awards.clone(),
        outcome_digest: out.digest,
    };
    assert_eq!(verify_batch(&batch, &inp), Ok(()));
    let signed = Signed::sign(batch.clone(), &samples::settler_key());
    assert!(signed.check().is_ok(), "the outcome makes a valid match batch");

    batch.awards[0].price_per_hour.amount += 1;
    assert!(matches!(verify_batch(&batch, &inp), Err(MismatchError::Awards { .. })));
    batch.awards = out.awards.clone();
    batch.outcome_digest = Hash::ZERO;
    assert!(matches!(verify_batch(&batch, &inp), Err(MismatchError::Digest { .. })));
    batch.outcome_digest = out.digest;
    batch.bid_ids.clear();
    assert!(matches!(
        verify_batch(&batch, &inp),
        Err(MismatchError::Inputs { list: "bid_ids", .. })
    ));
}

#[test]
fn the_digest_covers_the_inputs_and_the_outcome() {
    let o = with_id(order(1, vec![group("a", 1, res(1))], 100));
    let base = input(vec![o.clone()], vec![bid(&o, pk(1), 10)], vec![one_host(1, 8)]);
    let d = run(&base).digest;
    // An extra (losing) bid changes nothing awarded but changes the digest.
    let mut more = base.clone();
    more.bids.push(bid(&o, pk(1), 11));
    assert_ne!(run(&more).digest, d);
    // Same input, same digest.
    assert_eq!(run(&base.clone()).digest, d);
}

#[test]
fn one_id_with_two_bodies_keeps_the_smallest_canonical_bytes_whatever_the_order() {
    // A caller bug (two bodies under one id) must still give one answer on every node.
    let o = with_id(order(1, vec![group("web", 1, res(2))], 100));
    let (id, cheap) = bid(&o, pk(1), 10);
    let mut dear = cheap.clone();
    dear.price_per_hour.amount = 50;
    let p = one_host(1, 8);
    let a = match_epoch(&input(
        vec![o.clone()],
        vec![(id, dear.clone()), (id, cheap.clone())],
        vec![p.clone()],
    ));
    let b = match_epoch(&input(
        vec![o.clone()],
        vec![(id, cheap.clone()), (id, dear.clone())],
        vec![p],
    ));
    assert_eq!(a, b);
    use leasemesh_protocol::codec::to_canonical;
    let keep = if to_canonical(&cheap) < to_canonical(&dear) { &cheap } else { &dear };
    assert_eq!(a.award_for(&o.0).unwrap().price_per_hour, keep.price_per_hour);
    assert_eq!(excluded(&a, InputKind::Bid, &id), vec![ExcludedReason::Duplicate]);
    assert_eq!(a.bid_ids, vec![id]);
}
