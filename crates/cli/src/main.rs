//! `evergreen`: keeps a cluster's certificates from ever lapsing.
#![forbid(unsafe_code)]

mod clock;
mod commands;
mod files;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::commands::{ca, certificate};

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
  evergreen ca generate --out ./pki          create a cluster CA hierarchy
  evergreen certificate check --path ./pki   see every certificate and when it expires

Run `evergreen <command> --help` for what each command does, with examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a CA hierarchy and sign CSRs offline.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Inspect certificates: expiry, usages and status.
    #[command(subcommand)]
    Certificate(certificate::CertificateCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let clock = SystemClock;
    let result = match cli.command {
        Command::Ca(command) => ca::run(command, &clock),
        Command::Certificate(command) => certificate::run(command, &clock),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
