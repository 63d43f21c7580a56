//! The hub end to end: `serve` in a temporary directory, driven through the real CLI and raw
//! HTTP. Covers apply/get/describe/delete round trips, optimistic concurrency, watches,
//! malformed requests, cascading deletes, secrets at rest, TLS, corruption, backup and restore,
//! and secret-key rotation.

use std::collections::BTreeMap;
use std::path::Path;

use flotilla_tests::{corpus, tempdir, Hub};
use serde_json::{json, Value};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every object in the valid corpus, as (kind, namespace, name).
fn corpus_objects() -> Vec<(String, String, String)> {
    let loaded = flotilla_shared::manifest::load_paths(&[corpus("valid")]);
    assert!(loaded.errors.is_empty());
    loaded
        .objects
        .iter()
        .map(|l| {
            let o = &l.object;
            let ns = if o.kind().info().namespaced {
                o.metadata().namespace.clone().unwrap_or_else(|| "default".into())
            } else {
                String::new()
            };
            (o.kind().info().name.to_string(), ns, o.metadata().name().to_string())
        })
        .collect()
}

#[test]
fn apply_get_describe_delete_round_trip() {
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let valid = corpus("valid");
    let valid = valid.to_str().unwrap();

    let out = ok(&hub.cli(&["apply", "-f", valid], None));
    let expected = corpus_objects();
    assert_eq!(out.lines().count(), expected.len(), "{out}");
    assert!(out.lines().all(|l| l.ends_with(" created")), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");

    // A second apply changes nothing.
    let again = ok(&hub.cli(&["apply", "-f", valid], None));
    assert!(again.lines().all(|l| l.ends_with(" unchanged")), "{again}");

    // Every object is there, per kind, across namespaces.
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (k, _, _) in &expected {
        *by_kind.entry(k.clone()).or_default() += 1;
    }
    for (kind, n) in &by_kind {
        let out = ok(&hub.cli(&["get", kind, "-A", "-o", "json"], None));
        let list: Value = serde_json::from_str(&out).unwrap();
        // What the controllers made for the corpus' workloads (ReplicaSets, pods, a
        // StatefulSet's claims) is not the corpus'.
        let items: Vec<&Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["metadata"]["ownerReferences"].is_null())
            .filter(|i| {
                let (ns, name) = (
                    i["metadata"]["namespace"].as_str().unwrap_or_default(),
                    i["metadata"]["name"].as_str().unwrap_or_default(),
                );
                kind == "Namespace" && (name == "default" || name == "flotilla-system")
                    || expected.iter().any(|(k, n, m)| k == kind && n == ns && m == name)
            })
            .collect();
        let extra = 2 * usize::from(kind == "Namespace"); // "default" and "flotilla-system" exist from the start
        assert_eq!(items.len(), n + extra, "{kind}");
        for item in items {
            let m = &item["metadata"];
            assert!(m["uid"].as_str().is_some_and(|u| u.len() == 36), "{item}");
            assert!(m["resourceVersion"].as_str().is_some_and(|r| r.parse::<u64>().is_ok()));
            // The volume controller writes its bindings into claims and volumes (a spec change).
            let bound = item["spec"]["volumeName"].is_string() || item["spec"]["claimRef"].is_object();
            assert_eq!(m["generation"], if bound { 2 } else { 1 }, "{item}");
            assert!(m["creationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        }
    }

    // Tables and describe.
    let table = ok(&hub.cli(&["get", "deploy", "-n", "iot"], None));
    assert!(table.starts_with("NAME"), "{table}");
    let table = ok(&hub.cli(&["get", "pods", "-A", "-o", "wide"], None));
    assert!(table.starts_with("NAMESPACE"), "{table}");
    let described = ok(&hub.cli(&["describe", "deployment", "web"], None));
    assert!(described.contains("Name:") && described.contains("web"), "{described}");
    assert!(described.contains("Events:"), "{described}");
    let yaml = ok(&hub.cli(&["get", "cm", "sensor-calibration", "-n", "iot", "-o", "yaml"], None));
    let parsed = flotilla_shared::manifest::yaml::parse_document(&yaml).unwrap().unwrap().value;
    assert_eq!(parsed["metadata"]["name"], "sensor-calibration");

    // A changed manifest is "configured" and bumps the generation.
    let changed =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: site-info, namespace: iot}\ndata: {site: greenhouse-b}\n";
    let before = ok(&hub.cli(&["get", "cm", "site-info", "-n", "iot", "-o", "json"], None));
    let before: Value = serde_json::from_str(&before).unwrap();
    let out = ok(&hub.cli(&["apply", "-f", "-"], Some(changed.as_bytes())));
    assert_eq!(out.trim(), "configmap/site-info configured");
    let after: Value =
        serde_json::from_str(&ok(&hub.cli(&["get", "cm", "site-info", "-n", "iot", "-o", "json"], None)))
            .unwrap();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["metadata"]["generation"], 2);
    assert!(
        after["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap()
            > before["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap()
    );

    // Dry run changes nothing.
    let dry = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry}\ndata: {a: b}\n";
    let out = ok(&hub.cli(&["apply", "--dry-run", "-f", "-"], Some(dry.as_bytes())));
    assert_eq!(out.trim(), "configmap/dry created (dry run)");
    let missing = hub.cli(&["get", "cm", "dry"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("not found"), "{}", text(&missing.stderr));

    // Delete everything again.
    let out = ok(&hub.cli(&["delete", "-f", valid], None));
    assert_eq!(out.lines().count(), expected.len(), "{out}");
    for kind in by_kind.keys() {
        // The Deployments' pods go with them (garbage collection: give it a moment).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let out = ok(&hub.cli(&["get", kind, "-A", "-o", "json"], None));
            let list: Value = serde_json::from_str(&out).unwrap();
            let extra = 2 * usize::from(kind == "Namespace");
            let left = list["items"].as_array().unwrap().len();
            if left == extra || std::time::Instant::now() > deadline {
                assert_eq!(left, extra, "{kind} left after delete");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    // Deleting what is gone fails with a clear message.
    let out = hub.cli(&["delete", "cm", "site-info", "-n", "iot"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("configmap \"site-info\" not found"), "{}", text(&out.stderr));
}

#[test]
fn invalid_manifests_are_refused_before_anything_is_sent() {
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let bad = corpus("invalid").join("multi-document-2-and-4-bad.yaml");
    let out = hub.cli(&["apply", "-f", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("document 2"), "{}", text(&out.stderr));
    let (_, list) = hub.http().get("/api/v1/configmaps");
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing was applied");
}

#[test]
fn stale_updates_get_409() {
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let http = hub.http();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"v": "1"}});
    let (code, created) = http.send_json("POST", "/api/v1/namespaces/default/configmaps", &cm);
    assert_eq!(code, 201);
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    let mut first = created.clone();
    first["data"]["v"] = json!("2");
    let (code, updated) = http.send_json("PUT", "/api/v1/namespaces/default/configmaps/c", &first);
    assert_eq!(code, 200, "{updated}");

    // A second writer that read the same version loses.
    let mut second = created.clone();
    second["data"]["v"] = json!("3");
    second["metadata"]["resourceVersion"] = json!(rv);
    let (code, status) = http.send_json("PUT", "/api/v1/namespaces/default/configmaps/c", &second);
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    let (_, now) = http.get("/api/v1/namespaces/default/configmaps/c");
    assert_eq!(now["data"]["v"], "2");
    // Creating what exists is a conflict too.
    let (code, status) = http.send_json("POST", "/api/v1/namespaces/default/configmaps", &cm);
    assert_eq!((code, status["reason"].as_str()), (409, Some("AlreadyExists")));
}

#[test]
fn a_watch_sees_every_change_in_order() {
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let http = hub.http();
    let (_, list) = http.get("/api/v1/namespaces/default/configmaps");
    let from = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    // Writes first, then a watch from the revision before them: the log replays them all.
    let mut expected: Vec<(String, String, String)> = Vec::new();
    for i in 0..60 {
        let name = format!("w{}", i % 20);
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
        let (code, obj) = if i % 7 == 6 {
            http.request("DELETE", &format!("/api/v1/namespaces/default/configmaps/{name}"), None, "")
        } else {
            http.send_json("PATCH", &format!("/api/v1/namespaces/default/configmaps/{name}"), &body)
        };
        match code {
            201 => expected.push((
                "ADDED".into(),
                name,
                obj["metadata"]["resourceVersion"].as_str().unwrap().into(),
            )),
            200 if i % 7 == 6 => expected.push((
                "DELETED".into(),
                name,
                obj["metadata"]["resourceVersion"].as_str().unwrap().into(),
            )),
            200 => expected.push((
                "MODIFIED".into(),
                name,
                obj["metadata"]["resourceVersion"].as_str().unwrap().into(),
            )),
            404 => {}
            other => panic!("unexpected {other}: {obj}"),
        }
    }
    let url = format!("{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={from}", hub.url);
    let resp = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
        .get(url)
        .bearer_auth(&hub.token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Live changes after the replay are delivered on the same stream.
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live"}, "data": {}});
    let (code, obj) = http.send_json("POST", "/api/v1/namespaces/default/configmaps", &live);
    assert_eq!(code, 201);
    expected.push((
        "ADDED".into(),
        "live".into(),
        obj["metadata"]["resourceVersion"].as_str().unwrap().into(),
    ));
    use std::io::BufRead;
    let mut got: Vec<(String, String, String)> = Vec::new();
    for line in std::io::BufReader::new(resp).lines() {
        let line = line.expect("watch stream ended early");
        let ev: Value = serde_json::from_str(&line).unwrap();
        let m = &ev["object"]["metadata"];
        got.push((
            ev["type"].as_str().unwrap().to_string(),
            m["name"].as_str().unwrap().to_string(),
            m["resourceVersion"].as_str().unwrap_or_default().to_string(),
        ));
        if got.len() == expected.len() {
            break;
        }
    }
    // Deleted objects carry their last stored version; compare names and types for those.
    let strip = |v: &[(String, String, String)]| -> Vec<(String, String, String)> {
        v.iter()
            .map(|(t, n, rv)| (t.clone(), n.clone(), if t == "DELETED" { String::new() } else { rv.clone() }))
            .collect()
    };
    assert_eq!(strip(&got), strip(&expected));
}

#[test]
fn a_watch_with_a_malformed_resource_version_is_refused() {
    // 410 for a compacted revision is covered by the store's unit tests (small change log).
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let http = hub.http();
    let (code, status) = http.get("/api/v1/configmaps?watch=true&resourceVersion=abc");
    assert_eq!(code, 400, "{status}");
}

#[test]
fn owners_and_namespaces_cascade() {
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let http = hub.http();
    let (_, ns) = http.send_json(
        "POST",
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge"}}),
    );
    let (code, owner) = http.send_json(
        "POST",
        "/api/v1/namespaces/edge/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}),
    );
    assert_eq!(code, 201, "{ns} {owner}");
    let uid = owner["metadata"]["uid"].as_str().unwrap();
    let dependent = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dep", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "controller": true}]}});
    assert_eq!(http.send_json("POST", "/api/v1/namespaces/edge/configmaps", &dependent).0, 201);
    let grandchild = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gc", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "dep", "uid": http.get("/api/v1/namespaces/edge/configmaps/dep").1["metadata"]["uid"]}]},
        "stringData": {"a": "b"}});
    assert_eq!(http.send_json("POST", "/api/v1/namespaces/edge/secrets", &grandchild).0, 201);
    assert_eq!(
        http.send_json(
            "POST",
            "/api/v1/namespaces/edge/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}})
        )
        .0,
        201
    );

    assert_eq!(http.request("DELETE", "/api/v1/namespaces/edge/configmaps/owner", None, "").0, 200);
    assert_eq!(http.get("/api/v1/namespaces/edge/configmaps/dep").0, 404, "dependent deleted with its owner");
    assert_eq!(http.get("/api/v1/namespaces/edge/secrets/gc").0, 404, "and its dependent");
    assert_eq!(http.get("/api/v1/namespaces/edge/configmaps/other").0, 200);

    assert_eq!(http.request("DELETE", "/api/v1/namespaces/edge", None, "").0, 200);
    assert_eq!(http.get("/api/v1/namespaces/edge/configmaps/other").0, 404, "namespace contents deleted");
    let (code, status) = http.send_json(
        "POST",
        "/api/v1/namespaces/edge/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    );
    assert_eq!(code, 404, "{status}");
    assert!(status["message"].as_str().unwrap().contains("namespace \"edge\" not found"));
    assert_eq!(http.request("DELETE", "/api/v1/namespaces/default", None, "").0, 409);
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path).map(|b| b.windows(needle.len()).any(|w| w == needle)).unwrap_or(false)
}

#[test]
fn secrets_are_encrypted_at_rest_and_never_described_in_clear() {
    let tmp = tempdir();
    let dir = tmp.path().join("hub");
    let hub = Hub::start(&dir);
    ok(&hub.cli(
        &["create", "secret", "generic", "db", "--from-literal", "password=Wh1sperW0rd-not-in-clear"],
        None,
    ));
    let described = ok(&hub.cli(&["describe", "secret", "db"], None));
    assert!(!described.contains("Wh1sperW0rd"), "{described}");
    assert!(described.contains("password"), "{described}");
    let table = ok(&hub.cli(&["get", "secrets"], None));
    assert!(!table.contains("Wh1sperW0rd"), "{table}");
    // -o yaml shows base64, as kubectl does.
    let yaml = ok(&hub.cli(&["get", "secret", "db", "-o", "yaml"], None));
    assert!(yaml.contains("V2gxc3BlclcwcmQtbm90LWluLWNsZWFy"), "{yaml}");
    let stopped = hub.stop();
    assert!(stopped.success());
    for f in ["flotilla.db", "flotilla.db-wal"] {
        let p = dir.join(f);
        assert!(!file_contains(&p, b"Wh1sperW0rd"), "{f} holds the secret in clear");
        assert!(!file_contains(&p, b"V2gxc3BlclcwcmQtbm90LWluLWNsZWFy"), "{f} holds the secret in base64");
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["secret.keys", "admin.token"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn key_rotation_re_encrypts_secrets() {
    let tmp = tempdir();
    let dir = tmp.path().join("hub");
    let hub = Hub::start(&dir);
    ok(&hub.cli(&["create", "secret", "generic", "s", "--from-literal", "k=v1"], None));
    assert!(hub.stop().success());
    let old = std::fs::read_to_string(dir.join("secret.keys")).unwrap();
    let new_key = format!("rotated:{}\n", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=");
    std::fs::write(dir.join("secret.keys"), format!("{new_key}{old}")).unwrap();
    let hub = Hub::start(&dir);
    assert!(hub.stop().success());
    // The old key can go now: everything is sealed with the new one.
    std::fs::write(dir.join("secret.keys"), &new_key).unwrap();
    let hub = Hub::start(&dir);
    let out = ok(&hub.cli(&["get", "secret", "s", "-o", "json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["k"], "djE=");
}

#[test]
fn tls_when_given_a_certificate() {
    let tmp = tempdir();
    let pki = flotilla_tests::test_pki(tmp.path());
    let ca = pki.ca.to_str().unwrap().to_string();
    let (cert, key) = (pki.cert.clone(), pki.key.clone());
    let dir = tmp.path().join("hub");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.with_extension("log");
    let child = std::process::Command::new(flotilla_tests::bin("flotilla-hub"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ])
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--tls-ca", &ca])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let url = loop {
        if let Some(u) = std::fs::read_to_string(dir.join("client.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            break u["server"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(url.starts_with("https://"), "{url}");
    // The CLI on the same machine finds server, token and CA in the data directory.
    let mut out;
    loop {
        out = flotilla_tests::run(
            &flotilla_tests::bin("flotilla-hub"),
            &["--data-dir", dir.to_str().unwrap(), "get", "ns", "-o", "name"],
            tmp.path(),
            None,
        );
        if out.status.success() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ok(&out).contains("default"));
    // Plain HTTP to the TLS port does not work.
    let plain = url.replace("https://", "http://");
    let r = reqwest::blocking::Client::new().get(format!("{plain}/healthz")).send();
    assert!(r.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[test]
fn a_corrupt_database_is_refused_with_advice() {
    let tmp = tempdir();
    let dir = tmp.path().join("hub");
    let hub = Hub::start(&dir);
    for i in 0..50 {
        ok(&hub.cli(
            &["create", "cm", &format!("c{i}"), "--from-literal", &format!("k={}", "x".repeat(500))],
            None,
        ));
    }
    assert!(hub.stop().success());
    // Scribble over the middle of the file (past the header, inside the b-tree pages).
    let db = dir.join("flotilla.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 16384, "database is {} bytes", bytes.len());
    for b in bytes.iter_mut().skip(4096).take(8192) {
        *b = 0x5a;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = flotilla_tests::run(
        &flotilla_tests::bin("flotilla-hub"),
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ],
        tmp.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("corrupt") && err.contains("backup"), "{err}");
}

#[test]
fn backup_while_serving_and_restore() {
    let tmp = tempdir();
    let dir = tmp.path().join("hub");
    let hub = Hub::start(&dir);
    let valid = corpus("valid");
    ok(&hub.cli(&["apply", "-f", valid.to_str().unwrap()], None));
    let copy = tmp.path().join("backup.db");
    let out = ok(&hub.cli(&["backup", copy.to_str().unwrap()], None));
    assert!(out.contains("integrity check ok"), "{out}");
    // Refuses to overwrite.
    assert_eq!(hub.cli(&["backup", copy.to_str().unwrap()], None).status.code(), Some(1));
    let before = ok(&hub.cli(&["get", "deploy", "-A", "-o", "name"], None));
    drop(hub);

    // Restore: a new data directory with the copy as its database and the same key file.
    let restored = tmp.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&copy, restored.join("flotilla.db")).unwrap();
    std::fs::copy(dir.join("secret.keys"), restored.join("secret.keys")).unwrap();
    let hub = Hub::start(&restored);
    let after = ok(&hub.cli(&["get", "deploy", "-A", "-o", "name"], None));
    assert_eq!(before, after);
    assert!(ok(&hub.cli(&["get", "secret", "grafana-admin", "-n", "monitoring", "-o", "json"], None))
        .contains("\"data\""));
}

#[test]
fn status_version_and_completion() {
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let status = ok(&hub.cli(&["status"], None));
    assert!(status.lines().any(|l| l.starts_with("store") && l.contains("Healthy")), "{status}");
    // The scheduler and the controller manager report from their own loops.
    for component in ["scheduler", "controller-manager"] {
        let line = status.lines().find(|l| l.starts_with(component)).unwrap_or_default();
        assert!(line.contains("Healthy") && !line.contains("Unhealthy") && line.contains("ok"), "{status}");
    }
    let version = ok(&hub.cli(&["version"], None));
    assert!(version.contains("Client Version: v") && version.contains("Server Version: v"), "{version}");
    let completion = ok(&hub.cli(&["completion", "bash"], None));
    assert!(completion.contains("flotilla-hub"));
    let (code, _) = reqwest_get(&format!("{}/healthz", hub.url));
    assert_eq!(code, 200);
    let (code, _) = reqwest_get(&format!("{}/readyz", hub.url));
    assert_eq!(code, 200);
    // A wrong token is refused.
    let out = hub.cli(&["--token", "wrong-token-wrong-token", "get", "ns"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bearer token"), "{}", text(&out.stderr));
}

fn reqwest_get(url: &str) -> (u16, String) {
    let r = reqwest::blocking::get(url).unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// Waits (up to 30 s) for `what` to appear in the hub's log.
fn wait_for_log(hub: &Hub, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !hub.log_text().contains(what) {
        assert!(std::time::Instant::now() < deadline, "no {what:?} within 30 s; log:\n{}", hub.log_text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_hub_reaches_its_broker_on_a_specific_address() {
    // 127.0.0.2 is loopback too, but a listener bound to it does not answer on 127.0.0.1.
    let tmp = tempdir();
    let hub = Hub::start_with(&tmp.path().join("hub"), &["--mqtt-listen", "127.0.0.2:0"]);
    wait_for_log(&hub, "connected to the broker");
    let log = hub.log_text();
    assert!(log.contains("broker=mqtt://127.0.0.2:"), "{log}");
    assert!(!log.contains("broker connection lost"), "{log}");
}

#[test]
fn node_add_writes_a_relative_path_and_checks_the_file_before_issuing() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    // `Hub::cli` runs in the hub's directory: a bare file name lands there.
    let out = hub.cli(&["node", "add", "pi-rel", "-o", "pi-rel.json"], None);
    ok(&out);
    let written = hub.dir.join("pi-rel.json");
    let cfg: Value = serde_json::from_slice(&std::fs::read(&written).unwrap()).unwrap();
    assert_eq!(cfg["node"], "pi-rel");
    assert!(cfg["password"].as_str().is_some_and(|p| p.len() >= 16), "{cfg}");
    assert_eq!(std::fs::metadata(&written).unwrap().permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<String> = std::fs::read_dir(&hub.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A file that cannot be written is refused before anything is issued.
    let out = hub.cli(&["node", "add", "pi-lost", "-o", "no-such-dir/pi-lost.json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot write"), "{}", text(&out.stderr));
    let secret = hub.cli(&["get", "secret", "node-pi-lost-mqtt", "-n", "flotilla-system"], None);
    assert!(!secret.status.success(), "credentials were issued: {}", text(&secret.stdout));
}
