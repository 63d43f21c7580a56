//! API errors as Kubernetes `Status` objects: the HTTP code, a reason, a message, and for
//! invalid objects one cause per field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use flotilla_shared::manifest::FieldError;

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub causes: Vec<FieldError>,
    pub details: Option<(String, String)>,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), causes: Vec::new(), details: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>; the admin token is in the hub's data directory)",
        )
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body is larger than the {limit}-byte limit"),
        )
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }
    /// 422 with one cause per field error.
    pub fn invalid(kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let summary: Vec<String> = causes.iter().map(ToString::to_string).collect();
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: format!("{kind} {name:?} is invalid: {}", summary.join("; ")),
            causes,
            details: Some((kind.to_string(), name.to_string())),
        }
    }

    pub fn to_json(&self) -> Value {
        let causes: Vec<Value> = self
            .causes
            .iter()
            .map(|c| json!({"reason": "FieldValueInvalid", "field": c.path, "message": c.message}))
            .collect();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if !causes.is_empty() || self.details.is_some() {
            let (kind, name) = self.details.clone().unwrap_or_default();
            status["details"] = json!({"kind": kind, "name": name, "causes": causes});
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, axum::Json(self.to_json())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match &e {
            StoreError::NotFound { kind, name } => {
                let mut a = ApiError::not_found(msg);
                a.details = Some((kind.info().plural.to_string(), name.clone()));
                a
            }
            StoreError::NamespaceNotFound(_) => ApiError::not_found(msg),
            StoreError::AlreadyExists { .. } => ApiError::new(StatusCode::CONFLICT, "AlreadyExists", msg),
            StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "Conflict", msg),
            StoreError::Gone(_) => ApiError::new(StatusCode::GONE, "Expired", msg),
            StoreError::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", msg),
            _ => {
                tracing::error!(error = %e, "store error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", msg)
            }
        }
    }
}
