//! Pure decisions about stored objects: what a create, apply, update or status update turns an
//! object into, whether anything changed, and the server-owned metadata. No I/O, no clock: the
//! revision, time and uid come in as arguments.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value};

use flotilla_shared::api::Kind;

use super::StoreError;

/// How a write treats an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// POST: the object must not exist.
    Create,
    /// PUT: the object must exist; a given resourceVersion must match.
    Update,
    /// Create or update (`apply -f`).
    Apply,
    /// PUT .../status: replace only the status; a given resourceVersion must match.
    Status,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl Outcome {
    /// kubectl's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
        }
    }
}

/// Server-assigned values for a write.
#[derive(Debug, Clone)]
pub struct Stamp<'a> {
    pub rev: u64,
    pub now: &'a str,
    pub uid: &'a str,
}

fn meta(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    let obj = v.as_object_mut().expect("objects are JSON objects");
    let m = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("metadata is an object")
}

/// The resourceVersion an object carries, if any.
pub fn resource_version(v: &Value) -> Option<&str> {
    meta(v)?.get("resourceVersion")?.as_str().filter(|s| !s.is_empty())
}

pub fn uid(v: &Value) -> Option<&str> {
    meta(v)?.get("uid")?.as_str()
}

/// Everything but metadata and status: what `generation` tracks.
fn content(v: &Value) -> Map<String, Value> {
    let mut m = v.as_object().cloned().unwrap_or_default();
    m.remove("metadata");
    m.remove("status");
    m
}

/// Metadata without the fields the server owns, for "did anything change" comparisons.
fn user_meta(v: &Value) -> Map<String, Value> {
    let mut m = meta(v).cloned().unwrap_or_default();
    for k in ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"] {
        m.remove(k);
    }
    m
}

/// Kubernetes folds a Secret's `stringData` into base64 `data` on write.
pub fn normalize(kind: Kind, v: &mut Value) {
    if kind != Kind::Secret {
        return;
    }
    let Some(obj) = v.as_object_mut() else { return };
    if let Some(Value::Object(plain)) = obj.remove("stringData") {
        let data = obj.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(data) = data {
            for (k, val) in plain {
                let s = val.as_str().unwrap_or_default();
                data.insert(k, Value::String(B64.encode(s)));
            }
        }
    }
}

/// Bindings the control plane writes survive a write that leaves them out: a pod's
/// `spec.nodeName` (the scheduler's), a claim's `spec.volumeName` and a volume's
/// `spec.claimRef` (the volume controller's). Re-applying the manifest an object was created
/// from must not undo them, as a Kubernetes apply (a merge) would not.
fn keep_binding(kind: Kind, current: &Value, next: &mut Value) {
    let field = match kind {
        Kind::Pod => "nodeName",
        Kind::PersistentVolumeClaim => "volumeName",
        Kind::PersistentVolume => "claimRef",
        _ => return,
    };
    let set = |v: &Value| v.get(field).is_some_and(|x| !x.is_null() && x != "");
    let Some(bound) = current.get("spec").filter(|s| set(s)).and_then(|s| s.get(field)).cloned() else {
        return;
    };
    if next.get("spec").is_some_and(set) {
        return;
    }
    if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(field.into(), bound);
    }
}

/// Computes the object to store. Returns `None` as the object when nothing changes.
pub fn prepare(
    kind: Kind,
    existing: Option<&Value>,
    mut incoming: Value,
    mode: &Mode,
    stamp: &Stamp,
) -> Result<(Option<Value>, Outcome), StoreError> {
    normalize(kind, &mut incoming);
    let name =
        meta(&incoming).and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_string();
    let precondition = resource_version(&incoming).map(str::to_string);
    match (existing, mode) {
        (Some(_), Mode::Create) => Err(StoreError::AlreadyExists { kind, name }),
        (None, Mode::Update | Mode::Status) => Err(StoreError::NotFound { kind, name }),
        (None, Mode::Create | Mode::Apply) => {
            if let Some(obj) = incoming.as_object_mut() {
                obj.remove("status");
            }
            let m = meta_mut(&mut incoming);
            m.insert("uid".into(), Value::String(stamp.uid.to_string()));
            m.insert("resourceVersion".into(), Value::String(stamp.rev.to_string()));
            m.insert("generation".into(), Value::from(1));
            m.insert("creationTimestamp".into(), Value::String(stamp.now.to_string()));
            m.remove("deletionTimestamp");
            Ok((Some(incoming), Outcome::Created))
        }
        (Some(current), Mode::Update | Mode::Apply | Mode::Status) => {
            if matches!(mode, Mode::Update | Mode::Status) {
                if let Some(want) = &precondition {
                    let have = resource_version(current).unwrap_or_default();
                    if want != have {
                        return Err(StoreError::Conflict {
                            kind,
                            name,
                            message: format!(
                                "the object has been modified (resourceVersion {want} is stale, current is {have}); read it again and retry"
                            ),
                        });
                    }
                }
            }
            let mut next = if *mode == Mode::Status {
                let mut n = current.clone();
                let status = incoming.get("status").cloned().unwrap_or(Value::Null);
                if let Some(obj) = n.as_object_mut() {
                    if status.is_null() {
                        obj.remove("status");
                    } else {
                        obj.insert("status".into(), status);
                    }
                }
                n
            } else {
                let mut n = incoming;
                if let Some(obj) = n.as_object_mut() {
                    match current.get("status") {
                        Some(s) => obj.insert("status".into(), s.clone()),
                        None => obj.remove("status"),
                    };
                }
                keep_binding(kind, current, &mut n);
                n
            };
            let unchanged = content(&next) == content(current)
                && user_meta(&next) == user_meta(current)
                && next.get("status") == current.get("status");
            if unchanged {
                return Ok((None, Outcome::Unchanged));
            }
            let old_meta = meta(current).cloned().unwrap_or_default();
            let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
            let bump = content(&next) != content(current);
            let m = meta_mut(&mut next);
            for k in ["uid", "creationTimestamp", "deletionTimestamp"] {
                match old_meta.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            m.insert("generation".into(), Value::from(if bump { generation + 1 } else { generation }));
            m.insert("resourceVersion".into(), Value::String(stamp.rev.to_string()));
            Ok((Some(next), Outcome::Configured))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STAMP: Stamp = Stamp { rev: 7, now: "2026-11-29T10:00:00Z", uid: "u-1" };

    fn cm(data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"k": data}})
    }

    fn check(
        existing: Option<Value>,
        incoming: Value,
        mode: Mode,
    ) -> Result<(Option<Value>, Outcome), StoreError> {
        prepare(Kind::ConfigMap, existing.as_ref(), incoming, &mode, &STAMP)
    }

    #[test]
    fn create_stamps_server_fields_and_drops_status() {
        let mut input = cm("a");
        input["status"] = json!({"x": 1});
        let (obj, outcome) = check(None, input, Mode::Create).unwrap();
        let obj = obj.unwrap();
        assert_eq!(outcome, Outcome::Created);
        assert_eq!(obj["metadata"]["uid"], "u-1");
        assert_eq!(obj["metadata"]["resourceVersion"], "7");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert_eq!(obj["metadata"]["creationTimestamp"], STAMP.now);
        assert!(obj.get("status").is_none());
    }

    #[test]
    fn apply_table() {
        let (stored, _) = check(None, cm("a"), Mode::Apply).unwrap();
        let stored = stored.unwrap();
        // Same content: unchanged, no write.
        assert_eq!(check(Some(stored.clone()), cm("a"), Mode::Apply).unwrap(), (None, Outcome::Unchanged));
        // New content: configured, generation bumped, uid and creation kept.
        let later = Stamp { rev: 9, now: "2026-12-01T00:00:00Z", uid: "u-2" };
        let (next, outcome) = prepare(Kind::ConfigMap, Some(&stored), cm("b"), &Mode::Apply, &later).unwrap();
        let next = next.unwrap();
        assert_eq!(outcome, Outcome::Configured);
        assert_eq!(next["metadata"]["uid"], "u-1");
        assert_eq!(next["metadata"]["creationTimestamp"], STAMP.now);
        assert_eq!(next["metadata"]["generation"], 2);
        assert_eq!(next["metadata"]["resourceVersion"], "9");
        // Label-only change: configured without a generation bump.
        let mut labelled = cm("b");
        labelled["metadata"]["labels"] = json!({"a": "b"});
        let (n2, o2) = prepare(Kind::ConfigMap, Some(&next), labelled, &Mode::Apply, &later).unwrap();
        assert_eq!(o2, Outcome::Configured);
        assert_eq!(n2.unwrap()["metadata"]["generation"], 2);
    }

    #[test]
    fn optimistic_concurrency() {
        let (stored, _) = check(None, cm("a"), Mode::Create).unwrap();
        let stored = stored.unwrap();
        let mut stale = cm("b");
        stale["metadata"]["resourceVersion"] = json!("3");
        assert!(matches!(
            check(Some(stored.clone()), stale.clone(), Mode::Update),
            Err(StoreError::Conflict { .. })
        ));
        stale["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(check(Some(stored.clone()), stale, Mode::Update).unwrap().1, Outcome::Configured);
        assert!(matches!(check(Some(stored), cm("a"), Mode::Create), Err(StoreError::AlreadyExists { .. })));
        assert!(matches!(check(None, cm("a"), Mode::Update), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn status_updates_touch_only_status() {
        let (stored, _) = check(None, cm("a"), Mode::Create).unwrap();
        let mut with_status = cm("changed-but-ignored");
        with_status["status"] = json!({"phase": "Running"});
        let (n, o) = check(stored, with_status, Mode::Status).unwrap();
        let n = n.unwrap();
        assert_eq!(o, Outcome::Configured);
        assert_eq!(n["data"]["k"], "a");
        assert_eq!(n["status"]["phase"], "Running");
        assert_eq!(n["metadata"]["generation"], 1);
    }

    #[test]
    fn secrets_fold_string_data() {
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hi"}});
        normalize(Kind::Secret, &mut s);
        assert_eq!(s["data"], json!({"a": "eA==", "b": "aGk="}));
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn reapplying_a_pod_keeps_its_binding() {
        let pod = |node: Option<&str>, image: &str| {
            let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": image}]}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = n.into();
            }
            p
        };
        let (stored, _) = prepare(Kind::Pod, None, pod(None, "a"), &Mode::Create, &STAMP).unwrap();
        let (bound, _) =
            prepare(Kind::Pod, stored.as_ref(), pod(Some("pi-1"), "a"), &Mode::Update, &STAMP).unwrap();
        let (again, o) = prepare(Kind::Pod, bound.as_ref(), pod(None, "a"), &Mode::Apply, &STAMP).unwrap();
        assert_eq!((again, o), (None, Outcome::Unchanged));
        let (changed, _) = prepare(Kind::Pod, bound.as_ref(), pod(None, "b"), &Mode::Apply, &STAMP).unwrap();
        assert_eq!(changed.unwrap()["spec"]["nodeName"], "pi-1");
        // A claim's volume and a volume's claim likewise.
        let claim = |vol: Option<&str>| {
            let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "default"},
                "spec": {"resources": {"requests": {"storage": "1Gi"}}}});
            if let Some(v) = vol {
                c["spec"]["volumeName"] = v.into();
            }
            c
        };
        let (c, _) =
            prepare(Kind::PersistentVolumeClaim, None, claim(Some("pv-1")), &Mode::Create, &STAMP).unwrap();
        let (again, o) =
            prepare(Kind::PersistentVolumeClaim, c.as_ref(), claim(None), &Mode::Apply, &STAMP).unwrap();
        assert_eq!((again, o), (None, Outcome::Unchanged));
        // Naming another node is the user's call.
        let (moved, _) =
            prepare(Kind::Pod, bound.as_ref(), pod(Some("pi-2"), "a"), &Mode::Apply, &STAMP).unwrap();
        assert_eq!(moved.unwrap()["spec"]["nodeName"], "pi-2");
    }
}
