//! Evergreen's control plane: owns the cluster PKI, issues and renews certificates from
//! CSRs, revokes them, publishes CRLs and trust bundles — on one TLS port, with client
//! certificates optional at the TLS layer and each route saying which role it admits.
//!
//! The server is a library so tests start the real thing in-process on 127.0.0.1 with an
//! injected clock; `evergreen server` runs it.
#![forbid(unsafe_code)]

mod agent;
mod audit;
mod auth;
mod bootstrap;
mod enrollment;
pub mod error;
mod metrics;
mod named;
mod observe;
mod replicas;
mod rotation;
pub mod routes;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use evergreen_api::Clock;
use evergreen_pki::{KeyType, SubjectAltName};
use evergreen_store::{SqliteStore, Store};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use agent::MAX_POLL as MAX_WATCH;
pub use bootstrap::current_root;
pub use observe::document as openapi_document;
pub use state::{AppState, Paths, Settings};
pub use tls::Limits;

/// How `evergreen server` runs.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Extra names for the serving certificate.
    pub sans: Vec<SubjectAltName>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// How often the server checks its own certificates and CRLs.
    pub check_interval: Duration,
    /// Key type of CAs made at first start.
    pub key_type: KeyType,
    /// A shared PostgreSQL datastore (`postgres://…`); `None` is the embedded SQLite file
    /// in the data dir.
    pub datastore: Option<String>,
    /// The server token of a replica already running on the shared datastore, for this
    /// server's first start (`evergreen server --token`).
    pub join_token: Option<String>,
    /// Connections admitted at once and timeouts.
    pub limits: Limits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(data_dir: PathBuf, listen: SocketAddr, clock: Arc<dyn Clock>) -> Self {
        Config {
            data_dir,
            listen,
            sans: Vec::new(),
            clock,
            settings: Settings::default(),
            check_interval: Duration::from_secs(600),
            key_type: KeyType::EcP256,
            datastore: None,
            join_token: None,
            limits: Limits::default(),
        }
    }
}

/// The periodic work, also run at start and after a CA rotation: the server's own
/// certificates, CRLs, `secret` named certificates, and the renewal of every named
/// certificate the server issues.
///
/// Re-issues the server's own certificates when they are inside the renewal window or no
/// longer match (the new serving certificate is used by the next handshake), and re-signs
/// CRLs past half their validity.
pub(crate) async fn run_checks(state: &AppState) -> anyhow::Result<()> {
    let _job = state.store.lock(evergreen_store::Job::Checks).await?;
    let cluster = state.cluster.load_full();
    for own in &state.own {
        let (chain, key, renewed) = bootstrap::ensure_own_cert(
            state.store.as_ref(),
            &cluster,
            &state.settings,
            own,
            state.now(),
            false,
        )
        .await?;
        if renewed {
            tracing::info!(certificate = %own.subject, "re-issued");
            if own.role == evergreen_api::Role::Server {
                state.serving.replace(chain, &key)?;
            }
        }
    }
    if state.crls_stale() {
        state.publish_crls().await?;
    }
    state.flush_refusals().await?;
    named::refresh_secrets(state)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    named::renew_due(state)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    Ok(())
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT` (a wildcard listen address is reached on loopback).
    pub url: String,
    /// Whether this start created the cluster.
    pub first_start: bool,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    serve: JoinHandle<()>,
    jobs: JoinHandle<()>,
    follower: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
/// Starts the server: opens (or creates) the datastore and PKI in the data dir, makes sure
/// its own certificates are fresh, publishes CRLs, and listens.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let paths = Paths {
        data_dir: config.data_dir.clone(),
    };
    for dir in [paths.data_dir.clone(), paths.server(), paths.tls()] {
        evergreen_api::files::create_private_dir(&dir)?;
    }
    // Parsed before anything is opened: a malformed token changes nothing.
    let join = config
        .join_token
        .as_deref()
        .map(|t| t.trim().parse::<evergreen_pki::token::JoinToken>())
        .transpose()
        .context("the token given with --token is malformed; pass the content of the first server's DATA_DIR/server/token")?;
    let store: Arc<dyn Store> = match &config.datastore {
        Some(url) => evergreen_store::open(url)
            .await
            .with_context(|| format!("cannot open the datastore {}", redact(url)))?,
        None => {
            let db = paths.db();
            evergreen_api::files::create_private_dir(db.parent().unwrap_or(&paths.server()))?;
            Arc::new(
                SqliteStore::open(&db)
                    .await
                    .with_context(|| format!("cannot open the datastore {}", db.display()))?,
            )
        }
    };
    match start_with(&config, paths, store.clone(), join.as_ref()).await {
        Ok(server) => Ok(server),
        Err(error) => {
            // A refused start leaves the datastore as it found it, connections closed.
            store.close().await;
            Err(error)
        }
    }
}

async fn start_with(
    config: &Config,
    paths: Paths,
    store: Arc<dyn Store>,
    join: Option<&evergreen_pki::token::JoinToken>,
) -> anyhow::Result<RunningServer> {
    // Subscribed before the cluster is read, so no change made meanwhile is missed.
    let changes = store.changes();
    let booted = bootstrap::boot(
        store.as_ref(),
        &paths,
        config.clock.as_ref(),
        config.key_type,
        join,
    )
    .await?;
    let now = config.clock.now();
    let own = vec![
        bootstrap::serving_cert(&paths, &config.sans),
        bootstrap::admin_cert(&paths),
    ];
    let (serving_chain, serving_key, _) = bootstrap::ensure_own_cert(
        store.as_ref(),
        &booted.cluster,
        &config.settings,
        &own[0],
        now,
        false,
    )
    .await?;
    bootstrap::ensure_own_cert(
        store.as_ref(),
        &booted.cluster,
        &config.settings,
        &own[1],
        now,
        false,
    )
    .await?;
    let serving = Arc::new(tls::ServingCert::new(serving_chain, &serving_key)?);
    let placeholder = tls::build_config(
        config.clock.clone(),
        serving.clone(),
        &booted.cluster,
        &Default::default(),
    )?;
    let revision = store.revision().await?;
    let state = Arc::new(AppState {
        own,
        store,
        clock: config.clock.clone(),
        cluster: ArcSwap::from_pointee(booted.cluster),
        crls: ArcSwap::from_pointee(Default::default()),
        tls: ArcSwap::from_pointee(placeholder),
        serving,
        settings: config.settings.clone(),
        paths: paths.clone(),
        metrics: Default::default(),
        sealing: booted.sealing,
        revision: tokio::sync::watch::channel(revision).0,
        crl_lock: Mutex::new(()),
        watch_snapshot: Mutex::new(None),
        refusals: Default::default(),
    });
    state.publish_crls().await.context("cannot publish CRLs")?;

    let listener = tls::listen(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = tls::local_url(addr);
    bootstrap::write_cli_files(&paths, &state.cluster.load(), &url)?;

    let (shutdown, receiver) = watch::channel(false);
    let router = routes::router(state.clone());
    let serve = tokio::spawn(tls::serve(
        state.clone(),
        listener,
        router,
        config.limits.clone().within_open_file_limit(),
        receiver.clone(),
    ));
    let follower = changes
        .map(|changes| tokio::spawn(replicas::follow(state.clone(), changes, receiver.clone())));
    let jobs = tokio::spawn(periodic(state.clone(), config.check_interval, receiver));
    Ok(RunningServer {
        addr,
        url,
        first_start: booted.first_start,
        state,
        shutdown,
        serve,
        jobs,
        follower,
    })
}

/// A datastore URL fit to print: without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn periodic(state: Arc<AppState>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let window = std::time::Duration::try_from(audit::WINDOW).unwrap_or(interval);
    let mut refusals = tokio::time::interval_at(tokio::time::Instant::now() + window, window);
    loop {
        tokio::select! {
            _ = checks.tick() => {}
            _ = refusals.tick() => {
                if let Err(error) = state.flush_refusals().await {
                    tracing::error!(%error, "cannot write the audit log");
                }
                continue;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        if let Err(error) = run_checks(&state).await {
            tracing::error!(
                error = format!("{error:#}"),
                "periodic check failed; retrying at the next one"
            );
        }
    }
}

impl RunningServer {
    /// Runs the periodic check now (tests move the clock, then call this).
    pub async fn check_now(&self) -> anyhow::Result<()> {
        run_checks(&self.state).await
    }

    /// Stops accepting, lets requests in flight finish (up to a grace period), and stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// A handle that stops the server when sent `true` (signal handlers use it).
    pub fn stop_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) {
        let _ = self.serve.await;
        self.jobs.abort();
        let _ = self.jobs.await;
        if let Some(follower) = self.follower {
            follower.abort();
            let _ = follower.await;
        }
        self.state.store.close().await;
    }
}
