//! `issue`: renewals (the Kyma-compatible endpoint) and enrollments over C keep-alive mTLS
//! connections to a real `evergreen server`, and the same CSRs through `cfssl serve`,
//! round by round.
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use evergreen_api::client::Session;
use evergreen_api::{
    CertificateBundle, EnrollRequest, RenewalRequest, Role, decode_pem, encode_pem,
};
use evergreen_pki::certificate::Usage;
use evergreen_pki::{DistinguishedName, pem};
use rustls_pki_types::CertificateDer;
use serde_json::json;

use crate::cfssl::Cfssl;
use crate::load::{self, Latencies, deal, now};
use crate::process::{Proc, Server};
use crate::{IssueArgs, Report, round3};

const RENEWAL: &str = "/v1/applications/certificates/renewals";
const ENROLL: &str = "/v1/enroll";
const CFSSL_SIGN: &str = "/api/v1/cfssl/sign";

/// One system's figures at one concurrency level, summed over its rounds.
#[derive(Debug, Default)]
struct Tally {
    certs: usize,
    wall: Duration,
    cpu_s: f64,
    latencies: Latencies,
    answers: Vec<Vec<u8>>,
}

impl Tally {
    fn add(&mut self, round: Tally) {
        self.certs += round.certs;
        self.wall += round.wall;
        self.cpu_s += round.cpu_s;
        self.latencies.extend(round.latencies);
        self.answers.extend(round.answers);
    }

    fn certs_per_sec(&self) -> f64 {
        self.certs as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn cpu_ms_per_cert(&self) -> f64 {
        self.cpu_s * 1000.0 / self.certs.max(1) as f64
    }

    fn figures(
        &self,
        system: &str,
        endpoint: &str,
        connections: usize,
        peak_rss_mb: f64,
    ) -> serde_json::Value {
        json!({
            "system": system,
            "endpoint": endpoint,
            "connections": connections,
            "certs": self.certs,
            "certs_per_sec": round3(self.certs_per_sec()),
            "p50_ms": self.latencies.percentile_ms(50.0),
            "p99_ms": self.latencies.percentile_ms(99.0),
            "max_ms": self.latencies.max_ms(),
            "server_cpu_s_per_1k": round3(self.cpu_ms_per_cert()),
            "peak_rss_mb": round3(peak_rss_mb),
        })
    }
}

/// Sends every body of `shares[i]` on `sessions[i]`, all connections at once, and measures
/// wall time, each request's latency and the CPU time `server` spent.
async fn round(
    sessions: Vec<Session>,
    path: &'static str,
    shares: Vec<Vec<Vec<u8>>>,
    expect: u16,
    server: Proc,
) -> Result<Tally> {
    let cpu_before = server.cpu_seconds()?;
    let started = now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut session, share)) in sessions.into_iter().zip(shares).enumerate() {
        tasks.spawn(async move {
            let mut latencies = Latencies::default();
            let mut answers = Vec::with_capacity(share.len());
            for body in share {
                let sent = now();
                let response = session.send("POST", path, Some(body)).await?;
                latencies.push(sent.elapsed());
                if response.status != expect {
                    let text = String::from_utf8_lossy(&response.body);
                    bail!(
                        "{path} answered {} (expected {expect}): {}",
                        response.status,
                        text.chars().take(300).collect::<String>()
                    );
                }
                answers.push(response.body);
            }
            anyhow::Ok((i, latencies, answers))
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        done.push(joined??);
    }
    let wall = started.elapsed();
    let cpu_s = server.cpu_seconds()? - cpu_before;
    done.sort_by_key(|(i, ..)| *i);
    let mut tally = Tally {
        wall,
        cpu_s,
        ..Tally::default()
    };
    for (_, latencies, answers) in done {
        tally.certs += answers.len();
        tally.latencies.extend(latencies);
        tally.answers.extend(answers);
    }
    Ok(tally)
}

fn app_subject(i: usize) -> DistinguishedName {
    DistinguishedName::common_name(format!("bench-app-{i}"))
}

/// The certificate chains in Evergreen's answers.
fn evergreen_chains(answers: &[Vec<u8>]) -> Result<Vec<Vec<CertificateDer<'static>>>> {
    answers
        .iter()
        .map(|a| {
            let bundle: CertificateBundle =
                serde_json::from_slice(a).context("reading an answer")?;
            let pem_text = decode_pem(&bundle.crt).map_err(anyhow::Error::msg)?;
            Ok(pem::parse_certificates("crt", &pem_text)?)
        })
        .collect()
}

pub async fn run(evergreen: &Path, args: &IssueArgs) -> Result<Report> {
    let mut report = Report::new("issue");
    let dir = tempfile::tempdir()?;
    let levels: Vec<usize> = args
        .connections
        .iter()
        .copied()
        .filter(|c| *c > 0)
        .collect();
    let widest = levels
        .iter()
        .copied()
        .max()
        .context("--connections must be at least 1")?;
    let rounds = args.rounds.max(1);
    let per_round = args.count.div_ceil(rounds).max(1);

    let server = Server::start(evergreen, &dir.path().join("evergreen")).await?;
    let admin = server.admin()?;
    let anonymous = server.anonymous()?;
    // Enough uses for the identities and every enrollment measured.
    let uses = widest + levels.len() * rounds * per_round;
    let token = load::token(&admin, Role::App, "CN=bench-*", uses).await?;
    eprintln!("issue: enrolling {widest} application identities");
    let identities = load::enroll_all(
        &anonymous,
        &token,
        (0..widest).map(app_subject).collect(),
        8,
    )
    .await?;
    let cfssl = match args.vs.as_deref() {
        Some("cfssl") => Some(Cfssl::start(&dir.path().join("cfssl"), widest).await?),
        Some(other) => bail!("unknown peer {other:?}; the peer measured is cfssl"),
        None => None,
    };

    let mut serials = Vec::new();
    let mut evergreen_chains_all = Vec::new();
    let mut cfssl_leaves = Vec::new();
    for &connections in &levels {
        let mut ours = Tally::default();
        let mut theirs = Tally::default();
        for r in 0..rounds {
            // Keys and CSRs first: CSR j belongs to connection j mod C, whose subject it has.
            let csrs: Vec<String> = (0..per_round)
                .map(|j| load::csr_pem(&app_subject(j % connections)).map(|(_, csr)| csr))
                .collect::<Result<_>>()?;
            let mut order = vec![true, false];
            if r % 2 == 1 {
                order.reverse();
            }
            for evergreen_first in order {
                if evergreen_first {
                    let bodies = csrs
                        .iter()
                        .map(|c| serde_json::to_vec(&RenewalRequest { csr: encode_pem(c) }))
                        .collect::<Result<Vec<_>, _>>()?;
                    let mut sessions = Vec::new();
                    for identity in &identities[..connections] {
                        sessions.push(
                            identity
                                .client(&server.url, &server.roots)?
                                .session()
                                .await?,
                        );
                    }
                    let tally = round(
                        sessions,
                        RENEWAL,
                        deal(bodies, connections),
                        201,
                        server.proc(),
                    )
                    .await?;
                    ours.add(tally);
                } else if let Some(cfssl) = &cfssl {
                    let bodies = csrs.iter().map(|c| Cfssl::body(c)).collect();
                    let mut sessions = Vec::new();
                    for i in 0..connections {
                        sessions.push(cfssl.client(i)?.session().await?);
                    }
                    let tally = round(
                        sessions,
                        CFSSL_SIGN,
                        deal(bodies, connections),
                        200,
                        cfssl.proc(),
                    )
                    .await?;
                    theirs.add(tally);
                }
            }
        }
        let mut ours_row = ours.figures(
            "evergreen",
            "renewal",
            connections,
            server.proc().peak_rss_mb()?,
        );
        if let Some(cfssl) = &cfssl {
            let cpu_ratio = theirs.cpu_ms_per_cert() / ours.cpu_ms_per_cert().max(1e-9);
            let rate_ratio = ours.certs_per_sec() / theirs.certs_per_sec().max(1e-9);
            ours_row["cpu_advantage_x"] = json!(round3(cpu_ratio));
            ours_row["rate_x"] = json!(round3(rate_ratio));
            report.push(ours_row);
            report.push(theirs.figures("cfssl", "sign", connections, cfssl.proc().peak_rss_mb()?));
            for answer in &theirs.answers {
                cfssl_leaves.push(vec![Cfssl::certificate(answer)?]);
            }
        } else {
            report.push(ours_row);
        }
        let chains = evergreen_chains(&ours.answers)?;
        for chain in &chains {
            serials.push(load::serial_of(&chain[0])?);
        }
        evergreen_chains_all.extend(chains);

        if !args.no_enroll {
            let mut enrolled = Tally::default();
            for r in 0..rounds {
                let bodies = (0..per_round)
                    .map(|j| {
                        let subject = DistinguishedName::common_name(format!(
                            "bench-enroll-{connections}-{r}-{j}"
                        ));
                        let (_, csr) = load::csr_pem(&subject)?;
                        Ok(serde_json::to_vec(&EnrollRequest {
                            token: token.clone(),
                            csr: encode_pem(&csr),
                        })?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut sessions = Vec::new();
                for _ in 0..connections {
                    sessions.push(anonymous.session().await?);
                }
                let tally = round(
                    sessions,
                    ENROLL,
                    deal(bodies, connections),
                    201,
                    server.proc(),
                )
                .await?;
                enrolled.add(tally);
            }
            report.push(enrolled.figures(
                "evergreen",
                "enroll",
                connections,
                server.proc().peak_rss_mb()?,
            ));
            let chains = evergreen_chains(&enrolled.answers)?;
            for chain in &chains {
                serials.push(load::serial_of(&chain[0])?);
            }
            evergreen_chains_all.extend(chains);
        }
    }

    let in_inventory = load::check_inventory(&admin, &serials).await?;
    report.check(format!(
        "all {in_inventory} certificates Evergreen returned are in its inventory, no serial twice"
    ));
    let (webpki, openssl) =
        load::verify_chains(&evergreen_chains_all, &server.roots, Usage::ClientAuth)?;
    report.check(format!(
        "Evergreen's chains verified: {webpki} by webpki, {openssl} by openssl"
    ));
    if let Some(cfssl) = cfssl {
        let (webpki, openssl) = load::verify_chains(
            &cfssl_leaves,
            std::slice::from_ref(&cfssl.signing_root),
            Usage::ClientAuth,
        )?;
        report.check(format!(
            "cfssl's certificates verified: {webpki} by webpki, {openssl} by openssl"
        ));
        cfssl.stop().await?;
    }
    server.stop().await?;
    Ok(report)
}
