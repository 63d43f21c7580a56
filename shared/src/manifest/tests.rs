use super::*;
use crate::api::{Object, RestartPolicy};

fn one(text: &str) -> Object {
    let r = load_str("t.yaml", text);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.objects.len(), 1);
    r.objects.into_iter().next().unwrap().object
}

fn errors(text: &str) -> Vec<String> {
    load_str("t.yaml", text)
        .errors
        .iter()
        .flat_map(|d| d.to_string().lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

#[test]
fn yaml_1_1_values_reach_the_typed_object() {
    let Object::Pod(p) = one(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: busybox}]\n  volumes:\n  - name: v\n    configMap: {name: cm, defaultMode: 0644}\n",
    ) else {
        panic!("not a pod")
    };
    assert_eq!(p.spec.restart_policy, Some(RestartPolicy::Never));
    let vols = p.spec.volumes.unwrap();
    assert_eq!(vols[0].config_map.as_ref().unwrap().default_mode, Some(0o644));
}

#[test]
fn informational_fields_are_dropped() {
    let Object::Deployment(d) = one(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  creationTimestamp: null\n  managedFields: [{manager: kubectl}]\nspec:\n  selector: {matchLabels: {app: web}}\n  strategy: {}\n  template:\n    metadata: {creationTimestamp: null, labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx, resources: {}}]\nstatus: {replicas: 3, conditions: [{type: Available}]}\n",
    ) else {
        panic!("not a deployment")
    };
    assert!(d.status.is_none(), "manifest status is observed state and is dropped");
}

#[test]
fn every_error_is_reported_in_document_order_with_field_lines() {
    let errs = errors(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec:\n  restartPolicy: Sometimes\n  containers:\n  - name: c\n    image: Nginx\n",
    );
    assert_eq!(
        errs,
        [
            "t.yaml: document 1, line 3: Pod/Bad_Name: metadata.name must be a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (got \"Bad_Name\")",
            "t.yaml: document 1, line 5: Pod/Bad_Name: spec.restartPolicy must be one of Always, OnFailure, Never (got string \"Sometimes\")",
            "t.yaml: document 1, line 8: Pod/Bad_Name: spec.containers[0].image is not a valid image reference \"Nginx\": repository path components must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
        ]
    );
}

#[test]
fn list_items_carry_their_index() {
    let r = load_str(
        "l.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: B}\n",
    );
    assert_eq!(r.objects.len(), 1);
    assert_eq!(r.objects[0].location.item, Some(0));
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0]
            .to_string()
            .starts_with("l.yaml: document 1, line 9, items[1]: Namespace/B: metadata.name"),
        "{}",
        r.errors[0]
    );
}

#[test]
fn documents_are_counted_and_located() {
    let r = load_str(
        "m.yaml",
        "---\n# first\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n...\n",
    );
    assert!(r.errors.is_empty());
    let locs: Vec<(usize, usize)> =
        r.objects.iter().map(|o| (o.location.document, o.location.line)).collect();
    assert_eq!(locs, [(1, 3), (2, 8)]);
}

#[test]
fn json_is_strict() {
    let r = load_str(
        "j.json",
        "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"},}",
    );
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].to_string().contains("is not valid JSON: trailing comma"), "{}", r.errors[0]);
}

#[test]
fn missing_required_fields_do_not_hide_other_errors() {
    let errs =
        errors("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: Bad_Name}\nspec:\n  replicas: -1\n");
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].contains("metadata.name must be a DNS-1123 subdomain"), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("spec.selector is required")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("spec.template is required")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("spec.replicas must be greater than or equal to 0")), "{errs:#?}");
}
