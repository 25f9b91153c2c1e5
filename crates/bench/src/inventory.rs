//! `inventory`: a datastore holding N issued certificates (real certificates, expiring
//! evenly over the next year), then the "expiring within 30 days" listing behind
//! `evergreen certificate check` — in the store, through the API, and as the command
//! itself — and a `/metrics` scrape.
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use evergreen_api::InventoryPage;
use evergreen_pki::authority::{CertificateAuthority, IssueRequest};
use evergreen_pki::certificate::hex;
use evergreen_pki::key::KeyType;
use evergreen_pki::{DistinguishedName, Duration as Validity, PrivateKey, Profile};
use evergreen_store::{AuditEvent, CertificateRecord, InventoryQuery, Store};
use serde_json::json;

use crate::load::{Latencies, now, wall_time};
use crate::process::Server;
use crate::{InventoryArgs, Report, round3};

/// Certificates made and stored per step.
const CHUNK: usize = 4000;

/// Makes certificates `range` under `ca` for one public key, expiring evenly over a year.
fn make(
    ca: &CertificateAuthority,
    key: &PrivateKey,
    range: std::ops::Range<usize>,
    at: time::OffsetDateTime,
) -> Result<Vec<CertificateRecord>> {
    range
        .map(|i| {
            // Spread over 1..=365 days, and over the seconds of a day.
            let days = 1 + (i * 7919) % 365;
            let validity = Validity::days(days as i64) + Validity::seconds((i % 86_400) as i64);
            let subject = format!("CN=bench-inventory-{i}");
            let issued = ca.issue(
                &IssueRequest {
                    subject: DistinguishedName::common_name(format!("bench-inventory-{i}")),
                    subject_alt_names: Vec::new(),
                    public_key: key.public_key(),
                    profile: Profile::Client,
                    validity,
                },
                at,
            )?;
            Ok(CertificateRecord {
                serial: hex(&issued.serial),
                sha256: issued.fingerprint.to_string(),
                subject,
                sans: Vec::new(),
                profile: "client".into(),
                role: "app".into(),
                issuer: "client-ca".into(),
                owner: "evergreen-bench".into(),
                not_before: issued.not_before.unix_timestamp(),
                not_after: issued.not_after.unix_timestamp(),
                issued_at: at.unix_timestamp(),
                renewed_from: None,
                revoked_at: None,
                revocation_reason: None,
                superseded_by: None,
                der: issued.der.to_vec(),
            })
        })
        .collect()
}

/// Stores `total` certificates through the datastore's own write path (group commit),
/// making them on every core.
async fn seed(store: Arc<dyn Store>, total: usize) -> Result<()> {
    let at = wall_time();
    let ca = Arc::new(CertificateAuthority::new_root(
        DistinguishedName::common_name("Evergreen bench inventory CA"),
        PrivateKey::generate(KeyType::EcP256)?,
        Validity::days(800),
        at,
    )?);
    let key = Arc::new(PrivateKey::generate(KeyType::EcP256)?);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = now();
    let mut done = 0;
    while done < total {
        let end = (done + CHUNK).min(total);
        let mut makers = tokio::task::JoinSet::new();
        let step = (end - done).div_ceil(cores);
        for start in (done..end).step_by(step.max(1)) {
            let (ca, key) = (ca.clone(), key.clone());
            let stop = (start + step).min(end);
            makers.spawn_blocking(move || make(&ca, &key, start..stop, at));
        }
        let mut writers = tokio::task::JoinSet::new();
        while let Some(records) = makers.join_next().await {
            for record in records?? {
                let store = store.clone();
                writers.spawn(async move {
                    let event = AuditEvent {
                        at: record.issued_at,
                        actor: "evergreen-bench".into(),
                        action: "issue".into(),
                        target: record.serial.clone(),
                        outcome: "ok".into(),
                        detail: String::new(),
                    };
                    store.record_issuance(&record, &event).await
                });
            }
        }
        while let Some(written) = writers.join_next().await {
            written??;
        }
        done = end;
        if done % 100_000 < CHUNK || done == total {
            eprintln!(
                "inventory: {done} of {total} certificates stored ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

pub async fn run(evergreen: &Path, args: &InventoryArgs) -> Result<Report> {
    let mut report = Report::new("inventory");
    let repeat = args.repeat.max(1);
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("evergreen");
    // The server makes its datastore and CAs, then stops while the inventory is filled.
    Server::start(evergreen, &data_dir).await?.stop().await?;
    let datastore = format!(
        "sqlite://{}",
        data_dir
            .join("server")
            .join("db")
            .join("state.db")
            .display()
    );
    let store = evergreen_store::open(&datastore).await?;
    let seeding = now();
    seed(store.clone(), args.certificates).await?;
    let seed_s = seeding.elapsed().as_secs_f64();

    // The query itself, in the store.
    let at = wall_time().unix_timestamp();
    let query = InventoryQuery {
        not_after_before: Some(at + 30 * 86_400),
        status: Some("active".into()),
        now: at,
        after: None,
        limit: 1000,
    };
    let mut in_store = Latencies::default();
    let mut expiring = 0;
    for _ in 0..repeat {
        let started = now();
        let page = store.list_certificates(&query).await?;
        in_store.push(started.elapsed());
        expiring = page.len();
    }
    drop(store);

    let starting = now();
    let server = Server::start(evergreen, &data_dir).await?;
    let startup = starting.elapsed();
    let admin = server.admin()?;
    let mut first_page = Latencies::default();
    let mut all_pages = Latencies::default();
    let mut listed = 0;
    for _ in 0..repeat {
        let mut session = admin.session().await?;
        let started = now();
        let mut cursor: Option<String> = None;
        listed = 0;
        loop {
            let mut path =
                "/v1/certificates?expiring_within=30d&status=active&limit=1000".to_owned();
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page: InventoryPage = session.json::<(), _>("GET", &path, None).await?;
            if cursor.is_none() {
                first_page.push(started.elapsed());
            }
            listed += page.certificates.len();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        all_pages.push(started.elapsed());
    }
    ensure!(
        expiring == listed.min(1000),
        "the store's first page has {expiring} certificates, the API listed {listed}"
    );

    // The command an operator runs.
    let mut command_times = Latencies::default();
    for _ in 0..repeat {
        let started = now();
        let out = Command::new(evergreen)
            .args([
                "certificate",
                "check",
                "--expiring-within",
                "30d",
                "-o",
                "json",
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .context("running evergreen certificate check")?;
        command_times.push(started.elapsed());
        ensure!(
            out.status.success(),
            "evergreen certificate check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).context("reading certificate check's JSON")?;
        ensure!(
            rows.len() == listed,
            "certificate check listed {} certificates, the API {listed}",
            rows.len()
        );
    }

    let mut scrape = Latencies::default();
    let mut metrics_bytes = 0;
    for _ in 0..repeat {
        let started = now();
        let response = admin.send("GET", "/metrics", None).await?;
        scrape.push(started.elapsed());
        ensure!(
            response.status == 200,
            "/metrics answered {}",
            response.status
        );
        metrics_bytes = response.body.len();
    }
    let ms = |l: &Latencies| l.percentile_ms(50.0);
    report.push(json!({
        "system": "evergreen",
        "certificates": args.certificates,
        "expiring_30d": listed,
        "query_ms": ms(&in_store),
        "api_first_page_ms": ms(&first_page),
        "api_all_pages_ms": ms(&all_pages),
        "certificate_check_ms": ms(&command_times),
        "metrics_scrape_ms": ms(&scrape),
        "metrics_mb": round3(metrics_bytes as f64 / 1e6),
        "server_start_ms": round3(startup.as_secs_f64() * 1000.0),
        "peak_rss_mb": round3(server.proc().peak_rss_mb()?),
        "seed_s": round3(seed_s),
    }));
    report.check(format!(
        "{listed} certificates expire within 30 days: the same in the store, the API and certificate check"
    ));
    server.stop().await?;
    Ok(report)
}
