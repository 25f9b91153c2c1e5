//! Rotation while everything runs: the cluster's CAs from a staged directory
//! (`PUT /v1/ca/rotate`, k3s's `certificate rotate-ca`) and the service-account keys.
//!
//! A CA rotation keeps every replaced CA as a retired one: still in the trust bundle, its
//! leaves still authenticate and stay revocable, so nothing breaks while leaves move to
//! the new CA as they renew. The server's own and named certificates move at once.
//!
//! Each rotation is one change ([`crate::change`]): checked, the new CAs' keys sealed,
//! their CRLs signed and the server's own certificates issued under them, all before it
//! commits; a failure at any step leaves everything as it was.
use evergreen_api::query::RotateParams;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use evergreen_api::{CaRotateRequest, CaRotation, Jwks, ServiceKeyRotation};
use evergreen_pki::integrity::{IntegrityReport, StagedCa};
use evergreen_pki::service_keys::{ServiceKeys, jwk, key_id};
use evergreen_pki::staged::{Staged, StagedCa as StagedFiles};
use evergreen_pki::{
    CertificateAuthority, CertificateDer, Fingerprint, KeyType, OffsetDateTime, pem,
};
use evergreen_store::{AuditEvent, CaRecord, Rotation};

use crate::auth::{Admin, Caller};
use crate::bootstrap::{SERVICE_KEYS, seal_ca_key, seal_service_keys};
use crate::change::{Live, failed};
use crate::cluster::{Cluster, ROLE_CAS, ROOT_CA, RetiredCa};
use crate::error::{ApiError, JsonBody, QueryOf, Reason};
use crate::state::{AppState, passed};

type AppStateRef = State<Arc<AppState>>;

/// The staged root, when it differs from the current one.
fn new_root<'a>(staged: &'a Staged, cluster: &Cluster) -> Option<&'a CertificateDer<'static>> {
    let root = staged.bundle(ROOT_CA)?.first()?;
    (root != &cluster.root).then_some(root)
}

/// The role CAs whose staged certificate differs from the current one.
fn changed_roles<'a>(
    staged: &'a Staged,
    cluster: &Cluster,
) -> Vec<(&'static str, &'a StagedFiles)> {
    ROLE_CAS
        .iter()
        .filter_map(|role| {
            let files = staged.cas.get(role)?;
            let first = files.bundle.as_ref()?.first()?;
            let current = cluster.ca(role)?.certificate();
            (first != current).then_some((*role, files))
        })
        .collect()
}

/// Every integrity check, every failure kept.
fn check(staged: &Staged, cluster: &Cluster, now: OffsetDateTime) -> IntegrityReport {
    let mut report = IntegrityReport::new();
    let current_roots = std::slice::from_ref(&cluster.root);
    let pool = staged.pool();
    let new_root = new_root(staged, cluster);
    if let Some(root) = new_root {
        report.check_root(
            "root-ca.crt",
            "root-ca.key",
            root,
            staged.key(ROOT_CA),
            &pool,
            current_roots,
            now,
        );
    }
    let changed = changed_roles(staged, cluster);
    for (ca, files) in &staged.cas {
        let (cert_file, key_file) = (format!("{ca}.crt"), format!("{ca}.key"));
        match (&files.bundle, &files.key) {
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
    if let Some(keys) = &staged.service_keys {
        report.check_service_keys(
            "service.key",
            &cluster.service_keys.signer().public_key(),
            &keys.public_keys(),
        );
    }
    report
}

/// A rotation planned: its datastore records, the cluster it makes, and what it rotates.
struct Plan {
    rotation: Rotation,
    next: Cluster,
    rotated: Vec<String>,
}

/// Seals the new keys into the rotation's records and builds, in memory, the cluster the
/// datastore will hold once they are written: every replaced CA kept as a retired one, as
/// [`evergreen_store::Store::rotate`] keeps it.
fn plan(
    state: &AppState,
    cluster: Cluster,
    staged: &Staged,
    now: OffsetDateTime,
    event: AuditEvent,
) -> Result<Plan, ApiError> {
    let mut rotation = Rotation {
        cas: Vec::new(),
        meta: Vec::new(),
        event,
    };
    let mut rotated = Vec::new();
    let seal = |name: &str, key: &evergreen_pki::PrivateKey| {
        seal_ca_key(&state.sealing, name, key).map_err(ApiError::internal)
    };
    let mut role_cas = Vec::new();
    for (role, files) in changed_roles(staged, &cluster) {
        let (Some(bundle), Some(key)) = (&files.bundle, &files.key) else {
            // Even forced, a CA without its key cannot issue.
            return Err(ApiError::bad_request(format!(
                "{role}.crt is staged without {role}.key; a role CA needs its key to issue"
            ))
            .reason(Reason::MissingKey)
            .target(role));
        };
        let ca = CertificateAuthority::from_parts(
            bundle.clone(),
            key.try_clone().map_err(ApiError::internal)?,
        )
        .map_err(|e| {
            ApiError::bad_request(format!("{role}.crt cannot be used as a CA: {e}"))
                .reason(Reason::UnusableCa)
                .target(role)
        })?;
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
        role_cas.push((role, ca));
    }
    let root = new_root(staged, &cluster).cloned();
    if let Some(root) = &root {
        rotation.cas.insert(
            0,
            (
                CaRecord {
                    name: ROOT_CA.into(),
                    bundle_pem: pem::encode("CERTIFICATE", root),
                    sealed_key: staged.key(ROOT_CA).map(|k| seal(ROOT_CA, k)).transpose()?,
                    updated_at: now.unix_timestamp(),
                },
                RetiredCa::name_for(ROOT_CA, &cluster.root),
            ),
        );
        rotated.insert(0, ROOT_CA.to_owned());
    }
    let service_keys = match &staged.service_keys {
        Some(keys) => {
            rotation.meta.push((
                SERVICE_KEYS.into(),
                seal_service_keys(&state.sealing, keys).map_err(ApiError::internal)?,
            ));
            rotated.push("service-account keys".into());
            Some(
                ServiceKeys::from_pem("service.key", keys.to_pem().as_bytes())
                    .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    if rotation.cas.is_empty() && rotation.meta.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to rotate: every staged certificate is the current one",
        )
        .reason(Reason::Unchanged));
    }
    rotation.event.target = rotated.join(", ");
    let next = cluster.rotated(root, role_cas, service_keys);
    Ok(Plan {
        rotation,
        next,
        rotated,
    })
}

#[utoipa::path(
    put,
    path = "/v1/ca/rotate",
    tag = "ca",
    operation_id = "rotate_ca",
    summary = "Rotate CAs live from a staged directory",
    description = r#"`files` maps k3s file names to PEM; absent or empty files keep the current value. The integrity checks are all reported together; `force=true` skips only them and is audited. All or nothing."#,
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::CaRotateRequest,
    params(evergreen_api::query::RotateParams),
    responses((status = 200, description = "Rotated", body = evergreen_api::CaRotation))
)]
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

    let staged = Staged::decode(&request.files)
        .map_err(|m| ApiError::bad_request(m).reason(Reason::Malformed))?;
    let report = check(&staged, &cluster, now);
    let forced_past: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    if !report.failures.is_empty() && !params.force {
        return Err(ApiError::bad_request(format!(
            "{report}\nNothing was changed. Fix the staged files, or pass --force to rotate anyway"
        ))
        .reason(Reason::Integrity));
    }
    passed(&state, ACTION, "checked")?;
    let previous_root = cluster.root.clone();
    let event = AuditEvent {
        at: now.unix_timestamp(),
        actor: actor.clone(),
        action: ACTION.into(),
        target: String::new(),
        outcome: "ok".into(),
        detail: if forced_past.is_empty() {
            "every integrity check passed".into()
        } else {
            format!(
                "FORCED past {} failed integrity check(s): {}",
                forced_past.len(),
                forced_past.join("; ")
            )
        },
    };
    let Plan {
        rotation,
        next,
        rotated,
    } = plan(&state, cluster, &staged, now, event)?;
    passed(&state, ACTION, "sealed")?;

    let mut tx = state.store.begin().await?;
    let revision = tx.rotate(&rotation).await?;
    let next = Arc::new(next);
    let crls = state
        .prepare_crls(&next, tx.as_mut())
        .await
        .map_err(|e| failed(ACTION, "signing CRLs", e))?;
    passed(&state, ACTION, "crls-signed")?;
    let mut live = Live {
        crls: Some(crls),
        ..Live::default()
    };
    let issued = state
        .own_due(&next, &[], &actor)
        .map_err(|e| failed(ACTION, "issuing the server's own certificates", e))?;
    state
        .stage_own(&issued, tx.as_mut(), &mut live)
        .await
        .map_err(|e| failed(ACTION, "issuing the server's own certificates", e))?;
    passed(&state, ACTION, "own-issued")?;
    // The CLI's trust bundle lists the new CAs before anything issued by them is served.
    crate::bootstrap::stage_cli_files(&mut live.files, &state.paths, &next, None)
        .and_then(|()| {
            if next.root == previous_root {
                return Ok(());
            }
            crate::bootstrap::stage_repinned_tokens(
                &mut live.files,
                &state.paths,
                Fingerprint::of(&next.root),
            )
        })
        .map_err(|e| failed(ACTION, "writing files", e))?;
    passed(&state, ACTION, "files-staged")?;
    live.cluster = Some(next.clone());
    state.go_live_and_commit(ACTION, tx, live).await?;
    state.advance_revision(revision);

    // Named certificates move to the new CAs as a change of their own: until it commits,
    // they keep working under the retired CAs.
    if let Err(error) = crate::named::renew_due(&state).await {
        tracing::warn!(error = %error.message, "named certificates stay under the retired CAs until the next check");
    }
    let mut notes = crate::cluster::without_crls(&next);
    let root_sha256 = Fingerprint::of(&next.root);
    if next.root != previous_root
        && !evergreen_pki::chain::is_cross_signed(
            &next.root,
            &staged.pool(),
            std::slice::from_ref(&previous_root),
        )
    {
        let tokens = state
            .store
            .live_tokens(now.unix_timestamp())
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>();
        notes.push(format!(
            "the new root is not cross-signed by the previous one: join tokens made before pin the previous root and no longer enroll a node that can reach this server; create new ones with 'evergreen token create' (tokens affected: {})",
            if tokens.is_empty() { "none".to_owned() } else { tokens.join(", ") }
        ));
    }
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
        trust_bundle_certificates: next.trust_bundle().len(),
        notes,
    }))
}

/// Serves a cluster another replica rotated (read from the datastore): the CLI's trust
/// bundle, token pins, the CRLs it published, the server's own certificates under the new
/// CAs.
pub(crate) async fn follow_rotation(state: &AppState, cluster: Cluster) -> anyhow::Result<()> {
    let previous_root = state.cluster.load().root.clone();
    let cluster = Arc::new(cluster);
    let mut live = Live {
        cluster: Some(cluster.clone()),
        ..Live::default()
    };
    crate::bootstrap::stage_cli_files(&mut live.files, &state.paths, &cluster, None)?;
    if cluster.root != previous_root {
        crate::bootstrap::stage_repinned_tokens(
            &mut live.files,
            &state.paths,
            Fingerprint::of(&cluster.root),
        )?;
    }
    state.go_live_kept(live)?;
    state.adopt_crls().await?;
    crate::jobs::run_checks(state).await
}

/// The cluster as the datastore holds it: under the rotation lock it is what another
/// replica may just have changed, whatever this server has loaded so far.
async fn stored_cluster(state: &AppState) -> Result<Cluster, ApiError> {
    crate::bootstrap::load_cluster(state.store.as_ref(), &state.sealing)
        .await
        .map_err(ApiError::internal)
}

#[utoipa::path(
    get,
    path = "/v1/keys/service-account",
    tag = "keys",
    operation_id = "jwks",
    summary = "The service-account keys as a JWKS, the signing key first",
    responses((status = 200, description = "JWKS", body = evergreen_api::Jwks))
)]
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

#[utoipa::path(
    post,
    path = "/v1/keys/service-account/rotate",
    tag = "keys",
    operation_id = "rotate_service_keys",
    summary = "A new service-account signing key first (older ones kept), or retire one",
    security(("mtls" = ["admin"])),
    request_body = evergreen_api::ServiceKeyRotation,
    responses((status = 200, description = "The keys now", body = evergreen_api::Jwks))
)]
/// `POST /v1/keys/service-account/rotate`: a new signing key first, or with `retire`
/// one key removed. One change: sealed, written and served together.
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
                    .reason(Reason::Retire)
                    .target("service-account"));
            }
        },
        None => {
            let key_type: KeyType = match request.key_type.as_deref().unwrap_or("ec-p256").parse() {
                Ok(KeyType::Ed25519) | Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "service-account key type {:?} is not supported; use ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096",
                        crate::text::bounded(request.key_type.as_deref().unwrap_or_default(), 40)
                    ))
                    .reason(Reason::KeyType)
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
    passed(&state, ACTION, "checked")?;
    let sealed = seal_service_keys(&state.sealing, &keys).map_err(ApiError::internal)?;
    passed(&state, ACTION, "sealed")?;
    let event = crate::audit::event(
        state.now(),
        &actor,
        ACTION,
        "service-account",
        "ok",
        &detail,
    );
    let mut tx = state.store.begin().await?;
    tx.put_meta(SERVICE_KEYS, &sealed).await?;
    tx.audit(&event).await?;
    let live = Live {
        cluster: Some(Arc::new(Cluster {
            service_keys: keys,
            ..cluster
        })),
        ..Live::default()
    };
    state.go_live_and_commit(ACTION, tx, live).await?;
    drop(guard);
    jwks(State(state)).await
}
