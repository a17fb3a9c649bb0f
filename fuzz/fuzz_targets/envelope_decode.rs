//! Any bytes given to the envelope decoder yield a value or an error, never a panic or a hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ucan_gateway::ucan::Envelope;

fuzz_target!(|data: &[u8]| {
    let _ = Envelope::decode(data);
});
