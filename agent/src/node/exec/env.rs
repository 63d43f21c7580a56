//! A container's environment, as the kubelet builds it from the pod spec: pure, from the pod, the
//! node's name and address and the ConfigMaps and Secrets the node has.

use flotilla_shared::api::Container;
use flotilla_shared::wire::{ConfigData, DesiredPod};

use super::ConfigError;

/// The container's environment from the pod spec, as the kubelet builds it: `envFrom` first
/// (each key of the ConfigMap or Secret, with the prefix; keys that are not valid variable names
/// are skipped), then `env` in order (plain values, ConfigMap and Secret keys, fieldRefs), later
/// entries overriding earlier ones. A missing object or key fails the start with the kubelet's
/// message unless the reference is optional (then the variable is left out).
pub fn resolve_env(
    c: &Container,
    d: &DesiredPod,
    node: &str,
    host_ip: Option<&str>,
    config_maps: &[ConfigData],
    secrets: &[ConfigData],
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = d.metadata.namespace();
    fn find<'p>(pool: &'p [ConfigData], ns: &str, name: &str) -> Option<&'p ConfigData> {
        pool.iter().find(|o| o.namespace == ns && o.name == name)
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        out.retain(|(n, _)| *n != k);
        out.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (kind, r, pool) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => ("configmap", r, config_maps),
            (None, Some(r)) => ("secret", r, secrets),
            (None, None) => continue,
        };
        let Some(obj) = find(pool, ns, &r.name) else {
            if r.optional == Some(true) {
                continue;
            }
            return Err(ConfigError(format!("{kind} {:?} not found", r.name)));
        };
        for (k, v) in &obj.data {
            let name = format!("{prefix}{k}");
            if valid_env_name(&name) {
                set(&mut out, name, text(&v.0));
            }
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            set(&mut out, e.name.clone(), v.clone());
            continue;
        }
        let Some(src) = &e.value_from else {
            set(&mut out, e.name.clone(), String::new());
            continue;
        };
        if let Some(f) = &src.field_ref {
            let host_network = d.spec.host_network == Some(true);
            let label = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
                map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()
            };
            let path = f.field_path.as_str();
            let v = match path {
                "metadata.name" => d.metadata.name().to_string(),
                "metadata.namespace" => ns.to_string(),
                "metadata.uid" => d.metadata.uid.clone().unwrap_or_default(),
                "spec.nodeName" => node.to_string(),
                "spec.serviceAccountName" => "default".to_string(),
                "status.hostIP" => host_ip.unwrap_or_default().to_string(),
                // Pods have only their loopback for now: a pod IP exists for host-network pods.
                "status.podIP" if host_network => host_ip.unwrap_or_default().to_string(),
                "status.podIP" => String::new(),
                _ => {
                    if let Some(k) = path.strip_prefix("metadata.labels['").and_then(|p| p.strip_suffix("']"))
                    {
                        label(&d.metadata.labels, k)
                    } else if let Some(k) =
                        path.strip_prefix("metadata.annotations['").and_then(|p| p.strip_suffix("']"))
                    {
                        label(&d.metadata.annotations, k)
                    } else {
                        return Err(ConfigError(format!("env {}: unsupported fieldPath {path:?}", e.name)));
                    }
                }
            };
            set(&mut out, e.name.clone(), v);
            continue;
        }
        let (kind, title, r, pool) = match (&src.config_map_key_ref, &src.secret_key_ref) {
            (Some(r), _) => ("configmap", "ConfigMap", r, config_maps),
            (None, Some(r)) => ("secret", "Secret", r, secrets),
            (None, None) => continue,
        };
        let optional = r.optional == Some(true);
        let Some(obj) = find(pool, ns, &r.name) else {
            if optional {
                continue;
            }
            return Err(ConfigError(format!("{kind} {:?} not found", r.name)));
        };
        match obj.data.get(&r.key) {
            Some(v) => set(&mut out, e.name.clone(), text(&v.0)),
            None if optional => {}
            None => {
                return Err(ConfigError(format!("couldn't find key {} in {title} {ns}/{}", r.key, r.name)));
            }
        }
    }
    Ok(out)
}

/// An environment variable name Kubernetes accepts (C identifiers, plus `.` and `-`).
fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> DesiredPod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "apps", "uid": "u1", "labels": {"tier": "web"}},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    fn cd(name: &str, pairs: &[(&str, &str)]) -> ConfigData {
        ConfigData {
            namespace: "apps".into(),
            name: name.into(),
            resource_version: "1".into(),
            data: pairs.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect(),
        }
    }

    #[test]
    fn env_comes_from_config_maps_secrets_and_fields() {
        let d = pod(json!([{"name": "c", "image": "x",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "missing", "optional": true}}],
        "env": [
            {"name": "CFG_a", "value": "overridden"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
        ]}]));
        let cms = [cd("cfg", &[("a", "1"), ("mode", "fast"), ("9bad", "x")])];
        let secrets = [cd("db", &[("password", "s3cret")])];
        let env = resolve_env(&d.spec.containers[0], &d, "n1", Some("10.0.0.5"), &cms, &secrets).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_a"), Some("overridden"));
        assert_eq!(get("CFG_mode"), Some("fast"));
        assert_eq!(get("CFG_9bad"), Some("x"), "the prefix makes it a valid name");
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("GONE"), None, "an optional missing key leaves the variable out");
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("TIER"), Some("web"));
        assert_eq!(get("HOST"), Some("10.0.0.5"));
    }

    #[test]
    fn missing_references_say_what_is_missing() {
        let one = |env: serde_json::Value| {
            let d = pod(json!([{"name": "c", "image": "x", "env": [env]}]));
            resolve_env(&d.spec.containers[0], &d, "n1", None, &[cd("cfg", &[])], &[])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            one(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "k"}}})),
            "configmap \"other\" not found"
        );
        assert_eq!(
            one(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}})),
            "couldn't find key k in ConfigMap apps/cfg"
        );
        assert_eq!(
            one(json!({"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}})),
            "secret \"db\" not found"
        );
    }
}
