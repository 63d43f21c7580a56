//! The wire format's tests: golden CBOR vectors and property tests, in one test binary
//! (`cargo test -p flotilla-shared --test wire`, or `... golden::` / `props::` for one part).

mod golden;
mod props;
mod samples;
