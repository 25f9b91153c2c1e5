//! The REST API. Every refusal is answered with `{"code","error"}`, counted by reason in
//! `/metrics`, and written to the audit log with who asked and why it was refused — in one
//! place, [`audit_refusals`], whatever produced it (a handler, an extractor, the router).
use evergreen_api::query::InventoryParams;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use evergreen_api::{
    CertificateBundle, CertificateSummary, EnrollRequest, InventoryPage, NodeAddresses, NodeStatus,
    RenewalRequest, RevocationRequest, Status, TokenRequest, TokenResponse,
};
use evergreen_pki::certificate::Fingerprint;
use evergreen_pki::crl::RevocationReason;
use evergreen_pki::policy::{CsrPolicy, SanRule, SubjectRule};
use evergreen_pki::{DistinguishedName, Profile, SubjectAltName};
use evergreen_store::{CertificateRecord, InventoryQuery, NodeRecord, RevokeOutcome};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Admin, Caller, Holder, Peer, RequestContext, peer_actor};
use crate::cluster::{CLIENT_CA, ROLE_CAS};
use crate::error::{ApiError, BODY_LIMIT, JsonBody, NoBody, QueryOf, Reason, Refused};
use crate::state::{AppState, Issuance, Refusal};
use crate::text::rfc3339;

type AppStateRef = State<Arc<AppState>>;

/// Every route, each registered with its OpenAPI description: the router and
/// `/v1/openapi.json` are made from this one list.
pub fn api() -> OpenApiRouter<Arc<AppState>> {
    use crate::{agent, named, observe, openapi, rotation};
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(cacerts))
        .routes(routes!(enroll))
        .routes(routes!(renew))
        .routes(routes!(revoke_own))
        .routes(routes!(revoke))
        .routes(routes!(inventory))
        .routes(routes!(crl))
        .routes(routes!(rotation::rotate_ca))
        .routes(routes!(rotation::jwks))
        .routes(routes!(rotation::rotate_service_keys))
        .routes(routes!(create_token))
        .routes(routes!(named::list, named::create, named::update_certs))
        .routes(routes!(named::update_cert))
        .routes(routes!(named::rotate))
        .routes(routes!(named::label))
        .routes(routes!(named::set_type))
        .routes(routes!(named::delete))
        .routes(routes!(named::node_bundle))
        .routes(routes!(node_addresses))
        .routes(routes!(node_replace))
        .routes(routes!(agent::watch))
        .routes(routes!(agent::issue))
        .routes(routes!(agent::status))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(observe::metrics))
        .routes(routes!(observe::certificate_metrics))
        .routes(routes!(openapi))
}

/// The OpenAPI document, made once: by the first [`router`], or on first use.
static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();

/// The whole document, as the server serves it.
pub fn document() -> &'static OpenApi {
    DOCUMENT.get_or_init(|| finished(api().into_openapi()))
}

fn finished(mut document: OpenApi) -> OpenApi {
    crate::openapi::finish(&mut document);
    document
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "observe",
    operation_id = "openapi",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub async fn openapi() -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| {
        serde_json::to_string_pretty(document()).expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str())
}

pub fn router(state: Arc<AppState>) -> Router {
    let (router, document) = api().split_for_parts();
    // The same list made both; the document is not built a second time.
    let _ = DOCUMENT.set(finished(document));
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit_refusals,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The audit log's name for what a route does (`path` is the route's template, as in the
/// OpenAPI document); `None` for reads that are not audited.
pub fn action_of(method: &Method, path: &str) -> Option<&'static str> {
    Some(match (method.as_str(), path) {
        ("POST", "/v1/enroll") => "enroll",
        ("POST", "/v1/applications/certificates/renewals") => "renew",
        ("POST", "/v1/applications/certificates/revocations")
        | ("POST", "/v1/certificates/revocations") => "revoke",
        ("GET", "/v1/certificates") => "inventory",
        ("PUT", "/v1/ca/rotate") => "ca.rotate",
        ("POST", "/v1/keys/service-account/rotate") => "keys.rotate",
        ("POST", "/v1/tokens") => "token.create",
        ("GET", "/v1/cluster/certificates") => "certificates.list",
        ("POST", "/v1/cluster/certificates") => "certificate.create",
        ("PUT", "/v1/cluster/certificates") | ("PUT", "/v1/cluster/update_cert") => {
            "certificate.set"
        }
        ("POST", "/v1/cluster/certificates/rotate") => "certificate.rotate",
        ("PUT", "/v1/cluster/certificates/{name}/label") => "certificate.label",
        ("PUT", "/v1/cluster/certificates/{name}/type") => "certificate.type",
        ("DELETE", "/v1/cluster/certificates/{name}") => "certificate.delete",
        ("POST", "/v1/nodes/{node}/bundle") => "node.bundle",
        ("PUT", "/v1/nodes/{node}/addresses") => "node.allow",
        ("POST", "/v1/nodes/{node}/replace") => "node.replace",
        ("GET", "/v1/agent/watch") => "agent.watch",
        ("POST", "/v1/agent/issue") => "agent.issue",
        ("POST", "/v1/agent/status") => "agent.status",
        ("GET", "/v1/metrics/certificates") => "metrics.certificates",
        _ => return None,
    })
}

/// How much of a non-JSON error body is kept as the message.
const MAX_ERROR_BODY: usize = 4096;

/// Every 4xx answer leaves here as `{"code","error"}`, counted and audited: under the
/// caller's name once it authenticated (in full), else under its address (aggregated).
pub async fn audit_refusals(
    State(state): AppStateRef,
    mut request: Request,
    next: Next,
) -> Response {
    let context = RequestContext::default();
    request.extensions_mut().insert(context.clone());
    let peer = request.extensions().get::<Peer>().cloned();
    let method = request.method().clone();
    let uri_path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    if !response.status().is_client_error() {
        return response;
    }
    let (response, refused) = as_json_error(response).await;
    let action = route
        .as_deref()
        .and_then(|r| action_of(&method, r))
        .map_or_else(|| format!("http {method}"), str::to_owned);
    let target = refused
        .target
        .clone()
        .unwrap_or_else(|| crate::text::bounded(&uri_path, 128));
    let (actor, source) = match &peer {
        Some(peer) => (
            context
                .actor()
                .map_or_else(|| peer_actor(peer), str::to_owned),
            peer.remote.ip(),
        ),
        None => ("unknown".to_owned(), std::net::Ipv4Addr::UNSPECIFIED.into()),
    };
    state
        .record_refusal(Refusal {
            actor: &actor,
            source,
            authenticated: context.actor().is_some(),
            action: &action,
            target: &target,
            reason: refused.reason,
            message: &refused.message,
        })
        .await;
    response
}

/// A 4xx answer as `{"code","error"}` with what it refused: ours as they are, others (a
/// query string axum could not read, a body over the limit) with their text as message.
async fn as_json_error(response: Response) -> (Response, Refused) {
    if let Some(refused) = response.extensions().get::<Refused>().cloned() {
        return (response, refused);
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_owned()
    } else {
        text
    };
    let error = ApiError::new(parts.status, message);
    let refused = Refused {
        reason: error.reason,
        target: None,
        message: error.message.clone(),
    };
    let mut answer = error.into_response();
    for (name, value) in &parts.headers {
        if name == header::ALLOW || name == header::RETRY_AFTER {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    (answer, refused)
}

#[utoipa::path(
    get,
    path = "/cacerts",
    tag = "trust",
    operation_id = "cacerts",
    summary = "The trust bundle: root CA and role CAs (PEM)",
    responses((status = 200, description = "PEM certificates", content_type = "application/x-pem-file", body = String))
)]
async fn cacerts(State(state): AppStateRef) -> Response {
    let pem = evergreen_pki::pem::encode_certificates(&state.cluster.load().trust_bundle());
    ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()
}

#[utoipa::path(
    post,
    path = "/v1/enroll",
    tag = "kyma",
    operation_id = "enroll",
    summary = "Enroll: a client certificate for a CSR, with a join token",
    description = r#"The token says who may enroll (a node name or pattern, an app subject); the CSR gives the key and the subject."#,
    request_body = evergreen_api::EnrollRequest,
    responses((status = 201, description = "Issued", body = evergreen_api::CertificateBundle))
)]
async fn enroll(
    State(state): AppStateRef,
    JsonBody(request): JsonBody<EnrollRequest>,
) -> Result<(StatusCode, Json<CertificateBundle>), ApiError> {
    let bundle = crate::enrollment::enroll(&state, &request).await?;
    Ok((StatusCode::CREATED, Json(bundle)))
}

fn validity(state: &AppState, role: evergreen_api::Role) -> evergreen_pki::Duration {
    match role {
        evergreen_api::Role::App => state.settings.app_validity,
        _ => state.settings.node_validity,
    }
}

#[utoipa::path(
    post,
    path = "/v1/applications/certificates/renewals",
    tag = "kyma",
    operation_id = "renew",
    summary = "Renew the caller's certificate (Kyma compatible)",
    description = r#"Same subject, at most the same SANs as the certificate the caller connects with. `csr` is base64 of a PEM CSR; line breaks inside it are accepted."#,
    security(("mtls" = ["node", "app", "admin"])),
    request_body = evergreen_api::RenewalRequest,
    responses((status = 201, description = "Issued", body = evergreen_api::CertificateBundle))
)]
/// Kyma's renewal: the caller proves who it is with its current certificate and gets a
/// new one for exactly the same subject and at most the same SANs.
async fn renew(
    State(state): AppStateRef,
    caller: Caller<Holder>,
    JsonBody(request): JsonBody<RenewalRequest>,
) -> Result<(StatusCode, Json<CertificateBundle>), ApiError> {
    let target = caller.record.subject.clone();
    let csr = crate::enrollment::read_csr(&request.csr).map_err(|e| e.target(&target))?;
    let policy = CsrPolicy {
        profile: Profile::Client,
        validity: validity(&state, caller.role),
        subject: SubjectRule::Exactly(caller.info.subject.clone()),
        subject_alt_names: SanRule::AtMost(caller.info.subject_alt_names.clone()),
    };
    let issue = policy.decide(&csr).map_err(|e| {
        ApiError::forbidden(e.to_string())
            .reason(Reason::Policy)
            .target(&target)
    })?;
    let how = Issuance {
        ca: CLIENT_CA,
        role: caller.role,
        owner: caller.record.owner.clone(),
        renewed_from: Some(caller.record.serial.clone()),
        actor: caller.actor(),
        action: "renew",
    };
    let (issued, _) = state.issue(&issue, how).await?;
    state.metrics.renewed.fetch_add(1, Ordering::Relaxed);
    Ok((
        StatusCode::CREATED,
        Json(crate::enrollment::bundle(&state, &issued, CLIENT_CA)?),
    ))
}

pub(crate) fn summary(record: &CertificateRecord, now: i64) -> CertificateSummary {
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
        status: match record.status(now) {
            "revoked" => Status::Revoked,
            "superseded" => Status::Superseded,
            "expired" => Status::Expired,
            _ => Status::Active,
        },
        revoked_at: record.revoked_at.map(rfc3339),
        renewed_from: record.renewed_from.clone(),
        superseded_by: record.superseded_by.clone(),
    }
}

/// Revokes and publishes new CRLs, so the next handshake with that certificate fails.
pub(crate) async fn revoke_and_publish(
    state: &AppState,
    serial: &str,
    reason: RevocationReason,
) -> Result<RevokeOutcome, ApiError> {
    let mut outcomes = state.revoke(&[serial], reason).await?;
    Ok(outcomes.pop().unwrap_or(RevokeOutcome::NotFound))
}

#[utoipa::path(
    post,
    path = "/v1/applications/certificates/revocations",
    tag = "kyma",
    operation_id = "revoke_own",
    summary = "Revoke the caller's own certificate (Kyma compatible)",
    description = r#"The built-in admin credential is refused (409 `admin_lockout`): replace it with `evergreen admin reissue` on the server host."#,
    security(("mtls" = ["node", "app", "admin"])),
    responses((status = 201, description = "Revoked", body = evergreen_api::CertificateSummary))
)]
/// Kyma's revocation: the caller revokes its own certificate.
async fn revoke_own(
    State(state): AppStateRef,
    caller: Caller<Holder>,
    _: NoBody,
) -> Result<(StatusCode, Json<CertificateSummary>), ApiError> {
    if caller.role == evergreen_api::Role::Admin {
        return Err(admin_lockout(&caller.record));
    }
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
    let detail = format!("revoked its own certificate serial {}", record.serial);
    state
        .audit(&caller.actor(), "revoke", &record.subject, Ok(&detail))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(summary(&record, state.now().unix_timestamp())),
    ))
}

/// Whether `record` is the cluster certificate this server presents on its listener.
fn is_serving(state: &AppState, record: &CertificateRecord) -> bool {
    state
        .serving
        .current()
        .cert
        .first()
        .is_some_and(|der| Fingerprint::of(der).to_string() == record.sha256)
}

/// The refusal to revoke the admin credential a request is made with: nothing could
/// manage the cluster afterwards.
fn admin_lockout(record: &CertificateRecord) -> ApiError {
    ApiError::conflict(format!(
        "refusing to revoke the admin credential this request is made with (serial {}): nothing could manage the cluster afterwards. To replace it, run `evergreen admin reissue` on the server host: it writes a new admin.crt and admin.key and revokes this one",
        record.serial
    ))
    .reason(Reason::AdminLockout)
    .target(record.subject.clone())
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
    (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

#[utoipa::path(
    post,
    path = "/v1/certificates/revocations",
    tag = "inventory",
    operation_id = "revoke",
    summary = "Revoke a certificate by hash or serial",
    description = r#"The caller's own credential is refused (409 `admin_lockout`). Revoking the certificate this server serves first replaces it (as `evergreen certificate rotate server` does)."#,
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::RevocationRequest,
    responses((status = 201, description = "Revoked", body = evergreen_api::CertificateSummary))
)]
async fn revoke(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    JsonBody(request): JsonBody<RevocationRequest>,
) -> Result<(StatusCode, Json<CertificateSummary>), ApiError> {
    let reason: RevocationReason = request
        .reason
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    let record = match (&request.hash, &request.serial) {
        (Some(hash), None) => {
            let fp = Fingerprint::from_hex(hash).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "hash {:?} is not a SHA-256 (64 hex digits)",
                    crate::text::bounded(hash, 80)
                ))
            })?;
            state.store.certificate_by_sha256(&fp.to_string()).await?
        }
        (None, Some(serial)) => {
            let normalized = normalize_serial(serial).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "serial {:?} is not hex",
                    crate::text::bounded(serial, 80)
                ))
            })?;
            state.store.certificate_by_serial(&normalized).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"hash\" (SHA-256 of the certificate) or \"serial\"",
            ));
        }
    };
    let unknown = |what: &str| {
        ApiError::not_found(format!(
            "no certificate {} in the inventory",
            crate::text::bounded(what, 80)
        ))
        .reason(Reason::UnknownCertificate)
    };
    let Some(record) = record else {
        return Err(unknown(
            request
                .hash
                .as_deref()
                .or(request.serial.as_deref())
                .unwrap_or_default(),
        ));
    };
    if record.serial == caller.record.serial {
        return Err(admin_lockout(&record));
    }
    // The certificate this server presents (its key compromised, say): a new one is
    // served first, so that what is revoked is no longer what clients are shown.
    if is_serving(&state, &record) {
        crate::named::rotate_serving(&state, &caller.actor()).await?;
    }
    match revoke_and_publish(&state, &record.serial, reason).await? {
        RevokeOutcome::Revoked(record) => {
            let detail = format!("revoked serial {} ({reason})", record.serial);
            state
                .audit(&caller.actor(), "revoke", &record.subject, Ok(&detail))
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(summary(&record, state.now().unix_timestamp())),
            ))
        }
        RevokeOutcome::AlreadyRevoked(record) => {
            let at = record.revoked_at.map(rfc3339).unwrap_or_default();
            Err(ApiError::conflict(format!(
                "certificate {} (serial {}) was already revoked at {at}",
                record.subject, record.serial
            ))
            .reason(Reason::AlreadyRevoked)
            .target(record.subject))
        }
        RevokeOutcome::NotFound => Err(unknown(&record.serial)),
    }
}

#[utoipa::path(
    get,
    path = "/v1/crl/{ca}",
    tag = "trust",
    operation_id = "crl",
    summary = "The DER CRL of a CA",
    description = r#"`server-ca`, `client-ca` or `peer-ca`; a retired CA as `<ca>@<first 16 hex of its SHA-256>`."#,
    params(("ca" = String, Path, description = "The CA: server-ca, client-ca, peer-ca or a retired <ca>@<hash>", pattern = "^(server|client|peer)-ca(@[0-9a-f]{16})?$", example = "client-ca")),
    responses((status = 200, description = "DER CRL (application/pkix-crl)"))
)]
async fn crl(State(state): AppStateRef, Path(ca): Path<String>) -> Result<Response, ApiError> {
    let crls = state.crls.load();
    let der = crls.get(&ca).ok_or_else(|| {
        ApiError::not_found(format!(
            "no CA named {:?}; CRLs are published for {}",
            crate::text::bounded(&ca, 80),
            ROLE_CAS.join(", ")
        ))
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/pkix-crl")],
        der.to_vec(),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/certificates",
    tag = "inventory",
    operation_id = "inventory",
    summary = "Inventory of issued certificates, soonest expiry first",
    security(("mtls" = ["admin"])),
    params(evergreen_api::query::InventoryParams),
    responses((status = 200, description = "A page", body = evergreen_api::InventoryPage))
)]
async fn inventory(
    State(state): AppStateRef,
    _caller: Caller<Admin>,
    QueryOf(params): QueryOf<InventoryParams>,
) -> Result<Json<InventoryPage>, ApiError> {
    let now = state.now().unix_timestamp();
    let not_after_before = match params.expiring_within.as_deref() {
        None => None,
        Some(text) => {
            let within = evergreen_api::duration::parse(text)
                .map_err(|e| ApiError::bad_request(format!("expiring_within: {e}")))?;
            Some(now.saturating_add(within.whole_seconds()))
        }
    };
    let after = params.after().map_err(ApiError::bad_request)?;
    let limit = params.page_size().map_err(ApiError::bad_request)?;
    let records = state
        .store
        .list_certificates(&InventoryQuery {
            not_after_before,
            status: params.status.map(|s| s.as_str().to_owned()),
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

#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    operation_id = "create_token",
    summary = "Create a join token",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::TokenRequest,
    responses((status = 201, description = "Created; the token is shown once", body = evergreen_api::TokenResponse))
)]
async fn create_token(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let response = crate::enrollment::create_token(&state, &caller.actor(), &request).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// What the server knows of `node`: its allowed addresses and live identities.
async fn node_status(state: &AppState, node: &str, detail: String) -> Result<NodeStatus, ApiError> {
    let addresses = state
        .store
        .node(node)
        .await?
        .map(|n| n.addresses)
        .unwrap_or_default();
    let now = state.now().unix_timestamp();
    let identities = state
        .store
        .certificates_by_subject(&DistinguishedName::common_name(node).to_string())
        .await?
        .into_iter()
        .filter(|c| c.role == "node" && c.is_live(now))
        .map(|c| c.serial)
        .collect();
    Ok(NodeStatus {
        node: node.to_owned(),
        addresses,
        identities,
        detail,
    })
}

#[utoipa::path(
    put,
    path = "/v1/nodes/{node}/addresses",
    tag = "nodes",
    operation_id = "node_addresses",
    summary = "Set the addresses `{ip}` stands for in a node's certificates",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::NodeAddresses,
    params(("node" = String, Path, description = "The enrolled node name")),
    responses((status = 200, description = "The node", body = evergreen_api::NodeStatus))
)]
/// `PUT /v1/nodes/{node}/addresses`: the addresses `{ip}` stands for in the node's
/// certificates (`evergreen node allow`).
async fn node_addresses(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    Path(node): Path<String>,
    JsonBody(request): JsonBody<NodeAddresses>,
) -> Result<Json<NodeStatus>, ApiError> {
    crate::enrollment::check_node_name(&node).map_err(ApiError::bad_request)?;
    if request.addresses.len() > 64 {
        return Err(ApiError::bad_request("at most 64 addresses per node").target(node));
    }
    let mut addresses = Vec::new();
    for text in &request.addresses {
        let ip: std::net::IpAddr = text.trim().parse().map_err(|_| {
            ApiError::bad_request(format!(
                "{:?} is not an IP address",
                crate::text::bounded(text, 80)
            ))
            .target(&node)
        })?;
        if let Some(why) = evergreen_pki::san_policy::never_for_a_node(&SubjectAltName::Ip(ip)) {
            return Err(
                ApiError::bad_request(format!("{ip} cannot be a node's address: {why}"))
                    .target(&node),
            );
        }
        if !addresses.contains(&ip.to_string()) {
            addresses.push(ip.to_string());
        }
    }
    let record = NodeRecord {
        name: node.clone(),
        addresses: addresses.clone(),
        updated_at: state.now().unix_timestamp(),
    };
    let detail = if addresses.is_empty() {
        "no addresses allowed: {ip} is the address the node connects from".to_owned()
    } else {
        format!("{{ip}} is {}", addresses.join(", "))
    };
    let event = crate::audit::event(
        state.now(),
        &caller.actor(),
        "node.allow",
        &node,
        "ok",
        &detail,
    );
    state.store.put_node(&record, &event).await?;
    Ok(Json(node_status(&state, &node, detail).await?))
}

#[utoipa::path(
    post,
    path = "/v1/nodes/{node}/replace",
    tag = "nodes",
    operation_id = "node_replace",
    summary = "Revoke a node's identities so a new machine can enroll under its name",
    security(("mtls" = ["admin"])),
    params(("node" = String, Path, description = "The enrolled node name")),
    responses((status = 200, description = "The node", body = evergreen_api::NodeStatus))
)]
/// `POST /v1/nodes/{node}/replace`: revokes the node's identities so a new machine can
/// enroll under its name with a new token (`evergreen node replace`).
async fn node_replace(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    Path(node): Path<String>,
    _: NoBody,
) -> Result<Json<NodeStatus>, ApiError> {
    crate::enrollment::check_node_name(&node).map_err(ApiError::bad_request)?;
    let now = state.now().unix_timestamp();
    let subject = DistinguishedName::common_name(&node).to_string();
    let live: Vec<CertificateRecord> = state
        .store
        .certificates_by_subject(&subject)
        .await?
        .into_iter()
        .filter(|c| c.role == "node" && c.is_live(now))
        .collect();
    if live.is_empty() {
        return Err(ApiError::not_found(format!(
            "node {node} has no live identity; enroll it with a token (evergreen token create --role node --node {node})"
        ))
        .reason(Reason::UnknownNode)
        .target(node));
    }
    let mut revoked = Vec::new();
    for record in &live {
        if let RevokeOutcome::Revoked(r) =
            revoke_and_publish(&state, &record.serial, RevocationReason::Superseded).await?
        {
            revoked.push(r.serial);
        }
    }
    let detail = format!(
        "revoked identity serial {}; enroll the new machine with evergreen token create --role node --node {node}",
        revoked.join(", ")
    );
    state
        .audit(&caller.actor(), "node.replace", &node, Ok(&detail))
        .await?;
    Ok(Json(node_status(&state, &node, detail).await?))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "observe",
    operation_id = "healthz",
    summary = "Liveness",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String))
)]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "observe",
    operation_id = "readyz",
    summary = "Readiness: the datastore answers",
    responses((status = 200, description = "Ready", content_type = "text/plain", body = String))
)]
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
        crate::text::bounded(uri.path(), 128)
    ))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; see /v1/openapi.json",
            crate::text::bounded(uri.path(), 128)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_as_people_write_them() {
        assert_eq!(normalize_serial("0x4A:0b"), Some("4a0b".into()));
        assert_eq!(normalize_serial("00ab"), Some("ab".into()));
        assert_eq!(normalize_serial("abc"), Some("0abc".into()));
        assert_eq!(normalize_serial("zz"), None);
        assert_eq!(normalize_serial(&"a".repeat(1000)), None);
    }
}
