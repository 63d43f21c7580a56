//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: asks the pod's node for the container's log
//! over the link (`nodes::logs`) and streams the chunks that come back as the response body,
//! in order. When the client goes away during a follow, the node is told to stop.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use flotilla_link::Link;
use flotilla_shared::api::Kind;
use flotilla_shared::wire::topics::Topics;
use flotilla_shared::wire::{self, LogRequest};

use super::{ApiError, ApiState};
use crate::nodes::logs::{pick_container, LogRouter, Reorder};

/// How long the node has to answer before the request fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Chunks buffered per request before the stream is declared broken.
const BUFFER: usize = 1024;

/// What the log handler needs.
pub struct LogsState {
    pub api: Arc<ApiState>,
    pub link: Link,
    pub topics: Topics,
    pub router: LogRouter,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    container: Option<String>,
    #[serde(default)]
    follow: Option<String>,
    tail_lines: Option<String>,
}

/// Removes the request when the response ends, and tells the node to stop a follow the client
/// abandoned.
struct Open {
    router: LogRouter,
    link: Link,
    topic: String,
    request: LogRequest,
    done: bool,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.router.lock().remove(&self.request.request_id);
        if self.request.follow && !self.done {
            let cancel = LogRequest { cancel: true, ..self.request.clone() };
            let _ = self.link.try_publish(self.topic.clone(), wire::encode(&cancel), false);
        }
    }
}

pub async fn handler(
    State(st): State<Arc<LogsState>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
    headers: HeaderMap,
) -> Response {
    match handle(&st, namespace, name, q, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | ""))
}

async fn handle(
    st: &LogsState,
    namespace: String,
    name: String,
    q: LogQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if !crate::api::authorized(&st.api, headers) {
        return Err(ApiError::unauthorized());
    }
    let tail_lines =
        match q.tail_lines.as_deref() {
            None => None,
            Some(t) => Some(t.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("tailLines: {t:?} is not a non-negative integer"))
            })?),
        };
    let pod = st
        .api
        .store
        .get(Kind::Pod, &namespace, &name)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("pods \"{name}\" not found")))?;
    let container = pick_container(&pod, q.container.as_deref()).map_err(ApiError::bad_request)?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} is not bound to a node yet")))?
        .to_string();
    let request = LogRequest {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        namespace,
        pod: name,
        container,
        tail_lines,
        follow: flag(&q.follow),
        cancel: false,
    };
    let (tx, mut rx) = mpsc::channel(BUFFER);
    st.router.lock().insert(request.request_id.clone(), tx);
    let topic = st.topics.log_request(&node);
    let mut open = Open { router: st.router.clone(), link: st.link.clone(), topic, request, done: false };
    st.link.publish(open.topic.clone(), wire::encode(&open.request), false).await.map_err(|e| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", format!("{e:#}"))
    })?;
    // The first chunk decides the status: a node that cannot serve the log says why.
    let timeout = || {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("node {node} did not answer within {} s (is it online?)", ANSWER_TIMEOUT.as_secs()),
        )
    };
    let mut order = Reorder::default();
    let mut first = Vec::new();
    while first.is_empty() {
        let chunk = tokio::time::timeout(ANSWER_TIMEOUT, rx.recv())
            .await
            .map_err(|_| timeout())?
            .ok_or_else(timeout)?;
        first = order.push(chunk);
    }
    if let Some(c) = first.first().filter(|c| c.eof && c.data.0.is_empty()) {
        if let Some(err) = &c.error {
            open.done = true;
            return Err(ApiError::not_found(err.clone()));
        }
    }
    let stream = futures_util::stream::unfold(
        (open, order, rx, std::collections::VecDeque::from(first)),
        |(mut open, mut order, mut rx, mut ready)| async move {
            loop {
                if open.done {
                    return None;
                }
                if let Some(c) = ready.pop_front() {
                    if c.eof {
                        open.done = true;
                        if let Some(e) = c.error {
                            let err = std::io::Error::other(e);
                            return Some((Err(err), (open, order, rx, ready)));
                        }
                    }
                    if c.data.0.is_empty() {
                        continue;
                    }
                    return Some((Ok(axum::body::Bytes::from(c.data.0)), (open, order, rx, ready)));
                }
                match rx.recv().await {
                    Some(c) => ready.extend(order.push(c)),
                    None => {
                        // The router dropped us: the client read too slowly.
                        open.done = true;
                        let err = std::io::Error::other("the log stream fell behind and was cut");
                        return Some((Err(err), (open, order, rx, ready)));
                    }
                }
            }
        },
    );
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(stream))
        .into_response())
}
