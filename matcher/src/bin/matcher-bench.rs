//! matcher-bench: times `match_epoch` on a reproducible random market against a plain sort of
//! the same bids by (price, id), and prints one JSON line.
//!
//! ```text
//! matcher-bench --orders N --bids-per-order K --providers P --seed S [--runs R]
//! matcher-bench --exact-gap INSTANCES [--orders N] [--seed S]
//! ```
//! The second form measures the greedy rule against the exact optimum on small scarce markets.
//!
//! `match_ms` and `sort_ms` are the best of `--runs` (default 3) runs on one core. The baseline
//! is `sort_unstable_by` of a clone of the same `(Id, Bid)` list by (price, id); the clone is not
//! timed. Every run of the matcher must give the same outcome, or the bench fails.

use std::process::ExitCode;
use std::time::Instant;

use leasemesh_matcher::exact::{cost_of, solve};
use leasemesh_matcher::market::{generate, MarketParams};
use leasemesh_matcher::match_epoch;

#[derive(Debug)]
struct Args {
    orders: u32,
    bids_per_order: u32,
    providers: u32,
    seed: u64,
    runs: u32,
    exact_gap: Option<u32>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        orders: 10_000,
        bids_per_order: 10,
        providers: 1_000,
        seed: 1,
        runs: 3,
        exact_gap: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        let small = |v: &str| {
            num(v).and_then(|n| u32::try_from(n).map_err(|_| format!("{flag}: {n} is too large")))
        };
        match flag.as_str() {
            "--orders" => a.orders = small(&value)?,
            "--bids-per-order" => a.bids_per_order = small(&value)?,
            "--providers" => a.providers = small(&value)?.max(1),
            "--seed" => a.seed = num(&value)?,
            "--runs" => a.runs = small(&value)?.max(1),
            "--exact-gap" => a.exact_gap = Some(small(&value)?),
            other => return Err(format!("unknown flag {other}; see the module docs")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("matcher-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match args.exact_gap {
        Some(instances) => gap(&args, instances),
        None => bench(&args),
    }
}

fn bench(args: &Args) -> ExitCode {
    let input =
        generate(&MarketParams::bench(args.orders, args.bids_per_order, args.providers), args.seed);
    let mut match_ms = f64::MAX;
    let mut outcome = None;
    for _ in 0..args.runs {
        let t = Instant::now();
        let o = match_epoch(&input);
        match_ms = match_ms.min(t.elapsed().as_secs_f64() * 1e3);
        if let Some(prev) = &outcome {
            if *prev != o {
                eprintln!("matcher-bench: two runs on the same input gave different outcomes");
                return ExitCode::FAILURE;
            }
        }
        outcome = Some(o);
    }
    let Some(outcome) = outcome else { return ExitCode::FAILURE };
    let mut sort_ms = f64::MAX;
    for _ in 0..args.runs {
        let mut bids = input.bids.clone();
        let t = Instant::now();
        bids.sort_unstable_by(|a, b| {
            a.1.price_per_hour.amount.cmp(&b.1.price_per_hour.amount).then(a.0.cmp(&b.0))
        });
        sort_ms = sort_ms.min(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(&bids);
    }
    let bids = input.bids.len();
    println!(
        "{{\"orders\":{},\"bids\":{},\"providers\":{},\"awards\":{},\"match_ms\":{:.2},\"sort_ms\":{:.2},\"ratio\":{:.3},\"bids_per_s\":{:.0},\"digest\":\"{}\"}}",
        input.orders.len(),
        bids,
        input.providers.len(),
        outcome.awards.len(),
        match_ms,
        sort_ms,
        match_ms / sort_ms.max(1e-9),
        bids as f64 / (match_ms / 1e3).max(1e-9),
        outcome.digest,
    );
    ExitCode::SUCCESS
}

/// Greedy against the exact optimum on `instances` small scarce markets.
fn gap(args: &Args, instances: u32) -> ExitCode {
    let orders = if args.orders > 16 { 8 } else { args.orders };
    let params = MarketParams::small_scarce(orders);
    let (mut sum_gap_ppm, mut worst_ppm, mut optimal) = (0u128, 0u128, 0u32);
    let (mut greedy_filled, mut opt_filled) = (0usize, 0usize);
    let t = Instant::now();
    for i in 0..instances {
        let input = generate(&params, args.seed.wrapping_add(u64::from(i)));
        let outcome = match_epoch(&input);
        let exact = match solve(&input) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("matcher-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        let g = cost_of(&outcome, &input);
        if g < exact.cost {
            eprintln!(
                "matcher-bench: seed {}: greedy {g} beats the optimum {}",
                args.seed + u64::from(i),
                exact.cost
            );
            return ExitCode::FAILURE;
        }
        let ppm = (g - exact.cost) * 1_000_000 / exact.cost.max(1);
        sum_gap_ppm += ppm;
        worst_ppm = worst_ppm.max(ppm);
        optimal += u32::from(ppm == 0);
        greedy_filled += outcome.awards.len();
        opt_filled += exact.filled;
    }
    let n = u128::from(instances.max(1));
    println!(
        "{{\"instances\":{instances},\"orders\":{orders},\"mean_gap_pct\":{:.3},\"worst_gap_pct\":{:.3},\"optimal_instances\":{optimal},\"greedy_filled\":{greedy_filled},\"optimum_filled\":{opt_filled},\"secs\":{:.1}}}",
        (sum_gap_ppm / n) as f64 / 1e4,
        worst_ppm as f64 / 1e4,
        t.elapsed().as_secs_f64(),
    );
    ExitCode::SUCCESS
}
