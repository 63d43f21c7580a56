//! Human-readable output of the kubectl-like CLI: `get` tables, ages and `describe` text, made
//! from objects in their Kubernetes JSON form.
//!
//! Everything here is a pure function of its arguments (the current time is passed in), and
//! nothing trusts the shape of an object: they come from the network, so any field may be missing
//! or of the wrong type, and every string is cleaned of control characters before it reaches a
//! terminal.

use base64::Engine as _;
use flotilla_shared::api::Kind;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// The annotation `kubectl apply` keeps the whole applied manifest in. kubectl's describe hides
/// it, and so do we: for a Secret it holds the secret values.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Longer annotation lines are shortened in `describe`, as kubectl does.
const MAX_ANNOTATION_LEN: usize = 140;

/// Nesting deeper than this is elided in the generic `describe` rendering.
const MAX_DESCRIBE_DEPTH: usize = 16;

/// The age of an object created at `created` (RFC 3339) as kubectl prints it (`45s`, `5m30s`,
/// `3h`, `12d`), or `<unknown>` when the time is missing or unreadable.
pub fn age(created: Option<&str>, now: OffsetDateTime) -> String {
    match created.and_then(parse_time) {
        Some(t) => human_duration(seconds_between(t, now)),
        None => "<unknown>".to_string(),
    }
}

/// kubectl's `HumanDuration`: precise for short durations, coarser as they grow. Negative
/// durations (a device clock ahead of the hub's) print as `0s` rather than kubectl's `<invalid>`.
fn human_duration(seconds: i64) -> String {
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if days == 0 { format!("{years}y") } else { format!("{years}y{days}d") };
    }
    format!("{}y", hours / 24 / 365)
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Whole seconds from `from` to `to`, truncated toward zero like Go's `int(d.Seconds())`.
fn seconds_between(from: OffsetDateTime, to: OffsetDateTime) -> i64 {
    let nanos = to.unix_timestamp_nanos() - from.unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000_000).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

mod describe;
mod describe_pod;
mod table;

pub use describe::describe;
#[allow(unused_imports)]
use describe::*;
use describe_pod::*;
pub use table::table;
#[allow(unused_imports)]
use table::*;

/// Go's `text/tabwriter` (which kubectl prints through), over lines already split into cells.
///
/// A column is a run of consecutive lines that all have a cell in it that is not their last
/// cell; it is as wide as its widest cell plus `padding`, and at least `min_width`. A line's last
/// cell is never padded. Trailing spaces are removed from every line.
fn tabwrite(lines: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(lines, &mut widths, 0, lines.len(), min_width, padding, &mut out);
    out
}

fn format_block(
    lines: &[Vec<String>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let has_cell = |i: usize| lines.get(i).is_some_and(|l| column + 1 < l.len());
    let mut this = line0;
    while this < line1 {
        if !has_cell(this) {
            this += 1;
            continue;
        }
        // A column block starts here: print the lines before it, then size the block.
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = min_width;
        while this < line1 && has_cell(this) {
            let w = lines.get(this).and_then(|l| l.get(column)).map_or(0, |c| c.chars().count());
            width = width.max(w + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, widths, line0, this, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(lines: &[Vec<String>], widths: &[usize], from: usize, to: usize, out: &mut String) {
    for line in lines.get(from..to).unwrap_or_default() {
        let mut s = String::new();
        for (j, cell) in line.iter().enumerate() {
            s.push_str(cell);
            if j + 1 < line.len() {
                if let Some(w) = widths.get(j) {
                    s.push_str(&spaces(w.saturating_sub(cell.chars().count())));
                }
            }
        }
        out.push_str(s.trim_end_matches(' '));
        out.push('\n');
    }
}

// ---------------------------------------------------------------------------------------------
// Reading untrusted JSON

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

/// The string at `path`, or "" when missing or not a string.
fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The integer at `path`, 0 when missing or not a number.
fn int(v: &Value, path: &[&str]) -> i64 {
    opt_int(at(v, path)).unwrap_or(0)
}

fn opt_int(v: Option<&Value>) -> Option<i64> {
    let n = v?.as_number()?;
    n.as_i64()
        .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
        // `as` saturates (and maps NaN to 0), so a float can never panic here.
        .or_else(|| n.as_f64().map(|f| f as i64))
}

fn or<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() {
        default
    } else {
        s
    }
}

/// A scalar as text (strings as they are, numbers and booleans as JSON writes them); lists and
/// mappings as compact JSON, null as "".
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn scalar_or(v: Option<&Value>, default: &str) -> String {
    match v.map(scalar_text) {
        Some(s) if !s.is_empty() => s,
        _ => default.to_string(),
    }
}

/// A mapping's entries as text, sorted by key; empty when it is not a mapping.
fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m: &Map<String, Value>| m.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs
}

fn key_count(v: Option<&Value>) -> usize {
    v.and_then(Value::as_object).map_or(0, Map::len)
}

fn deleting(o: &Value) -> bool {
    at(o, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null())
}

/// Whether status.conditions has `ty` with status True.
fn condition_true(o: &Value, ty: &str) -> bool {
    list(o, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == ty && text(c, &["status"]) == "True")
}

fn spaces(n: usize) -> String {
    " ".repeat(n)
}

/// `s` cut to `max` characters with `...` appended when longer.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Text safe for one table cell or describe line: line breaks and tabs become spaces, and other
/// control characters (an escape sequence in a label could rewrite the user's terminal) and
/// bidirectional overrides become `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if unsafe_char(c) => '?',
            c => c,
        })
        .collect()
}

/// Like `clean`, but keeps tabs (for ConfigMap values printed on lines of their own).
fn clean_keep_tabs(s: &str) -> String {
    s.chars().map(|c| if c != '\t' && (c == '\r' || unsafe_char(c)) { '?' } else { c }).collect()
}

fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests;
