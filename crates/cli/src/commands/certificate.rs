//! `evergreen certificate`: the certificates themselves.
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::renewal::{RenewalPolicy, RenewalState};
use evergreen_pki::{CertificateDer, Duration, OffsetDateTime, pem};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::files;
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    Check(CheckArgs),
}

/// Show every certificate in files or directories with its expiry and status.
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
  evergreen certificate check --path ./pki --renew-before 30 -o yaml")]
pub struct CheckArgs {
    /// A certificate file or a directory to search; repeatable.
    #[arg(long, value_name = "DIR|FILE", required = true)]
    pub path: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Renewal window in days: certificates with less time left show WARNING.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub renew_before: u32,
}

pub fn run(command: CertificateCommand, clock: &dyn Clock) -> Result<()> {
    match command {
        CertificateCommand::Check(args) => check(&args, clock),
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
                    Ok(certs) => rows.extend(certs.iter().map(|c| row(&shown, c, &policy, now))),
                    Err(e) => problems.push(e),
                }
            }
        } else {
            match read_certificates(root, true) {
                Ok(certs) => rows.extend(
                    certs
                        .iter()
                        .map(|c| row(&root.display().to_string(), c, &policy, now)),
                ),
                Err(e) => problems.push(e),
            }
        }
    }
    if !rows.is_empty() {
        print!("{}", output::render(args.output, &COLUMNS, &rows));
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

/// The certificates in one file. With `explicit`, a file holding none is an error (the
/// user named it); in a directory search it is silently skipped.
fn read_certificates(path: &Path, explicit: bool) -> Result<Vec<CertificateInfo>, String> {
    let what = path.display().to_string();
    let data = files::read_input(path).map_err(|e| format!("{e:#}"))?;
    let ders = if contains(&data, b"-----BEGIN CERTIFICATE-----") {
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
    let status = match policy.state(info.not_before, info.not_after, now) {
        RenewalState::Fresh { .. } => "OK",
        RenewalState::Due => "WARNING",
        RenewalState::Expired => "EXPIRED",
        RenewalState::NotYetValid => "NOT YET VALID",
    };
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
