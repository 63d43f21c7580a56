//! Golden CBOR vectors: the encoding of fixed sample messages is checked in under
//! `tests/golden/`, so the wire format cannot drift unnoticed. After an intended format change
//! (which needs a new envelope version), regenerate with `FLOTILLA_BLESS=1 cargo test -p
//! flotilla-shared --test wire golden::`.

use crate::samples;

use std::path::PathBuf;

use flotilla_shared::wire::{decode, encode, Message, DEFAULT_MAX_PAYLOAD};

fn check<M: Message + PartialEq + std::fmt::Debug>(name: &str, msg: M) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.cbor"));
    let bytes = encode(&msg);
    if std::env::var_os("FLOTILLA_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with FLOTILLA_BLESS=1)", path.display()));
    assert_eq!(bytes, golden, "encoding of {name} changed; the wire format drifted");
    assert_eq!(
        decode::<M>(&golden, DEFAULT_MAX_PAYLOAD).unwrap(),
        msg,
        "golden {name} no longer decodes to the sample"
    );
}

#[test]
fn desired_snapshot() {
    check("desired", samples::desired());
}

#[test]
fn status_report() {
    check("status", samples::status());
}

#[test]
fn heartbeat() {
    check("heartbeat", samples::heartbeat());
}

/// The optional `epoch` field: absent above (older agents' encoding, unchanged), present here.
#[test]
fn epochs() {
    check("status_epoch", samples::status_with_epoch());
    check("heartbeat_epoch", samples::heartbeat_with_epoch());
}

#[test]
fn presence() {
    check("presence", samples::presence());
}

#[test]
fn events() {
    check("events", samples::events());
}

#[test]
fn log_request() {
    check("log_request", samples::log_request());
}

#[test]
fn log_chunk() {
    check("log_chunk", samples::log_chunk());
}
