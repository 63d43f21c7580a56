//! The hub's wall clock, as the objects it writes show it: RFC 3339, UTC, whole seconds, as
//! Kubernetes writes times. Decisions never read it (the pure cores take `now` as an
//! argument); only the edges that stamp objects and events do.

/// Now, as RFC 3339 (UTC, whole seconds).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Unix seconds as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// RFC 3339 as Unix seconds, if it parses.
pub fn unix(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_whole_utc_seconds_and_round_trip() {
        assert_eq!(super::rfc3339(1_764_400_000), "2025-11-29T07:06:40Z");
        assert_eq!(super::unix("2025-11-29T07:06:40Z"), Some(1_764_400_000));
        assert_eq!(super::unix("yesterday"), None);
        let now = super::now_rfc3339();
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
        assert!(super::unix(&now).is_some());
    }
}
