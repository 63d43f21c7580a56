//! JSON to YAML for `get -o yaml`: block-style YAML laid out the way `kubectl get -o yaml` prints
//! it, with every string quoted that a YAML 1.1 reader (Kubernetes' own included) would otherwise
//! read as something else, so the output can be edited and applied again unchanged.

use serde_json::{Map, Value};

/// Keys longer than this are written as explicit keys (`? key`): YAML caps implicit keys at 1024
/// characters, and a quoted key can grow when escaped.
const MAX_IMPLICIT_KEY: usize = 512;

/// Renders `v` as a YAML document ending with a newline.
///
/// Layout follows kubectl (go-yaml v2): two-space indentation, sequences directly under their
/// parent key without extra indentation, keys in the map's order, empty collections as `{}` and
/// `[]`, multi-line strings as literal blocks.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0, false),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0, false),
        _ => {
            write_scalar(&mut out, v, 2);
            out.push('\n');
        }
    }
    out
}

/// Writes a non-empty mapping whose keys sit at column `indent`. With `inline_first`, the first
/// key continues a line already started (after a sequence's `- `).
fn write_map(out: &mut String, m: &Map<String, Value>, indent: usize, inline_first: bool) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        if k.chars().count() > MAX_IMPLICIT_KEY {
            // `? "key"` then `: value` on the next line, at the key's column.
            out.push_str("? ");
            out.push_str(&double_quoted(k));
            out.push('\n');
            pad(out, indent);
        } else {
            out.push_str(&key_text(k));
        }
        out.push(':');
        write_child(out, v, indent);
    }
}

/// Writes the value of a mapping entry whose key sits at column `indent`; the line so far ends
/// with the `:`.
fn write_child(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2, false);
        }
        // kubectl does not indent a sequence under its key: `containers:` then `- name: x`.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, indent, false);
        }
        _ => {
            out.push(' ');
            write_scalar(out, v, indent + 2);
            out.push('\n');
        }
    }
}

/// Writes a non-empty sequence whose dashes sit at column `indent`.
fn write_seq(out: &mut String, a: &[Value], indent: usize, inline_first: bool) {
    for (i, v) in a.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => write_map(out, m, indent + 2, true),
            Value::Array(inner) if !inner.is_empty() => write_seq(out, inner, indent + 2, true),
            _ => {
                write_scalar(out, v, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// Writes a scalar (or an empty collection) without the final newline. A literal block's lines
/// are indented to `block_indent`.
fn write_scalar(out: &mut String, v: &Value, block_indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, block_indent),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_string(out: &mut String, s: &str, block_indent: usize) {
    if s.contains('\n') && literal_allowed(s) {
        write_literal(out, s, block_indent);
    } else if resolves_as_non_string(s) {
        // go-yaml (and so kubectl) double-quotes strings that would read back as another type:
        // `"yes"`, `"0644"`, `"2024-01-01T00:00:00Z"`.
        out.push_str(&double_quoted(s));
    } else if plain_allowed(s) {
        out.push_str(s);
    } else if single_quote_allowed(s) {
        out.push_str(&single_quoted(s));
    } else {
        out.push_str(&double_quoted(s));
    }
}

/// A key: like a value, but never a literal block (those cannot be keys), and `<<` is a merge key
/// when plain.
fn key_text(k: &str) -> String {
    if resolves_as_non_string(k) || k.contains('\n') {
        double_quoted(k)
    } else if plain_allowed(k) {
        k.to_string()
    } else if single_quote_allowed(k) {
        single_quoted(k)
    } else {
        double_quoted(k)
    }
}

/// `|`, `|-` or `|+` followed by the lines at `indent`. The chomping indicator keeps the exact
/// number of trailing newlines: `|-` none, `|` one, `|+` all of them.
fn write_literal(out: &mut String, s: &str, indent: usize) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
    }
    // The first trailing newline ends the last line; `|+` keeps the others as empty lines.
    for _ in 1..trailing {
        out.push('\n');
    }
}

/// Whether a multi-line string can be a literal block and read back unchanged.
fn literal_allowed(s: &str) -> bool {
    let body = s.trim_end_matches('\n');
    // A block's indentation is taken from its first line, so that line must not start with
    // white space (or be empty); such strings are double-quoted instead of needing an explicit
    // indentation indicator.
    let Some(first) = body.chars().next() else { return false };
    if matches!(first, ' ' | '\t' | '\n') {
        return false;
    }
    // Tabs are content in a literal block, but readers disagree about tabs that start a line.
    if body.split('\n').any(|line| line.starts_with('\t')) {
        return false;
    }
    // Trailing white space is invisible in a block and lost by editors that trim lines; go-yaml
    // double-quotes such strings, and so do we.
    if body.split('\n').any(|line| line.ends_with([' ', '\t'])) {
        return false;
    }
    s.chars().all(|c| c == '\n' || c == '\t' || (!needs_escape(c) && !c.is_control()))
}

/// Whether `s` may be written as a plain (unquoted) scalar in block context without changing its
/// meaning. Conservative: a false "no" only costs a pair of quotes.
fn plain_allowed(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    let last = s.chars().last().unwrap_or(first);
    if first.is_whitespace() || last.is_whitespace() {
        return false;
    }
    if s.chars().any(|c| c.is_control() || needs_escape(c) || c == '\t') {
        return false;
    }
    let second = s.chars().nth(1);
    match first {
        // `-x` is a plain scalar (kubectl prints `- --port=80`), `- x` a sequence entry.
        '-' if second.is_none_or(char::is_whitespace) => return false,
        '?' | ':' | ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => return false,
        _ => {}
    }
    // Document markers, in case the string ends up at the start of a line.
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    // A non-breaking or other Unicode space is not YAML white space, but readers of other
    // specifications may trim it.
    if s.chars().any(|c| c.is_whitespace() && c != ' ') {
        return false;
    }
    true
}

fn single_quote_allowed(s: &str) -> bool {
    s.chars().all(|c| !c.is_control() && !needs_escape(c))
}

/// Characters that YAML cannot carry outside a double-quoted escape: non-printable ones, and the
/// ones YAML 1.1 reads as line breaks or a byte order mark.
fn needs_escape(c: char) -> bool {
    let u = c as u32;
    u < 0x20 || (0x7f..=0x9f).contains(&u) || matches!(u, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff)
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => {
                let u = c as u32;
                if u <= 0xff {
                    out.push_str(&format!("\\x{u:02X}"));
                } else {
                    out.push_str(&format!("\\u{u:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Whether a plain scalar `s` would be read by some YAML 1.1 reader as something other than a
/// string: null, a boolean, a number in any base, a sexagesimal number, infinity or NaN, a
/// timestamp, or a merge key. Deliberately broad; YAML 1.2 readers agree on all of these.
fn resolves_as_non_string(s: &str) -> bool {
    if matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "y"
            | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
            | "<<"
            | "="
    ) {
        return true;
    }
    looks_numeric(s) || looks_like_timestamp(s)
}

fn looks_numeric(s: &str) -> bool {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let t: String = unsigned.chars().filter(|c| *c != '_').collect();
    if t.is_empty() {
        return false;
    }
    // Decimal integers and floats in every spelling Rust accepts (`1.`, `.5`, `1e3`, `inf`,
    // `NaN`): a superset of what YAML readers accept as decimal numbers.
    if t.parse::<f64>().is_ok() {
        return true;
    }
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | ".nan") {
        return true;
    }
    let all = |digits: &str, radix: u32| !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    if let Some(h) = lower.strip_prefix("0x") {
        return all(h, 16);
    }
    if let Some(b) = lower.strip_prefix("0b") {
        return all(b, 2);
    }
    if let Some(o) = lower.strip_prefix("0o") {
        return all(o, 8);
    }
    // YAML 1.1 sexagesimal: `190:20:30` is an integer, `1:30.5` a float.
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    let mut parts = whole.split(':');
    let head = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    !rest.is_empty()
        && all(head, 10)
        && rest.iter().all(|p| all(p, 10) && p.len() <= 2)
        && frac.chars().all(|c| c.is_ascii_digit())
}

/// `2024-01-31`, `2024-1-2 10:00:00`, `2024-01-31T10:00:00Z`: anything starting like a YAML 1.1
/// timestamp (go-yaml quotes these, and some readers turn them into dates).
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 6 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

#[cfg(test)]
mod tests;
