//! Label selectors: the structured form in manifests (matchLabels and matchExpressions) and the
//! string form of `-l` on the command line (`app=web,tier!=db,env in (a,b),!legacy`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::names;

/// A Kubernetes LabelSelector.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Labels are plain string maps.
pub type Labels = BTreeMap<String, String>;

impl LabelSelector {
    /// Whether `labels` satisfies every requirement. An empty selector matches everything.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().flatten().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && self.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    }

    /// Validation errors as `(relative path, predicate)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        for (k, v) in self.match_labels.iter().flatten() {
            if let Err(e) = names::qualified_name(k) {
                errs.push(("matchLabels".to_string(), e));
            }
            if let Err(e) = names::label_value(v) {
                errs.push((format!("matchLabels[{k:?}]"), e));
            }
        }
        for (i, r) in self.match_expressions.iter().flatten().enumerate() {
            let path = format!("matchExpressions[{i}]");
            if let Err(e) = names::qualified_name(&r.key) {
                errs.push((format!("{path}.key"), e));
            }
            let n = r.values.as_ref().map_or(0, Vec::len);
            match r.operator {
                SelectorOperator::In | SelectorOperator::NotIn if n == 0 => errs.push((
                    format!("{path}.values"),
                    format!("must be non-empty when operator is {:?}", r.operator),
                )),
                SelectorOperator::Exists | SelectorOperator::DoesNotExist if n > 0 => errs.push((
                    format!("{path}.values"),
                    format!("must be empty when operator is {:?}", r.operator),
                )),
                _ => {}
            }
            for (j, v) in r.values.iter().flatten().enumerate() {
                if let Err(e) = names::label_value(v) {
                    errs.push((format!("{path}.values[{j}]"), e));
                }
            }
        }
        errs
    }

    /// Parses the command-line form: comma-separated `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k` and `!k`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut labels = BTreeMap::new();
        let mut exprs = Vec::new();
        for term in split_terms(s)? {
            let term = term.trim();
            if term.is_empty() {
                return Err(format!("selector {s:?} has an empty term"));
            }
            let (key, op, values) = parse_term(term)?;
            names::qualified_name(key).map_err(|e| format!("selector term {term:?} {e}"))?;
            for v in &values {
                names::label_value(v).map_err(|e| format!("selector term {term:?} {e}"))?;
            }
            match op {
                "=" | "==" => {
                    labels.insert(key.to_string(), values[0].clone());
                }
                _ => exprs.push(LabelSelectorRequirement {
                    key: key.to_string(),
                    operator: match op {
                        "!=" | "notin" => SelectorOperator::NotIn,
                        "in" => SelectorOperator::In,
                        "exists" => SelectorOperator::Exists,
                        _ => SelectorOperator::DoesNotExist,
                    },
                    values: (!values.is_empty()).then_some(values),
                }),
            }
        }
        Ok(LabelSelector {
            match_labels: (!labels.is_empty()).then_some(labels),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        })
    }
}

impl LabelSelectorRequirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let values = self.values.as_deref().unwrap_or_default();
        match self.operator {
            SelectorOperator::In => labels.get(&self.key).is_some_and(|v| values.contains(v)),
            SelectorOperator::NotIn => labels.get(&self.key).is_none_or(|v| !values.contains(v)),
            SelectorOperator::Exists => labels.contains_key(&self.key),
            SelectorOperator::DoesNotExist => !labels.contains_key(&self.key),
        }
    }
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("selector {s:?} has unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(format!("selector {s:?} has unbalanced parentheses"));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_term(term: &str) -> Result<(&str, &'static str, Vec<String>), String> {
    if let Some(k) = term.strip_prefix('!') {
        return Ok((k.trim(), "doesnotexist", vec![]));
    }
    for op in ["==", "!=", "="] {
        if let Some((k, v)) = term.split_once(op) {
            let op: &'static str = match op {
                "==" => "==",
                "!=" => "!=",
                _ => "=",
            };
            return Ok((k.trim(), op, vec![v.trim().to_string()]));
        }
    }
    for op in [" notin ", " in "] {
        if let Some((k, rest)) = term.split_once(op) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("selector term {term:?} needs a parenthesised value list"))?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            let op: &'static str = if op.trim() == "in" { "in" } else { "notin" };
            return Ok((k.trim(), op, values));
        }
    }
    Ok((term, "exists", vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn structured_selector_matches() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "stage"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "zone", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert!(sel.matches(&labels(&[("app", "web"), ("env", "prod"), ("zone", "a")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "dev"), ("zone", "a")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "prod"), ("zone", "a"), ("legacy", "")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "prod"), ("zone", "a"), ("tier", "db")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn string_selector_parses() {
        let sel = LabelSelector::parse("app=web,tier!=db,env in (prod, stage),!legacy,zone").unwrap();
        assert!(sel.matches(&labels(&[("app", "web"), ("env", "prod"), ("zone", "z")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "prod"), ("zone", "z"), ("tier", "db")])));
        assert!(LabelSelector::parse("app in (a,b").is_err());
        assert!(LabelSelector::parse("app=web,").is_err());
        assert!(LabelSelector::parse("bad key=x").is_err());
    }

    #[test]
    fn validation_reports_operator_misuse() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "env", "operator": "In"}, {"key": "x", "operator": "Exists", "values": ["a"]}]
        }))
        .unwrap();
        let errs = sel.validate();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].0, "matchExpressions[0].values");
    }
}
