//! Accrual: what a lease owes for a settlement period. Pure functions of the lease's terms, its
//! events, its provider's heartbeats, the cursor left by the previous batch, and `now`.
//!
//! # Rules
//! - A lease earns from its first `Running` event until it ends: `Closed`, `Failed` after
//!   Running (recorded as [`CloseReason::ProviderClosed`]: the lease broke on the provider's side),
//!   or the end of its term ([`CloseReason::TermEnded`]), whichever comes first. A lease that is
//!   closed or fails before it runs earns nothing and produces no record.
//! - Liveness: the Running event and every heartbeat of the provider are proofs of life. A gap
//!   between two proofs of life (or between the last one and the end, or `now`) of at most the
//!   order's grace period is paid; a longer gap ends the lease as
//!   [`CloseReason::ProviderSilent`] at the last proof of life. While a lease is open it accrues
//!   only up to its latest proof of life, so a tenant never pays for time after the provider
//!   went dark.
//! - Pro rata per second, rounded down, with the remainder carried: the amount owed from the
//!   start to time `t` is `floor(price_per_hour × whole_seconds(t − start) / 3600)`, and each
//!   batch charges that figure at its end minus what earlier batches already charged (kept in
//!   the [`AccrualCursor`]). However a lease is cut into batches, the amounts sum to exactly
//!   `floor(price × seconds / 3600)` of the whole lease: never more than price × duration, and
//!   at most one smallest unit less. A partial second is never charged.
//! - An event that arrives late, dated before a point the lease was already charged to, cannot
//!   claw money back: the next accrual is empty, never negative.

use leasemesh_protocol::{CloseReason, Coin, Id, LeaseEvent, LeaseEventKind, SettlementRecord};
use serde::{Deserialize, Serialize};

/// Milliseconds in a second and seconds in an hour: the units of the pro-rata rule.
const MS_PER_SECOND: u64 = 1000;
const SECONDS_PER_HOUR: u128 = 3600;

/// Who pays whom, how much, and for how long: from the order and its award.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTerms {
    pub lease_id: Id,
    pub order_id: Id,
    pub tenant_address: String,
    pub provider_address: String,
    /// The award's clearing price for the whole order, per hour.
    pub price_per_hour: Coin,
    /// From the order: the lease ends this long after it starts running.
    pub lease_term_ms: u64,
    /// From the order: a provider silent for longer than this stops earning.
    pub grace_period_ms: u64,
}

/// How and when a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEnd {
    pub at_ms: u64,
    pub reason: CloseReason,
}

/// A lease's events reduced to what accrual needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LeaseTimeline {
    /// The first Running event; `None` if the lease never ran (or failed or closed first).
    pub running_at_ms: Option<u64>,
    /// The first Closed or Failed event after Running.
    pub ended: Option<LeaseEnd>,
}

impl LeaseTimeline {
    /// Reads the events of `lease_id` (others are skipped) in time order, whatever order they
    /// come in. At the same millisecond, Running counts before Closed and Failed.
    pub fn from_events(lease_id: &Id, events: &[LeaseEvent]) -> LeaseTimeline {
        let rank = |k: &LeaseEventKind| match k {
            LeaseEventKind::ManifestAccepted => 0u8,
            LeaseEventKind::Running { .. } => 1,
            LeaseEventKind::Closed { .. } => 2,
            LeaseEventKind::Failed { .. } => 3,
        };
        let mut mine: Vec<&LeaseEvent> =
            events.iter().filter(|e| e.lease_id == *lease_id).collect();
        mine.sort_by_key(|e| (e.at_ms, rank(&e.kind)));
        let mut timeline = LeaseTimeline::default();
        for e in mine {
            match (&e.kind, timeline.running_at_ms) {
                (LeaseEventKind::ManifestAccepted, _) => {}
                (LeaseEventKind::Running { .. }, None) => timeline.running_at_ms = Some(e.at_ms),
                (LeaseEventKind::Running { .. }, Some(_)) => {}
                // Ended before it ran: the tenant pays nothing, ever.
                (LeaseEventKind::Closed { .. } | LeaseEventKind::Failed { .. }, None) => {
                    return LeaseTimeline::default();
                }
                (LeaseEventKind::Closed { reason }, Some(_)) => {
                    timeline.ended = Some(LeaseEnd { at_ms: e.at_ms, reason: *reason });
                    return timeline;
                }
                (LeaseEventKind::Failed { .. }, Some(_)) => {
                    timeline.ended =
                        Some(LeaseEnd { at_ms: e.at_ms, reason: CloseReason::ProviderClosed });
                    return timeline;
                }
            }
        }
        timeline
    }
}

/// What earlier batches already charged for a lease. The settler keeps one per open lease and
/// passes it to the next [`accrue`]; each [`LeaseAccrual`] carries the updated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccrualCursor {
    pub started_at_ms: u64,
    /// The lease is paid up to here (always a proof of life or the lease's end).
    pub accrued_to_ms: u64,
    /// Total charged so far, from `started_at_ms` to `accrued_to_ms`.
    pub accrued_amount: u128,
    /// The lease ended; it accrues nothing more.
    pub closed: bool,
}

/// One lease's part of one batch: its records and its cursor for the next batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAccrual {
    pub terms: LeaseTerms,
    /// `Some(start)` on the lease's first batch: the batch records that it opened.
    pub opened_at_ms: Option<u64>,
    pub from_ms: u64,
    pub to_ms: u64,
    /// Charged for `[from_ms, to_ms)`.
    pub amount: u128,
    /// `Some` if the lease ended in this period.
    pub closed: Option<LeaseEnd>,
    pub cursor: AccrualCursor,
}

impl LeaseAccrual {
    /// The lease's records for the batch: opened (first batch only), accrual (if time passed),
    /// closed (if it ended).
    pub fn records(&self) -> Vec<SettlementRecord> {
        let t = &self.terms;
        let mut out = Vec::with_capacity(3);
        if let Some(started_at_ms) = self.opened_at_ms {
            out.push(SettlementRecord::LeaseOpened {
                lease_id: t.lease_id,
                order_id: t.order_id,
                tenant_address: t.tenant_address.clone(),
                provider_address: t.provider_address.clone(),
                price_per_hour: t.price_per_hour.clone(),
                started_at_ms,
            });
        }
        if self.to_ms > self.from_ms {
            out.push(SettlementRecord::Accrual {
                lease_id: t.lease_id,
                tenant_address: t.tenant_address.clone(),
                provider_address: t.provider_address.clone(),
                denom: t.price_per_hour.denom.clone(),
                amount: self.amount,
                from_ms: self.from_ms,
                to_ms: self.to_ms,
            });
        }
        if let Some(end) = self.closed {
            out.push(SettlementRecord::LeaseClosed {
                lease_id: t.lease_id,
                closed_at_ms: end.at_ms,
                reason: end.reason,
            });
        }
        out
    }
}

/// Why a lease's accrual could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccrualError {
    #[error("lease {lease_id}: price {price} times {seconds} s does not fit in 128 bits")]
    Overflow { lease_id: Id, price: u128, seconds: u64 },
    #[error("lease {lease_id}: heartbeat times must be sorted ascending (at {at_ms} ms)")]
    HeartbeatsUnsorted { lease_id: Id, at_ms: u64 },
    #[error("lease {lease_id}: the cursor starts at {cursor_ms} ms but the lease ran at {running_ms} ms")]
    CursorMismatch { lease_id: Id, cursor_ms: u64, running_ms: u64 },
}

/// What the lease owes from its start to `t`: `floor(price × whole seconds / 3600)`.
pub fn owed_until(terms: &LeaseTerms, started_at_ms: u64, t_ms: u64) -> Result<u128, AccrualError> {
    let seconds = t_ms.saturating_sub(started_at_ms) / MS_PER_SECOND;
    let price = terms.price_per_hour.amount;
    price
        .checked_mul(u128::from(seconds))
        .map(|x| x / SECONDS_PER_HOUR)
        .ok_or(AccrualError::Overflow { lease_id: terms.lease_id, price, seconds })
}

/// Computes a lease's accrual for the period ending at `now_ms`.
///
/// `heartbeats_ms` are the times of the provider's heartbeats, sorted ascending (those outside
/// the lease are skipped). `cursor` is what the previous batch left, `None` on the lease's first.
/// Returns `None` when there is nothing to record: the lease never ran (or not yet), it was
/// already closed, or no time was paid since the last batch.
pub fn accrue(
    terms: &LeaseTerms,
    timeline: &LeaseTimeline,
    heartbeats_ms: &[u64],
    cursor: Option<&AccrualCursor>,
    now_ms: u64,
) -> Result<Option<LeaseAccrual>, AccrualError> {
    let Some(started) = timeline.running_at_ms else { return Ok(None) };
    if started > now_ms || cursor.is_some_and(|c| c.closed) {
        return Ok(None);
    }
    if let Some(c) = cursor {
        if c.started_at_ms != started {
            return Err(AccrualError::CursorMismatch {
                lease_id: terms.lease_id,
                cursor_ms: c.started_at_ms,
                running_ms: started,
            });
        }
    }
    let from = cursor.map_or(started, |c| c.accrued_to_ms.max(started));
    let already = cursor.map_or(0, |c| c.accrued_amount);
    let grace = terms.grace_period_ms;

    // The earliest known end as of `now`: an event, or the term running out.
    let term_end = LeaseEnd {
        at_ms: started.saturating_add(terms.lease_term_ms),
        reason: CloseReason::TermEnded,
    };
    let end = [timeline.ended, Some(term_end)]
        .into_iter()
        .flatten()
        .filter(|e| e.at_ms <= now_ms)
        .min_by_key(|e| e.at_ms);
    let limit = end.map_or(now_ms, |e| e.at_ms);

    // Walk the proofs of life after the point already paid, up to the limit.
    let mut last = from;
    let mut prev_seen = 0u64;
    let mut silent = false;
    let first = heartbeats_ms.partition_point(|&h| h <= from);
    for &h in &heartbeats_ms[first..] {
        if h < prev_seen {
            return Err(AccrualError::HeartbeatsUnsorted { lease_id: terms.lease_id, at_ms: h });
        }
        prev_seen = h;
        if h > limit {
            break;
        }
        if h - last > grace {
            silent = true;
            break;
        }
        last = h;
    }
    let silent_end = LeaseEnd { at_ms: last, reason: CloseReason::ProviderSilent };
    let (to, closed) = match end {
        _ if silent => (last, Some(silent_end)),
        Some(e) if e.at_ms.saturating_sub(last) > grace => (last, Some(silent_end)),
        // A late end dated before the point already paid: nothing more to charge.
        Some(e) => (e.at_ms.max(from), Some(e)),
        None if now_ms - last > grace => (last, Some(silent_end)),
        None => (last, None),
    };

    let owed = owed_until(terms, started, to)?;
    let amount = owed.saturating_sub(already);
    let opened_at_ms = cursor.is_none().then_some(started);
    if opened_at_ms.is_none() && to == from && closed.is_none() {
        return Ok(None);
    }
    Ok(Some(LeaseAccrual {
        terms: terms.clone(),
        opened_at_ms,
        from_ms: from,
        to_ms: to,
        amount,
        closed,
        cursor: AccrualCursor {
            started_at_ms: started,
            accrued_to_ms: to,
            accrued_amount: already.saturating_add(amount),
            closed: closed.is_some(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::Hash;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600_000;

    fn terms(price: u128) -> LeaseTerms {
        LeaseTerms {
            lease_id: Hash::domain("test/lease", &[b"1"]),
            order_id: Hash::domain("test/order", &[b"1"]),
            tenant_address: "tenant1".into(),
            provider_address: "provider1".into(),
            price_per_hour: Coin::new("uakt", price),
            lease_term_ms: 30 * 24 * HOUR,
            grace_period_ms: 60_000,
        }
    }

    fn running(at: u64) -> LeaseTimeline {
        LeaseTimeline { running_at_ms: Some(at), ended: None }
    }

    fn closed(run: u64, end: u64) -> LeaseTimeline {
        LeaseTimeline {
            running_at_ms: Some(run),
            ended: Some(LeaseEnd { at_ms: end, reason: CloseReason::TenantClosed }),
        }
    }

    /// Heartbeats every `every` ms from `from` to `to` inclusive.
    fn beats(from: u64, to: u64, every: u64) -> Vec<u64> {
        (0..).map(|i| from + i * every).take_while(|&t| t <= to).collect()
    }

    #[test]
    fn half_an_hour_costs_half_the_price() {
        let t = terms(450_000);
        let hb = beats(0, HOUR, 10_000);
        let a = accrue(&t, &closed(0, HOUR / 2), &hb, None, HOUR).unwrap().unwrap();
        assert_eq!(a.amount, 225_000);
        assert_eq!((a.from_ms, a.to_ms), (0, HOUR / 2));
        assert_eq!(a.opened_at_ms, Some(0));
        assert_eq!(a.closed.unwrap().reason, CloseReason::TenantClosed);
        assert_eq!(a.records().len(), 3);
    }

    #[test]
    fn partial_seconds_are_not_charged_and_rounding_is_down() {
        // 1 per hour for 3599.999 s: less than one unit owed.
        let t = terms(1);
        let hb = beats(0, HOUR, 1000);
        let a = accrue(&t, &closed(0, HOUR - 1), &hb, None, HOUR).unwrap().unwrap();
        assert_eq!(a.amount, 0);
        let a = accrue(&t, &closed(0, HOUR), &hb, None, HOUR).unwrap().unwrap();
        assert_eq!(a.amount, 1);
        // 7 per hour for 1000 s: floor(7000 / 3600) = 1.
        let t = terms(7);
        let a = accrue(&t, &closed(0, 1_000_500), &hb, None, HOUR).unwrap().unwrap();
        assert_eq!(a.amount, 1);
    }

    #[test]
    fn failed_or_closed_before_running_charges_nothing() {
        let t = terms(1000);
        let ev = |at, kind| LeaseEvent {
            version: 1,
            lease_id: t.lease_id,
            order_id: t.order_id,
            at_ms: at,
            kind,
        };
        let events = vec![
            ev(10, LeaseEventKind::ManifestAccepted),
            ev(20, LeaseEventKind::Failed { reason: "image".into() }),
            ev(30, LeaseEventKind::Running { endpoints: vec![] }),
        ];
        let tl = LeaseTimeline::from_events(&t.lease_id, &events);
        assert_eq!(tl, LeaseTimeline::default());
        assert_eq!(accrue(&t, &tl, &[], None, 10 * HOUR).unwrap(), None);

        // Out of order input, Failed after Running: charged up to the failure.
        let events = vec![
            ev(HOUR, LeaseEventKind::Failed { reason: "oom".into() }),
            ev(0, LeaseEventKind::Running { endpoints: vec![] }),
        ];
        let tl = LeaseTimeline::from_events(&t.lease_id, &events);
        assert_eq!(tl.running_at_ms, Some(0));
        assert_eq!(tl.ended.unwrap().reason, CloseReason::ProviderClosed);
        let a = accrue(&t, &tl, &beats(0, HOUR, 30_000), None, 2 * HOUR).unwrap().unwrap();
        assert_eq!(a.amount, 1000);
    }

    #[test]
    fn silence_longer_than_grace_stops_accrual_at_last_heartbeat() {
        let t = terms(3600);
        // Heartbeats every 10 s for 10 minutes, then nothing.
        let hb = beats(0, 600_000, 10_000);
        let a = accrue(&t, &running(0), &hb, None, HOUR).unwrap().unwrap();
        assert_eq!(a.to_ms, 600_000);
        assert_eq!(a.amount, 600);
        assert_eq!(
            a.closed,
            Some(LeaseEnd { at_ms: 600_000, reason: CloseReason::ProviderSilent })
        );
        // Nothing more later, even if heartbeats come back.
        let hb2 = beats(0, 2 * HOUR, 10_000);
        assert_eq!(accrue(&t, &running(0), &hb2, Some(&a.cursor), 2 * HOUR).unwrap(), None);

        // A gap in the middle longer than grace ends the lease there, even though it later
        // closes normally.
        let mut hb = beats(0, 100_000, 10_000);
        hb.extend(beats(300_000, HOUR, 10_000));
        let a = accrue(&t, &closed(0, HOUR), &hb, None, HOUR).unwrap().unwrap();
        assert_eq!(a.to_ms, 100_000);
        assert_eq!(a.closed.unwrap().reason, CloseReason::ProviderSilent);
    }

    #[test]
    fn open_lease_accrues_to_last_heartbeat_within_grace() {
        let t = terms(3600);
        let hb = beats(0, 595_000, 5_000);
        let a = accrue(&t, &running(0), &hb, None, 600_000).unwrap().unwrap();
        assert_eq!((a.to_ms, a.amount, a.closed), (595_000, 595, None));
        // Next batch picks up from there.
        let hb = beats(0, 1_200_000, 5_000);
        let b = accrue(&t, &running(0), &hb, Some(&a.cursor), 1_200_000).unwrap().unwrap();
        assert_eq!((b.from_ms, b.to_ms, b.amount, b.opened_at_ms), (595_000, 1_200_000, 605, None));
        assert_eq!(b.records().len(), 1);
        // No new heartbeat, no new record.
        assert_eq!(accrue(&t, &running(0), &hb, Some(&b.cursor), 1_210_000).unwrap(), None);
    }

    #[test]
    fn term_end_closes_the_lease() {
        let mut t = terms(3600);
        t.lease_term_ms = HOUR;
        let hb = beats(0, 3 * HOUR, 10_000);
        let a = accrue(&t, &running(0), &hb, None, 3 * HOUR).unwrap().unwrap();
        assert_eq!(a.closed, Some(LeaseEnd { at_ms: HOUR, reason: CloseReason::TermEnded }));
        assert_eq!(a.amount, 3600);
    }

    #[test]
    fn late_close_before_paid_point_charges_nothing_more() {
        let t = terms(3600);
        let hb = beats(0, 600_000, 10_000);
        let a = accrue(&t, &running(0), &hb, None, 600_000).unwrap().unwrap();
        let b = accrue(&t, &closed(0, 500_000), &hb, Some(&a.cursor), 700_000).unwrap().unwrap();
        assert_eq!((b.amount, b.from_ms, b.to_ms), (0, 600_000, 600_000));
        assert!(b.cursor.closed);
    }

    #[test]
    fn overflow_is_an_error() {
        let t = terms(u128::MAX / 2);
        let hb = beats(0, HOUR, 10_000);
        assert!(matches!(
            accrue(&t, &closed(0, HOUR), &hb, None, HOUR),
            Err(AccrualError::Overflow { .. })
        ));
    }

    proptest! {
        /// However a lease is cut into batches, the amounts sum to floor(price × s / 3600):
        /// never more than price × duration, never less by a unit or more.
        #[test]
        fn split_accrual_sums_exactly(
            price in 1u128..10_000_000_000_000u128,
            duration_ms in 0u64..(40 * HOUR),
            cuts in proptest::collection::vec(0u64..(40 * HOUR), 0..20),
        ) {
            let mut t = terms(price);
            t.grace_period_ms = 1_000;
            let hb = beats(0, duration_ms + HOUR, 1_000);
            let tl = closed(0, duration_ms);
            let mut cuts = cuts;
            cuts.push(duration_ms + HOUR);
            cuts.sort_unstable();
            let mut cursor: Option<AccrualCursor> = None;
            let mut total = 0u128;
            for now in cuts {
                if let Some(a) = accrue(&t, &tl, &hb, cursor.as_ref(), now).unwrap() {
                    total += a.amount;
                    prop_assert!(a.to_ms <= duration_ms);
                    cursor = Some(a.cursor);
                }
            }
            let secs = u128::from(duration_ms / 1000);
            prop_assert_eq!(total, price * secs / 3600);
            prop_assert!(total * 3_600_000 <= price * u128::from(duration_ms));
            prop_assert!(cursor.unwrap().closed);
        }

        /// With arbitrary heartbeats, the total never exceeds price × paid time, and paid time
        /// never passes the end.
        #[test]
        fn never_exceeds_price_times_duration(
            price in 1u128..1_000_000_000u128,
            end in 1_000u64..(10 * HOUR),
            mut hb in proptest::collection::vec(0u64..(12 * HOUR), 0..200),
            grace in 1_000u64..600_000,
            cuts in proptest::collection::vec(0u64..(12 * HOUR), 1..10),
        ) {
            hb.sort_unstable();
            let mut t = terms(price);
            t.grace_period_ms = grace;
            let tl = closed(0, end);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut cursor: Option<AccrualCursor> = None;
            let mut total = 0u128;
            for now in cuts {
                if let Some(a) = accrue(&t, &tl, &hb, cursor.as_ref(), now).unwrap() {
                    total += a.amount;
                    prop_assert!(a.to_ms <= end && a.from_ms <= a.to_ms);
                    cursor = Some(a.cursor);
                }
            }
            let paid_to = cursor.map_or(0, |c| c.accrued_to_ms);
            prop_assert!(total * 3_600_000 <= price * u128::from(paid_to));
            prop_assert!(total * 3_600_000 <= price * u128::from(end));
        }
    }
}
