//! leasemesh-protocol: the language every leasemesh part speaks.
//!
//! The types of the marketplace ([`Order`], [`Bid`], [`ProviderInfo`], [`MatchBatch`],
//! [`LeaseEvent`], [`SettlementBatch`], [`Manifest`]), their canonical bytes (postcard), their
//! ids and signatures ([`Signed`]), strict decoding with typed errors, and Merkle proofs.
//!
//! This crate does no I/O and has no async: it is plain data and pure functions, so the node,
//! the matcher, the settler and the light client all agree on every byte.
//!
//! # Wire format
//! A signed object travels as the postcard encoding of [`Signed<T>`]: the body, the signer's
//! ed25519 key (32 bytes) and the signature (64 bytes). The signature covers
//! `len(tag) || tag || postcard(body)` where `tag` is the type's [`Signable::DOMAIN`]; the id is
//! the BLAKE3 hash of the same bytes. Golden tests pin the bytes of sample objects.

pub mod api;
#[cfg(feature = "cosmos")]
pub mod binding;
pub mod codec;
pub mod crypto;
pub mod manifest;
pub mod merkle;
pub mod proof;
#[cfg(any(test, feature = "test-utils"))]
pub mod samples;
pub mod sdl;
pub mod seal;
pub mod tee;
pub mod types;
pub mod validate;

pub use codec::{id_of, verify_all, DecodeError, Signable, Signed, PROTOCOL_VERSION};
pub use crypto::{Hash, Id, Keypair, PublicKey, Signature, SignatureError};
pub use manifest::Manifest;
pub use types::*;
pub use validate::{TimeError, ValidationError};
