//! Named certificates: one model for Redis-style cluster certificates set once for every
//! node, Event Streams' labels and types, and node-scope certificates each node issues
//! for itself.
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use evergreen_api::{
    Kind, LabelRequest, NamedCertificateSpec, NamedCertificateStatus, NamedDeletion, NodeAck,
    NodeBundle, Replacement, Role, RotateRequest, Scope, SecretRef, TypeRequest, UpdateCert,
    UpdateCerts, Usage, encode_pem,
};
use evergreen_pki::certificate::{CertificateInfo, SubjectAltName};
use evergreen_pki::crl::RevocationReason;
use evergreen_pki::renewal::Reissue;
use evergreen_pki::san_policy::SanPolicy;
use evergreen_pki::{
    CertificateDer, DistinguishedName, IssueRequest, KeyType, PrivateKey, Profile, pem,
};
use evergreen_store::RevokeOutcome;
use evergreen_store::{AuditEvent, CertificateRecord, NamedChange, NamedRecord, NamedVersion};

use crate::auth::{Admin, Caller};
use crate::cluster::{CLIENT_CA, PEER_CA, SERVER_CA};
use crate::error::{ApiError, JsonBody, Reason};
use crate::state::{AppState, Issuance};
use crate::text::rfc3339;

/// Names the server keeps for itself.
const BUILT_IN: [&str; 2] = ["server", "admin"];

type AppStateRef = State<Arc<AppState>>;

fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(format!(
            "certificate name {name:?} must be 1-63 lowercase letters, digits and '-'"
        ));
    }
    if BUILT_IN.contains(&name) {
        return Err(format!("{name:?} is built in; choose another name"));
    }
    Ok(())
}

/// Labels as Event Streams allows them in Kubernetes labels: letters, digits, `-`, `_`,
/// `.`, at most 63.
fn valid_label(label: &str) -> Result<(), String> {
    if label.len() > 63
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "label {label:?} may hold only letters, digits, '-', '_' and '.', at most 63 characters"
        ));
    }
    Ok(())
}

/// A word the datastore keeps as text (scope, type, usage), read back as the API's type.
pub(crate) fn stored<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|e| ApiError::internal(format!("the datastore holds {e}")))
}

/// The certificate profile and the issuing CA of a usage.
pub(crate) fn profile_of(usage: Usage) -> (Profile, &'static str) {
    match usage {
        Usage::Server => (Profile::Server, SERVER_CA),
        Usage::Client => (Profile::Client, CLIENT_CA),
        Usage::Peer => (Profile::Peer, PEER_CA),
    }
}

/// A stored usage, read back: its profile and issuing CA.
pub(crate) fn usage(usage: &str) -> Result<(Profile, &'static str), String> {
    Ok(profile_of(usage.parse()?))
}

/// Checks a node-scope declaration's names with stand-ins for `{node}` and `{ip}`: each
/// must read as a name, and none may be one a node never gets (a wildcard, localhost, a
/// loopback address). Issuance checks the real names again ([`crate::agent`]).
fn check_node_templates(templates: &[String], policy: &SanPolicy) -> Result<(), String> {
    for template in templates {
        let san: SubjectAltName = template
            .replace("{node}", "node-1")
            .replace("{ip}", "10.0.0.1")
            .parse()?;
        if let Some(why) = evergreen_pki::san_policy::never_for_a_node(&san) {
            return Err(format!(
                "{template:?} cannot name a node's certificate: {why}"
            ));
        }
        if !template.contains('{') {
            policy
                .check(&san)
                .map_err(|e| format!("{template:?}: {e}"))?;
        }
    }
    Ok(())
}

fn known_names(records: &[NamedRecord]) -> String {
    if records.is_empty() {
        "none declared yet".into()
    } else {
        records
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(crate) fn key_aad(name: &str, version: i64) -> Vec<u8> {
    format!("evergreen:named-key:{name}:{version}").into_bytes()
}

/// A certificate with its key and the CA chain clients should trust; with its inventory
/// row and audit entry when the cluster issued it.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKey,
    ca: Vec<CertificateDer<'static>>,
    issued: Option<(CertificateRecord, AuditEvent)>,
}

/// What one named-certificate change writes, all in one transaction: definitions and
/// versions, the inventory rows of what it issued, its audit entries, and the server's own
/// certificates when it rotates them.
#[derive(Debug, Default)]
struct Writes {
    changes: Vec<NamedChange>,
    issued: Vec<(CertificateRecord, AuditEvent)>,
    events: Vec<AuditEvent>,
    own: Vec<crate::bootstrap::OwnIssued>,
}

impl Writes {
    /// A new version for `record`, with what issuing it wrote.
    fn push(&mut self, change: NamedChange, material: Option<Material>) {
        if let Some(issued) = material.and_then(|m| m.issued) {
            self.issued.push(issued);
        }
        self.changes.push(change);
    }

    /// Writes everything, goes live and commits, as one change named `action`.
    async fn commit(self, state: &AppState, action: &str) -> Result<(), ApiError> {
        crate::state::passed(state, action, "prepared")?;
        let mut tx = state.store.begin().await?;
        for (record, event) in &self.issued {
            tx.insert_certificate(record).await?;
            tx.audit(event).await?;
        }
        let revision = if self.changes.is_empty() {
            None
        } else {
            Some(tx.save_named(&self.changes).await?)
        };
        for event in &self.events {
            tx.audit(event).await?;
        }
        let mut live = crate::change::Live::default();
        state
            .stage_own(&self.own, tx.as_mut(), &mut live)
            .await
            .map_err(|e| {
                crate::change::failed(action, "issuing the server's own certificates", e)
            })?;
        crate::state::passed(state, action, "written")?;
        state.go_live_and_commit(action, tx, live).await?;
        if let Some(revision) = revision {
            state.advance_revision(revision);
        }
        Ok(())
    }
}

impl Material {
    fn version(
        &self,
        state: &AppState,
        name: &str,
        version: i64,
        reason: &str,
    ) -> Result<NamedVersion, ApiError> {
        let info = CertificateInfo::from_der(&self.chain[0]).map_err(ApiError::internal)?;
        let sealed = state
            .sealing
            .seal(self.key.to_pem().as_bytes(), &key_aad(name, version))
            .map_err(ApiError::internal)?;
        Ok(NamedVersion {
            name: name.to_owned(),
            version,
            chain_pem: Some(pem::encode_certificates(&self.chain)),
            sealed_key: Some(sealed),
            ca_pem: Some(pem::encode_certificates(&self.ca)),
            fingerprint: Some(info.fingerprint.to_string()),
            not_after: Some(info.not_after.unix_timestamp()),
            reason: reason.to_owned(),
            created_at: state.now().unix_timestamp(),
        })
    }
}

/// The inventory serial of `record`'s current version, when this cluster issued it: the
/// certificate a new version replaces.
async fn current_serial(
    state: &AppState,
    record: &NamedRecord,
) -> Result<Option<String>, ApiError> {
    let Some(version) = state
        .store
        .named_version(&record.name, record.version)
        .await?
    else {
        return Ok(None);
    };
    let Some(fingerprint) = version.fingerprint else {
        return Ok(None);
    };
    Ok(state
        .store
        .certificate_by_sha256(&fingerprint)
        .await?
        .map(|c| c.serial))
}

/// Issues a cluster-scope selfsigned certificate from the CA its usage names.
async fn issue_cluster(state: &AppState, record: &NamedRecord) -> Result<Material, ApiError> {
    let (profile, ca) = usage(&record.usage).map_err(ApiError::bad_request)?;
    let sans = record
        .sans
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<SubjectAltName>, _>>()
        .map_err(ApiError::bad_request)?;
    let key = PrivateKey::generate(KeyType::EcP256).map_err(ApiError::internal)?;
    let request = IssueRequest {
        subject: DistinguishedName::common_name(&record.name),
        subject_alt_names: sans,
        public_key: key.public_key(),
        profile,
        validity: state.settings.node_validity,
    };
    let how = Issuance {
        ca,
        role: Role::Service,
        owner: format!("named:{}", record.name),
        renewed_from: current_serial(state, record).await?,
        actor: "server".into(),
        action: "certificate.issue",
    };
    let (issued, certificate, event) = state.sign(&request, &how)?;
    let ca_bundle = state
        .cluster
        .load()
        .ca(ca)
        .map(|c| c.bundle())
        .unwrap_or_default();
    let mut chain = vec![issued.der];
    chain.extend(ca_bundle.iter().cloned());
    Ok(Material {
        chain,
        key,
        ca: ca_bundle,
        issued: Some((certificate, event)),
    })
}

/// A version for a node-scope certificate: no material, it tells nodes to re-issue.
fn node_version(state: &AppState, name: &str, version: i64, reason: &str) -> NamedVersion {
    NamedVersion {
        name: name.to_owned(),
        version,
        chain_pem: None,
        sealed_key: None,
        ca_pem: None,
        fingerprint: None,
        not_after: None,
        reason: reason.to_owned(),
        created_at: state.now().unix_timestamp(),
    }
}

/// A new version of a selfsigned certificate, whatever its scope.
async fn regenerate(
    state: &AppState,
    record: &NamedRecord,
    reason: &str,
) -> Result<(NamedVersion, Option<Material>), ApiError> {
    let version = record.version + 1;
    if record.scope == "node" {
        return Ok((node_version(state, &record.name, version, reason), None));
    }
    let material = issue_cluster(state, record).await?;
    Ok((
        material.version(state, &record.name, version, reason)?,
        Some(material),
    ))
}

/// Gives a selfsigned certificate its next version in `writes`.
async fn regenerated(
    state: &AppState,
    record: &NamedRecord,
    reason: &str,
    writes: &mut Writes,
) -> Result<(), ApiError> {
    let (version, material) = regenerate(state, record, reason).await?;
    let mut record = record.clone();
    record.version = version.version;
    record.updated_at = state.now().unix_timestamp();
    writes.push(
        NamedChange {
            record,
            new_version: Some(version),
        },
        material,
    );
    Ok(())
}

/// Checks an uploaded certificate and key (as `update_cert` receives them), with Redis
/// Enterprise's answers: 403 unknown name, 400 malformed or mismatched, 406 expired.
fn check_upload(
    state: &AppState,
    records: &[NamedRecord],
    name: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Material, ApiError> {
    let Some(record) = records.iter().find(|r| r.name == name) else {
        return Err(ApiError::forbidden(format!(
            "no named certificate {name:?}; known: {}",
            known_names(records)
        )));
    };
    if record.internal {
        return Err(ApiError::bad_request(format!(
            "{name} is internal, and internal certificates may only be selfsigned; rotate it instead"
        )));
    }
    if record.scope == "node" {
        return Err(ApiError::bad_request(format!(
            "{name} has node scope: each node makes its own key, so one certificate cannot be set for all"
        )));
    }
    let chain = pem::parse_certificates(&format!("the certificate of {name}"), cert_pem.as_bytes())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let key = PrivateKey::from_pem(&format!("the key of {name}"), key_pem.as_bytes())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let info =
        CertificateInfo::from_der(&chain[0]).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !key
        .matches_certificate(&chain[0])
        .map_err(|e| ApiError::bad_request(e.to_string()))?
    {
        return Err(ApiError::bad_request(format!(
            "the key of {name} does not match its certificate {}",
            info.subject
        )));
    }
    let now = state.now();
    if info.not_after < now {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "the certificate of {name} ({}) expired at {}",
                info.subject,
                rfc3339(info.not_after.unix_timestamp())
            ),
        ));
    }
    if info.not_before > now {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "the certificate of {name} is not valid until {}",
                rfc3339(info.not_before.unix_timestamp())
            ),
        ));
    }
    let mut chain = chain;
    let ca = match chain.get(1..) {
        Some(rest) if !rest.is_empty() => rest.to_vec(),
        _ => issuing_ca(state, &chain[0], &info).ok_or_else(|| {
            ApiError::bad_request(format!(
                "the certificate of {name} came without its chain, and its issuer {} is not a CA of this cluster, so nodes could not be given a ca.crt that verifies it: send the certificate followed by its issuing CA and any intermediates (cat {name}.pem issuing-ca.pem); nothing was changed",
                info.issuer
            ))
            .reason(Reason::NoChain)
        })?,
    };
    if chain.len() == 1 && !info.self_signed {
        // Served with its chain, as if it had been sent with it.
        chain.extend(ca.iter().cloned());
    }
    Ok(Material {
        chain,
        key,
        ca,
        issued: None,
    })
}

/// The CA bundle that verifies a certificate sent alone: the cluster CA that issued it
/// (with its chain), or the certificate itself when it is self-signed.
fn issuing_ca(
    state: &AppState,
    leaf: &CertificateDer<'static>,
    info: &CertificateInfo,
) -> Option<Vec<CertificateDer<'static>>> {
    if info.self_signed {
        return Some(vec![leaf.clone()]);
    }
    let cluster = state.cluster.load();
    crate::cluster::ROLE_CAS
        .iter()
        .filter_map(|name| cluster.ca(name))
        .find(|ca| evergreen_pki::chain::is_signed_by(leaf, ca.certificate()).unwrap_or(false))
        .map(|ca| ca.bundle())
}

/// Event Streams' rule: clients keep working when the new certificate is issued by the
/// same CA as the one it replaces.
fn trust(previous: Option<&NamedVersion>, new: &[CertificateDer<'_>]) -> (bool, String) {
    let new_leaf = new.first().and_then(|c| CertificateInfo::from_der(c).ok());
    let old_leaf = previous
        .and_then(|v| v.chain_pem.as_ref())
        .and_then(|p| pem::parse_certificates("", p.as_bytes()).ok())
        .and_then(|c| c.first().and_then(|c| CertificateInfo::from_der(c).ok()));
    match (old_leaf, new_leaf) {
        (_, None) => (
            false,
            "node scope: each node re-issues from the same cluster CA; clients keep their trust"
                .into(),
        ),
        (None, Some(new)) => (
            true,
            format!(
                "first certificate of this name: clients must trust its issuer {}",
                new.issuer
            ),
        ),
        (Some(old), Some(new))
            if old.issuer == new.issuer && old.authority_key_id == new.authority_key_id =>
        {
            (
                false,
                format!(
                    "clients keep working: the new certificate is issued by the same CA ({})",
                    new.issuer
                ),
            )
        }
        (Some(old), Some(new)) => (
            true,
            format!(
                "clients must update their trust: the issuing CA changed from {} to {}",
                old.issuer, new.issuer
            ),
        ),
    }
}

async fn replacement(
    state: &AppState,
    record: &NamedRecord,
    version: &NamedVersion,
) -> Result<Replacement, ApiError> {
    let previous = match record.version - 1 {
        v if v >= 1 => state.store.named_version(&record.name, v).await?,
        _ => None,
    };
    let chain = version
        .chain_pem
        .as_ref()
        .and_then(|p| pem::parse_certificates("", p.as_bytes()).ok())
        .unwrap_or_default();
    let (must, why) = trust(previous.as_ref(), &chain);
    Ok(Replacement {
        name: record.name.clone(),
        version: record.version,
        fingerprint: version.fingerprint.clone(),
        not_after: version.not_after.map(rfc3339),
        clients_must_update_trust: must,
        trust: why,
    })
}

#[utoipa::path(
    get,
    path = "/v1/cluster/certificates",
    tag = "named",
    operation_id = "named_list",
    summary = "Named certificates and which nodes acknowledged which version",
    security(("mtls" = ["admin"])),
    responses((status = 200, description = "Every named certificate", body = Vec<evergreen_api::NamedCertificateStatus>))
)]
pub async fn list(
    State(state): AppStateRef,
    _caller: Caller<Admin>,
) -> Result<Json<Vec<NamedCertificateStatus>>, ApiError> {
    let acks = state.store.acknowledgements().await?;
    let mut out = Vec::new();
    for r in state.store.named().await? {
        let current = match r.version {
            0 => None,
            v => state.store.named_version(&r.name, v).await?,
        };
        out.push(NamedCertificateStatus {
            acknowledged: acks
                .iter()
                .filter(|a| a.name == r.name)
                .map(|a| NodeAck {
                    node: a.node.clone(),
                    version: a.version,
                    fingerprint: a.fingerprint.clone(),
                    at: rfc3339(a.at),
                    served: a.served,
                })
                .collect(),
            fingerprint: current.as_ref().and_then(|v| v.fingerprint.clone()),
            not_after: current.as_ref().and_then(|v| v.not_after).map(rfc3339),
            name: r.name,
            scope: stored(&r.scope)?,
            kind: stored(&r.kind)?,
            label: r.label,
            internal: r.internal,
            usage: stored(&r.usage)?,
            sans: r.sans,
            nodes: r.nodes,
            version: r.version,
            allowed_dns: r.allowed_dns,
            allowed_cidrs: r.allowed_cidrs,
        });
    }
    Ok(Json(out))
}

fn check_spec(spec: &NamedCertificateSpec) -> Result<(), String> {
    valid_name(&spec.name)?;
    valid_label(&spec.label)?;
    if spec.internal && spec.kind != Kind::Selfsigned {
        return Err(format!(
            "{} is internal, and internal certificates may only be selfsigned",
            spec.name
        ));
    }
    if spec.scope == Scope::Node && spec.kind != Kind::Selfsigned {
        return Err(format!(
            "{} has node scope: each node makes its own key, so it can only be selfsigned",
            spec.name
        ));
    }
    if spec.kind == Kind::Secret && spec.secret.is_none() {
        return Err(format!(
            "{} is of type secret: give the directory to read (secret.path)",
            spec.name
        ));
    }
    let (profile, _) = profile_of(spec.usage);
    let policy = SanPolicy::new(&spec.allowed_dns, &spec.allowed_cidrs)?;
    if spec.scope == Scope::Node {
        check_node_templates(&spec.sans, &policy)?;
    } else {
        for san in &spec.sans {
            policy.check(&san.parse::<SubjectAltName>()?)?;
        }
    }
    if profile.needs_subject_alt_names() && spec.sans.is_empty() && spec.kind == Kind::Selfsigned {
        return Err(format!(
            "a {} certificate needs at least one name: give sans",
            spec.usage
        ));
    }
    for node in &spec.nodes {
        crate::enrollment::check_node_name(node)?;
    }
    Ok(())
}

/// The next version of a `secret` certificate from its directory, unless the directory
/// holds the certificate of `current` already.
fn secret_version(
    state: &AppState,
    record: &NamedRecord,
    current: Option<&NamedVersion>,
    reason: &str,
) -> Result<Option<(NamedVersion, Material)>, ApiError> {
    let (cert, key) = read_secret(record)?;
    let material = check_upload(
        state,
        std::slice::from_ref(record),
        &record.name,
        &cert,
        &key,
    )
    .map_err(|e| e.reason(Reason::BadSecret).target(&record.name))?;
    let fingerprint = CertificateInfo::from_der(&material.chain[0])
        .map_err(ApiError::internal)?
        .fingerprint
        .to_string();
    if current.and_then(|v| v.fingerprint.as_deref()) == Some(fingerprint.as_str()) {
        return Ok(None);
    }
    let version = material.version(state, &record.name, record.version + 1, reason)?;
    Ok(Some((version, material)))
}

/// Reads a secret directory: `cert`, `key` and `cacert` (or the configured file names).
fn read_secret(record: &NamedRecord) -> Result<(String, String), ApiError> {
    let dir = std::path::Path::new(record.secret_path.as_deref().unwrap_or_default());
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| {
            ApiError::bad_request(format!(
                "cannot read {} for {}: {e}",
                dir.join(name).display(),
                record.name
            ))
        })
    };
    let mut cert = read(&record.secret_keys[0])?;
    let key = read(&record.secret_keys[1])?;
    if let Ok(ca) = std::fs::read_to_string(dir.join(&record.secret_keys[2])) {
        cert.push_str(&ca);
    }
    Ok((cert, key))
}

#[utoipa::path(
    post,
    path = "/v1/cluster/certificates",
    tag = "named",
    operation_id = "named_create",
    summary = "Declare a named certificate",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::NamedCertificateSpec,
    responses((status = 201, description = "Declared; its first version", body = evergreen_api::Replacement))
)]
pub async fn create(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    JsonBody(spec): JsonBody<NamedCertificateSpec>,
) -> Result<(StatusCode, Json<Replacement>), ApiError> {
    let actor = caller.actor();
    let target = crate::text::bounded(&spec.name, 64);
    check_spec(&spec).map_err(|message| ApiError::bad_request(message).target(&target))?;
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    if state.store.named_by_name(&spec.name).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "{} already exists; use set, label or rotate to change it",
            spec.name
        ))
        .reason(Reason::Exists)
        .target(target));
    }
    let now = state.now().unix_timestamp();
    let secret = spec.secret.clone();
    let mut record = NamedRecord {
        name: spec.name.clone(),
        scope: spec.scope.to_string(),
        kind: spec.kind.to_string(),
        label: spec.label.clone(),
        internal: spec.internal,
        usage: spec.usage.to_string(),
        sans: spec.sans.clone(),
        nodes: spec.nodes.clone(),
        secret_path: secret.as_ref().map(|s| s.path.clone()),
        secret_keys: match &secret {
            Some(s) => [s.cert.clone(), s.key.clone(), s.cacert.clone()],
            None => ["cert".into(), "key".into(), "cacert".into()],
        },
        allowed_dns: spec.allowed_dns.clone(),
        allowed_cidrs: spec.allowed_cidrs.clone(),
        version: 0,
        created_at: now,
        updated_at: now,
    };
    let (version, material) = match record.kind.as_str() {
        "selfsigned" => {
            let (version, material) = regenerate(&state, &record, "created").await?;
            (Some(version), material)
        }
        "secret" => {
            let (cert, key) = read_secret(&record)?;
            let records = vec![record.clone()];
            let material = check_upload(&state, &records, &record.name, &cert, &key)
                .map_err(|e| e.reason(Reason::BadSecret).target(&record.name))?;
            let version = material.version(&state, &record.name, 1, "created from secret")?;
            (Some(version), Some(material))
        }
        _ => (None, None),
    };
    if version.is_some() {
        record.version = 1;
    }
    let detail = format!(
        "{} {} certificate, {} scope, version {}",
        record.kind, record.usage, record.scope, record.version
    );
    let mut writes = Writes::default();
    writes.push(
        NamedChange {
            record: record.clone(),
            new_version: version.clone(),
        },
        material,
    );
    writes.events.push(crate::audit::event(
        state.now(),
        &actor,
        "certificate.create",
        &record.name,
        "ok",
        &detail,
    ));
    writes.commit(&state, "certificate.create").await?;
    let answer = match &version {
        Some(v) => replacement(&state, &record, v).await?,
        None => Replacement {
            name: record.name.clone(),
            version: 0,
            fingerprint: None,
            not_after: None,
            clients_must_update_trust: false,
            trust: "no certificate yet: upload one with 'evergreen certificate set'".into(),
        },
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Validates every upload, then writes all of them in one transaction.
async fn set_all(
    state: &AppState,
    actor: &str,
    uploads: &[UpdateCert],
) -> Result<Vec<Replacement>, ApiError> {
    // `server`: the API listener's own certificate (Redis Enterprise's `api`).
    if uploads.iter().any(|u| u.name == "server") {
        let [upload] = uploads else {
            return Err(ApiError::bad_request(
                "set the server's API certificate on its own, not with other certificates",
            )
            .target("server"));
        };
        return Ok(vec![
            crate::api_cert::set(state, actor, &upload.certificate, &upload.key).await?,
        ]);
    }
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    let records = state.store.named().await?;
    let mut failures: Vec<ApiError> = Vec::new();
    let mut checked = Vec::new();
    for upload in uploads {
        match check_upload(
            state,
            &records,
            &upload.name,
            &upload.certificate,
            &upload.key,
        ) {
            Ok(material) => checked.push((upload.name.clone(), material)),
            Err(e) => failures.push(e),
        }
    }
    if uploads
        .iter()
        .enumerate()
        .any(|(i, u)| uploads[..i].iter().any(|p| p.name == u.name))
    {
        failures.push(ApiError::bad_request(
            "a certificate name appears twice in one request",
        ));
    }
    if let Some(first) = failures.first() {
        let message = if failures.len() == 1 {
            first.message.clone()
        } else {
            let all: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
            format!(
                "{} certificates refused, none changed: {}",
                failures.len(),
                all.join("; ")
            )
        };
        let target: Vec<String> = uploads
            .iter()
            .map(|u| crate::text::bounded(&u.name, 64))
            .collect();
        let reason = match first.status {
            StatusCode::FORBIDDEN => Reason::UnknownCertificate,
            StatusCode::NOT_ACCEPTABLE => Reason::Expired,
            _ => Reason::BadCertificate,
        };
        return Err(ApiError::new(first.status, message)
            .reason(reason)
            .target(target.join(",")));
    }
    let now = state.now().unix_timestamp();
    let mut writes = Writes::default();
    for (name, material) in checked {
        let Some(record) = records.iter().find(|r| r.name == name) else {
            continue;
        };
        let mut record = record.clone();
        record.version += 1;
        record.kind = "provided".into();
        record.updated_at = now;
        let version = material.version(state, &name, record.version, "set")?;
        writes.push(
            NamedChange {
                record,
                new_version: Some(version),
            },
            Some(material),
        );
    }
    save_and_answer(state, actor, "certificate.set", writes).await
}

/// Answers each new version with its trust decision, audits it, and commits all of it as
/// one change.
async fn save_and_answer(
    state: &AppState,
    actor: &str,
    action: &str,
    mut writes: Writes,
) -> Result<Vec<Replacement>, ApiError> {
    let mut answers = Vec::new();
    for change in &writes.changes {
        let Some(version) = &change.new_version else {
            continue;
        };
        let answer = replacement(state, &change.record, version).await?;
        let detail = format!(
            "version {} ({}); {}",
            answer.version,
            answer.fingerprint.clone().unwrap_or_default(),
            answer.trust
        );
        writes.events.push(crate::audit::event(
            state.now(),
            actor,
            action,
            &change.record.name,
            "ok",
            &detail,
        ));
        answers.push(answer);
    }
    for own in &writes.own {
        let info = own.info().map_err(ApiError::internal)?;
        let ca = if own.role == Role::Server {
            SERVER_CA
        } else {
            CLIENT_CA
        };
        let detail = format!("new key and certificate {}", info.fingerprint);
        writes.events.push(crate::audit::event(
            state.now(),
            actor,
            action,
            own.name,
            "ok",
            &detail,
        ));
        answers.push(Replacement {
            name: own.name.to_owned(),
            version: 0,
            fingerprint: Some(info.fingerprint.to_string()),
            not_after: Some(rfc3339(info.not_after.unix_timestamp())),
            clients_must_update_trust: false,
            trust: format!("issued by {ca}, as before; {detail}"),
        });
    }
    writes.commit(state, action).await?;
    Ok(answers)
}

#[utoipa::path(
    put,
    path = "/v1/cluster/update_cert",
    tag = "named",
    operation_id = "update_cert",
    summary = "Replace one certificate (Redis Enterprise compatible)",
    description = r#"PEM key and certificate; Redis' `sed` escaping (a backslash before a line break) is accepted. 403 unknown name, 400 malformed or mismatched, 406 expired."#,
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::UpdateCert,
    responses((status = 200, description = "The new version", body = evergreen_api::Replacement))
)]
/// Redis Enterprise's `PUT /v1/cluster/update_cert`.
pub async fn update_cert(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    JsonBody(upload): JsonBody<UpdateCert>,
) -> Result<Json<Replacement>, ApiError> {
    let mut answers = set_all(&state, &caller.actor(), std::slice::from_ref(&upload)).await?;
    answers
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::internal("no answer"))
}

#[utoipa::path(
    put,
    path = "/v1/cluster/certificates",
    tag = "named",
    operation_id = "update_certs",
    summary = "Replace several certificates; all are checked before any changes",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::UpdateCerts,
    responses((status = 200, description = "The new versions", body = Vec<evergreen_api::Replacement>))
)]
pub async fn update_certs(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    JsonBody(uploads): JsonBody<UpdateCerts>,
) -> Result<Json<Vec<Replacement>>, ApiError> {
    Ok(Json(
        set_all(&state, &caller.actor(), &uploads.certificates).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/cluster/certificates/rotate",
    tag = "named",
    operation_id = "named_rotate",
    summary = "Regenerate selfsigned certificates (the names given, or all)",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::RotateRequest,
    responses((status = 200, description = "The new versions", body = Vec<evergreen_api::Replacement>))
)]
/// Regenerates selfsigned certificates: the names given, or every selfsigned one.
pub async fn rotate(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    JsonBody(request): JsonBody<RotateRequest>,
) -> Result<Json<Vec<Replacement>>, ApiError> {
    let actor = caller.actor();
    let guard = state.store.lock(evergreen_store::Job::Named).await?;
    let records = state.store.named().await?;
    let selected: Vec<&NamedRecord> = if request.names.is_empty() {
        records.iter().filter(|r| r.kind == "selfsigned").collect()
    } else {
        let mut selected = Vec::new();
        for name in &request.names {
            if BUILT_IN.contains(&name.as_str()) {
                continue;
            }
            match records.iter().find(|r| &r.name == name) {
                None => {
                    return Err(ApiError::bad_request(format!(
                        "no named certificate {:?}; valid names: {}, and the built-in server, admin",
                        crate::text::bounded(name, 64),
                        known_names(&records)
                    ))
                    .reason(Reason::UnknownCertificate)
                    .target(crate::text::bounded(name, 64)));
                }
                Some(r) if r.kind != "selfsigned" => {
                    return Err(ApiError::bad_request(format!(
                        "{name} is {}: replace it with 'evergreen certificate set' instead",
                        r.kind
                    ))
                    .reason(Reason::NotSelfsigned)
                    .target(name));
                }
                Some(r) => selected.push(r),
            }
        }
        selected
    };
    let mut writes = Writes::default();
    for record in selected {
        regenerated(&state, record, "rotate", &mut writes).await?;
    }
    let built_in: Vec<&str> = BUILT_IN
        .into_iter()
        .filter(|b| request.names.is_empty() || request.names.iter().any(|n| n == b))
        .collect();
    let answers = rotate_with_built_in(&state, &actor, &built_in, writes).await?;
    drop(guard);
    Ok(Json(answers))
}

/// Commits `writes` together with new keys and certificates for the server's own
/// certificates named in `built_in` (`server`, `admin`): their files are replaced and the
/// next handshake uses the new serving certificate, in the same change. The previous ones
/// stay in the inventory, superseded. The caller holds the [`evergreen_store::Job::Named`]
/// lock.
async fn rotate_with_built_in(
    state: &AppState,
    actor: &str,
    built_in: &[&str],
    mut writes: Writes,
) -> Result<Vec<Replacement>, ApiError> {
    let _checks = state.store.lock(evergreen_store::Job::Checks).await?;
    let cluster = state.cluster.load_full();
    writes.own = state
        .own_due(&cluster, built_in, actor)
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|own| built_in.contains(&own.name))
        .collect();
    save_and_answer(state, actor, "certificate.rotate", writes).await
}

/// Replaces the serving certificate with a new key and certificate, as `evergreen
/// certificate rotate server` does; what revoking the serving certificate does first.
pub(crate) async fn rotate_serving(state: &AppState, actor: &str) -> Result<(), ApiError> {
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    rotate_with_built_in(state, actor, &["server"], Writes::default()).await?;
    Ok(())
}

#[utoipa::path(
    put,
    path = "/v1/cluster/certificates/{name}/label",
    tag = "named",
    operation_id = "named_label",
    summary = "Set a label; a new label regenerates a selfsigned certificate and re-reads a secret",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::LabelRequest,
    params(("name" = String, Path, description = "The named certificate")),
    responses((status = 200, description = "The current version", body = evergreen_api::Replacement))
)]
/// Sets a label; a new, different label regenerates a selfsigned certificate (Event
/// Streams' way to ask for a new certificate).
pub async fn label(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<LabelRequest>,
) -> Result<Json<Replacement>, ApiError> {
    let actor = caller.actor();
    let target = crate::text::bounded(&name, 64);
    valid_label(&request.label)
        .map_err(|message| ApiError::bad_request(message).target(&target))?;
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    let records = state.store.named().await?;
    let Some(record) = records.iter().find(|r| r.name == name) else {
        return Err(ApiError::not_found(format!(
            "no named certificate {target:?}; known: {}",
            known_names(&records)
        ))
        .reason(Reason::UnknownCertificate)
        .target(target));
    };
    let current = match record.version {
        0 => None,
        v => state.store.named_version(&name, v).await?,
    };
    if record.label == request.label {
        return Ok(Json(Replacement {
            name,
            version: record.version,
            fingerprint: current.as_ref().and_then(|v| v.fingerprint.clone()),
            not_after: current.as_ref().and_then(|v| v.not_after).map(rfc3339),
            clients_must_update_trust: false,
            trust: "the label is unchanged, so nothing was regenerated".into(),
        }));
    }
    let mut updated = record.clone();
    updated.label = request.label.clone();
    updated.updated_at = state.now().unix_timestamp();
    let reason = format!("label {}", request.label);
    let (version, material) = match record.kind.as_str() {
        "selfsigned" => {
            let (version, material) = regenerate(&state, record, &reason).await?;
            updated.version = version.version;
            (Some(version), material)
        }
        // A label change is the operator's word that the secret changed: read it now.
        "secret" => match secret_version(&state, record, current.as_ref(), &reason)? {
            Some((version, material)) => {
                updated.version = version.version;
                (Some(version), Some(material))
            }
            None => (None, None),
        },
        _ => (None, None),
    };
    let detail = format!("label {:?} -> {:?}", record.label, request.label);
    let mut writes = Writes::default();
    writes.push(
        NamedChange {
            record: updated.clone(),
            new_version: version.clone(),
        },
        material,
    );
    writes.events.push(crate::audit::event(
        state.now(),
        &actor,
        "certificate.label",
        &name,
        "ok",
        &detail,
    ));
    writes.commit(&state, "certificate.label").await?;
    match version {
        Some(v) => Ok(Json(replacement(&state, &updated, &v).await?)),
        None => Ok(Json(Replacement {
            name,
            version: updated.version,
            fingerprint: current.as_ref().and_then(|v| v.fingerprint.clone()),
            not_after: current.as_ref().and_then(|v| v.not_after).map(rfc3339),
            clients_must_update_trust: false,
            trust: if record.kind == "secret" {
                "label recorded; the secret directory was read again and holds the current certificate".into()
            } else {
                format!(
                    "label recorded; a {} certificate is not regenerated, set a new one to replace it",
                    record.kind
                )
            },
        })),
    }
}

#[utoipa::path(
    post,
    path = "/v1/nodes/{node}/bundle",
    tag = "nodes",
    operation_id = "node_bundle",
    summary = "A node certificate and key made by the server, for a runtime without an agent",
    security(("mtls" = ["admin"])),
    params(("node" = String, Path, description = "The node name")),
    responses((status = 201, description = "Issued", body = evergreen_api::NodeBundle))
)]
/// A node credential (certificate, key, CA) made by the server, for a runtime that runs no
/// agent: Konnect's "Generate certificate".
pub async fn node_bundle(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    Path(node): Path<String>,
    _: crate::error::NoBody,
) -> Result<(StatusCode, Json<NodeBundle>), ApiError> {
    crate::enrollment::check_node_name(&node).map_err(|message| {
        ApiError::bad_request(message).target(crate::text::bounded(&node, 64))
    })?;
    let key = PrivateKey::generate(KeyType::EcP256).map_err(ApiError::internal)?;
    let request = IssueRequest {
        subject: DistinguishedName::common_name(&node),
        subject_alt_names: vec![],
        public_key: key.public_key(),
        profile: Profile::Client,
        validity: state.settings.node_validity,
    };
    let how = Issuance {
        ca: CLIENT_CA,
        role: Role::Node,
        owner: format!("bundle by {}", caller.record.subject),
        renewed_from: None,
        actor: caller.actor(),
        action: "node.bundle",
    };
    let (issued, _) = state.issue(&request, how).await?;
    let ca = state.cluster.load().client_ca.bundle_pem();
    let leaf = pem::encode("CERTIFICATE", &issued.der);
    Ok((
        StatusCode::CREATED,
        Json(NodeBundle {
            crt: encode_pem(&format!("{leaf}{ca}")),
            key: encode_pem(&key.to_pem()),
            ca_crt: encode_pem(&ca),
        }),
    ))
}

/// Re-reads every `secret` certificate and makes a new version when its files changed.
pub async fn refresh_secrets(state: &AppState) -> Result<(), ApiError> {
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    let records = state.store.named().await?;
    let mut writes = Writes::default();
    for record in records.iter().filter(|r| r.kind == "secret") {
        let current = state
            .store
            .named_version(&record.name, record.version)
            .await?;
        let (version, material) = match secret_version(
            state,
            record,
            current.as_ref(),
            "secret changed",
        ) {
            Ok(Some(new)) => new,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(name = %record.name, error = %e.message, "cannot use the secret directory; keeping the current version");
                continue;
            }
        };
        let mut updated = record.clone();
        updated.version = version.version;
        updated.updated_at = state.now().unix_timestamp();
        writes.events.push(crate::audit::event(
            state.now(),
            "server",
            "certificate.secret",
            &record.name,
            "ok",
            "new version from the secret directory",
        ));
        writes.push(
            NamedChange {
                record: updated,
                new_version: Some(version),
            },
            Some(material),
        );
    }
    if !writes.changes.is_empty() {
        writes.commit(state, "certificate.secret").await?;
    }
    Ok(())
}

/// Why a cluster-scope selfsigned certificate must be re-issued now, if it must: expired,
/// inside the renewal window, naming other SANs than its definition, or not issued by
/// its usage's current CA (after a CA rotation).
fn renewal_reason(
    state: &AppState,
    record: &NamedRecord,
    version: &NamedVersion,
) -> Option<Reissue> {
    let chain =
        pem::parse_certificates(&record.name, version.chain_pem.as_deref()?.as_bytes()).ok()?;
    let (_, ca) = usage(&record.usage).ok()?;
    let cluster = state.cluster.load();
    let current_ca = cluster.ca(ca)?;
    let wanted: Vec<SubjectAltName> = record.sans.iter().filter_map(|s| s.parse().ok()).collect();
    state.settings.renewal.reissue(
        &chain[0],
        Some(current_ca.certificate()),
        Some(&wanted),
        state.now(),
    )
}

/// Re-issues every cluster-scope selfsigned certificate that needs it (see
/// [`renewal_reason`]) as a new version, which watching agents install.
pub async fn renew_due(state: &AppState) -> Result<(), ApiError> {
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    let mut writes = Writes::default();
    for record in state.store.named().await? {
        if record.kind != "selfsigned" || record.scope != "cluster" || record.version == 0 {
            continue;
        }
        let Some(current) = state
            .store
            .named_version(&record.name, record.version)
            .await?
        else {
            continue;
        };
        let Some(reason) = renewal_reason(state, &record, &current) else {
            continue;
        };
        regenerated(state, &record, &format!("renewal: {reason}"), &mut writes).await?;
    }
    if !writes.changes.is_empty() {
        save_and_answer(state, "server", "certificate.renew", writes).await?;
    }
    Ok(())
}

#[utoipa::path(
    put,
    path = "/v1/cluster/certificates/{name}/type",
    tag = "named",
    operation_id = "named_type",
    summary = "Switch a named certificate's type (selfsigned, provided, secret)",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::TypeRequest,
    params(("name" = String, Path, description = "The named certificate")),
    responses((status = 200, description = "The current version", body = evergreen_api::Replacement))
)]
/// `PUT /v1/cluster/certificates/{name}/type`: switches a named certificate to another
/// type, as Event Streams lets one move between a provided certificate and a generated
/// one. `selfsigned` issues a new version now; `secret` reads the directory now;
/// `provided` keeps the current version until a certificate is set.
pub async fn set_type(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<TypeRequest>,
) -> Result<Json<Replacement>, ApiError> {
    let target = crate::text::bounded(&name, 64);
    if name == "server" {
        return match request.kind {
            Kind::Selfsigned => Ok(Json(crate::api_cert::clear(&state, &caller.actor()).await?)),
            _ => Err(ApiError::bad_request(
                "the server's API certificate is the cluster's (selfsigned) or one you set with `evergreen certificate set server --cert … --key …`",
            )
            .target("server")),
        };
    }
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    let records = state.store.named().await?;
    let Some(record) = records.iter().find(|r| r.name == name) else {
        return Err(unknown_named(&target, &records));
    };
    let secret = request.secret.clone().or_else(|| {
        record.secret_path.as_ref().map(|path| SecretRef {
            path: path.clone(),
            cert: record.secret_keys[0].clone(),
            key: record.secret_keys[1].clone(),
            cacert: record.secret_keys[2].clone(),
        })
    });
    let spec = NamedCertificateSpec {
        name: record.name.clone(),
        scope: stored(&record.scope)?,
        kind: request.kind,
        label: record.label.clone(),
        internal: record.internal,
        usage: stored(&record.usage)?,
        sans: record.sans.clone(),
        nodes: record.nodes.clone(),
        secret: secret.clone().filter(|_| request.kind == Kind::Secret),
        allowed_dns: record.allowed_dns.clone(),
        allowed_cidrs: record.allowed_cidrs.clone(),
    };
    check_spec(&spec).map_err(|message| ApiError::bad_request(message).target(&target))?;
    let current = match record.version {
        0 => None,
        v => state.store.named_version(&name, v).await?,
    };
    if record.kind == request.kind.as_str()
        && request.secret.is_none()
        && request.kind != Kind::Secret
    {
        return Ok(Json(Replacement {
            name,
            version: record.version,
            fingerprint: current.as_ref().and_then(|v| v.fingerprint.clone()),
            not_after: current.as_ref().and_then(|v| v.not_after).map(rfc3339),
            clients_must_update_trust: false,
            trust: format!("already {}; nothing changed", record.kind),
        }));
    }
    let mut updated = record.clone();
    updated.kind = request.kind.to_string();
    if let Some(secret) = spec.secret.as_ref() {
        updated.secret_path = Some(secret.path.clone());
        updated.secret_keys = [
            secret.cert.clone(),
            secret.key.clone(),
            secret.cacert.clone(),
        ];
    }
    updated.updated_at = state.now().unix_timestamp();
    let reason = format!("type {}", request.kind);
    let (version, material) = match request.kind {
        Kind::Selfsigned => {
            let (version, material) = regenerate(&state, &updated, &reason).await?;
            (Some(version), material)
        }
        Kind::Secret => match secret_version(&state, &updated, current.as_ref(), &reason)? {
            Some((version, material)) => (Some(version), Some(material)),
            None => (None, None),
        },
        Kind::Provided => (None, None),
    };
    if let Some(v) = &version {
        updated.version = v.version;
    }
    let mut writes = Writes::default();
    writes.push(
        NamedChange {
            record: updated.clone(),
            new_version: version.clone(),
        },
        material,
    );
    writes.events.push(crate::audit::event(
        state.now(),
        &caller.actor(),
        "certificate.type",
        &name,
        "ok",
        &format!("type {} -> {}", record.kind, request.kind),
    ));
    writes.commit(&state, "certificate.type").await?;
    match version {
        Some(v) => Ok(Json(replacement(&state, &updated, &v).await?)),
        None => Ok(Json(Replacement {
            name,
            version: updated.version,
            fingerprint: current.as_ref().and_then(|v| v.fingerprint.clone()),
            not_after: current.as_ref().and_then(|v| v.not_after).map(rfc3339),
            clients_must_update_trust: false,
            trust: match request.kind {
                Kind::Secret => "the secret directory holds the current certificate; it is read again when it changes".into(),
                _ => "now provided: the current version stays installed until a certificate is set (evergreen certificate set)".into(),
            },
        })),
    }
}

#[utoipa::path(
    delete,
    path = "/v1/cluster/certificates/{name}",
    tag = "named",
    operation_id = "named_delete",
    summary = "Delete a named certificate; what was issued for it is revoked and nodes remove its files",
    security(("mtls" = ["admin"])),
    params(("name" = String, Path, description = "The named certificate")),
    responses((status = 200, description = "Deleted", body = evergreen_api::NamedDeletion))
)]
/// `DELETE /v1/cluster/certificates/{name}`: removes a named certificate. What this
/// cluster issued for it and is still live is revoked (cessation of operation) in the same
/// change, and nodes remove the files they installed for it at their next watch.
pub async fn delete(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    Path(name): Path<String>,
    _: crate::error::NoBody,
) -> Result<Json<NamedDeletion>, ApiError> {
    const ACTION: &str = "certificate.delete";
    let target = crate::text::bounded(&name, 64);
    if BUILT_IN.contains(&name.as_str()) {
        return Err(ApiError::bad_request(format!(
            "{name} is the server's own certificate and cannot be deleted; rotate it instead"
        ))
        .target(target));
    }
    let _guard = state.store.lock(evergreen_store::Job::Named).await?;
    let records = state.store.named().await?;
    let Some(record) = records.iter().find(|r| r.name == name) else {
        return Err(unknown_named(&target, &records));
    };
    // Every fingerprint it was known by: its versions, and what nodes installed.
    let mut fingerprints = Vec::new();
    for v in 1..=record.version {
        if let Some(f) = state
            .store
            .named_version(&name, v)
            .await?
            .and_then(|v| v.fingerprint)
        {
            fingerprints.push(f);
        }
    }
    for ack in state.store.acknowledgements().await? {
        if ack.name == name {
            fingerprints.push(ack.fingerprint);
        }
    }
    let now = state.now().unix_timestamp();
    let mut live = Vec::new();
    for fingerprint in fingerprints {
        if let Some(c) = state.store.certificate_by_sha256(&fingerprint).await?
            && c.is_live(now)
            && !live.contains(&c.serial)
        {
            live.push(c.serial);
        }
    }
    let _crls = state.store.lock(evergreen_store::Job::Crls).await?;
    let mut tx = state.store.begin().await?;
    let revision = tx.delete_named(&name).await?;
    let serials: Vec<&str> = live.iter().map(String::as_str).collect();
    let revoked: Vec<String> = state
        .revoke_in(
            tx.as_mut(),
            &serials,
            RevocationReason::CessationOfOperation,
        )
        .await?
        .into_iter()
        .filter_map(|o| match o {
            RevokeOutcome::Revoked(r) => Some(r.serial),
            _ => None,
        })
        .collect();
    tx.audit(&crate::audit::event(
        state.now(),
        &caller.actor(),
        ACTION,
        &name,
        "ok",
        &format!(
            "deleted the {} certificate {name}; revoked {} certificate(s) issued for it",
            record.kind,
            revoked.len()
        ),
    ))
    .await?;
    let mut change = crate::change::Live::default();
    if !revoked.is_empty() {
        change.crls = Some(state.crls_after_revocation(tx.as_mut()).await?);
    }
    crate::state::passed(&state, ACTION, "written")?;
    state.go_live_and_commit(ACTION, tx, change).await?;
    state.advance_revision(revision);
    Ok(Json(NamedDeletion { name, revoked }))
}

/// The 404 for a name no named certificate has.
fn unknown_named(target: &str, records: &[NamedRecord]) -> ApiError {
    ApiError::not_found(format!(
        "no named certificate {target:?}; known: {}",
        known_names(records)
    ))
    .reason(Reason::UnknownCertificate)
    .target(target)
}
