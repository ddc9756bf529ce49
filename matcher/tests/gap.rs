//! The greedy rule against the exact optimum on small markets with scarce capacity. The
//! objective (see `leasemesh_matcher::exact`) is the epoch's cost to tenants: prices paid plus
//! the maximum price of every order left unmatched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use leasemesh_matcher::exact::{cost_of, solve};
use leasemesh_matcher::market::{generate, MarketParams};
use leasemesh_matcher::match_epoch;

#[test]
fn greedy_is_within_two_percent_of_the_optimum_on_average() {
    let params = MarketParams::small_scarce(8);
    let (mut sum_ppm, mut optimal, mut contested) = (0u128, 0u32, 0u32);
    let n = 150u32;
    for seed in 0..u64::from(n) {
        let input = generate(&params, seed);
        let out = match_epoch(&input);
        common::check_outcome(&input, &out).unwrap();
        let exact = solve(&input).unwrap();
        let greedy = cost_of(&out, &input);
        assert!(
            greedy >= exact.cost,
            "seed {seed}: greedy {greedy} below the optimum {}",
            exact.cost
        );
        let ppm = (greedy - exact.cost) * 1_000_000 / exact.cost.max(1);
        sum_ppm += ppm;
        optimal += u32::from(ppm == 0);
        contested += u32::from(
            out.unmatched.iter().any(|u| u.reason == leasemesh_matcher::UnmatchedReason::Capacity),
        );
    }
    let mean_ppm = sum_ppm / u128::from(n);
    eprintln!("greedy vs optimum: mean gap {mean_ppm} ppm, optimal on {optimal}/{n}, capacity-bound on {contested}/{n}");
    assert!(contested > n / 3, "the markets must be scarce for the comparison to mean anything");
    assert!(mean_ppm <= 20_000, "mean gap {mean_ppm} ppm is over 2 %");
}

#[test]
fn the_exact_solver_finds_what_greedy_misses() {
    // Order A (1 bid) and order B (2 bids) both fit provider 1 only alone; taking B on provider 1
    // first (cheapest) would strand A. The exact solver serves both.
    use common::*;
    let a = with_id(order(1, vec![group("a", 1, res(6))], 100));
    let b = with_id(order(2, vec![group("a", 1, res(6))], 100));
    let inp = input(
        vec![a.clone(), b.clone()],
        vec![bid(&a, pk(1), 10), bid(&b, pk(1), 5), bid(&b, pk(2), 50)],
        vec![
            provider(pk(1), 1, vec![("h1", cap(8, vec![]))]),
            provider(pk(2), 1, vec![("h1", cap(8, vec![]))]),
        ],
    );
    let exact = solve(&inp).unwrap();
    assert_eq!(exact.filled, 2);
    assert_eq!(exact.total_price, 60);
    assert_eq!(exact.cost, cost_of(&match_epoch(&inp), &inp));
}
