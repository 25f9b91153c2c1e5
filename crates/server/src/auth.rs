//! Who is calling. The TLS layer only refuses revoked certificates; here a presented
//! certificate is checked in full — issued by this cluster (in the inventory), not
//! revoked, not expired, chaining to the client CA — and its role read from the
//! inventory. Each route then says which roles it admits.
use std::sync::Arc;

use evergreen_api::Role;
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::chain;
use evergreen_store::CertificateRecord;

use crate::error::ApiError;
use crate::state::{AppState, CLIENT_CA, Cluster, Crls};
use crate::tls::Peer;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub record: CertificateRecord,
    pub role: Role,
    pub info: CertificateInfo,
}

impl Caller {
    /// How the audit log names the caller.
    pub fn actor(&self) -> String {
        format!(
            "{} {} (serial {})",
            self.role, self.record.subject, self.record.serial
        )
    }

    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "this endpoint is for {} certificates; {} is a {} certificate",
            wanted.join(" or "),
            self.record.subject,
            self.role
        )))
    }
}

/// How an unauthenticated peer is named in the audit log.
pub fn peer_actor(peer: &Peer) -> String {
    match &peer.certificate {
        None => "anonymous".to_owned(),
        Some(der) => match CertificateInfo::from_der(der) {
            Ok(info) => format!(
                "{} (serial {}, not authenticated)",
                info.subject,
                info.serial_hex()
            ),
            Err(_) => "unreadable client certificate".to_owned(),
        },
    }
}

/// A caller authenticated on a connection, with the CAs and CRLs it was checked against.
#[derive(Debug)]
pub(crate) struct Authenticated {
    caller: Caller,
    cluster: Arc<Cluster>,
    crls: Arc<Crls>,
}

/// The caller a peer is; or, when it cannot be authenticated, a reason label (for
/// metrics) and the error.
///
/// A connection's certificate is checked in full once: while the server serves the same
/// CAs and CRLs (a revocation publishes new CRLs; a rotation, new CAs), later requests on
/// that connection reuse the result, checking only that the certificate is still within
/// its validity. So a keep-alive client pays for one chain verification and one inventory
/// lookup, not one per request.
pub async fn authenticate(
    state: &AppState,
    peer: &Peer,
) -> Result<Caller, (&'static str, ApiError)> {
    // Taken before the inventory is read: a revocation after this point leaves these
    // stale, so the result is not reused.
    let cluster = state.cluster.load_full();
    let crls = state.crls.load_full();
    let now = state.now();
    {
        let cached = peer.authenticated.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cached.as_ref()
            && Arc::ptr_eq(&hit.cluster, &cluster)
            && Arc::ptr_eq(&hit.crls, &crls)
            && hit.caller.info.not_before <= now
            && now <= hit.caller.info.not_after
        {
            return Ok(hit.caller.clone());
        }
    }
    let caller = authenticate_fully(state, peer, &cluster).await?;
    *peer.authenticated.lock().unwrap_or_else(|e| e.into_inner()) = Some(Authenticated {
        caller: caller.clone(),
        cluster,
        crls,
    });
    Ok(caller)
}

async fn authenticate_fully(
    state: &AppState,
    peer: &Peer,
    cluster: &Cluster,
) -> Result<Caller, (&'static str, ApiError)> {
    let Some(der) = &peer.certificate else {
        return Err((
            "no_client_certificate",
            ApiError::unauthorized(
                "this endpoint needs a client certificate issued by this cluster; present it with the TLS connection (curl --cert FILE --key FILE)",
            ),
        ));
    };
    let info = CertificateInfo::from_der(der).map_err(|e| {
        (
            "bad_client_certificate",
            ApiError::unauthorized(format!("the client certificate cannot be read: {e}")),
        )
    })?;
    let now = state.now();
    let record = state
        .store
        .certificate_by_sha256(&info.fingerprint.to_string())
        .await
        .map_err(|e| ("internal", ApiError::from(e)))?
        .ok_or_else(|| {
            (
                "foreign_certificate",
                ApiError::unauthorized(format!(
                    "the client certificate {} (issuer {}) was not issued by this cluster",
                    info.subject, info.issuer
                )),
            )
        })?;
    if let Some(at) = record.revoked_at {
        return Err((
            "revoked",
            ApiError::forbidden(format!(
                "the client certificate {} (serial {}) was revoked at {}; it can no longer be used or renewed — enroll again with a join token",
                record.subject,
                record.serial,
                rfc3339(at)
            )),
        ));
    }
    if info.not_after < now {
        return Err((
            "expired",
            ApiError::forbidden(format!(
                "the client certificate {} (serial {}) expired at {}; an expired certificate cannot be renewed — enroll again with a join token",
                record.subject,
                record.serial,
                rfc3339(record.not_after)
            )),
        ));
    }
    if info.not_before > now {
        return Err((
            "not_yet_valid",
            ApiError::forbidden(format!(
                "the client certificate {} is not valid until {}",
                record.subject,
                rfc3339(record.not_before)
            )),
        ));
    }
    if record.issuer != CLIENT_CA {
        return Err((
            "not_a_client_certificate",
            ApiError::forbidden(format!(
                "{} is a {} certificate issued by {}, not a client certificate",
                record.subject, record.profile, record.issuer
            )),
        ));
    }
    // The current client CA, or one a rotation retired: its leaves work until renewed.
    let mut verified = Err(String::new());
    for (ca, chain) in cluster.generations(CLIENT_CA) {
        verified = chain::verify(
            der,
            chain,
            std::slice::from_ref(ca),
            Usage::ClientAuth,
            &[],
            now,
        )
        .map_err(|e| e.to_string());
        if verified.is_ok() {
            break;
        }
    }
    verified.map_err(|e| {
        (
            "chain",
            ApiError::unauthorized(format!("the client certificate does not verify: {e}")),
        )
    })?;
    let role = Role::parse(&record.role).ok_or_else(|| {
        (
            "internal",
            ApiError::internal(format!("unknown role {:?}", record.role)),
        )
    })?;
    Ok(Caller { role, info, record })
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
