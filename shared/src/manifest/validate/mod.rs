//! Semantic validation of typed objects: names, quantities, selectors, image references,
//! references between fields, and Kubernetes' rules for each kind. Every error is collected.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;

use super::schema::join;
use super::FieldError;
use crate::api::*;
use crate::image::ImageRef;
use crate::names;
use crate::quantity::Quantity;
use crate::selector::LabelSelector;

mod config;
mod container;
mod pod;
mod scheduling;
mod workloads;

use config::*;
use container::*;
use pod::*;
use scheduling::*;
use workloads::*;

/// Collects errors under a path prefix.
struct Errs<'a> {
    out: &'a mut Vec<FieldError>,
}

impl Errs<'_> {
    fn add(&mut self, path: &str, msg: impl Into<String>) {
        self.out.push(FieldError::new(path, msg));
    }
    fn check(&mut self, path: &str, r: Result<(), String>) {
        if let Err(m) = r {
            self.add(path, m);
        }
    }
}

/// Validates an object that has passed the structural check, appending to `out`.
pub fn validate_object(obj: &Object, out: &mut Vec<FieldError>) {
    let mut e = Errs { out };
    let kind = obj.kind();
    let info = kind.info();
    let meta = obj.metadata();
    let api_version = api_version_of(obj);
    if api_version != info.api_version() {
        e.add(
            "apiVersion",
            format!("must be {:?} for kind {} (got {api_version:?})", info.api_version(), info.name),
        );
    }
    validate_meta(&mut e, meta, kind, "metadata", true);

    match obj {
        Object::Pod(p) => pod_spec(&mut e, &p.spec, "spec", None, &BTreeSet::new()),
        Object::Deployment(d) => deployment(&mut e, &d.spec),
        Object::DaemonSet(d) => {
            let s = &d.spec;
            selector_matches_template(&mut e, &s.selector, &s.template.metadata, true);
            pod_template(&mut e, &s.template, "spec.template", &[RestartPolicy::Always]);
            non_negative(&mut e, "spec.minReadySeconds", s.min_ready_seconds);
            non_negative(&mut e, "spec.revisionHistoryLimit", s.revision_history_limit);
            if let Some(u) = &s.update_strategy {
                if u.type_ == Some(DaemonSetStrategyType::OnDelete) && u.rolling_update.is_some() {
                    e.add("spec.updateStrategy.rollingUpdate", "may only be set when type is RollingUpdate");
                }
                if let Some(r) = &u.rolling_update {
                    surge(
                        &mut e,
                        "spec.updateStrategy.rollingUpdate",
                        r.max_surge.as_ref(),
                        r.max_unavailable.as_ref(),
                    );
                }
            }
        }
        Object::Job(j) => job(&mut e, &j.spec, "spec"),
        Object::CronJob(c) => cronjob(&mut e, &c.spec),
        Object::ReplicaSet(r) => {
            let s = &r.spec;
            non_negative(&mut e, "spec.replicas", s.replicas);
            non_negative(&mut e, "spec.minReadySeconds", s.min_ready_seconds);
            selector_matches_template(&mut e, &s.selector, &s.template.metadata, true);
            pod_template(&mut e, &s.template, "spec.template", &[RestartPolicy::Always]);
        }
        Object::StatefulSet(st) => statefulset(&mut e, &st.spec),
        Object::ConfigMap(c) => config_map(&mut e, c),
        Object::Secret(s) => secret(&mut e, s),
        Object::Service(s) => service(&mut e, &s.spec),
        Object::PersistentVolume(pv) => persistent_volume(&mut e, &pv.spec),
        Object::PersistentVolumeClaim(pvc) => pvc_spec(&mut e, &pvc.spec, "spec"),
        Object::Node(n) => {
            let mut seen = BTreeSet::new();
            for (i, t) in n.spec.taints.iter().flatten().enumerate() {
                let p = format!("spec.taints[{i}]");
                if !seen.insert((t.key.as_str(), t.effect)) {
                    e.add(
                        &p,
                        format!("duplicates another taint with key {:?} and effect {:?}", t.key, t.effect),
                    );
                }
                e.check(&format!("{p}.key"), names::qualified_name(&t.key));
                if let Some(v) = &t.value {
                    e.check(&format!("{p}.value"), names::label_value(v));
                }
            }
        }
        Object::Namespace(_) => {}
    }
}

fn api_version_of(obj: &Object) -> &str {
    match obj {
        Object::Namespace(o) => &o.api_version,
        Object::Node(o) => &o.api_version,
        Object::Pod(o) => &o.api_version,
        Object::Service(o) => &o.api_version,
        Object::PersistentVolume(o) => &o.api_version,
        Object::Deployment(o) => &o.api_version,
        Object::DaemonSet(o) => &o.api_version,
        Object::StatefulSet(o) => &o.api_version,
        Object::Job(o) => &o.api_version,
        Object::CronJob(o) => &o.api_version,
        Object::ReplicaSet(o) => &o.api_version,
        Object::ConfigMap(o) => &o.api_version,
        Object::Secret(o) => &o.api_version,
        Object::PersistentVolumeClaim(o) => o.api_version.as_deref().unwrap_or_default(),
    }
}

fn validate_meta(e: &mut Errs, meta: &ObjectMeta, kind: Kind, path: &str, top_level: bool) {
    let info = kind.info();
    if top_level {
        match &meta.name {
            None => e.add(&join(path, "name"), "is required"),
            Some(n) => e.check(
                &join(path, "name"),
                match info.name_rule {
                    NameRule::Dns1123Label => names::dns1123_label(n),
                    NameRule::Dns1123Subdomain => names::dns1123_subdomain(n),
                    NameRule::Dns1035Label => names::dns1035_label(n),
                },
            ),
        }
        if let Some(ns) = &meta.namespace {
            if !info.namespaced {
                e.add(&join(path, "namespace"), format!("must not be set: {} is not namespaced", info.name));
            } else {
                e.check(&join(path, "namespace"), names::dns1123_label(ns));
            }
        }
    }
    labels(e, &join(path, "labels"), meta.labels.as_ref());
    let mut total = 0;
    for k in meta.annotations.iter().flatten().map(|(k, v)| {
        total += k.len() + v.len();
        k
    }) {
        e.check(&join(path, "annotations"), names::qualified_name(k));
    }
    if total > 256 * 1024 {
        e.add(&join(path, "annotations"), format!("must total at most 262144 bytes (got {total})"));
    }
}

fn labels(e: &mut Errs, path: &str, labels: Option<&BTreeMap<String, String>>) {
    for (k, v) in labels.into_iter().flatten() {
        e.check(path, names::qualified_name(k));
        e.check(&join(path, k), names::label_value(v));
    }
}

fn non_negative(e: &mut Errs, path: &str, v: Option<impl Into<i64>>) {
    if let Some(v) = v.map(Into::into) {
        if v < 0 {
            e.add(path, format!("must be greater than or equal to 0 (got {v})"));
        }
    }
}

fn at_least_one(e: &mut Errs, path: &str, v: Option<impl Into<i64>>) {
    if let Some(v) = v.map(Into::into) {
        if v < 1 {
            e.add(path, format!("must be greater than or equal to 1 (got {v})"));
        }
    }
}

fn port_number(e: &mut Errs, path: &str, p: impl Into<i64>) {
    let p: i64 = p.into();
    if !(1..=65535).contains(&p) {
        e.add(path, format!("must be a port number from 1 to 65535 (got {p})"));
    }
}

fn selector(e: &mut Errs, path: &str, sel: &LabelSelector) {
    for (p, m) in sel.validate() {
        e.add(&format!("{path}.{p}"), m);
    }
}

fn absolute(e: &mut Errs, path: &str, p: &str) {
    if !p.starts_with('/') {
        e.add(path, format!("must be an absolute path (got {p:?})"));
    } else if p.split('/').any(|c| c == "..") {
        e.add(path, format!("must not contain '..' (got {p:?})"));
    }
}

fn id_range(e: &mut Errs, path: &str, v: Option<i64>) {
    if let Some(v) = v {
        if !(0..=i64::from(u32::MAX - 1)).contains(&v) {
            e.add(path, format!("must be between 0 and 4294967294 (got {v})"));
        }
    }
}

fn mode(e: &mut Errs, path: &str, m: Option<i32>) {
    if let Some(m) = m {
        if !(0..=0o777).contains(&m) {
            e.add(path, format!("must be a file mode from 0 to 0777 (511 in decimal) (got {m})"));
        }
    }
}

fn relative_path(e: &mut Errs, path: &str, p: &str) {
    if p.is_empty() {
        e.add(path, "must not be empty");
    } else if p.starts_with('/') {
        e.add(path, format!("must be a relative path (got {p:?})"));
    } else if p.split('/').any(|c| c == "..") {
        e.add(path, format!("must not contain '..' (got {p:?})"));
    }
}
