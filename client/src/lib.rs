//! leasemesh-client: the tenant light client. Depends on leasemesh-protocol only: no libp2p, no sled.
