//! Observed state: pod, container, node and workload status as the hub stores and shows it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::meta::ResourceList;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Option<PodPhase>,
    pub conditions: Option<Vec<Condition>>,
    pub container_statuses: Option<Vec<ContainerStatus>>,
    pub init_container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    pub start_time: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// A condition (`Ready`, `PodScheduled`, `MemoryPressure`, `Available`, ...).
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub last_transition_time: Option<String>,
    pub last_heartbeat_time: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub state: Option<ContainerState>,
    pub last_state: Option<ContainerState>,
    pub ready: bool,
    pub restart_count: i64,
    pub image: Option<String>,
    #[serde(rename = "imageID")]
    pub image_id: Option<String>,
    #[serde(rename = "containerID")]
    pub container_id: Option<String>,
    pub started: Option<bool>,
}

/// Exactly one of the three is set.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub waiting: Option<StateWaiting>,
    pub running: Option<StateRunning>,
    pub terminated: Option<StateTerminated>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateWaiting {
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateRunning {
    pub started_at: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateTerminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub capacity: Option<ResourceList>,
    pub allocatable: Option<ResourceList>,
    pub conditions: Option<Vec<Condition>>,
    pub addresses: Option<Vec<NodeAddress>>,
    pub node_info: Option<NodeSystemInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSystemInfo {
    pub architecture: String,
    pub operating_system: String,
    pub kernel_version: String,
    pub os_image: Option<String>,
    #[serde(rename = "bootID")]
    pub boot_id: String,
    #[serde(rename = "machineID")]
    pub machine_id: Option<String>,
    /// The agent's version (Kubernetes calls this kubeletVersion).
    pub agent_version: String,
}

/// Status shared by the replicated workloads (Deployment, ReplicaSet, DaemonSet, StatefulSet,
/// Job), with Kubernetes' field names for each.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    pub observed_generation: Option<i64>,
    pub replicas: Option<i64>,
    pub ready_replicas: Option<i64>,
    pub updated_replicas: Option<i64>,
    pub available_replicas: Option<i64>,
    pub desired_number_scheduled: Option<i64>,
    pub active: Option<i64>,
    pub succeeded: Option<i64>,
    pub failed: Option<i64>,
    pub start_time: Option<String>,
    pub completion_time: Option<String>,
    pub conditions: Option<Vec<Condition>>,
    /// ReplicaSet.
    pub fully_labeled_replicas: Option<i64>,
    /// Deployment.
    pub unavailable_replicas: Option<i64>,
    /// StatefulSet.
    pub current_replicas: Option<i64>,
    pub current_revision: Option<String>,
    pub update_revision: Option<String>,
    pub collision_count: Option<i64>,
    /// DaemonSet.
    pub current_number_scheduled: Option<i64>,
    pub number_misscheduled: Option<i64>,
    pub number_ready: Option<i64>,
    pub number_available: Option<i64>,
    pub number_unavailable: Option<i64>,
    pub updated_number_scheduled: Option<i64>,
    /// Job: pods that are Ready.
    pub ready: Option<i64>,
    pub terminating: Option<i64>,
}

/// A Job's status as Kubernetes' JobStatus names it: what the Job controller reads and writes.
/// (The Job kind's schema still validates status updates as `WorkloadStatus`.)
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub conditions: Option<Vec<JobCondition>>,
    pub start_time: Option<String>,
    pub completion_time: Option<String>,
    pub active: Option<i64>,
    pub succeeded: Option<i64>,
    pub failed: Option<i64>,
    pub terminating: Option<i64>,
    /// Pods that are Ready.
    pub ready: Option<i64>,
}

/// A Job's condition (`Complete`, `Failed`, `Suspended`), with Kubernetes' `lastProbeTime`.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub last_probe_time: Option<String>,
    pub last_transition_time: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}
