//! `evergreen agent`: the node agent.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use evergreen_agent::{Config, Settings};
use evergreen_api::SystemClock;

/// Run the node agent: enroll with a join token, keep this node's identity fresh, and
/// install the named certificates assigned to this node whenever they change.
///
/// Before sending anything it checks the server's CA against the root hash pinned in the
/// token, and from then on talks only to a server that chains to that root. Certificates
/// go to DATA/certs/<name>/tls.crt, tls.key (0600) and ca.crt — switched together, so a key
/// and its certificate never mismatch — or to the paths the config file gives. When the
/// server is unreachable, or this node's identity has expired, every installed file stays
/// and the agent keeps retrying; the log says what it needs.
///
/// Config file (TOML), per certificate name, all optional:
///
///   [[certificate]]
///   name = "proxy"
///   cert = "/etc/proxy/tls.crt"      # with key and ca: install here instead
///   key = "/etc/proxy/tls.key"
///   ca = "/etc/proxy/ca.crt"
///   reload = "systemctl reload proxy"
///   verify = "127.0.0.1:8443"        # confirm the service serves the new certificate
///   verify_timeout = "30s"           # how long to keep looking for it
///   mode = "0640"                    # certificate and CA file mode (keys are 0600)
///   owner = "proxy:proxy"
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Example:
  evergreen agent --server https://evergreen.example.com:9443 --token EVG10…::abc123.secret \\
      --config /etc/evergreen/agent.toml"
)]
pub struct AgentArgs {
    /// The server (https:// only).
    #[arg(long, value_name = "URL", env = "EVERGREEN_SERVER")]
    pub server: String,
    /// Join token (from `evergreen token create --node NAME` on the server host). Needed
    /// to enroll; once enrolled the agent runs without it.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "EVERGREEN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Agent configuration (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the identity, state and default certificate paths live. Default:
    /// /var/lib/evergreen-agent as root, ~/.local/share/evergreen-agent otherwise.
    #[arg(long, value_name = "DIR", env = "EVERGREEN_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This node's name (its identity's CN). Default: the host name.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

pub fn run(args: AgentArgs) -> Result<()> {
    crate::init_logging();
    evergreen_api::client::parse_url(&args.server)?;
    let node = match args.node {
        Some(node) => node,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
            .trim()
            .to_ascii_lowercase(),
    };
    if node.is_empty() {
        bail!("cannot tell this node's name; pass --node NAME");
    }
    // The agent's own directory, whatever the server's EVERGREEN_DATA_DIR says.
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| crate::connection::state_dir("evergreen-agent"));
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = Settings {
        server: args.server,
        token: args.token,
        data_dir,
        node,
        config,
        clock: Arc::new(SystemClock),
        poll_timeout: Duration::from_secs(30),
        max_backoff: Duration::from_secs(60),
    };
    crate::runtime()?.block_on(async move {
        let (stop, receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::commands::server::shutdown_signal().await;
            let _ = stop.send(true);
        });
        evergreen_agent::run(settings, receiver).await
    })
}
