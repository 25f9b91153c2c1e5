//! What the scenarios share: wall time, latency percentiles, identities and CSRs made
//! before timing starts, and the checks made after it.
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use evergreen_api::client::Client;
use evergreen_api::{
    CertificateBundle, EnrollRequest, InventoryPage, Role, TokenRequest, TokenResponse, decode_pem,
    encode_pem,
};
use evergreen_pki::certificate::Usage;
use evergreen_pki::key::KeyType;
use evergreen_pki::{DistinguishedName, PrivateKey, pem};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

/// The wall clock: what a benchmark measures.
#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time; no expiry logic depends on it"
)]
pub fn now() -> Instant {
    Instant::now()
}

/// The calendar time, for checking the certificates a run produced.
#[allow(
    clippy::disallowed_methods,
    reason = "certificates a run produced are checked at the time they were issued"
)]
pub fn wall_time() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Request latencies of one measured run.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (0–100, nearest rank) in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        let d = sorted[rank.clamp(1, sorted.len()) - 1];
        crate::round3(d.as_secs_f64() * 1000.0)
    }

    pub fn max_ms(&self) -> f64 {
        self.percentile_ms(100.0)
    }
}

/// A certificate and key the bench holds for a connection.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKey,
}

impl Identity {
    pub fn client(&self, url: &str, roots: &[CertificateDer<'static>]) -> Result<Client> {
        Ok(Client::new(
            url,
            roots,
            Some((self.chain.clone(), self.key.der().clone_key())),
        )?)
    }
}

/// A fresh P-256 key and its CSR (PEM) for `subject`.
pub fn csr_pem(subject: &DistinguishedName) -> Result<(PrivateKey, String)> {
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let der = evergreen_pki::csr::build(&key, subject, &[])?;
    Ok((key, pem::encode("CERTIFICATE REQUEST", &der)))
}

/// A join token made through the admin API: for node names matching `nodes`, or app
/// subjects matching `subject`, `uses` times, for a day.
pub async fn token(admin: &Client, role: Role, pattern: &str, uses: usize) -> Result<String> {
    let (nodes, subject) = match role {
        Role::Node => (Some(pattern.to_owned()), None),
        _ => (None, Some(pattern.to_owned())),
    };
    let response: TokenResponse = admin
        .json(
            "POST",
            "/v1/tokens",
            Some(&TokenRequest {
                role,
                ttl_seconds: Some(86_400),
                nodes,
                subject,
                uses: Some(
                    u32::try_from(uses.max(1))
                        .unwrap_or(u32::MAX)
                        .min(1_000_000),
                ),
                description: "evergreen-bench".into(),
                ..TokenRequest::default()
            }),
        )
        .await
        .context("creating a join token")?;
    Ok(response.token)
}

/// Enrolls one identity per subject with `token`, over `parallel` keep-alive
/// connections.
pub async fn enroll_all(
    anonymous: &Client,
    token: &str,
    subjects: Vec<DistinguishedName>,
    parallel: usize,
) -> Result<Vec<Identity>> {
    let total = subjects.len();
    let parallel = parallel.clamp(1, total.max(1));
    let mut shares: Vec<Vec<(usize, DistinguishedName)>> = vec![Vec::new(); parallel];
    for (i, s) in subjects.into_iter().enumerate() {
        shares[i % parallel].push((i, s));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let anonymous = anonymous.clone();
        let token = token.to_owned();
        tasks.spawn(async move {
            let mut session = anonymous.session().await?;
            let mut out = Vec::new();
            for (i, subject) in share {
                let (key, csr) = csr_pem(&subject)?;
                let request = EnrollRequest {
                    token: token.clone(),
                    csr: encode_pem(&csr),
                };
                let bundle: CertificateBundle = session
                    .json("POST", "/v1/enroll", Some(&request))
                    .await
                    .with_context(|| format!("enrolling {subject}"))?;
                let chain = pem::parse_certificates(
                    "crt",
                    &decode_pem(&bundle.crt).map_err(anyhow::Error::msg)?,
                )?;
                out.push((i, Identity { chain, key }));
            }
            anyhow::Ok(out)
        });
    }
    let mut all: Vec<Option<Identity>> = (0..total).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        for (i, identity) in done?? {
            all[i] = Some(identity);
        }
    }
    Ok(all.into_iter().flatten().collect())
}

/// Verifies every chain (leaf first) with webpki against `roots`, and the first and last
/// with `openssl verify` when openssl is on PATH. Returns how many were checked by each.
pub fn verify_chains(
    chains: &[Vec<CertificateDer<'static>>],
    roots: &[CertificateDer<'static>],
    usage: Usage,
) -> Result<(usize, usize)> {
    let at = wall_time();
    for chain in chains {
        let (leaf, rest) = chain.split_first().context("an empty chain")?;
        evergreen_pki::chain::verify(leaf, rest, roots, usage, &[], at)
            .context("webpki refused a certificate the run produced")?;
    }
    let mut by_openssl = 0;
    if crate::process::on_path("openssl") && !chains.is_empty() {
        let dir = tempfile::tempdir()?;
        let purpose = match usage {
            Usage::ServerAuth => "sslserver",
            Usage::ClientAuth => "sslclient",
        };
        std::fs::write(
            dir.path().join("roots.pem"),
            pem::encode_certificates(roots),
        )?;
        let picks = if chains.len() > 1 {
            vec![&chains[0], &chains[chains.len() - 1]]
        } else {
            vec![&chains[0]]
        };
        for chain in picks {
            openssl_verify(dir.path(), chain, purpose)?;
            by_openssl += 1;
        }
    }
    Ok((chains.len(), by_openssl))
}

fn openssl_verify(dir: &Path, chain: &[CertificateDer<'static>], purpose: &str) -> Result<()> {
    std::fs::write(dir.join("leaf.pem"), pem::encode_certificates(&chain[..1]))?;
    std::fs::write(
        dir.join("untrusted.pem"),
        pem::encode_certificates(&chain[1..]),
    )?;
    let mut command = Command::new("openssl");
    command
        .current_dir(dir)
        .args(["verify", "-purpose", purpose, "-CAfile", "roots.pem"]);
    if chain.len() > 1 {
        command.args(["-untrusted", "untrusted.pem"]);
    }
    let out = command
        .arg("leaf.pem")
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl verify refused a certificate the run produced: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Every serial in the server's inventory.
pub async fn inventory_serials(admin: &Client) -> Result<HashSet<String>> {
    let mut session = admin.session().await?;
    let mut serials = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/certificates?limit=1000&cursor={c}"),
            None => "/v1/certificates?limit=1000".into(),
        };
        let page: InventoryPage = session.json::<(), _>("GET", &path, None).await?;
        serials.extend(page.certificates.into_iter().map(|c| c.serial));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(serials),
        }
    }
}

/// Checks that every serial in `issued` is in the inventory.
pub async fn check_inventory(admin: &Client, issued: &[String]) -> Result<usize> {
    let inventory = inventory_serials(admin).await?;
    let missing: Vec<&String> = issued.iter().filter(|s| !inventory.contains(*s)).collect();
    ensure!(
        missing.is_empty(),
        "{} of {} certificates returned are not in the inventory (first: {})",
        missing.len(),
        issued.len(),
        missing[0]
    );
    let unique: HashSet<&String> = issued.iter().collect();
    ensure!(unique.len() == issued.len(), "a serial was returned twice");
    Ok(issued.len())
}

/// The number of watches the server holds open now (`evergreen_agent_watches`).
pub async fn watches(admin: &Client) -> Result<usize> {
    let response = admin.send("GET", "/metrics", None).await?;
    let text = String::from_utf8_lossy(&response.body);
    text.lines()
        .find_map(|l| l.strip_prefix("evergreen_agent_watches "))
        .and_then(|v| v.trim().parse().ok())
        .context("the server reports no evergreen_agent_watches gauge")
}

pub async fn until_watching(admin: &Client, n: usize) -> Result<()> {
    let started = now();
    loop {
        let holding = watches(admin).await?;
        if holding >= n {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("the server holds {holding} of {n} watches after 180 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Splits `items` into `n` shares, item i going to share i mod n.
pub fn deal<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut shares: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % n].push(item);
    }
    shares
}

/// The leaf's serial (hex) of a chain.
pub fn serial_of(leaf: &CertificateDer<'_>) -> Result<String> {
    Ok(evergreen_pki::certificate::CertificateInfo::from_der(leaf)?.serial_hex())
}
