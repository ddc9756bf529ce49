//! leasemesh-matcher: the deterministic matcher. Pure functions: no I/O, no async, no floats.
//!
//! [`match_epoch`] turns one epoch's orders, bids and provider capacity snapshots into awards,
//! the reason every other order went unmatched, the inputs it refused, and a digest over the
//! canonical bytes of all that. Every node runs it on the same inputs and must get the same
//! digest: [`verify_batch`] is that check for a leader's [`MatchBatch`](leasemesh_protocol::MatchBatch).
//!
//! # Rules
//! - A bid counts only if its denom is the order's, its price is at most the order's maximum, its
//!   provider has a capacity snapshot, every attribute the placement asks for and at least the
//!   minimum uptime, and every replica of every group fits on one host of that provider (replicas
//!   of one group may spread over several hosts), its GPUs all of one acceptable model.
//! - An order wins all of its groups from one provider, or nothing.
//! - Orders are taken in a fixed order: scarcest first (fewest eligible bids), then larger
//!   orders, then the order id (a hash) mixed with a salt. Each takes its cheapest eligible bid
//!   whose provider still has room; equal prices break on BLAKE3 of the bid id keyed with the
//!   salt. The salt is the digest of the epoch's input ids, so nobody can grind an id to win
//!   ties before the epoch closes. Arrival order and map iteration order never matter: every list is sorted first.
//! - A provider is never awarded more than the `free` capacity of its snapshot: capacity
//!   consumed by earlier awards of the epoch is subtracted host by host.
//! - Clearing price: pay-as-bid (the award's price is the winning bid's price). See
//!   [`greedy`] for why not second price.
//!
//! The objective the rule approximates, and that [`exact`] solves exactly for small markets, is
//! documented in [`exact`].
//!
//! Around it, the market's clock and checks: [`epoch`] (which epoch an order belongs to, who
//! leads it, when a fallback may take over) and [`batch_check`] (the inputs of an epoch, and
//! the check every node applies to a leader's match batch).
//!
//! This crate must not do I/O, read clocks (other than the bench binary), use floats for
//! anything that reaches the outcome, or iterate hash maps into results.

pub mod batch_check;
pub mod epoch;
pub mod exact;
pub mod fit;
pub mod greedy;
pub mod input;
pub mod market;
pub mod outcome;
mod prepare;

pub use greedy::match_epoch;
pub use input::{EpochInput, InputIds};
pub use outcome::{
    verify_batch, EpochOutcome, Excluded, ExcludedReason, InputKind, MismatchError, Unmatched,
    UnmatchedReason,
};
