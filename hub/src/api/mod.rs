//! The HTTP/JSON API: Kubernetes-like paths and verbs over the store, bearer-token auth,
//! validation with the same rules as `flotilla-hub validate`, optimistic concurrency, apply,
//! watches, and errors as Kubernetes `Status` objects.

pub mod error;
pub mod logs;
pub mod nodes;
pub mod paths;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use flotilla_shared::api::{Kind, Object};
use flotilla_shared::manifest::{parse_object, FieldError};
use flotilla_shared::selector::LabelSelector;

use crate::store::{Mode, Outcome, Store, WriteOp, WriteResult};
pub use error::ApiError;
use paths::Target;

/// Request bodies larger than this are refused with 413.
pub const DEFAULT_BODY_LIMIT: usize = 3 << 20;
/// How much of a too-large body is read and discarded before the connection is cut.
const MAX_DRAIN: usize = 64 << 20;

pub use crate::components::{Component, ComponentProbe};

pub struct ApiState {
    pub store: Store,
    pub tokens: Vec<String>,
    pub body_limit: usize,
    pub components: ComponentProbe,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .fallback(api)
        .with_state(state)
}

async fn readyz(State(st): State<Arc<ApiState>>) -> Response {
    match st.store.health().await {
        Ok(()) => "ok".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")).into_response(),
    }
}

async fn version() -> Json<Value> {
    Json(json!({
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

/// Constant-time comparison, so response timing does not reveal how much of a token matched.
fn token_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn authorized(st: &ApiState, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    st.tokens.iter().any(|t| token_eq(t, given.trim()))
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex =
                    std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn api(
    State(st): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&st, &headers) {
        return ApiError::unauthorized().into_response();
    }
    match handle(&st, method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    st: &Arc<ApiState>,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = paths::parse(uri.path()).map_err(|paths::PathError::NotFound(m)| ApiError::not_found(m))?;
    let q = query_map(uri);
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => return Err(ApiError::bad_request(format!("dryRun must be \"All\" (got {other:?})"))),
    };
    let selector = match q.get("labelSelector") {
        Some(s) if !s.is_empty() => {
            LabelSelector::parse(s).map_err(|e| ApiError::bad_request(format!("labelSelector: {e}")))?
        }
        _ => LabelSelector::default(),
    };
    match (method, target) {
        (Method::GET, Target::Collection { kind, namespace }) => {
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                let from = match q.get("resourceVersion").filter(|v| !v.is_empty()) {
                    None => None,
                    Some(v) => Some(v.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(format!("resourceVersion must be a number (got {v:?})"))
                    })?),
                };
                return watch::watch(st.store.clone(), kind, namespace, selector, from).await;
            }
            let (items, rev) = st.store.list(kind, namespace.as_deref(), &selector).await?;
            Ok(Json(json!({
                "kind": format!("{}List", kind.info().name),
                "apiVersion": kind.info().api_version(),
                "metadata": {"resourceVersion": rev.to_string()},
                "items": items,
            }))
            .into_response())
        }
        (Method::POST, Target::Collection { kind, namespace }) => {
            let ns = namespace.unwrap_or_default();
            let raw = read_body(st, headers, body).await?;
            let obj = validated(kind, &ns, None, raw)?;
            let res = st.store.write(WriteOp::Put { kind, object: obj, mode: Mode::Create }, dry_run).await?;
            Ok(written(res))
        }
        (Method::GET, Target::Object { kind, namespace, name, status: _ }) => {
            match st.store.get(kind, &namespace, &name).await? {
                Some(v) => Ok(Json(v).into_response()),
                None => Err(crate::store::StoreError::NotFound { kind, name }.into()),
            }
        }
        (Method::PUT, Target::Object { kind, namespace, name, status }) => {
            let raw = read_body(st, headers, body).await?;
            let (obj, mode) = if status {
                (validated_status(kind, &namespace, &name, raw)?, Mode::Status)
            } else {
                (validated(kind, &namespace, Some(&name), raw)?, Mode::Update)
            };
            let res = st.store.write(WriteOp::Put { kind, object: obj, mode }, dry_run).await?;
            Ok(written(res))
        }
        (Method::PATCH, Target::Object { kind, namespace, name, status: false }) => {
            let raw = read_body(st, headers, body).await?;
            let obj = validated(kind, &namespace, Some(&name), raw)?;
            let res = st.store.write(WriteOp::Put { kind, object: obj, mode: Mode::Apply }, dry_run).await?;
            Ok(written(res))
        }
        (Method::DELETE, Target::Object { kind, namespace, name, status: false }) => {
            let res = st.store.write(WriteOp::Delete { kind, namespace, name }, dry_run).await?;
            Ok(written(res))
        }
        (Method::GET, Target::Events { namespace }) => {
            let fields: HashMap<&str, &str> = q
                .get("fieldSelector")
                .map(|f| f.split(',').filter_map(|p| p.split_once('=')).collect())
                .unwrap_or_default();
            let (Some(kind), Some(name)) =
                (fields.get("involvedObject.kind"), fields.get("involvedObject.name"))
            else {
                return Err(ApiError::bad_request(
                    "events are listed per object: fieldSelector=involvedObject.kind=K,involvedObject.name=N",
                ));
            };
            let events = st.store.events(&namespace, kind, name).await?;
            let items: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "metadata": {"namespace": e.namespace},
                        "involvedObject": {"kind": e.kind, "name": e.name, "namespace": e.namespace, "uid": e.uid},
                        "type": e.type_, "reason": e.reason, "message": e.message,
                        "source": {"component": e.source}, "count": e.count,
                        "firstTimestamp": e.first_time, "lastTimestamp": e.last_time,
                    })
                })
                .collect();
            Ok(Json(json!({"kind": "EventList", "apiVersion": "v1", "items": items})).into_response())
        }
        (Method::GET, Target::ComponentStatuses) => {
            let mut comps = vec![match st.store.health().await {
                Ok(()) => Component {
                    name: "store",
                    healthy: true,
                    message: format!("ok (revision {})", st.store.revision()),
                },
                Err(e) => Component { name: "store", healthy: false, message: e.to_string() },
            }];
            comps.extend((st.components)());
            let items: Vec<Value> = comps
                .iter()
                .map(|c| {
                    json!({"metadata": {"name": c.name}, "conditions": [{"type": "Healthy", "status": if c.healthy { "True" } else { "False" }, "message": c.message}]})
                })
                .collect();
            Ok(Json(json!({"kind": "ComponentStatusList", "apiVersion": "v1", "items": items}))
                .into_response())
        }
        (m, t) => {
            Err(ApiError::method_not_allowed(format!("{m} is not supported on {}", describe_target(&t))))
        }
    }
}

fn describe_target(t: &Target) -> String {
    match t {
        Target::Collection { kind, .. } => format!("the {} collection", kind.info().plural),
        Target::Object { kind, status: true, .. } => format!("the status of a {}", kind.info().name),
        Target::Object { kind, .. } => format!("a {}", kind.info().name),
        Target::Events { .. } => "events".into(),
        Target::ComponentStatuses => "componentstatuses".into(),
    }
}

/// The response to a write: 201 for a creation, 200 otherwise, with the outcome in a header.
fn written(res: WriteResult) -> Response {
    let code = if res.outcome == Outcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    let mut resp = (code, Json(res.object)).into_response();
    resp.headers_mut().insert("x-flotilla-outcome", HeaderValue::from_static(res.outcome.as_str()));
    resp
}

async fn read_body(st: &ApiState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    // Read up to the limit. Past it, keep reading (and discarding) up to a hard cap, so an
    // ordinary client that sent a too-large body gets its 413 instead of a broken pipe.
    let mut bytes: Vec<u8> = Vec::new();
    let mut over = false;
    let mut drained = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if over {
            drained += chunk.len();
            if drained > MAX_DRAIN {
                break;
            }
            continue;
        }
        bytes.extend_from_slice(&chunk);
        if bytes.len() > st.body_limit {
            over = true;
            bytes = Vec::new();
        }
    }
    if over {
        return Err(ApiError::too_large(st.body_limit));
    }
    let text =
        std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    let yaml = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("yaml"));
    let value = if yaml {
        match flotilla_shared::manifest::yaml::parse_document(text) {
            Ok(Some(p)) => p.value,
            Ok(None) => return Err(ApiError::bad_request("the request body is empty")),
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "the request body is not valid YAML: {} (line {}, column {})",
                    e.message, e.line, e.col
                )))
            }
        }
    } else {
        serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(value)
}

/// Validates a request body for `kind` at the path's namespace (and name, when the path has
/// one) and returns the canonical object to store.
fn validated(kind: Kind, namespace: &str, name: Option<&str>, raw: Value) -> Result<Value, ApiError> {
    let body_kind = raw.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    if body_kind != kind.info().name {
        return Err(ApiError::bad_request(format!(
            "the body's kind {body_kind:?} does not match the path, which is for {}",
            kind.info().name
        )));
    }
    let object = parse_object(raw).map_err(|(label, errors)| {
        ApiError::invalid(
            kind.info().name,
            label.as_deref().and_then(|l| l.split_once('/')).map_or("", |(_, n)| n),
            errors,
        )
    })?;
    let mut object = object;
    let meta = object.metadata_mut();
    if let Some(n) = name {
        if meta.name.as_deref() != Some(n) {
            return Err(ApiError::bad_request(format!(
                "metadata.name {:?} does not match the name in the path ({n:?})",
                meta.name.as_deref().unwrap_or_default()
            )));
        }
    }
    if kind.info().namespaced {
        match meta.namespace.as_deref() {
            None | Some("") => meta.namespace = Some(namespace.to_string()),
            Some(ns) if ns != namespace => {
                return Err(ApiError::bad_request(format!(
                    "metadata.namespace {ns:?} does not match the namespace in the path ({namespace:?})"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(object.to_value())
}

/// Validates a status update: the status must fit the kind's status type.
fn validated_status(kind: Kind, namespace: &str, name: &str, raw: Value) -> Result<Value, ApiError> {
    let status = raw.get("status").cloned().unwrap_or(Value::Null);
    let rv = raw.get("metadata").and_then(|m| m.get("resourceVersion")).cloned();
    let mut probe = validated(kind, namespace, Some(name), raw)?;
    probe["status"] = status;
    match Object::from_value(kind, probe) {
        Ok(o) => {
            let mut v = o.to_value();
            if let Some(rv) = rv {
                v["metadata"]["resourceVersion"] = rv;
            }
            Ok(v)
        }
        Err(e) => Err(ApiError::invalid(
            kind.info().name,
            name,
            vec![FieldError::new("status", format!("is not a valid {} status: {e}", kind.info().name))],
        )),
    }
}
