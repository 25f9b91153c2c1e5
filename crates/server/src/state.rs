//! What every request shares: the datastore, the clock, the cluster's CAs, the published
//! CRLs and the live TLS configuration; issuing, revoking and publishing CRLs on it, and
//! making a change live all at once or not at all ([`crate::change`]).
use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use evergreen_api::{Clock, Role};
use evergreen_pki::certificate::hex;
use evergreen_pki::crl::{RevocationReason, RevokedCertificate};
use evergreen_pki::{
    CertificateAuthority, CertificateDer, CertificateRevocationListDer, IssueRequest,
    IssuedCertificate, OffsetDateTime,
};
use evergreen_store::{AuditEvent, CertificateRecord, Job, RevokeOutcome, Store, Transaction};
use tokio::sync::Mutex;

use crate::change::{Live, Undo, failed};
use crate::cluster::{CLIENT_CA, CRL_VALIDITY, Cluster, Crls, ROLE_CAS, Revoked};
use crate::config::{Paths, Settings};
use crate::error::{ApiError, Reason};
use crate::metrics::Metrics;

/// Cluster-wide work (checks, CRLs, rotations, named-certificate changes) runs under the
/// datastore's job locks ([`Store::lock`]), so replicas sharing a database take turns.
pub struct AppState {
    /// The certificates the server keeps for itself (serving, admin).
    pub own: Vec<crate::bootstrap::OwnCert>,
    /// Turns true when the server begins to stop: long-polls answer at once.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub cluster: ArcSwap<Cluster>,
    pub crls: ArcSwap<Crls>,
    pub revoked: ArcSwap<Revoked>,
    pub tls: ArcSwap<rustls::ServerConfig>,
    pub serving: Arc<crate::tls::ServingCert>,
    pub settings: Settings,
    pub paths: Paths,
    pub metrics: Metrics,
    /// Seals the keys of cluster-scope named certificates.
    pub sealing: evergreen_store::envelope::SealingKey,
    /// The cluster revision, for agents' long polls.
    pub revision: tokio::sync::watch::Sender<i64>,
    /// Serialises swapping CRLs and the TLS configuration in this process.
    pub crl_lock: Mutex<()>,
    /// What watches answer at the current revision (see [`crate::fleet::Snapshot`]).
    pub watch_snapshot: Mutex<Option<Arc<crate::fleet::Snapshot>>>,
    /// Anonymous refusals being aggregated (see [`crate::audit`]).
    pub refusals: crate::audit::Refusals,
    /// Steps of changes a test made fail (see [`crate::change`]).
    pub failpoints: Arc<crate::change::Failpoints>,
}

/// One refused request or connection, as it is counted, logged and audited.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub actor: &'a str,
    pub source: std::net::IpAddr,
    /// Whether the caller proved an identity; the refusals of those who did not are
    /// aggregated per source.
    pub authenticated: bool,
    pub action: &'a str,
    pub target: &'a str,
    pub reason: Reason,
    pub message: &'a str,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data_dir", &self.paths.data_dir)
            .finish_non_exhaustive()
    }
}

/// Who asked for an issuance, for the inventory.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub ca: &'static str,
    pub role: Role,
    pub owner: String,
    pub renewed_from: Option<String>,
    /// For the audit entry written with the certificate: who asked, and for what.
    pub actor: String,
    pub action: &'static str,
}

impl AppState {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Signs a certificate: what [`AppState::issue`] records, and the audit entry to record
    /// with it.
    pub fn sign(
        &self,
        request: &IssueRequest,
        how: &Issuance,
    ) -> Result<(IssuedCertificate, CertificateRecord, AuditEvent), ApiError> {
        let now = self.now();
        let cluster = self.cluster.load();
        let ca = cluster
            .ca(how.ca)
            .ok_or_else(|| ApiError::internal(format!("no CA named {}", how.ca)))?;
        let issued = ca.issue(request, now).map_err(|e| match e {
            evergreen_pki::Error::Validity { .. } | evergreen_pki::Error::Name { .. } => {
                ApiError::bad_request(e.to_string())
            }
            other => ApiError::internal(other),
        })?;
        let record = CertificateRecord {
            serial: hex(&issued.serial),
            sha256: issued.fingerprint.to_string(),
            subject: request.subject.to_string(),
            sans: request
                .subject_alt_names
                .iter()
                .map(ToString::to_string)
                .collect(),
            profile: request.profile.name().to_owned(),
            role: how.role.as_str().to_owned(),
            issuer: how.ca.to_owned(),
            owner: how.owner.clone(),
            not_before: issued.not_before.unix_timestamp(),
            not_after: issued.not_after.unix_timestamp(),
            issued_at: now.unix_timestamp(),
            renewed_from: how.renewed_from.clone(),
            revoked_at: None,
            revocation_reason: None,
            superseded_by: None,
            der: issued.der.to_vec(),
        };
        let detail = format!(
            "issued {} {} certificate serial {} until {}{}",
            record.role,
            record.profile,
            record.serial,
            crate::text::rfc3339(record.not_after),
            record
                .renewed_from
                .as_ref()
                .map(|r| format!(", renewing serial {r}"))
                .unwrap_or_default()
        );
        let event =
            crate::audit::event(now, &how.actor, how.action, &record.subject, "ok", &detail);
        Ok((issued, record, event))
    }

    /// Issues a certificate and records it in the inventory before anyone sees it.
    pub async fn issue(
        &self,
        request: &IssueRequest,
        how: Issuance,
    ) -> Result<(IssuedCertificate, CertificateRecord), ApiError> {
        let (issued, record, event) = self.sign(request, &how)?;
        self.store.record_issuance(&record, &event).await?;
        self.metrics
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((issued, record))
    }

    /// Wakes watching agents when `revision` is newer than the one they know; revisions
    /// arrive out of order when several replicas write.
    pub fn advance_revision(&self, revision: i64) {
        self.revision.send_if_modified(|known| {
            let newer = revision > *known;
            if newer {
                *known = revision;
            }
            newer
        });
    }

    /// Records an audit event (every field bounded); a failure to write the audit log
    /// fails the request.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: Result<&str, &str>,
    ) -> Result<(), ApiError> {
        let (outcome, detail) = match outcome {
            Ok(detail) => ("ok", detail),
            Err(detail) => ("refused", detail),
        };
        let event = crate::audit::event(self.now(), actor, action, target, outcome, detail);
        self.store.audit(&event).await?;
        Ok(())
    }

    /// Counts a refusal by reason, and logs and audits it: in full when the caller proved
    /// who it is, else aggregated per source (see [`crate::audit`]).
    pub async fn record_refusal(&self, refusal: Refusal<'_>) {
        self.metrics.refuse(refusal.reason);
        let now = self.now();
        if !refusal.authenticated {
            let (write, summary) =
                self.refusals
                    .admit(refusal.source, refusal.action, refusal.reason.as_str(), now);
            if let Some(summary) = summary
                && let Err(error) = self.store.audit(&summary).await
            {
                tracing::error!(%error, "cannot write the audit log");
            }
            if !write {
                return;
            }
        }
        let event = crate::audit::event(
            now,
            refusal.actor,
            refusal.action,
            refusal.target,
            "refused",
            refusal.message,
        );
        tracing::info!(
            actor = %event.actor,
            action = %event.action,
            target = %event.target,
            reason = refusal.reason.as_str(),
            error = %event.detail,
            "refused"
        );
        if let Err(error) = self.store.audit(&event).await {
            tracing::error!(%error, "cannot write the audit log");
        }
    }

    /// A connection refused before any request: shed past a limit, or a failed handshake.
    pub async fn refused_connection(
        &self,
        remote: std::net::SocketAddr,
        reason: Reason,
        message: &str,
    ) {
        let actor = format!("anonymous from {}", remote.ip());
        self.record_refusal(Refusal {
            actor: &actor,
            source: remote.ip(),
            authenticated: false,
            action: "connect",
            target: "-",
            reason,
            message,
        })
        .await;
    }

    /// Writes the summaries of aggregation windows that have closed.
    pub async fn flush_refusals(&self) -> Result<(), evergreen_store::StoreError> {
        for summary in self.refusals.flush(self.now()) {
            self.store.audit(&summary).await?;
        }
        Ok(())
    }

    /// The server's own certificates `cluster` should issue anew now: those named in
    /// `forced`, and those whose files are missing, broken, another CA's, naming other
    /// names, expired or inside their renewal window. Issued in memory only.
    pub(crate) fn own_due(
        &self,
        cluster: &Cluster,
        forced: &[&str],
        actor: &str,
    ) -> anyhow::Result<Vec<crate::bootstrap::OwnIssued>> {
        let now = self.now();
        let mut issued = Vec::new();
        for own in &self.own {
            let ca = cluster
                .ca(own.ca)
                .ok_or_else(|| anyhow::anyhow!("no CA named {}", own.ca))?;
            let due = forced.contains(&own.name)
                || crate::bootstrap::current_own(own, ca, &self.settings.renewal, now).is_none();
            if due {
                issued.push(crate::bootstrap::issue_own(
                    cluster,
                    &self.settings,
                    own,
                    now,
                    actor,
                )?);
            }
        }
        Ok(issued)
    }

    /// Records `issued` in `tx` and stages its files into the change; a serving
    /// certificate goes live with it.
    pub(crate) async fn stage_own(
        &self,
        issued: &[crate::bootstrap::OwnIssued],
        tx: &mut dyn evergreen_store::Transaction,
        live: &mut crate::change::Live,
    ) -> anyhow::Result<()> {
        for own in issued {
            own.stage(tx, &mut live.files).await?;
            if own.role == Role::Server {
                live.serving = Some(own.certified_key()?);
            }
        }
        Ok(())
    }

    /// Whether `san` is one of the names this server serves under (its serving
    /// certificate's): never issued to anyone else.
    pub fn serves_name(&self, san: &evergreen_pki::SubjectAltName) -> bool {
        self.own
            .iter()
            .filter(|own| own.role == Role::Server)
            .any(|own| own.sans.contains(san))
    }

    /// Whether `der` chains to a client CA of the cluster now (a cheap check at the
    /// handshake; requests still authenticate in full, see [`crate::auth`]).
    pub fn is_client_certificate(&self, der: &CertificateDer<'_>) -> bool {
        let cluster = self.cluster.load();
        let now = self.now();
        cluster.generations(CLIENT_CA).any(|(ca, chain)| {
            evergreen_pki::chain::verify(
                der,
                chain,
                std::slice::from_ref(ca),
                evergreen_pki::certificate::Usage::ClientAuth,
                &[],
                now,
            )
            .is_ok()
        })
    }

    /// Publishes a current CRL for every CA that signs one and serves them, with the TLS
    /// configuration that refuses the certificates revoked, as one change.
    ///
    /// A CRL already published (by this server or another replica) is kept when it is
    /// signed by that CA, lists exactly the CA's revoked serials and is not past half its
    /// validity; any other is re-signed with the next CRL number. A revocation therefore
    /// re-signs only its CA's CRL, and a restart signs nothing new.
    pub async fn publish_crls(&self) -> Result<(), ApiError> {
        const ACTION: &str = "crl.publish";
        let _job = self.store.lock(Job::Crls).await?;
        let _guard = self.crl_lock.lock().await;
        let cluster = self.cluster.load_full();
        let mut tx = self.store.begin().await?;
        let (crls, revoked) = self
            .prepare_crls(&cluster, tx.as_mut())
            .await
            .map_err(|e| crate::change::failed(ACTION, "signing CRLs", e))?;
        let live = crate::change::Live {
            crls: Some((crls, revoked)),
            ..Default::default()
        };
        self.go_live_and_commit(ACTION, tx, live).await
    }

    /// The CRLs `cluster` publishes — those already published kept when current, others
    /// signed with CRL numbers from `tx`, and the set written there — and the revoked
    /// client-certificate serials.
    pub(crate) async fn prepare_crls(
        &self,
        cluster: &Cluster,
        tx: &mut dyn evergreen_store::Transaction,
    ) -> anyhow::Result<(Crls, Revoked)> {
        let now = self.now();
        let published: BTreeMap<String, Vec<u8>> = self.store.crls().await?.into_iter().collect();
        let mut crls = BTreeMap::new();
        let mut signed = false;
        for (name, role, ca) in crl_signers(cluster, now) {
            // Serials are random and unique, so a retired CA's CRL may list its role's
            // every revoked serial without ambiguity.
            let revoked = as_listed(tx.revoked(role).await?)?;
            if let Some(der) = published.get(name) {
                let crl = CertificateRevocationListDer::from(der.clone());
                if is_current(&crl, ca.certificate(), &revoked, now) {
                    crls.insert(name.to_owned(), crl);
                    continue;
                }
            }
            let number = tx.next_crl_number(name).await?;
            let next_update = (now + CRL_VALIDITY).min(ca.info().not_after);
            let crl = ca
                .issue_crl(number, &revoked, now, next_update)
                .map_err(|e| anyhow::anyhow!("cannot sign the CRL of {name}: {e}"))?;
            crls.insert(name.to_owned(), crl);
            signed = true;
        }
        if signed || crls.len() != published.len() || crls.keys().ne(published.keys()) {
            let rows: Vec<(String, Vec<u8>)> = crls
                .iter()
                .map(|(name, crl)| (name.clone(), crl.to_vec()))
                .collect();
            tx.put_crls(&rows).await?;
        }
        let revoked = as_listed(tx.revoked(CLIENT_CA).await?)?;
        Ok((crls, revoked.into_iter().map(|r| r.serial).collect()))
    }

    /// Revokes `serials` and publishes the CRLs that list them, as one change: committed
    /// together, and served from the next handshake. Serials already revoked or unknown
    /// change nothing.
    pub async fn revoke(
        &self,
        serials: &[&str],
        reason: RevocationReason,
    ) -> Result<Vec<RevokeOutcome>, ApiError> {
        let _job = self.store.lock(Job::Crls).await?;
        let _guard = self.crl_lock.lock().await;
        let mut tx = self.store.begin().await?;
        let outcomes = self.revoke_in(tx.as_mut(), serials, reason).await?;
        if !outcomes
            .iter()
            .any(|o| matches!(o, RevokeOutcome::Revoked(_)))
        {
            return Ok(outcomes);
        }
        let live = crate::change::Live {
            crls: Some(self.crls_after_revocation(tx.as_mut()).await?),
            ..Default::default()
        };
        self.go_live_and_commit("revoke", tx, live).await?;
        Ok(outcomes)
    }

    /// Revokes `serials` in `tx` (the caller publishes the CRLs with
    /// [`Self::crls_after_revocation`] in the same change).
    pub(crate) async fn revoke_in(
        &self,
        tx: &mut dyn evergreen_store::Transaction,
        serials: &[&str],
        reason: RevocationReason,
    ) -> Result<Vec<RevokeOutcome>, ApiError> {
        let at = self.now().unix_timestamp();
        let mut outcomes = Vec::with_capacity(serials.len());
        for serial in serials {
            let outcome = tx.revoke(serial, at, reason.name()).await?;
            if matches!(outcome, RevokeOutcome::Revoked(_)) {
                self.metrics
                    .revoked
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The CRLs and revoked client serials after revocations made in `tx`.
    pub(crate) async fn crls_after_revocation(
        &self,
        tx: &mut dyn evergreen_store::Transaction,
    ) -> Result<(Crls, Revoked), ApiError> {
        let cluster = self.cluster.load_full();
        self.prepare_crls(&cluster, tx)
            .await
            .map_err(|e| crate::change::failed("revoke", "signing CRLs", e))
    }

    /// The serials of every revoked client certificate, whichever generation of the
    /// client CA issued it.
    pub(crate) async fn revoked_client_serials(&self) -> anyhow::Result<Revoked> {
        Ok(as_listed(self.store.revoked(CLIENT_CA).await?)?
            .into_iter()
            .map(|r| r.serial)
            .collect())
    }

    /// Serves the CRLs another replica published: each one signed by a CA this server
    /// knows replaces the one it serves; and refuses the client certificates revoked
    /// through it. Signs nothing.
    pub async fn adopt_crls(&self) -> anyhow::Result<()> {
        let _guard = self.crl_lock.lock().await;
        let cluster = self.cluster.load_full();
        let now = self.now();
        let mut crls = (**self.crls.load()).clone();
        crls.retain(|name, _| crl_signers(&cluster, now).any(|(signer, _, _)| signer == name));
        for (name, der) in self.store.crls().await? {
            let crl = CertificateRevocationListDer::from(der);
            let signer = crl_signers(&cluster, now).find(|(signer, _, _)| *signer == name);
            if let Some((_, _, ca)) = signer
                && evergreen_pki::crl::is_signed_by(&crl, ca.certificate()).unwrap_or(false)
            {
                crls.insert(name, crl);
            }
        }
        let revoked = self.revoked_client_serials().await?;
        let config = server_config(self, &cluster, &revoked)?;
        self.crls.store(Arc::new(crls));
        self.revoked.store(Arc::new(revoked));
        self.tls.store(Arc::new(config));
        Ok(())
    }

    /// Whether a published CRL is past half its validity and should be re-signed.
    pub fn crls_stale(&self) -> bool {
        let now = self.now();
        self.crls.load().values().any(|crl| {
            evergreen_pki::crl::CrlInfo::from_der(crl).map_or(true, |info| half_past(&info, now))
        })
    }
}

/// Going live and back ([`crate::change`]): the swap of what this process serves, and
/// its undo unless the datastore commits.
impl AppState {
    /// Makes `live` what this process serves; returns how to undo it. What can fail (the
    /// TLS configuration, moving files) is done before anything is swapped.
    pub(crate) fn go_live(&self, live: Live) -> anyhow::Result<Undo> {
        let tls = if live.cluster.is_some() || live.crls.is_some() {
            let cluster = live
                .cluster
                .clone()
                .unwrap_or_else(|| self.cluster.load_full());
            let revoked = match &live.crls {
                Some((_, revoked)) => revoked.clone(),
                None => (**self.revoked.load()).clone(),
            };
            Some(crate::state::server_config(self, &cluster, &revoked)?)
        } else {
            None
        };
        let files = if live.files.is_empty() {
            None
        } else {
            Some(live.files.apply()?)
        };
        Ok(Undo {
            cluster: live.cluster.map(|c| self.cluster.swap(c)),
            serving: live.serving.map(|s| self.serving.swap(s)),
            api: live.api.map(|a| self.serving.swap_provided(a)),
            crls: live.crls.map(|(crls, revoked)| {
                (
                    self.crls.swap(Arc::new(crls)),
                    self.revoked.swap(Arc::new(revoked)),
                )
            }),
            tls: tls.map(|config| self.tls.swap(Arc::new(config))),
            files,
        })
    }

    /// Goes live with no transaction to wait for (a change another replica committed):
    /// the files stay.
    pub(crate) fn go_live_kept(&self, live: Live) -> anyhow::Result<()> {
        if let Some(files) = self.go_live(live)?.files {
            files.keep();
        }
        Ok(())
    }

    /// Puts back what [`AppState::go_live`] replaced.
    pub(crate) fn undo(&self, undo: Undo) {
        if let Some(cluster) = undo.cluster {
            self.cluster.store(cluster);
        }
        if let Some(serving) = undo.serving {
            self.serving.store(serving);
        }
        if let Some(api) = undo.api {
            self.serving.swap_provided(api);
        }
        if let Some((crls, revoked)) = undo.crls {
            self.crls.store(crls);
            self.revoked.store(revoked);
        }
        if let Some(tls) = undo.tls {
            self.tls.store(tls);
        }
        // Dropping the applied files moves the replaced ones back.
        drop(undo.files);
    }

    /// The last steps of every change: goes live, passes the change's last failpoint,
    /// commits; on any failure undoes going live (the transaction is dropped). `action`
    /// names the change in the error.
    pub(crate) async fn go_live_and_commit(
        &self,
        action: &str,
        tx: Box<dyn Transaction>,
        live: Live,
    ) -> Result<(), ApiError> {
        let undo = self
            .go_live(live)
            .map_err(|e| failed(action, "going live", e))?;
        let committed = match self.failpoints.check(&format!("{action}:live")) {
            Ok(()) => tx
                .commit()
                .await
                .map_err(|e| failed(action, "committing", e)),
            Err(e) => Err(failed(action, "going live", e)),
        };
        match committed {
            Ok(()) => {
                if let Some(files) = undo.files {
                    files.keep();
                }
                Ok(())
            }
            Err(error) => {
                self.undo(undo);
                Err(error)
            }
        }
    }
}

/// Runs `step`'s failpoint, as an answer.
pub fn passed(state: &AppState, action: &str, step: &str) -> Result<(), ApiError> {
    state
        .failpoints
        .check(&format!("{action}:{step}"))
        .map_err(|e| failed(action, step, e))
}

/// A `ServerConfig` for the current serving certificate and client CAs, refusing the
/// `revoked` serials.
pub fn server_config(
    state: &AppState,
    cluster: &Cluster,
    revoked: &Revoked,
) -> anyhow::Result<rustls::ServerConfig> {
    crate::tls::build_config(state.clock.clone(), state.serving.clone(), cluster, revoked)
}

/// The CAs that sign CRLs, as (name, role, CA): each current role CA, and each retired one
/// whose key is kept, while valid — those whose key usage allows it. A CA made by another
/// tool without `cRLSign` publishes none: Evergreen refuses its revoked leaves itself.
fn crl_signers(
    cluster: &Cluster,
    now: OffsetDateTime,
) -> impl Iterator<Item = (&str, &str, &CertificateAuthority)> {
    ROLE_CAS
        .iter()
        .filter_map(|role| Some((*role, *role, cluster.ca(role)?)))
        .chain(
            cluster
                .retired
                .iter()
                .filter_map(|r| Some((r.name.as_str(), r.role.as_str(), r.authority.as_ref()?))),
        )
        .filter(move |(_, _, ca)| ca.info().not_after > now && ca.info().can_sign_crls)
}

/// Whether a published CRL can be served as it is: signed by `ca`, listing exactly
/// `revoked`, and not past half its validity.
fn is_current(
    crl: &CertificateRevocationListDer<'_>,
    ca: &CertificateDer<'_>,
    revoked: &[RevokedCertificate],
    now: OffsetDateTime,
) -> bool {
    let Ok(info) = evergreen_pki::crl::CrlInfo::from_der(crl) else {
        return false;
    };
    let listed: std::collections::BTreeSet<&[u8]> =
        info.revoked.iter().map(|r| r.serial.as_slice()).collect();
    let wanted: std::collections::BTreeSet<&[u8]> =
        revoked.iter().map(|r| r.serial.as_slice()).collect();
    evergreen_pki::crl::is_signed_by(crl, ca).unwrap_or(false)
        && listed == wanted
        && !half_past(&info, now)
}

/// Whether a CRL is past half its validity (or has no next update).
fn half_past(info: &evergreen_pki::crl::CrlInfo, now: OffsetDateTime) -> bool {
    info.next_update
        .is_none_or(|next| now >= info.this_update + (next - info.this_update) / 2)
}

/// Lowercase hex to bytes.
pub fn parse_hex(s: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("{s:?} is not hex");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&s[i..i + 2], 16)?))
        .collect()
}

/// Revoked serials as a CRL lists them.
fn as_listed(
    revoked: Vec<evergreen_store::RevokedSerial>,
) -> anyhow::Result<Vec<RevokedCertificate>> {
    revoked
        .into_iter()
        .map(|r| {
            Ok(RevokedCertificate {
                serial: parse_hex(&r.serial)?,
                revoked_at: OffsetDateTime::from_unix_timestamp(r.revoked_at)?,
                reason: r.reason.parse().unwrap_or(RevocationReason::Unspecified),
            })
        })
        .collect()
}
