//! Events about pods, like the kubelet's: pulls, creations, starts, kills, probe failures,
//! back-offs. They go to the agent's log and, with a hub, to `nodes/{node}/events` (best
//! effort, as Kubernetes events are), where the hub records them for `describe`.

use std::collections::BTreeMap;

use flotilla_shared::api::PodStatus;
use flotilla_shared::wire::Event;

/// Collects the events of one loop round.
#[derive(Debug, Default)]
pub struct Recorder {
    seq: u64,
    pending: Vec<Event>,
}

impl Recorder {
    /// `pod` is `namespace/name`.
    pub fn record(&mut self, warning: bool, reason: &str, pod: &str, container: &str, message: String) {
        if warning {
            tracing::warn!(pod, container, reason, "{message}");
        } else {
            tracing::info!(pod, container, reason, "{message}");
        }
        self.seq += 1;
        self.pending.push(Event {
            seq: self.seq,
            time_ms: crate::clock::unix_ms(),
            warning,
            reason: reason.to_string(),
            message,
            pod: pod.to_string(),
            container: container.to_string(),
        });
    }

    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }
}

/// (pod `namespace/name`, container, waiting reason) of every waiting container.
pub type Waiting = BTreeMap<(String, String), String>;

/// The waiting reasons in a round's statuses, by (pod, container).
pub fn waiting_reasons<'a>(statuses: impl Iterator<Item = (String, &'a PodStatus)>) -> Waiting {
    let mut out = Waiting::new();
    for (pod, st) in statuses {
        let all = st.init_container_statuses.iter().flatten().chain(st.container_statuses.iter().flatten());
        for c in all {
            if let Some(reason) =
                c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone())
            {
                out.insert((pod.clone(), c.name.clone()), reason);
            }
        }
    }
    out
}

/// Pure: the `BackOff` events of containers that entered a back-off since the last round, in
/// the kubelet's words.
pub fn backoff_events(before: &Waiting, now: &Waiting) -> Vec<(String, String, String)> {
    now.iter()
        .filter(|(k, r)| before.get(*k) != Some(*r))
        .filter_map(|((pod, container), reason)| {
            let message = match reason.as_str() {
                "CrashLoopBackOff" => {
                    format!("Back-off restarting failed container {container} in pod {pod}")
                }
                "ImagePullBackOff" => format!("Back-off pulling image for container {container}"),
                _ => return None,
            };
            Some((pod.clone(), container.clone(), message))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backoff_is_reported_once_when_it_begins() {
        let w = |r: &str| Waiting::from([(("default/p".to_string(), "c".to_string()), r.to_string())]);
        let none = Waiting::new();
        assert_eq!(
            backoff_events(&none, &w("CrashLoopBackOff")),
            vec![(
                "default/p".into(),
                "c".into(),
                "Back-off restarting failed container c in pod default/p".into()
            )]
        );
        assert!(backoff_events(&w("CrashLoopBackOff"), &w("CrashLoopBackOff")).is_empty());
        assert!(backoff_events(&none, &w("ContainerCreating")).is_empty());
        assert_eq!(backoff_events(&w("ErrImagePull"), &w("ImagePullBackOff")).len(), 1);
    }
}
