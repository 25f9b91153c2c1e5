//! Rotation while everything runs: the cluster's CAs from a staged directory
//! (`PUT /v1/ca/rotate`, k3s's `certificate rotate-ca`) and the service-account keys.
//!
//! A CA rotation keeps every replaced CA as a retired one: still in the trust bundle, its
//! leaves still authenticate and stay revocable, so nothing breaks while leaves move to
//! the new CA as they renew. The server's own and named certificates move at once.
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use evergreen_api::{CaRotateRequest, CaRotation, Jwks, STAGED_CA_FILES, ServiceKeyRotation};
use evergreen_pki::integrity::{IntegrityReport, StagedCa};
use evergreen_pki::service_keys::{ServiceKeys, jwk, key_id};
use evergreen_pki::{
    CertificateAuthority, CertificateDer, Fingerprint, KeyType, OffsetDateTime, PrivateKey, pem,
};
use evergreen_store::{AuditEvent, CaRecord, Rotation};
use serde::Deserialize;

use crate::auth::{Admin, Caller};
use crate::bootstrap::{SERVICE_KEYS, seal_ca_key, seal_service_keys};
use crate::error::{ApiError, JsonBody, QueryOf};
use crate::state::{AppState, Cluster, ROLE_CAS, ROOT_CA, RetiredCa};

type AppStateRef = State<Arc<AppState>>;

/// A staged CA: its bundle (from `<name>.crt`) and key (from `<name>.key`), each when
/// staged.
#[derive(Debug, Default)]
struct StagedFiles {
    bundle: Option<Vec<CertificateDer<'static>>>,
    key: Option<PrivateKey>,
}

/// The decoded staged directory. Decoding errors are never skipped by `force`.
#[derive(Debug, Default)]
struct Staged {
    cas: BTreeMap<&'static str, StagedFiles>,
    service_keys: Option<ServiceKeys>,
}

impl Staged {
    fn decode(files: &BTreeMap<String, String>) -> Result<Self, String> {
        if let Some(unknown) = files
            .keys()
            .find(|f| !STAGED_CA_FILES.contains(&f.as_str()))
        {
            return Err(format!(
                "{unknown:?} is not a file of a staged CA directory; expected any of {}",
                STAGED_CA_FILES.join(", ")
            ));
        }
        let text = |name: &str| files.get(name).filter(|t| !t.trim().is_empty());
        let mut staged = Staged::default();
        for ca in std::iter::once(ROOT_CA).chain(ROLE_CAS) {
            let cert_file = format!("{ca}.crt");
            let key_file = format!("{ca}.key");
            let bundle = text(&cert_file)
                .map(|t| pem::parse_certificates(&cert_file, t.as_bytes()))
                .transpose()
                .map_err(|e| e.to_string())?;
            let key = text(&key_file)
                .map(|t| PrivateKey::from_pem(&key_file, t.as_bytes()))
                .transpose()
                .map_err(|e| e.to_string())?;
            if bundle.is_some() || key.is_some() {
                staged.cas.insert(ca, StagedFiles { bundle, key });
            }
        }
        staged.service_keys = text("service.key")
            .map(|t| ServiceKeys::from_pem("service.key", t.as_bytes()))
            .transpose()
            .map_err(|e| e.to_string())?;
        if staged.cas.is_empty() && staged.service_keys.is_none() {
            return Err(format!(
                "nothing is staged: the directory holds none of {} (or only empty files)",
                STAGED_CA_FILES.join(", ")
            ));
        }
        Ok(staged)
    }

    /// Every staged certificate: the pool cross-signed certificates are looked for in.
    fn pool(&self) -> Vec<CertificateDer<'static>> {
        self.cas
            .values()
            .filter_map(|s| s.bundle.as_ref())
            .flatten()
            .cloned()
            .collect()
    }

    /// The staged root, when it differs from the current one.
    fn new_root(&self, cluster: &Cluster) -> Option<&CertificateDer<'static>> {
        let root = self.cas.get(ROOT_CA)?.bundle.as_ref()?.first()?;
        (root != &cluster.root).then_some(root)
    }

    /// The role CAs whose staged certificate differs from the current one.
    fn changed_roles<'a>(&'a self, cluster: &Cluster) -> Vec<(&'static str, &'a StagedFiles)> {
        ROLE_CAS
            .iter()
            .filter_map(|role| {
                let staged = self.cas.get(role)?;
                let first = staged.bundle.as_ref()?.first()?;
                let current = cluster.ca(role)?.certificate();
                (first != current).then_some((*role, staged))
            })
            .collect()
    }

    /// Every integrity check, every failure kept.
    fn check(&self, cluster: &Cluster, now: OffsetDateTime) -> IntegrityReport {
        let mut report = IntegrityReport::new();
        let current_roots = std::slice::from_ref(&cluster.root);
        let pool = self.pool();
        let new_root = self.new_root(cluster);
        if let Some(root) = new_root {
            let key = self.cas.get(ROOT_CA).and_then(|s| s.key.as_ref());
            report.check_root(
                "root-ca.crt",
                "root-ca.key",
                root,
                key,
                &pool,
                current_roots,
                now,
            );
        }
        let changed = self.changed_roles(cluster);
        for (ca, staged) in &self.cas {
            let (cert_file, key_file) = (format!("{ca}.crt"), format!("{ca}.key"));
            match (&staged.bundle, &staged.key) {
                (Some(bundle), key) if changed.iter().any(|(role, _)| role == ca) => {
                    report.check_ca(
                        &StagedCa {
                            cert_file: &cert_file,
                            key_file: &key_file,
                            bundle,
                            key: key.as_ref(),
                        },
                        current_roots,
                        now,
                    );
                }
                // A key without its certificate must belong to the current CA.
                (None, Some(key)) => {
                    if let Some((current, _)) = cluster.generations(ca).next()
                        && !key.matches_certificate(current).unwrap_or(false)
                    {
                        report.fail(
                            &key_file,
                            None,
                            format!(
                                "does not match the current {ca}, and no {cert_file} is staged with it"
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
        if new_root.is_some() {
            for role in ROLE_CAS {
                if !changed.iter().any(|(r, _)| *r == role) {
                    report.fail(
                        &format!("{role}.crt"),
                        None,
                        "is not staged, but the root changes: the current role CA chains only to the old root; stage a new one under the new root (evergreen ca generate --cross-sign-from makes all of them)".into(),
                    );
                }
            }
        }
        if let Some(staged) = &self.service_keys {
            report.check_service_keys(
                "service.key",
                &cluster.service_keys.signer().public_key(),
                &staged.public_keys(),
            );
        }
        report
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateParams {
    #[serde(default)]
    force: bool,
}

/// `PUT /v1/ca/rotate?force=BOOL`.
pub async fn rotate_ca(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    QueryOf(params): QueryOf<RotateParams>,
    JsonBody(request): JsonBody<CaRotateRequest>,
) -> Result<Json<CaRotation>, ApiError> {
    const ACTION: &str = "ca.rotate";
    let actor = caller.actor();
    let _guard = state.store.lock(evergreen_store::Job::Rotation).await?;
    let now = state.now();
    let cluster = stored_cluster(&state).await?;

    let staged = match Staged::decode(&request.files) {
        Ok(staged) => staged,
        Err(message) => return Err(ApiError::bad_request(message).reason("malformed")),
    };
    let report = staged.check(&cluster, now);
    let forced_past: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    if !report.failures.is_empty() && !params.force {
        return Err(ApiError::bad_request(format!(
            "{report}\nNothing was changed. Fix the staged files, or pass --force to rotate anyway"
        ))
        .reason("integrity"));
    }

    let mut rotation = Rotation {
        cas: Vec::new(),
        meta: Vec::new(),
        event: AuditEvent {
            at: now.unix_timestamp(),
            actor: actor.clone(),
            action: ACTION.into(),
            target: String::new(),
            outcome: "ok".into(),
            detail: String::new(),
        },
    };
    let mut rotated = Vec::new();
    let seal = |name: &str, key: &PrivateKey| {
        seal_ca_key(&state.sealing, name, key).map_err(ApiError::internal)
    };
    if let Some(root) = staged.new_root(&cluster) {
        let key = staged.cas.get(ROOT_CA).and_then(|s| s.key.as_ref());
        rotation.cas.push((
            CaRecord {
                name: ROOT_CA.into(),
                bundle_pem: pem::encode("CERTIFICATE", root),
                sealed_key: key.map(|k| seal(ROOT_CA, k)).transpose()?,
                updated_at: now.unix_timestamp(),
            },
            RetiredCa::name_for(ROOT_CA, &cluster.root),
        ));
        rotated.push(ROOT_CA.to_owned());
    }
    for (role, files) in staged.changed_roles(&cluster) {
        let (Some(bundle), Some(key)) = (&files.bundle, &files.key) else {
            // Even forced, a CA without its key cannot issue.
            return Err(ApiError::bad_request(format!(
                "{role}.crt is staged without {role}.key; a role CA needs its key to issue"
            ))
            .reason("missing_key")
            .target(role));
        };
        if let Err(e) = CertificateAuthority::from_parts(
            bundle.clone(),
            key.try_clone().map_err(ApiError::internal)?,
        ) {
            return Err(
                ApiError::bad_request(format!("{role}.crt cannot be used as a CA: {e}"))
                    .reason("unusable_ca")
                    .target(role),
            );
        }
        let current = cluster
            .ca(role)
            .ok_or_else(|| ApiError::internal(format!("no current {role}")))?;
        rotation.cas.push((
            CaRecord {
                name: role.into(),
                bundle_pem: pem::encode_certificates(bundle),
                sealed_key: Some(seal(role, key)?),
                updated_at: now.unix_timestamp(),
            },
            RetiredCa::name_for(role, current.certificate()),
        ));
        rotated.push(role.to_owned());
    }
    if let Some(keys) = &staged.service_keys {
        rotation.meta.push((
            SERVICE_KEYS.into(),
            seal_service_keys(&state.sealing, keys).map_err(ApiError::internal)?,
        ));
        rotated.push("service-account keys".into());
    }
    if rotation.cas.is_empty() && rotation.meta.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to rotate: every staged certificate is the current one",
        )
        .reason("unchanged"));
    }
    rotation.event.target = rotated.join(", ");
    rotation.event.detail = if forced_past.is_empty() {
        "every integrity check passed".into()
    } else {
        format!(
            "FORCED past {} failed integrity check(s): {}",
            forced_past.len(),
            forced_past.join("; ")
        )
    };
    let revision = state.store.rotate(&rotation).await?;
    let cluster = make_live(&state, stored_cluster(&state).await?, true)
        .await
        .map_err(ApiError::internal)?;
    state.advance_revision(revision);
    let root_sha256 = Fingerprint::of(&cluster.root);
    if !forced_past.is_empty() {
        tracing::warn!(
            rotated = %rotated.join(", "),
            "CA rotation forced past {} failed integrity check(s)",
            forced_past.len()
        );
    }
    tracing::info!(rotated = %rotated.join(", "), revision, "CAs rotated");
    Ok(Json(CaRotation {
        revision,
        rotated,
        forced_past,
        root_sha256: root_sha256.to_string(),
        trust_bundle_certificates: cluster.trust_bundle().len(),
    }))
}

/// Makes a cluster read from the datastore after a rotation live in this server: serves
/// its CRLs (signing them when `publish`, else taking those the rotating replica
/// published), rewrites the CLI's trust bundle, re-issues the server's own and named
/// certificates under the new CAs and, when the root changed, re-pins the token files.
pub(crate) async fn make_live(
    state: &AppState,
    cluster: Cluster,
    publish: bool,
) -> anyhow::Result<Arc<Cluster>> {
    let previous_root = Fingerprint::of(&state.cluster.load().root);
    let cluster = Arc::new(cluster);
    state.cluster.store(cluster.clone());
    // The CLI's trust bundle first: it lists the new CAs before anything is issued by them.
    evergreen_api::files::replace(
        &state.paths.ca_bundle(),
        pem::encode_certificates(&cluster.trust_bundle()).as_bytes(),
        evergreen_api::files::PUBLIC_MODE,
    )?;
    if publish {
        state.publish_crls().await?;
    } else {
        state.adopt_crls().await?;
    }
    crate::run_checks(state).await?;
    let root = Fingerprint::of(&cluster.root);
    if root != previous_root {
        crate::bootstrap::repin_token_files(&state.paths, root)?;
    }
    Ok(cluster)
}

/// The cluster as the datastore holds it: under the rotation lock it is what another
/// replica may just have changed, whatever this server has loaded so far.
async fn stored_cluster(state: &AppState) -> Result<Cluster, ApiError> {
    crate::bootstrap::load_cluster(state.store.as_ref(), &state.sealing)
        .await
        .map_err(ApiError::internal)
}

/// `GET /v1/keys/service-account`: the JWKS, for anyone (public keys only).
pub async fn jwks(State(state): AppStateRef) -> Result<Json<Jwks>, ApiError> {
    let cluster = state.cluster.load();
    let keys = cluster
        .service_keys
        .public_keys()
        .iter()
        .map(|k| {
            jwk(k).map(|members| {
                members
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect()
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Jwks { keys }))
}

/// `POST /v1/keys/service-account/rotate`: a new signing key first, or with `retire`
/// one key removed.
pub async fn rotate_service_keys(
    State(state): AppStateRef,
    caller: Caller<Admin>,
    JsonBody(request): JsonBody<ServiceKeyRotation>,
) -> Result<Json<Jwks>, ApiError> {
    const ACTION: &str = "keys.rotate";
    let actor = caller.actor();
    let guard = state.store.lock(evergreen_store::Job::Rotation).await?;
    let cluster = stored_cluster(&state).await?;
    let (keys, detail) = match &request.retire {
        Some(kid) => match cluster.service_keys.retired(kid) {
            Ok(keys) => (keys, format!("retired {kid}")),
            Err(message) => {
                return Err(ApiError::bad_request(message)
                    .reason("retire")
                    .target("service-account"));
            }
        },
        None => {
            let key_type: KeyType = match request.key_type.as_deref().unwrap_or("ec-p256").parse() {
                Ok(KeyType::Ed25519) | Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "service-account key type {:?} is not supported; use ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096",
                        crate::audit::bounded(request.key_type.as_deref().unwrap_or_default(), 40)
                    ))
                    .reason("key_type")
                    .target("service-account"));
                }
                Ok(key_type) => key_type,
            };
            let keys = cluster
                .service_keys
                .rotated(key_type)
                .map_err(ApiError::internal)?;
            let kid = key_id(&keys.signer().public_key());
            (
                keys,
                format!("new signing key {kid} ({key_type}); older keys kept"),
            )
        }
    };
    let event = AuditEvent {
        at: state.now().unix_timestamp(),
        actor,
        action: ACTION.into(),
        target: "service-account".into(),
        outcome: "ok".into(),
        detail,
    };
    state
        .store
        .put_meta(
            SERVICE_KEYS,
            &seal_service_keys(&state.sealing, &keys).map_err(ApiError::internal)?,
            &event,
        )
        .await?;
    state.cluster.store(Arc::new(stored_cluster(&state).await?));
    drop(guard);
    jwks(State(state)).await
}
