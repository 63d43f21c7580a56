//! Reading manifests: files, directories (recursive; `*.yaml`, `*.yml`, `*.json`) and stdin;
//! YAML document streams split on `---`, JSON values, and `List` objects unwrapped.

use std::io::Read;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde_json::Value;

use super::yaml::Parsed;
use super::{parse_object, DocumentError, FieldError, Location};
use crate::api::Object;

/// Manifest files larger than this are refused rather than read.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// A valid object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub location: Location,
    pub object: Object,
}

/// Everything found in a set of inputs: the valid objects and, separately, every error.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub objects: Vec<Loaded>,
    pub errors: Vec<DocumentError>,
}

impl LoadResult {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
    fn file_error(&mut self, file: &str, message: String) {
        self.errors.push(DocumentError {
            location: Location { file: file.to_string(), document: 0, line: 0, item: None },
            object: None,
            errors: vec![FieldError::new("", message)],
        });
    }
}

/// Loads every path; `-` reads stdin. Directories are walked recursively in name order.
pub fn load_paths(paths: &[PathBuf]) -> LoadResult {
    let mut result = LoadResult::default();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut text = String::new();
            let mut stdin = std::io::stdin().lock().take(MAX_MANIFEST_BYTES + 1);
            match stdin.read_to_string(&mut text) {
                Ok(n) if n as u64 > MAX_MANIFEST_BYTES => result.file_error("<stdin>", too_large()),
                Ok(_) => load_into(&mut result, "<stdin>", &text, sniff(&text)),
                Err(e) => result.file_error("<stdin>", format!("cannot be read: {e}")),
            }
            continue;
        }
        let name = p.display().to_string();
        match std::fs::metadata(p) {
            Err(e) => result.file_error(&name, format!("cannot be read: {e}")),
            Ok(m) if m.is_dir() => {
                let mut files = Vec::new();
                if let Err(e) = collect_dir(p, &mut files, 0) {
                    result.file_error(&name, e);
                } else if files.is_empty() {
                    result.file_error(&name, "contains no *.yaml, *.yml or *.json files".to_string());
                }
                for f in files {
                    load_file(&mut result, &f);
                }
            }
            Ok(_) => load_file(&mut result, p),
        }
    }
    result
}

fn too_large() -> String {
    format!("is larger than the {} MiB manifest limit", MAX_MANIFEST_BYTES >> 20)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return Err(format!("{}: directories nested too deeply", dir.display()));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot be read: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_dir(&path, out, depth + 1)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            out.push(path);
        }
    }
    Ok(())
}

fn load_file(result: &mut LoadResult, path: &Path) {
    let name = path.display().to_string();
    let bytes = match std::fs::File::open(path).and_then(|f| {
        let mut buf = Vec::new();
        f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut buf)?;
        Ok(buf)
    }) {
        Ok(b) => b,
        Err(e) => return result.file_error(&name, format!("cannot be read: {e}")),
    };
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return result.file_error(&name, too_large());
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return result.file_error(
                &name,
                format!("is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
            )
        }
    };
    let format =
        if path.extension().and_then(|e| e.to_str()) == Some("json") { Format::Json } else { Format::Yaml };
    load_into(result, &name, &text, format);
}

/// The syntax of a manifest text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// JSON when the first significant character opens an object or array, YAML otherwise.
fn sniff(text: &str) -> Format {
    match text.trim_start().chars().next() {
        Some('{') | Some('[') => Format::Json,
        _ => Format::Yaml,
    }
}

/// Loads manifests from a string; `source` names it in errors.
pub fn load_str(source: &str, text: &str) -> LoadResult {
    let mut result = LoadResult::default();
    load_into(&mut result, source, text, sniff(text));
    result
}

fn load_into(result: &mut LoadResult, source: &str, text: &str, format: Format) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let syntax = match format {
        Format::Yaml => "YAML",
        Format::Json => "JSON",
    };
    let mut document = 0;
    if format == Format::Json {
        // YAML's flow syntax is laxer than JSON (trailing commas, unquoted keys): check strict
        // JSON first, then read it with the YAML parser like any manifest.
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for item in stream {
            if let Err(e) = item {
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                push_parse_error(
                    result,
                    source,
                    1,
                    e.line(),
                    format!("is not valid JSON: {msg} (column {})", e.column()),
                );
                return;
            }
        }
    }
    // JSON is YAML's flow syntax, so one parser serves both (with line numbers, duplicate-key
    // detection and the same limits); JSON has no `---` lines, so it is one document.
    for (raw_line, start_line, chunk) in split_yaml(text) {
        let parsed = match super::yaml::parse_document(chunk) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                document += 1;
                let line = raw_line + e.line - 1;
                push_parse_error(
                    result,
                    source,
                    document,
                    line,
                    format!("is not valid {syntax}: {} (column {})", e.message, e.col),
                );
                continue;
            }
        };
        document += 1;
        add_document(result, source, document, start_line, raw_line, parsed);
    }
}

fn push_parse_error(result: &mut LoadResult, file: &str, document: usize, line: usize, message: String) {
    result.errors.push(DocumentError {
        location: Location { file: file.to_string(), document, line, item: None },
        object: None,
        errors: vec![FieldError::new("", message)],
    });
}

fn add_document(
    result: &mut LoadResult,
    file: &str,
    document: usize,
    line: usize,
    raw_line: usize,
    parsed: Parsed,
) {
    let location = Location { file: file.to_string(), document, line, item: None };
    let value = parsed.value;
    // Field lines are relative to the chunk; make them absolute.
    let lines: BTreeMap<String, usize> =
        parsed.lines.into_iter().map(|(k, l)| (k, raw_line + l - 1)).collect();
    // `kind: List` (and `DeploymentList` and the like) carry their objects in `items`.
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || (k.ends_with("List") && value.get("items").is_some()));
    if is_list {
        match value.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let loc = Location { item: Some(i), ..location.clone() };
                    let prefix = format!("items[{i}]");
                    let item_lines = lines
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .filter_map(|(k, l)| {
                            let rest = &k[prefix.len()..];
                            let rest = rest.strip_prefix('.').unwrap_or(rest);
                            (rest.is_empty() || k[prefix.len()..].starts_with(['.', '[']))
                                .then(|| (rest.to_string(), *l))
                        })
                        .collect();
                    add_one(result, loc, item.clone(), &item_lines);
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => result.errors.push(DocumentError {
                location,
                object: None,
                errors: vec![FieldError::new("items", "must be a list")],
            }),
        }
        return;
    }
    add_one(result, location, value, &lines);
}

fn add_one(result: &mut LoadResult, location: Location, value: Value, lines: &BTreeMap<String, usize>) {
    match parse_object(value) {
        Ok(object) => result.objects.push(Loaded { location, object }),
        Err((object, mut errors)) => {
            for e in &mut errors {
                e.line = line_of(lines, &e.path);
            }
            // Report in document order; errors without a line keep their relative order.
            errors.sort_by_key(|e| e.line.unwrap_or(0));
            result.errors.push(DocumentError { location, object, errors })
        }
    }
}

/// The line of `path`, or of its closest ancestor present in the document.
fn line_of(lines: &BTreeMap<String, usize>, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(l) = lines.get(p) {
            return Some(*l);
        }
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

/// Splits a YAML stream into documents at `---` and after `...` markers (both only at column
/// 0, where YAML ends a document even inside a scalar). Yields each document's first line.
fn split_yaml(text: &str) -> Vec<(usize, usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0; // byte offset of the current document
    let mut start_line = 1;
    let mut offset = 0;
    let mut skipping = false; // after `...` until the next `---`
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let lineno = i + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker =
            |m: &str| bare == m || bare.strip_prefix(m).is_some_and(|r| r.starts_with([' ', '\t', '#']));
        if is_marker("---") {
            if !skipping {
                docs.push((start_line, &text[start..offset]));
            }
            skipping = false;
            // Content may follow the marker on the same line (`--- {a: 1}`); keep it.
            start = offset + 3;
            start_line = lineno;
        } else if is_marker("...") {
            if !skipping {
                docs.push((start_line, &text[start..offset]));
            }
            skipping = true;
        }
        offset += line.len();
    }
    if !skipping {
        docs.push((start_line, &text[start..]));
    }
    // A document's first line is the first line with content, for messages; parse errors are
    // relative to the chunk's own first line.
    docs.into_iter()
        .map(|(l, chunk)| {
            let skipped = chunk
                .lines()
                .take_while(|x| {
                    let t = x.trim();
                    t.is_empty() || t.starts_with('#')
                })
                .count();
            (l, l + skipped, chunk)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_lines() {
        let text = "# c\n---\na: 1\n---\n\nb: 2\n...\nignored: x\n---\nc: 3\n";
        let docs = split_yaml(text);
        let content: Vec<(usize, String)> = docs
            .iter()
            .filter(|(_, _, c)| !matches!(super::super::yaml::parse_document(c), Ok(None)))
            .map(|(_, l, c)| (*l, c.trim().to_string()))
            .collect();
        assert_eq!(content, vec![(3, "a: 1".to_string()), (6, "b: 2".to_string()), (10, "c: 3".to_string())]);
    }

    #[test]
    fn marker_inside_text_is_not_a_split() {
        let docs = split_yaml("a: |\n  ---\n  x\n");
        assert_eq!(docs.len(), 1);
    }
}
