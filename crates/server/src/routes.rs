//! The REST API. Every refusal is answered with `{"code","error"}`, counted by reason in
//! `/metrics`, and written to the audit log with who asked and why it was refused.
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use evergreen_api::{
    CertificateBundle, CertificateSummary, EnrollRequest, InventoryPage, RenewalRequest,
    RevocationRequest, Role, TokenRequest, TokenResponse, decode_pem, encode_pem,
};
use evergreen_pki::certificate::Fingerprint;
use evergreen_pki::crl::RevocationReason;
use evergreen_pki::policy::{CsrPolicy, SanRule, SubjectRule};
use evergreen_pki::token::{JoinToken, random_string};
use evergreen_pki::{CertificateRequest, Duration, IssuedCertificate, Profile, pem};
use evergreen_store::{CertificateRecord, InventoryQuery, RevokeOutcome, TokenRecord, TokenUse};
use serde::Deserialize;

use crate::auth::{Caller, authenticate, peer_actor, rfc3339};
use crate::error::{ApiError, JsonBody};
use crate::state::{AppState, CLIENT_CA, Issuance, ROLE_CAS};
use crate::tls::Peer;

/// The largest request body accepted: a CSR is a few KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

type AppStateRef = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/cacerts", get(cacerts))
        .route("/v1/enroll", post(enroll))
        .route("/v1/applications/certificates/renewals", post(renew))
        .route(
            "/v1/applications/certificates/revocations",
            post(revoke_own),
        )
        .route("/v1/certificates/revocations", post(revoke))
        .route("/v1/certificates", get(inventory))
        .route("/v1/crl/{ca}", get(crl))
        .route("/v1/ca/rotate", put(crate::rotation::rotate_ca))
        .route("/v1/keys/service-account", get(crate::rotation::jwks))
        .route(
            "/v1/keys/service-account/rotate",
            post(crate::rotation::rotate_service_keys),
        )
        .route("/v1/tokens", post(create_token))
        .route(
            "/v1/cluster/certificates",
            get(crate::named::list)
                .post(crate::named::create)
                .put(crate::named::update_certs),
        )
        .route(
            "/v1/cluster/update_cert",
            axum::routing::put(crate::named::update_cert),
        )
        .route(
            "/v1/cluster/certificates/rotate",
            post(crate::named::rotate),
        )
        .route(
            "/v1/cluster/certificates/{name}/label",
            axum::routing::put(crate::named::label),
        )
        .route("/v1/nodes/{node}/bundle", post(crate::named::node_bundle))
        .route("/v1/agent/watch", get(crate::agent::watch))
        .route("/v1/agent/issue", post(crate::agent::issue))
        .route("/v1/agent/status", post(crate::agent::status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::observe::metrics))
        .route("/v1/openapi.json", get(crate::observe::openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Counts and audits a refusal, and returns the error to answer with.
pub(crate) async fn refuse(
    state: &AppState,
    actor: &str,
    action: &str,
    target: &str,
    reason: &'static str,
    error: ApiError,
) -> ApiError {
    state.metrics.refuse(reason);
    tracing::info!(%actor, %action, %target, reason, error = %error.message, "refused");
    if let Err(audit_error) = state
        .audit(actor, action, target, Err(&error.message))
        .await
    {
        return audit_error;
    }
    error
}

/// Authenticates the peer and checks its role; a failure is refused and audited.
pub(crate) async fn caller(
    state: &AppState,
    peer: &Peer,
    action: &str,
    roles: &[Role],
) -> Result<Caller, ApiError> {
    let caller = match authenticate(state, peer).await {
        Ok(caller) => caller,
        Err((reason, error)) => {
            return Err(refuse(state, &peer_actor(peer), action, "-", reason, error).await);
        }
    };
    if let Err(error) = caller.require(roles) {
        return Err(refuse(state, &caller.actor(), action, "-", "wrong_role", error).await);
    }
    Ok(caller)
}

pub(crate) fn json_body<T>(body: Result<JsonBody<T>, ApiError>) -> Result<T, ApiError> {
    body.map(|JsonBody(v)| v)
}

/// The request body, or the refusal (counted and audited) of a body that cannot be read.
pub(crate) async fn body_or_refuse<T>(
    state: &AppState,
    actor: &str,
    action: &str,
    target: &str,
    body: Result<JsonBody<T>, ApiError>,
) -> Result<T, ApiError> {
    match body {
        Ok(JsonBody(value)) => Ok(value),
        Err(e) => Err(refuse(state, actor, action, target, "bad_request", e).await),
    }
}

/// The CSR in a request: base64 of PEM.
fn read_csr(b64: &str) -> Result<CertificateRequest, ApiError> {
    let pem = decode_pem(b64)
        .map_err(|e| ApiError::bad_request(format!("csr is {e}; send base64 of the PEM CSR")))?;
    CertificateRequest::from_pem("csr", &pem).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The Kyma answer: the certificate with its chain, alone, and the CA chain.
fn bundle(
    state: &AppState,
    issued: &IssuedCertificate,
    ca: &str,
) -> Result<CertificateBundle, ApiError> {
    let cluster = state.cluster.load();
    let ca = cluster
        .ca(ca)
        .ok_or_else(|| ApiError::internal(format!("no CA {ca}")))?;
    let leaf = pem::encode("CERTIFICATE", &issued.der);
    let chain = ca.bundle_pem();
    Ok(CertificateBundle {
        crt: encode_pem(&format!("{leaf}{chain}")),
        client_crt: encode_pem(&leaf),
        ca_crt: encode_pem(&chain),
    })
}

async fn cacerts(State(state): AppStateRef) -> Response {
    let pem = pem::encode_certificates(&state.cluster.load().trust_bundle());
    ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()
}

async fn enroll(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    body: Result<JsonBody<EnrollRequest>, ApiError>,
) -> Result<(StatusCode, Json<CertificateBundle>), ApiError> {
    let actor = peer_actor(&peer);
    let request = body_or_refuse(&state, &actor, "enroll", "-", body).await?;
    let token: JoinToken = match request.token.parse() {
        Ok(t) => t,
        Err(e) => {
            let e = ApiError::unauthorized(format!("join token is malformed: {e}"));
            return Err(refuse(&state, &actor, "enroll", "-", "bad_token", e).await);
        }
    };
    let actor = format!("token:{}", token.id());
    let root = Fingerprint::of(&state.cluster.load().root);
    if token.root_hash() != root {
        let e = ApiError::unauthorized(format!(
            "this join token is for another cluster: it pins root CA sha256:{}, this server's root CA is sha256:{root}",
            token.root_hash()
        ));
        return Err(refuse(&state, &actor, "enroll", "-", "bad_token", e).await);
    }
    let now = state.now();
    let secret_hash = Fingerprint::of(token.secret().as_bytes()).to_string();
    let record = match state
        .store
        .use_token(token.id(), &secret_hash, now.unix_timestamp())
        .await?
    {
        TokenUse::Accepted(record) => record,
        refused => {
            let message = match refused {
                TokenUse::Unknown => {
                    format!("join token {} is not known to this server", token.id())
                }
                TokenUse::WrongSecret => format!("join token {} has the wrong secret", token.id()),
                TokenUse::Expired { expires_at } => format!(
                    "join token {} expired at {}; create a new one with 'evergreen token create'",
                    token.id(),
                    rfc3339(expires_at)
                ),
                TokenUse::Accepted(_) => unreachable!("handled above"),
            };
            return Err(refuse(
                &state,
                &actor,
                "enroll",
                "-",
                "bad_token",
                ApiError::unauthorized(message),
            )
            .await);
        }
    };
    let role = match Role::parse(&record.role) {
        Some(role @ (Role::Node | Role::App)) => role,
        _ => {
            return Err(ApiError::internal(format!(
                "token {} has role {}",
                record.id, record.role
            )));
        }
    };
    let csr = match read_csr(&request.csr) {
        Ok(csr) => csr,
        Err(e) => return Err(refuse(&state, &actor, "enroll", "-", "bad_csr", e).await),
    };
    let policy = CsrPolicy {
        profile: Profile::Client,
        validity: validity(&state, role),
        subject: SubjectRule::AsRequested,
        subject_alt_names: SanRule::Replace(Vec::new()),
    };
    let issue = match policy.decide(&csr) {
        Ok(issue) => issue,
        Err(e) => {
            let target = csr.subject().to_string();
            return Err(refuse(
                &state,
                &actor,
                "enroll",
                &target,
                "policy",
                ApiError::bad_request(e.to_string()),
            )
            .await);
        }
    };
    let how = Issuance {
        ca: CLIENT_CA,
        role,
        owner: actor.clone(),
        renewed_from: None,
        actor: actor.clone(),
        action: "enroll",
    };
    let (issued, _) = state.issue(&issue, how).await?;
    state.metrics.enrolled.fetch_add(1, Ordering::Relaxed);
    Ok((
        StatusCode::CREATED,
        Json(bundle(&state, &issued, CLIENT_CA)?),
    ))
}

fn validity(state: &AppState, role: Role) -> Duration {
    match role {
        Role::App => state.settings.app_validity,
        _ => state.settings.node_validity,
    }
}

/// Kyma's renewal: the caller proves who it is with its current certificate and gets a
/// new one for exactly the same subject and at most the same SANs.
async fn renew(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    body: Result<JsonBody<RenewalRequest>, ApiError>,
) -> Result<(StatusCode, Json<CertificateBundle>), ApiError> {
    let caller = caller(
        &state,
        &peer,
        "renew",
        &[Role::Node, Role::App, Role::Admin],
    )
    .await?;
    let actor = caller.actor();
    let target = caller.record.subject.clone();
    let request = body_or_refuse(&state, &actor, "renew", &target, body).await?;
    let csr = match read_csr(&request.csr) {
        Ok(csr) => csr,
        Err(e) => return Err(refuse(&state, &actor, "renew", &target, "bad_csr", e).await),
    };
    let policy = CsrPolicy {
        profile: Profile::Client,
        validity: validity(&state, caller.role),
        subject: SubjectRule::Exactly(caller.info.subject.clone()),
        subject_alt_names: SanRule::AtMost(caller.info.subject_alt_names.clone()),
    };
    let issue = match policy.decide(&csr) {
        Ok(issue) => issue,
        Err(e) => {
            let e = ApiError::forbidden(e.to_string());
            return Err(refuse(&state, &actor, "renew", &target, "policy", e).await);
        }
    };
    let how = Issuance {
        ca: CLIENT_CA,
        role: caller.role,
        owner: caller.record.owner.clone(),
        renewed_from: Some(caller.record.serial.clone()),
        actor: actor.clone(),
        action: "renew",
    };
    let (issued, _) = state.issue(&issue, how).await?;
    state.metrics.renewed.fetch_add(1, Ordering::Relaxed);
    Ok((
        StatusCode::CREATED,
        Json(bundle(&state, &issued, CLIENT_CA)?),
    ))
}

fn summary(record: &CertificateRecord, now: i64) -> CertificateSummary {
    CertificateSummary {
        serial: record.serial.clone(),
        sha256: record.sha256.clone(),
        subject: record.subject.clone(),
        sans: record.sans.clone(),
        profile: record.profile.clone(),
        role: record.role.clone(),
        issuer: record.issuer.clone(),
        owner: record.owner.clone(),
        not_before: rfc3339(record.not_before),
        not_after: rfc3339(record.not_after),
        status: record.status(now).to_owned(),
        revoked_at: record.revoked_at.map(rfc3339),
        renewed_from: record.renewed_from.clone(),
    }
}

/// Revokes and publishes new CRLs, so the next handshake with that certificate fails.
async fn revoke_and_publish(
    state: &AppState,
    serial: &str,
    reason: RevocationReason,
) -> Result<RevokeOutcome, ApiError> {
    let outcome = state
        .store
        .revoke(serial, state.now().unix_timestamp(), reason.name())
        .await?;
    if let RevokeOutcome::Revoked(_) = outcome {
        state.metrics.revoked.fetch_add(1, Ordering::Relaxed);
        state.publish_crls().await.map_err(ApiError::internal)?;
    }
    Ok(outcome)
}

/// Kyma's revocation: the caller revokes its own certificate.
async fn revoke_own(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
) -> Result<(StatusCode, Json<CertificateSummary>), ApiError> {
    let caller = caller(
        &state,
        &peer,
        "revoke",
        &[Role::Node, Role::App, Role::Admin],
    )
    .await?;
    let outcome = revoke_and_publish(
        &state,
        &caller.record.serial,
        RevocationReason::CessationOfOperation,
    )
    .await?;
    let RevokeOutcome::Revoked(record) = outcome else {
        return Err(ApiError::internal(
            "an authenticated certificate was not revocable",
        ));
    };
    state
        .audit(
            &caller.actor(),
            "revoke",
            &record.subject,
            Ok(&format!(
                "revoked its own certificate serial {}",
                record.serial
            )),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(summary(&record, state.now().unix_timestamp())),
    ))
}

/// Normalises a serial as people write it (`0x…`, colons, either case) to the
/// inventory's form.
fn normalize_serial(serial: &str) -> Option<String> {
    let s = serial
        .trim()
        .trim_start_matches("0x")
        .replace(':', "")
        .to_ascii_lowercase();
    let s = s.trim_start_matches('0');
    let s = if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_owned()
    };
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

async fn revoke(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    body: Result<JsonBody<RevocationRequest>, ApiError>,
) -> Result<(StatusCode, Json<CertificateSummary>), ApiError> {
    let caller = caller(&state, &peer, "revoke", &[Role::Admin]).await?;
    let actor = caller.actor();
    let fail = |status: StatusCode, reason: &'static str, message: String| {
        let state = state.clone();
        let actor = actor.clone();
        async move {
            refuse(
                &state,
                &actor,
                "revoke",
                "-",
                reason,
                ApiError::new(status, message),
            )
            .await
        }
    };
    let request = match json_body(body) {
        Ok(r) => r,
        Err(e) => return Err(fail(e.status, "bad_request", e.message).await),
    };
    let reason: RevocationReason = match request.reason.as_deref().map(str::parse).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => return Err(fail(StatusCode::BAD_REQUEST, "bad_request", e).await),
    };
    let record = match (&request.hash, &request.serial) {
        (Some(hash), None) => {
            let Some(fp) = Fingerprint::from_hex(hash) else {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("hash {hash:?} is not a SHA-256 (64 hex digits)"),
                )
                .await);
            };
            state.store.certificate_by_sha256(&fp.to_string()).await?
        }
        (None, Some(serial)) => {
            let Some(serial) = normalize_serial(serial) else {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("serial {serial:?} is not hex"),
                )
                .await);
            };
            state.store.certificate_by_serial(&serial).await?
        }
        _ => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give exactly one of \"hash\" (SHA-256 of the certificate) or \"serial\"".into(),
            )
            .await);
        }
    };
    let Some(record) = record else {
        let what = request.hash.or(request.serial).unwrap_or_default();
        return Err(fail(
            StatusCode::NOT_FOUND,
            "unknown_certificate",
            format!("no certificate {what} in the inventory"),
        )
        .await);
    };
    match revoke_and_publish(&state, &record.serial, reason).await? {
        RevokeOutcome::Revoked(record) => {
            let detail = format!("revoked serial {} ({reason})", record.serial);
            state
                .audit(&actor, "revoke", &record.subject, Ok(&detail))
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(summary(&record, state.now().unix_timestamp())),
            ))
        }
        RevokeOutcome::AlreadyRevoked(record) => {
            let at = record.revoked_at.map(rfc3339).unwrap_or_default();
            Err(fail(
                StatusCode::CONFLICT,
                "already_revoked",
                format!(
                    "certificate {} (serial {}) was already revoked at {at}",
                    record.subject, record.serial
                ),
            )
            .await)
        }
        RevokeOutcome::NotFound => Err(fail(
            StatusCode::NOT_FOUND,
            "unknown_certificate",
            format!("no certificate {} in the inventory", record.serial),
        )
        .await),
    }
}

async fn crl(State(state): AppStateRef, Path(ca): Path<String>) -> Result<Response, ApiError> {
    let crls = state.crls.load();
    let der = crls.get(&ca).ok_or_else(|| {
        ApiError::not_found(format!(
            "no CA named {ca:?}; CRLs are published for {}",
            ROLE_CAS.join(", ")
        ))
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/pkix-crl")],
        der.to_vec(),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct InventoryParams {
    expiring_within: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `30d`, `12h`, `90m`, `45s`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = number.parse().ok()?;
    Some(match unit {
        "d" => Duration::days(n),
        "h" => Duration::hours(n),
        "m" => Duration::minutes(n),
        "s" => Duration::seconds(n),
        _ => return None,
    })
}

async fn inventory(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    params: Result<Query<InventoryParams>, QueryRejection>,
) -> Result<Json<InventoryPage>, ApiError> {
    caller(&state, &peer, "inventory", &[Role::Admin]).await?;
    let Query(params) = params?;
    let now = state.now().unix_timestamp();
    let not_after_before = match params.expiring_within.as_deref().map(parse_duration) {
        None => None,
        Some(Some(d)) => Some(now + d.whole_seconds()),
        Some(None) => {
            return Err(ApiError::bad_request(
                "expiring_within must be a duration such as 30d, 12h or 3600",
            ));
        }
    };
    if let Some(status) = params.status.as_deref()
        && !["active", "expired", "revoked"].contains(&status)
    {
        return Err(ApiError::bad_request(format!(
            "unknown status {status:?}; use active, expired or revoked"
        )));
    }
    let after =
        match params.cursor.as_deref() {
            None => None,
            Some(cursor) => {
                let parsed = cursor
                    .split_once(':')
                    .and_then(|(t, s)| Some((t.parse().ok()?, s.to_owned())));
                Some(parsed.ok_or_else(|| {
                    ApiError::bad_request("cursor is not one this server returned")
                })?)
            }
        };
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let records = state
        .store
        .list_certificates(&InventoryQuery {
            not_after_before,
            status: params.status,
            now,
            after,
            limit,
        })
        .await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| {
            records
                .last()
                .map(|r| format!("{}:{}", r.not_after, r.serial))
        })
        .flatten();
    Ok(Json(InventoryPage {
        certificates: records.iter().map(|r| summary(r, now)).collect(),
        next_cursor,
    }))
}

async fn create_token(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    body: Result<JsonBody<TokenRequest>, ApiError>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let caller = caller(&state, &peer, "token.create", &[Role::Admin]).await?;
    let actor = caller.actor();
    let request = body_or_refuse(&state, &actor, "token.create", "-", body).await?;
    if !matches!(request.role, Role::Node | Role::App) {
        let message = format!("join tokens are for node or app, not {}", request.role);
        let e = ApiError::bad_request(message);
        return Err(refuse(&state, &actor, "token.create", "-", "bad_request", e).await);
    }
    let now = state.now();
    let id = random_string(6).map_err(ApiError::internal)?;
    let secret = random_string(16).map_err(ApiError::internal)?;
    let expires_at = request.ttl_seconds.map(|s| {
        now.unix_timestamp()
            .saturating_add(i64::try_from(s).unwrap_or(i64::MAX))
    });
    state
        .store
        .insert_token(&TokenRecord {
            id: id.clone(),
            secret_sha256: Fingerprint::of(secret.as_bytes()).to_string(),
            role: request.role.as_str().to_owned(),
            created_at: now.unix_timestamp(),
            expires_at,
            uses: 0,
            description: request.description.clone(),
        })
        .await?;
    let token = JoinToken::new(
        Fingerprint::of(&state.cluster.load().root),
        id.clone(),
        secret,
    )
    .map_err(ApiError::internal)?;
    let detail = format!(
        "{} token, expires {}",
        request.role,
        expires_at.map_or("never".into(), rfc3339)
    );
    state
        .audit(&caller.actor(), "token.create", &id, Ok(&detail))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token: token.to_string(),
            id,
            role: request.role,
            expires_at: expires_at.map(rfc3339),
        }),
    ))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): AppStateRef) -> Result<&'static str, ApiError> {
    state.store.is_initialized().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("datastore unavailable: {e}"),
        )
    })?;
    Ok("ready\n")
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {}; see /v1/openapi.json",
        uri.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_and_durations_as_people_write_them() {
        assert_eq!(normalize_serial("0x4A:0b"), Some("4a0b".into()));
        assert_eq!(normalize_serial("00ab"), Some("ab".into()));
        assert_eq!(normalize_serial("abc"), Some("0abc".into()));
        assert_eq!(normalize_serial("zz"), None);
        assert_eq!(parse_duration("30d"), Some(Duration::days(30)));
        assert_eq!(parse_duration("3600"), Some(Duration::hours(1)));
        assert_eq!(parse_duration("3w"), None);
    }
}
