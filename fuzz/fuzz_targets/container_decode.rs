//! Any bytes given to the container reader yield tokens or an error, never a panic, and whatever it
//! accepts the writer reproduces; every token found is then fed to the envelope decoder, since
//! container tokens are the envelope decoder's real-world input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ucan_gateway::ucan::Envelope;
use ucan_gateway::ucan::container::{Container, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(container) = Container::decode(data) else {
        return;
    };

    // The writer's output must read back as the same tokens, sorted and without duplicates.
    let mut expected = container.tokens.clone();
    expected.sort();
    expected.dedup();
    for format in Format::ALL {
        let again = Container::decode(&container.encode(format));
        assert_eq!(
            again.map(|c| c.tokens).as_ref(),
            Ok(&expected),
            "{format:?}"
        );
    }

    for token in &container.tokens {
        let _ = Envelope::decode(token);
    }
});
