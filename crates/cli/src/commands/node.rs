//! `evergreen node bundle`: credentials for a node that runs no agent.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};
use evergreen_api::{NodeBundle, decode_pem};

use crate::connection::Connection;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    Bundle(BundleArgs),
}

/// Write tls.crt, tls.key and ca.crt for a node that runs no agent (Konnect's "Generate
/// certificate"): the server makes the key and a node certificate (365 days) and returns
/// them once. The directory gets the three files (key 0600); nothing is overwritten.
/// Renew it later with `evergreen renew --cert DIR/tls.crt --key DIR/tls.key`.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  evergreen node bundle dp-eu-1 --out ./dp-eu-1")]
pub struct BundleArgs {
    /// The node's name (lowercase letters, digits, '-'); the certificate's CN.
    pub node: String,
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub connection: Connection,
}

pub fn run(command: NodeCommand) -> Result<()> {
    let NodeCommand::Bundle(args) = command;
    let client = args.connection.client()?;
    let path = format!("/v1/nodes/{}/bundle", args.node);
    let bundle: NodeBundle =
        crate::runtime()?.block_on(client.json::<(), _>("POST", &path, None))?;
    let decode = |field: &str, b64: &str| {
        decode_pem(b64).map_err(|e| anyhow::anyhow!("the server's {field} is {e}"))
    };
    files::create_private_dir(&args.out)?;
    files::write_all_new(&[
        (
            args.out.join("tls.crt"),
            decode("crt", &bundle.crt)?,
            PUBLIC_MODE,
        ),
        (
            args.out.join("tls.key"),
            decode("key", &bundle.key)?,
            KEY_MODE,
        ),
        (
            args.out.join("ca.crt"),
            decode("caCrt", &bundle.ca_crt)?,
            PUBLIC_MODE,
        ),
    ])?;
    println!(
        "Wrote tls.crt, tls.key and ca.crt for node {} to {}",
        args.node,
        args.out.display()
    );
    Ok(())
}
