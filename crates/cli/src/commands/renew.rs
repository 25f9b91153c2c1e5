//! `evergreen renew`: Kyma-style renewal of a client certificate, once or for ever.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use evergreen_agent::renew::{ClientCertificate, Pace};
use evergreen_api::Clock;

use crate::connection::Connection;

/// Renew a client certificate over mTLS, keeping its subject (the Kyma procedure as one
/// command).
///
/// The current certificate proves who asks; the server issues a new one for the same
/// subject and at most the same SANs.
///
/// The new certificate (with its chain) replaces --cert and, with --rotate-key, a new key
/// replaces --key; each file is replaced atomically (the new key waits in KEY.pending until
/// the certificate for it is written, and a renewal interrupted between the two is finished
/// at the next start). --exec runs after each renewal.
///
/// With --daemon it runs for ever: it waits for the renewal window (90 days before expiry,
/// or with a third of the lifetime left for shorter certificates, a little earlier at
/// random), renews, and while the server cannot be reached or refuses it keeps the files and
/// retries with backoff (30 s doubling to an hour). It is the agent's renewal loop: one
/// schedule, one backoff, one hook runner. SIGTERM or Ctrl-C stops it.
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
    /// Keep running: renew whenever the renewal window opens, for ever.
    #[arg(long)]
    pub daemon: bool,
    /// Shell command to run after each renewal (for example a reload).
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
}

pub fn run(args: RenewArgs, clock: Arc<dyn Clock>) -> Result<()> {
    let connection = Connection {
        server: args.server.clone(),
        cert: Some(args.cert.clone()),
        key: Some(args.key.clone()),
        ca: args.ca.clone(),
        data_dir: args.data_dir.clone(),
    };
    let certificate = ClientCertificate {
        server: connection.url()?,
        ca: connection.ca_path()?,
        cert: args.cert.clone(),
        key: args.key.clone(),
        rotate_key: args.rotate_key,
        exec: args.exec.clone(),
        clock,
    };
    let runtime = crate::runtime()?;
    if args.daemon {
        crate::init_logging();
        return runtime.block_on(async {
            let (stop, receiver) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                crate::commands::server::shutdown_signal().await;
                let _ = stop.send(true);
            });
            certificate.run(Pace::default(), receiver).await
        });
    }
    runtime.block_on(async {
        let new = certificate.renew_once().await?;
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
        certificate
            .run_hook()
            .await
            .context("the certificate was renewed, but --exec failed")
    })
}
