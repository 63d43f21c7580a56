//! The payload types carried in envelopes. Field names are short and stable: they are the wire
//! format, pinned by the golden vectors in `shared/tests/golden/`.
//!
//! Times are milliseconds since the Unix epoch (wall clock, informational only: nobody compares
//! them across machines for correctness; ordering uses `generation` and `seq`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Message, MessageKind};
use crate::api::{ObjectMeta, PodSpec, PodStatus};

/// Everything a node must run, complete (not a delta), retained on `nodes/{node}/desired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredSnapshot {
    pub node: String,
    /// Grows with every change for this node; the agent applies only newer generations.
    pub generation: u64,
    pub pods: Vec<DesiredPod>,
    /// ConfigMaps the pods use, resolved by the hub.
    #[serde(default)]
    pub config_maps: Vec<ConfigData>,
    /// Secrets the pods use (decoded bytes; the MQTT link must be TLS or local).
    #[serde(default)]
    pub secrets: Vec<ConfigData>,
    /// Credentials for the registries the pods pull from (from imagePullSecrets).
    #[serde(default)]
    pub registry_auth: Vec<RegistryAuth>,
    /// The bound PersistentVolumeClaims the pods use, resolved to their volumes on this node.
    /// Absent when empty (snapshots without claims encode as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimVolume>,
}

impl Message for DesiredSnapshot {
    const KIND: MessageKind = MessageKind::Desired;
}

/// One pod bound to the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredPod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

/// A PersistentVolumeClaim bound to a `local` or `hostPath` PersistentVolume: what the agent
/// mounts for a pod's `persistentVolumeClaim` volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimVolume {
    pub namespace: String,
    pub claim: String,
    /// The PersistentVolume's name.
    pub volume: String,
    /// Where the volume lives on the node (a local volume's path has no type: it must exist).
    pub host_path: crate::api::HostPathVolumeSource,
}

/// The resolved contents of a ConfigMap or Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigData {
    pub namespace: String,
    pub name: String,
    /// Bumps whenever the object changes, so the agent knows when to rewrite mounted files.
    pub resource_version: String,
    pub data: BTreeMap<String, serde_bytes_compat::Bytes>,
}

impl ConfigData {
    /// A ConfigMap's `data` and (base64-decoded) `binaryData`. Values that are not valid
    /// base64 are left out (validation refuses them before they are stored).
    pub fn from_config_map(cm: &crate::api::ConfigMap, resource_version: &str) -> Self {
        let mut data: BTreeMap<String, serde_bytes_compat::Bytes> = BTreeMap::new();
        for (k, v) in cm.data.iter().flatten() {
            data.insert(k.clone(), v.as_str().into());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            if let Ok(b) = base64_decode(v) {
                data.insert(k.clone(), b.into());
            }
        }
        ConfigData {
            namespace: cm.metadata.namespace().to_string(),
            name: cm.metadata.name().to_string(),
            resource_version: resource_version.to_string(),
            data,
        }
    }

    /// A Secret's (base64-decoded) `data` with `stringData` merged over it, as the API server
    /// stores it.
    pub fn from_secret(secret: &crate::api::Secret, resource_version: &str) -> Self {
        let mut data: BTreeMap<String, serde_bytes_compat::Bytes> = BTreeMap::new();
        for (k, v) in secret.data.iter().flatten() {
            if let Ok(b) = base64_decode(v) {
                data.insert(k.clone(), b.into());
            }
        }
        for (k, v) in secret.string_data.iter().flatten() {
            data.insert(k.clone(), v.as_str().into());
        }
        ConfigData {
            namespace: secret.metadata.namespace().to_string(),
            name: secret.metadata.name().to_string(),
            resource_version: resource_version.to_string(),
            data,
        }
    }
}

fn base64_decode(v: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(v)
}

/// Registry credentials (`username`/`password`, or an identity token as `password` with an
/// empty username).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// Registry host with port, as in image references (`docker.io`, `10.0.0.5:5000`).
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// The node's observed state, published on change to `nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: String,
    /// Grows with every report this agent process publishes, repeats included (a repeat after
    /// a reconnect is taken, not dropped as stale); the hub ignores reports of the same
    /// `epoch` older than the last it stored.
    pub seq: u64,
    /// The generation of the last desired snapshot the agent applied.
    pub observed_generation: u64,
    pub time_ms: u64,
    pub info: NodeInfo,
    pub conditions: Vec<NodeCondition>,
    /// Every pod the agent knows about (complete, not a delta).
    pub pods: Vec<PodReport>,
    /// Which count `seq` belongs to: chosen at random when the agent process starts, so no
    /// counter is written to flash per report and a restarted agent (or one that could not
    /// write its disk) is never taken for a stale one. 0 (absent): an agent before epochs,
    /// whose `seq` grows across restarts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Message for StatusReport {
    const KIND: MessageKind = MessageKind::Status;
}

/// Facts about the device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `amd64`, `arm64`, `arm` (Kubernetes' `kubernetes.io/arch` values).
    pub arch: String,
    /// `linux`.
    pub os: String,
    pub kernel: String,
    pub os_image: String,
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub boot_id: String,
    pub addresses: Vec<String>,
}

/// A node condition (`Ready`, `DiskPressure`, `MemoryPressure`, `PIDPressure`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCondition {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
    pub since_ms: u64,
}

/// The status of one pod as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodReport {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status: PodStatus,
}

/// A small liveness signal between status reports, on `nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    pub seq: u64,
    pub observed_generation: u64,
    pub time_ms: u64,
    /// The epoch of `seq` (`StatusReport::epoch`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

impl Message for Heartbeat {
    const KIND: MessageKind = MessageKind::Heartbeat;
}

/// Birth (retained, on connect) and death (the last will) on `nodes/{node}/presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub node: String,
    pub online: bool,
    pub boot_id: String,
    pub agent_version: String,
    /// Distinguishes agent process lifetimes, so a late death of an old session cannot mark a
    /// newer session offline.
    pub session: u64,
    pub time_ms: u64,
}

impl Message for Presence {
    const KIND: MessageKind = MessageKind::Presence;
}

/// A batch of events on `nodes/{node}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    pub node: String,
    pub events: Vec<Event>,
}

impl Message for Events {
    const KIND: MessageKind = MessageKind::Events;
}

/// Something that happened to a pod or the node (`Pulled`, `Started`, `Killing`, `OOMKilled`,
/// `Unhealthy`, `BackOff`, ...), like a Kubernetes Event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub time_ms: u64,
    pub warning: bool,
    pub reason: String,
    pub message: String,
    /// `namespace/name` of the pod, empty for node events.
    pub pod: String,
    pub container: String,
}

/// A request from the hub for a container's log, on `nodes/{node}/log-request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    /// Chosen by the hub; chunks answer on `nodes/{node}/logs/{request_id}`.
    pub request_id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub tail_lines: Option<u64>,
    pub follow: bool,
    /// Ends the request `request_id` (a follow the hub's client stopped reading). Optional on
    /// the wire: absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
}

impl Message for LogRequest {
    const KIND: MessageKind = MessageKind::LogRequest;
}

/// A piece of a log stream; `eof` marks the end (or `error` says why it stopped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub request_id: String,
    pub seq: u64,
    pub data: serde_bytes_compat::Bytes,
    pub eof: bool,
    pub error: Option<String>,
}

impl Message for LogChunk {
    const KIND: MessageKind = MessageKind::LogChunk;
}

/// Byte strings encoded as CBOR byte strings (major type 2) rather than arrays of integers.
pub mod serde_bytes_compat {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    #[derive(Clone, PartialEq, Eq, Default)]
    pub struct Bytes(pub Vec<u8>);

    impl fmt::Debug for Bytes {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Bytes({} bytes)", self.0.len())
        }
    }

    impl From<Vec<u8>> for Bytes {
        fn from(v: Vec<u8>) -> Self {
            Bytes(v)
        }
    }

    impl From<&str> for Bytes {
        fn from(v: &str) -> Self {
            Bytes(v.as_bytes().to_vec())
        }
    }

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                    // Growth follows the elements actually present, never a claimed length.
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(Bytes(out))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}
