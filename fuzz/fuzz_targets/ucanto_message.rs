//! Any bytes given to the ucanto transport's reader — a CARv1 archive holding a
//! `ucanto/message@7.0.0` root and dag-ucan blocks — yield a message or an error, never a panic; a
//! message's invocations then go through signature verification as the gateway would.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ucan_gateway::ucanto::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    for invocation in &message.invocations {
        let _ = invocation.verify();
    }
});
