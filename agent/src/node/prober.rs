//! Schedules the containers' probes off the agent's loop. Each probe runs on a thread of its
//! own (bounded by its timeout, at most [`MAX_RUNNING`] at once); outcomes come back over a
//! channel and wake the loop, which applies them here: the verdicts go into the container
//! records (`started`, `ready`), which the pure reconcile core turns into the pod's
//! conditions, and a failed liveness or startup probe asks the loop to kill the container (its
//! restart policy then applies, with back-off). A hung probe only ever holds its own thread.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use flotilla_shared::api::{Container, IntOrString, Probe, UriScheme};
use flotilla_shared::wire::DesiredPod;

use super::exec::container_id;
use super::paths::Paths;
use crate::fsutil::read_json;
use crate::probe::run::{self, HttpGet, NetFrom};
use crate::probe::{Change, Kind, Outcome, Settings, Tracker};
use crate::reconcile::{Observed, ObservedState};
use crate::runtime::sandbox::SandboxInfo;

/// Probes running at once, node-wide.
pub const MAX_RUNNING: usize = 64;

/// (pod uid, container name, probe kind).
type Key = (String, String, Kind);

/// Something the loop must act on or report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A probe failed (the kubelet's `Unhealthy` warning event).
    Unhealthy { uid: String, container: String, kind: Kind, message: String },
    /// A liveness or startup probe failed `failureThreshold` times: kill the container with
    /// this grace period.
    Kill { uid: String, container: String, kind: Kind, grace_secs: u64 },
}

pub struct Prober {
    trackers: BTreeMap<Key, Tracker>,
    tx: Sender<(Key, u64, Outcome)>,
    rx: Receiver<(Key, u64, Outcome)>,
    wake: Sender<()>,
    running: Arc<AtomicUsize>,
    agent_bin: PathBuf,
    paths: Paths,
}

fn probe_of(c: &Container, kind: Kind) -> Option<&Probe> {
    match kind {
        Kind::Startup => c.startup_probe.as_ref(),
        Kind::Liveness => c.liveness_probe.as_ref(),
        Kind::Readiness => c.readiness_probe.as_ref(),
    }
}

impl Prober {
    pub fn new(paths: Paths, agent_bin: PathBuf, wake: Sender<()>) -> Self {
        let (tx, rx) = channel();
        Prober { trackers: BTreeMap::new(), tx, rx, wake, running: Arc::default(), agent_bin, paths }
    }

    /// Brings the trackers in line with the running containers (a new run gets new trackers,
    /// starting from the verdicts its record holds, so an agent restart does not flap Ready),
    /// and applies the outcomes that arrived. Returns what the loop must act on.
    pub fn sync(&mut self, desired: &[DesiredPod], observed: &mut Observed) -> Vec<Finding> {
        let mut wanted: BTreeMap<Key, (u64, Settings)> = BTreeMap::new();
        for d in desired {
            let Some(uid) = d.metadata.uid.as_deref() else { continue };
            let Some(pod) = observed.pods.get(uid) else { continue };
            if pod.deleting {
                continue;
            }
            for c in &d.spec.containers {
                let Some(rec) = pod.containers.get(&c.name) else { continue };
                let ObservedState::Running { started_ms, .. } = rec.state else { continue };
                for kind in [Kind::Startup, Kind::Liveness, Kind::Readiness] {
                    if let Some(p) = probe_of(c, kind) {
                        wanted.insert(
                            (uid.to_string(), c.name.clone(), kind),
                            (started_ms, Settings::of(kind, p)),
                        );
                    }
                }
            }
        }
        self.trackers
            .retain(|k, t| wanted.get(k).is_some_and(|(s, set)| *s == t.started_ms && *set == t.settings));
        for (key, (started_ms, settings)) in wanted {
            if self.trackers.contains_key(&key) {
                continue;
            }
            let rec = observed.pods.get(&key.0).and_then(|p| p.containers.get(&key.1));
            let mut t = Tracker::new(key.2, settings, started_ms);
            match key.2 {
                Kind::Startup if rec.is_some_and(|r| r.started) => {
                    t.verdict = true;
                    t.done = true;
                }
                Kind::Readiness => t.verdict = rec.is_some_and(|r| r.ready),
                _ => {}
            }
            self.trackers.insert(key, t);
        }
        let mut findings = Vec::new();
        while let Ok((key, started_ms, outcome)) = self.rx.try_recv() {
            let Some(t) = self.trackers.get_mut(&key).filter(|t| t.started_ms == started_ms) else {
                continue;
            };
            let change = t.record(&outcome);
            let (uid, container, kind) = key.clone();
            if let Outcome::Failure(message) = &outcome {
                findings.push(Finding::Unhealthy {
                    uid: uid.clone(),
                    container: container.clone(),
                    kind,
                    message: message.clone(),
                });
            }
            let Some(rec) = observed.pods.get_mut(&uid).and_then(|p| p.containers.get_mut(&container)) else {
                continue;
            };
            match change {
                Change::None => {}
                Change::Verdict(v) => match kind {
                    Kind::Startup => rec.started = v,
                    Kind::Readiness => rec.ready = v,
                    Kind::Liveness => {}
                },
                Change::Kill => {
                    rec.ready = false;
                    let grace_secs = grace(desired, &uid, &container, kind);
                    findings.push(Finding::Kill { uid, container, kind, grace_secs });
                }
            }
        }
        // Without a startup probe a running container is started; readiness then gates.
        findings
    }

    /// Launches the probes that are due. Liveness and readiness wait for the startup probe.
    pub fn launch(&mut self, desired: &[DesiredPod], observed: &Observed, now_ms: u64) {
        let started = |uid: &str, name: &str| {
            observed.pods.get(uid).and_then(|p| p.containers.get(name)).is_some_and(|r| r.started)
        };
        let has_startup: Vec<(String, String)> = self
            .trackers
            .keys()
            .filter(|k| k.2 == Kind::Startup)
            .map(|k| (k.0.clone(), k.1.clone()))
            .collect();
        for (key, t) in self.trackers.iter_mut() {
            if t.due_ms().is_none_or(|due| due > now_ms) {
                continue;
            }
            if key.2 != Kind::Startup
                && has_startup.iter().any(|(u, c)| *u == key.0 && *c == key.1)
                && !started(&key.0, &key.1)
            {
                continue;
            }
            if self.running.load(Ordering::SeqCst) >= MAX_RUNNING {
                return;
            }
            let Some(job) = Job::new(desired, &self.paths, &self.agent_bin, key, t.settings) else {
                continue;
            };
            t.launched(now_ms);
            self.running.fetch_add(1, Ordering::SeqCst);
            let (tx, wake, running, key, started_ms) =
                (self.tx.clone(), self.wake.clone(), self.running.clone(), key.clone(), t.started_ms);
            std::thread::spawn(move || {
                let outcome = job.run();
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send((key, started_ms, outcome));
                let _ = wake.send(());
            });
        }
    }

    /// When the next probe is due.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.trackers.values().filter_map(Tracker::due_ms).min()
    }
}

/// The grace period for a probe kill: the probe's own, else the pod's, else 30 s.
fn grace(desired: &[DesiredPod], uid: &str, container: &str, kind: Kind) -> u64 {
    let Some(d) = desired.iter().find(|d| d.metadata.uid.as_deref() == Some(uid)) else { return 30 };
    let probe = d.spec.containers.iter().find(|c| c.name == container).and_then(|c| probe_of(c, kind));
    probe
        .and_then(|p| p.termination_grace_period_seconds)
        .or(d.spec.termination_grace_period_seconds)
        .map_or(30, |s| u64::try_from(s).unwrap_or(0))
}

/// One probe run, with everything it needs resolved up front.
enum Job {
    Exec {
        agent_bin: PathBuf,
        root: PathBuf,
        id: String,
        command: Vec<String>,
        timeout: Duration,
    },
    Tcp {
        from: NetFrom,
        host: String,
        port: u16,
        timeout: Duration,
    },
    Http {
        from: NetFrom,
        https: bool,
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
    /// The probe cannot run (a named port the container does not declare, no sandbox): a failure.
    Broken(String),
}

impl Job {
    fn new(
        desired: &[DesiredPod],
        paths: &Paths,
        agent_bin: &std::path::Path,
        key: &Key,
        s: Settings,
    ) -> Option<Job> {
        let (uid, name, kind) = key;
        let d = desired.iter().find(|d| d.metadata.uid.as_deref() == Some(uid.as_str()))?;
        let c = d.spec.containers.iter().find(|c| &c.name == name)?;
        let p = probe_of(c, *kind)?;
        let timeout = Duration::from_millis(s.timeout_ms);
        if let Some(e) = &p.exec {
            return Some(Job::Exec {
                agent_bin: agent_bin.to_path_buf(),
                root: paths.runtime_root(),
                id: container_id(uid, name),
                command: e.command.clone().unwrap_or_default(),
                timeout,
            });
        }
        let (port, host) = match (&p.http_get, &p.tcp_socket) {
            (Some(h), _) => (&h.port, h.host.as_deref()),
            (None, Some(t)) => (&t.port, t.host.as_deref()),
            (None, None) => return Some(Job::Broken("the probe has no handler".into())),
        };
        let port = match resolve_port(c, port) {
            Ok(p) => p,
            Err(e) => return Some(Job::Broken(e)),
        };
        // No host: the pod itself, from inside its network namespace.
        let (from, host) = match host.filter(|h| !h.is_empty()) {
            Some(h) => (NetFrom::Host, h.to_string()),
            None => match read_json::<SandboxInfo>(&paths.sandbox_info(uid)) {
                Some(sb) if sb.host_network => (NetFrom::Host, "127.0.0.1".to_string()),
                Some(sb) if sb.alive() => (NetFrom::Netns(sb.ns_path("net")), "127.0.0.1".to_string()),
                _ => return Some(Job::Broken("the pod's sandbox is not running".into())),
            },
        };
        Some(match &p.http_get {
            Some(h) => Job::Http {
                from,
                https: h.scheme == Some(UriScheme::Https),
                host,
                port,
                path: h.path.clone().unwrap_or_else(|| "/".into()),
                headers: h.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
                timeout,
            },
            None => Job::Tcp { from, host, port, timeout },
        })
    }

    fn run(self) -> Outcome {
        match self {
            Job::Exec { agent_bin, root, id, command, timeout } => {
                run::exec(&agent_bin, &root, &id, &command, timeout)
            }
            Job::Tcp { from, host, port, timeout } => run::tcp(&from, &host, port, timeout),
            Job::Http { from, https, host, port, path, headers, timeout } => run::http(
                &from,
                &HttpGet { https, host: &host, port, path: &path, headers: &headers },
                timeout,
            ),
            Job::Broken(why) => Outcome::Failure(why),
        }
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn resolve_port(c: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => {
            u16::try_from(*n).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port {n}"))
        }
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("the container has no port named {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn desired() -> Vec<DesiredPod> {
        vec![serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [{"name": "web", "image": "x",
                "readinessProbe": {"exec": {"command": ["true"]}},
                "livenessProbe": {"exec": {"command": ["true"]}, "failureThreshold": 2, "terminationGracePeriodSeconds": 3}}]}
        }))
        .unwrap()]
    }

    fn running(started_ms: u64, ready: bool) -> Observed {
        let mut o = Observed::default();
        let mut pod = crate::reconcile::ObservedPod { uid: "u1".into(), ..Default::default() };
        pod.containers.insert(
            "web".into(),
            crate::reconcile::ContainerRecord {
                state: ObservedState::Running { started_ms, started_wall: String::new() },
                ready,
                ..Default::default()
            },
        );
        o.pods.insert("u1".into(), pod);
        o
    }

    fn prober() -> Prober {
        let (wake, _) = channel();
        Prober::new(
            Paths::new(Path::new("/nonexistent"), Path::new("/nonexistent")),
            "/bin/false".into(),
            wake,
        )
    }

    fn outcome(p: &Prober, kind: Kind, started_ms: u64, o: Outcome) {
        p.tx.send((("u1".into(), "web".into(), kind), started_ms, o)).unwrap();
    }

    #[test]
    fn outcomes_become_verdicts_and_kills() {
        let (d, mut o, mut p) = (desired(), running(1_000, false), prober());
        assert_eq!(p.sync(&d, &mut o), vec![]);
        assert_eq!(p.next_due_ms(), Some(1_000), "no initial delay: due at the start");
        outcome(&p, Kind::Readiness, 1_000, Outcome::Success);
        assert_eq!(p.sync(&d, &mut o), vec![]);
        assert!(o.pods["u1"].containers["web"].ready, "one success makes it ready");
        outcome(&p, Kind::Liveness, 1_000, Outcome::Failure("exit 1".into()));
        outcome(&p, Kind::Liveness, 1_000, Outcome::Failure("exit 1".into()));
        let f = p.sync(&d, &mut o);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(
            matches!(&f[0], Finding::Unhealthy { kind: Kind::Liveness, message, .. } if message == "exit 1")
        );
        assert_eq!(
            f[2],
            Finding::Kill { uid: "u1".into(), container: "web".into(), kind: Kind::Liveness, grace_secs: 3 }
        );
        assert!(!o.pods["u1"].containers["web"].ready, "a container being killed is not ready");
    }

    #[test]
    fn a_new_run_gets_new_trackers_and_old_outcomes_are_dropped() {
        let (d, mut o, mut p) = (desired(), running(1_000, false), prober());
        p.sync(&d, &mut o);
        let mut o2 = running(9_000, false);
        p.sync(&d, &mut o2);
        outcome(&p, Kind::Readiness, 1_000, Outcome::Success);
        p.sync(&d, &mut o2);
        assert!(
            !o2.pods["u1"].containers["web"].ready,
            "an outcome about the previous run counts for nothing"
        );
        // An adopted run (agent restart) keeps the readiness its record holds.
        let mut p = prober();
        let mut o3 = running(9_000, true);
        p.sync(&d, &mut o3);
        assert!(p.trackers[&("u1".to_string(), "web".to_string(), Kind::Readiness)].verdict);
    }

    #[test]
    fn named_ports_resolve_against_the_container() {
        let c: Container = serde_json::from_value(
            json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap();
        assert_eq!(resolve_port(&c, &IntOrString::String("http".into())), Ok(8080));
        assert_eq!(resolve_port(&c, &IntOrString::Int(81)), Ok(81));
        assert!(resolve_port(&c, &IntOrString::String("admin".into()))
            .unwrap_err()
            .contains("no port named \"admin\""));
        assert!(resolve_port(&c, &IntOrString::Int(70000)).is_err());
    }
}
