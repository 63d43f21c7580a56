//! Node lifecycle: marks nodes NotReady once they have been silent for the grace period, also
//! the nodes a restarted hub never hears from.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use flotilla_shared::api::Kind;

use super::publish::list;
use super::take::mark_not_ready;
use super::{lock, NodeMemory};
use crate::store::Store;

/// Marks nodes NotReady once they have been silent for `grace`.
pub(super) async fn lifecycle_task(store: Store, memory: Arc<Mutex<NodeMemory>>, grace: Duration) {
    // A restarted hub knows nothing of when nodes last reported: every node the store has as
    // Ready gets the grace from now, so one that died meanwhile still turns NotReady.
    let started = Instant::now();
    for node in list(&store, Kind::Node).await {
        if crate::controllers::common::node_ready(&node) {
            if let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) {
                lock(&memory).last_seen.entry(name.to_string()).or_insert(started);
            }
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let silent: Vec<String> = {
            let mut m = lock(&memory);
            let silent: Vec<String> =
                m.last_seen.iter().filter(|(_, t)| t.elapsed() > grace).map(|(n, _)| n.clone()).collect();
            for n in &silent {
                m.last_seen.remove(n);
            }
            silent
        };
        for node in silent {
            let message = format!("no report from the agent for {} s", grace.as_secs());
            mark_not_ready(&store, &node, "NodeStatusUnknown", &message).await;
        }
    }
}
