//! The network layer: the libp2p stack, the swarm task and the workers beside it.

pub mod behaviour;
pub mod ratelimit;
pub mod scoring;
pub mod service;
pub mod sync;
pub mod topics;
pub mod workers;
