//! leasemesh-testnet: local meshes, the chain devnet and the demo.
