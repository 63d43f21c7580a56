//! YAML to JSON the way Kubernetes reads manifests: YAML 1.1 scalars (`0644` is octal,
//! `yes`/`on` are booleans, `~` is null), merge keys (`<<`), anchors and aliases, duplicate
//! keys rejected, and the line of every field recorded for error messages.
//!
//! Built on `yaml-rust2`'s event parser. Limits keep hostile input cheap: nesting depth and the
//! number of nodes (counting alias expansions, against "billion laughs") are capped, and
//! parsing stops at the first event past a limit.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::schema::join;

/// Deeper nesting than this is refused (Kubernetes objects need about 15 levels).
pub const MAX_DEPTH: usize = 64;
/// More nodes than this, counting every alias expansion, are refused.
pub const MAX_NODES: usize = 1_000_000;

/// A parsed document: its JSON value and the line of each field path.
#[derive(Debug, Default)]
pub struct Parsed {
    pub value: Value,
    pub lines: BTreeMap<String, usize>,
}

/// A syntax error, with its position in the parsed text (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

type Result<T> = std::result::Result<T, SyntaxError>;

/// Parses one YAML document. Returns `None` for an empty document.
pub fn parse_document(text: &str) -> Result<Option<Parsed>> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        lines: BTreeMap::new(),
    };
    let mut value = None;
    loop {
        let (ev, mark) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            other => {
                if value.is_some() {
                    return Err(err(mark, "a second document starts here without a '---' line"));
                }
                let (v, _) = b.node(other, mark, "", 0)?;
                value = Some(v);
            }
        }
    }
    Ok(value.and_then(|v| {
        if v.is_null() {
            None
        } else {
            Some(Parsed { value: v, lines: std::mem::take(&mut b.lines) })
        }
    }))
}

fn err(mark: Marker, message: impl Into<String>) -> SyntaxError {
    SyntaxError { line: mark.line(), col: mark.col() + 1, message: message.into() }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    /// Anchored values and their node counts.
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    lines: BTreeMap<String, usize>,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker)> {
        self.parser.next_token().map_err(|e| SyntaxError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })
    }

    fn count(&mut self, n: usize, mark: Marker) -> Result<()> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(err(
                mark,
                format!("document expands to more than {MAX_NODES} nodes (aliases nested too deeply?)"),
            ));
        }
        Ok(())
    }

    /// Builds the node that starts with `ev`. Returns the value and its node count.
    fn node(&mut self, ev: Event, mark: Marker, path: &str, depth: usize) -> Result<(Value, usize)> {
        if depth > MAX_DEPTH {
            return Err(err(mark, format!("nesting is deeper than {MAX_DEPTH} levels")));
        }
        self.lines.entry(path.to_string()).or_insert(mark.line());
        match ev {
            Event::Alias(id) => {
                let (v, n) = self.anchors.get(&id).cloned().ok_or_else(|| err(mark, "unknown alias"))?;
                self.count(n, mark)?;
                Ok((v, n))
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, mark)?;
                let v = resolve_scalar(&text, style, tag.as_ref()).map_err(|m| err(mark, m))?;
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), 1));
                }
                Ok((v, 1))
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, mark)?;
                let mut items = Vec::new();
                let mut total = 1;
                loop {
                    let (ev, m) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    let child = format!("{path}[{}]", items.len());
                    let (v, n) = self.node(ev, m, &child, depth + 1)?;
                    total += n;
                    items.push(v);
                }
                let v = Value::Array(items);
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), total));
                }
                Ok((v, total))
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, mark)?;
                let mut map = Map::new();
                let mut key_lines: HashMap<String, usize> = HashMap::new();
                let mut merges: Vec<Value> = Vec::new();
                let mut total = 1;
                loop {
                    let (kev, kmark) = self.next()?;
                    let key = match kev {
                        Event::MappingEnd => break,
                        Event::Scalar(text, style, _, tag) => {
                            self.count(1, kmark)?;
                            let resolved =
                                resolve_scalar(&text, style, tag.as_ref()).map_err(|m| err(kmark, m))?;
                            if style == TScalarStyle::Plain && text == "<<" && tag.is_none() {
                                let (vev, vmark) = self.next()?;
                                let (v, n) = self.node(vev, vmark, path, depth + 1)?;
                                total += n;
                                match v {
                                    Value::Object(_) => merges.push(v),
                                    Value::Array(list) if list.iter().all(Value::is_object) => {
                                        merges.extend(list)
                                    }
                                    _ => {
                                        return Err(err(
                                            vmark,
                                            "a merge key (<<) takes a mapping or a list of mappings",
                                        ))
                                    }
                                }
                                continue;
                            }
                            match resolved {
                                Value::String(s) => s,
                                // Kubernetes turns scalar keys into their text (`1: x` is "1").
                                _ => text,
                            }
                        }
                        Event::Alias(id) => match self.anchors.get(&id) {
                            Some((Value::String(s), _)) => s.clone(),
                            Some(_) => return Err(err(kmark, "a mapping key must be a scalar")),
                            None => return Err(err(kmark, "unknown alias")),
                        },
                        _ => return Err(err(kmark, "a mapping key must be a scalar, not a list or mapping")),
                    };
                    if let Some(first) = key_lines.get(&key) {
                        return Err(err(
                            kmark,
                            format!("duplicate key {key:?} (first defined at line {first})"),
                        ));
                    }
                    key_lines.insert(key.clone(), kmark.line());
                    let child = join(path, &key);
                    self.lines.insert(child.clone(), kmark.line());
                    let (vev, vmark) = self.next()?;
                    let (v, n) = self.node(vev, vmark, &child, depth + 1)?;
                    total += n;
                    map.insert(key, v);
                }
                // Merged keys never override keys written in the mapping itself; earlier merge
                // sources win over later ones.
                for m in merges {
                    if let Value::Object(src) = m {
                        for (k, v) in src {
                            map.entry(k).or_insert(v);
                        }
                    }
                }
                let v = Value::Object(map);
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), total));
                }
                Ok((v, total))
            }
            Event::SequenceEnd
            | Event::MappingEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => Err(err(mark, "unexpected structure")),
        }
    }
}

/// Resolves a scalar as YAML 1.1 (go-yaml v2, which Kubernetes uses) does: only plain scalars
/// are typed; quoted and block scalars are strings unless tagged.
fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> std::result::Result<Value, String> {
    if let Some(t) = tag {
        if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" {
            return match t.suffix.as_str() {
                "str" | "binary" | "timestamp" => Ok(Value::String(text.to_string())),
                "null" => Ok(Value::Null),
                "bool" => {
                    plain_bool(text).map(Value::Bool).ok_or_else(|| format!("{text:?} is not a boolean"))
                }
                "int" => plain_int(text).ok_or_else(|| format!("{text:?} is not an integer")),
                "float" => plain_float(text)
                    .or_else(|| plain_int(text))
                    .ok_or_else(|| format!("{text:?} is not a number")),
                "map" | "seq" => Ok(Value::String(text.to_string())),
                other => Err(format!("unsupported tag !!{other}")),
            };
        }
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = plain_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = plain_int(text) {
        return Ok(n);
    }
    if let Some(f) = plain_float(text) {
        return Ok(f);
    }
    if matches!(
        text,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "-.inf" | "+.Inf" | "-.Inf" | ".nan" | ".NaN" | ".NAN"
    ) {
        return Err(format!("{text} has no JSON representation"));
    }
    Ok(Value::String(text.to_string()))
}

fn plain_bool(t: &str) -> Option<bool> {
    match t {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn plain_int(t: &str) -> Option<Value> {
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    let (radix, digits) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h.to_string())
    } else if let Some(b) = digits.strip_prefix("0b") {
        (2, b.to_string())
    } else if let Some(o) = digits.strip_prefix("0o") {
        (8, o.to_string())
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, digits[1..].to_string())
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(&digits, radix).ok()?;
    if neg {
        let v =
            i64::try_from(magnitude).ok().map(|m| -m).or_else(|| (magnitude == 1 << 63).then_some(i64::MIN));
        Some(match v {
            Some(v) => Value::Number(v.into()),
            None => Value::Number(Number::from_f64(-(magnitude as f64))?),
        })
    } else {
        Some(match u64::try_from(magnitude) {
            Ok(v) => Value::Number(v.into()),
            Err(_) => Value::Number(Number::from_f64(magnitude as f64)?),
        })
    }
}

fn plain_float(t: &str) -> Option<Value> {
    // [-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?
    let b = t.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i = 1;
    }
    let start = i;
    while i < b.len() && (b[i].is_ascii_digit() || (b[i] == b'_' && i > start)) {
        i += 1;
    }
    let int_digits = i - start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
            frac_digits += 1;
        }
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    let f: f64 = clean.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Value {
        parse_document(s).unwrap().map(|p| p.value).unwrap_or(Value::Null)
    }

    #[test]
    fn yaml_1_1_scalars_like_kubernetes() {
        assert_eq!(
            parse("a: 0644\nb: yes\nc: off\nd: ~\ne: '0644'\nf: 1e3\ng: 0.5\nh: 0x1F\ni: 1_000\nj: \"yes\"\nk: -7\nl: 12345678901234567890123\n"),
            json!({"a": 420, "b": true, "c": false, "d": null, "e": "0644", "f": 1000.0, "g": 0.5, "h": 31, "i": 1000, "j": "yes", "k": -7, "l": 1.2345678901234568e22})
        );
        assert_eq!(parse("v: 08\n"), json!({"v": 8.0}), "not octal: go-yaml v2 falls back to a float");
        assert_eq!(parse("v: !!str 10\nw: !!int '10'\n"), json!({"v": "10", "w": 10}));
    }

    #[test]
    fn keys_keep_document_order_and_lines() {
        let p = parse_document("z: 1\na:\n  - x: 1\n    y: 2\n").unwrap().unwrap();
        assert_eq!(p.value.as_object().unwrap().keys().collect::<Vec<_>>(), ["z", "a"]);
        assert_eq!(p.lines.get("a[0].y"), Some(&4));
        assert_eq!(p.lines.get("z"), Some(&1));
    }

    #[test]
    fn merge_keys_and_aliases() {
        let v = parse("base: &b {cpu: 1, memory: 2}\nover:\n  <<: *b\n  memory: 3\n");
        assert_eq!(v["over"], json!({"memory": 3, "cpu": 1}));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse_document("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("duplicate key \"a\" (first defined at line 1)"), "{e:?}");
    }

    #[test]
    fn hostile_input_is_cheap() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let t = std::time::Instant::now();
        let e = parse_document(&deep).unwrap_err();
        assert!(e.message.contains("deeper than") || e.message.contains("recursion"), "{e:?}");
        assert!(t.elapsed().as_secs() < 5);
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            laughs.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        assert!(parse_document(&laughs).unwrap_err().message.contains("more than"));
        assert!(parse_document("{a: 1").is_err());
        assert!(parse_document("[1, 2]: x\n").is_err());
    }

    #[test]
    fn empty_documents() {
        assert!(parse_document("# only a comment\n").unwrap().is_none());
        assert!(parse_document("").unwrap().is_none());
        assert!(parse_document("~\n").unwrap().is_none());
    }
}
