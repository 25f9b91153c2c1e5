//! `evergreen token`: join tokens.
use anyhow::Result;
use clap::{Args, Subcommand};
use evergreen_api::{Role, TokenRequest, TokenResponse};

use crate::connection::Connection;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    Create(CreateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// A node's agent: node client certificate, 365 days.
    Node,
    /// An application client: 92-day client certificate, renewable the Kyma way.
    App,
}

/// Create a join token. Whoever holds it can enroll once or many times (until it expires)
/// with `POST /v1/enroll` and get a client certificate of the token's role.
///
/// The token pins the SHA-256 of the cluster's root CA, so a new node can check it talks to
/// the right server before it sends anything. The token is printed once; the server keeps
/// only a hash of its secret.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen token create                       # a node token that never expires
  evergreen token create --role app --ttl 24h --description billing-service")]
pub struct CreateArgs {
    #[arg(long, value_enum, default_value = "node")]
    pub role: TokenRole,
    /// Lifetime: 30d, 12h, 90m or seconds. Default: never expires.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<u64>,
    /// What the token is for, kept in the audit log.
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub connection: Connection,
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    evergreen_server::routes::parse_duration(s)
        .filter(|d| d.is_positive())
        .and_then(|d| u64::try_from(d.whole_seconds()).ok())
        .ok_or_else(|| format!("{s:?} is not a duration such as 30d, 12h, 90m or 3600"))
}

pub fn run(command: TokenCommand) -> Result<()> {
    let TokenCommand::Create(args) = command;
    let client = args.connection.client()?;
    let request = TokenRequest {
        role: match args.role {
            TokenRole::Node => Role::Node,
            TokenRole::App => Role::App,
        },
        ttl_seconds: args.ttl,
        description: args.description,
    };
    let response: TokenResponse =
        crate::runtime()?.block_on(client.json("POST", "/v1/tokens", Some(&request)))?;
    println!("{}", response.token);
    eprintln!(
        "{} token {} created; {}",
        response.role,
        response.id,
        response
            .expires_at
            .map_or("it never expires".to_owned(), |t| format!(
                "it expires at {t}"
            ))
    );
    Ok(())
}
