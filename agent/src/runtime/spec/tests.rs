//! Tests of the OCI spec builder: pods parsed from YAML, then argv and `$(VAR)` expansion, the
//! environment, capabilities, the restricted defaults and what privileged and hostNetwork lift,
//! and users resolved like the kubelet.

use std::collections::BTreeMap;

use flotilla_shared::api::Object;
use flotilla_shared::manifest::load_str;
use serde_json::json;

use super::*;

fn pod(yaml: &str) -> (ObjectMeta, PodSpec) {
    let r = load_str("t.yaml", yaml);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    match r.objects.into_iter().next().unwrap().object {
        Object::Pod(p) => (p.metadata, p.spec),
        _ => panic!("not a pod"),
    }
}

fn image() -> ImageFacts {
    ImageFacts {
        entrypoint: vec!["/entry".into()],
        cmd: vec!["serve".into(), "--port=80".into()],
        env: vec!["PATH=/bin".into(), "MODE=image".into()],
        working_dir: Some("/app".into()),
        user: None,
    }
}

fn input<'a>(
    meta: &'a ObjectMeta,
    spec: &'a PodSpec,
    img: &'a ImageFacts,
    env: Vec<(String, String)>,
) -> SpecInput<'a> {
    SpecInput {
        pod: meta,
        pod_spec: spec,
        container: &spec.containers[0],
        image: img,
        rootfs: "/run/flotilla/c1/rootfs".into(),
        cgroups_path: "/flotilla/uid/c".into(),
        namespaces: Namespaces::Sandbox {
            net: "/proc/1/ns/net".into(),
            ipc: "/proc/1/ns/ipc".into(),
            uts: "/proc/1/ns/uts".into(),
        },
        env,
        mounts: vec![BindMount { source: "/var/lib/x".into(), destination: "/data".into(), read_only: true }],
        user: (0, 0),
        additional_gids: vec![],
        pids_limit: 1024,
        host_caps: vec![],
        swap_accounting: true,
    }
}

#[test]
fn argv_follows_kubernetes_rules() {
    let img = image();
    let c = |cmd: Option<Vec<&str>>, args: Option<Vec<&str>>| Container {
        name: "c".into(),
        command: cmd.map(|v| v.into_iter().map(String::from).collect()),
        args: args.map(|v| v.into_iter().map(String::from).collect()),
        ..Default::default()
    };
    let env = vec![("NAME".to_string(), "world".to_string())];
    assert_eq!(argv(&c(None, None), &img, &env).unwrap(), ["/entry", "serve", "--port=80"]);
    assert_eq!(argv(&c(None, Some(vec!["x"])), &img, &env).unwrap(), ["/entry", "x"]);
    assert_eq!(argv(&c(Some(vec!["sh"]), None), &img, &env).unwrap(), ["sh"]);
    assert_eq!(
        argv(&c(Some(vec!["echo"]), Some(vec!["hi $(NAME)", "$(MISSING)", "$$(NAME)"])), &img, &env).unwrap(),
        ["echo", "hi world", "$(MISSING)", "$(NAME)"]
    );
    let empty = ImageFacts::default();
    assert!(matches!(argv(&c(None, None), &empty, &env), Err(SpecError::NoCommand { .. })));
}

#[test]
fn expansion_edge_cases() {
    let vars: BTreeMap<&str, &str> = [("A", "1"), ("B", "2")].into_iter().collect();
    for (input, want) in [
        ("$(A)$(B)", "12"),
        ("$(A", "$(A"),
        ("$", "$"),
        ("$$", "$"),
        ("a$(A)b", "a1b"),
        ("$(C)", "$(C)"),
        ("ünï$(A)cødé", "ünï1cødé"),
    ] {
        assert_eq!(expand(input, &vars), want, "{input}");
    }
}

#[test]
fn environment_merges_and_expands() {
    let env = environment(
        &image(),
        &[("MODE".into(), "pod".into()), ("GREETING".into(), "mode is $(MODE)".into())],
    );
    assert_eq!(env, ["PATH=/bin", "MODE=pod", "GREETING=mode is pod"]);
    let env = environment(&ImageFacts::default(), &[]);
    assert!(env[0].starts_with("PATH=/usr/local/sbin"));
}

#[test]
fn capabilities_table() {
    let (_, s) = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: x\n  - name: b\n    image: x\n    securityContext: {capabilities: {add: [NET_ADMIN, CAP_NET_RAW], drop: [NET_RAW]}}\n  - name: c\n    image: x\n    securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n  - name: d\n    image: x\n    securityContext: {privileged: true}\n");
    assert!(capabilities(&s.containers[0]).is_empty(), "nothing unless added");
    assert_eq!(capabilities(&s.containers[1]), ["CAP_NET_ADMIN"]);
    assert_eq!(capabilities(&s.containers[2]), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(capabilities(&s.containers[3]).len(), all_caps().len());
}

#[test]
fn restricted_by_default() {
    let (m, s) = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: web\n    image: x\n    resources: {limits: {cpu: 250m, memory: 64Mi}, requests: {cpu: 100m}}\n");
    let img = image();
    let spec = build(&input(&m, &s, &img, vec![])).unwrap();
    assert_eq!(spec["process"]["noNewPrivileges"], true);
    assert_eq!(spec["process"]["capabilities"]["effective"], json!([]));
    assert_eq!(spec["process"]["cwd"], "/app");
    assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    assert!(spec["linux"]["maskedPaths"].as_array().unwrap().contains(&json!("/proc/kcore")));
    assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 25_000);
    assert_eq!(spec["linux"]["resources"]["cpu"]["period"], 100_000);
    assert_eq!(spec["linux"]["resources"]["cpu"]["shares"], 102);
    assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 1024);
    assert_eq!(spec["hostname"], "web");
    assert_eq!(spec["root"]["readonly"], false);
    let ns: Vec<&str> =
        spec["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(ns, ["pid", "mount", "network", "ipc", "uts"]);
    assert_eq!(spec["linux"]["namespaces"][2]["path"], "/proc/1/ns/net");
    // The spec deserializes as an OCI runtime spec.
    let _: libcontainer::oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
}

#[test]
fn privileged_and_host_network_lift_restrictions() {
    let (m, s) = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: x\n    securityContext: {privileged: true, readOnlyRootFilesystem: true}\n");
    let img = image();
    let mut inp = input(&m, &s, &img, vec![]);
    inp.namespaces = Namespaces::Host;
    let spec = build(&inp).unwrap();
    assert_eq!(spec["process"]["noNewPrivileges"], false);
    assert!(spec["linux"].get("seccomp").is_none());
    assert!(spec["linux"].get("maskedPaths").is_none());
    assert!(spec.get("hostname").is_none());
    assert_eq!(spec["root"]["readonly"], true);
    let ns: Vec<&str> =
        spec["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(ns, ["pid", "mount", "ipc"], "host network and UTS");
    let _: libcontainer::oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
}

#[test]
fn users_resolve_like_the_kubelet() {
    let passwd = "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\napp:x:1000:1001::/:/bin/sh\n";
    let group = "root:x:0:\nstaff:x:50:\n";
    let (_, s) = pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: x\n",
    );
    let c = &s.containers[0];
    let with_user = |u: &str| ImageFacts { user: Some(u.into()), ..ImageFacts::default() };
    assert_eq!(resolve_user(c, &s, &ImageFacts::default(), passwd, group).unwrap(), (0, 0));
    assert_eq!(resolve_user(c, &s, &with_user("www"), passwd, group).unwrap(), (33, 33));
    assert_eq!(resolve_user(c, &s, &with_user("1000"), passwd, group).unwrap(), (1000, 1001));
    assert_eq!(resolve_user(c, &s, &with_user("app:staff"), passwd, group).unwrap(), (1000, 50));
    assert_eq!(resolve_user(c, &s, &with_user("4242:7"), passwd, group).unwrap(), (4242, 7));
    assert!(resolve_user(c, &s, &with_user("nobody"), passwd, group).is_err());
    let (_, s2) = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {runAsUser: 1000}\n  containers:\n  - name: c\n    image: x\n    securityContext: {runAsGroup: 5}\n");
    assert_eq!(resolve_user(&s2.containers[0], &s2, &with_user("www"), passwd, group).unwrap(), (1000, 5));
}
