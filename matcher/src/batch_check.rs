//! One epoch's match batch: what the leader gathers and signs, and what every node checks.
//!
//! The inputs of epoch `e` are
//! - the orders whose auctions close in `e`,
//! - their bids made no later than the auction's close and still valid at it,
//! - for every provider that bid, its provider info with the highest sequence among those
//!   created no later than the end of `e` (the capacity it declared as the epoch closed).
//!
//! A node accepts a batch only if its signer may lead the epoch (see [`crate::epoch`]), every
//! input it names belongs to the epoch by those rules, and the matcher, re-run on exactly the
//! named inputs, gives the same awards and outcome digest. Inputs the node lacks are reported
//! as [`CheckError::Missing`] so the caller can fetch them by id and check again.
//!
//! Nothing here does I/O: inputs come through the [`Inputs`] lookup.

use std::collections::{BTreeMap, BTreeSet};

use leasemesh_protocol::{
    Bid, Id, Keypair, MatchBatch, Order, ProviderInfo, PublicKey, Signed, BPS_ONE,
};

use crate::epoch::{check_turn, EpochClock, TurnError};
use crate::{match_epoch, verify_batch, EpochInput, MismatchError};

/// The inputs could not be read (a store error): the batch is neither accepted nor judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the batch's inputs: {0}")]
pub struct InputsError(pub String);

/// Where a check looks inputs up by id. `Ok(None)`: not held here (the caller may fetch it);
/// `Err`: the lookup failed, which is not the same as missing.
pub trait Inputs {
    fn order(&self, id: &Id) -> Result<Option<Signed<Order>>, InputsError>;
    fn bid(&self, id: &Id) -> Result<Option<Signed<Bid>>, InputsError>;
    fn provider_info(&self, id: &Id) -> Result<Option<Signed<ProviderInfo>>, InputsError>;
}

/// Whether a bid counts for its order's auction: made by the close, still valid at it.
pub fn bid_counts(order: &Order, bid: &Bid) -> bool {
    let close = order.auction_closes_at_ms();
    bid.created_at_ms <= close && bid.expires_at_ms > close
}

/// The inputs of one epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochInputs {
    pub orders: Vec<Signed<Order>>,
    pub bids: Vec<Signed<Bid>>,
    pub provider_infos: Vec<Signed<ProviderInfo>>,
}

impl EpochInputs {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Uptime: no anchored history is derived yet, so every provider with a snapshot in the
    /// epoch counts as 100 %. Derived from the inputs only, so leader and verifiers agree.
    fn matcher_input(&self) -> EpochInput {
        let uptime: BTreeMap<PublicKey, u16> =
            self.provider_infos.iter().map(|p| (p.body.provider, BPS_ONE)).collect();
        EpochInput::from_signed(&self.orders, &self.bids, &self.provider_infos, uptime)
    }
}

/// Picks epoch `e`'s inputs from candidates: `orders` (any), `bids_of(order id)`, and
/// `snapshot_as_of(provider, ms)`. The first lookup that fails fails the gathering.
pub fn gather<E>(
    clock: &EpochClock,
    e: u64,
    orders: Vec<Signed<Order>>,
    mut bids_of: impl FnMut(&Id) -> Result<Vec<Signed<Bid>>, E>,
    mut snapshot_as_of: impl FnMut(&PublicKey, u64) -> Result<Option<Signed<ProviderInfo>>, E>,
) -> Result<EpochInputs, E> {
    let mut out = EpochInputs::default();
    let mut providers = BTreeSet::new();
    for o in orders {
        if clock.order_epoch(&o.body) != e {
            continue;
        }
        let id = o.id();
        for b in bids_of(&id)? {
            if b.body.order_id == id && bid_counts(&o.body, &b.body) {
                providers.insert(b.body.provider);
                out.bids.push(b);
            }
        }
        out.orders.push(o);
    }
    let end = clock.end_ms(e);
    for p in &providers {
        if let Some(info) = snapshot_as_of(p, end)? {
            out.provider_infos.push(info);
        }
    }
    Ok(out)
}

/// Runs the matcher and signs the epoch's batch.
pub fn build_batch(
    key: &Keypair,
    e: u64,
    prev_batch: Id,
    now_ms: u64,
    inputs: &EpochInputs,
) -> Signed<MatchBatch> {
    let outcome = match_epoch(&inputs.matcher_input());
    Signed::sign(
        MatchBatch {
            version: leasemesh_protocol::v(),
            epoch: e,
            settler: key.public(),
            prev_batch,
            created_at_ms: now_ms,
            order_ids: outcome.order_ids,
            bid_ids: outcome.bid_ids,
            provider_info_ids: outcome.provider_info_ids,
            awards: outcome.awards,
            outcome_digest: outcome.digest,
        },
        key,
    )
}

/// Ids a node lacks to check a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    pub orders: Vec<Id>,
    pub bids: Vec<Id>,
    pub provider_infos: Vec<Id>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.bids.is_empty() && self.provider_infos.is_empty()
    }

    pub fn total(&self) -> usize {
        self.orders.len() + self.bids.len() + self.provider_infos.len()
    }
}

/// Why a batch is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    #[error(transparent)]
    Turn(#[from] TurnError),
    #[error(transparent)]
    Inputs(#[from] InputsError),
    #[error("{} inputs are missing here ({} orders, {} bids, {} provider infos)", .0.total(), .0.orders.len(), .0.bids.len(), .0.provider_infos.len())]
    Missing(Missing),
    #[error("order {order} closes in epoch {order_epoch}, not in the batch's epoch {epoch}")]
    OrderEpoch { order: Id, order_epoch: u64, epoch: u64 },
    #[error("bid {bid} does not count for its auction (made after the close, expired at it, or for an order not in the batch)")]
    BidOutOfAuction { bid: Id },
    #[error("provider info {info} was created at {created_ms} ms, after epoch {epoch} closed at {end_ms} ms")]
    SnapshotAfterClose { info: Id, created_ms: u64, end_ms: u64, epoch: u64 },
    #[error("a stored input does not hash to its id {0}")]
    WrongId(Id),
    #[error(transparent)]
    Mismatch(#[from] MismatchError),
}

impl CheckError {
    /// Metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            CheckError::Turn(TurnError::NotASettler { .. }) => "not_a_settler",
            CheckError::Turn(_) => "too_early",
            CheckError::Missing(_) => "missing_inputs",
            CheckError::Inputs(_) => "inputs_unreadable",
            CheckError::OrderEpoch { .. } => "order_epoch",
            CheckError::BidOutOfAuction { .. } => "bid_out_of_auction",
            CheckError::SnapshotAfterClose { .. } => "snapshot_after_close",
            CheckError::WrongId(_) => "wrong_id",
            CheckError::Mismatch(MismatchError::Inputs { .. }) => "inputs_mismatch",
            CheckError::Mismatch(MismatchError::Awards { .. }) => "awards_mismatch",
            CheckError::Mismatch(_) => "digest_mismatch",
        }
    }
}

/// Checks a (signature-verified) batch against the genesis rules and the matcher.
pub fn check_batch(
    clock: &EpochClock,
    settlers: &[PublicKey],
    batch: &Signed<MatchBatch>,
    inputs: &impl Inputs,
    now_ms: u64,
) -> Result<(), CheckError> {
    let b = &batch.body;
    check_turn(clock, settlers, b.epoch, &batch.signer, now_ms)?;
    let mut missing = Missing::default();
    let mut have = EpochInputs::default();
    for id in &b.order_ids {
        match inputs.order(id)? {
            Some(o) => have.orders.push(o),
            None => missing.orders.push(*id),
        }
    }
    for id in &b.bid_ids {
        match inputs.bid(id)? {
            Some(x) => have.bids.push(x),
            None => missing.bids.push(*id),
        }
    }
    for id in &b.provider_info_ids {
        match inputs.provider_info(id)? {
            Some(x) => have.provider_infos.push(x),
            None => missing.provider_infos.push(*id),
        }
    }
    if !missing.is_empty() {
        return Err(CheckError::Missing(missing));
    }
    for o in &have.orders {
        let order_epoch = clock.order_epoch(&o.body);
        if order_epoch != b.epoch {
            return Err(CheckError::OrderEpoch { order: o.id(), order_epoch, epoch: b.epoch });
        }
    }
    let orders: BTreeMap<Id, &Order> = have.orders.iter().map(|o| (o.id(), &o.body)).collect();
    for x in &have.bids {
        let counts = orders.get(&x.body.order_id).is_some_and(|o| bid_counts(o, &x.body));
        if !counts {
            return Err(CheckError::BidOutOfAuction { bid: x.id() });
        }
    }
    let end_ms = clock.end_ms(b.epoch);
    for p in &have.provider_infos {
        if p.body.created_at_ms > end_ms {
            return Err(CheckError::SnapshotAfterClose {
                info: p.id(),
                created_ms: p.body.created_at_ms,
                end_ms,
                epoch: b.epoch,
            });
        }
    }
    verify_batch(b, &have.matcher_input())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::HashMap;

    use super::*;
    use leasemesh_protocol::{samples, Coin};

    const CLOCK: EpochClock =
        EpochClock { epoch_ms: 1000, settle_delay_ms: 300, leader_timeout_ms: 2000 };

    #[derive(Default)]
    struct Bag {
        orders: HashMap<Id, Signed<Order>>,
        bids: HashMap<Id, Signed<Bid>>,
        infos: HashMap<Id, Signed<ProviderInfo>>,
    }

    impl Inputs for Bag {
        fn order(&self, id: &Id) -> Result<Option<Signed<Order>>, InputsError> {
            Ok(self.orders.get(id).cloned())
        }
        fn bid(&self, id: &Id) -> Result<Option<Signed<Bid>>, InputsError> {
            Ok(self.bids.get(id).cloned())
        }
        fn provider_info(&self, id: &Id) -> Result<Option<Signed<ProviderInfo>>, InputsError> {
            Ok(self.infos.get(id).cloned())
        }
    }

    /// A store that fails every read.
    struct Broken;

    impl Inputs for Broken {
        fn order(&self, _: &Id) -> Result<Option<Signed<Order>>, InputsError> {
            Err(InputsError("disk on fire".into()))
        }
        fn bid(&self, _: &Id) -> Result<Option<Signed<Bid>>, InputsError> {
            Err(InputsError("disk on fire".into()))
        }
        fn provider_info(&self, _: &Id) -> Result<Option<Signed<ProviderInfo>>, InputsError> {
            Err(InputsError("disk on fire".into()))
        }
    }

    /// One order, three providers bidding 300, 100 (cheapest) and 200.
    fn market() -> (Bag, Signed<Order>) {
        let order = samples::signed_order();
        let close = order.body.auction_closes_at_ms();
        let mut bag = Bag::default();
        bag.orders.insert(order.id(), order.clone());
        for (i, price) in [300u128, 100, 200].into_iter().enumerate() {
            let key = Keypair::from_seed_label(&format!("provider-{i}"));
            let mut info = samples::provider_info();
            info.provider = key.public();
            info.created_at_ms = close - 50;
            let info = Signed::sign(info, &key);
            bag.infos.insert(info.id(), info);
            let mut bid = samples::bid();
            bid.provider = key.public();
            bid.price_per_hour = Coin::new(order.body.max_price_per_hour.denom.clone(), price);
            bid.created_at_ms = close - 10;
            bid.expires_at_ms = close + 60_000;
            let bid = Signed::sign(bid, &key);
            bag.bids.insert(bid.id(), bid);
        }
        (bag, order)
    }

    fn gather_from(bag: &Bag, e: u64) -> EpochInputs {
        let r: Result<EpochInputs, InputsError> = gather(
            &CLOCK,
            e,
            bag.orders.values().cloned().collect(),
            |id| Ok(bag.bids.values().filter(|b| b.body.order_id == *id).cloned().collect()),
            |p, at| {
                Ok(bag
                    .infos
                    .values()
                    .filter(|i| i.body.provider == *p && i.body.created_at_ms <= at)
                    .max_by_key(|i| i.body.sequence)
                    .cloned())
            },
        );
        r.unwrap()
    }

    #[test]
    fn leader_batch_awards_the_cheapest_and_verifies_elsewhere() {
        let (bag, order) = market();
        let settler = samples::settler_key();
        let settlers = vec![settler.public()];
        let e = CLOCK.order_epoch(&order.body);
        let inputs = gather_from(&bag, e);
        assert_eq!(
            (inputs.orders.len(), inputs.bids.len(), inputs.provider_infos.len()),
            (1, 3, 3)
        );
        let now = CLOCK.turn_starts_ms(e, 0);
        let batch = build_batch(&settler, e, Id::ZERO, now, &inputs);
        assert_eq!(batch.body.awards.len(), 1);
        assert_eq!(batch.body.awards[0].price_per_hour.amount, 100);
        check_batch(&CLOCK, &settlers, &batch, &bag, now).unwrap();
        // Another epoch has no inputs.
        assert!(gather_from(&bag, e + 1).is_empty());
    }

    #[test]
    fn tampered_or_incomplete_batches_are_refused() {
        let (bag, order) = market();
        let settler = samples::settler_key();
        let settlers = vec![settler.public()];
        let e = CLOCK.order_epoch(&order.body);
        let now = CLOCK.turn_starts_ms(e, 0);
        let good = build_batch(&settler, e, Id::ZERO, now, &gather_from(&bag, e));

        // The award moved to a dearer bid, re-signed by the real settler.
        let mut body = good.body.clone();
        let dear = bag.bids.values().find(|b| b.body.price_per_hour.amount == 300).unwrap();
        body.awards[0].bid_id = dear.id();
        body.awards[0].provider = dear.body.provider;
        body.awards[0].price_per_hour = dear.body.price_per_hour.clone();
        let bad = Signed::sign(body, &settler);
        let err = check_batch(&CLOCK, &settlers, &bad, &bag, now).unwrap_err();
        assert_eq!(err.label(), "awards_mismatch", "{err}");

        // Signed by someone outside the genesis.
        let stranger = Signed::sign(good.body.clone(), &Keypair::from_seed_label("x"));
        let err = check_batch(&CLOCK, &settlers, &stranger, &bag, now).unwrap_err();
        assert_eq!(err.label(), "not_a_settler");

        // A node without a bid asks for it instead of judging.
        let partial =
            Bag { orders: bag.orders.clone(), infos: bag.infos.clone(), ..Default::default() };
        match check_batch(&CLOCK, &settlers, &good, &partial, now) {
            Err(CheckError::Missing(m)) => assert_eq!((m.orders.len(), m.bids.len()), (0, 3)),
            other => panic!("{other:?}"),
        }

        // A store that cannot be read is not a store that lacks the inputs.
        match check_batch(&CLOCK, &settlers, &good, &Broken, now) {
            Err(CheckError::Inputs(e)) => assert!(e.0.contains("disk on fire")),
            other => panic!("{other:?}"),
        }
        let failing: Result<EpochInputs, &str> = gather(
            &CLOCK,
            e,
            bag.orders.values().cloned().collect(),
            |_| Err("bids unreadable"),
            |_, _| Ok(None),
        );
        assert_eq!(failing, Err("bids unreadable"));

        // The wrong epoch.
        let mut body = good.body.clone();
        body.epoch += 1;
        let moved = Signed::sign(body, &settler);
        let err = check_batch(&CLOCK, &settlers, &moved, &bag, CLOCK.turn_starts_ms(e + 1, 0))
            .unwrap_err();
        assert_eq!(err.label(), "order_epoch");
    }

    #[test]
    fn late_bids_and_late_snapshots_do_not_count() {
        let (mut bag, order) = market();
        let close = order.body.auction_closes_at_ms();
        let key = Keypair::from_seed_label("late");
        let mut late = samples::bid();
        late.provider = key.public();
        late.price_per_hour = Coin::new(order.body.max_price_per_hour.denom.clone(), 1);
        late.created_at_ms = close + 1;
        late.expires_at_ms = close + 60_000;
        let late = Signed::sign(late, &key);
        bag.bids.insert(late.id(), late.clone());
        let e = CLOCK.order_epoch(&order.body);
        let inputs = gather_from(&bag, e);
        assert!(!inputs.bids.contains(&late));

        // A leader that slips the late bid in is caught.
        let settler = samples::settler_key();
        let mut with_late = inputs.clone();
        with_late.bids.push(late);
        let now = CLOCK.turn_starts_ms(e, 0);
        let batch = build_batch(&settler, e, Id::ZERO, now, &with_late);
        let err = check_batch(&CLOCK, &[settler.public()], &batch, &bag, now).unwrap_err();
        assert_eq!(err.label(), "bid_out_of_auction");

        // A snapshot from after the epoch is not used by the leader.
        let p = inputs.provider_infos[0].clone();
        let pkey = Keypair::from_seed_label("provider-0");
        let mut newer = p.body.clone();
        newer.sequence += 1;
        newer.created_at_ms = CLOCK.end_ms(e) + 1;
        if newer.provider == pkey.public() {
            let newer = Signed::sign(newer, &pkey);
            bag.infos.insert(newer.id(), newer.clone());
            assert!(!gather_from(&bag, e).provider_infos.contains(&newer));
        }
    }
}
