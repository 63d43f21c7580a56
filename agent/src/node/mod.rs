//! The node agent: desired pods in (from a directory of manifests, like the kubelet's static
//! pods, and from the hub), the runtime's real state observed from the files shims and
//! sandboxes keep, the pure reconcile core deciding, the executor acting, and the observed
//! state recorded in the run directory (only when it changes) so a restarted agent adopts what
//! runs. One room per job:
//!
//! - `run`: the loop and its wiring; `wanted`: what to run (manifests, the hub's snapshot);
//!   `observe`: the shims' and sandboxes' files read into the observed state;
//! - `exec`: the executor (I/O), which records outcomes through `reconcile::record`; `pulls`:
//!   image pulls on their own threads; `prober`: probes; `gc`: image GC and disk pressure;
//! - `records`: the observed state and statuses in the run directory; `desired`: the hub's
//!   snapshot on the flash; `report`: the status file and the hub's status reports; `events`:
//!   Kubernetes events; `hub`, `hub_logs`: the MQTT link and log streaming; `info`, `logs`,
//!   `paths`, `watch`: node facts, log files, the directory layout, manifest watching.

pub mod desired;
pub mod events;
pub mod exec;
pub mod gc;
pub mod hub;
pub mod hub_logs;
pub mod info;
pub mod logs;
pub mod observe;
pub mod paths;
pub mod prober;
pub mod pulls;
pub mod records;
pub mod report;
pub mod run;
pub mod wanted;
pub mod watch;

pub use report::{PodEntry, StatusFile};
pub use run::{run, RunOptions};
pub use wanted::{static_manifests, Desired};
