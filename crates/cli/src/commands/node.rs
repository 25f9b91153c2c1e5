//! `evergreen node bundle`: credentials for a node that runs no agent.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};
use evergreen_api::{NodeAddresses, NodeBundle, NodeStatus, decode_pem};

use crate::connection::Connection;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    Bundle(BundleArgs),
    Allow(AllowArgs),
    Replace(ReplaceArgs),
}

/// Say which addresses a node's certificates may name: what `{ip}` stands for in its
/// node-scope certificates (`certificate create kubelet --scope node --san '{ip}'`).
///
/// Without an allowed address, `{ip}` is the address the server sees the node connect
/// from — never a loopback, link-local or unspecified one. The list replaces the one
/// before; give none (`--ip` absent) to go back to the address the server sees.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen node allow node-1 --ip 10.0.0.11 --ip fd00::11
  evergreen node allow node-1                  # {ip}: the address node-1 connects from")]
pub struct AllowArgs {
    pub node: String,
    /// An IP address of the node; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub ip: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Replace a node: revoke its identity so that a new machine can enroll under its name.
///
/// A name that has a live identity is never enrolled again by a token (the node itself
/// renews with its current identity). When a node's machine is lost or rebuilt, this
/// revokes its identity certificates at once (the next handshake with them fails); then
/// give the new machine a token for the name.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  evergreen node replace node-1
  evergreen token create --node node-1         # for the new machine")]
pub struct ReplaceArgs {
    pub node: String,
    #[command(flatten)]
    pub connection: Connection,
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
    let args = match command {
        NodeCommand::Bundle(args) => args,
        NodeCommand::Allow(args) => {
            let client = args.connection.client()?;
            let body = NodeAddresses { addresses: args.ip };
            let status: NodeStatus = crate::runtime()?.block_on(client.json(
                "PUT",
                &format!("/v1/nodes/{}/addresses", args.node),
                Some(&body),
            ))?;
            println!("{}: {}", status.node, status.detail);
            return Ok(());
        }
        NodeCommand::Replace(args) => {
            let client = args.connection.client()?;
            let status: NodeStatus = crate::runtime()?.block_on(client.json::<(), _>(
                "POST",
                &format!("/v1/nodes/{}/replace", args.node),
                None,
            ))?;
            println!("{}: {}", status.node, status.detail);
            return Ok(());
        }
    };
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
