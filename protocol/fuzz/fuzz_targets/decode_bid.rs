//! Decoding a bid from arbitrary bytes never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use leasemesh_protocol::{Bid, Signed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = Signed::<Bid>::decode(data) {
        assert_eq!(signed.encode(), data);
        let _ = signed.verify();
        let _ = signed.id();
    }
});
