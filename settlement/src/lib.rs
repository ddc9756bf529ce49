//! leasemesh-settlement: accrual, netting, settlement batches, the journal and the anchor
//! backends (the embedded [`ledger`] and, later, a Cosmos chain).
//!
//! No networking of its own beyond what a backend needs; no libp2p.

pub mod anchor;
