//! Fuzz target: every envelope decoder on arbitrary bytes must return, never panic or hang.
#![no_main]

use flotilla_shared::wire::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<DesiredSnapshot>(data, DEFAULT_MAX_PAYLOAD);
    let _ = decode::<StatusReport>(data, DEFAULT_MAX_PAYLOAD);
    let _ = decode::<Heartbeat>(data, DEFAULT_MAX_PAYLOAD);
    let _ = decode::<Presence>(data, DEFAULT_MAX_PAYLOAD);
    let _ = decode::<Events>(data, DEFAULT_MAX_PAYLOAD);
    let _ = decode::<LogRequest>(data, DEFAULT_MAX_PAYLOAD);
    let _ = decode::<LogChunk>(data, DEFAULT_MAX_PAYLOAD);
    // The header of any payload that decodes must say what the decoder expected.
    if let Ok(m) = decode::<DesiredSnapshot>(data, DEFAULT_MAX_PAYLOAD) {
        let again = encode(&m);
        assert_eq!(decode::<DesiredSnapshot>(&again, usize::MAX).ok(), Some(m));
    }
});
