//! The OCI runtime spec of one container, from the pod spec plus the image config. Pure: the
//! caller passes every path, the resolved environment and the image's facts; nothing here
//! touches the filesystem or the clock.
//!
//! Secure by default, like Kubernetes' "restricted" profile: no new privileges, every
//! capability dropped except those `securityContext.capabilities.add` names, the default
//! seccomp profile, masked and read-only `/proc` paths, a pids limit. `privileged: true` lifts
//! these explicitly.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use flotilla_shared::api::{Container, ObjectMeta, PodSpec};

use super::seccomp;

/// What the image says about how to run it (from its OCI config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid`, `uid:gid`, `name` or `name:group`.
    pub user: Option<String>,
}

impl From<&crate::image::RuntimeConfig> for ImageFacts {
    fn from(c: &crate::image::RuntimeConfig) -> Self {
        ImageFacts {
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            env: c.env.clone(),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
        }
    }
}

/// How the container joins the pod's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// The pod's sandbox: join its network, IPC and UTS namespaces at these paths.
    Sandbox { net: PathBuf, ipc: PathBuf, uts: PathBuf },
    /// `hostNetwork: true`: the host's network and UTS namespaces, a private IPC namespace.
    Host,
    /// Fresh namespaces of its own (the sandbox's own pause process).
    Own,
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything the spec is made from.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub pod: &'a ObjectMeta,
    pub pod_spec: &'a PodSpec,
    pub container: &'a Container,
    pub image: &'a ImageFacts,
    /// The container's root filesystem (already assembled).
    pub rootfs: PathBuf,
    /// The cgroup path (absolute, cgroup v1 or v2 layout).
    pub cgroups_path: String,
    pub namespaces: Namespaces,
    /// Environment from the pod spec, already resolved (valueFrom, envFrom), in order.
    pub env: Vec<(String, String)>,
    pub mounts: Vec<BindMount>,
    /// uid/gid resolved from the image's `/etc/passwd` when the image names a user.
    pub user: (u32, u32),
    pub additional_gids: Vec<u32>,
    pub pids_limit: i64,
    /// The capabilities the agent itself holds (its bounding set): a privileged container gets
    /// these, as with Docker, since no process can grant more than it has.
    pub host_caps: Vec<String>,
    /// Whether the host accounts swap in the memory cgroup (`memory.memsw.*` on cgroup v1);
    /// without it a swap limit cannot be written.
    pub swap_accounting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "container {container:?} has nothing to run: neither the pod spec nor the image gives a command"
    )]
    NoCommand { container: String },
    #[error("container {container:?}: {field} {reason}")]
    Invalid { container: String, field: &'static str, reason: String },
}

/// Paths hidden from unprivileged containers (runc's and Kubernetes' defaults).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths read-only in unprivileged containers.
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// CFS period for CPU limits, as the kubelet uses.
const CPU_PERIOD: u64 = 100_000;

/// The argv Kubernetes runs: `command` replaces the image's Entrypoint (and drops its Cmd),
/// `args` replaces Cmd; `$(VAR)` references are expanded from `env`.
pub fn argv(c: &Container, image: &ImageFacts, env: &[(String, String)]) -> Result<Vec<String>, SpecError> {
    // Only the pod's own command and args are expanded, as the kubelet does; the image's
    // Entrypoint and Cmd are taken literally.
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let pod = |v: &Vec<String>| -> Vec<String> { v.iter().map(|a| expand(a, &vars)).collect() };
    let argv: Vec<String> = match (&c.command, &c.args) {
        (Some(cmd), args) => pod(cmd).into_iter().chain(args.iter().flat_map(pod)).collect(),
        (None, Some(args)) => image.entrypoint.iter().cloned().chain(pod(args)).collect(),
        (None, None) => image.entrypoint.iter().chain(image.cmd.iter()).cloned().collect(),
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand { container: c.name.clone() });
    }
    Ok(argv)
}

/// Kubernetes' `$(VAR)` expansion: defined variables are replaced, undefined references are
/// left as written, and `$$` escapes a `$`.
pub fn expand(s: &str, vars: &BTreeMap<&str, &str>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The environment: the image's, then the pod's (later entries win), with `$(VAR)` in the pod's
/// values expanded from the pod's earlier entries only (as the kubelet does), and a default PATH.
pub fn environment(image: &ImageFacts, pod_env: &[(String, String)]) -> Vec<String> {
    fn set(order: &mut Vec<String>, values: &mut BTreeMap<String, String>, k: String, v: String) {
        if !values.contains_key(&k) {
            order.push(k.clone());
        }
        values.insert(k, v);
    }
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for e in &image.env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        set(&mut order, &mut values, k.to_string(), v.to_string());
    }
    let mut pod_vars: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pod_env {
        let expanded = {
            let vars: BTreeMap<&str, &str> = pod_vars.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            expand(v, &vars)
        };
        pod_vars.insert(k.clone(), expanded.clone());
        set(&mut order, &mut values, k.clone(), expanded);
    }
    let mut out: Vec<String> =
        order.iter().map(|k| format!("{k}={}", values.get(k).map_or("", String::as_str))).collect();
    if !values.contains_key("PATH") {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    out
}

/// Every capability, in the kernel's numbering (index = bit).
const CAPS_BY_BIT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Every capability, for privileged containers and `add: [ALL]`.
pub fn all_caps() -> Vec<String> {
    caps_from_mask(u64::MAX)
}

/// Capability names from a capability bit mask (as in `/proc/self/status` `CapBnd:`).
pub fn caps_from_mask(mask: u64) -> Vec<String> {
    CAPS_BY_BIT
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// Whether swap is accounted in the memory cgroup (cgroup v1 `memory.memsw.limit_in_bytes`).
pub fn host_swap_accounting() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
}

/// The agent's own bounding set, read from `/proc/self/status`.
pub fn own_bounding_caps() -> Vec<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string())))
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .map(caps_from_mask)
        .unwrap_or_default()
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The effective capability set: `add` minus `drop` (ALL in either means every capability).
pub fn capabilities(c: &Container) -> Vec<String> {
    let sc = c.security_context.as_ref();
    if sc.and_then(|s| s.privileged) == Some(true) {
        return all_caps();
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let add: Vec<String> =
        caps.and_then(|c| c.add.as_ref()).into_iter().flatten().map(|s| cap_name(s)).collect();
    let drop: Vec<String> =
        caps.and_then(|c| c.drop.as_ref()).into_iter().flatten().map(|s| cap_name(s)).collect();
    let mut out: Vec<String> = if add.iter().any(|a| a == "CAP_ALL") { all_caps() } else { add };
    if drop.iter().any(|d| d == "CAP_ALL") {
        // Kubernetes: drop ALL, then add back what `add` names explicitly.
        out.retain(|c| caps.and_then(|x| x.add.as_ref()).into_iter().flatten().any(|a| cap_name(a) == *c));
    } else {
        out.retain(|c| !drop.contains(c));
    }
    out.sort();
    out.dedup();
    out
}

fn quantity_limit(c: &Container, list: &str, resource: &str, milli: bool) -> Option<u128> {
    let r = c.resources.as_ref()?;
    let l = if list == "limits" { r.limits.as_ref()? } else { r.requests.as_ref()? };
    let q = l.get(resource)?;
    if milli {
        q.milli_value().ok()
    } else {
        q.value().ok()
    }
}

/// Builds the container's OCI runtime spec.
pub fn build(input: &SpecInput) -> Result<Value, SpecError> {
    let c = input.container;
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged) == Some(true);
    let args = argv(c, input.image, &input.env)?;
    let env = environment(input.image, &input.env);
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| input.image.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or("/".into());
    let mut caps = capabilities(c);
    if !input.host_caps.is_empty() {
        // No process can grant more than it holds (and older kernels lack newer capabilities).
        caps.retain(|c| input.host_caps.contains(c));
    }
    let no_new_privs = !privileged && sc.and_then(|s| s.allow_privilege_escalation) != Some(true);

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    match &input.namespaces {
        Namespaces::Sandbox { net, ipc, uts } => {
            namespaces.push(json!({"type": "network", "path": net}));
            namespaces.push(json!({"type": "ipc", "path": ipc}));
            namespaces.push(json!({"type": "uts", "path": uts}));
        }
        Namespaces::Host => namespaces.push(json!({"type": "ipc"})),
        Namespaces::Own => {
            namespaces.extend([json!({"type": "network"}), json!({"type": "ipc"}), json!({"type": "uts"})]);
        }
    }

    let mut resources =
        json!({"pids": {"limit": input.pids_limit}, "devices": [{"allow": false, "access": "rwm"}]});
    if let Some(mem) = quantity_limit(c, "limits", "memory", false) {
        let mem = i64::try_from(mem).unwrap_or(i64::MAX);
        resources["memory"] =
            if input.swap_accounting { json!({"limit": mem, "swap": mem}) } else { json!({"limit": mem}) };
    }
    let mut cpu = serde_json::Map::new();
    if let Some(m) = quantity_limit(c, "limits", "cpu", true) {
        let quota = u64::try_from(m).unwrap_or(u64::MAX).saturating_mul(CPU_PERIOD) / 1000;
        cpu.insert("quota".into(), json!(quota.max(1000)));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if let Some(m) =
        quantity_limit(c, "requests", "cpu", true).or_else(|| quantity_limit(c, "limits", "cpu", true))
    {
        // The kubelet's range for shares: [2, 262144].
        let shares = u64::try_from(m).unwrap_or(u64::MAX).saturating_mul(1024) / 1000;
        cpu.insert("shares".into(), json!(shares.clamp(2, 262_144)));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }]}),
    ];
    if !privileged {
        mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    }
    for m in &input.mounts {
        let mut opts = vec!["rbind", "rprivate"];
        opts.push(if m.read_only { "ro" } else { "rw" });
        mounts
            .push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts}));
    }

    let hostname = match input.namespaces {
        Namespaces::Host => None,
        _ => Some(input.pod_spec.hostname.clone().unwrap_or_else(|| input.pod.name().to_string())),
    };

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": input.cgroups_path,
        "resources": resources,
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        linux["seccomp"] = seccomp::default_profile();
    }

    let read_only_root = sc.and_then(|s| s.read_only_root_filesystem) == Some(true);
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": input.user.0, "gid": input.user.1, "additionalGids": input.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
            "noNewPrivileges": no_new_privs,
            "oomScoreAdj": 1000,
        },
        "root": {"path": input.rootfs, "readonly": read_only_root},
        "mounts": mounts,
        "linux": linux,
        "annotations": {
            "io.kubernetes.pod.namespace": input.pod.namespace(),
            "io.kubernetes.pod.name": input.pod.name(),
            "io.kubernetes.container.name": c.name,
        },
    });
    if let Some(h) = hostname {
        spec["hostname"] = json!(h);
    }
    Ok(spec)
}

/// Resolves the user to run as: the container's runAsUser/runAsGroup, else the pod's, else the
/// image's `User` (numeric, or a name looked up in `passwd`/`group` text from the image).
pub fn resolve_user(
    c: &Container,
    pod: &PodSpec,
    image: &ImageFacts,
    passwd: &str,
    group: &str,
) -> Result<(u32, u32), SpecError> {
    let sc = c.security_context.as_ref();
    let psc = pod.security_context.as_ref();
    let run_as_user = sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user));
    let run_as_group = sc.and_then(|s| s.run_as_group).or(psc.and_then(|s| s.run_as_group));
    let invalid = |reason: String| SpecError::Invalid { container: c.name.clone(), field: "user", reason };
    let (mut uid, mut gid) = (0u32, 0u32);
    if let Some(u) = image.user.as_deref().filter(|u| !u.is_empty()) {
        let (user, grp) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        match user.parse::<u32>() {
            Ok(n) => {
                uid = n;
                gid = passwd_entry(passwd, |f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(n))
                    .map_or(0, |f| f.1);
            }
            Err(_) => {
                let (u2, g2) = passwd_entry(passwd, |f| f.first() == Some(&user)).ok_or_else(|| {
                    invalid(format!("image user {user:?} is not in the image's /etc/passwd"))
                })?;
                uid = u2;
                gid = g2;
            }
        }
        if let Some(g) = grp {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.first() == Some(&g))
                    .and_then(|f| f.get(2).and_then(|x| x.parse().ok()))
                    .ok_or_else(|| invalid(format!("image group {g:?} is not in the image's /etc/group")))?,
            };
        }
    }
    if let Some(u) = run_as_user {
        uid = u32::try_from(u).map_err(|_| invalid(format!("runAsUser {u} is out of range")))?;
        if run_as_group.is_none() {
            gid = passwd_entry(passwd, |f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid))
                .map_or(gid, |f| f.1);
        }
    }
    if let Some(g) = run_as_group {
        gid = u32::try_from(g).map_err(|_| invalid(format!("runAsGroup {g} is out of range")))?;
    }
    Ok((uid, gid))
}

fn passwd_entry(passwd: &str, pick: impl Fn(&[&str]) -> bool) -> Option<(u32, u32)> {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && pick(f))
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
}

#[cfg(test)]
mod tests;
