//! Object metadata shared by every kind, and small value types used across specs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_with::skip_serializing_none;

/// Kubernetes' ObjectMeta, limited to what Flotilla uses. The hub owns `uid`,
/// `resourceVersion`, `generation` and `creationTimestamp`; in manifests they are informational.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    /// RFC 3339 time; `null` in kubectl-generated YAML.
    pub creation_timestamp: Option<String>,
    pub deletion_timestamp: Option<String>,
    pub owner_references: Option<Vec<OwnerReference>>,
    pub finalizers: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<bool>,
    pub block_owner_deletion: Option<bool>,
}

impl ObjectMeta {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.labels.as_ref().unwrap_or(&EMPTY)
    }
}

/// A value that is either an integer or a string (ports by number or name, `25%`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl IntOrString {
    /// Resolves a percentage (`"25%"`) or absolute value against `total`, rounding up when
    /// `round_up` (maxSurge) and down otherwise (maxUnavailable), as Kubernetes does.
    pub fn scaled(&self, total: i64, round_up: bool) -> Result<i64, String> {
        match self {
            IntOrString::Int(i) => Ok(*i),
            IntOrString::String(s) => {
                let pct: i64 =
                    s.strip_suffix('%').and_then(|p| p.parse().ok()).filter(|p| *p >= 0).ok_or_else(
                        || format!("must be an integer or a percentage such as \"25%\" (got {s:?})"),
                    )?;
                let v = pct.saturating_mul(total);
                Ok(if round_up { (v + 99) / 100 } else { v / 100 })
            }
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(i) => s.serialize_i64(*i),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            I(i64),
            S(String),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::I(i) => IntOrString::Int(i),
            Repr::S(s) => IntOrString::String(s),
        })
    }
}

impl JsonSchema for IntOrString {
    fn schema_name() -> Cow<'static, str> {
        "IntOrString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["integer", "string"] })
    }
}

/// Resource lists (`requests`, `limits`, `capacity`) map resource names to quantities.
pub type ResourceList = BTreeMap<String, crate::quantity::Quantity>;
