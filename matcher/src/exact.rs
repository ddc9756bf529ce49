//! An exact solver for small markets, to measure how far the greedy rule is from the optimum.
//!
//! # Objective
//! Minimize the epoch's cost to tenants,
//! `C = Σ over awarded orders of the price paid + Σ over unmatched orders of their max price`,
//! subject to the same rules as [`match_epoch`](crate::match_epoch): only eligible bids, all
//! groups of an order from one provider, every replica on one host with GPUs from one pool, and
//! no provider given more than its free capacity. Counting an unmatched order at its maximum
//! price (the most its tenant was willing to pay) makes `C` the total maximum price minus the
//! tenants' surplus: minimizing it prefers filling orders (a fill never costs more than leaving
//! the order out) and, among fills, cheaper prices. Pay-as-bid, so the price of an award is its
//! bid's price.
//!
//! Unlike the greedy, the solver packs replicas onto hosts exactly (backtracking over every
//! host and GPU pool), so the optimum is never worse than what the greedy finds.
//! It enumerates every choice with branch and bound and is only meant for a handful of orders.

use std::collections::{BTreeMap, HashMap};

use leasemesh_protocol::Id;

use crate::input::EpochInput;
use crate::outcome::EpochOutcome;
use crate::prepare::{prepare, GroupReq, HostState, Prepared};

/// Largest number of orders [`solve`] accepts.
pub const MAX_EXACT_ORDERS: usize = 16;

/// Why the exact solver refused a market.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExactError {
    #[error(
        "{orders} orders is too many for the exact solver (at most {max}): use a smaller market"
    )]
    TooLarge { orders: usize, max: usize },
}

/// The optimum of a small market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactSolution {
    /// The objective `C` (see the module docs).
    pub cost: u128,
    pub filled: usize,
    pub total_price: u128,
    /// Per kept order (sorted by id): the winning bid, if any.
    pub choice: Vec<(Id, Option<Id>)>,
}

/// The objective `C` of a matcher outcome on the same input.
pub fn cost_of(outcome: &EpochOutcome, input: &EpochInput) -> u128 {
    let max: BTreeMap<Id, u128> =
        input.orders.iter().map(|(id, o)| (*id, o.max_price_per_hour.amount)).collect();
    let unmatched: u128 = outcome
        .unmatched
        .iter()
        .map(|u| max.get(&u.order_id).copied().unwrap_or(0))
        .fold(0, u128::saturating_add);
    outcome.total_price().saturating_add(unmatched)
}

/// One way to serve an order: a provider and its cheapest eligible bid.
#[derive(Debug, Clone, Copy)]
struct Option_ {
    provider: usize,
    price: u128,
    bid: u32,
}

struct Search<'p, 'a> {
    prep: &'p Prepared<'a>,
    /// DFS sequence of kept orders (indices into prep.orders).
    seq: Vec<usize>,
    options: Vec<Vec<Option_>>,
    /// Lower bound on the cost of orders seq[i..].
    tail_bound: Vec<u128>,
    /// Orders currently given to each provider (bit per position in seq).
    sets: Vec<u32>,
    feasible: HashMap<(usize, u32), bool>,
    chosen: Vec<Option<Option_>>,
    best_cost: u128,
    best: Vec<Option<Option_>>,
}

/// Finds the minimum-cost matching of a small market.
pub fn solve(input: &EpochInput) -> Result<ExactSolution, ExactError> {
    let prep = prepare(input);
    if prep.orders.len() > MAX_EXACT_ORDERS {
        return Err(ExactError::TooLarge { orders: prep.orders.len(), max: MAX_EXACT_ORDERS });
    }
    let mut options: Vec<Vec<Option_>> = Vec::new();
    for o in &prep.orders {
        let mut opts: Vec<Option_> = Vec::new();
        if o.satisfiable {
            for c in prep.cands_of(o) {
                if !opts.iter().any(|x| x.provider == c.provider as usize) {
                    opts.push(Option_ {
                        provider: c.provider as usize,
                        price: c.price,
                        bid: c.bid,
                    });
                }
            }
        }
        options.push(opts);
    }
    // Dearest orders first: the bound bites sooner.
    let mut seq: Vec<usize> = (0..prep.orders.len()).collect();
    seq.sort_by(|&a, &b| prep.orders[b].max_price.cmp(&prep.orders[a].max_price).then(a.cmp(&b)));
    let options: Vec<Vec<Option_>> = seq.iter().map(|&i| options[i].clone()).collect();
    let mut tail_bound = vec![0u128; seq.len() + 1];
    for i in (0..seq.len()).rev() {
        let o = &prep.orders[seq[i]];
        let cheapest = options[i].iter().map(|x| x.price).min().unwrap_or(o.max_price);
        tail_bound[i] = tail_bound[i + 1].saturating_add(cheapest.min(o.max_price));
    }
    let mut s = Search {
        prep: &prep,
        options,
        tail_bound,
        sets: vec![0; prep.providers.len()],
        feasible: HashMap::new(),
        chosen: vec![None; seq.len()],
        best_cost: u128::MAX,
        best: vec![None; seq.len()],
        seq,
    };
    s.dfs(0, 0);
    let mut choice: Vec<(Id, Option<Id>)> = prep.orders.iter().map(|o| (o.id, None)).collect();
    let (mut filled, mut total_price) = (0usize, 0u128);
    for (pos, c) in s.best.iter().enumerate() {
        if let Some(c) = c {
            choice[s.seq[pos]].1 = prep.bid(c.bid).map(|(id, _)| id);
            filled += 1;
            total_price = total_price.saturating_add(c.price);
        }
    }
    Ok(ExactSolution { cost: s.best_cost, filled, total_price, choice })
}

impl Search<'_, '_> {
    fn dfs(&mut self, pos: usize, cost: u128) {
        if cost.saturating_add(self.tail_bound[pos]) >= self.best_cost {
            return;
        }
        if pos == self.seq.len() {
            self.best_cost = cost;
            self.best = self.chosen.clone();
            return;
        }
        for i in 0..self.options[pos].len() {
            let opt = self.options[pos][i];
            let set = self.sets[opt.provider] | (1 << pos);
            if !self.fits(opt.provider, set) {
                continue;
            }
            let before = self.sets[opt.provider];
            self.sets[opt.provider] = set;
            self.chosen[pos] = Some(opt);
            self.dfs(pos + 1, cost.saturating_add(opt.price));
            self.chosen[pos] = None;
            self.sets[opt.provider] = before;
        }
        let max = self.prep.orders[self.seq[pos]].max_price;
        self.dfs(pos + 1, cost.saturating_add(max));
    }

    fn fits(&mut self, provider: usize, set: u32) -> bool {
        if let Some(&f) = self.feasible.get(&(provider, set)) {
            return f;
        }
        let mut items: Vec<(usize, &GroupReq)> = Vec::new();
        for pos in 0..self.seq.len() {
            if set & (1 << pos) != 0 {
                let o = &self.prep.orders[self.seq[pos]];
                for g in self.prep.groups_of(o) {
                    for _ in 0..g.count {
                        items.push((pos, g));
                    }
                }
            }
        }
        // Hardest first: GPUs, then CPU, then memory. Identical replicas stay adjacent.
        items.sort_by(|a, b| {
            let ga = a.1.gpu.as_ref().map_or(0, |x| x.units);
            let gb = b.1.gpu.as_ref().map_or(0, |x| x.units);
            gb.cmp(&ga)
                .then(b.1.cpu.cmp(&a.1.cpu))
                .then(b.1.mem.cmp(&a.1.mem))
                .then(a.0.cmp(&b.0))
                .then((a.1 as *const GroupReq).cmp(&(b.1 as *const GroupReq)))
        });
        let mut hosts: Vec<HostState<'_>> = self.prep.providers[provider].hosts.clone();
        let f = pack(&mut hosts, &items, 0, 0);
        self.feasible.insert((provider, set), f);
        f
    }
}

/// Exact bin packing by backtracking: places items[i..] on the hosts. `min_slot` breaks the
/// symmetry between identical adjacent replicas (they take slots in non-decreasing order).
fn pack(
    hosts: &mut [HostState<'_>],
    items: &[(usize, &GroupReq)],
    i: usize,
    min_slot: usize,
) -> bool {
    let Some(&(pos, g)) = items.get(i) else { return true };
    let same_as_next = |slot: usize| -> usize {
        match items.get(i + 1) {
            Some(&(p2, g2)) if p2 == pos && std::ptr::eq(g2, g) => slot,
            _ => 0,
        }
    };
    let width = hosts.iter().map(|h| h.pools.len() + 1).max().unwrap_or(1);
    for hi in 0..hosts.len() {
        if g.fit_without_gpus(&hosts[hi]) == 0 {
            continue;
        }
        match &g.gpu {
            None => {
                let slot = hi * width;
                if slot < min_slot {
                    continue;
                }
                g.take(&mut hosts[hi], 1);
                let ok = pack(hosts, items, i + 1, same_as_next(slot));
                g.give(&mut hosts[hi], 1);
                if ok {
                    return true;
                }
            }
            Some(req) => {
                for pi in 0..hosts[hi].pools.len() {
                    let slot = hi * width + pi + 1;
                    let pool = &hosts[hi].pools[pi];
                    if slot < min_slot || !req.accepts(pool) || pool.free < req.units {
                        continue;
                    }
                    hosts[hi].pools[pi].free -= req.units;
                    g.take(&mut hosts[hi], 1);
                    let ok = pack(hosts, items, i + 1, same_as_next(slot));
                    g.give(&mut hosts[hi], 1);
                    hosts[hi].pools[pi].free += req.units;
                    if ok {
                        return true;
                    }
                }
            }
        }
    }
    false
}
