//! Cron schedules as Kubernetes CronJobs write them (the 5-field "standard" syntax of
//! robfig/cron, which Kubernetes uses), evaluated in UTC with hand-written calendar math.
//!
//! Supported: `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (= `a-max/n`), lists
//! `a,b-c`, month names JAN-DEC and weekday names SUN-SAT (any case), day of week 0-7 (7 is
//! Sunday), `?` as `*`, and `@yearly @annually @monthly @weekly @daily @midnight @hourly`. As in
//! robfig/cron, a day matches when both day fields match, unless both are restricted (neither
//! is `*`/`?`, `*/1` counting as `*` but `*/2` as restricted), then when either matches.
//! Left out: `TZ=`/`CRON_TZ=` prefixes (only UTC), `@every`, seconds and years fields.

use std::fmt;
use std::str::FromStr;

const DAY: i64 = 86_400;
/// How far `next_after` looks ahead: five years.
const HORIZON: i64 = (5 * 365 + 2) * DAY;
/// Times beyond ±2^40 s (about 34,000 years) are not evaluated.
const MAX_ABS: i64 = 1 << 40;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    /// Bit 0 is Sunday.
    weekdays: u64,
    /// The day-of-month field was `*` or `?`.
    days_star: bool,
    /// The day-of-week field was `*` or `?`.
    weekdays_star: bool,
}

/// Why a schedule did not parse: the field ("minute", "hour", "day of month", "month",
/// "day of week" or "schedule") and what was wrong with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for CronError {}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// The end of `*` and of an open `a/n`.
    star_max: u32,
    names: &'static [&'static str],
    first_name: u32,
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, star_max: 59, names: &[], first_name: 0 };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, star_max: 23, names: &[], first_name: 0 };
const DOM: Field = Field { name: "day of month", min: 1, max: 31, star_max: 31, names: &[], first_name: 0 };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    star_max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    first_name: 1,
};
const DOW: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    star_max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    first_name: 0,
};

fn schedule_error(message: String) -> CronError {
    CronError { field: "schedule", message }
}

impl FromStr for Schedule {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, CronError> {
        let s = s.trim();
        if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
            return Err(schedule_error(format!(
                "time zone prefixes (TZ=, CRON_TZ=) are not supported, schedules run in UTC: {s:?}"
            )));
        }
        let s = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => {
                return Err(schedule_error(format!(
                    "unsupported macro {m:?} (expected @yearly, @annually, @monthly, @weekly, @daily, \
                     @midnight or @hourly)"
                )))
            }
            s => s,
        };
        let fields: Vec<&str> = s.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(schedule_error(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {} in {s:?}",
                fields.len()
            )));
        };
        let (minutes, _) = parse_field(minute, &MINUTE)?;
        let (hours, _) = parse_field(hour, &HOUR)?;
        let (days, days_star) = parse_field(dom, &DOM)?;
        let (months, _) = parse_field(month, &MONTH)?;
        let (weekdays, weekdays_star) = parse_field(dow, &DOW)?;
        let weekdays = (weekdays & 0x7f) | ((weekdays >> 7) & 1);
        Ok(Schedule { minutes, hours, days, months, weekdays, days_star, weekdays_star })
    }
}

/// A comma-separated field: its bits and whether it is unrestricted (`*`/`?`).
fn parse_field(text: &str, f: &Field) -> Result<(u64, bool), CronError> {
    let mut bits = 0;
    let mut star = false;
    for part in text.split(',') {
        let (b, s) = parse_part(part, text, f)?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

fn parse_part(part: &str, text: &str, f: &Field) -> Result<(u64, bool), CronError> {
    let err = |message: String| CronError { field: f.name, message };
    if part.is_empty() {
        return Err(err(format!("empty list element in {text:?}")));
    }
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (part, None),
    };
    if step.is_some_and(|s| s.contains('/')) {
        return Err(err(format!("too many slashes in {part:?}")));
    }
    let (star, lo, hi) = if range == "*" || range == "?" {
        (true, f.min, f.star_max)
    } else {
        match range.split_once('-') {
            None => {
                let v = value(range, part, f)?;
                (false, v, if step.is_some() { f.star_max.max(v) } else { v })
            }
            Some((_, b)) if b.contains('-') => return Err(err(format!("too many hyphens in {part:?}"))),
            Some((a, b)) => (false, value(a, part, f)?, value(b, part, f)?),
        }
    };
    let step = match step {
        None => 1,
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            // Huge steps select only the start of the range.
            s.parse::<usize>().unwrap_or(usize::MAX)
        }
        Some(s) => return Err(err(format!("step {s:?} in {part:?} is not a number"))),
    };
    if step == 0 {
        return Err(err(format!("step 0 in {part:?} must be positive")));
    }
    if lo > hi {
        return Err(err(format!("range {part:?} runs backwards ({lo} > {hi})")));
    }
    let bits = (lo..=hi).step_by(step).fold(0u64, |b, v| b | 1 << v);
    Ok((bits, star && step == 1))
}

/// One number or name of a field, checked against the field's range.
fn value(text: &str, part: &str, f: &Field) -> Result<u32, CronError> {
    let err = |message: String| CronError { field: f.name, message };
    if text.is_empty() {
        return Err(err(format!("missing number in {part:?}")));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (f.min..=f.max).contains(&v) => Ok(v),
            _ => Err(err(format!("{text} is out of range {}-{}", f.min, f.max))),
        };
    }
    let lower = text.to_ascii_lowercase();
    match f.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(f.first_name + i as u32),
        None if f.names.is_empty() => Err(err(format!("{text:?} is not a number"))),
        None => Err(err(format!("{text:?} is not a number or a {} name", f.name))),
    }
}

/// The lowest set bit at or above `from`.
fn next_bit(bits: u64, from: i64) -> Option<i64> {
    if !(0..64).contains(&from) {
        return None;
    }
    let masked = bits & (u64::MAX << from);
    (masked != 0).then(|| i64::from(masked.trailing_zeros()))
}

fn has(bits: u64, v: i64) -> bool {
    (0..64).contains(&v) && (bits >> v) & 1 == 1
}

impl Schedule {
    fn day_matches(&self, day: i64, weekday: i64) -> bool {
        let (d, w) = (has(self.days, day), has(self.weekdays, weekday));
        if self.days_star || self.weekdays_star {
            d && w
        } else {
            d || w
        }
    }

    /// Whether the minute containing `unix` (seconds, UTC) matches.
    pub fn matches(&self, unix: i64) -> bool {
        let day = unix.div_euclid(DAY);
        let secs = unix - day * DAY;
        let (_, m, d) = civil_from_days(day);
        has(self.months, m)
            && self.day_matches(d, weekday(day))
            && has(self.hours, secs / 3600)
            && has(self.minutes, secs % 3600 / 60)
    }

    /// The first whole minute strictly after `unix` (seconds, UTC) that matches, or None when
    /// nothing matches within 5 years (e.g. "0 0 30 2 *"). Skips whole months, days and hours
    /// that cannot match.
    pub fn next_after(&self, unix: i64) -> Option<i64> {
        if !(-MAX_ABS..=MAX_ABS).contains(&unix) {
            return None;
        }
        let mut t = (unix.div_euclid(60) + 1) * 60;
        let end = t + HORIZON;
        while t <= end {
            let day = t.div_euclid(DAY);
            let (y, m, d) = civil_from_days(day);
            if !has(self.months, m) {
                t = if m == 12 { days_from_civil(y + 1, 1, 1) } else { days_from_civil(y, m + 1, 1) } * DAY;
                continue;
            }
            if !self.day_matches(d, weekday(day)) {
                t = (day + 1) * DAY;
                continue;
            }
            let secs = t - day * DAY;
            let (hour, minute) = (secs / 3600, secs % 3600 / 60);
            let Some(h) = next_bit(self.hours, hour) else {
                t = (day + 1) * DAY;
                continue;
            };
            let Some(mi) = next_bit(self.minutes, if h == hour { minute } else { 0 }) else {
                t = day * DAY + (h + 1) * 3600;
                continue;
            };
            let found = day * DAY + h * 3600 + mi * 60;
            return (found <= end).then_some(found);
        }
        None
    }
}

/// Day of week of a day number (days since 1970-01-01, a Thursday); 0 is Sunday.
fn weekday(day: i64) -> i64 {
    (day + 4).rem_euclid(7)
}

/// Howard Hinnant's `civil_from_days`: (year, month 1-12, day 1-31) of a day number.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Howard Hinnant's `days_from_civil`: the day number of a date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn at(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60
    }

    fn sched(s: &str) -> Schedule {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// The next `n` times after `from`.
    fn next_n(s: &str, from: i64, n: usize) -> Vec<i64> {
        let s = sched(s);
        std::iter::successors(s.next_after(from), |t| s.next_after(*t)).take(n).collect()
    }

    fn check(s: &str, from: i64, want: &[i64]) {
        assert_eq!(next_n(s, from, want.len()), want, "{s:?}");
    }

    #[test]
    fn calendar_math_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(weekday(days_from_civil(2024, 2, 29)), 4);
        for day in (-800_000..800_000).step_by(7) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn syntax_forms() {
        let t0 = at(2024, 1, 1, 0, 0); // a Monday
        check("* * * * *", t0, &[t0 + 60, t0 + 120]);
        check("5 * * * *", t0, &[t0 + 300, t0 + 3900]);
        check("10-12 3 * * *", t0, &[at(2024, 1, 1, 3, 10), at(2024, 1, 1, 3, 11), at(2024, 1, 1, 3, 12)]);
        check("*/20 0 * * *", t0, &[t0 + 1200, t0 + 2400, at(2024, 1, 2, 0, 0)]);
        check("10-40/15 0 * * *", t0, &[t0 + 600, t0 + 1500, t0 + 2400, at(2024, 1, 2, 0, 10)]);
        check("50/5 0 * * *", t0, &[t0 + 3000, t0 + 3300, at(2024, 1, 2, 0, 50)]);
        check("1,3-4 0 * * *", t0, &[t0 + 60, t0 + 180, t0 + 240, at(2024, 1, 2, 0, 1)]);
        check("0 0 1 jun,Dec *", t0, &[at(2024, 6, 1, 0, 0), at(2024, 12, 1, 0, 0)]);
        check("0 0 * * Fri-sat", t0, &[at(2024, 1, 5, 0, 0), at(2024, 1, 6, 0, 0), at(2024, 1, 12, 0, 0)]);
        check("0 0 * * sat-7", t0, &[at(2024, 1, 6, 0, 0), at(2024, 1, 7, 0, 0), at(2024, 1, 13, 0, 0)]);
        check("0 0 * * 7", t0, &[at(2024, 1, 7, 0, 0)]);
        check("0 0 * * 5-7", t0, &[at(2024, 1, 5, 0, 0), at(2024, 1, 6, 0, 0), at(2024, 1, 7, 0, 0)]);
        check("0 0 ? * 2", t0, &[at(2024, 1, 2, 0, 0), at(2024, 1, 9, 0, 0)]);
        check("0 0 * * mon/2", t0, &[at(2024, 1, 3, 0, 0), at(2024, 1, 5, 0, 0), at(2024, 1, 8, 0, 0)]);
        // Strictly after, whole minutes.
        check("* * * * *", t0 + 59, &[t0 + 60]);
        check("* * * * *", t0 - 1, &[t0]);
        check("0 0 1 1 *", at(1960, 5, 5, 5, 5), &[at(1961, 1, 1, 0, 0)]);
    }

    #[test]
    fn macros() {
        for (m, s) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            assert_eq!(sched(m), sched(s), "{m}");
        }
        check("@weekly", at(2024, 1, 1, 0, 0), &[at(2024, 1, 7, 0, 0)]);
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        let t0 = at(2024, 1, 1, 0, 0); // Monday
                                       // Both restricted: the 13th or any Friday.
        check("0 0 13 * 5", t0, &[at(2024, 1, 5, 0, 0), at(2024, 1, 12, 0, 0), at(2024, 1, 13, 0, 0)]);
        // One unrestricted: both must match.
        check("0 0 13 * *", t0, &[at(2024, 1, 13, 0, 0), at(2024, 2, 13, 0, 0)]);
        check("0 0 * 1 5", t0, &[at(2024, 1, 5, 0, 0), at(2024, 1, 12, 0, 0)]);
        check("0 0 ? * 5", t0, &[at(2024, 1, 5, 0, 0)]);
        // robfig/cron: a step drops the star, so this is the 1st/3rd... or a Friday.
        let odd_or_friday = [3, 5, 7, 9, 11, 12, 13].map(|d| at(2024, 1, d, 0, 0));
        check("0 0 */2 * 5", at(2024, 1, 1, 1, 0), &odd_or_friday);
    }

    #[test]
    fn leap_day_and_impossible_dates() {
        check("0 12 29 2 *", at(2021, 3, 1, 0, 0), &[at(2024, 2, 29, 12, 0), at(2028, 2, 29, 12, 0)]);
        assert_eq!(sched("0 0 30 2 *").next_after(at(2024, 1, 1, 0, 0)), None);
        assert_eq!(sched("0 0 31 4,6,9,11 *").next_after(0), None);
        assert_eq!(sched("* * * * *").next_after(i64::MAX), None);
        assert_eq!(sched("* * * * *").next_after(i64::MIN), None);
    }

    #[test]
    fn errors_name_field_and_text() {
        for (s, want) in [
            ("61 * * * *", "minute: 61 is out of range 0-59"),
            ("* 24 * * *", "hour: 24 is out of range 0-23"),
            ("* * 0 * *", "day of month: 0 is out of range 1-31"),
            ("* * * 13 *", "month: 13 is out of range 1-12"),
            ("* * * * 8", "day of week: 8 is out of range 0-7"),
            ("* * * * 99999999999", "day of week: 99999999999 is out of range 0-7"),
            ("* * * * *", ""),
            ("* * * *", "schedule: expected 5 fields"),
            ("* * * * * *", "schedule: expected 5 fields"),
            ("", "schedule: expected 5 fields"),
            ("1,,2 * * * *", "minute: empty list element in \"1,,2\""),
            ("1, * * * *", "minute: empty list element"),
            ("*/0 * * * *", "minute: step 0 in \"*/0\" must be positive"),
            ("*/x * * * *", "minute: step \"x\" in \"*/x\" is not a number"),
            ("*/ * * * *", "minute: step \"\" in"),
            ("1/2/3 * * * *", "minute: too many slashes"),
            ("1-2-3 * * * *", "minute: too many hyphens"),
            ("5-3 * * * *", "minute: range \"5-3\" runs backwards"),
            ("* * * * SAT-SUN", "day of week: range \"SAT-SUN\" runs backwards (6 > 0)"),
            ("-3 * * * *", "minute: missing number in \"-3\""),
            ("x * * * *", "minute: \"x\" is not a number"),
            ("* * * foo *", "month: \"foo\" is not a number or a month name"),
            ("* * * * funday", "day of week: \"funday\" is not a number or a day of week name"),
            ("TZ=Europe/Paris * * * * *", "schedule: time zone prefixes"),
            ("CRON_TZ=UTC 0 0 * * *", "schedule: time zone prefixes"),
            ("@every 5m", "schedule: unsupported macro \"@every 5m\""),
            ("@reboot", "schedule: unsupported macro"),
        ] {
            match s.parse::<Schedule>() {
                Ok(_) => assert!(want.is_empty(), "{s:?} parsed, wanted {want:?}"),
                Err(e) => assert!(!want.is_empty() && e.to_string().starts_with(want), "{s:?}: {e}"),
            }
        }
    }

    /// A deterministic linear congruential generator.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }

        fn field(&mut self, min: u64, max: u64, names: &[&str], star_weight: u64) -> String {
            let mut v = || min + self.below(max - min + 1);
            let (a, b) = (v(), v());
            let (lo, hi) = (a.min(b), a.max(b));
            let step = 1 + self.below(7);
            match self.below(8 + star_weight) {
                0 => format!("{a}"),
                1 => format!("{lo}-{hi}"),
                2 => format!("*/{step}"),
                3 => format!("{lo}-{hi}/{step}"),
                4 => format!("{a}/{step}"),
                5 => format!("{a},{lo}-{hi}"),
                6 if !names.is_empty() => names[(a - min) as usize % names.len()].to_uppercase(),
                7 if min > 0 || max == 7 => "?".into(),
                _ => "*".into(),
            }
        }
    }

    #[test]
    fn next_after_agrees_with_a_minute_by_minute_search() {
        const BOUND: i64 = 40_000;
        let mut rng = Lcg(42);
        for _ in 0..3000 {
            let s = [
                rng.field(0, 59, &[], 2),
                rng.field(0, 23, &[], 2),
                rng.field(1, 31, &[], 6),
                rng.field(1, 12, MONTH.names, 12),
                rng.field(0, 7, DOW.names, 4),
            ]
            .join(" ");
            let schedule = sched(&s);
            let from = -1_000_000_000 + rng.below(3_000_000_000) as i64;
            let naive = (1..=BOUND).map(|i| (from.div_euclid(60) + i) * 60).find(|t| schedule.matches(*t));
            let fast = schedule.next_after(from);
            match naive {
                Some(t) => assert_eq!(fast, Some(t), "{s:?} after {from}"),
                None => assert!(fast.is_none_or(|t| t > from + BOUND * 60), "{s:?} after {from}"),
            }
        }
    }
}
