//! What the agent says about its pods: the status file `ps` reads (in the run directory, written
//! only when it changes), built purely from the plan's statuses and the observed state, and the
//! status reports for the hub, sent when anything in them changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use flotilla_shared::api::PodStatus;
use flotilla_shared::wire::DesiredPod;

use super::{gc, hub, info};
use crate::reconcile::Observed;

/// What `ps` shows: the statuses of the last reconcile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusFile {
    pub pods: Vec<PodEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status: PodStatus,
    /// No longer desired; its containers are being stopped.
    #[serde(default)]
    pub terminating: bool,
}

/// The status file: every desired pod with its status, in the plan's order, then the pods that
/// are no longer desired (terminating, their containers named).
pub fn status_file(
    statuses: &[(String, PodStatus)],
    by_uid: &BTreeMap<&str, &DesiredPod>,
    observed: &Observed,
) -> StatusFile {
    StatusFile {
        pods: statuses
            .iter()
            .filter_map(|(uid, st)| {
                let d = by_uid.get(uid.as_str())?;
                Some(PodEntry {
                    namespace: d.metadata.namespace().to_string(),
                    name: d.metadata.name().to_string(),
                    uid: uid.clone(),
                    status: st.clone(),
                    terminating: false,
                })
            })
            .chain(observed.pods.values().filter(|p| !by_uid.contains_key(p.uid.as_str())).map(|p| {
                PodEntry {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                    status: PodStatus {
                        container_statuses: Some(
                            p.containers
                                .keys()
                                .map(|n| flotilla_shared::api::ContainerStatus {
                                    name: n.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                        ..Default::default()
                    },
                    terminating: true,
                }
            }))
            .collect(),
    }
}

/// Builds status reports for the hub: sent when anything in them changed, and at least every
/// 5 minutes (heartbeats keep the node Ready in between).
pub struct Reporter {
    info: flotilla_shared::wire::NodeInfo,
    info_at: std::time::Instant,
    /// The state directory, whose filesystem's free space is the DiskPressure condition.
    state_dir: PathBuf,
    /// What the last report said: generation, pods, disk pressure.
    last: Option<(u64, Vec<flotilla_shared::wire::PodReport>, bool)>,
    sent_at: std::time::Instant,
}

impl Reporter {
    pub fn new(node: &str, state_dir: PathBuf) -> Self {
        Reporter {
            info: info::gather(node),
            info_at: std::time::Instant::now(),
            state_dir,
            last: None,
            sent_at: std::time::Instant::now(),
        }
    }

    pub fn report(
        &mut self,
        link: &hub::HubLink,
        snap: Option<&flotilla_shared::wire::DesiredSnapshot>,
        statuses: &[(String, PodStatus)],
    ) {
        // Before the first snapshot: an empty report, which registers the node with the hub.
        let generation = snap.map_or(0, |s| s.generation);
        if self.info_at.elapsed() > Duration::from_secs(300) {
            self.info = info::gather(&link.node);
            self.info_at = std::time::Instant::now();
        }
        let pods: Vec<flotilla_shared::wire::PodReport> = snap
            .iter()
            .flat_map(|s| s.pods.iter())
            .filter_map(|p| {
                let uid = p.metadata.uid.as_deref()?;
                let status = statuses.iter().find(|(u, _)| u == uid)?.1.clone();
                Some(flotilla_shared::wire::PodReport {
                    namespace: p.metadata.namespace().to_string(),
                    name: p.metadata.name().to_string(),
                    uid: uid.to_string(),
                    status,
                })
            })
            .collect();
        let disk = gc::disk_condition(&self.state_dir);
        let unchanged =
            self.last.as_ref().is_some_and(|(g, p, d)| *g == generation && *p == pods && *d == disk.status);
        // Unchanged: heartbeats (every 10 s) say the node lives; a full report only every 5
        // minutes, like the kubelet's nodeStatusReportFrequency.
        if unchanged && self.sent_at.elapsed() < Duration::from_secs(300) {
            return;
        }
        let report = flotilla_shared::wire::StatusReport {
            node: link.node.clone(),
            // Stamped by the link when it publishes (`hub::Counter`).
            seq: 0,
            epoch: 0,
            observed_generation: generation,
            time_ms: crate::clock::unix_ms(),
            info: self.info.clone(),
            conditions: vec![
                flotilla_shared::wire::NodeCondition {
                    kind: "Ready".into(),
                    status: true,
                    reason: "AgentReady".into(),
                    message: "flotilla-agent is running".into(),
                    since_ms: 0,
                },
                disk.clone(),
            ],
            pods: pods.clone(),
        };
        link.send_status(report);
        self.last = Some((generation, pods, disk.status));
        self.sent_at = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::reconcile::ObservedPod;

    #[test]
    fn the_status_file_lists_desired_then_terminating_pods() {
        let d: DesiredPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "apps", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        }))
        .unwrap();
        let by_uid: BTreeMap<&str, &DesiredPod> = [("u1", &d)].into_iter().collect();
        let mut observed = Observed::default();
        let mut gone = ObservedPod {
            namespace: "apps".into(),
            name: "old".into(),
            uid: "u0".into(),
            ..Default::default()
        };
        gone.containers.insert("c".into(), Default::default());
        observed.pods.insert("u0".into(), gone);
        observed.pods.insert("u1".into(), ObservedPod { uid: "u1".into(), ..Default::default() });
        let statuses =
            vec![("u1".to_string(), PodStatus::default()), ("ghost".to_string(), PodStatus::default())];
        let f = status_file(&statuses, &by_uid, &observed);
        let names: Vec<(&str, bool)> = f.pods.iter().map(|p| (p.name.as_str(), p.terminating)).collect();
        assert_eq!(names, [("web", false), ("old", true)]);
        let cs = f.pods[1].status.container_statuses.as_ref().unwrap();
        assert_eq!(cs[0].name, "c");
        assert_eq!(
            serde_json::to_string(&status_file(&statuses, &by_uid, &observed)).unwrap(),
            serde_json::to_string(&f).unwrap()
        );
    }
}
