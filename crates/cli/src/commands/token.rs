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

/// Create a join token: the right to enroll one identity, once.
///
/// A node token names its node (--node NAME), or a pattern of names with a number of uses
/// (--nodes 'worker-*' --uses 20); the certificate it enrolls is CN=<that name>, whatever
/// the node asks for, and a name that is already enrolled is refused (see `evergreen node
/// replace`). An app token names the subject it enrolls (--subject 'CN=billing, O=team';
/// the CN may hold *). No token enrolls the admin's or the server's names, or an enrolled
/// node's.
///
/// Every token expires (--ttl, 24 hours by default) and is single-use unless --uses says
/// otherwise; a refused enrollment does not count as a use. The token pins the SHA-256 of
/// the cluster's root CA, so a new node checks it talks to the right server before it
/// sends anything. It is printed once; the server keeps only a hash of its secret.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen token create --node node-1                       # one node, once, within 24 h
  evergreen token create --nodes 'worker-*' --uses 20 --ttl 2h
  evergreen token create --role app --subject 'CN=billing, O=payments' --ttl 1h
  evergreen agent --server https://evergreen:9443 --node node-1 --token \"$(evergreen token create --node node-1)\"")]
#[command(group(clap::ArgGroup::new("names").args(["node", "nodes", "subject"]).required(true)))]
pub struct CreateArgs {
    #[arg(long, value_enum, default_value = "node")]
    pub role: TokenRole,
    /// Node tokens: the one node it enrolls (its identity's CN).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Node tokens: the node names it enrolls, * standing for any run of characters.
    #[arg(long, value_name = "PATTERN")]
    pub nodes: Option<String>,
    /// App tokens: the subject it enrolls, as CN=…, O=… or /CN=…/O=…; the CN may hold *.
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,
    /// How many enrollments it allows.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub uses: u32,
    /// Lifetime: 30d, 12h, 90m or seconds (at most 36500d).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_ttl)]
    pub ttl: u64,
    /// What the token is for, kept in the audit log.
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub connection: Connection,
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let ttl = evergreen_api::duration::parse(s)?;
    u64::try_from(ttl.whole_seconds())
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{s:?} is not a positive duration"))
}

pub fn run(command: TokenCommand) -> Result<()> {
    let TokenCommand::Create(args) = command;
    let client = args.connection.client()?;
    let request = TokenRequest {
        role: match args.role {
            TokenRole::Node => Role::Node,
            TokenRole::App => Role::App,
        },
        ttl_seconds: Some(args.ttl),
        node: args.node,
        nodes: args.nodes,
        subject: args.subject,
        uses: Some(args.uses),
        description: args.description,
    };
    let response: TokenResponse =
        crate::runtime()?.block_on(client.json("POST", "/v1/tokens", Some(&request)))?;
    println!("{}", response.token);
    eprintln!(
        "{} token {} created for {}: {} use(s), expires at {}",
        response.role, response.id, response.enrolls, response.uses, response.expires_at
    );
    Ok(())
}
