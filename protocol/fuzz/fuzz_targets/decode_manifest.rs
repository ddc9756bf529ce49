//! Decoding a manifest from arbitrary bytes never panics; whatever decodes re-encodes the same.
#![no_main]

use leasemesh_protocol::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data);
        let _ = m.hash();
    }
});
