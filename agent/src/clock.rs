//! The agent's one clock module: the boot clock the loop and the reconcile core count in
//! (monotonic, and the same across agent restarts), wall-clock times as Kubernetes writes them
//! (RFC 3339), Unix seconds and milliseconds, and a process's start time on the boot clock (to
//! tell a process from a later one that reuses its pid).

/// Milliseconds since boot (CLOCK_BOOTTIME): monotonic, and the same across agent restarts.
pub fn boot_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC with nanoseconds, as CRI logs and Kubernetes timestamps use.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats Unix time as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (civil-from-days, no time crate).
pub fn format_unix(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The process start time of `pid` in clock ticks since boot, from `/proc/<pid>/stat`
/// (field 22).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_formats_like_rfc3339() {
        assert_eq!(format_unix(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_unix(1_764_410_400, 5), "2025-11-29T10:00:00.000000005Z");
        assert_eq!(format_unix(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(format_unix(-1, 0), "1969-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn start_ticks_of_self() {
        let t = start_ticks(std::process::id() as i32);
        assert!(t.is_some_and(|t| t > 0));
        assert_eq!(start_ticks(i32::MAX), None);
    }
}
