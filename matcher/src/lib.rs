//! leasemesh-matcher: the deterministic matcher. Pure functions: no I/O, no async, no floats.
