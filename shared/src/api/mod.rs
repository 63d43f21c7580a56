//! The resource model: Kubernetes-compatible kinds with the same apiVersion, kind and camelCase
//! field names, the kind table (plural, short names, scope) and the `Object` sum type.

pub mod meta;
pub mod pod;
pub mod status;
pub mod storage;
pub mod wellknown;
pub mod workloads;

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

pub use meta::{IntOrString, ObjectMeta, OwnerReference, ResourceList};
pub use pod::*;
pub use status::*;
pub use storage::*;
pub use workloads::*;

/// An object with `spec` and `status`, the common shape of most kinds.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(bound = "S: JsonSchema + Default, T: JsonSchema")]
pub struct Resource<S, T> {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
    pub status: Option<T>,
}

pub type Pod = Resource<PodSpec, PodStatus>;
pub type Deployment = Resource<DeploymentSpec, WorkloadStatus>;
pub type DaemonSet = Resource<DaemonSetSpec, WorkloadStatus>;
pub type Job = Resource<JobSpec, WorkloadStatus>;
pub type ReplicaSet = Resource<ReplicaSetSpec, WorkloadStatus>;
pub type CronJob = Resource<CronJobSpec, CronJobStatus>;
pub type StatefulSet = Resource<StatefulSetSpec, WorkloadStatus>;
pub type Service = Resource<ServiceSpec, EmptyStatus>;
pub type PersistentVolume = Resource<PersistentVolumeSpec, VolumeStatus>;
pub type Node = Resource<NodeSpec, NodeStatus>;
pub type Namespace = Resource<NamespaceSpec, NamespaceStatus>;

/// Status of kinds whose status Flotilla does not track.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmptyStatus {}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    pub finalizers: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    pub phase: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    pub unschedulable: Option<bool>,
    pub taints: Option<Vec<Taint>>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
    pub time_added: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub type_: Option<ServiceType>,
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Option<Vec<ServicePort>>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Option<Vec<String>>,
    pub session_affinity: Option<String>,
    pub external_traffic_policy: Option<String>,
    pub internal_traffic_policy: Option<String>,
    pub publish_not_ready_addresses: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub protocol: Option<Protocol>,
    pub port: i32,
    pub target_port: Option<IntOrString>,
    pub node_port: Option<i32>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub data: Option<BTreeMap<String, String>>,
    /// Base64-encoded values.
    pub binary_data: Option<BTreeMap<String, String>>,
    pub immutable: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Base64-encoded values, as in Kubernetes.
    pub data: Option<BTreeMap<String, String>>,
    /// Plain values, merged into `data` when stored (they win over `data`).
    pub string_data: Option<BTreeMap<String, String>>,
    pub immutable: Option<bool>,
}

/// How an object's name is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Label,
    Dns1123Subdomain,
    Dns1035Label,
}

macro_rules! kinds {
    ($( $variant:ident => $ty:ty, $group:expr, $plural:expr, [$($short:expr),*], $namespaced:expr, $rule:ident; )*) => {
        /// Every kind Flotilla serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Kind { $($variant),* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            pub fn info(self) -> KindInfo {
                match self {
                    $(Kind::$variant => KindInfo {
                        kind: self,
                        name: stringify!($variant),
                        group: $group,
                        plural: $plural,
                        short_names: &[$($short),*],
                        namespaced: $namespaced,
                        name_rule: NameRule::$rule,
                    }),*
                }
            }

            /// The JSON Schema (draft 2020-12) of this kind's Rust type, used by the
            /// structural validator.
            pub fn json_schema(self) -> schemars::Schema {
                match self {
                    $(Kind::$variant => schemars::schema_for!($ty)),*
                }
            }
        }

        /// An object of any kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object { $($variant($ty)),* }

        impl Object {
            pub fn kind(&self) -> Kind {
                match self { $(Object::$variant(_) => Kind::$variant),* }
            }
            pub fn metadata(&self) -> &ObjectMeta {
                match self { $(Object::$variant(o) => &o.metadata),* }
            }
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Object::$variant(o) => &mut o.metadata),* }
            }
            /// Deserializes a JSON value already known to be of `kind`.
            pub fn from_value(kind: Kind, value: serde_json::Value) -> Result<Self, serde_json::Error> {
                Ok(match kind { $(Kind::$variant => Object::$variant(serde_json::from_value(value)?)),* })
            }
            pub fn to_value(&self) -> serde_json::Value {
                let v = match self { $(Object::$variant(o) => serde_json::to_value(o)),* };
                // Serializing plain data structures to a JSON value cannot fail.
                v.unwrap_or(serde_json::Value::Null)
            }
        }
    };
}

kinds! {
    Namespace => Namespace, "", "namespaces", ["ns"], false, Dns1123Label;
    Node => Node, "", "nodes", ["no"], false, Dns1123Label;
    Pod => Pod, "", "pods", ["po"], true, Dns1123Subdomain;
    ConfigMap => ConfigMap, "", "configmaps", ["cm"], true, Dns1123Subdomain;
    Secret => Secret, "", "secrets", [], true, Dns1123Subdomain;
    Service => Service, "", "services", ["svc"], true, Dns1035Label;
    PersistentVolume => PersistentVolume, "", "persistentvolumes", ["pv"], false, Dns1123Subdomain;
    PersistentVolumeClaim => PersistentVolumeClaim, "", "persistentvolumeclaims", ["pvc"], true, Dns1123Subdomain;
    Deployment => Deployment, "apps", "deployments", ["deploy"], true, Dns1123Subdomain;
    ReplicaSet => ReplicaSet, "apps", "replicasets", ["rs"], true, Dns1123Subdomain;
    DaemonSet => DaemonSet, "apps", "daemonsets", ["ds"], true, Dns1123Subdomain;
    StatefulSet => StatefulSet, "apps", "statefulsets", ["sts"], true, Dns1123Subdomain;
    Job => Job, "batch", "jobs", [], true, Dns1123Subdomain;
    CronJob => CronJob, "batch", "cronjobs", ["cj"], true, Dns1123Subdomain;
}

/// Static facts about a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: Kind,
    /// `Deployment`.
    pub name: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    /// `deployments`.
    pub plural: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub name_rule: NameRule,
}

impl KindInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> &'static str {
        match self.group {
            "" => "v1",
            "apps" => "apps/v1",
            "batch" => "batch/v1",
            _ => "v1",
        }
    }

    /// `deployment.apps`, as kubectl names objects in its output (`deployment.apps/web created`).
    pub fn qualified_singular(&self) -> String {
        let singular = self.name.to_lowercase();
        if self.group.is_empty() {
            singular
        } else {
            format!("{singular}.{}", self.group)
        }
    }
}

impl Kind {
    /// Looks a kind up by its kind name, singular, plural or short name, case-insensitively
    /// (`deploy`, `deployments`, `Deployment`, `deployment.apps`).
    pub fn lookup(s: &str) -> Option<Kind> {
        let s = s.to_ascii_lowercase();
        let base = s.split_once('.').map_or(s.as_str(), |(b, _)| b);
        Kind::ALL.iter().copied().find(|k| {
            let i = k.info();
            let name = i.name.to_ascii_lowercase();
            base == name || base == i.plural || i.short_names.contains(&base) || s == i.qualified_singular()
        })
    }

    /// The kind whose manifest `kind:` field is exactly `s`.
    pub fn from_kind_name(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.info().name == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind().info().qualified_singular(), self.metadata().name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_every_kubectl_name() {
        for (name, kind) in [
            ("po", Kind::Pod),
            ("pods", Kind::Pod),
            ("Pod", Kind::Pod),
            ("deploy", Kind::Deployment),
            ("deployment.apps", Kind::Deployment),
            ("ds", Kind::DaemonSet),
            ("sts", Kind::StatefulSet),
            ("job", Kind::Job),
            ("jobs", Kind::Job),
            ("cm", Kind::ConfigMap),
            ("secret", Kind::Secret),
            ("svc", Kind::Service),
            ("ns", Kind::Namespace),
            ("pv", Kind::PersistentVolume),
            ("pvc", Kind::PersistentVolumeClaim),
            ("no", Kind::Node),
            ("rs", Kind::ReplicaSet),
            ("cj", Kind::CronJob),
            ("cronjobs", Kind::CronJob),
            ("nodes", Kind::Node),
        ] {
            assert_eq!(Kind::lookup(name), Some(kind), "{name}");
        }
        assert_eq!(Kind::lookup("cronjob"), Some(Kind::CronJob));
        assert_eq!(Kind::lookup("replicaset"), Some(Kind::ReplicaSet));
        assert_eq!(Kind::lookup("crontab"), None);
    }

    #[test]
    fn api_versions() {
        assert_eq!(Kind::Deployment.info().api_version(), "apps/v1");
        assert_eq!(Kind::Job.info().api_version(), "batch/v1");
        assert_eq!(Kind::Pod.info().api_version(), "v1");
        assert_eq!(Kind::Deployment.info().qualified_singular(), "deployment.apps");
    }
}
