//! A corpus of malformed requests: each gets the right status code and a message naming the
//! problem, and none of them changes the database (same revision, same objects).

use flotilla_tests::{tempdir, Hub};
use serde_json::Value;

struct Case {
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: String,
    code: u16,
    /// A piece of the message that must be there.
    message: &'static str,
    /// For 422s: a field path that must be among the causes.
    field: Option<&'static str>,
}

fn case(method: &'static str, path: &'static str, body: &str, code: u16, message: &'static str) -> Case {
    Case {
        method,
        path,
        content_type: "application/json",
        body: body.to_string(),
        code,
        message,
        field: None,
    }
}

const CM: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}"#;

fn cases() -> Vec<Case> {
    let ns = "/api/v1/namespaces/default/configmaps";
    let mut v = vec![
        case("POST", ns, "{not json", 400, "not valid JSON"),
        case("POST", ns, "[1,2]", 400, "must be a JSON object"),
        case("POST", ns, "", 400, "not valid JSON"),
        case(
            "POST",
            ns,
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"c"}}"#,
            400,
            "does not match the path",
        ),
        case(
            "POST",
            ns,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"other"}}"#,
            400,
            "does not match the namespace",
        ),
        case(
            "PUT",
            "/api/v1/namespaces/default/configmaps/d",
            CM,
            400,
            "does not match the name in the path",
        ),
        case(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/d",
            CM,
            400,
            "does not match the name in the path",
        ),
        case("POST", "/api/v1/namespaces/default/cronjobs", CM, 404, "does not serve \"cronjobs\""),
        case("POST", "/api/v1/namespaces/nowhere/configmaps", CM, 404, "namespace \"nowhere\" not found"),
        case("GET", "/api/v1/namespaces/default/configmaps/missing", "", 404, "not found"),
        case("DELETE", "/api/v1/namespaces/default/configmaps/missing", "", 404, "not found"),
        case(
            "PUT",
            "/api/v1/namespaces/default/configmaps/missing",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"missing"}}"#,
            404,
            "not found",
        ),
        case("GET", "/api/v2/pods", "", 404, "could not find"),
        case("GET", "/api/v1/pods/x", "", 404, "could not find"),
        case("POST", "/api/v1/namespaces/default/configmaps/c", CM, 405, "not supported"),
        case("GET", "/api/v1/configmaps?labelSelector=app%20in%20(a", "", 400, "labelSelector"),
        case("POST", "/api/v1/namespaces/default/configmaps?dryRun=Maybe", CM, 400, "dryRun"),
        case("GET", "/api/v1/namespaces/default/events", "", 400, "fieldSelector"),
        case(
            "POST",
            ns,
            &format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
                "x".repeat(4 << 20)
            ),
            413,
            "limit",
        ),
        case(
            "POST",
            "/api/v1/namespaces",
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}"#,
            409,
            "already exists",
        ),
        case("DELETE", "/api/v1/namespaces/default", "", 409, "cannot be deleted"),
    ];
    let invalid = |body: &str, field: &'static str, message: &'static str| Case {
        method: "POST",
        path: "/apis/apps/v1/namespaces/default/deployments",
        content_type: "application/json",
        body: body.to_string(),
        code: 422,
        message,
        field: Some(field),
    };
    let deploy = |spec: &str| {
        format!(r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web"}},"spec":{spec}}}"#)
    };
    let tmpl = r#""selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx"#;
    v.extend([
        invalid(&deploy(&format!(r#"{{"replicas":"three",{tmpl}"}}]}}}}}}"#)), "spec.replicas", "must be an integer"),
        invalid(&deploy(&format!(r#"{{{tmpl}","lifecycle":{{}}}}]}}}}}}"#)), "spec.template.spec.containers[0].lifecycle", "is not supported"),
        invalid(
            &deploy(&format!(r#"{{{tmpl}","resources":{{"limits":{{"memory":"64MB"}}}}}}]}}}}}}"#)),
            "spec.template.spec.containers[0].resources.limits.memory",
            "not a valid quantity",
        ),
        invalid(&deploy(r#"{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"other"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}}"#), "spec.template.metadata.labels", "must match spec.selector"),
        invalid(r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"Bad_Name"},"spec":{}}"#, "metadata.name", "DNS-1123"),
    ]);
    v.push(Case {
        method: "POST",
        path: ns,
        content_type: "application/yaml",
        body: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  name: d\n".into(),
        code: 400,
        message: "duplicate key",
        field: None,
    });
    v
}

/// Everything observable about the store's contents: the revision and every object.
fn snapshot(hub: &Hub) -> (String, Vec<Value>) {
    let http = hub.http();
    let mut objects = Vec::new();
    let mut rev = String::new();
    for path in ["/api/v1/configmaps", "/api/v1/namespaces", "/apis/apps/v1/deployments", "/api/v1/secrets"] {
        let (code, list) = http.get(path);
        assert_eq!(code, 200);
        rev = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
        objects.extend(list["items"].as_array().cloned().unwrap_or_default());
    }
    (rev, objects)
}

#[test]
fn malformed_requests_get_the_right_status_and_change_nothing() {
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let http = hub.http();
    // One object to collide with.
    let (code, _) =
        http.request("POST", "/api/v1/namespaces/default/configmaps", Some(CM), "application/json");
    assert_eq!(code, 201);
    let before = snapshot(&hub);
    let mut failures = Vec::new();
    for c in cases() {
        let body = if c.body.is_empty() && c.method == "GET" || c.method == "DELETE" {
            None
        } else {
            Some(c.body.as_str())
        };
        let (code, resp) = http.request(c.method, c.path, body, c.content_type);
        let msg = resp.get("message").and_then(Value::as_str).unwrap_or_default();
        let short = &c.path[..c.path.len().min(70)];
        if code != c.code {
            failures.push(format!("{} {short}: got {code}, want {} ({resp})", c.method, c.code));
            continue;
        }
        if resp.get("kind").and_then(Value::as_str) != Some("Status") || resp["code"] != c.code {
            failures.push(format!("{} {short}: body is not a Status: {resp}", c.method));
        }
        if !msg.contains(c.message) {
            failures.push(format!("{} {short}: message {msg:?} lacks {:?}", c.method, c.message));
        }
        if let Some(field) = c.field {
            let causes = resp["details"]["causes"].as_array().cloned().unwrap_or_default();
            if !causes.iter().any(|x| x["field"] == field) {
                failures.push(format!("{} {short}: no cause for {field}: {resp}", c.method));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(snapshot(&hub), before, "a failed request changed the store");
    // Without a token nothing is served (health endpoints excepted).
    let r = reqwest::blocking::get(format!("{}/api/v1/namespaces", hub.url)).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/namespaces/default/configmaps", hub.url))
        .bearer_auth("not-the-token")
        .body(CM)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(snapshot(&hub), before);
}
