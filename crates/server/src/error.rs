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

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $label:literal,)+) => {
        /// Why a request or a connection was refused: the `reason` label of
        /// `evergreen_refused_total` and of the audit row. One closed list, so the metric's
        /// labels are known before anything is refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $variant,)+
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $label,)+
                }
            }
        }
    };
}

reasons! {
    /// The admin credential would revoke itself.
    AdminLockout = "admin_lockout",
    /// The certificate is revoked already.
    AlreadyRevoked = "already_revoked",
    /// An uploaded certificate or key cannot be used.
    BadCertificate = "bad_certificate",
    /// The client certificate cannot be read.
    BadClientCertificate = "bad_client_certificate",
    /// The CSR is malformed, or its signature or key is refused.
    BadCsr = "bad_csr",
    /// Any other malformed request.
    BadRequest = "bad_request",
    /// A `secret` directory cannot be read or holds unusable files.
    BadSecret = "bad_secret",
    /// The join token is malformed, unknown, used up, expired or for another cluster.
    BadToken = "bad_token",
    /// The client certificate does not chain to a client CA of this cluster.
    Chain = "chain",
    /// A change failed part-way; nothing was changed.
    ChangeFailed = "change_failed",
    /// Any other conflict with the cluster's state.
    Conflict = "conflict",
    /// The name is taken.
    Exists = "exists",
    /// A certificate is past its not-after.
    Expired = "expired",
    /// The caller's role may not do this.
    Forbidden = "forbidden",
    /// The client certificate was not issued by this cluster.
    ForeignCertificate = "foreign_certificate",
    /// The TLS handshake failed.
    HandshakeFailed = "handshake_failed",
    /// The TLS handshake did not finish in time.
    HandshakeTimeout = "handshake_timeout",
    /// Staged CA material fails the rotation's integrity checks.
    Integrity = "integrity",
    /// A server error.
    Internal = "internal",
    /// A key type that is not offered.
    KeyType = "key_type",
    /// A body, query or file that cannot be parsed.
    Malformed = "malformed",
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed",
    /// A key that is needed is missing.
    MissingKey = "missing_key",
    /// A name the certificate may not carry.
    NameNotAllowed = "name_not_allowed",
    /// A node name already enrolled.
    NameTaken = "name_taken",
    /// Names that do not read as DNS names or addresses.
    Names = "names",
    /// No address is known or allowed for the node.
    NoAddress = "no_address",
    /// A certificate set without the chain its trust needs.
    NoChain = "no_chain",
    /// No client certificate was presented.
    NoClientCertificate = "no_client_certificate",
    /// The certificate is not for TLS client authentication.
    NotAClientCertificate = "not_a_client_certificate",
    /// The named certificate is not assigned to this node.
    NotAssigned = "not_assigned",
    /// No such thing.
    NotFound = "not_found",
    /// Only a selfsigned certificate can be rotated.
    NotSelfsigned = "not_selfsigned",
    /// A certificate before its not-before.
    NotYetValid = "not_yet_valid",
    /// The request breaks the issuance policy.
    Policy = "policy",
    /// Any other refusal.
    Refused = "refused",
    /// A subject reserved for the admin or the server.
    ReservedSubject = "reserved_subject",
    /// A CA or key that cannot be retired.
    Retire = "retire",
    /// A revoked certificate.
    Revoked = "revoked",
    /// The request body did not arrive in time.
    Timeout = "timeout",
    /// The request body is too large.
    TooLarge = "too_large",
    /// The server holds as many connections as it may.
    TooManyConnections = "too_many_connections",
    /// One source holds as many unproven connections as it may.
    TooManyFromSource = "too_many_from_source",
    /// Any other failed authentication.
    Unauthorized = "unauthorized",
    /// The change would change nothing.
    Unchanged = "unchanged",
    /// No certificate of that name, hash or serial.
    UnknownCertificate = "unknown_certificate",
    /// No node of that name.
    UnknownNode = "unknown_node",
    /// A CA that cannot be used.
    UnusableCa = "unusable_ca",
    /// A token or credential of another role.
    WrongRole = "wrong_role",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// A short, stable label for metrics and the audit log (`bad_token`, `expired`, …).
    pub reason: Reason,
    /// What the refused request was about (a subject, a certificate name), for the audit log.
    pub target: Option<String>,
}

/// What a refusal's response carries to [`crate::routes::audit_refusals`].
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: Reason,
    pub target: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let reason = match status {
            StatusCode::BAD_REQUEST => Reason::BadRequest,
            StatusCode::UNAUTHORIZED => Reason::Unauthorized,
            StatusCode::FORBIDDEN => Reason::Forbidden,
            StatusCode::NOT_FOUND => Reason::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Reason::MethodNotAllowed,
            StatusCode::CONFLICT => Reason::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => Reason::TooLarge,
            StatusCode::REQUEST_TIMEOUT => Reason::Timeout,
            s if s.is_server_error() => Reason::Internal,
            _ => Reason::Refused,
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
    pub fn reason(mut self, reason: Reason) -> Self {
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
