//! The HTTP side of nodes joining the fleet, with the API's errors (Kubernetes `Status`
//! objects): issuing node and viewer credentials (admin), join tokens (admin), the CA
//! certificate (public: the token carries its hash) and the join itself (the token is the
//! credential). The decisions live in `nodes::credentials` and `nodes::join`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use flotilla_shared::wire::topics::Topics;

use super::{authorized, ApiError, ApiState};
use crate::nodes::credentials::{issue, issue_viewer};
use crate::nodes::join::{self, JoinError};

/// What the node endpoints need.
pub struct NodesState {
    pub api: Arc<ApiState>,
    /// The broker URL agents should use.
    pub broker: String,
    pub topics: Topics,
    /// The hub's CA certificate (PEM file bytes), when it serves HTTPS with `--tls-ca`.
    pub ca_pem: Option<Vec<u8>>,
}

fn admin(st: &NodesState, headers: &HeaderMap) -> Result<(), ApiError> {
    if authorized(&st.api, headers) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

fn created(body: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `POST /flotilla/v1/nodes/{name}/credentials` (admin): the agent's configuration.
pub async fn credentials(
    State(st): State<Arc<NodesState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let cfg = issue(&st.api.store, &name, &st.broker, &st.topics).await.map_err(ApiError::bad_request)?;
    Ok(created(cfg))
}

/// `POST /flotilla/v1/viewers/{name}/credentials` (admin): a dashboard user.
pub async fn viewer_credentials(
    State(st): State<Arc<NodesState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let v =
        issue_viewer(&st.api.store, &name, &st.broker, &st.topics).await.map_err(ApiError::bad_request)?;
    Ok(created(v))
}

impl From<JoinError> for ApiError {
    fn from(e: JoinError) -> Self {
        let code = match &e {
            JoinError::BadTtl | JoinError::NoNode | JoinError::Refused(_) => StatusCode::BAD_REQUEST,
            JoinError::Invalid => StatusCode::UNAUTHORIZED,
            JoinError::Joined(_) => StatusCode::CONFLICT,
            JoinError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let reason = match code {
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::CONFLICT => "AlreadyExists",
            _ => "InternalError",
        };
        ApiError::new(code, reason, e.to_string())
    }
}

/// `POST /flotilla/v1/tokens` (admin): `{"ttlSeconds": N}` → `{"token", "expires"}`.
pub async fn create_token(
    State(st): State<Arc<NodesState>>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let ttl = body.as_ref().and_then(|b| b["ttlSeconds"].as_u64()).unwrap_or(24 * 3600);
    let (token, expires) = join::create(&st.api.store, st.ca_pem.as_deref(), ttl).await?;
    Ok(created(json!({"token": token, "expires": expires})))
}

/// `GET /flotilla/v1/cacerts` (no authentication: the token's hash makes it trustworthy).
pub async fn cacerts(State(st): State<Arc<NodesState>>) -> Result<Response, ApiError> {
    match &st.ca_pem {
        Some(pem) => {
            Ok(([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], pem.clone()).into_response())
        }
        None => Err(ApiError::not_found("this hub serves plain HTTP and has no CA certificate")),
    }
}

/// `POST /flotilla/v1/join`: `{"token", "node"}` → the agent's configuration.
pub async fn join(State(st): State<Arc<NodesState>>, Json(body): Json<Value>) -> Result<Response, ApiError> {
    let (token, node) = (body["token"].as_str(), body["node"].as_str());
    let cfg = join::join(&st.api.store, &st.broker, &st.topics, st.ca_pem.as_deref(), token, node).await?;
    Ok(created(cfg))
}
