//! Errors as the API answers them: `{"code": <status>, "error": "<message>"}`, each with a
//! short, stable reason (for `/metrics` and the audit log) and what it was about.
//!
//! Refusals are counted and audited in one place, [`crate::routes::audit_refusals`], which
//! reads what a handler's error carries from the response; so are the answers a handler
//! never sees (an unknown route, a method the route does not take, a body too large).
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use evergreen_api::ErrorBody;
use serde::de::DeserializeOwned;

/// The largest request body accepted: a CSR is a few KiB, a staged CA directory a few dozen.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a client may take to send its request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// A short, stable label for metrics and the audit log (`bad_token`, `expired`, …).
    pub reason: &'static str,
    /// What the refused request was about (a subject, a certificate name), for the audit log.
    pub target: Option<String>,
}

/// What a refusal's response carries to [`crate::routes::audit_refusals`].
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: &'static str,
    pub target: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let reason = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            s if s.is_server_error() => "internal",
            _ => "refused",
        };
        // A message may quote what a client sent; an answer never grows with it.
        let message = message.into();
        let message = match crate::text::cut(&message, crate::text::MAX_DETAIL) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(cut) => cut,
        };
        ApiError {
            status,
            message,
            reason,
            target: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// An internal failure: logged in full, answered without details.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }

    /// The same error with another reason label.
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// The same error, saying what it was about.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refused = Refused {
            reason: self.reason,
            target: self.target,
            message: self.message.clone(),
        };
        let body = ErrorBody {
            code: self.status.as_u16(),
            error: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(refused);
        response
    }
}

impl From<evergreen_store::StoreError> for ApiError {
    fn from(e: evergreen_store::StoreError) -> Self {
        match e {
            evergreen_store::StoreError::Conflict(message) => ApiError::conflict(format!(
                "{message}; another server changed it at the same time, retry"
            )),
            other => ApiError::internal(other),
        }
    }
}

/// Reads a request body of at most [`BODY_LIMIT`] bytes within [`BODY_TIMEOUT`].
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let read = Bytes::from_request(req, state);
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(r)) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {BODY_LIMIT} bytes"),
        )),
        Ok(Err(r)) => Err(ApiError::new(
            r.status(),
            format!("cannot read the request body: {}", r.body_text()),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// A JSON object as the request body, read whatever the Content-Type says (the Kyma
/// procedure posts JSON with `curl -d`, which labels it as a form). Anything but one
/// object of the route's type — an array, a scalar, an unknown field — is refused; line
/// breaks the vendors' recipes leave in PEM and base64 fields are read as they mean
/// ([`evergreen_api::body`]).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: evergreen_api::RequestBody,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        evergreen_api::body::parse_object(&bytes)
            .map(JsonBody)
            .map_err(ApiError::bad_request)
    }
}

/// The body of a route that takes none: empty, or `{}`.
#[derive(Debug)]
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if text.is_empty() || text == "{}" {
            Ok(NoBody)
        } else {
            Err(ApiError::bad_request(
                "this endpoint takes no request body; send none",
            ))
        }
    }
}

/// A query string of type `T`, its errors answered as JSON.
#[derive(Debug)]
pub struct QueryOf<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryOf<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        evergreen_api::query::parse(parts.uri.query().unwrap_or_default())
            .map(QueryOf)
            .map_err(ApiError::bad_request)
    }
}
