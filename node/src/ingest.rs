//! The validation pipeline every incoming object goes through, whether it came by gossip, pull
//! sync or the HTTP API: size → decode → duplicate → signature (batch-verified when several are
//! queued) → semantics (time window, known order, price ≤ max, lease signer) → store → event.
//!
//! It is synchronous and blocking (signature checks and sled writes): the network service runs it
//! on blocking worker threads, never on the swarm task. It knows nothing of libp2p; the verdict it
//! returns maps onto gossipsub's Accept / Reject / Ignore.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use leasemesh_protocol::{
    verify_all, Bid, CloseReason, DecodeError, Heartbeat, Id, LeaseEvent, LeaseEventKind,
    MatchBatch, Order, ProviderInfo, PublicKey, Signable, Signed, TimeError,
};
use tokio::sync::broadcast;

use crate::events::NodeEvent;
use crate::store::{LeaseRecord, LeaseState, Store, StoreError};

/// The kinds of object the node ingests; one per gossip topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Order,
    Bid,
    ProviderInfo,
    Heartbeat,
    MatchBatch,
    LeaseEvent,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Bid => "bid",
            Kind::ProviderInfo => "provider_info",
            Kind::Heartbeat => "heartbeat",
            Kind::MatchBatch => "match_batch",
            Kind::LeaseEvent => "lease_event",
        }
    }
}

/// Why an object was accepted, refused or set aside. `as_str` is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    Ok,
    TooLarge,
    Malformed,
    BadSignature,
    Invalid,
    WrongSigner,
    PriceOverMax,
    FromTheFuture,
    Expired,
    Duplicate,
    Stale,
    UnknownOrder,
    UnknownLease,
    BatchMismatch,
    RateLimited,
    QueueFull,
    Store,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::BadSignature => "bad_signature",
            Reason::Invalid => "invalid",
            Reason::WrongSigner => "wrong_signer",
            Reason::PriceOverMax => "price_over_max",
            Reason::FromTheFuture => "from_the_future",
            Reason::Expired => "expired",
            Reason::Duplicate => "duplicate",
            Reason::Stale => "stale",
            Reason::UnknownOrder => "unknown_order",
            Reason::UnknownLease => "unknown_lease",
            Reason::BatchMismatch => "batch_mismatch",
            Reason::RateLimited => "rate_limited",
            Reason::QueueFull => "queue_full",
            Reason::Store => "store_error",
        }
    }

    /// The gossip verdict for this reason: provably bad → Reject (the sender's score falls);
    /// duplicate, late, unknown-but-plausible or our own trouble → Ignore.
    pub fn verdict(&self) -> Verdict {
        match self {
            Reason::Ok => Verdict::Accept,
            Reason::TooLarge
            | Reason::Malformed
            | Reason::BadSignature
            | Reason::Invalid
            | Reason::WrongSigner
            | Reason::PriceOverMax
            | Reason::BatchMismatch => Verdict::Reject,
            Reason::FromTheFuture
            | Reason::Expired
            | Reason::Duplicate
            | Reason::Stale
            | Reason::UnknownOrder
            | Reason::UnknownLease
            | Reason::RateLimited
            | Reason::QueueFull
            | Reason::Store => Verdict::Ignore,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to tell gossipsub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Reject,
    Ignore,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Ignore => "ignore",
        }
    }
}

/// The result for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reason: Reason,
    /// The object's id, once it decoded.
    pub id: Option<Id>,
    /// A bid's order that this node does not have: worth fetching from the sender.
    pub missing_order: Option<Id>,
    /// A human explanation for logs and API errors.
    pub detail: String,
}

impl Outcome {
    fn ok(id: Id) -> Outcome {
        Outcome { reason: Reason::Ok, id: Some(id), missing_order: None, detail: String::new() }
    }

    fn new(reason: Reason, id: Option<Id>, detail: impl Into<String>) -> Outcome {
        Outcome { reason, id, missing_order: None, detail: detail.into() }
    }

    pub fn verdict(&self) -> Verdict {
        self.reason.verdict()
    }
}

fn decode_outcome(e: &DecodeError) -> Outcome {
    let reason = match e {
        DecodeError::TooLarge { .. } => Reason::TooLarge,
        DecodeError::Invalid { .. } => Reason::Invalid,
        DecodeError::WrongSigner { .. } => Reason::WrongSigner,
        DecodeError::Signature { .. } => Reason::BadSignature,
        _ => Reason::Malformed,
    };
    Outcome::new(reason, None, e.to_string())
}

fn time_outcome(id: Id, e: &TimeError) -> Outcome {
    let reason = match e {
        TimeError::FromTheFuture { .. } => Reason::FromTheFuture,
        _ => Reason::Expired,
    };
    Outcome::new(reason, Some(id), e.to_string())
}

fn store_outcome(id: Option<Id>, e: &StoreError) -> Outcome {
    Outcome::new(Reason::Store, id, e.to_string())
}

/// An extra check on match batches, supplied by the settler role (it re-runs the matcher). The
/// relay alone only checks the batch's signature and structure.
pub trait BatchCheck: Send + Sync + fmt::Debug {
    /// `Err` refuses the batch, with the reason that sets the gossip verdict.
    fn check(&self, batch: &Signed<MatchBatch>, store: &Store) -> Result<(), BatchRefusal>;
}

/// Why a batch check refused a batch. `reason` decides the verdict: [`Reason::BatchMismatch`]
/// when the batch is provably wrong (its sender's score falls); a late or not-yet-verifiable
/// batch ([`Reason::Stale`], [`Reason::UnknownOrder`]) is only ignored, since an honest peer
/// may relay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRefusal {
    pub reason: Reason,
    pub detail: String,
}

/// The pipeline: a store to check against and write to, and the event stream to announce to.
#[derive(Debug, Clone)]
pub struct Ingest {
    store: Store,
    events: broadcast::Sender<NodeEvent>,
    batch_check: Option<Arc<dyn BatchCheck>>,
    /// The genesis settlers: the only keys that may close a lease for lack of funds or for its
    /// provider's silence.
    settlers: Arc<[PublicKey]>,
}

impl Ingest {
    pub fn new(store: Store, events: broadcast::Sender<NodeEvent>) -> Ingest {
        Ingest { store, events, batch_check: None, settlers: Arc::from(Vec::new()) }
    }

    /// The genesis settlers. Without them (a node with no genesis) no `Closed(InsufficientFunds)`
    /// or `Closed(ProviderSilent)` is accepted.
    pub fn with_settlers(mut self, settlers: Vec<PublicKey>) -> Ingest {
        self.settlers = Arc::from(settlers);
        self
    }

    /// Adds the settler's batch check.
    pub fn with_batch_check(mut self, check: Arc<dyn BatchCheck>) -> Ingest {
        self.batch_check = Some(check);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn emit(&self, ev: NodeEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(ev);
    }

    /// Validates and stores objects of one kind; one outcome per input, in order.
    pub fn ingest(&self, kind: Kind, items: &[&[u8]], now_ms: u64) -> Vec<Outcome> {
        match kind {
            Kind::Order => self.run::<Order>(items, |s, id, b| self.apply_order(s, id, b, now_ms)),
            Kind::Bid => {
                // Bids of one batch mostly answer a few orders: look each up once.
                let orders = RefCell::new(HashMap::new());
                self.run::<Bid>(items, |s, id, b| self.apply_bid(s, id, b, now_ms, &orders))
            }
            Kind::ProviderInfo => {
                self.run::<ProviderInfo>(items, |s, id, _| self.apply_provider(s, id))
            }
            Kind::Heartbeat => self.run::<Heartbeat>(items, |s, id, _| self.apply_heartbeat(s, id)),
            Kind::MatchBatch => {
                self.run::<MatchBatch>(items, |s, id, b| self.apply_batch(s, id, b, now_ms))
            }
            Kind::LeaseEvent => {
                self.run::<LeaseEvent>(items, |s, id, _| self.apply_lease_event(s, id))
            }
        }
    }

    /// Decode each, skip known ones, batch-verify the rest, then apply one by one.
    fn run<T: Signable>(
        &self,
        items: &[&[u8]],
        apply: impl Fn(&Signed<T>, Id, &[u8]) -> Outcome,
    ) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; items.len()];
        // Index into `items` and id of each decoded, not yet known object; `signed` in step.
        let mut fresh: Vec<(usize, Id)> = Vec::with_capacity(items.len());
        let mut signed: Vec<Signed<T>> = Vec::with_capacity(items.len());
        for (i, bytes) in items.iter().enumerate() {
            match Signed::<T>::decode(bytes) {
                Err(e) => out[i] = Some(decode_outcome(&e)),
                Ok(s) => {
                    let id = s.id();
                    match self.known::<T>(&id) {
                        Ok(true) => {
                            out[i] =
                                Some(Outcome::new(Reason::Duplicate, Some(id), "already known"))
                        }
                        Ok(false) => {
                            fresh.push((i, id));
                            signed.push(s);
                        }
                        Err(e) => out[i] = Some(store_outcome(Some(id), &e)),
                    }
                }
            }
        }
        let bad: Vec<usize> = match verify_all(&signed) {
            Ok(()) => Vec::new(),
            Err(bad) => bad,
        };
        for (j, ((i, id), s)) in fresh.iter().zip(&signed).enumerate() {
            out[*i] = Some(if bad.binary_search(&j).is_ok() {
                Outcome::new(
                    Reason::BadSignature,
                    Some(*id),
                    format!("{} signature does not verify", T::NAME),
                )
            } else {
                // Decoding is canonical: the input bytes are exactly `s.encode()`.
                apply(s, *id, items[*i])
            });
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::new(Reason::Store, None, "not processed")))
            .collect()
    }

    /// Whether an object with this id is already stored (so its signature need not be checked).
    fn known<T: Signable>(&self, id: &Id) -> Result<bool, StoreError> {
        match T::NAME {
            n if n == Order::NAME => self.store.has_order(id),
            n if n == Bid::NAME => self.store.has_bid(id),
            n if n == MatchBatch::NAME => self.store.has_batch(id),
            _ => Ok(false),
        }
    }

    fn apply_order(&self, s: &Signed<Order>, id: Id, bytes: &[u8], now_ms: u64) -> Outcome {
        if let Err(e) = s.body.check_time(now_ms) {
            return time_outcome(id, &e);
        }
        match self.store.put_order(&id, bytes) {
            Ok(false) => Outcome::new(Reason::Duplicate, Some(id), "already known"),
            Ok(true) => {
                let closes = s.body.auction_closes_at_ms();
                let _ = self
                    .store
                    .mark_seen(&id, closes.saturating_add(crate::store::ORDER_RETENTION_MS));
                tracing::debug!(order = %id.short(), "order stored");
                self.emit(NodeEvent::Order { id, tenant: s.body.tenant, closes_at_ms: closes });
                Outcome::ok(id)
            }
            Err(e) => store_outcome(Some(id), &e),
        }
    }

    fn apply_bid(
        &self,
        s: &Signed<Bid>,
        id: Id,
        bytes: &[u8],
        now_ms: u64,
        orders: &RefCell<HashMap<Id, Rc<Signed<Order>>>>,
    ) -> Outcome {
        if let Err(e) = s.body.check_time(now_ms) {
            return time_outcome(id, &e);
        }
        let cached = orders.borrow().get(&s.body.order_id).cloned();
        let found = match cached {
            Some(o) => Ok(Some(o)),
            None => self.store.order(&s.body.order_id).map(|o| o.map(Rc::new)),
        };
        let order = match found {
            Ok(Some(o)) => {
                orders.borrow_mut().entry(s.body.order_id).or_insert_with(|| Rc::clone(&o));
                o
            }
            Ok(None) => {
                let mut o = Outcome::new(
                    Reason::UnknownOrder,
                    Some(id),
                    format!("order {} is not known here", s.body.order_id),
                );
                o.missing_order = Some(s.body.order_id);
                return o;
            }
            Err(e) => return store_outcome(Some(id), &e),
        };
        if let Err(e) = s.body.check_against(&s.body.order_id, &order.body) {
            return Outcome::new(Reason::PriceOverMax, Some(id), e.to_string());
        }
        if s.body.created_at_ms > order.body.auction_closes_at_ms() {
            return Outcome::new(Reason::Expired, Some(id), "bid made after the auction closed");
        }
        match self.store.put_bid(&id, &s.body.order_id, bytes) {
            Ok(false) => Outcome::new(Reason::Duplicate, Some(id), "already known"),
            Ok(true) => {
                self.emit(NodeEvent::Bid {
                    id,
                    order_id: s.body.order_id,
                    provider: s.body.provider,
                    price_per_hour: s.body.price_per_hour.to_string(),
                });
                Outcome::ok(id)
            }
            Err(e) => store_outcome(Some(id), &e),
        }
    }

    fn apply_provider(&self, s: &Signed<ProviderInfo>, id: Id) -> Outcome {
        match self.store.put_provider_info(s) {
            Ok(false) => {
                Outcome::new(Reason::Stale, Some(id), "a newer or equal sequence is known")
            }
            Ok(true) => {
                self.emit(NodeEvent::Provider {
                    provider: s.body.provider,
                    sequence: s.body.sequence,
                });
                Outcome::ok(id)
            }
            Err(e) => store_outcome(Some(id), &e),
        }
    }

    fn apply_heartbeat(&self, s: &Signed<Heartbeat>, id: Id) -> Outcome {
        match self.store.put_heartbeat(s) {
            Ok(false) => {
                Outcome::new(Reason::Stale, Some(id), "a newer or equal sequence is known")
            }
            Ok(true) => Outcome::ok(id),
            Err(e) => store_outcome(Some(id), &e),
        }
    }

    fn apply_batch(&self, s: &Signed<MatchBatch>, id: Id, bytes: &[u8], now_ms: u64) -> Outcome {
        if let Some(check) = &self.batch_check {
            if let Err(r) = check.check(s, &self.store) {
                return Outcome::new(r.reason, Some(id), r.detail);
            }
        }
        match self.store.put_batch(&id, bytes) {
            Ok(false) => return Outcome::new(Reason::Duplicate, Some(id), "already known"),
            Ok(true) => {}
            Err(e) => return store_outcome(Some(id), &e),
        }
        for award in &s.body.awards {
            let tenant = match self.store.order(&award.order_id) {
                Ok(o) => o.map(|o| o.body.tenant),
                Err(e) => return store_outcome(Some(id), &e),
            };
            let lease = LeaseRecord {
                lease_id: award.lease_id(),
                order_id: award.order_id,
                bid_id: award.bid_id,
                batch_id: id,
                provider: award.provider,
                tenant,
                price_per_hour: award.price_per_hour.clone(),
                state: LeaseState::Awarded,
                updated_at_ms: now_ms,
            };
            if let Err(e) = self.store.put_lease(&lease) {
                return store_outcome(Some(id), &e);
            }
            self.emit(NodeEvent::Award {
                batch_id: id,
                order_id: award.order_id,
                bid_id: award.bid_id,
                lease_id: lease.lease_id,
                provider: award.provider,
            });
        }
        Outcome::ok(id)
    }

    /// Who may sign what: `Closed(InsufficientFunds)` and `Closed(ProviderSilent)` only a
    /// genesis settler (the settlement settler stops a lease its tenant can no longer pay for,
    /// or whose provider fell silent past the grace period: the reason is the settler's verdict,
    /// so neither party may claim it), and a settler nothing else; every other event the
    /// lease's provider or tenant.
    fn check_lease_signer(
        &self,
        lease: &LeaseRecord,
        s: &Signed<LeaseEvent>,
    ) -> Result<(), &'static str> {
        if let LeaseEventKind::Closed { reason } = &s.body.kind {
            let why = match reason {
                CloseReason::InsufficientFunds => {
                    Some("only a genesis settler may close a lease for insufficient funds")
                }
                CloseReason::ProviderSilent => {
                    Some("only a genesis settler may close a lease for its provider's silence")
                }
                CloseReason::TenantClosed
                | CloseReason::TermEnded
                | CloseReason::ProviderClosed => None,
            };
            if let Some(why) = why {
                return if self.settlers.contains(&s.signer) { Ok(()) } else { Err(why) };
            }
        }
        if s.signer == lease.provider || Some(s.signer) == lease.tenant {
            return Ok(());
        }
        if self.settlers.contains(&s.signer) {
            return Err(
                "a settler may sign only Closed(InsufficientFunds) or Closed(ProviderSilent) lease events",
            );
        }
        Err("a lease event must be signed by the lease's provider or tenant")
    }

    fn apply_lease_event(&self, s: &Signed<LeaseEvent>, id: Id) -> Outcome {
        let mut lease = match self.store.lease(&s.body.lease_id) {
            Ok(Some(l)) => l,
            Ok(None) => {
                return Outcome::new(
                    Reason::UnknownLease,
                    Some(id),
                    format!("lease {} is not known here", s.body.lease_id),
                )
            }
            Err(e) => return store_outcome(Some(id), &e),
        };
        if lease.order_id != s.body.order_id {
            return Outcome::new(Reason::Invalid, Some(id), "the event names another order");
        }
        if let Err(detail) = self.check_lease_signer(&lease, s) {
            return Outcome::new(Reason::WrongSigner, Some(id), detail);
        }
        match self.store.put_lease_event(&id, s) {
            Ok(false) => Outcome::new(Reason::Duplicate, Some(id), "already known"),
            Ok(true) => {
                let state = LeaseState::after(&s.body.kind);
                // Failed and closed are final; otherwise a lease only moves forward. Gossip
                // does not keep the provider's order: a ManifestAccepted that arrives after its
                // Running must not take a running lease back.
                if !lease.state.is_final() && state > lease.state {
                    lease.state = state;
                    lease.updated_at_ms = s.body.at_ms;
                    if let Err(e) = self.store.put_lease(&lease) {
                        return store_outcome(Some(id), &e);
                    }
                }
                self.emit(NodeEvent::Lease { lease_id: lease.lease_id, event_id: id, state });
                Outcome::ok(id)
            }
            Err(e) => store_outcome(Some(id), &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::{samples, Coin, Keypair};

    fn ingest() -> Ingest {
        let (tx, _) = broadcast::channel(16);
        Ingest::new(Store::temporary().unwrap(), tx)
    }

    const NOW: u64 = samples::SAMPLE_TIME_MS + 1;

    #[test]
    fn order_paths_accept_duplicate_malformed_badsig_expired() {
        let ing = ingest();
        let order = samples::signed_order().encode();
        let r = ing.ingest(Kind::Order, &[&order], NOW);
        assert_eq!(r[0].reason, Reason::Ok);
        let r = ing.ingest(Kind::Order, &[&order], NOW);
        assert_eq!(r[0].reason, Reason::Duplicate);
        assert_eq!(r[0].verdict(), Verdict::Ignore);

        let r = ing.ingest(Kind::Order, &[b"\x01\x02junk"], NOW);
        assert_eq!(r[0].verdict(), Verdict::Reject);

        let mut o = samples::order();
        o.nonce = 99;
        let mut bad = Signed::sign(o, &samples::tenant_key());
        bad.sig.0[0] ^= 1;
        let r = ing.ingest(Kind::Order, &[&bad.encode()], NOW);
        assert_eq!(r[0].reason, Reason::BadSignature);
        assert_eq!(r[0].verdict(), Verdict::Reject);

        let r = ing.ingest(Kind::Order, &[&samples::signed_order().encode()[..]], NOW);
        assert_eq!(r[0].reason, Reason::Duplicate);
        let mut o = samples::order();
        o.nonce = 100;
        let late = Signed::sign(o, &samples::tenant_key()).encode();
        let r = ing.ingest(Kind::Order, &[&late], NOW + 60_000);
        assert_eq!(r[0].reason, Reason::Expired);
        assert_eq!(r[0].verdict(), Verdict::Ignore);
    }

    #[test]
    fn bid_needs_its_order_and_a_price_within_max() {
        let ing = ingest();
        let bid = samples::signed_bid().encode();
        let r = ing.ingest(Kind::Bid, &[&bid], NOW + 5);
        assert_eq!(r[0].reason, Reason::UnknownOrder);
        assert_eq!(r[0].missing_order, Some(samples::signed_order().id()));
        ing.ingest(Kind::Order, &[&samples::signed_order().encode()], NOW);
        let r = ing.ingest(Kind::Bid, &[&bid], NOW + 5);
        assert_eq!(r[0].reason, Reason::Ok);

        let mut b = samples::bid();
        b.price_per_hour = Coin::new("uakt", 10_000_000);
        let dear = Signed::sign(b, &samples::provider_key()).encode();
        let r = ing.ingest(Kind::Bid, &[&dear], NOW + 5);
        assert_eq!(r[0].reason, Reason::PriceOverMax);
        assert_eq!(r[0].verdict(), Verdict::Reject);
        assert_eq!(ing.store().bids_for_order(&samples::signed_order().id()).unwrap().len(), 1);
    }

    #[test]
    fn one_bad_signature_in_a_batch_only_fails_itself() {
        let ing = ingest();
        ing.ingest(Kind::Order, &[&samples::signed_order().encode()], NOW);
        let mut bids: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let key = Keypair::from_seed_label(&format!("p{i}"));
                let mut b = samples::bid();
                b.provider = key.public();
                Signed::sign(b, &key).encode()
            })
            .collect();
        let mut broken = Signed::<Bid>::decode(&bids[3]).unwrap();
        broken.sig.0[5] ^= 0x40;
        bids[3] = broken.encode();
        let refs: Vec<&[u8]> = bids.iter().map(|b| b.as_slice()).collect();
        let r = ing.ingest(Kind::Bid, &refs, NOW + 5);
        for (i, o) in r.iter().enumerate() {
            let want = if i == 3 { Reason::BadSignature } else { Reason::Ok };
            assert_eq!(o.reason, want, "bid {i}");
        }
    }

    #[test]
    fn batch_creates_leases_and_lease_events_need_the_right_signer() {
        let ing = ingest();
        ing.ingest(Kind::Order, &[&samples::signed_order().encode()], NOW);
        let batch = Signed::sign(samples::match_batch(), &samples::settler_key());
        let r = ing.ingest(Kind::MatchBatch, &[&batch.encode()], NOW);
        assert_eq!(r[0].reason, Reason::Ok);
        let lease_id = samples::award().lease_id();
        assert_eq!(ing.store().lease(&lease_id).unwrap().unwrap().state, LeaseState::Awarded);

        let ev = Signed::sign(samples::lease_event(), &samples::provider_key());
        let r = ing.ingest(Kind::LeaseEvent, &[&ev.encode()], NOW);
        assert_eq!(r[0].reason, Reason::Ok);
        assert_eq!(ing.store().lease(&lease_id).unwrap().unwrap().state, LeaseState::Running);

        let stranger = Signed::sign(samples::lease_event(), &Keypair::from_seed_label("x"));
        let r = ing.ingest(Kind::LeaseEvent, &[&stranger.encode()], NOW);
        assert_eq!(r[0].reason, Reason::WrongSigner);
    }

    /// Events reach a node in any order: a lease's state never goes back, whichever of the
    /// provider's ManifestAccepted and Running arrives first.
    #[test]
    fn a_late_manifest_accepted_does_not_take_a_running_lease_back() {
        let ing = ingest();
        ing.ingest(Kind::Order, &[&samples::signed_order().encode()], NOW);
        let batch = Signed::sign(samples::match_batch(), &samples::settler_key());
        assert_eq!(ing.ingest(Kind::MatchBatch, &[&batch.encode()], NOW)[0].reason, Reason::Ok);
        let lease_id = samples::award().lease_id();
        let running = Signed::sign(samples::lease_event(), &samples::provider_key());
        let mut accepted = samples::lease_event();
        accepted.kind = LeaseEventKind::ManifestAccepted;
        accepted.at_ms -= 1;
        let accepted = Signed::sign(accepted, &samples::provider_key());
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&running.encode()], NOW)[0].reason, Reason::Ok);
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&accepted.encode()], NOW)[0].reason, Reason::Ok);
        assert_eq!(ing.store().lease(&lease_id).unwrap().unwrap().state, LeaseState::Running);
        assert_eq!(ing.store().lease_events(&lease_id).unwrap().len(), 2, "both events kept");
    }

    /// Only a genesis settler may close a lease for lack of funds or for its provider's
    /// silence, and a settler may sign nothing else; the tenant and the provider cannot claim
    /// the settler's reasons.
    #[test]
    fn only_a_genesis_settler_closes_for_insufficient_funds_or_provider_silence() {
        let (tx, _) = broadcast::channel(16);
        let ing = Ingest::new(Store::temporary().unwrap(), tx)
            .with_settlers(vec![samples::settler_key().public()]);
        ing.ingest(Kind::Order, &[&samples::signed_order().encode()], NOW);
        let batch = Signed::sign(samples::match_batch(), &samples::settler_key());
        assert_eq!(ing.ingest(Kind::MatchBatch, &[&batch.encode()], NOW)[0].reason, Reason::Ok);
        let running = Signed::sign(samples::lease_event(), &samples::provider_key());
        assert_eq!(ing.ingest(Kind::LeaseEvent, &[&running.encode()], NOW)[0].reason, Reason::Ok);
        let lease_id = samples::award().lease_id();
        let close = |reason, at: u64| {
            let mut ev = samples::lease_event();
            ev.at_ms = at;
            ev.kind = LeaseEventKind::Closed { reason };
            ev
        };
        let refused = |bytes: Vec<u8>, why: &str| {
            let r = ing.ingest(Kind::LeaseEvent, &[&bytes], NOW);
            assert_eq!(r[0].reason, Reason::WrongSigner, "{why}: {}", r[0].detail);
            assert_eq!(r[0].verdict(), Verdict::Reject, "{why}");
        };
        let funds = |key: &Keypair| {
            Signed::sign(close(CloseReason::InsufficientFunds, NOW + 10), key).encode()
        };
        refused(funds(&samples::tenant_key()), "tenant claims insufficient funds");
        refused(funds(&samples::provider_key()), "provider claims insufficient funds");
        refused(funds(&Keypair::from_seed_label("x")), "stranger claims insufficient funds");
        let silent = |key: &Keypair| {
            Signed::sign(close(CloseReason::ProviderSilent, NOW + 10), key).encode()
        };
        refused(silent(&samples::tenant_key()), "tenant claims the provider fell silent");
        refused(silent(&samples::provider_key()), "provider claims its own silence");
        refused(silent(&Keypair::from_seed_label("x")), "stranger claims provider silence");
        let settler = samples::settler_key();
        for reason in
            [CloseReason::TenantClosed, CloseReason::TermEnded, CloseReason::ProviderClosed]
        {
            refused(
                Signed::sign(close(reason, NOW + 10), &settler).encode(),
                "settler, other reason",
            );
        }
        let mut failed = samples::lease_event();
        failed.kind = LeaseEventKind::Failed { reason: "x".into() };
        refused(Signed::sign(failed, &settler).encode(), "settler signs Failed");
        assert_eq!(ing.store().lease(&lease_id).unwrap().unwrap().state, LeaseState::Running);

        // A node with no genesis knows no settler.
        let (tx, _) = broadcast::channel(16);
        let bare = Ingest::new(Store::temporary().unwrap(), tx);
        bare.ingest(Kind::Order, &[&samples::signed_order().encode()], NOW);
        bare.ingest(Kind::MatchBatch, &[&batch.encode()], NOW);
        let r = bare.ingest(Kind::LeaseEvent, &[&funds(&settler)], NOW);
        assert_eq!(r[0].reason, Reason::WrongSigner);
        let r = bare.ingest(Kind::LeaseEvent, &[&silent(&settler)], NOW);
        assert_eq!(r[0].reason, Reason::WrongSigner);

        // Either of the genesis settler's closes ends a running lease.
        for (why, bytes) in [("funds", funds(&settler)), ("silence", silent(&settler))] {
            let (tx, _) = broadcast::channel(16);
            let node =
                Ingest::new(Store::temporary().unwrap(), tx).with_settlers(vec![settler.public()]);
            node.ingest(Kind::Order, &[&samples::signed_order().encode()], NOW);
            node.ingest(Kind::MatchBatch, &[&batch.encode()], NOW);
            node.ingest(Kind::LeaseEvent, &[&running.encode()], NOW);
            assert_eq!(node.store().lease(&lease_id).unwrap().unwrap().state, LeaseState::Running);
            let r = node.ingest(Kind::LeaseEvent, &[&bytes], NOW);
            assert_eq!(r[0].reason, Reason::Ok, "{why}: {}", r[0].detail);
            assert_eq!(
                node.store().lease(&lease_id).unwrap().unwrap().state,
                LeaseState::Closed,
                "{why}"
            );
        }
    }
}
