//! Fuzz target: the manifest loader (YAML/JSON split, parse, schema walk, validation) on
//! arbitrary text must return objects or errors, never panic or hang.
#![no_main]

use flotilla_shared::manifest::load_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let result = load_str("fuzz.yaml", text);
        for e in &result.errors {
            let _ = e.to_string();
        }
    }
});
