//! Answers the hub's log requests (`flotilla-hub logs`): a request on `nodes/{node}/log-request`
//! is served by a task that publishes the container's log as `LogChunk`s on
//! `nodes/{node}/logs/{request_id}`, following it when asked until the hub cancels, the pod
//! goes away or an hour has passed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flotilla_link::Link;
use flotilla_shared::wire::serde_bytes_compat::Bytes;
use flotilla_shared::wire::topics::Topics;
use flotilla_shared::wire::{self, LogChunk, LogRequest};

use crate::node::logs::LogFiles;

/// Data per chunk (well under any broker's packet limit).
const CHUNK: usize = 32 << 10;
/// Requests served at once; more are answered with an error.
const MAX_ACTIVE: usize = 16;
/// A follow ends after this long; the hub's client asks again if it still wants more.
const MAX_FOLLOW: Duration = Duration::from_secs(3600);
/// How often a follow looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

pub struct LogServer {
    state: PathBuf,
    active: HashMap<String, tokio::task::JoinHandle<()>>,
}

impl LogServer {
    pub fn new(state: PathBuf) -> Self {
        LogServer { state, active: HashMap::new() }
    }

    /// Handles one message from `nodes/{node}/log-request`.
    pub fn handle(&mut self, link: &Link, topics: &Topics, node: &str, payload: &[u8]) {
        let req = match wire::decode::<LogRequest>(payload, 64 << 10) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an undecodable log request");
                return;
            }
        };
        if !Topics::is_request_id(&req.request_id) {
            tracing::warn!(id = req.request_id, "ignoring a log request with an invalid id");
            return;
        }
        self.active.retain(|_, t| !t.is_finished());
        if req.cancel {
            if let Some(t) = self.active.remove(&req.request_id) {
                t.abort();
            }
            return;
        }
        if self.active.contains_key(&req.request_id) {
            return; // a duplicate (QoS 1 is at least once)
        }
        let topic = topics.log_response(node, &req.request_id);
        let link = link.clone();
        if self.active.len() >= MAX_ACTIVE {
            let chunk =
                error_chunk(&req.request_id, 0, format!("the node serves {MAX_ACTIVE} log requests at most"));
            let _ = link.try_publish(topic, wire::encode(&chunk), false);
            return;
        }
        let id = req.request_id.clone();
        let task = tokio::spawn(serve(link, topic, req, self.state.clone()));
        self.active.insert(id, task);
    }
}

fn error_chunk(id: &str, seq: u64, message: String) -> LogChunk {
    LogChunk { request_id: id.to_string(), seq, data: Bytes(Vec::new()), eof: true, error: Some(message) }
}

async fn serve(link: Link, topic: String, req: LogRequest, state: PathBuf) {
    let mut seq = 0u64;
    let mut send = |data: Vec<u8>, eof: bool, error: Option<String>| {
        let chunk = LogChunk { request_id: req.request_id.clone(), seq, data: Bytes(data), eof, error };
        seq += 1;
        let (link, topic) = (link.clone(), topic.clone());
        async move { link.publish(topic, wire::encode(&chunk), false).await }
    };
    let (ns, pod, container) = (req.namespace.clone(), req.pod.clone(), req.container.clone());
    let tail = req.tail_lines.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let located = tokio::task::spawn_blocking(move || {
        let files =
            LogFiles::locate(&state, &ns, &pod, (!container.is_empty()).then_some(container.as_str()))?;
        let (text, follower) = files.read_tail(tail);
        anyhow::Ok((files, text, follower))
    })
    .await;
    let (files, text, mut follower) = match located {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = send(Vec::new(), true, Some(format!("{e:#}"))).await;
            return;
        }
        Err(e) => {
            let _ = send(Vec::new(), true, Some(format!("reading the log: {e}"))).await;
            return;
        }
    };
    for piece in text.as_bytes().chunks(CHUNK) {
        if send(piece.to_vec(), false, None).await.is_err() {
            return;
        }
    }
    if !req.follow {
        let _ = send(Vec::new(), true, None).await;
        return;
    }
    let started = Instant::now();
    while started.elapsed() < MAX_FOLLOW {
        tokio::time::sleep(FOLLOW_POLL).await;
        if !files.dir.exists() {
            let _ = send(Vec::new(), true, Some("the container's log is gone (pod removed)".into())).await;
            return;
        }
        match follower.poll(4 * CHUNK) {
            Ok(more) if more.is_empty() => {}
            Ok(more) => {
                for piece in more.as_bytes().chunks(CHUNK) {
                    if send(piece.to_vec(), false, None).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = send(Vec::new(), true, Some(format!("following the log: {e}"))).await;
                return;
            }
        }
    }
    let _ = send(Vec::new(), true, None).await;
}
