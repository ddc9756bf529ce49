//! Parsing and converting arbitrary text as an Akash SDL never panics, and every order it
//! produces passes the protocol's own value checks.
#![no_main]

use leasemesh_protocol::sdl::{parse, to_orders, OrderParams};
use leasemesh_protocol::{samples, Signable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(sdl) = parse(text) else { return };
    let mut params = OrderParams::new(samples::tenant_key().public(), "inj1fuzztenant");
    params.created_at_ms = samples::SAMPLE_TIME_MS;
    if let Ok(deployment) = to_orders(&sdl, &params) {
        for order in &deployment.orders {
            assert!(order.validate().is_ok(), "{:?}", order.validate());
        }
    }
});
