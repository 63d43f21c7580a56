//! Manifest loading: multi-document YAML and JSON from files, directories and stdin, Kubernetes
//! `List` objects, and validation that reports every error of a document with its file,
//! document index, line and field path.

pub mod emit;
mod load;
mod schema;
mod validate;
pub mod yaml;

pub use load::{load_paths, load_str, LoadResult, Loaded, MAX_MANIFEST_BYTES};
pub use validate::validate_object;

use std::fmt;

use serde_json::Value;

use crate::api::{Kind, Object};

/// One problem with one field. Displays as `{path} {message}`: messages are phrased to follow
/// the path (`spec.replicas must be an integer (got string "three")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
    /// The line of the field (or of its closest parent present in the document), when the
    /// document came from text.
    pub line: Option<usize>,
}

impl FieldError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        FieldError { path: path.to_string(), message: message.into(), line: None }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} {}", self.path, self.message)
        }
    }
}

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The file as the user named it, or `<stdin>`.
    pub file: String,
    /// 1-based index of the document in the file (empty documents are not counted).
    pub document: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    /// Index in a `List`'s `items`, when the object came from one.
    pub item: Option<usize>,
}

impl Location {
    /// `file: document N, line L` (with `, items[i]` for List items), or just `file` for
    /// errors about the whole file.
    fn describe(&self, line: Option<usize>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            return write!(f, "{}", self.file);
        }
        write!(f, "{}: document {}, line {}", self.file, self.document, line.unwrap_or(self.line))?;
        if let Some(i) = self.item {
            write!(f, ", items[{i}]")?;
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(None, f)
    }
}

/// Every error found in one document (or one file, when it could not be read or parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    pub location: Location,
    /// `Deployment/web`, once kind and name are known.
    pub object: Option<String>,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            self.location.describe(e.line, f)?;
            write!(f, ": ")?;
            if let Some(o) = &self.object {
                write!(f, "{o}: ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DocumentError {}

/// Validates one parsed document (a JSON value) and turns it into a typed object.
///
/// Informational fields (`status`, `metadata.managedFields`, `metadata.selfLink`) are dropped
/// first; everything else must be a field Flotilla supports. Structural errors (unsupported
/// fields, wrong types, values outside an enumeration) are cut out of a copy of the document so
/// the semantic checks still run on the rest: every error of a document is reported at once.
pub fn parse_object(mut doc: Value) -> Result<Object, (Option<String>, Vec<FieldError>)> {
    let Value::Object(map) = &mut doc else {
        return Err((
            None,
            vec![FieldError::new(
                "",
                format!(
                    "a manifest must be a mapping with apiVersion, kind and metadata (got {})",
                    json_type(&doc)
                ),
            )],
        ));
    };
    map.shift_remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        meta.shift_remove("managedFields");
        meta.shift_remove("selfLink");
    }
    let kind_name = map.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = map.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).map(str::to_string);
    let Some(kind) = Kind::from_kind_name(&kind_name) else {
        let msg = match map.get("kind") {
            None => "is required".to_string(),
            Some(Value::String(_)) => {
                let supported: Vec<&str> = Kind::ALL.iter().map(|k| k.info().name).collect();
                let hint = crate::names::closest(&kind_name, supported.iter().copied())
                    .map(|c| format!(" (did you mean {c:?}?)"))
                    .unwrap_or_default();
                format!("{kind_name:?} is not supported{hint}; Flotilla supports {}", supported.join(", "))
            }
            Some(other) => format!("must be a string (got {})", json_type(other)),
        };
        return Err((None, vec![FieldError::new("kind", msg)]));
    };
    let label = Some(format!("{}/{}", kind.info().name, name.as_deref().unwrap_or("<unnamed>")));
    let found = schema::check(kind, &doc);
    let mut errors = found.errors;
    if errors.is_empty() {
        return match Object::from_value(kind, doc) {
            Ok(object) => {
                validate_object(&object, &mut errors);
                if errors.is_empty() {
                    Ok(object)
                } else {
                    Err((label, errors))
                }
            }
            // The schema walk accepted the document, so this is a gap between schema and type.
            Err(e) => Err((label, vec![FieldError::new("", format!("could not be read: {e}"))])),
        };
    }
    // Cut the offending values out (never list elements: that would renumber the rest) and run
    // the semantic checks on what remains, skipping anything under a removed field.
    let cuttable = found.offending.iter().all(|p| matches!(p.last(), Some(schema::Seg::Key(_))));
    if cuttable {
        for p in &found.offending {
            schema::remove(&mut doc, p);
        }
        for (p, filler) in &found.missing {
            schema::insert(&mut doc, p, filler.clone());
        }
        if let Ok(object) = Object::from_value(kind, doc) {
            let removed: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
            let mut semantic = Vec::new();
            validate_object(&object, &mut semantic);
            // Drop what the cut itself may have caused: errors under a removed field, and errors
            // about the object that held it (`spec.volumes[0] must set one source` after its
            // unsupported source was cut).
            let parent = |r: &str| r.rfind(['.', '[']).map(|i| r[..i].to_string()).unwrap_or_default();
            semantic.retain(|e| {
                !removed.iter().any(|r| {
                    e.path == *r
                        || e.path.starts_with(&format!("{r}."))
                        || e.path.starts_with(&format!("{r}["))
                        || e.path == parent(r)
                })
            });
            errors.extend(semantic);
        }
    }
    Err((label, errors))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests;
