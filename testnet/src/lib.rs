//! leasemesh-testnet: local meshes, the chain devnet and the demo.
//!
//! - [`devnet`]: a throw-away one-validator Injective chain on loopback with funded accounts.
//! - [`mesh`]: node processes on loopback with a shared genesis; [`demo`]: the one-command demo.
//! - [`chain`]: settlement on that chain: tenants' grants, payment batches, the settle bench.
//!
//! Installs nothing: the chain binary comes from `scripts/install-chain.sh`.

pub mod chain;
pub mod demo;
pub mod devnet;
pub mod mesh;
