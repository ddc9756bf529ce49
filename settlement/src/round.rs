//! One settlement round as rules without I/O: inputs and `now` in, a drafted batch out.
//!
//! 1. [`plan`]: what every lease owes as of `now`, from what a [`LeaseSource`] holds (leases,
//!    their counted events, their provider's proofs of life) and the cursors of the last
//!    anchored batch.
//! 2. The caller asks its backend what each (tenant, denom) of the plan can pay ([`Funds`]),
//!    and which order signers control the address they name ([`Plan::uncontrolled`]).
//! 3. [`draft`]: caps the plan to those funds ([`cap_to_funds_controlled`]), builds and signs the
//!    [`SettlementBatch`], and lists what must follow once it is anchored: the cursors to move,
//!    the [`Shortfall`]s, the settler's signed closes.
//! 4. While a batch is in flight its outputs wait beside its sequence; [`pending_fate`] says when
//!    they apply (the batch anchored) or go (it paid nothing).
//!
//! The caller owns the storage, the backend and the clock; nothing here reads them.

use std::collections::{BTreeMap, BTreeSet};

use leasemesh_protocol::{
    amount_serde, CloseReason, Coin, Hash, Id, Keypair, LeaseEvent, LeaseEventKind, Order,
    ProviderInfo, PublicKey, SettlementBatch, Signed,
};
use serde::{Deserialize, Serialize};

use crate::accrual::{
    accrue, AccrualCursor, AccrualError, LeaseAccrual, LeaseEnd, LeaseTerms, LeaseTimeline,
};
use crate::batch::{build_batch, BatchError, BatchHeader};

/// A lease as the settler needs it: who holds it, at what price, and whether it has started
/// (left `awarded`) or ended for everyone (its own close or failure is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub lease_id: Id,
    pub order_id: Id,
    pub provider: PublicKey,
    /// The order's signer, when the order is known here.
    pub tenant: Option<PublicKey>,
    pub price_per_hour: Coin,
    /// The lease went past `awarded` (a manifest was accepted, it ran, failed or closed).
    pub started: bool,
    /// The lease is closed or failed in the source.
    pub ended: bool,
}

/// A source could not be read. The source's own error is kept.
#[derive(Debug, thiserror::Error)]
#[error("lease source: {0}")]
pub struct SourceError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl SourceError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> SourceError {
        SourceError(Box::new(e))
    }
}

/// Where leases, their events and their providers' proofs of life come from (the node's store;
/// a map in tests).
pub trait LeaseSource {
    /// Every lease known here.
    fn leases(&self) -> Result<Vec<LeaseView>, SourceError>;
    fn order(&self, id: &Id) -> Result<Option<Signed<Order>>, SourceError>;
    /// The provider's latest info (its chain address).
    fn provider_info(
        &self,
        provider: &PublicKey,
    ) -> Result<Option<Signed<ProviderInfo>>, SourceError>;
    /// Every event stored for the lease, whoever signed it.
    fn lease_events(&self, lease: &Id) -> Result<Vec<Signed<LeaseEvent>>, SourceError>;
    /// The provider's proofs of life in `[from_ms, to_ms]`, ascending.
    fn proofs_of_life(
        &self,
        provider: &PublicKey,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<u64>, SourceError>;
}

/// Why a round could not be planned or drafted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("accrual: {0}")]
    Accrual(#[from] AccrualError),
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
}

/// The lease's terms from its order and its provider's info.
pub fn lease_terms(lease: &LeaseView, order: &Order, info: &ProviderInfo) -> LeaseTerms {
    LeaseTerms {
        lease_id: lease.lease_id,
        order_id: lease.order_id,
        tenant_address: order.tenant_address.clone(),
        provider_address: info.chain_address.clone(),
        price_per_hour: lease.price_per_hour.clone(),
        lease_term_ms: order.lease_term_ms,
        grace_period_ms: order.grace_period_ms,
    }
}

/// The events accrual may rely on: the provider's, the tenant's `Closed`, and a settler's
/// `Closed(InsufficientFunds)` or `Closed(ProviderSilent)`.
pub fn counted_events(
    lease: &LeaseView,
    settlers: &[PublicKey],
    events: Vec<Signed<LeaseEvent>>,
) -> Vec<LeaseEvent> {
    let settler_close = |k: &LeaseEventKind| {
        matches!(
            k,
            LeaseEventKind::Closed {
                reason: CloseReason::InsufficientFunds | CloseReason::ProviderSilent
            }
        )
    };
    events
        .into_iter()
        .filter(|e| {
            e.signer == lease.provider
                || (matches!(e.body.kind, LeaseEventKind::Closed { .. })
                    && Some(e.signer) == lease.tenant)
                || (settler_close(&e.body.kind) && settlers.contains(&e.signer))
        })
        .map(|e| e.body)
        .collect()
}

/// What every lease owes as of a time, and what the draft needs to know about each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub accruals: Vec<LeaseAccrual>,
    /// Lease → its order's signer.
    pub signers: BTreeMap<Id, PublicKey>,
    /// Leases that ended for everyone already (their own close or failure is stored).
    pub ended: BTreeSet<Id>,
}

impl Plan {
    /// What to ask the backend: every (tenant address, denom) of the plan.
    pub fn payers(&self) -> BTreeSet<(String, String)> {
        self.accruals
            .iter()
            .map(|a| (a.terms.tenant_address.clone(), a.terms.price_per_hour.denom.clone()))
            .collect()
    }

    /// The leases whose order's signer does not control the tenant address, by `controls`
    /// (an order whose signer is unknown counts as uncontrolled).
    pub fn uncontrolled<E>(
        &self,
        mut controls: impl FnMut(&str, &PublicKey) -> Result<bool, E>,
    ) -> Result<BTreeSet<Id>, E> {
        let mut out = BTreeSet::new();
        for a in &self.accruals {
            let lease = a.terms.lease_id;
            let ok = match self.signers.get(&lease) {
                Some(s) => controls(&a.terms.tenant_address, s)?,
                None => false,
            };
            if !ok {
                out.insert(lease);
            }
        }
        Ok(out)
    }
}

/// Plans a round as of `now_ms`. `cursor` gives each lease's cursor of the last anchored batch.
pub fn plan<S: LeaseSource + ?Sized>(
    source: &S,
    settlers: &[PublicKey],
    mut cursor: impl FnMut(&Id) -> Result<Option<AccrualCursor>, SourceError>,
    now_ms: u64,
) -> Result<Plan, RoundError> {
    let mut out = Plan::default();
    for lease in source.leases()? {
        if !lease.started {
            continue;
        }
        let cur = cursor(&lease.lease_id)?;
        if cur.is_some_and(|c| c.closed) {
            continue;
        }
        let Some(order) = source.order(&lease.order_id)? else { continue };
        let Some(info) = source.provider_info(&lease.provider)? else { continue };
        let terms = lease_terms(&lease, &order.body, &info.body);
        let events = counted_events(&lease, settlers, source.lease_events(&lease.lease_id)?);
        let timeline = LeaseTimeline::from_events(&lease.lease_id, &events);
        let Some(started) = timeline.running_at_ms else { continue };
        let beats = source.proofs_of_life(&lease.provider, started, now_ms)?;
        if let Some(a) = accrue(&terms, &timeline, &beats, cur.as_ref(), now_ms)? {
            out.signers.insert(lease.lease_id, order.signer);
            if lease.ended {
                out.ended.insert(lease.lease_id);
            }
            out.accruals.push(a);
        }
    }
    Ok(out)
}

/// What a tenant can pay, per (tenant address, denom).
pub type Funds = BTreeMap<(String, String), u128>;

/// A tenant short of funds: how much of its accruals each lease keeps. Pure and deterministic.
///
/// For each (tenant, denom) whose accruals sum to more than `funds` holds (no entry: nothing),
/// the funds are spread over its accruals in lease-id order, each capped at what it owes, and
/// each of those accruals ends at its `to_ms` with `InsufficientFunds` unless it already ended.
/// Returns, per capped accrual's index, `(owed, paid)`. Accruals of tenants that can pay are
/// left as they are, so the batch built from the result never spends more than `funds`.
pub fn cap_to_funds(accruals: &mut [LeaseAccrual], funds: &Funds) -> BTreeMap<usize, (u128, u128)> {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, a) in accruals.iter().enumerate() {
        let key = (a.terms.tenant_address.clone(), a.terms.price_per_hour.denom.clone());
        groups.entry(key).or_default().push(i);
    }
    let mut out = BTreeMap::new();
    for (key, mut idx) in groups {
        let owed = idx.iter().fold(0u128, |s, &i| s.saturating_add(accruals[i].amount));
        let mut left = funds.get(&key).copied().unwrap_or(0);
        if owed <= left {
            continue;
        }
        idx.sort_by_key(|&i| accruals[i].terms.lease_id);
        for i in idx {
            let a = &mut accruals[i];
            let owed = a.amount;
            let paid = owed.min(left);
            left -= paid;
            end_unpaid(a, owed - paid);
            out.insert(i, (owed, paid));
        }
    }
    out
}

/// Takes `unpaid` off an accrual and ends its lease for lack of funds (unless it already ended).
fn end_unpaid(a: &mut LeaseAccrual, unpaid: u128) {
    a.amount -= unpaid.min(a.amount);
    a.cursor.accrued_amount = a.cursor.accrued_amount.saturating_sub(unpaid);
    if a.closed.is_none() {
        a.closed = Some(LeaseEnd { at_ms: a.to_ms, reason: CloseReason::InsufficientFunds });
    }
    a.cursor.closed = true;
}

/// Like [`cap_to_funds`], with the leases in `uncontrolled` treated as having no funds at all:
/// each pays nothing and ends at its `to_ms` with `InsufficientFunds` (unless it had already
/// ended), even when it owed nothing yet, so it never runs unpaid. Returns `(owed, paid)` per
/// capped accrual's index, as [`cap_to_funds`] does.
pub fn cap_to_funds_controlled(
    accruals: &mut [LeaseAccrual],
    funds: &Funds,
    uncontrolled: &BTreeSet<Id>,
) -> BTreeMap<usize, (u128, u128)> {
    let (bad, good): (Vec<usize>, Vec<usize>) =
        (0..accruals.len()).partition(|&i| uncontrolled.contains(&accruals[i].terms.lease_id));
    let mut sub: Vec<LeaseAccrual> = good.iter().map(|&i| accruals[i].clone()).collect();
    let mut out: BTreeMap<usize, (u128, u128)> =
        cap_to_funds(&mut sub, funds).into_iter().map(|(j, v)| (good[j], v)).collect();
    for (j, a) in sub.into_iter().enumerate() {
        accruals[good[j]] = a;
    }
    for i in bad {
        let a = &mut accruals[i];
        let owed = a.amount;
        end_unpaid(a, owed);
        out.insert(i, (owed, 0));
    }
    out
}

/// A lease whose tenant could not pay all it owed in the batch that closed it. `unpaid` is
/// never charged later: the provider is paid `paid`, and the lease is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub lease_id: Id,
    pub tenant_address: String,
    pub provider_address: String,
    pub denom: String,
    /// What the lease accrued in that batch.
    #[serde(with = "amount_serde")]
    pub owed: u128,
    /// What the tenant paid of it.
    #[serde(with = "amount_serde")]
    pub paid: u128,
    /// `owed - paid`.
    #[serde(with = "amount_serde")]
    pub unpaid: u128,
    /// The batch that charged and closed the lease.
    pub batch_sequence: u64,
    /// The lease was charged up to here and ends here.
    pub closed_at_ms: u64,
    /// Hex of the settler's signed `Closed(InsufficientFunds)` event; `None` when the lease had
    /// already ended for another reason (its own close stands).
    pub close_hex: Option<String>,
}

/// Where the next batch goes: sequence 1 after [`Hash::ZERO`], or one past the anchored head.
pub fn next_header(settler: PublicKey, head: Option<(u64, Id)>, now_ms: u64) -> BatchHeader {
    let (sequence, prev_batch) = head.map_or((1, Hash::ZERO), |(s, id)| (s + 1, id));
    BatchHeader { settler, sequence, prev_batch, created_at_ms: now_ms }
}

/// A signed batch and what follows from it once anchored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub batch: Signed<SettlementBatch>,
    /// Every lease's cursor after this batch (applied once it is anchored).
    pub cursors: Vec<(Id, AccrualCursor)>,
    /// Leases whose tenant could not pay all it owed.
    pub shortfalls: Vec<Shortfall>,
    /// The settler's signed `Closed(ProviderSilent)` per lease still open, as `(lease, bytes)`
    /// in lease-id order.
    pub silent_closes: Vec<(Id, Vec<u8>)>,
    /// Leases this batch closes for provider silence, in accrual order.
    pub provider_silent: Vec<Id>,
    pub leases: usize,
}

/// Caps `plan` to `funds` (with `uncontrolled` leases paying nothing), builds the batch under
/// `header` and signs it and the settler's closes with `key`.
pub fn draft(
    mut plan: Plan,
    funds: &Funds,
    uncontrolled: &BTreeSet<Id>,
    header: &BatchHeader,
    key: &Keypair,
) -> Result<Draft, RoundError> {
    let capped = cap_to_funds_controlled(&mut plan.accruals, funds, uncontrolled);
    let accruals = &plan.accruals;
    let shortfalls = capped
        .into_iter()
        .map(|(i, (owed, paid))| shortfall_of(&accruals[i], owed, paid, header.sequence, key))
        .collect();
    let mut silent_closes = Vec::new();
    let mut provider_silent = Vec::new();
    for a in accruals {
        let Some(end) = a.closed.filter(|e| e.reason == CloseReason::ProviderSilent) else {
            continue;
        };
        provider_silent.push(a.terms.lease_id);
        if !plan.ended.contains(&a.terms.lease_id) {
            silent_closes.push((a.terms.lease_id, settler_close(a, end, key).encode()));
        }
    }
    silent_closes.sort_by_key(|(lease, _)| *lease);
    let batch = Signed::sign(build_batch(header, accruals)?, key);
    Ok(Draft {
        batch,
        cursors: accruals.iter().map(|a| (a.terms.lease_id, a.cursor)).collect(),
        shortfalls,
        silent_closes,
        provider_silent,
        leases: accruals.len(),
    })
}

/// The settler's signed close of an accrual's lease, dated when it ended.
pub fn settler_close(a: &LeaseAccrual, end: LeaseEnd, key: &Keypair) -> Signed<LeaseEvent> {
    let ev = LeaseEvent {
        version: leasemesh_protocol::v(),
        lease_id: a.terms.lease_id,
        order_id: a.terms.order_id,
        at_ms: end.at_ms,
        kind: LeaseEventKind::Closed { reason: end.reason },
    };
    Signed::sign(ev, key)
}

/// The record of a capped accrual, with the settler's signed close when the lease was still
/// open.
fn shortfall_of(
    a: &LeaseAccrual,
    owed: u128,
    paid: u128,
    sequence: u64,
    key: &Keypair,
) -> Shortfall {
    let close_hex = a
        .closed
        .filter(|e| e.reason == CloseReason::InsufficientFunds)
        .map(|end| hex::encode(settler_close(a, end, key).encode()));
    Shortfall {
        lease_id: a.terms.lease_id,
        tenant_address: a.terms.tenant_address.clone(),
        provider_address: a.terms.provider_address.clone(),
        denom: a.terms.price_per_hour.denom.clone(),
        owed,
        paid,
        unpaid: owed.saturating_sub(paid),
        batch_sequence: sequence,
        closed_at_ms: a.closed.map_or(a.to_ms, |e| e.at_ms),
        close_hex,
    }
}

/// What becomes of the outputs a pending batch left beside its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingFate {
    /// The batch is anchored: apply them.
    Anchored,
    /// The batch paid nothing (refused, its sequence freed, or superseded): drop them.
    Dropped,
    /// Still in flight: keep them.
    InFlight,
}

/// The fate of pending batch `sequence`, given whether the journal holds it anchored, the
/// journal's anchored head, and the sequence it has in flight.
pub fn pending_fate(
    sequence: u64,
    anchored: bool,
    head: u64,
    in_flight: Option<u64>,
) -> PendingFate {
    if anchored {
        PendingFate::Anchored
    } else if sequence <= head || in_flight != Some(sequence) {
        PendingFate::Dropped
    } else {
        PendingFate::InFlight
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::HashMap;

    use super::*;
    use crate::batch::verify_lease_proof;
    use leasemesh_protocol::{samples, SettlementRecord};

    fn accrual(lease: u8, tenant: &str, amount: u128, closed: Option<CloseReason>) -> LeaseAccrual {
        LeaseAccrual {
            terms: LeaseTerms {
                // Ids that sort as the numbers do.
                lease_id: Hash([lease; 32]),
                order_id: Hash::domain("test/order", &[&[lease]]),
                tenant_address: tenant.into(),
                provider_address: "p".into(),
                price_per_hour: Coin::new("uakt", 3600),
                lease_term_ms: 3_600_000,
                grace_period_ms: 60_000,
            },
            opened_at_ms: None,
            from_ms: 1000,
            to_ms: 5000,
            amount,
            closed: closed.map(|reason| LeaseEnd { at_ms: 4000, reason }),
            cursor: AccrualCursor {
                started_at_ms: 0,
                accrued_to_ms: 5000,
                accrued_amount: amount + 100,
                closed: closed.is_some(),
            },
        }
    }

    #[test]
    fn a_short_tenant_pays_what_it_has_in_lease_order_and_its_leases_end() {
        let mut accruals = vec![
            accrual(3, "poor", 40, None),
            accrual(1, "poor", 50, Some(CloseReason::TenantClosed)),
            accrual(2, "rich", 70, None),
            accrual(4, "poor", 0, None),
        ];
        let mut funds = Funds::new();
        funds.insert(("poor".into(), "uakt".into()), 60);
        funds.insert(("rich".into(), "uakt".into()), 70);
        let capped = cap_to_funds(&mut accruals, &funds);
        // Lease 1 comes first by id: paid in full; lease 3 gets the last 10; lease 4 nothing.
        assert_eq!(capped, BTreeMap::from([(0, (40, 10)), (1, (50, 50)), (3, (0, 0))]));
        assert_eq!(accruals.iter().map(|a| a.amount).collect::<Vec<_>>(), vec![10, 50, 70, 0]);
        // The rich tenant can pay exactly what it owes: untouched.
        assert_eq!(accruals[2], accrual(2, "rich", 70, None));
        // Still-open leases end where they were charged to; a lease that already ended keeps
        // its own reason. All are closed for good.
        let end = |a: &LeaseAccrual| a.closed.map(|e| (e.at_ms, e.reason));
        assert_eq!(end(&accruals[0]), Some((5000, CloseReason::InsufficientFunds)));
        assert_eq!(end(&accruals[1]), Some((4000, CloseReason::TenantClosed)));
        assert_eq!(end(&accruals[3]), Some((5000, CloseReason::InsufficientFunds)));
        assert!(accruals
            .iter()
            .filter(|a| a.terms.tenant_address == "poor")
            .all(|a| a.cursor.closed));
        assert_eq!(accruals[0].cursor.accrued_amount, 110, "the cursor counts what was charged");
        // Nothing known about a tenant: it can pay nothing.
        let mut lone = vec![accrual(9, "unknown", 1, None)];
        assert_eq!(cap_to_funds(&mut lone, &Funds::new()), BTreeMap::from([(0, (1, 0))]));
        // Zero owed with zero funds is not a shortfall.
        let mut free = vec![accrual(9, "unknown", 0, None)];
        assert!(cap_to_funds(&mut free, &Funds::new()).is_empty());
    }

    #[test]
    fn an_uncontrolled_lease_pays_nothing_and_ends_while_the_owner_pays_in_full() {
        // Lease 1 is the owner's; lease 2 names the same address but its order's signer does
        // not control it; lease 3 is uncontrolled and owes nothing yet.
        let mut accruals = vec![
            accrual(1, "victim", 40, None),
            accrual(2, "victim", 50, None),
            accrual(3, "victim", 0, None),
        ];
        let mut funds = Funds::new();
        funds.insert(("victim".into(), "uakt".into()), 60);
        let bad: BTreeSet<Id> =
            [accruals[1].terms.lease_id, accruals[2].terms.lease_id].into_iter().collect();
        let capped = cap_to_funds_controlled(&mut accruals, &funds, &bad);
        assert_eq!(capped, BTreeMap::from([(1, (50, 0)), (2, (0, 0))]));
        assert_eq!(accruals.iter().map(|a| a.amount).collect::<Vec<_>>(), vec![40, 0, 0]);
        assert_eq!(accruals[0], accrual(1, "victim", 40, None), "the owner's lease is untouched");
        for a in &accruals[1..] {
            assert_eq!(
                a.closed.map(|e| (e.at_ms, e.reason)),
                Some((5000, CloseReason::InsufficientFunds))
            );
            assert!(a.cursor.closed);
        }
        assert_eq!(accruals[1].cursor.accrued_amount, 100, "the cursor counts nothing charged");
        // Without uncontrolled leases it is exactly cap_to_funds.
        let mut a1 = vec![accrual(1, "t", 40, None), accrual(2, "t", 50, None)];
        let mut a2 = a1.clone();
        assert_eq!(
            cap_to_funds_controlled(&mut a1, &funds, &BTreeSet::new()),
            cap_to_funds(&mut a2, &funds)
        );
        assert_eq!(a1, a2);
    }

    #[test]
    fn a_pending_batch_applies_once_anchored_and_goes_when_it_paid_nothing() {
        assert_eq!(pending_fate(5, true, 5, None), PendingFate::Anchored);
        assert_eq!(pending_fate(5, false, 4, Some(5)), PendingFate::InFlight);
        // Refused: its sequence was freed and nothing is in flight.
        assert_eq!(pending_fate(5, false, 4, None), PendingFate::Dropped);
        // Superseded by another batch in flight, or below the head without being anchored.
        assert_eq!(pending_fate(5, false, 4, Some(6)), PendingFate::Dropped);
        assert_eq!(pending_fate(5, false, 5, Some(5)), PendingFate::Dropped);
    }

    /// The node's store, as a map.
    #[derive(Default)]
    struct Memory {
        leases: Vec<LeaseView>,
        orders: HashMap<Id, Signed<Order>>,
        infos: HashMap<PublicKey, Signed<ProviderInfo>>,
        events: HashMap<Id, Vec<Signed<LeaseEvent>>>,
        beats: HashMap<PublicKey, Vec<u64>>,
    }

    impl LeaseSource for Memory {
        fn leases(&self) -> Result<Vec<LeaseView>, SourceError> {
            Ok(self.leases.clone())
        }
        fn order(&self, id: &Id) -> Result<Option<Signed<Order>>, SourceError> {
            Ok(self.orders.get(id).cloned())
        }
        fn provider_info(
            &self,
            p: &PublicKey,
        ) -> Result<Option<Signed<ProviderInfo>>, SourceError> {
            Ok(self.infos.get(p).cloned())
        }
        fn lease_events(&self, lease: &Id) -> Result<Vec<Signed<LeaseEvent>>, SourceError> {
            Ok(self.events.get(lease).cloned().unwrap_or_default())
        }
        fn proofs_of_life(
            &self,
            p: &PublicKey,
            from: u64,
            to: u64,
        ) -> Result<Vec<u64>, SourceError> {
            let all = self.beats.get(p).cloned().unwrap_or_default();
            Ok(all.into_iter().filter(|t| (from..=to).contains(t)).collect())
        }
    }

    fn event(key: &Keypair, kind: LeaseEventKind, at_ms: u64) -> Signed<LeaseEvent> {
        let a = samples::award();
        let ev = LeaseEvent {
            version: leasemesh_protocol::v(),
            lease_id: a.lease_id(),
            order_id: a.order_id,
            at_ms,
            kind,
        };
        Signed::sign(ev, key)
    }

    /// The sample lease, running from `t0`, its provider beating every second for 10 s.
    fn one_lease(t0: u64) -> Memory {
        let order = samples::signed_order();
        let award = samples::award();
        let provider = samples::provider_key();
        let mut m = Memory::default();
        m.leases.push(LeaseView {
            lease_id: award.lease_id(),
            order_id: order.id(),
            provider: provider.public(),
            tenant: Some(order.signer),
            price_per_hour: Coin::new("uakt", 3_600_000), // 1000 a second
            started: true,
            ended: false,
        });
        m.orders.insert(order.id(), order);
        m.infos.insert(provider.public(), Signed::sign(samples::provider_info(), &provider));
        let running = event(&provider, LeaseEventKind::Running { endpoints: vec![] }, t0);
        // A tenant may not say its lease runs: not counted.
        let fake = event(&samples::tenant_key(), LeaseEventKind::Running { endpoints: vec![] }, 0);
        m.events.insert(award.lease_id(), vec![fake, running]);
        m.beats.insert(provider.public(), (1..=10).map(|i| t0 + i * 1000).collect());
        m
    }

    #[test]
    fn a_round_is_planned_and_drafted_from_an_in_memory_source() {
        let t0 = samples::SAMPLE_TIME_MS + 1000;
        let m = one_lease(t0);
        let settler = samples::settler_key();
        let lease = m.leases[0].lease_id;
        let tenant = m.orders.values().next().unwrap().body.tenant_address.clone();
        let no_cursor = |_: &Id| Ok(None);
        let p = plan(&m, &[settler.public()], no_cursor, t0 + 5_000).unwrap();
        assert_eq!(p.accruals.len(), 1);
        assert_eq!(p.accruals[0].amount, 5_000, "5 s at 1000 a second");
        assert_eq!(p.payers(), BTreeSet::from([(tenant.clone(), "uakt".to_string())]));
        let mut funds = Funds::new();
        funds.insert((tenant.clone(), "uakt".into()), 1_000_000);
        let uncontrolled = p.uncontrolled(|_, _| Ok::<_, SourceError>(true)).unwrap();
        let header = next_header(settler.public(), None, t0 + 5_000);
        let d = draft(p.clone(), &funds, &uncontrolled, &header, &settler).unwrap();
        assert_eq!(d.batch.body.sequence, 1);
        assert_eq!(d.batch.body.prev_batch, Hash::ZERO);
        assert!(d.batch.verify().is_ok());
        assert!(d.shortfalls.is_empty() && d.silent_closes.is_empty());
        assert_eq!(d.cursors, vec![(lease, p.accruals[0].cursor)]);
        let proof = crate::batch::prove_lease(&d.batch.body, &lease).unwrap();
        assert!(verify_lease_proof(&proof, &d.batch.body.merkle_root));

        // Same inputs, same bytes: another settler holding the same data drafts the same batch.
        let again = draft(p.clone(), &funds, &uncontrolled, &header, &settler).unwrap();
        assert_eq!(again.batch.encode(), d.batch.encode());

        // The next round starts from the cursor: only the new 5 s.
        let cur = d.cursors[0].1;
        let next = plan(&m, &[settler.public()], |_| Ok(Some(cur)), t0 + 10_000).unwrap();
        assert_eq!(next.accruals[0].amount, 5_000);

        // Poor: pays 1200, its lease ends with a signed close.
        funds.insert((tenant.clone(), "uakt".into()), 1_200);
        let d = draft(p.clone(), &funds, &uncontrolled, &header, &settler).unwrap();
        assert_eq!(d.shortfalls.len(), 1);
        assert_eq!((d.shortfalls[0].owed, d.shortfalls[0].paid), (5_000, 1_200));
        assert!(d.shortfalls[0].close_hex.is_some());
        assert!(d.cursors[0].1.closed);

        // An order signer that does not control the address pays nothing.
        let bad = p.uncontrolled(|_, _| Ok::<_, SourceError>(false)).unwrap();
        let d = draft(p, &funds, &bad, &header, &settler).unwrap();
        assert_eq!(d.shortfalls[0].paid, 0);
        assert!(crate::batch::payments(&d.batch.body).is_empty(), "nothing moves");
    }

    #[test]
    fn a_silent_provider_is_charged_to_its_last_beat_and_closed() {
        let t0 = samples::SAMPLE_TIME_MS + 1000;
        let mut m = one_lease(t0);
        let grace = samples::order().grace_period_ms;
        let settler = samples::settler_key();
        let now = t0 + 10_000 + grace + 1;
        let p = plan(&m, &[settler.public()], |_| Ok(None), now).unwrap();
        let mut funds = Funds::new();
        funds.insert((p.accruals[0].terms.tenant_address.clone(), "uakt".into()), u128::MAX);
        let header = next_header(settler.public(), Some((3, Hash([9; 32]))), now);
        let d = draft(p, &funds, &BTreeSet::new(), &header, &settler).unwrap();
        assert_eq!(header.sequence, 4);
        assert_eq!(d.provider_silent, vec![m.leases[0].lease_id]);
        assert_eq!(
            d.batch
                .body
                .records
                .iter()
                .filter(|r| matches!(r, SettlementRecord::Accrual { amount: 10_000, .. }))
                .count(),
            1
        );
        let close = Signed::<LeaseEvent>::decode_verified(&d.silent_closes[0].1).unwrap();
        assert_eq!(close.body.at_ms, t0 + 10_000, "dated at the last proof of life");
        assert_eq!(close.signer, settler.public());
        // A lease whose own close is stored gets no settler close.
        m.leases[0].ended = true;
        let p = plan(&m, &[settler.public()], |_| Ok(None), now).unwrap();
        let d = draft(p, &funds, &BTreeSet::new(), &header, &settler).unwrap();
        assert_eq!(d.provider_silent.len(), 1);
        assert!(d.silent_closes.is_empty());
    }
}
