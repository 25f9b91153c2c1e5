//! Evergreen's node agent.
//!
//! It trusts the server only after checking the server's CA bundle against the root hash
//! pinned in its join token, enrolls with a key made on the node, keeps that identity
//! fresh, and installs the named certificates assigned to the node — atomically, running
//! each reload command once per change, and reporting what it installed. When the server
//! is unreachable or its identity has expired it keeps every installed file and keeps
//! trying, saying in one log line what it needs.
#![forbid(unsafe_code)]

pub mod config;
pub mod install;
pub mod renew;
pub mod trust;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result, bail};
use evergreen_api::Scope;
use evergreen_api::client::Client;
use evergreen_api::{
    AgentIssueRequest, AgentStatus, AgentWatch, Assignment, CertificateBundle, Clock,
    EnrollRequest, Installed, RenewalRequest, attestation_message, decode_pem, encode_pem,
};
use evergreen_pki::certificate::{CertificateInfo, Fingerprint, Usage};
use evergreen_pki::renewal::RenewalPolicy;
use evergreen_pki::token::JoinToken;
use evergreen_pki::{CertificateDer, DistinguishedName, KeyType, PrivateKey, pem};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use config::Config;
use install::{Credential, CredentialSink};
use trust::Trust;

/// How the agent runs.
#[derive(Clone)]
pub struct Settings {
    pub server: String,
    /// Needed to enroll (first start, or after the identity expired).
    pub token: Option<String>,
    pub data_dir: PathBuf,
    /// This node's name: the CN of its identity.
    pub node: String,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    /// How long one watch waits for a change.
    pub poll_timeout: StdDuration,
    /// The longest wait between retries after errors.
    pub max_backoff: StdDuration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What the agent has installed, by name: kept in `DATA/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    installed: BTreeMap<String, Installed>,
}

struct Agent {
    settings: Settings,
    /// The node identity, in the default layout (the client reads its key from there).
    identity: install::FileLayout,
    state_path: PathBuf,
    /// The cluster's roots: the one the token pins, then those proven to it (see
    /// [`trust`]).
    trust: Trust,
    /// What this agent refused from the server and has not reported yet.
    refused: Vec<String>,
    /// Everything refused so far, so each refusal is logged and reported once.
    seen_refusals: std::collections::BTreeSet<String>,
    /// The identity was issued by a CA the server no longer issues from: renew now.
    identity_outdated: bool,
    revision: i64,
    state: State,
    /// This identity's share of renewal jitter.
    jitter: Option<f64>,
}

/// Runs the agent until `stop` turns true.
pub async fn run(settings: Settings, mut stop: watch::Receiver<bool>) -> Result<()> {
    files_dir(&settings.data_dir)?;
    let mut agent = Agent {
        identity: install::FileLayout {
            dir: settings.data_dir.join("identity"),
            ownership: Default::default(),
        },
        state_path: settings.data_dir.join("state.json"),
        state: std::fs::read(settings.data_dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default(),
        trust: Trust::load(&settings.data_dir),
        refused: Vec::new(),
        seen_refusals: Default::default(),
        identity_outdated: false,
        revision: 0,
        jitter: None,
        settings,
    };
    let mut backoff = renew::Backoff::new(StdDuration::from_secs(1), agent.settings.max_backoff);
    let mut last_error = String::new();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let round = tokio::select! {
            r = agent.round() => r,
            _ = stop.changed() => return Ok(()),
        };
        match round {
            Ok(()) => {
                if !last_error.is_empty() {
                    tracing::info!("server reachable again; working normally");
                    last_error.clear();
                }
                backoff.reset();
            }
            Err(error) => {
                let message = format!("{error:#}");
                if message != last_error {
                    tracing::warn!("{message}; keeping every installed file and retrying");
                    last_error = message;
                }
                if !renew::pause(backoff.next_delay(), &mut stop).await {
                    return Ok(());
                }
            }
        }
    }
}

fn files_dir(dir: &std::path::Path) -> Result<()> {
    evergreen_api::files::create_private_dir(dir)
}

/// Whether a credential may be installed. A node-scope certificate (issued for this node's
/// own key) must verify to the trusted roots; a cluster-scope one must carry the cluster's
/// attestation, a signature by a CA that chains to the trusted roots over its name,
/// version and fingerprint, whoever issued it (an admin may set one from the company's
/// CA). So a server that is not the cluster's cannot hand this node a key to serve with,
/// even with a certificate of the cluster.
pub fn check_credential(
    trust: &Trust,
    watch: &AgentWatch,
    assignment: &Assignment,
    credential: &Credential,
    now: evergreen_pki::OffsetDateTime,
) -> Result<(), String> {
    if assignment.scope != Scope::Cluster {
        let chain = pem::parse_certificates("certificate", credential.chain_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        let usage = match assignment.usage {
            evergreen_api::Usage::Client => Usage::ClientAuth,
            evergreen_api::Usage::Server | evergreen_api::Usage::Peer => Usage::ServerAuth,
        };
        return trust.verifies(&chain, usage, now);
    }
    let (Some(signature), Some(signer)) = (&assignment.attestation, &watch.attested_by) else {
        return Err("it carries no attestation of the cluster".into());
    };
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "its attestation is not base64".to_owned())?;
    let signer = decode_pem(signer)
        .ok()
        .and_then(|pem| pem::parse_certificates("the attesting CA", &pem).ok())
        .ok_or_else(|| "the attesting CA cannot be read".to_owned())?;
    let message = attestation_message(
        &assignment.name,
        assignment.version,
        &credential.fingerprint.to_string(),
    );
    trust.attests(&signer, &message, &signature, now)
}

/// How a watch answer is judged before anything is installed: its trust bundle against
/// the trusted roots, and each cluster-scope credential it carries (its PEM, its key, the
/// cluster's attestation). Changes nothing: what the agent does with every answer, as a
/// function (the fuzzer drives it with arbitrary answers).
pub fn judge_watch(
    trust: &Trust,
    body: &[u8],
    now: evergreen_pki::OffsetDateTime,
) -> Result<Vec<Result<(), String>>> {
    let watch: AgentWatch = serde_json::from_slice(body)?;
    let bundle = pem::parse_certificates(
        "the trust bundle",
        &decode_pem(&watch.trust_bundle).map_err(anyhow::Error::msg)?,
    )?;
    let _ = trust.judge(&bundle);
    let text = |b64: &Option<String>| -> Option<String> {
        String::from_utf8(decode_pem(b64.as_deref()?).ok()?).ok()
    };
    Ok(watch
        .certificates
        .iter()
        .filter(|a| a.scope == Scope::Cluster)
        .map(|assignment| {
            let (Some(crt), Some(key), Some(ca)) = (
                text(&assignment.crt),
                text(&assignment.key),
                text(&assignment.ca),
            ) else {
                return Err("the server sent no readable certificate, key or CA".to_owned());
            };
            let credential = Credential::new(crt, key, ca).map_err(|e| format!("{e:#}"))?;
            check_credential(trust, &watch, assignment, &credential, now)
        })
        .collect())
}

/// The first certificate of a base64 PEM bundle.
fn first_certificate(bundle_b64: &str) -> Option<CertificateDer<'static>> {
    let pem = decode_pem(bundle_b64).ok()?;
    pem::parse_certificates("CA", &pem).ok()?.into_iter().next()
}

/// Whether `leaf` is signed by the first certificate of the base64 PEM bundle `ca`.
fn issued_by(leaf: &CertificateDer<'_>, ca: &str) -> bool {
    first_certificate(ca)
        .and_then(|ca| evergreen_pki::chain::is_signed_by(leaf, &ca).ok())
        .unwrap_or(false)
}

impl Agent {
    fn now(&self) -> evergreen_pki::OffsetDateTime {
        self.settings.clock.now()
    }

    fn token(&self) -> Result<JoinToken> {
        let Some(token) = &self.settings.token else {
            bail!(
                "this node has no valid identity: restart the agent with --token TOKEN to enroll"
            );
        };
        Ok(token.parse()?)
    }

    /// Fetches `/cacerts` without trusting the server yet and accepts it only if its root
    /// hashes to the token's pin; from then on every connection trusts the trusted roots
    /// only (see [`trust`]). A token that pins a root not trusted yet is the operator's
    /// word for it, and adds it.
    async fn pin_root(&mut self) -> Result<Vec<CertificateDer<'static>>> {
        let token = self
            .settings
            .token
            .as_deref()
            .map(str::parse::<JoinToken>)
            .transpose()?;
        let pins_new = token.as_ref().is_some_and(|t| {
            !self
                .trust
                .roots()
                .iter()
                .any(|r| Fingerprint::of(r) == t.root_hash())
        });
        if !self.trust.roots().is_empty() && !pins_new {
            return Ok(self.trust.roots().to_vec());
        }
        let token = self.token()?;
        let response = Client::unauthenticated(&self.settings.server)?
            .send("GET", "/cacerts", None)
            .await?;
        let bundle = pem::parse_certificates("the server's /cacerts", &response.body)?;
        token
            .verify_bundle(&bundle)
            .context("refusing to talk to this server; nothing was sent")?;
        let root = bundle
            .into_iter()
            .find(|c| {
                CertificateInfo::from_der(c)
                    .is_ok_and(|i| i.self_signed && i.fingerprint == token.root_hash())
            })
            .context("the pinned root is not in the bundle")?;
        self.trust.add(root)?;
        Ok(self.trust.roots().to_vec())
    }

    /// Notes a refusal: logged and reported to the server once.
    fn refuse(&mut self, message: String) {
        if self.seen_refusals.insert(message.clone()) {
            tracing::warn!("{message}");
            self.refused.push(message);
        }
    }

    /// Follows a trust bundle that arrived over a connection verified with the trusted
    /// roots: a root rotation reaches the agent this way, proven by cross-signatures.
    fn follow_trust_bundle(&mut self, bundle_b64: &str) -> Result<()> {
        let bundle = pem::parse_certificates(
            "the trust bundle",
            &decode_pem(bundle_b64).map_err(anyhow::Error::msg)?,
        )?;
        for refusal in self.trust.follow(&bundle)? {
            self.refuse(refusal);
        }
        Ok(())
    }

    fn check_credential(
        &self,
        watch: &AgentWatch,
        assignment: &Assignment,
        credential: &Credential,
    ) -> Result<(), String> {
        check_credential(&self.trust, watch, assignment, credential, self.now())
    }

    fn client(&self, roots: &[CertificateDer<'static>], with_identity: bool) -> Result<Client> {
        let identity = if with_identity {
            let chain =
                pem::parse_certificates("identity", &std::fs::read(self.identity.cert_path())?)?;
            let key =
                PrivateKey::from_pem("identity key", &std::fs::read(self.identity.key_path())?)?;
            Some((chain, key.der().clone_key()))
        } else {
            None
        };
        Ok(Client::with_clock(
            &self.settings.server,
            roots,
            identity,
            self.settings.clock.clone(),
        )?)
    }

    /// The identity's certificate, if installed.
    fn identity_info(&self) -> Option<CertificateInfo> {
        CertificateInfo::from_der(&self.identity.installed_leaf()?).ok()
    }

    /// Makes sure a valid identity is installed: enrolls without one (or after it expired,
    /// with a token), renews when its renewal window opens ([`renew::renew_at`]: the rule
    /// of `evergreen_pki::renewal`, the one `renew --daemon` follows too).
    async fn ensure_identity(&mut self, roots: &[CertificateDer<'static>]) -> Result<()> {
        let now = self.now();
        match self.identity_info() {
            Some(info) if info.not_after > now => {
                // The schedule every renewal follows; the jitter is drawn once per identity.
                let jitter = *self.jitter.get_or_insert_with(renew::draw_jitter);
                if now < renew::renew_at(&info, jitter) && !self.identity_outdated {
                    return Ok(());
                }
                let key = PrivateKey::generate(KeyType::EcP256)?;
                let csr = evergreen_pki::csr::build(&key, &info.subject, &info.subject_alt_names)?;
                let request = RenewalRequest {
                    csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
                };
                let bundle: CertificateBundle = self
                    .client(roots, true)?
                    .json(
                        "POST",
                        "/v1/applications/certificates/renewals",
                        Some(&request),
                    )
                    .await
                    .context("cannot renew this node's identity")?;
                self.save_identity(&bundle, &key)?;
                self.jitter = None;
                self.identity_outdated = false;
                tracing::info!(node = %self.settings.node, "identity renewed");
                Ok(())
            }
            Some(info) if self.settings.token.is_none() => bail!(
                "this node's identity expired at {}; restart the agent with --token TOKEN to enroll again",
                info.not_after
            ),
            _ => {
                let token = self.token()?;
                // The key is kept before it is sent: if the agent stops before it saves
                // the answer, it asks again with the same key and gets the same answer
                // (a single-use token has no second use to give).
                let pending = self.settings.data_dir.join("identity.pending.key");
                let key = match std::fs::read(&pending)
                    .ok()
                    .and_then(|pem| PrivateKey::from_pem("the pending identity key", &pem).ok())
                {
                    Some(key) => key,
                    None => {
                        let key = PrivateKey::generate(KeyType::EcP256)?;
                        evergreen_api::files::replace(
                            &pending,
                            key.to_pem().as_bytes(),
                            evergreen_api::files::KEY_MODE,
                        )?;
                        key
                    }
                };
                let csr = evergreen_pki::csr::build(
                    &key,
                    &DistinguishedName::common_name(&self.settings.node),
                    &[],
                )?;
                let request = EnrollRequest {
                    token: token.to_string(),
                    csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
                };
                let bundle: CertificateBundle = self
                    .client(roots, false)?
                    .json("POST", "/v1/enroll", Some(&request))
                    .await
                    .context("cannot enroll")?;
                self.save_identity(&bundle, &key)?;
                let _ = std::fs::remove_file(&pending);
                tracing::info!(node = %self.settings.node, "enrolled");
                Ok(())
            }
        }
    }

    fn save_identity(&self, bundle: &CertificateBundle, key: &PrivateKey) -> Result<()> {
        let chain = String::from_utf8(decode_pem(&bundle.crt).map_err(anyhow::Error::msg)?)?;
        let ca = String::from_utf8(decode_pem(&bundle.ca_crt).map_err(anyhow::Error::msg)?)?;
        let credential = Credential::new(chain, key.to_pem(), ca)?;
        self.identity.install(&credential)
    }

    /// One round: identity, one watch, installs, report.
    async fn round(&mut self) -> Result<()> {
        let roots = self.pin_root().await?;
        self.ensure_identity(&roots).await?;
        let client = self.client(&roots, true)?;
        let path = format!(
            "/v1/agent/watch?revision={}&timeout={}",
            self.revision,
            self.settings.poll_timeout.as_secs().max(1)
        );
        // A refusal carries the server's own reason (expired, revoked, …); the context
        // only says which step failed.
        let watch: AgentWatch = client
            .get_json(&path)
            .await
            .context("watching the server for changes failed")?;
        self.follow_trust_bundle(&watch.trust_bundle)?;
        let roots = self.trust.roots().to_vec();
        let client = self.client(&roots, true)?;
        if let (Some(ca), Some(leaf)) = (&watch.identity_ca, self.identity.installed_leaf())
            && !issued_by(&leaf, ca)
        {
            tracing::info!("the identity's CA was rotated; renewing it");
            self.identity_outdated = true;
        }
        let mut changed = false;
        for assignment in &watch.certificates {
            let done = self
                .state
                .installed
                .get(&assignment.name)
                .is_some_and(|i| i.version == assignment.version);
            let config = self.settings.config.for_name(&assignment.name);
            let target = install::sink_for(
                self.settings.data_dir.join("certs").join(&assignment.name),
                &config,
            )
            .with_context(|| format!("the configuration of {}", assignment.name))?;
            // One read of what is installed (a certificate with its matching key).
            let installed = target.installed_leaf();
            if done
                && let Some(leaf) = &installed
                && !self.node_cert_due(leaf, assignment)
            {
                continue;
            }
            let credential = self
                .credential(&client, assignment)
                .await
                .with_context(|| format!("cannot get {}", assignment.name))?;
            if let Err(why) = self.check_credential(&watch, assignment, &credential) {
                self.refuse(format!(
                    "refused to install {} version {} (sha256:{}): {why}",
                    assignment.name, assignment.version, credential.fingerprint
                ));
                continue;
            }
            target
                .install(&credential)
                .with_context(|| format!("cannot install {}", assignment.name))?;
            tracing::info!(name = %assignment.name, version = assignment.version, fingerprint = %credential.fingerprint, "installed");
            if let Some(command) = &config.reload
                && let Err(e) = renew::run_hook(command).await
            {
                tracing::warn!(name = %assignment.name, "the reload command failed: {e:#}");
            }
            let served = match &config.verify {
                None => None,
                Some(addr) => {
                    let seen = install::wait_until_served(
                        addr,
                        &credential.fingerprint,
                        config.verify_timeout(),
                    )
                    .await;
                    match &seen {
                        Ok(()) => {
                            tracing::info!(name = %assignment.name, %addr, "the service now serves the new certificate")
                        }
                        Err(why) => {
                            tracing::warn!(name = %assignment.name, %addr, "the service was not seen serving the new certificate: {why}")
                        }
                    }
                    Some(seen.is_ok())
                }
            };
            self.state.installed.insert(
                assignment.name.clone(),
                Installed {
                    name: assignment.name.clone(),
                    version: assignment.version,
                    fingerprint: credential.fingerprint.to_string(),
                    served,
                },
            );
            self.save_state()?;
            changed = true;
        }
        // A certificate deleted, or no longer assigned to this node: its files go.
        let gone: Vec<String> = self
            .state
            .installed
            .keys()
            .filter(|name| !watch.certificates.iter().any(|a| &a.name == *name))
            .cloned()
            .collect();
        for name in gone {
            let config = self.settings.config.for_name(&name);
            let target =
                install::sink_for(self.settings.data_dir.join("certs").join(&name), &config)
                    .with_context(|| format!("the configuration of {name}"))?;
            target
                .remove()
                .with_context(|| format!("cannot remove {name}"))?;
            self.state.installed.remove(&name);
            self.save_state()?;
            tracing::info!(%name, "removed its files: it is no longer assigned to this node");
            changed = true;
        }
        if changed || watch.revision != self.revision || !self.refused.is_empty() {
            let report = AgentStatus {
                certificates: self.state.installed.values().cloned().collect(),
                refused: self.refused.clone(),
            };
            let response = client
                .send(
                    "POST",
                    "/v1/agent/status",
                    Some(serde_json::to_vec(&report)?),
                )
                .await?;
            evergreen_api::client::check(&response)?;
            self.refused.clear();
        }
        self.revision = watch.revision;
        Ok(())
    }

    /// Writes what is installed to `state.json`.
    fn save_state(&self) -> Result<()> {
        evergreen_api::files::replace(
            &self.state_path,
            &serde_json::to_vec_pretty(&self.state)?,
            evergreen_api::files::PUBLIC_MODE,
        )
    }

    /// Whether an installed node-scope certificate must be issued again: expired, inside
    /// the renewal window, or issued by a CA the server no longer issues it from.
    fn node_cert_due(&self, leaf: &CertificateDer<'_>, assignment: &Assignment) -> bool {
        if assignment.scope != Scope::Node {
            return false;
        }
        // A CA the server sent that cannot be read counts as another CA.
        let issuer = match assignment.ca.as_deref().map(first_certificate) {
            Some(None) => return true,
            Some(Some(ca)) => Some(ca),
            None => None,
        };
        RenewalPolicy::default()
            .reissue(leaf, issuer.as_ref(), None, self.now())
            .is_some()
    }

    async fn credential(&self, client: &Client, assignment: &Assignment) -> Result<Credential> {
        let text = |b64: &Option<String>, what: &str| -> Result<String> {
            let b64 = b64
                .as_deref()
                .with_context(|| format!("the server sent no {what}"))?;
            Ok(String::from_utf8(
                decode_pem(b64).map_err(anyhow::Error::msg)?,
            )?)
        };
        if assignment.scope == Scope::Cluster {
            return Credential::new(
                text(&assignment.crt, "certificate")?,
                text(&assignment.key, "key")?,
                text(&assignment.ca, "CA")?,
            );
        }
        // Node scope: the key is made here and never leaves the node.
        let key = PrivateKey::generate(KeyType::EcP256)?;
        let csr = evergreen_pki::csr::build(
            &key,
            &DistinguishedName::common_name(&self.settings.node),
            &[],
        )?;
        let request = AgentIssueRequest {
            name: assignment.name.clone(),
            csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
        };
        let bundle: CertificateBundle = client
            .json("POST", "/v1/agent/issue", Some(&request))
            .await?;
        Credential::new(
            text(&Some(bundle.crt), "certificate")?,
            key.to_pem(),
            text(&Some(bundle.ca_crt), "CA")?,
        )
    }
}
