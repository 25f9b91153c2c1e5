//! `evergreen server`: the control plane.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use evergreen_api::SystemClock;
use evergreen_pki::{KeyType, SubjectAltName};

/// Run the control plane: owns the cluster PKI, issues and renews certificates, revokes
/// them and publishes CRLs, on one TLS port.
///
/// First start creates the root and role CAs (or uses CA files staged in
/// DIR/server/tls/ before first start — the layout `evergreen ca generate` writes), the
/// server's serving certificate, an admin credential for the CLI (DIR/admin.crt,
/// DIR/admin.key) and the server token (DIR/server/token: keep it; it holds the secret the
/// CA keys are encrypted with), and prints the next step: a join token per node, and the
/// agent command that uses it. A restart reuses all of it and re-issues the server's own
/// certificates when they near expiry (or are revoked).
///
/// Several servers (replicas) can share one PostgreSQL database with --datastore: start
/// the first as usual; start each other one with --token and the first's server token
/// (DIR/server/token). Every replica then issues from the same CAs, and a change made
/// through one reaches agents watching any other within about a second.
///
/// Stops cleanly on SIGTERM or Ctrl-C, letting requests in flight finish.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen server                                   # data in ~/.local/share/evergreen
  evergreen server --data-dir /var/lib/evergreen --listen 0.0.0.0:9443 --san evergreen.example.com
  evergreen token create --role app                  # on the same host, in another shell

Replicas on PostgreSQL (EVERGREEN_DATASTORE and EVERGREEN_TOKEN keep secrets out of `ps`):
  evergreen server --data-dir /srv/a --datastore postgres://evergreen:PW@db:5432/evergreen
  evergreen server --data-dir /srv/b --datastore postgres://evergreen:PW@db:5432/evergreen \\
      --listen 0.0.0.0:9444 --token \"$(cat /srv/a/server/token)\"")]
pub struct ServerArgs {
    /// Where the datastore, CAs and credentials live. Default: EVERGREEN_DATA_DIR, else
    /// /var/lib/evergreen as root, ~/.local/share/evergreen otherwise.
    #[arg(long, value_name = "DIR", env = "EVERGREEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// Extra name (DNS or IP) for the serving certificate; repeatable. The host name,
    /// localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long, value_name = "NAME")]
    pub san: Vec<SubjectAltName>,
    /// Key type of the CAs made at first start.
    #[arg(long, value_name = "TYPE", default_value = "ec-p256")]
    pub key_type: KeyType,
    /// Keep the cluster in a shared PostgreSQL database (postgres://user:password@host:port/db)
    /// instead of the embedded SQLite file in DIR/server/db/. Every replica is started with
    /// the same URL.
    #[arg(
        long,
        value_name = "URL",
        env = "EVERGREEN_DATASTORE",
        hide_env_values = true
    )]
    pub datastore: Option<String>,
    /// Join the cluster already in the datastore: the server token of its first server
    /// (DIR/server/token there). Needed once, at this server's first start; it is written to
    /// this data dir's server/token. A token whose secret does not open the cluster's keys is
    /// refused and nothing is changed.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "EVERGREEN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Connections served at once (lowered to what the open-file limit allows; the soft
    /// limit is raised to the hard one at start).
    #[arg(long, value_name = "N", default_value_t = evergreen_server::Limits::default().max_connections)]
    pub max_connections: usize,
    /// Connections one address (an IPv6 /64) may hold before it proves an identity: in the
    /// TLS handshake, or without a client certificate of the cluster.
    #[arg(long, value_name = "N", default_value_t = evergreen_server::Limits::default().max_unproven_per_source)]
    pub max_unproven_per_source: usize,
}

pub fn run(args: ServerArgs) -> Result<()> {
    crate::init_logging();
    crate::runtime()?.block_on(async move {
        let data_dir = args
            .data_dir
            .unwrap_or_else(crate::connection::default_data_dir);
        let mut config =
            evergreen_server::Config::new(data_dir.clone(), args.listen, Arc::new(SystemClock));
        config.sans = args.san;
        config.key_type = args.key_type;
        config.datastore = args.datastore;
        config.join_token = args.token;
        config.limits.max_connections = args.max_connections;
        config.limits.max_unproven_per_source = args.max_unproven_per_source;
        let server = evergreen_server::start(config).await?;
        let paths = &server.state.paths;
        println!(
            "Evergreen server listening on {} ({})",
            server.url, server.addr
        );
        println!("Data dir: {}", data_dir.display());
        for note in &server.notes {
            println!("note: {note}");
        }
        println!(
            "Admin credential for the CLI: {} and {} (trust bundle {})",
            paths.admin_cert().display(),
            paths.admin_key().display(),
            paths.ca_bundle().display()
        );
        if server.first_start {
            let dir = data_dir.display();
            println!(
                "Next, for each node (a join token names one node and is used once):\n  \
                 evergreen token create --data-dir {dir} --node NODE > NODE.token\n  \
                 evergreen agent --server {url} --node NODE --token \"$(cat NODE.token)\"",
                url = server.url
            );
        }
        let stop = server.stop_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        server.wait().await;
        Ok(())
    })
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
