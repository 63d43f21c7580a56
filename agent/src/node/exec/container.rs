//! Starting a container: the image resolved and unpacked, its root filesystem planned, the
//! pod's volumes prepared, the OCI spec and the shim's `launch.json` written to the bundle in
//! the run directory, and the shim spawned. The decisions on the way (user, runAsNonRoot,
//! groups, namespaces, environment, the launch itself) are pure, in `plan` and `env`.

use std::path::PathBuf;

use anyhow::Context;

use flotilla_shared::wire::DesiredPod;

use super::port::remove_bundle;
use super::{env, find_container, plan, Executor};
use crate::clock::unix_secs;
use crate::fsutil::{write_atomic, write_replace};
use crate::image::RootfsPlan;
use crate::node::Desired;
use crate::runtime::shim::RootfsSource;
use crate::runtime::spec::{self, ImageFacts, SpecInput};
use crate::runtime::volumes::{self, PodVolumes};

impl Executor<'_> {
    /// Starts a container's shim; returns the manifest digest of the image it runs.
    pub(super) fn start_container(
        &self,
        uid: &str,
        d: &DesiredPod,
        name: &str,
        wanted: &Desired,
    ) -> anyhow::Result<crate::image::Digest> {
        let (config_maps, secrets) = (&wanted.config_maps, &wanted.secrets);
        let c =
            find_container(&d.spec, name).with_context(|| format!("the pod has no container {name:?}"))?;
        let image_ref = c.image.as_deref().context("the container has no image")?;
        let record = self
            .images
            .resolve(image_ref)
            .context("looking up the image")?
            .with_context(|| format!("image {image_ref:?} is not in the local store"))?;
        // The image's last use orders image GC (least recently used first, by days, not
        // seconds): recorded at most once an hour, since each record rewrites the index.
        if unix_secs().saturating_sub(record.last_used) >= 3600 {
            let _ = self.images.touch(&record.manifest, unix_secs());
        }
        let layers = self.images.unpack(&record).context("unpacking the image")?;
        let facts =
            ImageFacts::from(&self.images.runtime_config(&record).context("reading the image config")?);
        let dir = self.paths.container(uid, name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let rootfs = match crate::image::plan_rootfs(&layers, true, &upper, &work)? {
            RootfsPlan::Overlay { .. } => {
                RootfsSource::Overlay { lower: layers.iter().map(|l| l.fs.clone()).collect(), upper, work }
            }
            RootfsPlan::Copy { .. } => {
                let copy = dir.join("rootfs-copy");
                crate::image::copy_layers(&layers, &copy, &crate::image::UnpackOptions::for_current_user())?;
                RootfsSource::Bind { path: copy }
            }
        };
        // The image's /etc/passwd and /etc/group, for named users.
        let etc = |f: &str| {
            layers
                .iter()
                .rev()
                .find_map(|l| std::fs::read_to_string(l.fs.join("etc").join(f)).ok())
                .unwrap_or_default()
        };
        let user = spec::resolve_user(c, &d.spec, &facts, &etc("passwd"), &etc("group"))?;
        plan::check_non_root(c, d, user.0)?;
        // Volumes (idempotent: a restart finds them ready), then this container's mounts.
        let prepared = PodVolumes::new(&self.paths.pod(uid)).prepare(
            &d.spec,
            d.metadata.namespace(),
            config_maps,
            secrets,
            &wanted.claims,
        )?;
        let mounts = volumes::mounts_for(c, &d.spec, &prepared)?;
        let additional_gids = plan::additional_gids(&d.spec, user.1);
        let sandbox = self.runtime.sandbox(uid).context("the pod's sandbox is gone")?;
        let namespaces = plan::namespaces(&sandbox);
        let env = env::resolve_env(c, d, &self.node_name, self.host_ip.as_deref(), config_maps, secrets)?;
        // The bundle (its config.json holds the environment, Secret values included) lives
        // under the run directory, in memory, never on the disk.
        let bundle = self.paths.bundle(uid, name);
        remove_bundle(&bundle);
        std::fs::create_dir_all(&bundle)?;
        let cgroups_path = plan::cgroups_path(uid, name);
        let config = spec::build(&SpecInput {
            pod: &d.metadata,
            pod_spec: &d.spec,
            container: c,
            image: &facts,
            rootfs: bundle.join("rootfs"),
            cgroups_path: cgroups_path.clone(),
            namespaces,
            env,
            mounts,
            user,
            additional_gids,
            pids_limit: 4096,
            host_caps: spec::own_bounding_caps(),
            swap_accounting: spec::host_swap_accounting(),
        })?;
        write_atomic(&bundle.join("config.json"), &serde_json::to_vec_pretty(&config)?)?;
        let logs = self.log_dir(uid, name)?;
        let launch = plan::launch(plan::LaunchInput {
            uid,
            container: c,
            bundle,
            state_root: self.paths.runtime_root(),
            rootfs,
            logs: &logs,
            log_max_bytes: self.paths.log_max_bytes(),
            container_dir: &dir,
            cgroups_path: &cgroups_path,
        });
        // What the shim reads once at its start, and its own stderr: both beside the bundle,
        // in the run directory.
        let launch_path = launch.bundle.join("launch.json");
        write_replace(&launch_path, &serde_json::to_vec(&launch)?)?;
        self.runtime.start_shim(&launch_path, &launch.bundle.join("shim.log"))?;
        Ok(record.manifest)
    }

    /// The container's log directory, created if needed. With logs in memory, the pod's `logs`
    /// directory is a symbolic link into the run directory's tmpfs (made when the pod's first
    /// container starts; after a reboot its target is made again). A pod whose logs were on
    /// the disk before the option was set keeps them there until it is replaced.
    fn log_dir(&self, uid: &str, name: &str) -> anyhow::Result<PathBuf> {
        let link = self.paths.pod(uid).join("logs");
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&link)?;
                std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            }
            Ok(_) => {}
            Err(_) if self.paths.logs_in_memory.is_some() => {
                let target = self.paths.memory_logs(uid);
                std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
                std::os::unix::fs::symlink(&target, &link)
                    .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
            }
            Err(_) => {}
        }
        let logs = self.paths.logs(uid, name);
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(logs)
    }
}
