//! `evergreen certificate rotate-ca` and `evergreen keys`: rotating the cluster's CAs and
//! service-account keys while everything runs.
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evergreen_api::{CaRotateRequest, CaRotation, Jwks, STAGED_CA_FILES, ServiceKeyRotation};

use crate::connection::Connection;

/// Rotate the cluster's CAs live from a staged directory (the layout of
/// `evergreen ca generate`: root-ca.*, server-ca.*, client-ca.*, peer-ca.*, service.key).
///
/// A file that is absent or empty keeps the current value. Before anything changes, the
/// server checks, and reports every failure together:
///   - each new CA bundle holds more than the new CA (its root or intermediates);
///   - each new CA verifies against the current root, directly or through cross-signed
///     certificates in its bundle (a new root must come cross-signed);
///   - every new key matches its certificate;
///   - the current service-account signing key is still in the new service.key.
///
/// --force skips only these checks (never unreadable files), and the audit log records
/// that it was forced. On success the new CAs take effect at once: the trust bundle holds
/// the new and the old CAs, agents receive it, the server's own and named certificates
/// are re-issued under the new CAs, and other leaves move as they renew (or at once with
/// `evergreen certificate rotate`). Join tokens keep working.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # new role CAs under the current root
  evergreen ca generate --out ./new-cas            # reuses ./new-cas/root-ca.* if present
  evergreen certificate rotate-ca --path ./new-cas
  # a new root, cross-signed by the current one
  evergreen ca generate --out ./new-root --cross-sign-from /var/lib/evergreen
  evergreen certificate rotate-ca --path ./new-root")]
pub struct RotateCaArgs {
    /// The staged directory.
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
    let mut files = BTreeMap::new();
    for name in STAGED_CA_FILES {
        let path = args.path.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                files.insert(name.to_owned(), text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    if files.values().all(|t| t.trim().is_empty()) {
        bail!(
            "{} holds none of {}; nothing to rotate",
            args.path.display(),
            STAGED_CA_FILES.join(", ")
        );
    }
    let client = args.connection.client()?;
    let path = format!("/v1/ca/rotate?force={}", args.force);
    let answer: CaRotation =
        crate::runtime()?.block_on(client.json("PUT", &path, Some(&CaRotateRequest { files })))?;
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
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate a key set.
    #[command(subcommand)]
    Rotate(RotateKeys),
    /// Show the service-account keys (the JWKS), the signing key first.
    List(ListKeysArgs),
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
