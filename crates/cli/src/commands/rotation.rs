//! `evergreen certificate rotate-ca` and `evergreen keys`: rotating the cluster's CAs and
//! service-account keys while everything runs.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evergreen_api::files;
use evergreen_api::{CaRotateRequest, CaRotation, Jwks, ServiceKeyRotation};
use evergreen_pki::staged;

use crate::connection::Connection;

/// Rotate the cluster's CAs live from a staged directory.
///
/// The directory is laid out as `evergreen ca generate` writes it (root-ca.crt,
/// server-ca.crt, client-ca.crt, peer-ca.crt with their .key files, service.key) or as
/// k3s's contrib/util/generate-custom-ca-certs.sh does (root-ca.pem, intermediate-ca.pem,
/// <role>-ca.crt or .pem, etcd/peer-ca.*); --path may name it, or, as k3s's own command
/// takes it, its parent DIR/server (the files then being in DIR/server/tls). Files with no
/// role in Evergreen (request-header-ca.*, etcd/server-ca.*) are listed as ignored. A file
/// that is absent or empty keeps the current value.
///
/// Before anything changes, the server checks, and reports every failure together:
///   - each new CA bundle holds more than the new CA (its root or intermediates);
///   - each new CA verifies against the current root, directly or through cross-signed
///     certificates in its bundle (a new root must come cross-signed);
///   - every new key matches its certificate, and each CA can issue;
///   - the current service-account signing key is still in the new service.key.
///
/// --force skips only these checks (never unreadable files), and the audit log records
/// that it was forced. The rotation is all or nothing: CRLs are signed by the new CAs and
/// the server's own certificates issued under them before it commits, and a failure at any
/// step leaves everything as it was. On success the new CAs take effect at once: the trust
/// bundle holds the new and the old CAs, agents receive it, the server's own and named
/// certificates are re-issued under the new CAs, and other leaves move as they renew (or at
/// once with `evergreen certificate rotate`). Join tokens keep working while the old root is
/// in the trust bundle; after a new root that is not cross-signed, the output says which
/// must be made again.
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:
  # new role CAs under the current root (join tokens are unaffected)
  evergreen ca generate --out ./new-cas --root-from /var/lib/evergreen
  evergreen certificate rotate-ca --path ./new-cas
  # a new root, cross-signed by the current one
  evergreen ca generate --out ./new-root --cross-sign-from /var/lib/evergreen
  evergreen certificate rotate-ca --path ./new-root
  # k3s's layout, as its documentation stages it
  evergreen certificate rotate-ca --path=/opt/k3s/server
  # only the service-account keys: a new key, the current ones appended
  openssl genrsa -traditional -out /opt/k3s/server/tls/service.key 2048
  evergreen keys export --out /tmp/current-keys
  cat /tmp/current-keys/service.key >> /opt/k3s/server/tls/service.key
  evergreen certificate rotate-ca --path=/opt/k3s/server"
)]
pub struct RotateCaArgs {
    /// The staged directory, or its parent (DIR/server for DIR/server/tls).
    #[arg(long, value_name = "DIR")]
    pub path: PathBuf,
    /// Rotate even when integrity checks fail (recorded in the audit log).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub connection: Connection,
}

pub fn rotate_ca(args: RotateCaArgs) -> Result<()> {
    if !args.path.is_dir() {
        bail!(
            "{} is not a directory; stage the CA files (root-ca.crt, server-ca.crt, …) in one",
            args.path.display()
        );
    }
    let (dir, listing) = files::read_staged_dir(&args.path, staged::is_staged_name)?;
    let resolved = staged::resolve(&listing)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot read the CA files staged in {}", dir.display()))?;
    eprintln!("Staged in {}:", dir.display());
    for name in resolved.files.keys() {
        match resolved.sources.get(name) {
            Some(source) => eprintln!("  {source} (as {name})"),
            None => eprintln!("  {name}"),
        }
    }
    for (name, why) in &resolved.ignored {
        eprintln!("  ignored {name}: {why}");
    }
    if resolved.files.values().all(|t| t.trim().is_empty()) {
        bail!(
            "{} holds none of {}; nothing to rotate",
            dir.display(),
            staged::FILES.join(", ")
        );
    }
    let client = args.connection.client()?;
    let path = format!("/v1/ca/rotate?force={}", args.force);
    let request = CaRotateRequest {
        files: resolved.files,
    };
    let answer: CaRotation =
        crate::runtime()?.block_on(client.json("PUT", &path, Some(&request)))?;
    for failure in &answer.forced_past {
        eprintln!("warning: forced past a failed check: {failure}");
    }
    println!(
        "Rotated {} (revision {}).",
        answer.rotated.join(", "),
        answer.revision
    );
    println!(
        "The trust bundle now holds {} certificates, old and new CAs; agents receive it at once.",
        answer.trust_bundle_certificates
    );
    println!(
        "Root CA SHA-256 (pinned by join tokens): {}",
        answer.root_sha256
    );
    for note in &answer.notes {
        println!("note: {note}");
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate a key set.
    #[command(subcommand)]
    Rotate(RotateKeys),
    /// Show the service-account keys (the JWKS), the signing key first.
    List(ListKeysArgs),
    /// Write the current service-account keys (service.key, private) to a directory.
    Export(ExportKeysArgs),
}

/// Write the cluster's current service-account keys, the signing key first, as the file
/// k3s keeps as server/tls/service.key: what its key-rotation procedure appends to a new
/// key before `rotate-ca` (see `evergreen certificate rotate-ca --help`).
///
/// Run on the server host: the server token in the data dir opens the keys sealed in the
/// datastore, whether the server runs or not. The file is written with mode 0600 and is
/// never overwritten.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen keys export --out /tmp/current-keys
  evergreen keys export --out /tmp/current-keys --data-dir /var/lib/evergreen")]
pub struct ExportKeysArgs {
    /// Directory to write service.key into; created (mode 0700) if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The server's data dir.
    #[arg(long, value_name = "DIR", env = "EVERGREEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's PostgreSQL datastore, when it runs with --datastore.
    #[arg(
        long,
        value_name = "URL",
        env = "EVERGREEN_DATASTORE",
        hide_env_values = true
    )]
    pub datastore: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RotateKeys {
    ServiceAccount(ServiceAccountArgs),
}

/// Put a new service-account signing key first, keeping the old keys for verification
/// (tokens they signed keep verifying); or, with --retire, remove one old key.
///
/// The keys are published as a JWKS at GET /v1/keys/service-account.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen keys rotate service-account
  evergreen keys list                              # kids, the signing key first
  evergreen keys rotate service-account --retire 3q2-7w…")]
pub struct ServiceAccountArgs {
    /// Remove the key with this kid instead of adding one (never the signing key). Kids
    /// are base64url and may start with '-'.
    #[arg(long, value_name = "KID", allow_hyphen_values = true)]
    pub retire: Option<String>,
    /// Type of the new key: ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "ec-p256",
        conflicts_with = "retire"
    )]
    pub key_type: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct ListKeysArgs {
    #[command(flatten)]
    pub connection: Connection,
}

pub fn keys(command: KeysCommand) -> Result<()> {
    let (jwks, note) = match command {
        KeysCommand::Export(args) => return export(&args),
        KeysCommand::Rotate(RotateKeys::ServiceAccount(args)) => {
            let client = args.connection.client()?;
            let request = ServiceKeyRotation {
                key_type: args.retire.is_none().then_some(args.key_type),
                retire: args.retire.clone(),
            };
            let jwks: Jwks = crate::runtime()?.block_on(client.json(
                "POST",
                "/v1/keys/service-account/rotate",
                Some(&request),
            ))?;
            let note = match &args.retire {
                Some(kid) => format!("Retired {kid}."),
                None => "New signing key first; the others still verify.".to_owned(),
            };
            (jwks, Some(note))
        }
        KeysCommand::List(args) => {
            let client = args.connection.client()?;
            let jwks: Jwks =
                crate::runtime()?.block_on(client.get_json("/v1/keys/service-account"))?;
            (jwks, None)
        }
    };
    if let Some(note) = note {
        println!("{note}");
    }
    for (index, key) in jwks.keys.iter().enumerate() {
        let field = |name: &str| key.get(name).map(String::as_str).unwrap_or("-");
        println!(
            "{}  {}  {}",
            field("kid"),
            field("alg"),
            if index == 0 { "signing" } else { "verify only" }
        );
    }
    Ok(())
}

fn export(args: &ExportKeysArgs) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::connection::default_data_dir);
    let keys = crate::runtime()?
        .block_on(evergreen_server::current_service_keys(
            &data_dir,
            args.datastore.as_deref(),
        ))
        .with_context(|| {
            format!(
                "cannot read the service-account keys from {}",
                data_dir.display()
            )
        })?;
    files::create_private_dir(&args.out)?;
    let path = args.out.join("service.key");
    files::write_all_new(&[(path.clone(), keys.to_pem().into_bytes(), files::KEY_MODE)])?;
    eprintln!(
        "Wrote {} service-account key(s) to {} (mode 0600), the signing key first",
        keys.public_keys().len(),
        path.display()
    );
    Ok(())
}
