//! `evergreen`: keeps a cluster's certificates from ever lapsing.
#![forbid(unsafe_code)]

mod commands;
mod connection;

mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{admin, agent, ca, certificate, node, renew, rotation, server, token};
use evergreen_api::SystemClock;

/// Keeps a cluster's certificates from ever lapsing.
///
/// Evergreen owns a cluster's PKI: a root CA with role CAs under it, the certificates of
/// every node and service, their renewal before expiry, revocation and CA rotation.
#[derive(Debug, Parser)]
#[command(
    name = "evergreen",
    version,
    propagate_version = true,
    after_help = "Start here:
  evergreen server                           run the control plane
  evergreen token create --node NODE         a join token for one node
  evergreen agent --server URL --token T     on every node: enroll, install certificates
  evergreen token create --role app --subject 'CN=app'   a join token for an application
  evergreen certificate check                every certificate the server issued
  evergreen ca generate --out ./pki          a CA hierarchy made offline

Run `evergreen <command> --help` for what each command does, with examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Server(server::ServerArgs),
    Agent(agent::AgentArgs),
    /// Create join tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    Renew(renew::RenewArgs),
    /// Nodes: credentials for nodes that run no agent, allowed addresses, replacement.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Create a CA hierarchy and sign CSRs offline.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Inspect, revoke, and manage certificates (create, set, set-type, label, rotate, delete, list, rotate-ca).
    #[command(subcommand)]
    Certificate(certificate::CertificateCommand),
    /// The admin credential: reissue it on the server host when it is lost or revoked.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Service-account signing keys: rotate, retire, list.
    #[command(subcommand)]
    Keys(rotation::KeysCommand),
}

/// The async runtime for commands that talk to the network.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Log lines to standard error, at the level `EVERGREEN_LOG` gives (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVERGREEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let clock = SystemClock;
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Token(command) => token::run(command),
        Command::Renew(args) => renew::run(args, std::sync::Arc::new(SystemClock)),
        Command::Node(command) => node::run(command),
        Command::Ca(command) => ca::run(command, &clock),
        Command::Certificate(command) => certificate::run(command, &clock),
        Command::Keys(command) => rotation::keys(command),
        Command::Admin(command) => admin::run(command, &clock),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
