//! The executor: performs the reconcile core's actions through the runtime port (`port`: the
//! OS behind a narrow trait, with a recording fake for tests) and the image store, and hands
//! what came of each to the pure `reconcile::record`, which does the bookkeeping. Nothing here
//! blocks for long: shims and sandboxes are spawned and left to run, stops with a grace period
//! finish on a background thread. Starting a container is `container`; its pure plan is `plan`
//! and `env`.

mod container;
pub mod env;
#[cfg(test)]
mod fake;
pub mod plan;
pub mod port;
#[cfg(test)]
mod tests;

use anyhow::bail;

use flotilla_shared::api::{Container, PodSpec};
use flotilla_shared::wire::DesiredPod;

use super::events::Recorder;
use super::paths::Paths;
use super::pulls::Pulls;
use super::Desired;
use crate::clock::{boot_ms, now_rfc3339};
use crate::image::ImageStore;
use crate::reconcile::record::{pull_step, record, Outcome, PullOutcome, PullStep, StartFailure};
use crate::reconcile::{Action, ObservedPod};
use crate::runtime::volumes::VolumeError;

pub use env::resolve_env;
pub use plan::container_id;
pub use port::{OsRuntime, Runtime};

/// A start refused because of the pod's configuration (the kubelet's
/// `CreateContainerConfigError`): a missing ConfigMap, Secret or key, runAsNonRoot with an image
/// that runs as root.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Whether an error is the pod configuration's fault.
fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || matches!(c.downcast_ref::<VolumeError>(), Some(VolumeError::Config(_)))
    })
}

pub struct Executor<'a> {
    pub paths: &'a Paths,
    pub images: &'a std::sync::Arc<ImageStore>,
    /// The OS behind the port: sandbox holders, shims, signals, deletion.
    pub runtime: &'a dyn Runtime,
    pub node_name: String,
    /// The node's address (hostIP, and podIP of host-network pods).
    pub host_ip: Option<String>,
    pub pulls: &'a Pulls,
    pub events: std::cell::RefCell<Recorder>,
}

fn find_container<'p>(spec: &'p PodSpec, name: &str) -> Option<&'p Container> {
    spec.all_containers().find(|c| c.name == name)
}

impl Executor<'_> {
    /// Performs one action for `pod` (None when the pod is no longer desired) and records its
    /// outcome ([`record`]). `wanted` holds the ConfigMaps, Secrets and claims the pods may use
    /// (volumes, env, imagePullSecrets).
    pub fn perform(
        &self,
        action: &Action,
        desired: Option<&DesiredPod>,
        obs: &mut ObservedPod,
        wanted: &Desired,
    ) {
        let outcome = match action {
            Action::CreateSandbox { uid } => {
                Outcome::Sandbox(self.create_sandbox(uid, desired).map_err(|e| {
                    tracing::warn!(pod = %obs.name, error = %format!("{e:#}"), "sandbox creation failed");
                    format!("{e:#}")
                }))
            }
            Action::PullImage { image, policy, .. } => {
                let present = matches!(self.images.resolve(image), Ok(Some(_)));
                Outcome::Pull(match pull_step(present, *policy) {
                    PullStep::UsePresent => PullOutcome::Present,
                    PullStep::RefuseNever => PullOutcome::NeverPull,
                    PullStep::Pull => {
                        // Runs on its own thread; `pulls::finish_pulls` records the outcome.
                        let (cfg, missing) = match desired {
                            Some(d) => {
                                self.pulls.config.for_pod(&d.spec, d.metadata.namespace(), &wanted.secrets)
                            }
                            None => (self.pulls.config.clone(), Vec::new()),
                        };
                        if !missing.is_empty() {
                            tracing::warn!(pod = %obs.name, secrets = ?missing, "unable to retrieve some image pull secrets; attempting to pull the image may not succeed");
                        }
                        PullOutcome::Pulling { started: self.pulls.start(self.images, image, cfg) }
                    }
                })
            }
            Action::StartContainer { uid, container, .. } => {
                let Some(d) = desired else { return };
                Outcome::Start(
                    self.start_container(uid, d, container, wanted)
                        .map(|digest| digest.to_string())
                        .map_err(|e| StartFailure { config: is_config_error(&e), message: format!("{e:#}") }),
                )
            }
            Action::StopContainer { uid, container, grace_secs } => Outcome::Stopped(
                self.stop_container(uid, container, *grace_secs)
                    .then(|| container.clone())
                    .into_iter()
                    .collect(),
            ),
            Action::RemoveContainer { uid, container } => {
                self.runtime.remove_container(uid, container);
                Outcome::Removed
            }
            Action::KillPod { uid, grace_secs } => Outcome::Stopped(
                obs.containers
                    .keys()
                    .filter(|name| self.stop_container(uid, name, *grace_secs))
                    .cloned()
                    .collect(),
            ),
            Action::RemovePod { uid } => {
                self.runtime.remove_pod(uid);
                Outcome::Removed
            }
        };
        let pod_ref = format!("{}/{}", obs.namespace, obs.name);
        for n in record(obs, action, outcome, desired, boot_ms(), &now_rfc3339()) {
            self.events.borrow_mut().record(n.warning, n.reason, &pod_ref, &n.container, n.message);
        }
    }

    fn create_sandbox(&self, uid: &str, desired: Option<&DesiredPod>) -> anyhow::Result<()> {
        let Some(d) = desired else { bail!("the pod is no longer desired") };
        if self.runtime.sandbox(uid).is_some() {
            return Ok(());
        }
        let (hostname, host_network) = plan::hostname(d, &self.node_name);
        self.runtime.create_sandbox(uid, &hostname, host_network)
    }

    /// Stops a container (see [`Runtime::stop`]); whether it was running.
    pub fn stop_container(&self, uid: &str, name: &str, grace_secs: u64) -> bool {
        self.runtime.stop(uid, name, grace_secs)
    }
}
