//! Container logs read over the link (`flotilla-hub logs`; the HTTP side is `api::logs`): the
//! hub asks the pod's node on `nodes/{node}/log-request`; the `LogChunk`s that come back on
//! `nodes/{node}/logs/{request_id}` are routed to the waiting request (`LogRouter`) and put
//! back in order (`Reorder`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use flotilla_shared::wire::LogChunk;

/// Open requests, by id: where the ingest delivers their chunks.
#[derive(Clone, Default)]
pub struct LogRouter(Arc<Mutex<HashMap<String, mpsc::Sender<LogChunk>>>>);

impl LogRouter {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<LogChunk>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a chunk from `nodes/{node}/logs/{id}` to its request, if it is still open.
    pub fn deliver(&self, id: &str, chunk: LogChunk) {
        if chunk.request_id != id {
            return;
        }
        let tx = self.lock().get(id).cloned();
        if let Some(tx) = tx {
            if tx.try_send(chunk).is_err() {
                tracing::warn!(request = id, "log chunk dropped: the client reads too slowly");
                self.lock().remove(id);
            }
        }
    }
}

/// Puts chunks back in `seq` order and drops duplicates (QoS 1 is at least once).
#[derive(Debug, Default)]
pub struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, LogChunk>,
}

impl Reorder {
    /// The chunks that can be delivered now, in order.
    pub fn push(&mut self, chunk: LogChunk) -> Vec<LogChunk> {
        if chunk.seq >= self.next {
            self.waiting.insert(chunk.seq, chunk);
        }
        let mut out = Vec::new();
        while let Some(c) = self.waiting.remove(&self.next) {
            self.next += 1;
            out.push(c);
        }
        out
    }
}

/// Which container's log: the one asked for (it must exist), or the only app container.
pub fn pick_container(pod: &Value, requested: Option<&str>) -> Result<String, String> {
    let names = |key: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let (apps, inits) = (names("containers"), names("initContainers"));
    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    match requested {
        Some(c) if apps.iter().chain(&inits).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(format!(
            "container {c} is not valid for pod {pod_name}; choose one of: [{}]",
            apps.iter().chain(&inits).cloned().collect::<Vec<_>>().join(" ")
        )),
        None if apps.len() == 1 => Ok(apps[0].clone()),
        None => Err(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            apps.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::wire::serde_bytes_compat::Bytes;
    use serde_json::json;

    fn chunk(seq: u64) -> LogChunk {
        LogChunk { request_id: "r".into(), seq, data: Bytes(vec![b'a' + seq as u8]), eof: false, error: None }
    }

    #[test]
    fn chunks_come_out_in_order_once() {
        let mut r = Reorder::default();
        assert!(r.push(chunk(1)).is_empty());
        let out: Vec<u64> = r.push(chunk(0)).iter().map(|c| c.seq).collect();
        assert_eq!(out, vec![0, 1]);
        assert!(r.push(chunk(1)).is_empty(), "a duplicate");
        assert!(r.push(chunk(0)).is_empty(), "an old duplicate");
        assert_eq!(r.push(chunk(2)).len(), 1);
    }

    #[test]
    fn the_container_is_checked_like_kubectl() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web"}], "initContainers": [{"name": "setup"}]}});
        assert_eq!(pick_container(&one, None).unwrap(), "web");
        assert_eq!(pick_container(&one, Some("setup")).unwrap(), "setup");
        assert!(pick_container(&one, Some("db")).unwrap_err().contains("choose one of: [web setup]"));
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            pick_container(&two, None).unwrap_err(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
    }
}
