//! Who is calling. The TLS layer only refuses revoked certificates; here a presented
//! certificate is checked in full — issued by this cluster (in the inventory), not
//! revoked, not expired, chaining to the client CA — and its role read from the
//! inventory. Each route then says which roles it admits, with a [`Caller`] extractor.
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use evergreen_api::Role;
use evergreen_pki::CertificateDer;
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::chain;
use evergreen_store::CertificateRecord;

use crate::cluster::{CLIENT_CA, Cluster, Crls};
use crate::error::{ApiError, Reason};
use crate::state::AppState;
use crate::text::{MAX_FIELD, bounded, rfc3339};

/// A caller whose certificate was checked in full.
#[derive(Debug, Clone)]
pub struct Identity {
    pub record: CertificateRecord,
    pub role: Role,
    pub info: CertificateInfo,
}

/// What one request learns about its caller, shared between the extractor that
/// authenticates it and [`crate::routes::audit_refusals`], which audits a refusal under
/// the caller's name once it is known.
#[derive(Debug, Clone, Default)]
pub struct RequestContext(Arc<OnceLock<String>>);

impl RequestContext {
    /// The authenticated caller's audit name, once an extractor has set it.
    pub fn actor(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    fn authenticated(&self, identity: &Identity) {
        let _ = self.0.set(identity.actor());
    }
}

/// Which roles a route admits.
pub trait Roles: Send + Sync + 'static {
    const ROLES: &'static [Role];
}

/// Operators: may change cluster state.
#[derive(Debug)]
pub struct Admin;
impl Roles for Admin {
    const ROLES: &'static [Role] = &[Role::Admin];
}

/// A node's agent.
#[derive(Debug)]
pub struct Agent;
impl Roles for Agent {
    const ROLES: &'static [Role] = &[Role::Node];
}

/// Whoever holds a client certificate of the cluster: node, app or admin (Kyma renewal
/// and revocation of one's own certificate).
#[derive(Debug)]
pub struct Holder;
impl Roles for Holder {
    const ROLES: &'static [Role] = &[Role::Node, Role::App, Role::Admin];
}

/// The client certificate a connection presented, if any, as the handlers see it. It has
/// passed only the revocation check at the handshake; handlers authenticate it fully, once
/// per connection while the cluster's CAs and CRLs stay the same (see
/// [`authenticate`]).
#[derive(Debug, Clone)]
pub struct Peer {
    pub certificate: Option<CertificateDer<'static>>,
    /// Where the connection comes from.
    pub remote: SocketAddr,
    pub(crate) authenticated: Arc<std::sync::Mutex<Option<Authenticated>>>,
}

impl Peer {
    pub fn new(certificate: Option<CertificateDer<'static>>, remote: SocketAddr) -> Self {
        Peer {
            certificate,
            remote,
            authenticated: Arc::default(),
        }
    }
}

/// An authenticated caller of one of `R`'s roles. Extracting it authenticates the peer's
/// certificate and checks the role; a failure is the refusal to answer with.
#[derive(Debug)]
pub struct Caller<R: Roles> {
    pub identity: Identity,
    roles: PhantomData<R>,
}

impl<R: Roles> std::ops::Deref for Caller<R> {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.identity
    }
}

impl<R: Roles> FromRequestParts<Arc<AppState>> for Caller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<Peer>()
            .ok_or_else(|| ApiError::internal("a request without its connection's peer"))?;
        let identity = authenticate(state, peer)
            .await
            .map_err(|(reason, error)| error.reason(reason))?;
        if let Some(context) = parts.extensions.get::<RequestContext>() {
            context.authenticated(&identity);
        }
        identity.require(R::ROLES)?;
        Ok(Caller {
            identity,
            roles: PhantomData,
        })
    }
}

impl Identity {
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
        ))
        .reason(Reason::WrongRole))
    }
}

/// How an unauthenticated peer is named in the audit log: its address, and the subject
/// it claims (bounded: it is whatever the peer put in its certificate).
pub fn peer_actor(peer: &Peer) -> String {
    let source = peer.remote.ip();
    match &peer.certificate {
        None => format!("anonymous from {source}"),
        Some(der) => match CertificateInfo::from_der(der) {
            Ok(info) => format!(
                "{} (serial {}, not authenticated) from {source}",
                bounded(&info.subject.to_string(), MAX_FIELD / 2),
                bounded(&info.serial_hex(), 64)
            ),
            Err(_) => format!("unreadable client certificate from {source}"),
        },
    }
}

/// A caller authenticated on a connection, with the CAs and CRLs it was checked against.
#[derive(Debug)]
pub(crate) struct Authenticated {
    caller: Identity,
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
pub async fn authenticate(state: &AppState, peer: &Peer) -> Result<Identity, (Reason, ApiError)> {
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
) -> Result<Identity, (Reason, ApiError)> {
    let Some(der) = &peer.certificate else {
        return Err((
            Reason::NoClientCertificate,
            ApiError::unauthorized(
                "this endpoint needs a client certificate issued by this cluster; present it with the TLS connection (curl --cert FILE --key FILE)",
            ),
        ));
    };
    let info = CertificateInfo::from_der(der).map_err(|e| {
        (
            Reason::BadClientCertificate,
            ApiError::unauthorized(format!("the client certificate cannot be read: {e}")),
        )
    })?;
    let now = state.now();
    let record = state
        .store
        .certificate_by_sha256(&info.fingerprint.to_string())
        .await
        .map_err(|e| (Reason::Internal, ApiError::from(e)))?
        .ok_or_else(|| {
            (
                Reason::ForeignCertificate,
                ApiError::unauthorized(format!(
                    "the client certificate {} (issuer {}) was not issued by this cluster",
                    bounded(&info.subject.to_string(), MAX_FIELD),
                    bounded(&info.issuer.to_string(), MAX_FIELD)
                )),
            )
        })?;
    // What the holder does next: the admin credential is reissued on the server host,
    // anything else enrolls again.
    let next_step = if record.role == Role::Admin.as_str() {
        "run `evergreen admin reissue` on the server host for a new admin credential"
    } else {
        "enroll again with a join token"
    };
    if let Some(at) = record.revoked_at {
        return Err((
            Reason::Revoked,
            ApiError::forbidden(format!(
                "the client certificate {} (serial {}) was revoked at {}; it can no longer be used or renewed — {next_step}",
                record.subject,
                record.serial,
                rfc3339(at)
            )),
        ));
    }
    if info.not_after < now {
        return Err((
            Reason::Expired,
            ApiError::forbidden(format!(
                "the client certificate {} (serial {}) expired at {}; an expired certificate cannot be renewed — {next_step}",
                record.subject,
                record.serial,
                rfc3339(record.not_after)
            )),
        ));
    }
    if info.not_before > now {
        return Err((
            Reason::NotYetValid,
            ApiError::forbidden(format!(
                "the client certificate {} is not valid until {}",
                record.subject,
                rfc3339(record.not_before)
            )),
        ));
    }
    if record.issuer != CLIENT_CA {
        return Err((
            Reason::NotAClientCertificate,
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
            Reason::Chain,
            ApiError::unauthorized(format!("the client certificate does not verify: {e}")),
        )
    })?;
    let role = Role::parse(&record.role).ok_or_else(|| {
        (
            Reason::Internal,
            ApiError::internal(format!("unknown role {:?}", record.role)),
        )
    })?;
    Ok(Identity { role, info, record })
}
