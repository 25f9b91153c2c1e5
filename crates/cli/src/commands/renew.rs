//! `evergreen renew`: Kyma-style renewal of a client certificate, once or for ever.
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result, bail};
use clap::Args;
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};
use evergreen_api::{CertificateBundle, Clock, RenewalRequest, decode_pem, encode_pem};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::renewal::{Jitter, RandomJitter, RenewalPolicy};
use evergreen_pki::{PrivateKey, pem};

use crate::connection::Connection;

/// Renew a client certificate over mTLS, keeping its subject (the Kyma procedure as one
/// command). The current certificate proves who asks; the server issues a new one for the
/// same subject and at most the same SANs.
///
/// The new certificate (with its chain) replaces --cert and, with --rotate-key, a new key
/// replaces --key; each file is replaced atomically, the key first. With --daemon it keeps
/// renewing when the renewal window opens (90 days before expiry, or a third of the
/// lifetime for shorter certificates, with jitter), retrying with backoff when the server
/// is unreachable, and runs --exec after each renewal.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen renew --cert client.crt --key client.key --ca ca.crt --server https://evergreen:9443
  evergreen renew --cert tls.crt --key tls.key --rotate-key --daemon --exec 'systemctl reload app'")]
pub struct RenewArgs {
    /// The current certificate (PEM, chain allowed); replaced by the new one.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Its private key.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// CA bundle to trust for the server. Default: ca.crt in the data dir.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Server URL. Default: the URL the server wrote to its data dir.
    #[arg(long, value_name = "URL", env = "EVERGREEN_SERVER")]
    pub server: Option<String>,
    /// The server's data dir, for the defaults above.
    #[arg(long, value_name = "DIR", env = "EVERGREEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Make a new key of the same type instead of keeping the current one.
    #[arg(long)]
    pub rotate_key: bool,
    /// Keep running: renew whenever the renewal window opens.
    #[arg(long)]
    pub daemon: bool,
    /// Shell command to run after each renewal (for example a reload).
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
}

pub fn run(args: RenewArgs, clock: &dyn Clock) -> Result<()> {
    let runtime = crate::runtime()?;
    if !args.daemon {
        return runtime.block_on(renew_once(&args));
    }
    let policy = RenewalPolicy::default();
    let mut backoff = StdDuration::from_secs(30);
    let mut just_renewed = false;
    loop {
        let chain = pem::parse_certificates(
            &args.cert.display().to_string(),
            &files::read_input(&args.cert)?,
        )?;
        let info = CertificateInfo::from_der(&chain[0])?;
        let at = policy.renew_at_with_jitter(info.not_before, info.not_after, &mut RandomJitter);
        let wait = at - clock.now();
        if wait > evergreen_pki::Duration::ZERO {
            eprintln!(
                "{}: next renewal at {} (in {})",
                args.cert.display(),
                crate::commands::certificate::format_time(at),
                crate::commands::certificate::format_duration(wait)
            );
            runtime.block_on(tokio::time::sleep(
                wait.try_into().unwrap_or(StdDuration::MAX),
            ));
        } else if just_renewed {
            // A certificate that is due the moment it arrives means the clocks disagree;
            // renewing again at once would only repeat that.
            eprintln!(
                "warning: the new certificate is already inside its renewal window (is this host's clock or the server's wrong?); retrying in {} s",
                backoff.as_secs()
            );
            runtime.block_on(tokio::time::sleep(backoff));
            backoff = (backoff * 2).min(StdDuration::from_secs(3600));
        }
        match runtime.block_on(renew_once(&args)) {
            Ok(()) => {
                just_renewed = true;
                if wait > evergreen_pki::Duration::ZERO {
                    backoff = StdDuration::from_secs(30);
                }
            }
            Err(error) => {
                just_renewed = false;
                let delay = backoff.mul_f64(1.0 + RandomJitter.fraction() * 0.3);
                eprintln!("error: {error:#}; retrying in {} s", delay.as_secs());
                runtime.block_on(tokio::time::sleep(delay));
                backoff = (backoff * 2).min(StdDuration::from_secs(3600));
            }
        }
    }
}

async fn renew_once(args: &RenewArgs) -> Result<()> {
    let connection = Connection {
        server: args.server.clone(),
        cert: Some(args.cert.clone()),
        key: Some(args.key.clone()),
        ca: args.ca.clone(),
        data_dir: args.data_dir.clone(),
    };
    let client = connection.client_with(&args.cert, &args.key)?;
    let chain = pem::parse_certificates(
        &args.cert.display().to_string(),
        &files::read_input(&args.cert)?,
    )?;
    let info = CertificateInfo::from_der(&chain[0])?;
    let current_key = PrivateKey::from_pem(
        &args.key.display().to_string(),
        &files::read_input(&args.key)?,
    )?;
    let key = if args.rotate_key {
        PrivateKey::generate(current_key.key_type())?
    } else {
        current_key
    };
    let csr = evergreen_pki::csr::build(&key, &info.subject, &info.subject_alt_names)?;
    let request = RenewalRequest {
        csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
    };
    let bundle: CertificateBundle = client
        .json(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(&request),
        )
        .await
        .context("renewal refused")?;
    let crt = decode_pem(&bundle.crt).map_err(|e| anyhow::anyhow!("the server's crt is {e}"))?;
    let new_chain = pem::parse_certificates("the server's crt", &crt)?;
    if !key.matches_certificate(&new_chain[0])? {
        bail!("the server returned a certificate for another key; nothing was written");
    }
    let new = CertificateInfo::from_der(&new_chain[0])?;
    if args.rotate_key {
        files::replace(&args.key, key.to_pem().as_bytes(), KEY_MODE)?;
    }
    files::replace(&args.cert, &crt, PUBLIC_MODE)?;
    eprintln!(
        "Renewed {} (serial {}), valid until {}; wrote {}{}",
        new.subject,
        new.serial_hex(),
        crate::commands::certificate::format_time(new.not_after),
        args.cert.display(),
        if args.rotate_key {
            format!(" and a new key to {}", args.key.display())
        } else {
            String::new()
        }
    );
    if let Some(command) = &args.exec {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
            .await?;
        if !status.success() {
            bail!("--exec {command:?} failed with {status}");
        }
    }
    Ok(())
}
