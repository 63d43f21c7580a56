//! Image pulls off the loop: one thread per image reference and set of credentials, each
//! pulling and unpacking, and the loop's side, which records finished pulls on the containers
//! that wait for them.

use std::cell::RefCell;

use flotilla_shared::wire::{ConfigData, DesiredPod};

use super::events;
use crate::clock::{boot_ms, unix_secs};
use crate::image::ImageStore;
use crate::reconcile::{self, Observed};

/// What a finished pull reports: the image, the fingerprint of the credentials it used, and
/// the outcome.
pub type PullResult = (String, String, Result<(), String>);

/// Pulls in progress, one per image reference and set of credentials, each on its own thread.
#[derive(Default)]
pub struct Pulls {
    #[allow(clippy::type_complexity)]
    inflight: std::sync::Mutex<
        std::collections::BTreeMap<(String, String), std::thread::JoinHandle<Result<(), String>>>,
    >,
    pub config: crate::image::pull::PullConfig,
    /// Told when a pull ends, so the loop does not wait for its next round.
    wake: Option<std::sync::mpsc::Sender<()>>,
}

impl Pulls {
    pub fn new(config: crate::image::pull::PullConfig, wake: Option<std::sync::mpsc::Sender<()>>) -> Self {
        Pulls { inflight: Default::default(), config, wake }
    }

    /// Starts a pull of `image` with `cfg` unless one with the same credentials is running.
    /// Returns whether it started one.
    pub fn start(
        &self,
        store: &std::sync::Arc<ImageStore>,
        image: &str,
        cfg: crate::image::pull::PullConfig,
    ) -> bool {
        let Ok(mut map) = self.inflight.lock() else { return false };
        let key = (image.to_string(), cfg.fingerprint(image));
        if map.contains_key(&key) {
            return false;
        }
        let (store, image_s) = (store.clone(), image.to_string());
        let wake = self.wake.clone();
        tracing::info!(image, "pulling");
        let handle = std::thread::spawn(move || {
            let result = pull_and_unpack(&store, &image_s, &cfg);
            if let Some(w) = wake {
                let _ = w.send(());
            }
            result
        });
        map.insert(key, handle);
        true
    }

    /// Whether no pull is running.
    pub fn idle(&self) -> bool {
        self.inflight.lock().map(|m| m.is_empty()).unwrap_or(false)
    }

    /// Takes the results of finished pulls.
    pub fn finished(&self) -> Vec<PullResult> {
        let Ok(mut map) = self.inflight.lock() else { return Vec::new() };
        let done: Vec<(String, String)> =
            map.iter().filter(|(_, h)| h.is_finished()).map(|(k, _)| k.clone()).collect();
        done.into_iter()
            .filter_map(|k| {
                let h = map.remove(&k)?;
                let result = h.join().unwrap_or_else(|_| Err("the pull thread panicked".into()));
                Some((k.0, k.1, result))
            })
            .collect()
    }
}

/// Pulls `image`, then unpacks it here, off the agent's loop, so starting the container does
/// not wait for it.
fn pull_and_unpack(
    store: &ImageStore,
    image: &str,
    cfg: &crate::image::pull::PullConfig,
) -> Result<(), String> {
    let platform = crate::image::Platform::host().map_err(|e| e.to_string())?;
    let record =
        crate::image::pull::pull(store, image, &platform, cfg, unix_secs()).map_err(|e| e.to_string())?;
    store.unpack(&record).map(|_| ()).map_err(|e| format!("unpacking {image}: {e}"))
}

/// Records finished pulls on every container of `desired` waiting for that image whose pod
/// pulls with the same credentials.
pub fn finish_pulls(
    pulls: &Pulls,
    observed: &mut Observed,
    desired: &[DesiredPod],
    secrets: &[ConfigData],
    events: &RefCell<events::Recorder>,
) {
    for (image, fingerprint, result) in pulls.finished() {
        match &result {
            Ok(()) => tracing::info!(image, "pulled"),
            Err(e) => tracing::warn!(image, error = %e, "pull failed"),
        }
        for d in desired {
            let Some(pod) = d.metadata.uid.as_deref().and_then(|u| observed.pods.get_mut(u)) else {
                continue;
            };
            if pulls.config.for_pod(&d.spec, d.metadata.namespace(), secrets).0.fingerprint(&image)
                != fingerprint
            {
                continue;
            }
            for c in d.spec.all_containers().filter(|c| c.image.as_deref() == Some(image.as_str())) {
                let Some(rec) = pod.containers.get_mut(&c.name) else { continue };
                if rec.image != reconcile::ImageState::Pulling {
                    continue;
                }
                let pod_ref = format!("{}/{}", d.metadata.namespace(), d.metadata.name());
                match &result {
                    Ok(()) => events.borrow_mut().record(
                        false,
                        "Pulled",
                        &pod_ref,
                        &c.name,
                        format!("Successfully pulled image {image:?}"),
                    ),
                    Err(e) => events.borrow_mut().record(
                        true,
                        "Failed",
                        &pod_ref,
                        &c.name,
                        format!("Failed to pull image {image:?}: {e}"),
                    ),
                }
                rec.image = match &result {
                    Ok(()) => reconcile::ImageState::Pulled,
                    Err(e) => reconcile::ImageState::PullFailed {
                        message: e.clone(),
                        since_ms: boot_ms(),
                        attempts: 1,
                    },
                };
            }
        }
    }
}
