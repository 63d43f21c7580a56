//! Back-off arithmetic shared by container restarts, image pulls, container creation and sandbox
//! creation, and the kubelet's way of printing a delay.
//!
//! Every schedule is the kubelet's: 10 s, doubling, capped at 5 min. Nothing here remembers
//! anything; the step or attempt count comes from the observed state, so the same record always
//! gives the same delay.

/// The first delay.
pub const INITIAL_MS: u64 = 10_000;
/// The cap.
pub const MAX_MS: u64 = 300_000;
/// A container that ran at least this long before exiting restarts its back-off from the first
/// delay: it was healthy for a while, so the crash is news, not a loop (the kubelet forgets a
/// back-off entry after twice the cap, which is the same ten minutes).
pub const RESET_AFTER_RUN_MS: u64 = 600_000;
/// How long after a failed pull the status says `ErrImagePull` before it says `ImagePullBackOff`.
/// The reconcile the failure itself triggers reports the error; later ones report the wait.
pub const PULL_ERROR_SHOWN_MS: u64 = 5_000;

/// A step past which the delay is the cap anyway; keeps the stored step small.
const MAX_STEP: u32 = 16;

/// The delay for back-off step `step` (0 is the first delay).
pub fn delay_ms(step: u32) -> u64 {
    let mut delay = INITIAL_MS;
    for _ in 0..step.min(MAX_STEP) {
        delay = delay.saturating_mul(2).min(MAX_MS);
    }
    delay
}

/// The delay before retrying something that has failed `attempts` times in a row.
pub fn retry_delay_ms(attempts: u32) -> u64 {
    delay_ms(attempts.saturating_sub(1))
}

/// The delay before restarting a container that was started at back-off step `step` and then
/// ran for `ran_ms`.
pub fn restart_delay_ms(step: u32, ran_ms: u64) -> u64 {
    if ran_ms >= RESET_AFTER_RUN_MS {
        INITIAL_MS
    } else {
        delay_ms(step)
    }
}

/// The step to start a container with after it ran for `ran_ms` at step `step`: one more than
/// before, or 1 when the back-off was reset (the reset restart itself used step 0's delay).
pub fn next_step(step: u32, ran_ms: u64) -> u32 {
    if ran_ms >= RESET_AFTER_RUN_MS {
        1
    } else {
        step.saturating_add(1).min(MAX_STEP)
    }
}

/// `t + d` without overflow, for deadlines.
pub fn deadline(t: u64, d: u64) -> u64 {
    t.saturating_add(d)
}

/// A duration as Go's `time.Duration.String` prints it (`10s`, `1m20s`, `5m0s`, `1.5s`, `500ms`), since
/// users compare our messages with the kubelet's.
pub fn go_duration(ms: u64) -> String {
    if (1..1000).contains(&ms) {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let frac = ms % 1000;
    let tail = if frac == 0 {
        format!("{}s", secs % 60)
    } else {
        let digits = format!("{frac:03}");
        format!("{}.{}s", secs % 60, digits.trim_end_matches('0'))
    };
    match (secs / 3600, secs % 3600 / 60) {
        (0, 0) => tail,
        (0, m) => format!("{m}m{tail}"),
        (h, m) => format!("{h}h{m}m{tail}"),
    }
}
