//! Watches: a stream of newline-delimited JSON events (`{"type":"ADDED","object":{...}}`), as
//! Kubernetes sends them. Without a resourceVersion the stream starts with the current objects
//! as ADDED; with one it replays the change log after it (410 Expired when the log no longer
//! reaches back), then follows live changes. A watcher that falls too far behind gets an ERROR
//! event with code 410 and must list again.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use flotilla_shared::api::Kind;
use flotilla_shared::selector::LabelSelector;

use super::ApiError;
use crate::store::{labels_of, Change, ChangeOp, Store};

fn matches(kind: Kind, namespace: &Option<String>, selector: &LabelSelector, c: &Change) -> bool {
    c.kind == kind
        && namespace.as_ref().is_none_or(|ns| *ns == c.namespace)
        && (selector.is_empty() || selector.matches(&labels_of(&c.object)))
}

fn line(op: &str, object: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&json!({"type": op, "object": object})).unwrap_or_default();
    b.push(b'\n');
    b
}

pub async fn watch(
    store: Store,
    kind: Kind,
    namespace: Option<String>,
    selector: LabelSelector,
    from: Option<u64>,
) -> Result<Response, ApiError> {
    // Subscribe before reading the backlog so nothing falls between them; duplicates are
    // skipped by revision.
    let mut live = store.subscribe();
    let mut initial: Vec<Vec<u8>> = Vec::new();
    let mut last = match from {
        None | Some(0) => {
            let (items, rev) = store.list(kind, namespace.as_deref(), &selector).await?;
            initial.extend(items.iter().map(|o| line(ChangeOp::Added.as_str(), o)));
            rev
        }
        Some(rev) => {
            let changes = store.changes_since(rev).await?;
            // The backlog ends at its last change (of any kind); later ones come live.
            let end = changes.last().map_or(rev, |c| c.rev);
            for c in changes.iter().filter(|c| matches(kind, &namespace, &selector, c)) {
                initial.push(line(c.op.as_str(), &c.object));
            }
            end
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    tokio::spawn(async move {
        for l in initial {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(c) => {
                    if c.rev <= last {
                        continue;
                    }
                    last = c.rev;
                    if matches(kind, &namespace, &selector, &c)
                        && tx.send(Ok(line(c.op.as_str(), &c.object))).await.is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let status = ApiError::new(
                        StatusCode::GONE,
                        "Expired",
                        "the watch fell too far behind; list again and watch from the new resourceVersion",
                    );
                    let _ = tx.send(Ok(line("ERROR", &status.to_json()))).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(([(header::CONTENT_TYPE, "application/json; stream=watch")], Body::from_stream(stream))
        .into_response())
}
