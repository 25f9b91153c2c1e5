//! `/metrics` and `/v1/openapi.json`.
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use evergreen_store::InventoryQuery;
use serde_json::{Value, json};

use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::metrics::label;
use crate::state::{AppState, ROLE_CAS, ROOT_CA};

/// Prometheus text for anyone: counters, the expiry of every CA, counts of live
/// certificates with the soonest expiry by role and CA, and the current version and
/// expiry of each named certificate. Nothing names a certificate's subject or serial:
/// that view is for admins ([`certificate_metrics`]).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let mut out = String::new();
    state.metrics.render_counters(&mut out);
    let cluster = state.cluster.load();
    let _ = writeln!(
        out,
        "# HELP evergreen_ca_expiry_timestamp_seconds When each CA expires (seconds since 1970).\n# TYPE evergreen_ca_expiry_timestamp_seconds gauge"
    );
    if let Ok(root) = evergreen_pki::CertificateInfo::from_der(&cluster.root) {
        let _ = writeln!(
            out,
            "evergreen_ca_expiry_timestamp_seconds{{ca=\"{ROOT_CA}\"}} {}",
            root.not_after.unix_timestamp()
        );
    }
    for name in ROLE_CAS {
        if let Some(ca) = cluster.ca(name) {
            let _ = writeln!(
                out,
                "evergreen_ca_expiry_timestamp_seconds{{ca=\"{name}\"}} {}",
                ca.info().not_after.unix_timestamp()
            );
        }
    }
    let now = state.now().unix_timestamp();
    let counts = state.store.active_counts(now).await?;
    let _ = writeln!(
        out,
        "# HELP evergreen_certificates_active Certificates in use (unexpired, unrevoked, not replaced by a renewal), by role and issuing CA.\n# TYPE evergreen_certificates_active gauge"
    );
    for c in &counts {
        let _ = writeln!(
            out,
            "evergreen_certificates_active{{role=\"{}\",issuer=\"{}\"}} {}",
            label(&c.role),
            label(&c.issuer),
            c.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP evergreen_certificates_soonest_expiry_timestamp_seconds When the first certificate in use of each role and issuing CA expires.\n# TYPE evergreen_certificates_soonest_expiry_timestamp_seconds gauge"
    );
    for c in &counts {
        let _ = writeln!(
            out,
            "evergreen_certificates_soonest_expiry_timestamp_seconds{{role=\"{}\",issuer=\"{}\"}} {}",
            label(&c.role),
            label(&c.issuer),
            c.soonest_not_after
        );
    }
    let _ = writeln!(
        out,
        "# HELP evergreen_named_certificate_version The current version of each named certificate.\n# TYPE evergreen_named_certificate_version gauge\n# HELP evergreen_named_certificate_expiry_timestamp_seconds When the current version of each cluster-scope named certificate expires.\n# TYPE evergreen_named_certificate_expiry_timestamp_seconds gauge"
    );
    for named in state.store.named().await? {
        let _ = writeln!(
            out,
            "evergreen_named_certificate_version{{name=\"{}\"}} {}",
            label(&named.name),
            named.version
        );
        if named.version > 0
            && let Some(not_after) = state
                .store
                .named_version(&named.name, named.version)
                .await?
                .and_then(|v| v.not_after)
        {
            let _ = writeln!(
                out,
                "evergreen_named_certificate_expiry_timestamp_seconds{{name=\"{}\"}} {not_after}",
                label(&named.name)
            );
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// `GET /v1/metrics/certificates` (admin): the expiry of every live certificate, with its
/// serial, subject, role and issuer, as Prometheus text.
pub async fn certificate_metrics(
    State(state): State<Arc<AppState>>,
    _caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP evergreen_certificate_expiry_timestamp_seconds When each active certificate expires (seconds since 1970).\n# TYPE evergreen_certificate_expiry_timestamp_seconds gauge"
    );
    let now = state.now().unix_timestamp();
    let mut query = InventoryQuery {
        status: Some("active".into()),
        now,
        limit: 1000,
        ..InventoryQuery::default()
    };
    loop {
        let page = state.store.list_certificates(&query).await?;
        for r in &page {
            let _ = writeln!(
                out,
                "evergreen_certificate_expiry_timestamp_seconds{{serial=\"{}\",subject=\"{}\",role=\"{}\",issuer=\"{}\"}} {}",
                r.serial,
                label(&r.subject),
                r.role,
                r.issuer,
                r.not_after
            );
        }
        match page.last() {
            Some(last) if page.len() == query.limit as usize => {
                query.after = Some((last.not_after, last.serial.clone()));
            }
            _ => break,
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

fn op(summary: &str, auth: &str, ok: &str) -> Value {
    json!({
        "summary": summary,
        "description": format!("Caller: {auth}."),
        "responses": {
            ok: { "description": "success" },
            "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
    })
}

/// The API's description. Every route of the router is listed (a test checks it).
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Evergreen", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Keeps a cluster's certificates from ever lapsing. Base64 fields carry PEM text." },
        "paths": {
            "/cacerts": { "get": op("The trust bundle: root CA and role CAs (PEM)", "anyone", "200") },
            "/v1/enroll": { "post": op("Issue a client certificate for a CSR with a join token: {\"token\",\"csr\"} -> {\"crt\",\"clientCrt\",\"caCrt\"}", "anyone with a join token", "201") },
            "/v1/applications/certificates/renewals": { "post": op("Renew the caller's certificate (Kyma compatible): {\"csr\"} -> {\"crt\",\"clientCrt\",\"caCrt\"}; same subject, at most the same SANs", "node, app or admin client certificate", "201") },
            "/v1/applications/certificates/revocations": { "post": op("Revoke the caller's own certificate", "node, app or admin client certificate", "201") },
            "/v1/certificates/revocations": { "post": op("Revoke a certificate: {\"hash\"} or {\"serial\"}, optional \"reason\"", "admin", "201") },
            "/v1/certificates": { "get": op("Inventory of issued certificates; query: expiring_within (30d), status (active|expired|revoked), limit, cursor", "admin", "200") },
            "/v1/crl/{ca}": { "get": op("DER CRL of server-ca, client-ca or peer-ca (a retired CA: <ca>@<first 16 hex of its SHA-256>)", "anyone", "200") },
            "/v1/ca/rotate": { "put": op("Rotate CAs live from a staged directory: {\"files\":{\"root-ca.crt\":PEM,…,\"service.key\":PEM}}; absent or empty files keep the current value. Integrity checks (bundle holds more than the CA, chains to the current root directly or cross-signed, keys match, current service-account signer kept) are all reported together; ?force=true skips only them and is audited", "admin", "200") },
            "/v1/keys/service-account": { "get": op("The service-account keys as a JWKS, the signing key first", "anyone", "200") },
            "/v1/keys/service-account/rotate": { "post": op("A new service-account signing key first, older ones kept: {\"key_type\"}; or remove one: {\"retire\": KID}", "admin", "200") },
            "/v1/tokens": { "post": op("Create a join token: {\"role\": \"node\"|\"app\", \"ttl_seconds\", \"description\"}", "admin", "201") },
            "/v1/cluster/certificates": {
                "get": op("Named certificates: type, label, version, fingerprint, expiry and which nodes acknowledged which version", "admin", "200"),
                "post": op("Declare a named certificate: {\"name\",\"scope\",\"type\",\"label\",\"internal\",\"usage\",\"sans\",\"nodes\",\"secret\"}", "admin", "201"),
                "put": op("Replace several: {\"certificates\":[{\"name\",\"key\",\"certificate\"}]}; all validated before any changes", "admin", "200")
            },
            "/v1/cluster/update_cert": { "put": op("Replace one (Redis Enterprise): {\"name\",\"key\",\"certificate\"} as PEM; 403 unknown name, 400 malformed or mismatched, 406 expired", "admin", "200") },
            "/v1/cluster/certificates/rotate": { "post": op("Regenerate selfsigned certificates: {\"names\":[…]}, empty for all", "admin", "200") },
            "/v1/cluster/certificates/{name}/label": { "put": op("Set a label; a new label regenerates a selfsigned certificate and re-reads a secret", "admin", "200") },
            "/v1/cluster/certificates/{name}/type": { "put": op("Switch the type: {\"type\": \"selfsigned\"|\"provided\"|\"secret\", \"secret\"}", "admin", "200") },
            "/v1/cluster/certificates/{name}": { "delete": op("Delete a named certificate; what was issued for it is revoked and nodes remove its files", "admin", "200") },
            "/v1/nodes/{node}/bundle": { "post": op("A node certificate and key made by the server, for a runtime without an agent", "admin", "201") },
            "/healthz": { "get": op("Liveness", "anyone", "200") },
            "/readyz": { "get": op("Readiness: the datastore answers", "anyone", "200") },
            "/metrics": { "get": op("Prometheus metrics", "anyone", "200") },
            "/v1/openapi.json": { "get": op("This document", "anyone", "200") }
        },
        "components": { "schemas": { "Error": {
            "type": "object", "required": ["code", "error"],
            "properties": { "code": { "type": "integer" }, "error": { "type": "string" } }
        } } }
    })
}

pub async fn openapi() -> Json<Value> {
    Json(document())
}
