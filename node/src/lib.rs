//! leasemesh-node: the daemon.
