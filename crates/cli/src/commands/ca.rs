//! `evergreen ca`: a cluster CA hierarchy made and used offline.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::hierarchy::Hierarchy;
use evergreen_pki::policy::{CsrPolicy, SanRule};
use evergreen_pki::{
    CertificateAuthority, CertificateRequest, Duration, KeyType, PrivateKey, Profile,
    SubjectAltName, pem,
};

use evergreen_api::Clock;
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    Generate(GenerateArgs),
    Sign(SignArgs),
}

/// Create a cluster CA hierarchy in a new directory: a root CA, the role CAs server-ca,
/// client-ca and peer-ca under it, and a service-account signing key.
///
/// Files written (keys mode 0600, certificates 0644):
///   root-ca.crt  root-ca.key        the root; its SHA-256 is what join tokens pin
///   server-ca.crt server-ca.key     issues serving certificates
///   client-ca.crt client-ca.key     issues node, application and admin client certificates
///   peer-ca.crt  peer-ca.key        issues peer (server+client) certificates
///   service.key                     signs service-account tokens
/// Each <role>-ca.crt holds the role CA followed by the root, ready to hand to clients.
///
/// Nothing is overwritten: if any of these files exists, nothing is written. Stage the
/// directory as a custom CA for a server, or sign CSRs offline with `evergreen ca sign`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen ca generate --out ./pki
  evergreen ca generate --out ./pki --key-type rsa-3072 --days 7300
  evergreen certificate check --path ./pki")]
pub struct GenerateArgs {
    /// Directory to write into; created (mode 0700) if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Key type of the CAs: ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072 or rsa-4096.
    #[arg(long, value_name = "TYPE", default_value = "ec-p256")]
    pub key_type: KeyType,
    /// Key type of the service-account signing key (ed25519 is not accepted by Kubernetes).
    #[arg(long, value_name = "TYPE", default_value = "ec-p256")]
    pub service_key_type: KeyType,
    /// Validity of the root and role CAs, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Prefix of the CAs' common names: <NAME>-root-ca@<unix time>, <NAME>-server-ca@…
    #[arg(long, value_name = "NAME", default_value = "evergreen")]
    pub name: String,
}

/// Issue a certificate from a CSR with a CA from `evergreen ca generate`, offline (as
/// `openssl x509 -req` or `cfssl sign` would).
///
/// Only the CSR's public key, subject and requested SANs are used; its other extensions
/// are ignored. The profile decides key usages: `server` (serverAuth), `client`
/// (clientAuth) or `peer` (both). Server and peer certificates need at least one SAN,
/// from the CSR or from --san. Validity never exceeds the CA's.
///
/// The output is the new certificate followed by the CA bundle (the full chain).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
      -keyout app.key -subj \"/CN=app/O=team\" -out app.csr
  evergreen ca sign --ca-dir ./pki --ca client-ca --csr app.csr --profile client --out app.crt
  evergreen ca sign --ca-dir ./pki --ca server-ca --csr web.csr --profile server \\
      --san web.example.com --san 10.0.0.5 --days 90")]
pub struct SignArgs {
    /// Directory holding <CA>.crt and <CA>.key.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Which CA signs: server-ca, client-ca, peer-ca (or any <NAME>.crt/.key pair in DIR).
    #[arg(long, value_name = "NAME")]
    pub ca: String,
    /// The PEM CSR; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    /// server, client or peer.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Profile,
    /// Validity in days (shortened to the CA's if the CA expires sooner).
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Subject alternative name (DNS name or IP address); repeatable. Replaces the SANs
    /// the CSR requests.
    #[arg(long, value_name = "NAME")]
    pub san: Vec<SubjectAltName>,
    /// Write the certificate chain here (replaced atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(command: CaCommand, clock: &dyn Clock) -> Result<()> {
    match command {
        CaCommand::Generate(args) => generate(&args, clock),
        CaCommand::Sign(args) => sign(&args, clock),
    }
}

fn generate(args: &GenerateArgs, clock: &dyn Clock) -> Result<()> {
    let now = clock.now();
    let validity = Duration::days(i64::from(args.days));
    let hierarchy = Hierarchy::generate(&args.name, args.key_type, validity, now)
        .context("cannot create the CA hierarchy")?;
    let root = &hierarchy.root;
    let mut files: Vec<(PathBuf, Vec<u8>, u32)> = vec![
        (
            args.out.join("root-ca.crt"),
            root.bundle_pem().into_bytes(),
            PUBLIC_MODE,
        ),
        (
            args.out.join("root-ca.key"),
            root.key().to_pem().into_bytes(),
            KEY_MODE,
        ),
    ];
    let mut summary = vec![("root-ca.crt".to_owned(), root.info().clone())];
    for (role, ca) in hierarchy.roles() {
        files.push((
            args.out.join(format!("{role}.crt")),
            ca.bundle_pem().into_bytes(),
            PUBLIC_MODE,
        ));
        files.push((
            args.out.join(format!("{role}.key")),
            ca.key().to_pem().into_bytes(),
            KEY_MODE,
        ));
        summary.push((format!("{role}.crt"), ca.info().clone()));
    }
    let service = PrivateKey::generate(args.service_key_type)?;
    files.push((
        args.out.join("service.key"),
        service.to_pem().into_bytes(),
        KEY_MODE,
    ));

    files::create_private_dir(&args.out)?;
    files::write_all_new(&files)?;

    println!(
        "Created a {} CA hierarchy in {}:",
        args.key_type,
        args.out.display()
    );
    for (file, info) in &summary {
        println!(
            "  {file:<14} {}  (expires {})",
            info.subject,
            crate::commands::certificate::format_time(info.not_after)
        );
    }
    println!(
        "  {:<14} service-account signing key ({})",
        "service.key", args.service_key_type
    );
    println!(
        "Root CA SHA-256 (pinned by join tokens): {}",
        root.info().fingerprint
    );
    Ok(())
}

fn sign(args: &SignArgs, clock: &dyn Clock) -> Result<()> {
    let now = clock.now();
    let ca = load_ca(&args.ca_dir, &args.ca)?;
    let csr_what = args.csr.display().to_string();
    let csr_pem = files::read_input(&args.csr)?;
    let csr = CertificateRequest::from_pem(&csr_what, &csr_pem)
        .with_context(|| format!("cannot use the CSR {csr_what}"))?;

    let mut policy = CsrPolicy::new(args.profile);
    policy.validity = Duration::days(i64::from(args.days));
    if !args.san.is_empty() {
        policy.subject_alt_names = SanRule::Replace(args.san.clone());
    }
    let request = policy
        .decide(&csr)
        .with_context(|| format!("refusing to sign {csr_what}"))?;
    let issued = ca
        .issue(&request, now)
        .with_context(|| format!("cannot sign {csr_what}"))?;

    let mut chain = pem::encode("CERTIFICATE", &issued.der);
    chain.push_str(&ca.bundle_pem());
    match &args.out {
        Some(out) => files::replace(out, chain.as_bytes(), PUBLIC_MODE)?,
        None => print!("{chain}"),
    }
    eprintln!(
        "Signed {} certificate for {} (serial {}), valid until {}{}",
        args.profile,
        request.subject,
        evergreen_pki::certificate::hex(&issued.serial),
        crate::commands::certificate::format_time(issued.not_after),
        if issued.shortened {
            format!("; shortened to end with the CA {}", ca.info().subject)
        } else {
            String::new()
        }
    );
    if let Some(out) = &args.out {
        eprintln!("Wrote {}", out.display());
    }
    Ok(())
}

/// Loads `<name>.crt` and `<name>.key` from `dir`, saying which CAs exist if it is not there.
pub fn load_ca(dir: &Path, name: &str) -> Result<CertificateAuthority> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!("invalid CA name {name:?}; use a name such as client-ca");
    }
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if !cert_path.exists() || !key_path.exists() {
        let available = available_cas(dir);
        bail!(
            "no CA named {name:?} in {}: expected {name}.crt and {name}.key{}",
            dir.display(),
            if available.is_empty() {
                " (the directory holds no CA; create one with evergreen ca generate)".to_owned()
            } else {
                format!(" (available: {})", available.join(", "))
            }
        );
    }
    let cert_pem = files::read_input(&cert_path)?;
    let key_pem = files::read_input(&key_path)?;
    CertificateAuthority::from_pem(&cert_path.display().to_string(), &cert_pem, &key_pem)
        .with_context(|| format!("cannot use the CA {name} in {}", dir.display()))
}

fn available_cas(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".crt")?.to_owned();
            dir.join(format!("{stem}.key")).exists().then_some(stem)
        })
        .filter(|stem| {
            std::fs::read(dir.join(format!("{stem}.crt")))
                .ok()
                .and_then(|pem| pem::parse_certificates("", &pem).ok())
                .and_then(|certs| CertificateInfo::from_der(&certs[0]).ok())
                .is_some_and(|info| info.is_ca)
        })
        .collect();
    names.sort();
    names
}
