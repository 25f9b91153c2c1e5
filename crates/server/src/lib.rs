//! Evergreen's control plane: owns the cluster PKI, issues and renews certificates from
//! CSRs, revokes them, publishes CRLs and trust bundles — on one TLS port, with client
//! certificates optional at the TLS layer and each route saying which role it admits.
//!
//! The server is a library so tests start the real thing in-process on 127.0.0.1 with an
//! injected clock; `evergreen server` runs it.
//!
//! Modules import in one direction (a test fails on a cycle, `tests/server/layers.rs`):
//!
//! - leaves: [`cluster`] (the CA model), [`config`], [`error`], `text`, `metrics`,
//!   [`change`] (what a change makes live, failpoints), `fleet` (the watch snapshot), [`tls`]
//!   (configuration), `audit`;
//! - `bootstrap` (first start, the server's own certificates) and [`state`] (what every
//!   request shares, CRL publication, going live and back);
//! - services on the state: `auth`, `enrollment`, `named`, `api_cert`, `rotation`,
//!   `secrets`, `replicas`, `jobs`, `agent`, `observe`;
//! - the runtime: `accept` (the accept loop) and [`routes`] (the router, the OpenAPI
//!   document, the refusal audit), started by [`start`].
#![forbid(unsafe_code)]

mod accept;
mod agent;
mod api_cert;
mod audit;
mod auth;
mod bootstrap;
pub mod change;
pub mod cluster;
pub mod config;
mod enrollment;
pub mod error;
mod fleet;
mod jobs;
mod metrics;
mod named;
mod observe;
pub mod openapi;
mod replicas;
mod rotation;
pub mod routes;
mod secrets;
pub mod state;
mod text;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use evergreen_api::Clock;
use evergreen_api::files::KEY_MODE;
use evergreen_pki::{KeyType, SubjectAltName};
use evergreen_store::{SqliteStore, Store};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use accept::Limits;
pub use agent::MAX_POLL as MAX_WATCH;
pub use bootstrap::{
    ReissuedAdmin, current_root, current_service_keys, reissue_admin, revoke_offline,
};
pub use config::{Paths, Settings};
pub use state::AppState;

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
    /// Steps of changes to fail, for tests (with the `failpoints` feature).
    pub failpoints: Arc<change::Failpoints>,
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
            failpoints: Arc::default(),
        }
    }
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT` (a wildcard listen address is reached on loopback).
    pub url: String,
    /// Whether this start created the cluster.
    pub first_start: bool,
    /// What the operator should know of this start: staged files ignored, CAs that
    /// publish no CRL.
    pub notes: Vec<String>,
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
    // Parsed before anything is opened: a malformed token changes nothing.
    let join = config
        .join_token
        .as_deref()
        .map(|t| t.trim().parse::<evergreen_pki::token::JoinToken>())
        .transpose()
        .context("the token given with --token is malformed; pass the content of the first server's DATA_DIR/server/token")?;
    // A first start's staged CA files are read and checked before anything is created,
    // so a refused first start leaves the data dir as it found it; and what a first start
    // creates is removed again if it fails later.
    let mut created = Created::default();
    let sqlite_first_start = config.datastore.is_none() && !paths.db().exists();
    let mut staged = if sqlite_first_start && join.is_none() {
        bootstrap::staged_first_start(&paths, config.clock.now())?
    } else {
        None
    };
    for dir in [paths.data_dir.clone(), paths.server(), paths.tls()] {
        created.dir(&dir)?;
    }
    let store: Arc<dyn Store> = match &config.datastore {
        Some(url) => evergreen_store::open(url)
            .await
            .with_context(|| format!("cannot open the datastore {}", redact(url)))?,
        None => {
            let db = paths.db();
            created.dir(db.parent().unwrap_or(&paths.server()))?;
            for suffix in ["", "-wal", "-shm"] {
                created.file(&std::path::PathBuf::from(format!(
                    "{}{suffix}",
                    db.display()
                )));
            }
            Arc::new(
                SqliteStore::open(&db)
                    .await
                    .with_context(|| format!("cannot open the datastore {}", db.display()))?,
            )
        }
    };
    let result = async {
        if config.datastore.is_some() && join.is_none() && !store.is_initialized().await? {
            staged = bootstrap::staged_first_start(&paths, config.clock.now())?;
        }
        start_with(&config, paths, store.clone(), join.as_ref(), staged).await
    }
    .await;
    match result {
        Ok(server) => {
            created.keep();
            Ok(server)
        }
        Err(error) => {
            // A refused start leaves the datastore as it found it, connections closed.
            store.close().await;
            Err(error)
        }
    }
}

/// What a start created, removed again (files, then directories, newest first) unless the
/// start completes.
#[derive(Debug, Default)]
struct Created {
    paths: Vec<(std::path::PathBuf, bool)>,
}

impl Created {
    /// Creates `dir` (mode 0700) if it does not exist, remembering it.
    fn dir(&mut self, dir: &std::path::Path) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(path) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(path.to_owned());
            at = path.parent();
        }
        evergreen_api::files::create_private_dir(dir)?;
        self.paths
            .extend(missing.into_iter().rev().map(|p| (p, true)));
        Ok(())
    }

    /// Remembers `file`, which the start may create, if it does not exist yet.
    fn file(&mut self, file: &std::path::Path) {
        if !file.exists() {
            self.paths.push((file.to_owned(), false));
        }
    }

    fn keep(mut self) {
        self.paths.clear();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for (path, is_dir) in self.paths.iter().rev() {
            let _ = if *is_dir {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

async fn start_with(
    config: &Config,
    paths: Paths,
    store: Arc<dyn Store>,
    join: Option<&evergreen_pki::token::JoinToken>,
    staged: Option<bootstrap::StagedCas>,
) -> anyhow::Result<RunningServer> {
    const ACTION: &str = "start";
    // Subscribed before the cluster is read, so no change made meanwhile is missed.
    let changes = store.changes();
    let mut notes = staged.as_ref().map(|s| s.notes.clone()).unwrap_or_default();
    let booted = bootstrap::boot(
        store.as_ref(),
        &paths,
        config.clock.as_ref(),
        config.key_type,
        join,
        staged,
    )
    .await?;
    if booted.first.is_none() {
        notes.extend(cluster::without_crls(&booted.cluster));
    }
    for note in &notes {
        tracing::warn!("{note}");
    }
    let now = config.clock.now();
    let own = vec![
        bootstrap::serving_cert(&paths, &config.sans),
        bootstrap::admin_cert(&paths),
    ];
    // Listening creates nothing on disk; the URL goes into the CLI's files.
    let listener = accept::listen(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = accept::local_url(addr);

    // The serving certificate in use now, or a new one, served from the first handshake.
    let mut issued = Vec::new();
    let renewal = &config.settings.renewal;
    let serving_ca = booted.cluster.ca(own[0].ca).context("no server CA")?;
    let mut revoked = Vec::new();
    for own in &own {
        if bootstrap::own_revoked(store.as_ref(), own).await? {
            tracing::warn!(
                certificate = own.name,
                "its certificate is revoked; issuing a new one"
            );
            revoked.push(own.name);
        }
    }
    let current = |own: &bootstrap::OwnCert, ca| {
        bootstrap::current_own(own, ca, renewal, now).filter(|_| !revoked.contains(&own.name))
    };
    let serving_key = match current(&own[0], serving_ca) {
        Some((chain, key)) => Arc::new(tls::certified_key(chain, &key)?),
        None => {
            let fresh =
                bootstrap::issue_own(&booted.cluster, &config.settings, &own[0], now, "server")?;
            let key = fresh.certified_key()?;
            issued.push(fresh);
            key
        }
    };
    let admin_ca = booted.cluster.ca(own[1].ca).context("no client CA")?;
    if current(&own[1], admin_ca).is_none() {
        issued.push(bootstrap::issue_own(
            &booted.cluster,
            &config.settings,
            &own[1],
            now,
            "server",
        )?);
    }
    let serving = Arc::new(tls::ServingCert::from_key(serving_key));
    let placeholder = tls::build_config(
        config.clock.clone(),
        serving.clone(),
        &booted.cluster,
        &Default::default(),
    )?;
    let revision = store.revision().await?;
    let cluster = Arc::new(booted.cluster);
    let (shutdown, receiver) = watch::channel(false);
    let state = Arc::new(AppState {
        own,
        store,
        clock: config.clock.clone(),
        cluster: ArcSwap::new(cluster.clone()),
        crls: ArcSwap::from_pointee(Default::default()),
        revoked: ArcSwap::from_pointee(Default::default()),
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
        failpoints: config.failpoints.clone(),
        stopping: receiver.clone(),
    });

    // The start's change: a first start's datastore rows and token, the server's own
    // certificates, the CRLs and the CLI's files, committed together.
    let mut tx = state.store.begin().await?;
    let mut live = change::Live::default();
    let fail = |step: &str, e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{}", change::failed(ACTION, step, e).message)
    };
    if let Some(first) = &booted.first {
        match tx.initialize(&first.init).await {
            Err(evergreen_store::StoreError::AlreadyInitialized) => bail!(
                "another server initialised this datastore at the same time; start this one with --token and that server's DATA_DIR/server/token"
            ),
            result => result?,
        }
        live.files
            .stage(&paths.token(), first.server_token.as_bytes(), KEY_MODE)
            .map_err(|e| fail("writing the server token", &e))?;
    }
    state::passed(&state, ACTION, "initialized").map_err(|e| anyhow::anyhow!(e.message))?;
    for own in &issued {
        own.stage(tx.as_mut(), &mut live.files)
            .await
            .map_err(|e| fail("recording the server's own certificates", &e))?;
    }
    state::passed(&state, ACTION, "own-issued").map_err(|e| anyhow::anyhow!(e.message))?;
    let crls = state
        .prepare_crls(&cluster, tx.as_mut())
        .await
        .map_err(|e| fail("signing CRLs", &e))?;
    live.crls = Some(crls);
    state::passed(&state, ACTION, "crls-signed").map_err(|e| anyhow::anyhow!(e.message))?;
    bootstrap::stage_cli_files(&mut live.files, &paths, &cluster, Some(&url))
        .map_err(|e| fail("writing the CLI's files", &e))?;
    state
        .go_live_and_commit(ACTION, tx, live)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;

    api_cert::load(&state).await?;
    let router = routes::router(state.clone());
    let serve = tokio::spawn(accept::serve(
        state.clone(),
        listener,
        router,
        config.limits.clone().within_open_file_limit(),
        receiver.clone(),
    ));
    let follower = changes
        .map(|changes| tokio::spawn(replicas::follow(state.clone(), changes, receiver.clone())));
    let jobs = tokio::spawn({
        let (state, interval) = (state.clone(), config.check_interval);
        async move {
            tokio::join!(
                jobs::periodic(state.clone(), interval, receiver.clone()),
                secrets::watch_secrets(state, receiver)
            );
        }
    });
    Ok(RunningServer {
        addr,
        url,
        first_start: booted.first.is_some(),
        notes,
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

impl RunningServer {
    /// Runs the periodic check now (tests move the clock, then call this).
    pub async fn check_now(&self) -> anyhow::Result<()> {
        jobs::run_checks(&self.state).await
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
