use serde_json::json;

use flotilla_shared::selector::LabelSelector;

use super::*;

fn cm(name: &str, v: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": v}})
}

fn put(name: &str, v: &str, mode: Mode) -> WriteOp {
    WriteOp::Put { kind: Kind::ConfigMap, object: cm(name, v), mode }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn writes_persist_across_reopen_with_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(dir.path()).unwrap();
    assert!(
        store.get_blocking(Kind::Namespace, "", "default").unwrap().is_some(),
        "default namespace exists"
    );
    let r = rt.block_on(store.write(put("a", "1", Mode::Create), false)).unwrap();
    assert_eq!(r.outcome, Outcome::Created);
    let rev = store.revision();
    assert_eq!(r.rev, rev);
    store.close();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.revision(), rev, "revision survives a restart");
    let got = store.get_blocking(Kind::ConfigMap, "default", "a").unwrap().unwrap();
    assert_eq!(got["data"]["k"], "1");
    assert_eq!(got["metadata"]["resourceVersion"], rev.to_string());
}

#[test]
fn dry_runs_and_failures_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(dir.path()).unwrap();
    let rev = store.revision();
    let r = rt.block_on(store.write(put("a", "1", Mode::Create), true)).unwrap();
    assert_eq!(r.outcome, Outcome::Created);
    assert_eq!(store.revision(), rev);
    assert!(store.get_blocking(Kind::ConfigMap, "default", "a").unwrap().is_none());
    // A write into a missing namespace fails alone.
    let mut bad = cm("b", "1");
    bad["metadata"]["namespace"] = json!("nowhere");
    let e = rt
        .block_on(store.write(WriteOp::Put { kind: Kind::ConfigMap, object: bad, mode: Mode::Apply }, false))
        .unwrap_err();
    assert!(matches!(e, StoreError::NamespaceNotFound(_)));
    assert_eq!(store.revision(), rev);
}

#[test]
fn concurrent_writers_are_grouped_and_all_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(dir.path()).unwrap();
    let mut feed = store.subscribe();
    let start = store.revision();
    let results: Vec<WriteResult> = rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..300 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(put(&format!("c{i}"), "x", Mode::Apply), false).await
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        out
    });
    let mut revs: Vec<u64> = results.iter().map(|r| r.rev).collect();
    revs.sort_unstable();
    assert_eq!(revs, ((start + 1)..=(start + 300)).collect::<Vec<_>>(), "one revision per write, no gaps");
    // The feed delivers them in revision order.
    let mut seen = Vec::new();
    while let Ok(c) = feed.try_recv() {
        seen.push(c.rev);
    }
    assert_eq!(seen, ((start + 1)..=(start + 300)).collect::<Vec<_>>());
    let (items, rev) =
        store.list_blocking(Kind::ConfigMap, Some("default"), &LabelSelector::default()).unwrap();
    assert_eq!(items.len(), 300);
    assert_eq!(rev, start + 300);
}

#[test]
fn the_change_log_replays_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open_with(dir.path(), 20).unwrap();
    let start = store.revision();
    for i in 0..10 {
        rt.block_on(store.write(put("a", &i.to_string(), Mode::Apply), false)).unwrap();
    }
    let changes = store.changes_since_blocking(start).unwrap();
    assert_eq!(changes.len(), 10);
    assert_eq!(changes[0].op, ChangeOp::Added);
    assert!(changes[1..].iter().all(|c| c.op == ChangeOp::Modified));
    assert!(changes.windows(2).all(|w| w[0].rev + 1 == w[1].rev));
    for i in 0..100 {
        rt.block_on(store.write(put("b", &i.to_string(), Mode::Apply), false)).unwrap();
    }
    assert!(matches!(store.changes_since_blocking(start), Err(StoreError::Gone(_))));
    let recent = store.changes_since_blocking(store.revision() - 5).unwrap();
    assert_eq!(recent.len(), 5);
    assert!(store.changes_since_blocking(store.revision() + 10).unwrap().is_empty());
}

#[test]
fn events_count_up() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(dir.path()).unwrap();
    let ev = |t: &str| EventRecord {
        namespace: "default".into(),
        kind: "Pod".into(),
        name: "p".into(),
        uid: "u".into(),
        type_: "Warning".into(),
        reason: "BackOff".into(),
        message: "back-off restarting".into(),
        source: "agent/pi-1".into(),
        count: 1,
        first_time: t.into(),
        last_time: t.into(),
    };
    rt.block_on(store.write(WriteOp::Event(ev("2026-01-01T00:00:00Z")), false)).unwrap();
    rt.block_on(store.write(WriteOp::Event(ev("2026-01-01T00:01:00Z")), false)).unwrap();
    let got = store.events_blocking("default", "Pod", "p").unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].count, 2);
    assert_eq!(got[0].first_time, "2026-01-01T00:00:00Z");
    assert_eq!(got[0].last_time, "2026-01-01T00:01:00Z");
}

#[test]
fn the_wal_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(dir.path()).unwrap();
    let big = "x".repeat(4000);
    let mut max_wal = 0;
    for round in 0..30 {
        rt.block_on(async {
            let mut hs = Vec::new();
            for i in 0..100 {
                let s = store.clone();
                let v = big.clone();
                hs.push(tokio::spawn(async move {
                    s.write(put(&format!("c{}", (round * 100 + i) % 500), &v, Mode::Apply), false).await
                }));
            }
            for h in hs {
                h.await.unwrap().unwrap();
            }
        });
        let wal = std::fs::metadata(dir.path().join("flotilla.db-wal")).map(|m| m.len()).unwrap_or(0);
        max_wal = max_wal.max(wal);
    }
    // ~12 MB were written through the WAL; checkpoints keep it near the 4 MiB autocheckpoint.
    assert!(max_wal < 16 << 20, "WAL grew to {max_wal} bytes");
}

#[test]
fn the_cached_kinds_read_as_sqlite_holds_them() {
    // Pods and Nodes are served from memory: after creates, updates, deletions, a failed write
    // in a group, a namespace's cascade and a dry run, the live store reads exactly what a
    // store opened afresh from the file reads.
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(dir.path()).unwrap();
    let pod = |ns: &str, name: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
               "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    };
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let w = |op| rt.block_on(store.write(op, false));
    let put = |kind, object, mode| WriteOp::Put { kind, object, mode };
    w(put(
        Kind::Namespace,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
        Mode::Create,
    ))
    .unwrap();
    for i in 0..6 {
        w(put(
            Kind::Pod,
            pod(if i % 2 == 0 { "default" } else { "apps" }, &format!("p{i}"), "n1"),
            Mode::Create,
        ))
        .unwrap();
        w(put(Kind::Node, node(&format!("n{i}")), Mode::Create)).unwrap();
    }
    let mut p1 = store.get_blocking(Kind::Pod, "apps", "p1").unwrap().unwrap();
    p1["status"] = json!({"phase": "Running"});
    w(put(Kind::Pod, p1, Mode::Status)).unwrap();
    w(WriteOp::Delete { kind: Kind::Node, namespace: String::new(), name: "n3".into() }).unwrap();
    rt.block_on(store.write(put(Kind::Pod, pod("default", "dry", "n1"), Mode::Create), true)).unwrap();
    assert!(w(put(Kind::Pod, pod("nowhere", "x", "n1"), Mode::Create)).is_err());
    w(WriteOp::Delete { kind: Kind::Namespace, namespace: String::new(), name: "apps".into() }).unwrap();
    let read = |s: &Store| {
        let all = |k| s.list_blocking(k, None, &LabelSelector::default()).unwrap();
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "p2"}})).unwrap();
        (all(Kind::Pod), all(Kind::Node), s.list_blocking(Kind::Pod, Some("default"), &sel).unwrap())
    };
    let live = read(&store);
    assert!(live.0 .0.iter().all(|p| p["metadata"]["name"] != "dry"), "a dry run is not cached");
    assert_eq!(live.2 .0.len(), 1, "one namespace, one label");
    store.close();
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(read(&reopened), live);
    assert_eq!(reopened.get_blocking(Kind::Node, "", "n3").unwrap(), None);
}

#[test]
fn a_controllers_object_for_a_deleted_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(dir.path()).unwrap();
    let owner = rt.block_on(store.write(put("owner", "1", Mode::Create), false)).unwrap().object;
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    let dependent = |name: &str, uid: &str, controller: bool| {
        let mut v = cm(name, "1");
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "controller": controller}]);
        WriteOp::Put { kind: Kind::ConfigMap, object: v, mode: Mode::Create }
    };
    rt.block_on(store.write(dependent("a", &uid, true), false)).unwrap();
    let delete = WriteOp::Delete { kind: Kind::ConfigMap, namespace: "default".into(), name: "owner".into() };
    rt.block_on(store.write(delete, false)).unwrap();
    assert!(store.get_blocking(Kind::ConfigMap, "default", "a").unwrap().is_none(), "cascaded");
    let e = rt.block_on(store.write(dependent("b", &uid, true), false)).unwrap_err();
    assert!(e.to_string().contains("no longer exists"), "{e}");
    // Only a controller reference is checked (Kubernetes allows dangling plain references).
    rt.block_on(store.write(dependent("c", &uid, false), false)).unwrap();
}
