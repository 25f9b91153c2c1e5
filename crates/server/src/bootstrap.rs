//! First start and restart.
//!
//! First start makes (or takes from `DIR/server/tls/`, as k3s does) the root and role
//! CAs, seals their keys under the cluster secret, and writes everything to the datastore
//! in one transaction. The server token file (`DIR/server/token`) holds that secret; it is
//! written before the transaction, so a crash in between is recovered by the next start
//! reusing the same secret.
//!
//! A restart opens the datastore, proves the token's secret opens it before writing
//! anything, and loads the CAs.
use std::path::Path;

use anyhow::{Context, bail};
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};
use evergreen_api::{Clock, Role};
use evergreen_pki::certificate::{CertificateInfo, Fingerprint, SubjectAltName, hex};
use evergreen_pki::hierarchy::Hierarchy;
use evergreen_pki::integrity::{IntegrityReport, StagedCa};
use evergreen_pki::name::NameAttribute;
use evergreen_pki::renewal::RenewalPolicy;
use evergreen_pki::service_keys::ServiceKeys;
use evergreen_pki::staged::{self, Staged};
use evergreen_pki::token::{JoinToken, random_string};
use evergreen_pki::{
    CertificateAuthority, CertificateDer, DistinguishedName, Duration, IssueRequest, KeyType,
    OffsetDateTime, PrivateKey, PrivateKeyDer, Profile, pem,
};
use evergreen_store::envelope::SealingKey;
use evergreen_store::{AuditEvent, CaRecord, CertificateRecord, Initialization, Store};

use crate::cluster::{CLIENT_CA, Cluster, PEER_CA, ROLE_CAS, ROOT_CA, RetiredCa, SERVER_CA};
use crate::config::{Paths, Settings};

const SALT: &str = "sealing_salt";
const SECRET_CHECK: &str = "secret_check";
const SECRET_CHECK_AAD: &[u8] = b"evergreen:secret-check";
const SERVER_TOKEN_ID: &str = "server";

/// The cluster fact holding the service-account key set, sealed.
pub const SERVICE_KEYS: &str = "service_account_keys";
const SERVICE_KEYS_AAD: &[u8] = b"evergreen:service-account-keys";

/// Associated data of a CA key's envelope: a key sealed for one CA opens for no other.
fn key_aad(ca: &str) -> Vec<u8> {
    format!("evergreen:ca-key:{ca}").into_bytes()
}

/// The key of the CA `ca` (`root-ca`, `server-ca`, …) in its envelope.
pub fn seal_ca_key(sealing: &SealingKey, ca: &str, key: &PrivateKey) -> anyhow::Result<Vec<u8>> {
    Ok(sealing.seal(key.to_pem().as_bytes(), &key_aad(ca))?)
}

/// The service-account key set in its envelope.
pub fn seal_service_keys(sealing: &SealingKey, keys: &ServiceKeys) -> anyhow::Result<Vec<u8>> {
    Ok(sealing.seal(keys.to_pem().as_bytes(), SERVICE_KEYS_AAD)?)
}

/// Reads the server token file, if there is one.
fn read_token(path: &Path) -> anyhow::Result<Option<JoinToken>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().parse().with_context(|| {
            format!("the server token in {} is malformed", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What start-up hands to the running server.
#[derive(Debug)]
pub struct Booted {
    pub cluster: Cluster,
    /// Seals and opens keys kept in the datastore.
    pub sealing: SealingKey,
    /// On a first start, what it writes (nothing is written yet).
    pub first: Option<FirstStart>,
}

/// What a first start writes: the datastore's first rows, and the server token file that
/// holds the secret the CA keys are sealed with.
#[derive(Debug)]
pub struct FirstStart {
    pub init: Initialization,
    pub server_token: String,
}

/// CAs staged before first start, read and checked: the root (and its key, unless kept
/// offline), the three role CAs and the service-account keys, if staged.
#[derive(Debug)]
pub struct StagedCas {
    root: CertificateDer<'static>,
    root_key: Option<PrivateKey>,
    roles: [CertificateAuthority; 3],
    service_keys: Option<ServiceKeys>,
    /// What people should know: files ignored, CAs that sign no CRL.
    pub notes: Vec<String>,
}

/// Opens the cluster the datastore holds, or prepares its first start (`staged`: the CA
/// files found before anything was created).
///
/// `join` is the server token of a replica already running on the same datastore
/// (`evergreen server --token`): its secret must open the CA keys and it must pin the
/// cluster's root, or nothing is written.
pub async fn boot(
    store: &dyn Store,
    paths: &Paths,
    clock: &dyn Clock,
    key_type: KeyType,
    join: Option<&JoinToken>,
    staged: Option<StagedCas>,
) -> anyhow::Result<Booted> {
    let initialized = store.is_initialized().await?;
    match (initialized, join) {
        (true, Some(token)) => {
            match read_token(&paths.token())? {
                Some(own) if own.secret() != token.secret() => bail!(
                    "the token given with --token is not the server token in {}; both hold the cluster secret and must be the same. Nothing was changed",
                    paths.token().display()
                ),
                Some(_) => {}
                None => join_cluster(store, paths, token).await?,
            }
            restart(store, paths, clock).await
        }
        (true, None) => restart(store, paths, clock).await,
        (false, Some(_)) => bail!(
            "the datastore holds no cluster yet, so there is nothing to join: start the first server without --token; it writes the token the other servers join with to DATA_DIR/server/token"
        ),
        (false, None) => first_start(paths, clock.now(), key_type, staged),
    }
}

/// A replica's first start on a shared datastore: proves the token opens the CA keys and
/// pins the cluster's root, then writes it as this server's token file.
async fn join_cluster(store: &dyn Store, paths: &Paths, token: &JoinToken) -> anyhow::Result<()> {
    let sealing = open_sealing(store, token, "the token given with --token").await?;
    let cluster = load_cluster(store, &sealing).await?;
    if !cluster
        .roots()
        .iter()
        .any(|root| Fingerprint::of(root) == token.root_hash())
    {
        bail!(
            "the token given with --token pins root CA sha256:{}, which is not this cluster's root; nothing was changed",
            token.root_hash()
        );
    }
    let own = JoinToken::new(
        token.root_hash(),
        SERVER_TOKEN_ID.into(),
        token.secret().to_owned(),
    )?;
    files::replace(&paths.token(), format!("{own}\n").as_bytes(), KEY_MODE)?;
    Ok(())
}

/// Prepares a first start: the CAs (staged, or generated), their keys sealed under a new
/// cluster secret, the datastore's first rows and the server token. Writes nothing.
fn first_start(
    paths: &Paths,
    now: OffsetDateTime,
    key_type: KeyType,
    staged: Option<StagedCas>,
) -> anyhow::Result<Booted> {
    // A token left by an interrupted first start keeps its secret.
    let secret = match read_token(&paths.token())? {
        Some(token) => token.secret().to_owned(),
        None => random_string(32)?,
    };
    let salt = random_string(24)?;
    let sealing = SealingKey::derive(secret.as_bytes(), salt.as_bytes())?;
    let (root, root_key, cas, service_keys) = match staged {
        Some(staged) => (
            staged.root,
            staged.root_key,
            staged.roles,
            staged.service_keys,
        ),
        None => {
            let (root, root_key, cas) = generate_cas(now, key_type)?;
            (root, root_key, cas, None)
        }
    };
    let service_keys = match service_keys {
        Some(keys) => keys,
        None => ServiceKeys::generate(KeyType::EcP256)?,
    };
    let mut records = vec![CaRecord {
        name: ROOT_CA.into(),
        bundle_pem: pem::encode("CERTIFICATE", &root),
        sealed_key: root_key
            .as_ref()
            .map(|k| seal_ca_key(&sealing, ROOT_CA, k))
            .transpose()?,
        updated_at: now.unix_timestamp(),
    }];
    for (name, ca) in [
        (SERVER_CA, &cas[0]),
        (CLIENT_CA, &cas[1]),
        (PEER_CA, &cas[2]),
    ] {
        records.push(CaRecord {
            name: name.into(),
            bundle_pem: ca.bundle_pem(),
            sealed_key: Some(seal_ca_key(&sealing, name, ca.key())?),
            updated_at: now.unix_timestamp(),
        });
    }
    let root_hash = Fingerprint::of(&root);
    let server_token = JoinToken::new(root_hash, SERVER_TOKEN_ID.into(), secret)?;
    let init = Initialization {
        meta: vec![
            (SALT.into(), salt.into_bytes()),
            (
                SECRET_CHECK.into(),
                sealing.seal(b"evergreen", SECRET_CHECK_AAD)?,
            ),
            (
                SERVICE_KEYS.into(),
                seal_service_keys(&sealing, &service_keys)?,
            ),
        ],
        cas: records,
        tokens: Vec::new(),
        certificates: Vec::new(),
        audit: vec![AuditEvent {
            at: now.unix_timestamp(),
            actor: "server".into(),
            action: "init".into(),
            target: format!("root sha256:{root_hash}"),
            outcome: "ok".into(),
            detail: "cluster PKI created".into(),
        }],
    };
    let [server_ca, client_ca, peer_ca] = cas;
    Ok(Booted {
        cluster: Cluster {
            root,
            server_ca,
            client_ca,
            peer_ca,
            retired: Vec::new(),
            service_keys,
        },
        sealing,
        first: Some(FirstStart {
            init,
            server_token: format!("{server_token}\n"),
        }),
    })
}

type Cas = (
    CertificateDer<'static>,
    Option<PrivateKey>,
    [CertificateAuthority; 3],
);

fn generate_cas(now: OffsetDateTime, key_type: KeyType) -> anyhow::Result<Cas> {
    let Hierarchy {
        root,
        server,
        client,
        peer,
    } = Hierarchy::generate("evergreen", key_type, Duration::days(3650), now)?;
    let root_key = PrivateKey::from_der("root-ca.key", root.key().der().clone_key())?;
    Ok((
        root.certificate().clone(),
        Some(root_key),
        [server, client, peer],
    ))
}

/// CA files staged in `DIR/server/tls/` before first start — the layout of `evergreen ca
/// generate`, or k3s's (`root-ca.pem`, `intermediate-ca.pem`, `etcd/peer-ca.*`) — read
/// and checked, every failure reported together; `None` when nothing is staged. Reads only.
pub fn staged_first_start(paths: &Paths, now: OffsetDateTime) -> anyhow::Result<Option<StagedCas>> {
    let dir = paths.tls();
    let listing = files::read_listing(&dir)?;
    if !listing.keys().any(|name| staged::is_staged_name(name)) {
        return Ok(None);
    }
    let what = || format!("the CA files staged in {}", dir.display());
    let resolved = staged::resolve(&listing)
        .map_err(anyhow::Error::msg)
        .with_context(what)?;
    let staged = Staged::decode(&resolved.files)
        .map_err(anyhow::Error::msg)
        .with_context(what)?;
    let mut notes: Vec<String> = resolved
        .ignored
        .iter()
        .map(|(file, why)| format!("ignored {file}: {why}"))
        .collect();
    let root = staged
        .bundle(ROOT_CA)
        .and_then(|b| b.first())
        .cloned()
        .with_context(|| {
            format!(
                "{} holds no root CA: stage root-ca.crt (or k3s's root-ca.pem) with the role CAs",
                dir.display()
            )
        })?;
    let root_info = CertificateInfo::from_der(&root)?;
    let mut report = IntegrityReport::new();
    if !root_info.self_signed || !root_info.is_ca {
        report.fail(
            "root-ca.crt",
            Some(&root_info.subject),
            "is not a self-signed CA certificate; a root must sign itself".into(),
        );
    }
    let root_key = staged.key(ROOT_CA).map(PrivateKey::try_clone).transpose()?;
    if let Some(key) = &root_key
        && !key.matches_certificate(&root)?
    {
        report.fail(
            "root-ca.key",
            Some(&root_info.subject),
            "the private key does not match the certificate in root-ca.crt".into(),
        );
    }
    let mut roles = Vec::new();
    for role in ROLE_CAS {
        let (cert_file, key_file) = (format!("{role}.crt"), format!("{role}.key"));
        let Some(bundle) = staged.bundle(role) else {
            report.fail(
                &cert_file,
                None,
                format!(
                    "is not staged; a first start needs all three role CAs ({})",
                    ROLE_CAS.join(", ")
                ),
            );
            continue;
        };
        let key = staged.key(role);
        report.check_ca(
            &StagedCa {
                cert_file: &cert_file,
                key_file: &key_file,
                bundle,
                key,
            },
            std::slice::from_ref(&root),
            now,
        );
        if let Some(key) = key {
            roles.push((bundle.to_vec(), key.try_clone()?));
        }
    }
    report.into_result().with_context(what)?;
    let roles: Vec<CertificateAuthority> = roles
        .into_iter()
        .map(|(bundle, key)| CertificateAuthority::from_parts(bundle, key))
        .collect::<Result<_, _>>()?;
    let roles: [CertificateAuthority; 3] = roles
        .try_into()
        .map_err(|_| anyhow::anyhow!("three role CAs"))?;
    for ca in &roles {
        if !ca.info().can_sign_crls {
            notes.push(format!(
                "{} may not sign CRLs (its key usage lacks cRLSign): Evergreen refuses its revoked certificates itself, but relying parties get no CRL from it",
                ca.info().subject
            ));
        }
    }
    Ok(Some(StagedCas {
        root,
        root_key,
        roles,
        service_keys: staged.service_keys,
        notes,
    }))
}

async fn restart(store: &dyn Store, paths: &Paths, clock: &dyn Clock) -> anyhow::Result<Booted> {
    let token_path = paths.token();
    let Some(token) = read_token(&token_path)? else {
        bail!(
            "the datastore {} is initialised but the server token {} is missing; restore it (it holds the secret the CA keys are encrypted with)",
            paths.db().display(),
            token_path.display()
        );
    };
    let sealing = open_sealing(
        store,
        &token,
        &format!("the server token in {}", token_path.display()),
    )
    .await?;
    if store.get_meta(SERVICE_KEYS).await?.is_none() {
        // A datastore from before service-account keys: make the first one.
        let keys = ServiceKeys::generate(KeyType::EcP256)?;
        store
            .put_meta(
                SERVICE_KEYS,
                &seal_service_keys(&sealing, &keys)?,
                &AuditEvent {
                    at: clock.now().unix_timestamp(),
                    actor: "server".into(),
                    action: "keys.create".into(),
                    target: "service-account".into(),
                    outcome: "ok".into(),
                    detail: "first service-account signing key".into(),
                },
            )
            .await?;
    }
    let cluster = load_cluster(store, &sealing).await?;
    let root_hash = Fingerprint::of(&cluster.root);
    if root_hash != token.root_hash() {
        // A root rotation commits before it rewrites the token files; a crash in between
        // leaves a token pinning the retired root, which is rewritten here.
        let pins_retired = cluster
            .roots()
            .iter()
            .any(|r| Fingerprint::of(r) == token.root_hash());
        if !pins_retired {
            bail!(
                "the server token in {} pins root CA sha256:{}, but the datastore's root is sha256:{}",
                token_path.display(),
                token.root_hash(),
                root_hash
            );
        }
        repin_token_files(paths, root_hash)?;
    }
    retire_node_token_file(paths);
    Ok(Booted {
        cluster,
        sealing,
        first: None,
    })
}

/// Removes the reusable node join token that servers before bound tokens wrote at first
/// start (its datastore row is expired by the schema migration): every node now gets a
/// token of its own from `evergreen token create`.
fn retire_node_token_file(paths: &Paths) {
    let path = paths.node_token();
    if path.exists() {
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::warn!(
                file = %path.display(),
                "retired the reusable node join token of first start; give each node its own: evergreen token create --role node --node NAME"
            ),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot remove the retired node join token")
            }
        }
    }
}

/// Opens a server's datastore from its data dir (`datastore`: its PostgreSQL URL, else
/// the SQLite file in the data dir), proving the server token's secret opens it: for
/// commands run on the server host, the server running or not.
async fn open_offline(
    data_dir: &Path,
    datastore: Option<&str>,
) -> anyhow::Result<(std::sync::Arc<dyn Store>, SealingKey)> {
    let paths = Paths {
        data_dir: data_dir.to_owned(),
    };
    let store: std::sync::Arc<dyn Store> = match datastore {
        Some(url) => evergreen_store::open(url).await?,
        None => {
            let db = paths.db();
            if !db.exists() {
                bail!(
                    "{} holds no Evergreen datastore ({} is missing); pass the data dir of the server (--data-dir of evergreen server), and --datastore if it runs on PostgreSQL",
                    data_dir.display(),
                    db.display()
                );
            }
            std::sync::Arc::new(evergreen_store::SqliteStore::open(&db).await?)
        }
    };
    let sealing = async {
        let token = read_token(&paths.token())?.with_context(|| {
            format!(
                "the server token {} is missing; it holds the secret that opens the CA keys",
                paths.token().display()
            )
        })?;
        open_sealing(
            store.as_ref(),
            &token,
            &format!("the server token in {}", paths.token().display()),
        )
        .await
    }
    .await;
    match sealing {
        Ok(sealing) => Ok((store, sealing)),
        Err(error) => {
            store.close().await;
            Err(error)
        }
    }
}

/// The cluster's current root CA and its key (`None` when kept offline), read from a
/// server's data dir and datastore: for `evergreen ca generate`, which signs new role CAs
/// or cross-signs a new root with it.
pub async fn current_root(
    data_dir: &Path,
    datastore: Option<&str>,
) -> anyhow::Result<(CertificateDer<'static>, Option<PrivateKey>)> {
    let (store, sealing) = open_offline(data_dir, datastore).await?;
    let result = async {
        let record = store
            .cas()
            .await?
            .into_iter()
            .find(|r| r.name == ROOT_CA)
            .context("the datastore has no root CA")?;
        let root = pem::parse_certificates(ROOT_CA, record.bundle_pem.as_bytes())?.remove(0);
        let key = match &record.sealed_key {
            Some(sealed) => Some(PrivateKey::from_pem(
                ROOT_CA,
                &sealing.open(sealed, &key_aad(ROOT_CA))?,
            )?),
            None => None,
        };
        Ok((root, key))
    }
    .await;
    store.close().await;
    result
}

/// The cluster's service-account keys, the signing key first, read from a server's data
/// dir and datastore: for `evergreen keys export`.
pub async fn current_service_keys(
    data_dir: &Path,
    datastore: Option<&str>,
) -> anyhow::Result<ServiceKeys> {
    let (store, sealing) = open_offline(data_dir, datastore).await?;
    let result = async {
        let sealed = store
            .get_meta(SERVICE_KEYS)
            .await?
            .context("the datastore has no service-account keys")?;
        Ok(ServiceKeys::from_pem(
            "the service-account keys",
            &sealing.open(&sealed, SERVICE_KEYS_AAD)?,
        )?)
    }
    .await;
    store.close().await;
    result
}

/// A new admin credential written by [`reissue_admin`].
#[derive(Debug, Clone)]
pub struct ReissuedAdmin {
    pub serial: String,
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
    /// The serial of the credential it replaces, when that one is in the inventory and not
    /// revoked yet: revoke it next ([`revoke_offline`], or through the running server).
    pub previous: Option<String>,
}

/// Issues a new admin credential on the server host, from the datastore the server token
/// opens — the recovery when the admin credential is lost, leaked or revoked, whether the
/// server runs or not. The new `admin.crt`/`admin.key` replace the old files and the
/// certificate is recorded in one change: a failure leaves both as they were.
pub async fn reissue_admin(
    data_dir: &Path,
    datastore: Option<&str>,
    clock: &dyn Clock,
) -> anyhow::Result<ReissuedAdmin> {
    let (store, sealing) = open_offline(data_dir, datastore).await?;
    let result = async {
        let paths = Paths {
            data_dir: data_dir.to_owned(),
        };
        let cluster = load_cluster(store.as_ref(), &sealing).await?;
        let own = admin_cert(&paths);
        let previous = match leaf_on_file(&own.cert_path) {
            Some(old) => store
                .certificate_by_serial(&old.serial_hex())
                .await?
                .filter(|r| r.revoked_at.is_none())
                .map(|r| r.serial),
            None => None,
        };
        let issued = issue_own(
            &cluster,
            &Settings::default(),
            &own,
            clock.now(),
            "admin reissue",
        )?;
        let mut tx = store.begin().await?;
        let mut staging = files::Staging::new();
        issued.stage(tx.as_mut(), &mut staging).await?;
        let applied = staging.apply()?;
        // Dropping `applied` on an error puts the previous files back.
        tx.commit().await?;
        applied.keep();
        Ok(ReissuedAdmin {
            serial: issued.info()?.serial_hex(),
            cert_path: own.cert_path,
            key_path: own.key_path,
            previous,
        })
    }
    .await;
    store.close().await;
    result
}

/// Revokes `serial` in the datastore of a server that is not running (or cannot be
/// reached): the server publishes the CRL that lists it at its next start, or at its next
/// periodic check if it runs after all.
pub async fn revoke_offline(
    data_dir: &Path,
    datastore: Option<&str>,
    serial: &str,
    reason: evergreen_pki::crl::RevocationReason,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let (store, _) = open_offline(data_dir, datastore).await?;
    let result = async {
        store
            .revoke(serial, clock.now().unix_timestamp(), reason.name())
            .await?;
        store
            .audit(&AuditEvent {
                at: clock.now().unix_timestamp(),
                actor: "admin reissue".into(),
                action: "revoke".into(),
                target: serial.into(),
                outcome: "ok".into(),
                detail: format!("revoked serial {serial} ({reason}) in the datastore"),
            })
            .await?;
        Ok(())
    }
    .await;
    store.close().await;
    result
}

/// Derives the sealing key from the token's secret and proves it opens this datastore;
/// `what` names the token in the error.
async fn open_sealing(
    store: &dyn Store,
    token: &JoinToken,
    what: &str,
) -> anyhow::Result<SealingKey> {
    let salt = store
        .get_meta(SALT)
        .await?
        .context("the datastore has no sealing salt")?;
    let check = store
        .get_meta(SECRET_CHECK)
        .await?
        .context("the datastore has no secret check")?;
    let sealing = SealingKey::derive(token.secret().as_bytes(), &salt)?;
    if sealing.open(&check, SECRET_CHECK_AAD).is_err() {
        bail!(
            "{what} does not match this datastore: its secret cannot open the CA keys. Use the cluster's server token (DATA_DIR/server/token of the first server); nothing was changed"
        );
    }
    Ok(sealing)
}

/// Loads the CAs (current and retired, keys opened) and the service-account keys from
/// the datastore: at restart, and after a rotation.
pub async fn load_cluster(store: &dyn Store, sealing: &SealingKey) -> anyhow::Result<Cluster> {
    let mut root = None;
    let mut roles = std::collections::BTreeMap::new();
    let mut retired = Vec::new();
    for record in store.cas().await? {
        let bundle = pem::parse_certificates(&record.name, record.bundle_pem.as_bytes())?;
        // A retired CA's row is a copy of its role's, sealed for the role.
        let role = record.name.split('@').next().unwrap_or_default();
        let key = match &record.sealed_key {
            Some(sealed) => Some(PrivateKey::from_pem(
                &record.name,
                &sealing.open(sealed, &key_aad(role))?,
            )?),
            None => None,
        };
        if record.name.contains('@') {
            let authority = match key {
                Some(key) if role != ROOT_CA => {
                    Some(CertificateAuthority::from_parts(bundle.clone(), key)?)
                }
                _ => None,
            };
            retired.push(RetiredCa {
                name: record.name.clone(),
                role: role.to_owned(),
                bundle,
                authority,
            });
        } else if record.name == ROOT_CA {
            root = bundle.into_iter().next();
        } else {
            let key = key.with_context(|| format!("{} has no key", record.name))?;
            roles.insert(
                record.name.clone(),
                CertificateAuthority::from_parts(bundle, key)?,
            );
        }
    }
    let root = root.context("the datastore has no root CA")?;
    let service_keys = ServiceKeys::from_pem(
        "the service-account keys",
        &sealing.open(
            &store
                .get_meta(SERVICE_KEYS)
                .await?
                .context("the datastore has no service-account keys")?,
            SERVICE_KEYS_AAD,
        )?,
    )?;
    let mut take = |name: &str| {
        roles
            .remove(name)
            .with_context(|| format!("the datastore has no {name}"))
    };
    Ok(Cluster {
        server_ca: take(SERVER_CA)?,
        client_ca: take(CLIENT_CA)?,
        peer_ca: take(PEER_CA)?,
        root,
        retired,
        service_keys,
    })
}

/// Stages the server and node token files pinning `root`, keeping their ids and secrets
/// (after a root rotation; tokens handed out before still work while the old root is in
/// the trust bundle).
pub fn stage_repinned_tokens(
    staging: &mut files::Staging,
    paths: &Paths,
    root: Fingerprint,
) -> anyhow::Result<()> {
    for path in [paths.token(), paths.node_token()] {
        let Some(token) = read_token(&path)? else {
            continue;
        };
        let token = JoinToken::new(root, token.id().to_owned(), token.secret().to_owned())?;
        staging.stage(&path, format!("{token}\n").as_bytes(), KEY_MODE)?;
    }
    Ok(())
}

/// Rewrites the token files to pin `root` now (a restart repairing a rotation whose
/// files were not moved).
fn repin_token_files(paths: &Paths, root: Fingerprint) -> anyhow::Result<()> {
    let mut staging = files::Staging::new();
    stage_repinned_tokens(&mut staging, paths, root)?;
    staging.apply()?.keep();
    Ok(())
}

/// A certificate the server makes for itself (its serving certificate, the admin
/// credential), kept as files and in the inventory.
#[derive(Debug, Clone)]
pub struct OwnCert {
    /// The built-in name `certificate rotate` knows it by: `server` or `admin`.
    pub name: &'static str,
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
    pub ca: &'static str,
    pub role: Role,
    pub profile: Profile,
    pub subject: DistinguishedName,
    pub sans: Vec<SubjectAltName>,
}

/// The serving certificate: the host name, localhost, loopback addresses and any `--san`.
pub fn serving_cert(paths: &Paths, extra_sans: &[SubjectAltName]) -> OwnCert {
    let mut sans: Vec<SubjectAltName> = Vec::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if let Ok(san) = host.trim().parse::<SubjectAltName>() {
        sans.push(san);
    }
    for san in ["localhost", "127.0.0.1", "::1"] {
        sans.push(san.parse().unwrap_or(SubjectAltName::Dns(san.into())));
    }
    for san in extra_sans {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    OwnCert {
        name: "server",
        cert_path: paths.serving_cert(),
        key_path: paths.serving_key(),
        ca: SERVER_CA,
        role: Role::Server,
        profile: Profile::Server,
        subject: DistinguishedName::common_name("evergreen-server"),
        sans,
    }
}

pub fn admin_cert(paths: &Paths) -> OwnCert {
    OwnCert {
        name: "admin",
        cert_path: paths.admin_cert(),
        key_path: paths.admin_key(),
        ca: CLIENT_CA,
        role: Role::Admin,
        profile: Profile::Client,
        subject: DistinguishedName::common_name("evergreen-admin")
            .with(NameAttribute::Organization, "evergreen:admin"),
        sans: Vec::new(),
    }
}

/// The current files of `own`, if they are a matching pair issued by `ca` for the wanted
/// names and outside the renewal window.
pub fn current_own(
    own: &OwnCert,
    ca: &CertificateAuthority,
    policy: &RenewalPolicy,
    now: OffsetDateTime,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = pem::parse_certificates("", &std::fs::read(&own.cert_path).ok()?).ok()?;
    let key = PrivateKey::from_pem("", &std::fs::read(&own.key_path).ok()?).ok()?;
    let leaf = chain.first()?;
    let info = CertificateInfo::from_der(leaf).ok()?;
    let fresh = key.matches_certificate(leaf).ok()?
        && info.subject == own.subject
        && policy
            .reissue(leaf, Some(ca.certificate()), Some(&own.sans), now)
            .is_none();
    fresh.then(|| (chain, key.der().clone_key()))
}

/// The first certificate of the PEM file at `path`, if it can be read.
fn leaf_on_file(path: &Path) -> Option<CertificateInfo> {
    let chain = pem::parse_certificates("", &std::fs::read(path).ok()?).ok()?;
    CertificateInfo::from_der(chain.first()?).ok()
}

/// Whether the certificate in `own`'s file is revoked in the inventory: then it is issued
/// anew, whatever its validity (a revoked admin credential would lock the admin out, a
/// revoked serving certificate fails every client that checks the CRL).
pub async fn own_revoked(store: &dyn Store, own: &OwnCert) -> anyhow::Result<bool> {
    let Some(leaf) = leaf_on_file(&own.cert_path) else {
        return Ok(false);
    };
    Ok(store
        .certificate_by_serial(&leaf.serial_hex())
        .await?
        .is_some_and(|r| r.revoked_at.is_some()))
}

/// One of the server's own certificates, issued with a new key in memory: recorded and
/// written only by the change it belongs to ([`OwnIssued::stage`]).
#[derive(Debug)]
pub struct OwnIssued {
    pub name: &'static str,
    pub role: Role,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKey,
    record: CertificateRecord,
    event: AuditEvent,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

impl OwnIssued {
    /// Records it and its audit entry in `tx` and stages its files (key and certificate).
    pub async fn stage(
        &self,
        tx: &mut dyn evergreen_store::Transaction,
        staging: &mut files::Staging,
    ) -> anyhow::Result<()> {
        tx.insert_certificate(&self.record).await?;
        tx.audit(&self.event).await?;
        staging.stage(&self.key_path, self.key.to_pem().as_bytes(), KEY_MODE)?;
        staging.stage(
            &self.cert_path,
            pem::encode_certificates(&self.chain).as_bytes(),
            PUBLIC_MODE,
        )?;
        Ok(())
    }

    /// The chain and key as the TLS layer serves them.
    pub fn certified_key(&self) -> anyhow::Result<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Ok(std::sync::Arc::new(crate::tls::certified_key(
            self.chain.clone(),
            self.key.der(),
        )?))
    }

    pub fn info(&self) -> anyhow::Result<CertificateInfo> {
        Ok(CertificateInfo::from_der(&self.chain[0])?)
    }
}

/// Issues `own` anew under `cluster`'s CA (a new key), in memory.
pub fn issue_own(
    cluster: &Cluster,
    settings: &Settings,
    own: &OwnCert,
    now: OffsetDateTime,
    actor: &str,
) -> anyhow::Result<OwnIssued> {
    let ca = cluster.ca(own.ca).context("unknown CA")?;
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let request = IssueRequest {
        subject: own.subject.clone(),
        subject_alt_names: own.sans.clone(),
        public_key: key.public_key(),
        profile: own.profile,
        validity: settings.node_validity,
    };
    let issued = ca.issue(&request, now)?;
    // The certificate on file, which this one replaces.
    let renewed_from = leaf_on_file(&own.cert_path).map(|old| old.serial_hex());
    let record = CertificateRecord {
        serial: hex(&issued.serial),
        sha256: issued.fingerprint.to_string(),
        subject: own.subject.to_string(),
        sans: own.sans.iter().map(ToString::to_string).collect(),
        profile: own.profile.name().into(),
        role: own.role.as_str().into(),
        issuer: own.ca.into(),
        owner: "server".into(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        issued_at: now.unix_timestamp(),
        renewed_from,
        revoked_at: None,
        revocation_reason: None,
        superseded_by: None,
        der: issued.der.to_vec(),
    };
    let event = crate::audit::event(
        now,
        actor,
        "issue",
        &own.subject.to_string(),
        "ok",
        &format!(
            "{} certificate serial {} written to {}",
            own.role,
            record.serial,
            own.cert_path.display()
        ),
    );
    let mut chain = vec![issued.der.clone()];
    chain.extend(ca.bundle());
    Ok(OwnIssued {
        name: own.name,
        role: own.role,
        chain,
        key,
        record,
        event,
        cert_path: own.cert_path.clone(),
        key_path: own.key_path.clone(),
    })
}

/// Stages the files the CLI on this host reads: the trust bundle and the server URL.
pub fn stage_cli_files(
    staging: &mut files::Staging,
    paths: &Paths,
    cluster: &Cluster,
    url: Option<&str>,
) -> anyhow::Result<()> {
    staging.stage(
        &paths.ca_bundle(),
        pem::encode_certificates(&cluster.trust_bundle()).as_bytes(),
        PUBLIC_MODE,
    )?;
    if let Some(url) = url {
        staging.stage(
            &paths.server_url(),
            format!("{url}\n").as_bytes(),
            PUBLIC_MODE,
        )?;
    }
    Ok(())
}
