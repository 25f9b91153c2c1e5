//! `/metrics`.
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use evergreen_store::InventoryQuery;

use crate::auth::{Admin, Caller};
use crate::cluster::{ROLE_CAS, ROOT_CA};
use crate::error::ApiError;
use crate::metrics::label;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "observe",
    operation_id = "metrics",
    summary = "Prometheus metrics, with nothing that names a certificate",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String))
)]
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

#[utoipa::path(
    get,
    path = "/v1/metrics/certificates",
    tag = "observe",
    operation_id = "certificate_metrics",
    summary = "The expiry of every live certificate, by serial and subject (Prometheus text)",
    security(("mtls" = ["admin"])),
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String))
)]
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
