//! leasemesh-tests: the cross-crate end-to-end tests (in `tests/`). Real node processes on
//! loopback, the real Docker daemon, the light client over HTTP, settlement on the embedded
//! ledger. No library code lives here.
