//! leasemesh-settlement: accrual, netting, settlement batches, the journal and the anchor
//! backends (the embedded [`ledger`] and, later, a Cosmos chain).
//!
//! - [`accrual`] and [`batch`]: pure functions from lease events and heartbeats to a signed-ready
//!   [`SettlementBatch`](leasemesh_protocol::SettlementBatch) with netted payments, its Merkle
//!   root and lease inclusion proofs.
//! - [`round`]: one settlement round without I/O, from a [`LeaseSource`](round::LeaseSource)
//!   and `now` to a signed batch and what follows once it is anchored (cursors, shortfalls,
//!   the settler's closes), capped to what each tenant can pay.
//! - [`control`]: who may be charged for an address (genesis keys, chain bindings).
//! - [`anchor`]: the trait every settlement backend implements.
//! - [`ledger`]: [`LocalLedger`](ledger::LocalLedger), the embedded default backend (sled).
//! - [`journal`]: [`Journal`](journal::Journal), which writes each step to sled before taking the
//!   next so that a crash never pays twice and never loses a payment.
//! - [`samples`]: deterministic fleets of leases for tests, benches and demos.
//!
//! No networking of its own beyond what a backend needs; no libp2p. The library never spawns a
//! runtime or a task: it awaits backends and `tokio::time::sleep` inside the caller's runtime.

pub mod accrual;
pub mod anchor;
pub mod batch;
pub mod control;
#[cfg(feature = "cosmos")]
pub mod cosmos;
pub mod journal;
pub mod ledger;
pub mod round;
#[cfg(any(test, feature = "test-utils"))]
pub mod samples;
