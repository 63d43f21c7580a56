//! Storage kinds: PersistentVolume and PersistentVolumeClaim specs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::meta::{ObjectMeta, ResourceList};
use super::pod::{HostPathVolumeSource, NodeSelector, ResourceRequirements};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
    ReadWriteOncePod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    Retain,
    Delete,
    Recycle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeMode {
    Filesystem,
    Block,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeSpec {
    pub capacity: Option<ResourceList>,
    pub access_modes: Option<Vec<AccessMode>>,
    pub persistent_volume_reclaim_policy: Option<ReclaimPolicy>,
    pub storage_class_name: Option<String>,
    pub volume_mode: Option<VolumeMode>,
    pub host_path: Option<HostPathVolumeSource>,
    pub local: Option<LocalVolumeSource>,
    pub node_affinity: Option<VolumeNodeAffinity>,
    pub claim_ref: Option<ClaimReference>,
    pub mount_options: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeSource {
    pub path: String,
    pub fs_type: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeNodeAffinity {
    pub required: Option<NodeSelector>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimReference {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimSpec {
    pub access_modes: Option<Vec<AccessMode>>,
    pub resources: Option<ResourceRequirements>,
    pub storage_class_name: Option<String>,
    pub volume_name: Option<String>,
    pub volume_mode: Option<VolumeMode>,
    pub selector: Option<crate::selector::LabelSelector>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    pub phase: Option<String>,
    pub capacity: Option<ResourceList>,
    pub access_modes: Option<Vec<AccessMode>>,
    pub message: Option<String>,
}

/// A PersistentVolumeClaim (also the element type of `volumeClaimTemplates`, where apiVersion
/// and kind may be omitted).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaim {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: ObjectMeta,
    pub spec: PersistentVolumeClaimSpec,
    pub status: Option<VolumeStatus>,
}
