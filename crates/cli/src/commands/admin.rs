//! `evergreen admin reissue`: a new admin credential, made on the server host from the
//! datastore the server token opens.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use evergreen_api::client::ClientError;
use evergreen_api::{CertificateSummary, Clock, RevocationRequest};
use evergreen_pki::crl::RevocationReason;

use crate::connection::Connection;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    Reissue(ReissueArgs),
}

/// Write a new admin credential (admin.crt, admin.key) and revoke the old one.
///
/// The recovery for an admin credential that is lost, leaked or revoked. Run it on the
/// server host as the user the server runs as: it reads the server token
/// (DATA_DIR/server/token), which opens the client CA's key in the datastore, issues a new
/// admin certificate, and replaces admin.crt and admin.key in the data dir atomically. It
/// works with the server running or stopped. Then the previous credential is revoked:
/// through the running server, which refuses it from the next handshake; or, when no
/// server answers, in the datastore, and the server publishes the CRL when it starts (or
/// at its next periodic check).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen admin reissue
  evergreen admin reissue --data-dir /var/lib/evergreen
  evergreen admin reissue --data-dir /var/lib/evergreen --datastore postgres://evergreen@db/evergreen")]
pub struct ReissueArgs {
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

pub fn run(command: AdminCommand, clock: &dyn Clock) -> Result<()> {
    match command {
        AdminCommand::Reissue(args) => reissue(args, clock),
    }
}

fn reissue(args: ReissueArgs, clock: &dyn Clock) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::connection::default_data_dir);
    let runtime = crate::runtime()?;
    let reissued = runtime
        .block_on(evergreen_server::reissue_admin(
            &data_dir,
            args.datastore.as_deref(),
            clock,
        ))
        .with_context(|| {
            format!(
                "cannot issue an admin credential from {}",
                data_dir.display()
            )
        })?;
    println!(
        "Wrote a new admin credential (serial {}) to {} and {} (mode 0600)",
        reissued.serial,
        reissued.cert_path.display(),
        reissued.key_path.display()
    );
    let Some(previous) = reissued.previous else {
        return Ok(());
    };
    let reason = RevocationReason::Superseded;
    let connection = Connection {
        server: None,
        cert: None,
        key: None,
        ca: None,
        data_dir: Some(data_dir.clone()),
    };
    let request = RevocationRequest {
        hash: None,
        serial: Some(previous.clone()),
        reason: Some(reason.name().into()),
    };
    let online: Result<CertificateSummary, anyhow::Error> = runtime.block_on(async {
        Ok(connection
            .client()?
            .json("POST", "/v1/certificates/revocations", Some(&request))
            .await?)
    });
    match online {
        Ok(_) => {
            println!("Revoked the previous one (serial {previous}) through the running server")
        }
        Err(error) if matches!(error.downcast_ref(), Some(ClientError::Status { .. })) => {
            return Err(error.context(format!(
                "the server refused to revoke the previous one (serial {previous})"
            )));
        }
        Err(unreachable) => {
            runtime
                .block_on(evergreen_server::revoke_offline(
                    &data_dir,
                    args.datastore.as_deref(),
                    &previous,
                    reason,
                    clock,
                ))
                .context("cannot revoke the previous admin credential")?;
            println!(
                "Revoked the previous one (serial {previous}) in the datastore; no server answered ({unreachable:#}), so the server publishes the CRL when it starts"
            );
        }
    }
    Ok(())
}
