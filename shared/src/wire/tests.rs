use super::*;

fn presence() -> Presence {
    Presence {
        node: "pi-1".into(),
        online: true,
        boot_id: "b".into(),
        agent_version: "0.1.0".into(),
        session: 7,
        time_ms: 1,
    }
}

#[test]
fn round_trip_and_header() {
    let bytes = encode(&presence());
    assert_eq!(peek_header(&bytes), Ok((1, MessageKind::Presence as u64)));
    assert_eq!(decode::<Presence>(&bytes, DEFAULT_MAX_PAYLOAD), Ok(presence()));
}

#[test]
fn oversized_payloads_are_refused_before_parsing() {
    let bytes = encode(&presence());
    assert_eq!(decode::<Presence>(&bytes, 10), Err(DecodeError::TooLarge { size: bytes.len(), limit: 10 }));
}

#[test]
fn unknown_versions_and_kinds_are_typed_errors() {
    let mut bytes = encode(&presence());
    bytes[1] = 2; // version 2
    assert_eq!(decode::<Presence>(&bytes, DEFAULT_MAX_PAYLOAD), Err(DecodeError::UnsupportedVersion(2)));
    let bytes = encode(&presence());
    assert_eq!(
        decode::<Heartbeat>(&bytes, DEFAULT_MAX_PAYLOAD),
        Err(DecodeError::WrongKind { expected: MessageKind::Heartbeat, got: 4 })
    );
    // A large version number in a multi-byte integer is still read exactly.
    let mut big = vec![0x83, 0x19, 0x01, 0x00];
    big.extend_from_slice(&bytes[2..]);
    assert_eq!(decode::<Presence>(&big, DEFAULT_MAX_PAYLOAD), Err(DecodeError::UnsupportedVersion(256)));
}

#[test]
fn garbage_is_rejected() {
    for bad in [&b""[..], b"\x00", b"\x83", b"\x83\x01", b"{\"v\":1}", b"\x83\x01\x04\xff"] {
        assert!(decode::<Presence>(bad, DEFAULT_MAX_PAYLOAD).is_err(), "{bad:?}");
    }
    let mut trailing = encode(&presence());
    trailing.push(0);
    assert!(matches!(decode::<Presence>(&trailing, DEFAULT_MAX_PAYLOAD), Err(DecodeError::Malformed { .. })));
}

#[test]
fn huge_claimed_lengths_do_not_allocate() {
    // [1, 5, {"node": <text string claiming 2^63 bytes>}]: must fail fast, not allocate.
    let mut b = vec![0x83, 0x01, 0x05, 0xa1, 0x64];
    b.extend_from_slice(b"node");
    b.extend_from_slice(&[0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert!(decode::<Events>(&b, DEFAULT_MAX_PAYLOAD).is_err());
    // An array claiming 2^32 elements.
    let mut b = vec![0x83, 0x01, 0x05, 0xa2, 0x64];
    b.extend_from_slice(b"node");
    b.extend_from_slice(&[0x61, b'n', 0x66]);
    b.extend_from_slice(b"events");
    b.extend_from_slice(&[0x9a, 0xff, 0xff, 0xff, 0xff]);
    assert!(decode::<Events>(&b, DEFAULT_MAX_PAYLOAD).is_err());
}

#[test]
fn deep_nesting_is_rejected_without_stack_overflow() {
    let mut b = vec![0x83, 0x01, 0x05];
    b.extend(std::iter::repeat_n(0x81, 100_000));
    assert!(decode::<Events>(&b, DEFAULT_MAX_PAYLOAD).is_err());
}
