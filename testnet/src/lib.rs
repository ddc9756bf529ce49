//! leasemesh-testnet: local meshes, the chain devnet and the demo.
//!
//! - [`devnet`]: a throw-away one-validator Injective chain on loopback with funded accounts.
//! - [`mesh`]: node processes on loopback with a shared genesis; [`demo`]: the one-command demo.
//! - [`up`]: `leasemesh-testnet up`, a local network to try the `leasemesh` CLI against.
//! - [`image`]: container images built locally from our binaries (`FROM scratch`, no registry).
//! - [`bench`]: the network bench against an Akash-style on-chain baseline.
//! - [`chain`]: settlement on that chain: tenants' grants, payment batches, the settle bench.
//!
//! Installs nothing: the chain binary comes from `scripts/install-chain.sh`.

pub mod bench;
pub mod chain;
pub mod demo;
pub mod devnet;
pub mod image;
pub mod mesh;
pub mod up;
