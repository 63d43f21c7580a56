//! Reconnect back-off for MQTT clients (agents and the hub), pure: 2 s doubling to a 30 s cap,
//! with full jitter so a fleet that loses its broker at once does not reconnect in lockstep,
//! and reset only after the link stayed up longer than the cap (a link that drops right after
//! connecting keeps backing off).

use std::time::Duration;

/// The first delay.
pub const RECONNECT_INITIAL: Duration = Duration::from_secs(2);
/// The cap.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Back-off state: how many attempts in a row have failed (or dropped too soon).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconnect {
    attempt: u32,
}

impl Reconnect {
    /// The delay before the next attempt, given `unit` drawn uniformly from [0, 1): a random
    /// point in [ceiling / 2, ceiling] ("equal jitter": never a reconnect storm at 0 s, never
    /// longer than the cap), where the ceiling is 2 s doubling per attempt, capped at 30 s.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = RECONNECT_INITIAL.saturating_mul(1u32 << self.attempt.min(5)).min(RECONNECT_MAX);
        self.attempt = self.attempt.saturating_add(1);
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
        ceiling.mul_f64(0.5 + unit / 2.0)
    }

    /// The link came up and has stayed up for `up_for`: after longer than the cap, the next
    /// outage starts again from the first delay.
    pub fn link_up_for(&mut self, up_for: Duration) {
        if up_for > RECONNECT_MAX {
            self.attempt = 0;
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter() {
        let mut r = Reconnect::default();
        let ceilings = [2, 4, 8, 16, 30, 30, 30];
        for c in ceilings {
            let mut lo = r;
            let mut hi = r;
            let (min, max) = (lo.next_delay(0.0), hi.next_delay(1.0));
            assert_eq!(min, Duration::from_secs(c).mul_f64(0.5));
            assert_eq!(max, Duration::from_secs(c));
            r.next_delay(0.3);
        }
        assert_eq!(r.next_delay(f64::NAN), Duration::from_secs(30).mul_f64(0.75), "NaN is the middle");
        assert!(r.next_delay(7.0) <= RECONNECT_MAX, "out-of-range input is clamped");
    }

    #[test]
    fn resets_only_after_a_long_enough_link() {
        let mut r = Reconnect::default();
        for _ in 0..4 {
            r.next_delay(0.5);
        }
        r.link_up_for(Duration::from_secs(10));
        assert_eq!(r.attempts(), 4, "a link that drops soon after connecting keeps backing off");
        r.link_up_for(Duration::from_secs(31));
        assert_eq!(r.attempts(), 0);
        assert_eq!(r.next_delay(1.0), RECONNECT_INITIAL);
    }

    #[test]
    fn a_fleet_spreads_out() {
        // 1,000 clients with evenly spread random draws: their first reconnects cover [1 s, 2 s].
        let delays: Vec<Duration> =
            (0..1000).map(|i| Reconnect::default().next_delay(f64::from(i) / 1000.0)).collect();
        let per_100ms = delays.iter().fold([0u32; 10], |mut b, d| {
            let i = ((d.as_millis() - 1000) / 100).min(9) as usize;
            b[i] += 1;
            b
        });
        assert!(per_100ms.iter().all(|&n| n <= 101), "no bucket gets more than its share: {per_100ms:?}");
    }
}
