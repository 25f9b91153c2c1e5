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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result, bail};
use evergreen_api::client::Client;
use evergreen_api::{
    AgentIssueRequest, AgentStatus, AgentWatch, Assignment, CertificateBundle, Clock,
    EnrollRequest, Installed, RenewalRequest, decode_pem, encode_pem,
};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::renewal::{Jitter, RandomJitter};
use evergreen_pki::token::JoinToken;
use evergreen_pki::{CertificateDer, DistinguishedName, Duration, KeyType, PrivateKey, pem};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use config::Config;
use install::{Credential, Target};

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

/// Refresh the identity at 70% of its remaining lifetime, within these bounds.
const MIN_REFRESH: Duration = Duration::seconds(30);
const MAX_REFRESH: Duration = Duration::days(90);

struct Agent {
    settings: Settings,
    identity: Target,
    state_path: PathBuf,
    /// The cluster's root, once pinned.
    root: Option<CertificateDer<'static>>,
    revision: i64,
    state: State,
    /// This identity's share of renewal jitter.
    jitter: Option<f64>,
}

/// Runs the agent until `stop` turns true.
pub async fn run(settings: Settings, mut stop: watch::Receiver<bool>) -> Result<()> {
    files_dir(&settings.data_dir)?;
    let mut agent = Agent {
        identity: Target::Layout(settings.data_dir.join("identity")),
        state_path: settings.data_dir.join("state.json"),
        state: std::fs::read(settings.data_dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default(),
        root: load_root(&settings.data_dir),
        revision: 0,
        jitter: None,
        settings,
    };
    let mut backoff = StdDuration::from_secs(1);
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
                backoff = StdDuration::from_secs(1);
            }
            Err(error) => {
                let message = format!("{error:#}");
                if message != last_error {
                    tracing::warn!("{message}; keeping every installed file and retrying");
                    last_error = message;
                }
                let delay = backoff.mul_f64(1.0 + RandomJitter.fraction() * 0.3);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(agent.settings.max_backoff);
            }
        }
    }
}

fn files_dir(dir: &std::path::Path) -> Result<()> {
    evergreen_api::files::create_private_dir(dir)
}

fn load_root(data_dir: &std::path::Path) -> Option<CertificateDer<'static>> {
    let bytes = std::fs::read(data_dir.join("root.crt")).ok()?;
    pem::parse_certificates("root.crt", &bytes)
        .ok()?
        .into_iter()
        .next()
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
    /// hashes to the token's pin; from then on every connection trusts that root only.
    async fn pin_root(&mut self) -> Result<CertificateDer<'static>> {
        if let Some(root) = &self.root {
            return Ok(root.clone());
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
        evergreen_api::files::replace(
            &self.settings.data_dir.join("root.crt"),
            pem::encode("CERTIFICATE", &root).as_bytes(),
            evergreen_api::files::PUBLIC_MODE,
        )?;
        self.root = Some(root.clone());
        Ok(root)
    }

    fn client(&self, root: &CertificateDer<'static>, with_identity: bool) -> Result<Client> {
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
            std::slice::from_ref(root),
            identity,
            self.settings.clock.clone(),
        )?)
    }

    /// The identity's certificate, if installed.
    fn identity_info(&self) -> Option<CertificateInfo> {
        self.identity.installed()?;
        let chain =
            pem::parse_certificates("", &std::fs::read(self.identity.cert_path()).ok()?).ok()?;
        CertificateInfo::from_der(&chain[0]).ok()
    }

    /// Makes sure a valid identity is installed: enrolls without one (or after it expired,
    /// with a token), renews when 70% of its remaining life has passed.
    async fn ensure_identity(&mut self, root: &CertificateDer<'static>) -> Result<()> {
        let now = self.now();
        match self.identity_info() {
            Some(info) if info.not_after > now => {
                let (issued, lifetime) = (info.not_before, info.not_after - info.not_before);
                // 70% of the lifetime, up to a tenth earlier at random so a fleet enrolled
                // together does not renew together; the jitter is drawn once per identity.
                let jitter = self
                    .jitter
                    .get_or_insert_with(|| RandomJitter.fraction() * 0.1);
                let refresh: Duration =
                    (lifetime * (0.7 * (1.0 - *jitter))).clamp(MIN_REFRESH, MAX_REFRESH);
                if now < issued + refresh {
                    return Ok(());
                }
                let key = PrivateKey::generate(KeyType::EcP256)?;
                let csr = evergreen_pki::csr::build(&key, &info.subject, &info.subject_alt_names)?;
                let request = RenewalRequest {
                    csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
                };
                let bundle: CertificateBundle = self
                    .client(root, true)?
                    .json(
                        "POST",
                        "/v1/applications/certificates/renewals",
                        Some(&request),
                    )
                    .await
                    .context("cannot renew this node's identity")?;
                self.save_identity(&bundle, &key)?;
                self.jitter = None;
                tracing::info!(node = %self.settings.node, "identity renewed");
                Ok(())
            }
            Some(info) if self.settings.token.is_none() => bail!(
                "this node's identity expired at {}; restart the agent with --token TOKEN to enroll again",
                info.not_after
            ),
            _ => {
                let token = self.token()?;
                let key = PrivateKey::generate(KeyType::EcP256)?;
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
                    .client(root, false)?
                    .json("POST", "/v1/enroll", Some(&request))
                    .await
                    .context("cannot enroll")?;
                self.save_identity(&bundle, &key)?;
                tracing::info!(node = %self.settings.node, "enrolled");
                Ok(())
            }
        }
    }

    fn save_identity(&self, bundle: &CertificateBundle, key: &PrivateKey) -> Result<()> {
        let chain = String::from_utf8(decode_pem(&bundle.crt).map_err(anyhow::Error::msg)?)?;
        let ca = String::from_utf8(decode_pem(&bundle.ca_crt).map_err(anyhow::Error::msg)?)?;
        let credential = Credential::new(chain, key.to_pem(), ca)?;
        install::install(&self.identity, &credential, &Default::default())
    }

    /// One round: identity, one watch, installs, report.
    async fn round(&mut self) -> Result<()> {
        let root = self.pin_root().await?;
        self.ensure_identity(&root).await?;
        let client = self.client(&root, true)?;
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
        let mut changed = false;
        for assignment in &watch.certificates {
            let done = self
                .state
                .installed
                .get(&assignment.name)
                .is_some_and(|i| i.version == assignment.version);
            let config = self.settings.config.for_name(&assignment.name);
            let target = Target::for_config(
                self.settings.data_dir.join("certs").join(&assignment.name),
                &config,
            );
            if done && target.installed().is_some() {
                continue;
            }
            let credential = self
                .credential(&client, assignment)
                .await
                .with_context(|| format!("cannot get {}", assignment.name))?;
            install::install(&target, &credential, &config)
                .with_context(|| format!("cannot install {}", assignment.name))?;
            tracing::info!(name = %assignment.name, version = assignment.version, fingerprint = %credential.fingerprint, "installed");
            if let Some(command) = &config.reload {
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .status()
                    .await;
                match status {
                    Ok(s) if s.success() => {}
                    Ok(s) => {
                        tracing::warn!(name = %assignment.name, %command, "reload command failed: {s}")
                    }
                    Err(e) => {
                        tracing::warn!(name = %assignment.name, %command, "reload command did not run: {e}")
                    }
                }
            }
            if let Some(addr) = &config.verify {
                match install::served_fingerprint(addr).await {
                    Ok(served) if served == credential.fingerprint => {
                        tracing::info!(name = %assignment.name, %addr, "the service now serves the new certificate");
                    }
                    Ok(served) => {
                        tracing::warn!(name = %assignment.name, %addr, %served, "the service still serves another certificate")
                    }
                    Err(e) => {
                        tracing::warn!(name = %assignment.name, %addr, "cannot check what the service serves: {e:#}")
                    }
                }
            }
            self.state.installed.insert(
                assignment.name.clone(),
                Installed {
                    name: assignment.name.clone(),
                    version: assignment.version,
                    fingerprint: credential.fingerprint.to_string(),
                },
            );
            evergreen_api::files::replace(
                &self.state_path,
                &serde_json::to_vec_pretty(&self.state)?,
                evergreen_api::files::PUBLIC_MODE,
            )?;
            changed = true;
        }
        if changed || watch.revision != self.revision {
            let report = AgentStatus {
                certificates: self.state.installed.values().cloned().collect(),
            };
            let response = client
                .send(
                    "POST",
                    "/v1/agent/status",
                    Some(serde_json::to_vec(&report)?),
                )
                .await?;
            evergreen_api::client::check(&response)?;
        }
        self.revision = watch.revision;
        Ok(())
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
        if assignment.scope == "cluster" {
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
            ip: local_ip(&self.settings.server).map(|ip| ip.to_string()),
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

/// The local address this node uses to reach the server.
fn local_ip(server: &str) -> Option<std::net::IpAddr> {
    let (host, port) = evergreen_api::client::parse_url(server).ok()?;
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect((host.as_str(), port)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}
