//! Validation of configuration, networking and storage kinds: ConfigMap, Secret, Service,
//! PersistentVolume and PersistentVolumeClaim.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn pvc_spec(e: &mut Errs, s: &PersistentVolumeClaimSpec, path: &str) {
    if s.access_modes.as_ref().is_none_or(Vec::is_empty) {
        e.add(
            &format!("{path}.accessModes"),
            "is required: at least one of ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod",
        );
    }
    let storage = s.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
    match storage {
        None => e.add(&format!("{path}.resources.requests.storage"), "is required"),
        Some(q) => storage_quantity(e, &format!("{path}.resources.requests.storage"), q),
    }
    if let Some(r) = &s.resources {
        for (name, list) in [("requests", &r.requests), ("limits", &r.limits)] {
            for k in list.iter().flatten().map(|(k, _)| k) {
                if k != "storage" {
                    e.add(
                        &format!("{path}.resources.{name}[{k:?}]"),
                        "is not supported: a claim requests only storage",
                    );
                }
            }
        }
    }
    if let Some(sel) = &s.selector {
        selector(e, &format!("{path}.selector"), sel);
    }
}

pub(super) fn storage_quantity(e: &mut Errs, path: &str, q: &Quantity) {
    match q.value() {
        Ok(0) => e.add(path, format!("must be greater than zero (got {q:?})", q = q.as_str())),
        Ok(_) => {}
        Err(err) => e.add(path, err.to_string()),
    }
}

pub(super) fn persistent_volume(e: &mut Errs, s: &PersistentVolumeSpec) {
    match s.capacity.as_ref().and_then(|c| c.get("storage")) {
        None => e.add("spec.capacity.storage", "is required"),
        Some(q) => storage_quantity(e, "spec.capacity.storage", q),
    }
    for k in s.capacity.iter().flatten().map(|(k, _)| k) {
        if k != "storage" {
            e.add(&format!("spec.capacity[{k:?}]"), "is not supported: a volume has only storage capacity");
        }
    }
    if s.access_modes.as_ref().is_none_or(Vec::is_empty) {
        e.add(
            "spec.accessModes",
            "is required: at least one of ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod",
        );
    }
    match (&s.host_path, &s.local) {
        (None, None) => e.add("spec", "must set exactly one volume source: hostPath or local"),
        (Some(_), Some(_)) => {
            e.add("spec.local", "may not be set together with spec.hostPath (exactly one volume source)")
        }
        (Some(h), None) => absolute(e, "spec.hostPath.path", &h.path),
        (None, Some(l)) => {
            absolute(e, "spec.local.path", &l.path);
            if s.node_affinity.as_ref().and_then(|a| a.required.as_ref()).is_none() {
                e.add(
                    "spec.nodeAffinity.required",
                    "is required for a local volume (it says which node holds the disk)",
                );
            }
        }
    }
    if let Some(req) = s.node_affinity.as_ref().and_then(|a| a.required.as_ref()) {
        node_selector(e, "spec.nodeAffinity.required", req);
    }
    if s.persistent_volume_reclaim_policy == Some(ReclaimPolicy::Recycle) {
        e.add(
            "spec.persistentVolumeReclaimPolicy",
            "Recycle is deprecated in Kubernetes and not supported; use Retain or Delete",
        );
    }
}

pub(super) fn config_map(e: &mut Errs, c: &ConfigMap) {
    let mut size = 0;
    for (k, v) in c.data.iter().flatten() {
        e.check("data", names::config_key(k));
        size += k.len() + v.len();
    }
    for (k, v) in c.binary_data.iter().flatten() {
        e.check("binaryData", names::config_key(k));
        if c.data.as_ref().is_some_and(|d| d.contains_key(k)) {
            e.add(&join("binaryData", k), "duplicates a key in data");
        }
        match base64::engine::general_purpose::STANDARD.decode(v) {
            Ok(b) => size += k.len() + b.len(),
            Err(_) => e.add(&join("binaryData", k), "must be base64-encoded"),
        }
    }
    if size > 1 << 20 {
        e.add("data", format!("must total at most 1 MiB (got {size} bytes)"));
    }
}

pub(super) fn secret(e: &mut Errs, s: &Secret) {
    let mut size = 0;
    for (k, v) in s.data.iter().flatten() {
        e.check("data", names::config_key(k));
        match base64::engine::general_purpose::STANDARD.decode(v) {
            Ok(b) => size += k.len() + b.len(),
            Err(_) => e.add(&join("data", k), "must be base64-encoded (use stringData for plain text)"),
        }
    }
    for (k, v) in s.string_data.iter().flatten() {
        e.check("stringData", names::config_key(k));
        size += k.len() + v.len();
    }
    if size > 1 << 20 {
        e.add("data", format!("must total at most 1 MiB (got {size} bytes)"));
    }
    // The decoded value of a key and the field it came from: stringData wins over data.
    let value = |k: &str| -> Option<(&str, Vec<u8>)> {
        if let Some(v) = s.string_data.as_ref().and_then(|d| d.get(k)) {
            return Some(("stringData", v.as_bytes().to_vec()));
        }
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|v| ("data", base64::engine::general_purpose::STANDARD.decode(v).unwrap_or_default()))
    };
    let required: &[&str] = match s.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => &[".dockerconfigjson"],
        Some("kubernetes.io/dockercfg") => &[".dockercfg"],
        Some("kubernetes.io/tls") => &["tls.crt", "tls.key"],
        Some("kubernetes.io/basic-auth") => &[],
        Some("kubernetes.io/ssh-auth") => &["ssh-privatekey"],
        _ => &[],
    };
    let t = s.type_.as_deref().unwrap_or_default();
    for key in required {
        match value(key) {
            None => e.add(&join("data", key), format!("is required for type {t}")),
            Some((field, v)) if key.starts_with(".docker") => {
                if serde_json::from_slice::<serde_json::Value>(&v).map_or(true, |j| !j.is_object()) {
                    e.add(
                        &join(field, key),
                        format!("must be a JSON object (Docker's config.json format) for type {t}"),
                    );
                }
            }
            Some(_) => {}
        }
    }
}

pub(super) fn service(e: &mut Errs, s: &ServiceSpec) {
    labels(e, "spec.selector", s.selector.as_ref());
    let mut names_seen = BTreeSet::new();
    let mut ports_seen = BTreeSet::new();
    let mut node_ports_seen = BTreeSet::new();
    let ports = s.ports.as_deref().unwrap_or_default();
    let ty = s.type_.unwrap_or(ServiceType::ClusterIP);
    let headless = s.cluster_ip.as_deref() == Some("None");
    if let Some(ip) = s.cluster_ip.as_deref() {
        if !ip.is_empty() && ip != "None" && ip.parse::<std::net::IpAddr>().is_err() {
            e.add(
                "spec.clusterIP",
                format!("must be an IP address, \"None\" (headless) or empty (got {ip:?})"),
            );
        }
        if headless && ty != ServiceType::ClusterIP {
            e.add(
                "spec.clusterIP",
                format!("may be None (headless) only when type is ClusterIP (type is {ty:?})"),
            );
        }
    }
    for (i, ip) in s.cluster_ips.iter().flatten().enumerate() {
        if ip != "None" && ip.parse::<std::net::IpAddr>().is_err() {
            e.add(
                &format!("spec.clusterIPs[{i}]"),
                format!("must be an IP address or \"None\" (got {ip:?})"),
            );
        }
    }
    for (field, v, allowed) in [
        ("sessionAffinity", &s.session_affinity, &["None", "ClientIP"][..]),
        ("externalTrafficPolicy", &s.external_traffic_policy, &["Cluster", "Local"][..]),
        ("internalTrafficPolicy", &s.internal_traffic_policy, &["Cluster", "Local"][..]),
    ] {
        if let Some(v) = v.as_deref() {
            if !allowed.contains(&v) {
                e.add(&format!("spec.{field}"), format!("must be one of {} (got {v:?})", allowed.join(", ")));
            }
        }
    }
    if s.external_traffic_policy.is_some() && ty == ServiceType::ClusterIP {
        e.add("spec.externalTrafficPolicy", "may only be set when type is NodePort or LoadBalancer");
    }
    if ports.is_empty() && !headless {
        e.add("spec.ports", "must have at least one port (or set clusterIP: None for a headless service)");
    }
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        port_number(e, &format!("{path}.port"), p.port);
        let proto = p.protocol.unwrap_or(Protocol::Tcp);
        if !ports_seen.insert((p.port, proto)) {
            e.add(
                &format!("{path}.port"),
                format!("{}/{} duplicates another port of this service", p.port, proto.as_str()),
            );
        }
        if let Some(n) = &p.name {
            e.check(&format!("{path}.name"), names::dns1035_label(n));
            if !names_seen.insert(n.clone()) {
                e.add(&format!("{path}.name"), format!("duplicates another port named {n:?}"));
            }
        } else if ports.len() > 1 {
            e.add(&format!("{path}.name"), "is required when a service has more than one port");
        }
        match &p.target_port {
            Some(IntOrString::Int(t)) => port_number(e, &format!("{path}.targetPort"), *t),
            Some(IntOrString::String(t)) => e.check(&format!("{path}.targetPort"), names::iana_svc_name(t)),
            None => {}
        }
        if let Some(np) = p.node_port {
            if ty == ServiceType::ClusterIP {
                e.add(&format!("{path}.nodePort"), "may only be set when type is NodePort or LoadBalancer");
            } else if !(30000..=32767).contains(&np) {
                e.add(
                    &format!("{path}.nodePort"),
                    format!("must be in the node port range 30000-32767 (got {np})"),
                );
            } else if !node_ports_seen.insert((np, proto)) {
                e.add(
                    &format!("{path}.nodePort"),
                    format!("{np}/{} is already used by another port of this service", proto.as_str()),
                );
            }
        }
    }
}
