//! Well-known names of the API that clients and the server must agree on: Kubernetes'
//! annotations the hub reads and writes, and the names of Flotilla's own system objects.

/// A Deployment's and its ReplicaSets' revision (`kubectl rollout history`).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Why a revision was made, shown by `rollout history`.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The namespace of the hub's own objects (broker credentials, join tokens).
pub const SYSTEM_NAMESPACE: &str = "flotilla-system";
/// The Secret type of a node's broker credentials (a salted hash only).
pub const NODE_CREDENTIALS_TYPE: &str = "flotilla.io/node-credentials";
/// The Secret type of a dashboard user's broker credentials (read-only fleet topics).
pub const VIEWER_CREDENTIALS_TYPE: &str = "flotilla.io/viewer-credentials";
/// The Secret type of a join token.
pub const JOIN_TOKEN_TYPE: &str = "flotilla.io/join-token";
