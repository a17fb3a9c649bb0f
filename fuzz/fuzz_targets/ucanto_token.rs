//! Any bytes read as a dag-ucan block (CBOR form, or the JWT form when named by a raw CID) yield a
//! token or an error, never a panic, and a decoded token's signature check never panics either. The
//! CID is computed from the bytes, as the CAR reader guarantees, so the fuzzer does not have to find
//! matching hashes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ucan_gateway::ipld::{DAG_CBOR, RAW, cid_for};
use ucan_gateway::ucanto::token::Ucan;

fuzz_target!(|data: &[u8]| {
    for codec in [DAG_CBOR, RAW] {
        if let Ok(token) = Ucan::decode(cid_for(codec, data), data) {
            let _ = token.verify();
        }
    }
});
