//! The pure parts of a container's plan: the runAsNonRoot check, its groups, the namespaces it
//! joins, its cgroup, and the shim's `Launch`, from values the executor has gathered.

use std::path::{Path, PathBuf};

use flotilla_shared::api::{Container, PodSpec};
use flotilla_shared::wire::DesiredPod;

use super::ConfigError;
use crate::runtime::sandbox::SandboxInfo;
use crate::runtime::shim::{Launch, RootfsSource};
use crate::runtime::spec::Namespaces;

/// The libcontainer id of a container: unique per pod and container name.
pub fn container_id(uid: &str, name: &str) -> String {
    format!("{}-{name}", uid.get(..uid.len().min(40)).unwrap_or(uid))
}

/// The container's cgroup (under the pod's `/flotilla/<uid>`).
pub fn cgroups_path(uid: &str, name: &str) -> String {
    format!("/flotilla/{uid}/{name}")
}

/// The sandbox's hostname and whether it uses the host's network: a host-network pod has the
/// node's name, any other its `hostname` or else its own name.
pub fn hostname(d: &DesiredPod, node_name: &str) -> (String, bool) {
    let host_network = d.spec.host_network == Some(true);
    let hostname = d.spec.hostname.clone().unwrap_or_else(|| d.metadata.name().to_string());
    (if host_network { node_name.to_string() } else { hostname }, host_network)
}

/// Refuses a container with runAsNonRoot (its own, else the pod's) whose user is root, with the
/// kubelet's message.
pub fn check_non_root(c: &Container, d: &DesiredPod, uid: u32) -> Result<(), ConfigError> {
    let non_root = c.security_context.as_ref().and_then(|s| s.run_as_non_root).or(d
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root));
    if non_root == Some(true) && uid == 0 {
        return Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{}_{}({})\", container: {})",
            d.metadata.name(),
            d.metadata.namespace(),
            d.metadata.uid.as_deref().unwrap_or_default(),
            c.name,
        )));
    }
    Ok(())
}

/// The pod's fsGroup and supplementalGroups, sorted, without duplicates or the primary group.
pub fn additional_gids(spec: &PodSpec, primary_gid: u32) -> Vec<u32> {
    let psc = spec.security_context.as_ref();
    let mut gids: Vec<u32> = psc
        .and_then(|s| s.fs_group)
        .into_iter()
        .chain(psc.and_then(|s| s.supplemental_groups.clone()).into_iter().flatten())
        .filter_map(|g| u32::try_from(g).ok())
        .filter(|g| *g != primary_gid)
        .collect();
    gids.sort_unstable();
    gids.dedup();
    gids
}

/// The namespaces the container joins: the host's for a host-network pod, else its sandbox's.
pub fn namespaces(sandbox: &SandboxInfo) -> Namespaces {
    if sandbox.host_network {
        Namespaces::Host
    } else {
        Namespaces::Sandbox {
            net: sandbox.ns_path("net"),
            ipc: sandbox.ns_path("ipc"),
            uts: sandbox.ns_path("uts"),
        }
    }
}

/// What [`launch`] is made from.
#[derive(Debug)]
pub struct LaunchInput<'a> {
    pub uid: &'a str,
    pub container: &'a Container,
    pub bundle: PathBuf,
    pub state_root: PathBuf,
    pub rootfs: RootfsSource,
    pub logs: &'a Path,
    pub log_max_bytes: u64,
    /// The container's directory (`status/` is in it).
    pub container_dir: &'a Path,
    pub cgroups_path: &'a str,
}

/// What the shim is asked to run.
pub fn launch(i: LaunchInput) -> Launch {
    Launch {
        id: container_id(i.uid, &i.container.name),
        bundle: i.bundle,
        state_root: i.state_root,
        rootfs: i.rootfs,
        log: i.logs.join("current.log"),
        log_max_bytes: i.log_max_bytes,
        status_dir: i.container_dir.join("status"),
        memory_cgroup: Some(PathBuf::from(format!("/sys/fs/cgroup/memory{}", i.cgroups_path))),
        allow_devices: i.container.security_context.as_ref().and_then(|s| s.privileged) == Some(true),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use serde_json::{json, Value};

    use super::*;

    fn pod(pod_sc: Value, container_sc: Value) -> DesiredPod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "apps", "uid": "u1"},
            "spec": {"securityContext": pod_sc,
                     "containers": [{"name": "c", "image": "x", "securityContext": container_sc}]},
        }))
        .unwrap()
    }

    #[test]
    fn run_as_non_root_refuses_root_only() {
        let yes = json!({"runAsNonRoot": true});
        let no = json!({"runAsNonRoot": false});
        let none = json!({});
        // (pod's, container's, user, refused)
        for (psc, csc, uid, refused) in [
            (&none, &none, 0, false),
            (&yes, &none, 0, true),
            (&yes, &none, 1000, false),
            (&none, &yes, 0, true),
            (&yes, &no, 0, false),
            (&no, &yes, 0, true),
        ] {
            let d = pod(psc.clone(), csc.clone());
            let got = check_non_root(&d.spec.containers[0], &d, uid);
            assert_eq!(got.is_err(), refused, "pod {psc}, container {csc}, uid {uid}");
            assert_eq!(check_non_root(&d.spec.containers[0], &d, uid).is_err(), refused);
        }
        let d = pod(yes.clone(), none.clone());
        assert_eq!(
            check_non_root(&d.spec.containers[0], &d, 0).unwrap_err().to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_apps(u1)\", container: c)"
        );
    }

    #[test]
    fn the_hostname_is_the_pods_unless_it_uses_the_hosts_network() {
        let pod = |spec: Value| -> DesiredPod {
            serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec})).unwrap()
        };
        for (spec, want) in [
            (json!({"containers": []}), ("p", false)),
            (json!({"hostname": "h", "containers": []}), ("h", false)),
            (json!({"hostname": "h", "hostNetwork": true, "containers": []}), ("node1", true)),
        ] {
            let (h, host) = hostname(&pod(spec.clone()), "node1");
            assert_eq!((h.as_str(), host), want, "{spec}");
        }
    }

    #[test]
    fn additional_groups_are_sorted_unique_and_not_the_primary() {
        for (sc, primary, want) in [
            (json!({}), 0, vec![]),
            (json!({"fsGroup": 2000}), 0, vec![2000]),
            (json!({"fsGroup": 2000, "supplementalGroups": [3000, 2000, 1, -5]}), 1, vec![2000, 3000]),
            (json!({"fsGroup": 7}), 7, vec![]),
        ] {
            let d = pod(sc.clone(), json!({}));
            assert_eq!(additional_gids(&d.spec, primary), want, "{sc}");
        }
    }

    #[test]
    fn the_launch_names_the_container_and_its_cgroup() {
        let d = pod(json!({}), json!({"privileged": true}));
        let l = launch(LaunchInput {
            uid: "u1",
            container: &d.spec.containers[0],
            bundle: "/run/b".into(),
            state_root: "/run/state".into(),
            rootfs: RootfsSource::Bind { path: "/r".into() },
            logs: Path::new("/logs/c"),
            log_max_bytes: 10,
            container_dir: Path::new("/pods/u1/containers/c"),
            cgroups_path: &cgroups_path("u1", "c"),
        });
        assert_eq!(l.id, "u1-c");
        assert_eq!(l.log, Path::new("/logs/c/current.log"));
        assert_eq!(l.status_dir, Path::new("/pods/u1/containers/c/status"));
        assert_eq!(l.memory_cgroup.as_deref(), Some(Path::new("/sys/fs/cgroup/memory/flotilla/u1/c")));
        assert!(l.allow_devices);
        assert_eq!(container_id(&"x".repeat(50), "c"), format!("{}-c", "x".repeat(40)));
    }
}
