//! The objects of the kinds that grow with the fleet (Nodes and Pods), kept decoded in memory
//! exactly as committed. Every loop of the hub reads them again and again (the scheduler, the
//! controllers, the node lifecycle, the pusher, the status ingest); at thousands of nodes,
//! reading them from SQLite and parsing their JSON each time is what the hub would spend its
//! CPU on. The writer thread applies each committed group's changes under the write lock,
//! together with the revision, so a list of a cached kind is a state the store really had at
//! the revision it reports (a read that mixes cached and SQLite kinds may see the SQLite ones
//! a group ahead). Secrets are
//! never cached: they stay encrypted at rest only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use flotilla_shared::api::Kind;

use super::{Change, ChangeOp};

/// (namespace, name): the order SQLite lists them in (byte order).
type Key = (String, String);

#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<Key, Arc<Value>>,
    pods: BTreeMap<Key, Arc<Value>>,
}

impl Cache {
    /// Whether objects of `kind` are kept here.
    pub fn holds(kind: Kind) -> bool {
        Self::KINDS.contains(&kind)
    }

    /// The kinds kept here.
    pub const KINDS: [Kind; 2] = [Kind::Node, Kind::Pod];

    fn map(&self, kind: Kind) -> Option<&BTreeMap<Key, Arc<Value>>> {
        match kind {
            Kind::Node => Some(&self.nodes),
            Kind::Pod => Some(&self.pods),
            _ => None,
        }
    }

    fn map_mut(&mut self, kind: Kind) -> Option<&mut BTreeMap<Key, Arc<Value>>> {
        match kind {
            Kind::Node => Some(&mut self.nodes),
            Kind::Pod => Some(&mut self.pods),
            _ => None,
        }
    }

    /// Loads one stored object (when the store opens).
    pub fn insert(&mut self, kind: Kind, namespace: String, name: String, object: Value) {
        if let Some(m) = self.map_mut(kind) {
            m.insert((namespace, name), Arc::new(object));
        }
    }

    /// Applies a committed change.
    pub fn apply(&mut self, c: &Change) {
        let Some(m) = self.map_mut(c.kind) else { return };
        let key = (c.namespace.clone(), c.name.clone());
        match c.op {
            ChangeOp::Deleted => {
                m.remove(&key);
            }
            ChangeOp::Added | ChangeOp::Modified => {
                m.insert(key, Arc::new(c.object.clone()));
            }
        }
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Arc<Value>> {
        // A borrowed key cannot look up a (String, String) map; the pair is small.
        self.map(kind)?.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// The objects of `kind` (in one namespace, or all), ordered by namespace and name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(m) = self.map(kind) else { return Vec::new() };
        match namespace {
            None => m.values().cloned().collect(),
            Some(ns) => m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(op: ChangeOp, kind: Kind, ns: &str, name: &str, v: Value) -> Change {
        Change { rev: 1, kind, namespace: ns.into(), name: name.into(), op, object: v }
    }

    #[test]
    fn follows_changes_and_lists_in_store_order() {
        let mut c = Cache::default();
        c.insert(Kind::Pod, "b".into(), "x".into(), json!(1));
        c.apply(&change(ChangeOp::Added, Kind::Pod, "a", "y", json!(2)));
        c.apply(&change(ChangeOp::Added, Kind::Pod, "a", "x", json!(3)));
        c.apply(&change(ChangeOp::Added, Kind::Pod, "ab", "x", json!(4)));
        c.apply(&change(ChangeOp::Modified, Kind::Pod, "a", "y", json!(5)));
        c.apply(&change(ChangeOp::Added, Kind::Secret, "a", "s", json!(6)));
        let all: Vec<Value> = c.list(Kind::Pod, None).iter().map(|v| (**v).clone()).collect();
        assert_eq!(all, vec![json!(3), json!(5), json!(4), json!(1)]);
        let a: Vec<Value> = c.list(Kind::Pod, Some("a")).iter().map(|v| (**v).clone()).collect();
        assert_eq!(a, vec![json!(3), json!(5)]);
        assert!(c.list(Kind::Secret, None).is_empty(), "Secrets are never cached");
        c.apply(&change(ChangeOp::Deleted, Kind::Pod, "a", "x", json!(3)));
        assert_eq!(c.get(Kind::Pod, "a", "x"), None);
        assert_eq!(c.get(Kind::Pod, "a", "y").as_deref(), Some(&json!(5)));
        assert!(c.list(Kind::Pod, Some("c")).is_empty());
    }
}
