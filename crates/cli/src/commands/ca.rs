//! `evergreen ca`: a cluster CA hierarchy made and used offline.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::hierarchy::ROLE_CAS;
use evergreen_pki::policy::{CsrPolicy, SanRule};
use evergreen_pki::{
    CertificateAuthority, CertificateRequest, DistinguishedName, Duration, KeyType, PrivateKey,
    Profile, SubjectAltName, pem,
};

use evergreen_api::Clock;
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    Generate(GenerateArgs),
    Sign(SignArgs),
}

/// Create a cluster CA hierarchy: a root CA, the role CAs server-ca, client-ca and
/// peer-ca under it, and a service-account signing key.
///
/// Files written (keys mode 0600, certificates 0644):
///   root-ca.crt  root-ca.key        the root; its SHA-256 is what join tokens pin
///   server-ca.crt server-ca.key     issues serving certificates
///   client-ca.crt client-ca.key     issues node, application and admin client certificates
///   peer-ca.crt  peer-ca.key        issues peer (server+client) certificates
///   service.key                     signs service-account tokens
/// Each <role>-ca.crt holds the role CA followed by the certificates above it, ready to
/// hand to clients.
///
/// Like the k3s contrib scripts, an existing root-ca.crt/root-ca.key in --out is reused
/// (and an intermediate-ca.crt/.key under it: root -> intermediate -> role CAs); only the
/// missing files are made. For a rotation of a running cluster (then stage the directory
/// with `evergreen certificate rotate-ca --path DIR`):
///   --root-from DATA_DIR        new role CAs under the cluster's current root;
///   --cross-sign-from DATA_DIR  a new root, cross-signed by the current one, and new role
///                               CAs whose bundles carry the cross-signed root, so clients
///                               that trust only the current root accept them.
/// DATA_DIR is the server's data dir: its token opens the current root's key. In these
/// modes, and when reusing a root, no service.key is written (the current keys stay;
/// rotate them with `evergreen keys rotate service-account`).
///
/// Nothing is overwritten: if a file to be written exists, nothing is written.
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:
  evergreen ca generate --out ./pki
  evergreen ca generate --out ./pki --key-type rsa-3072 --days 7300
  evergreen ca generate --out ./new-cas --root-from /var/lib/evergreen
  evergreen ca generate --out ./new-root --cross-sign-from /var/lib/evergreen
  evergreen certificate check --path ./pki"
)]
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
    /// Sign the new role CAs with the current root of the cluster whose server data dir
    /// this is (role-CA rotation under the same root).
    #[arg(long, value_name = "DATA_DIR", conflicts_with = "cross_sign_from")]
    pub root_from: Option<PathBuf>,
    /// Make a new root cross-signed by the current root of the cluster whose server data
    /// dir this is (root rotation).
    #[arg(long, value_name = "DATA_DIR")]
    pub cross_sign_from: Option<PathBuf>,
    /// With --root-from or --cross-sign-from: the server's PostgreSQL datastore, when it
    /// runs with --datastore (the data dir then holds only its token).
    #[arg(
        long,
        value_name = "URL",
        env = "EVERGREEN_DATASTORE",
        hide_env_values = true
    )]
    pub datastore: Option<String>,
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

/// The cluster's current root CA (with its key) from a server data dir.
fn cluster_root(data_dir: &Path, datastore: Option<&str>) -> Result<CertificateAuthority> {
    let (root, key) = crate::runtime()?
        .block_on(evergreen_server::current_root(data_dir, datastore))
        .with_context(|| format!("cannot read the cluster root from {}", data_dir.display()))?;
    let key = key.with_context(|| {
        format!(
            "the cluster's root key is kept offline, not in {}; put root-ca.crt and root-ca.key in --out instead",
            data_dir.display()
        )
    })?;
    Ok(CertificateAuthority::from_parts(vec![root], key)?)
}

fn generate(args: &GenerateArgs, clock: &dyn Clock) -> Result<()> {
    let now = clock.now();
    let validity = Duration::days(i64::from(args.days));
    let stamp = now.unix_timestamp();
    let name = |ca: &str| DistinguishedName::common_name(format!("{}-{ca}@{stamp}", args.name));
    let out = |file: &str| args.out.join(file);
    let mut files: Vec<(PathBuf, Vec<u8>, u32)> = Vec::new();
    let mut summary = Vec::new();

    // The root: reused from --out, the cluster's (--root-from), or new.
    let reused = out("root-ca.crt").exists();
    let root = if reused {
        if args.root_from.is_some() {
            bail!(
                "{} already holds root-ca.crt; --root-from would sign with another root. Remove one of them",
                args.out.display()
            );
        }
        load_ca(&args.out, "root-ca")?
    } else if let Some(data_dir) = &args.root_from {
        cluster_root(data_dir, args.datastore.as_deref())?
    } else {
        let root = CertificateAuthority::new_root(
            name("root-ca"),
            PrivateKey::generate(args.key_type)?,
            validity,
            now,
        )
        .context("cannot create the root CA")?;
        files.push((
            out("root-ca.crt"),
            root.bundle_pem().into_bytes(),
            PUBLIC_MODE,
        ));
        files.push((
            out("root-ca.key"),
            root.key().to_pem().into_bytes(),
            KEY_MODE,
        ));
        root
    };
    summary.push(("root-ca.crt".to_owned(), root.info().clone()));
    let intermediate = if out("intermediate-ca.crt").exists() {
        let intermediate = load_ca(&args.out, "intermediate-ca")?;
        if !evergreen_pki::chain::is_signed_by(intermediate.certificate(), root.certificate())? {
            bail!(
                "intermediate-ca.crt in {} is not signed by root-ca.crt",
                args.out.display()
            );
        }
        summary.push((
            "intermediate-ca.crt".to_owned(),
            intermediate.info().clone(),
        ));
        Some(intermediate)
    } else {
        None
    };
    let signer = intermediate.as_ref().unwrap_or(&root);

    // Cross-signing: the new root certified by the current one.
    let mut cross = None;
    if let Some(data_dir) = &args.cross_sign_from {
        let current = cluster_root(data_dir, args.datastore.as_deref())?;
        if current.certificate() == root.certificate() {
            bail!(
                "the root in {} is already the cluster's root; --cross-sign-from makes a new one (remove root-ca.* from --out)",
                args.out.display()
            );
        }
        cross = Some(
            evergreen_pki::cross_sign::cross_sign(root.certificate(), &current, now)
                .context("cannot cross-sign the new root")?,
        );
    }

    for role in ROLE_CAS {
        let ca = signer
            .new_intermediate(
                name(role),
                PrivateKey::generate(args.key_type)?,
                0,
                validity,
                now,
            )
            .with_context(|| format!("cannot create {role}"))?;
        // With a cross-signed root, the bundle carries it instead of the self-signed new
        // root: clients that trust the current root follow it there, clients that trust
        // the new root stop at their anchor, and OpenSSL, given both, would pick the
        // self-signed one and fail.
        let bundle = match &cross {
            Some(cross) => vec![ca.certificate().clone(), cross.clone()],
            None => ca.bundle(),
        };
        files.push((
            out(&format!("{role}.crt")),
            pem::encode_certificates(&bundle).into_bytes(),
            PUBLIC_MODE,
        ));
        files.push((
            out(&format!("{role}.key")),
            ca.key().to_pem().into_bytes(),
            KEY_MODE,
        ));
        summary.push((format!("{role}.crt"), ca.info().clone()));
    }
    let fresh = !reused && args.root_from.is_none() && args.cross_sign_from.is_none();
    if fresh {
        let service = PrivateKey::generate(args.service_key_type)?;
        files.push((out("service.key"), service.to_pem().into_bytes(), KEY_MODE));
    }

    files::create_private_dir(&args.out)?;
    files::write_all_new(&files)?;

    println!(
        "{} a {} CA hierarchy in {}:",
        if fresh { "Created" } else { "Completed" },
        args.key_type,
        args.out.display()
    );
    for (file, info) in &summary {
        println!(
            "  {file:<19} {}  (expires {})",
            info.subject,
            crate::commands::certificate::format_time(info.not_after)
        );
    }
    if fresh {
        println!(
            "  {:<19} service-account signing key ({})",
            "service.key", args.service_key_type
        );
    } else {
        println!(
            "  (no service.key: the current service-account keys stay; evergreen keys rotate service-account)"
        );
    }
    if cross.is_some() {
        println!("  each <role>-ca.crt carries the new root cross-signed by the current root");
        println!(
            "New root CA SHA-256: {}\nJoin tokens made after the rotation pin it; tokens made before keep working while the old root is in the trust bundle.",
            root.info().fingerprint
        );
    } else {
        println!(
            "Root CA SHA-256 (pinned by join tokens): {}",
            root.info().fingerprint
        );
    }
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
