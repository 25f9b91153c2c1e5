//! `evergreen certificate`: the certificates themselves.
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use evergreen_api::{CertificateSummary, InventoryPage, RevocationRequest};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::crl::RevocationReason;
use evergreen_pki::renewal::{RenewalPolicy, RenewalState};
use evergreen_pki::{CertificateDer, Duration, OffsetDateTime, pem};
use serde_json::{Value, json};

use crate::connection::{AdminConnection, Connection};
use crate::output::{self, Format};
use evergreen_api::Clock;
use evergreen_api::files;

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    Check(CheckArgs),
    Revoke(RevokeArgs),
    Create(crate::commands::named::CreateArgs),
    Set(crate::commands::named::SetArgs),
    Label(crate::commands::named::LabelArgs),
    SetType(crate::commands::named::SetTypeArgs),
    Delete(crate::commands::named::DeleteArgs),
    Rotate(crate::commands::named::RotateArgs),
    RotateCa(crate::commands::rotation::RotateCaArgs),
    List(crate::commands::named::ListArgs),
}

/// Show certificates with their expiry and status: from files and directories (--path),
/// or from the server's inventory of everything it has issued (no --path).
///
/// Directories are searched recursively; every PEM certificate in every file is listed
/// (bundles show each certificate), as are DER files named *.crt, *.cer or *.der. Keys and
/// other files are skipped.
///
/// STATUS is OK, WARNING (inside the renewal window: --renew-before, but at most a third
/// of the certificate's lifetime), EXPIRED or NOT YET VALID. The exit status is 0 when
/// every file could be read, whatever the certificates' status, and 1 when a file holds a
/// malformed or truncated certificate.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen certificate check --path /var/lib/evergreen/server/tls
  evergreen certificate check --path tls.crt -o json
  evergreen certificate check --path ./pki --renew-before 30 -o yaml
  evergreen certificate check                              # the server's inventory
  evergreen certificate check --expiring-within 30d --status active")]
pub struct CheckArgs {
    /// A certificate file or a directory to search; repeatable. Without it, the server's
    /// inventory is listed.
    #[arg(long, value_name = "DIR|FILE")]
    pub path: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Renewal window in days: certificates with less time left show WARNING.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub renew_before: u32,
    /// Inventory only: certificates expiring within this time (30d, 12h, 3600).
    #[arg(long, value_name = "DURATION", conflicts_with = "path")]
    pub expiring_within: Option<String>,
    /// Inventory only: active (in use), expired, superseded (replaced by a renewal or a
    /// new version) or revoked.
    #[arg(long, value_name = "STATUS", conflicts_with = "path", value_parser = ["active", "expired", "superseded", "revoked"])]
    pub status: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Revoke a certificate the server issued. It can no longer renew, and the next TLS
/// handshake with it fails once the new CRL is published (at once).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen certificate revoke --serial 5f1c0a…
  evergreen certificate revoke --cert stolen.crt --reason key-compromise
  evergreen certificate revoke --hash 3b7e…   # SHA-256 of the certificate's DER")]
#[command(group(clap::ArgGroup::new("which").required(true).args(["serial", "hash", "cert"])))]
pub struct RevokeArgs {
    /// Serial number in hex (colons and 0x allowed).
    #[arg(long, value_name = "SERIAL")]
    pub serial: Option<String>,
    /// SHA-256 of the certificate's DER, hex.
    #[arg(long, value_name = "SHA256")]
    pub hash: Option<String>,
    /// The certificate file (PEM); its first certificate is revoked.
    #[arg(long = "cert", id = "cert", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// key-compromise, ca-compromise, affiliation-changed, superseded,
    /// cessation-of-operation, certificate-hold, privilege-withdrawn or unspecified.
    #[arg(long, value_name = "REASON", default_value = "unspecified", value_parser = parse_reason)]
    pub reason: RevocationReason,
    #[command(flatten)]
    pub connection: AdminConnection,
}

fn parse_reason(s: &str) -> Result<RevocationReason, String> {
    s.parse()
}

pub fn run(command: CertificateCommand, clock: &dyn Clock) -> Result<()> {
    match command {
        CertificateCommand::Check(args) if args.path.is_empty() => check_inventory(&args, clock),
        CertificateCommand::Check(args) => check(&args, clock),
        CertificateCommand::Revoke(args) => revoke(&args),
        CertificateCommand::Create(args) => crate::commands::named::create(args),
        CertificateCommand::Set(args) => crate::commands::named::set(args),
        CertificateCommand::Label(args) => crate::commands::named::label(args),
        CertificateCommand::SetType(args) => crate::commands::named::set_type(args),
        CertificateCommand::Delete(args) => crate::commands::named::delete(args),
        CertificateCommand::Rotate(args) => crate::commands::named::rotate(args),
        CertificateCommand::RotateCa(args) => crate::commands::rotation::rotate_ca(args),
        CertificateCommand::List(args) => crate::commands::named::list(args),
    }
}

const INVENTORY_COLUMNS: [(&str, &str); 7] = [
    ("SUBJECT", "subject"),
    ("ROLE", "role"),
    ("ISSUER", "issuer"),
    ("EXPIRES", "expires"),
    ("RESIDUAL TIME", "residual"),
    ("STATUS", "status"),
    ("SERIAL", "serial"),
];

fn check_inventory(args: &CheckArgs, clock: &dyn Clock) -> Result<()> {
    let client = args.connection.client()?;
    let now = clock.now();
    let policy = RenewalPolicy {
        renew_before: Duration::days(i64::from(args.renew_before)),
        ..RenewalPolicy::default()
    };
    let mut query = Vec::new();
    if let Some(d) = &args.expiring_within {
        query.push(format!("expiring_within={d}"));
    }
    if let Some(s) = &args.status {
        query.push(format!("status={s}"));
    }
    query.push("limit=1000".into());
    let runtime = crate::runtime()?;
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q.push(format!("cursor={c}"));
        }
        let page: InventoryPage =
            runtime.block_on(client.get_json(&format!("/v1/certificates?{}", q.join("&"))))?;
        for c in &page.certificates {
            let parse =
                |t: &str| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339);
            let (Ok(not_before), Ok(not_after)) = (parse(&c.not_before), parse(&c.not_after))
            else {
                bail!("the server sent an unreadable time for serial {}", c.serial);
            };
            let status = match c.status.as_str() {
                "revoked" => "REVOKED",
                _ => status_name(policy.state(not_before, not_after, now)),
            };
            rows.push(json!({
                "subject": c.subject,
                "role": c.role,
                "issuer": c.issuer,
                "serial": c.serial,
                "sha256": c.sha256,
                "sans": c.sans,
                "owner": c.owner,
                "not_before": format_time(not_before),
                "expires": format_time(not_after),
                "residual": format_duration(not_after - now),
                "residual_seconds": (not_after - now).whole_seconds(),
                "status": status,
            }));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let bundle = runtime.block_on(client.send("GET", "/cacerts", None))?;
    let cas: Vec<CertificateInfo> = pem::parse_certificates("/cacerts", &bundle.body)
        .map(|certs| {
            certs
                .iter()
                .filter_map(|c| CertificateInfo::from_der(c).ok())
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        eprintln!("no certificates match");
    } else {
        print!("{}", output::render(args.output, &INVENTORY_COLUMNS, &rows));
    }
    for note in crl_notes(&cas) {
        eprintln!("note: {note}");
    }
    Ok(())
}

fn revoke(args: &RevokeArgs) -> Result<()> {
    let mut request = RevocationRequest {
        hash: args.hash.clone(),
        serial: args.serial.clone(),
        reason: Some(args.reason.name().to_owned()),
    };
    if let Some(path) = &args.cert_file {
        let certs =
            pem::parse_certificates(&path.display().to_string(), &files::read_input(path)?)?;
        request.hash = Some(
            CertificateInfo::from_der(&certs[0])?
                .fingerprint
                .to_string(),
        );
    }
    let client = args.connection.client()?;
    let revoked: CertificateSummary = crate::runtime()?.block_on(client.json(
        "POST",
        "/v1/certificates/revocations",
        Some(&request),
    ))?;
    println!(
        "Revoked {} (serial {}, {}); the CRL of {} is updated",
        revoked.subject, revoked.serial, args.reason, revoked.issuer
    );
    Ok(())
}

fn status_name(state: RenewalState) -> &'static str {
    match state {
        RenewalState::Fresh { .. } => "OK",
        RenewalState::Due => "WARNING",
        RenewalState::Expired => "EXPIRED",
        RenewalState::NotYetValid => "NOT YET VALID",
    }
}

const COLUMNS: [(&str, &str); 6] = [
    ("FILENAME", "filename"),
    ("SUBJECT", "subject"),
    ("USAGES", "usages"),
    ("EXPIRES", "expires"),
    ("RESIDUAL TIME", "residual"),
    ("STATUS", "status"),
];

fn check(args: &CheckArgs, clock: &dyn Clock) -> Result<()> {
    let now = clock.now();
    let policy = RenewalPolicy {
        renew_before: Duration::days(i64::from(args.renew_before)),
        ..RenewalPolicy::default()
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for root in &args.path {
        let meta = std::fs::metadata(root)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", root.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(root, &mut found, &mut problems);
            found.sort();
            for file in found {
                let shown = file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                match read_certificates(&file, false) {
                    Ok(certs) => {
                        rows.extend(certs.iter().map(|c| row(&shown, c, &policy, now)));
                        seen.extend(certs);
                    }
                    Err(e) => problems.push(e),
                }
            }
        } else {
            match read_certificates(root, true) {
                Ok(certs) => {
                    rows.extend(
                        certs
                            .iter()
                            .map(|c| row(&root.display().to_string(), c, &policy, now)),
                    );
                    seen.extend(certs);
                }
                Err(e) => problems.push(e),
            }
        }
    }
    if !rows.is_empty() {
        print!("{}", output::render(args.output, &COLUMNS, &rows));
    }
    for note in crl_notes(&seen) {
        eprintln!("note: {note}");
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if !problems.is_empty() {
        bail!(
            "{} file{} could not be read as certificates",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    if rows.is_empty() {
        let paths: Vec<_> = args.path.iter().map(|p| p.display().to_string()).collect();
        bail!("no certificates found in {}", paths.join(", "));
    }
    Ok(())
}

/// What relying parties should know of the CAs among `certificates`: those that may not
/// sign CRLs publish none (Evergreen refuses their revoked leaves itself).
fn crl_notes(certificates: &[CertificateInfo]) -> Vec<String> {
    let mut notes: Vec<String> = certificates
        .iter()
        .filter(|c| c.is_ca && !c.can_sign_crls)
        .map(|c| {
            format!(
                "CA {} may not sign CRLs (its key usage lacks cRLSign): relying parties get no CRL from it",
                c.subject
            )
        })
        .collect();
    notes.dedup();
    notes
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>, problems: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(format!("cannot read directory {}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Symbolic links to directories are not followed, so a link loop cannot recurse.
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, found, problems),
            Ok(t) if t.is_file() || t.is_symlink() && path.is_file() => found.push(path),
            _ => {}
        }
    }
}

/// Files larger than this are not certificate files; a directory search skips them.
const MAX_CERTIFICATE_FILE: u64 = 1024 * 1024;

/// The certificates in one file: PEM text, or one DER certificate in a `.crt`, `.cer` or
/// `.der` file. A binary file that merely contains PEM (a database, its write-ahead log)
/// is not a certificate file. With `explicit`, a file holding none is an error (the user
/// named it); in a directory search it is silently skipped.
fn read_certificates(path: &Path, explicit: bool) -> Result<Vec<CertificateInfo>, String> {
    let what = path.display().to_string();
    if !explicit && std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_CERTIFICATE_FILE) {
        return Ok(Vec::new());
    }
    let data = files::read_input(path).map_err(|e| format!("{e:#}"))?;
    let text = !data.contains(&0) && std::str::from_utf8(&data).is_ok();
    let ders = if text && contains(&data, b"-----BEGIN CERTIFICATE-----") {
        pem::parse_certificates(&what, &data).map_err(|e| e.to_string())?
    } else if data.first() == Some(&0x30)
        && path
            .extension()
            .is_some_and(|e| ["crt", "cer", "der"].contains(&e.to_string_lossy().as_ref()))
    {
        vec![CertificateDer::from(data)]
    } else {
        Vec::new()
    };
    if !ders.is_empty() {
        return ders
            .iter()
            .map(|der| CertificateInfo::from_der(der).map_err(|e| format!("{what}: {e}")))
            .collect();
    }
    if explicit {
        Err(format!("{what} holds no certificate"))
    } else {
        Ok(Vec::new())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn row(file: &str, info: &CertificateInfo, policy: &RenewalPolicy, now: OffsetDateTime) -> Value {
    let status = status_name(policy.state(info.not_before, info.not_after, now));
    let residual = info.not_after - now;
    json!({
        "filename": file,
        "subject": info.subject.to_string(),
        "issuer": info.issuer.to_string(),
        "serial": info.serial_hex(),
        "usages": info.usage_names(),
        "not_before": format_time(info.not_before),
        "expires": format_time(info.not_after),
        "residual": format_duration(residual),
        "residual_seconds": residual.whole_seconds(),
        "status": status,
        "sha256": info.fingerprint.to_string(),
    })
}

/// `2036-11-20 09:15:02 UTC`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `364 days`, `5 hours`, `-2 days` (expired two days ago).
pub fn format_duration(d: Duration) -> String {
    let sign = if d.is_negative() { "-" } else { "" };
    let d = d.abs();
    let (n, unit) = if d >= Duration::days(2) {
        (d.whole_days(), "days")
    } else if d >= Duration::hours(2) {
        (d.whole_hours(), "hours")
    } else if d >= Duration::minutes(2) {
        (d.whole_minutes(), "minutes")
    } else {
        (d.whole_seconds(), "seconds")
    };
    format!("{sign}{n} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(
            format_duration(Duration::days(364) + Duration::hours(5)),
            "364 days"
        );
        assert_eq!(format_duration(Duration::hours(30)), "30 hours");
        assert_eq!(format_duration(-Duration::days(2)), "-2 days");
        assert_eq!(format_duration(Duration::seconds(59)), "59 seconds");
    }
}
