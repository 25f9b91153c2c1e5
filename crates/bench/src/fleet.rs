//! `fleet`: N agents simulated in this process, each with its own node identity, mTLS
//! connection and long-poll watch, acknowledging what they receive as a real agent does.
//! Measured: from an `update_cert` call until every agent has acknowledged the new
//! certificate's fingerprint.
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use evergreen_api::client::Client;
use evergreen_api::{
    AgentStatus, AgentWatch, Installed, NamedCertificateSpec, NamedCertificateStatus, Replacement,
    Role, UpdateCert, decode_pem,
};
use evergreen_pki::authority::{CertificateAuthority, IssueRequest};
use evergreen_pki::certificate::{Fingerprint, Usage};
use evergreen_pki::key::KeyType;
use evergreen_pki::{DistinguishedName, Duration as Validity, PrivateKey, Profile, pem};
use serde_json::json;
use tokio::sync::mpsc;

use crate::load::{self, Identity, Latencies, now, wall_time};
use crate::process::Server;
use crate::{FleetArgs, Report, round3};

/// The named certificate every simulated node installs.
const NAME: &str = "fleet-proxy";

/// What a simulated agent tells the scenario.
enum Event {
    Acked { fingerprint: String, at: Instant },
    Failed(String),
}

pub async fn run(evergreen: &Path, args: &FleetArgs) -> Result<Report> {
    let mut report = Report::new("fleet");
    for &agents in &args.agents {
        one_size(evergreen, agents.max(1), args.updates.max(1), &mut report).await?;
    }
    Ok(report)
}

/// Open files this process may have (soft limit).
fn open_file_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// One simulated agent: watch, install (check the fingerprint), acknowledge, watch again.
async fn agent(client: Client, events: mpsc::UnboundedSender<Event>) {
    let result: Result<()> = async {
        let mut session = client.session().await?;
        let mut revision = 0;
        let mut installed = String::new();
        loop {
            let watch: AgentWatch = session
                .json::<(), _>(
                    "GET",
                    &format!("/v1/agent/watch?revision={revision}&timeout=60"),
                    None,
                )
                .await?;
            revision = watch.revision;
            let Some(assignment) = watch.certificates.iter().find(|a| a.name == NAME) else {
                continue;
            };
            let chain = decode_pem(assignment.crt.as_deref().unwrap_or_default())
                .map_err(anyhow::Error::msg)?;
            let leaf = pem::parse_certificates("crt", &chain)?;
            let fingerprint = Fingerprint::of(&leaf[0]).to_string();
            if fingerprint == installed {
                continue;
            }
            let status = AgentStatus {
                certificates: vec![Installed {
                    name: NAME.into(),
                    version: assignment.version,
                    fingerprint: fingerprint.clone(),
                    served: None,
                }],
                refused: Vec::new(),
            };
            let response = session
                .send(
                    "POST",
                    "/v1/agent/status",
                    Some(serde_json::to_vec(&status)?),
                )
                .await?;
            evergreen_api::client::check(&response)?;
            installed = fingerprint.clone();
            if events
                .send(Event::Acked {
                    fingerprint,
                    at: now(),
                })
                .is_err()
            {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = result {
        let _ = events.send(Event::Failed(format!("{e:#}")));
    }
}

/// Waits until `n` distinct agents acknowledged `fingerprint` (any, when empty); returns
/// when each did.
async fn acks(
    events: &mut mpsc::UnboundedReceiver<Event>,
    n: usize,
    fingerprint: &str,
    within: Duration,
) -> Result<Vec<Instant>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut times = Vec::with_capacity(n);
    while times.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!(
                "only {} of {n} agents acknowledged within {} s",
                times.len(),
                within.as_secs()
            ),
            Ok(None) => bail!("every agent stopped"),
            Ok(Some(Event::Failed(e))) => bail!("an agent failed: {e}"),
            Ok(Some(Event::Acked { fingerprint: f, at })) => {
                if fingerprint.is_empty() || f == fingerprint {
                    times.push(at);
                }
            }
        }
    }
    Ok(times)
}

async fn one_size(evergreen: &Path, n: usize, updates: usize, report: &mut Report) -> Result<()> {
    if let Some(limit) = open_file_limit() {
        ensure!(
            n + 200 <= limit,
            "{n} agents need {} open files and this process may have {limit}; raise it (ulimit -n)",
            n + 200
        );
    }
    let dir = tempfile::tempdir()?;
    let server = Server::start(evergreen, &dir.path().join("evergreen")).await?;
    let admin = server.admin()?;
    let spec = NamedCertificateSpec {
        name: NAME.into(),
        scope: evergreen_api::Scope::Cluster,
        kind: evergreen_api::Kind::Selfsigned,
        label: String::new(),
        internal: false,
        usage: evergreen_api::Usage::Server,
        sans: vec!["fleet-proxy.example".into()],
        nodes: Vec::new(),
        secret: None,
        allowed_dns: Vec::new(),
        allowed_cidrs: Vec::new(),
    };
    let _: Replacement = admin
        .json("POST", "/v1/cluster/certificates", Some(&spec))
        .await
        .context("declaring the fleet's named certificate")?;

    eprintln!("fleet: enrolling {n} nodes");
    let token = load::token(&admin, Role::Node, "node-*", n).await?;
    let identities = load::enroll_all(
        &server.anonymous()?,
        &token,
        (0..n)
            .map(|i| DistinguishedName::common_name(format!("node-{i}")))
            .collect(),
        16,
    )
    .await?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut agents = tokio::task::JoinSet::new();
    for identity in &identities {
        let client = identity.client(&server.url, &server.roots)?;
        agents.spawn(agent(client, tx.clone()));
    }
    drop(tx);
    eprintln!("fleet: {n} agents connecting");
    acks(&mut events, n, "", Duration::from_secs(600)).await?;
    load::until_watching(&admin, n).await?;
    let connected_rss = server.proc().rss_mb()?;

    // Replacements come from a CA of the operator's own (a `provided` certificate).
    let at = wall_time();
    let ca = CertificateAuthority::new_root(
        DistinguishedName::common_name("Evergreen bench operator CA"),
        PrivateKey::generate(KeyType::EcP256)?,
        Validity::days(2),
        at,
    )?;
    let mut latencies = Latencies::default();
    let mut all_acked = Vec::new();
    let mut cpu_s = 0.0;
    let mut installed = Vec::new();
    for _ in 0..updates {
        let key = PrivateKey::generate(KeyType::EcP256)?;
        let issued = ca.issue(
            &IssueRequest {
                subject: DistinguishedName::common_name(NAME),
                subject_alt_names: vec!["fleet-proxy.example".parse().map_err(anyhow::Error::msg)?],
                public_key: key.public_key(),
                profile: Profile::Server,
                validity: Validity::days(1),
            },
            at,
        )?;
        let fingerprint = Fingerprint::of(&issued.der).to_string();
        let mut certificate = pem::encode("CERTIFICATE", &issued.der);
        certificate.push_str(&ca.bundle_pem());
        let body = UpdateCert {
            name: NAME.into(),
            key: key.to_pem(),
            certificate,
        };
        let cpu_before = server.proc().cpu_seconds()?;
        let started = now();
        let replaced: Replacement = admin
            .json("PUT", "/v1/cluster/update_cert", Some(&body))
            .await
            .context("update_cert")?;
        ensure!(
            replaced.fingerprint.as_deref() == Some(fingerprint.as_str()),
            "update_cert answered fingerprint {:?}, not {fingerprint}",
            replaced.fingerprint
        );
        let times = acks(&mut events, n, &fingerprint, Duration::from_secs(120)).await?;
        let mut slowest = Duration::ZERO;
        for t in times {
            let d = t.saturating_duration_since(started);
            slowest = slowest.max(d);
            latencies.push(d);
        }
        all_acked.push(slowest);
        cpu_s += server.proc().cpu_seconds()? - cpu_before;
        installed.push(vec![issued.der.clone(), ca.certificate().clone()]);

        // The server's view: every node acknowledged this fingerprint.
        let named: Vec<NamedCertificateStatus> = admin.get_json("/v1/cluster/certificates").await?;
        let acked: HashSet<&str> = named
            .iter()
            .find(|c| c.name == NAME)
            .map(|c| {
                c.acknowledged
                    .iter()
                    .filter(|a| a.fingerprint == fingerprint)
                    .map(|a| a.node.as_str())
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            acked.len() == n,
            "the server lists {} of {n} nodes as having installed {fingerprint}",
            acked.len()
        );
        load::until_watching(&admin, n).await?;
    }
    agents.abort_all();
    all_acked.sort_unstable();
    let median = all_acked[all_acked.len() / 2];
    report.push(json!({
        "system": "evergreen",
        "agents": n,
        "updates": updates,
        "all_acked_ms": round3(median.as_secs_f64() * 1000.0),
        "all_acked_worst_ms": round3(all_acked[all_acked.len() - 1].as_secs_f64() * 1000.0),
        "p50_ms": latencies.percentile_ms(50.0),
        "p99_ms": latencies.percentile_ms(99.0),
        "max_ms": latencies.max_ms(),
        "server_cpu_s_per_update": round3(cpu_s / updates as f64),
        "server_rss_mb": round3(connected_rss),
        "peak_rss_mb": round3(server.proc().peak_rss_mb()?),
    }));
    report.check(format!(
        "{n} agents: the server lists every node with each of the {updates} new fingerprints"
    ));
    let (webpki, openssl) =
        load::verify_chains(&installed, &[ca.certificate().clone()], Usage::ServerAuth)?;
    let identity_chains: Vec<_> = identities
        .iter()
        .map(|i: &Identity| i.chain.clone())
        .collect();
    let (ids, ids_openssl) =
        load::verify_chains(&identity_chains, &server.roots, Usage::ClientAuth)?;
    report.check(format!(
        "{n} agents: installed certificates verified ({webpki} webpki, {openssl} openssl); node identities verified ({ids} webpki, {ids_openssl} openssl)"
    ));
    server.stop().await?;
    Ok(())
}
