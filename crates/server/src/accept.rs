//! The accept loop: one port, connections admitted within [`Limits`], each TLS handshake
//! done with the configuration loaded afresh (so a swapped certificate or CRL applies to
//! the next connection), then HTTP/1.1 served until shutdown.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::Peer;
use crate::error::Reason;
use crate::state::AppState;

/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Connections kept in the kernel's queue before the server accepts them: room for a
/// fleet reconnecting at once.
const LISTEN_BACKLOG: u32 = 4096;

/// Open files kept for the datastore, logs and hooks when the connection limit is derived
/// from the open-file limit.
const RESERVED_FILES: u64 = 64;

/// What one server admits at once, and how long a peer may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; past it a new connection is closed as soon as it is
    /// accepted. Never more than the open-file limit allows.
    pub max_connections: usize,
    /// Connections one source (an IPv4 address or an IPv6 /64) may hold before it has
    /// proven an identity: in the TLS handshake, or past it without a client certificate
    /// of the cluster. Past it, that source's new connections are closed at once, so no
    /// one source can starve the others.
    pub max_unproven_per_source: usize,
    /// A client that has not finished its TLS handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request, and a request for
    /// its headers.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            max_unproven_per_source: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// These limits with the connection cap lowered to what the open-file limit allows,
    /// after raising the soft limit to the hard one.
    pub fn within_open_file_limit(mut self) -> Self {
        let soft = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(soft) => soft,
            Err(error) => {
                tracing::warn!(%error, "cannot read or raise the open-file limit");
                return self;
            }
        };
        let allowed = usize::try_from(soft.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
        if allowed < self.max_connections {
            tracing::info!(
                open_files = soft,
                connections = allowed,
                "the open-file limit caps the connections served at once"
            );
            self.max_connections = allowed.max(1);
        }
        self
    }
}

/// Counts open connections, and unproven ones per source (see [`Limits`]).
#[derive(Debug)]
struct Gate {
    limits: Limits,
    open: AtomicUsize,
    unproven: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
struct Slot {
    gate: Arc<Gate>,
    source: IpAddr,
    unproven: bool,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shed {
    Full,
    SourceFull,
}

impl Gate {
    fn admit(self: &Arc<Self>, remote: IpAddr) -> Result<Slot, Shed> {
        let source = crate::audit::source_of(remote);
        let mut unproven = self.unproven.lock().unwrap_or_else(|e| e.into_inner());
        let held = unproven.get(&source).copied().unwrap_or(0);
        if held >= self.limits.max_unproven_per_source {
            return Err(Shed::SourceFull);
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::Full);
        }
        unproven.insert(source, held + 1);
        Ok(Slot {
            gate: self.clone(),
            source,
            unproven: true,
        })
    }
}

impl Slot {
    /// The peer proved an identity: it no longer counts against its source.
    fn proven(&mut self) {
        if std::mem::replace(&mut self.unproven, false) {
            self.gate.release_unproven(self.source);
        }
    }
}

impl Gate {
    fn release_unproven(&self, source: IpAddr) {
        let mut unproven = self.unproven.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = unproven.get_mut(&source) {
            *held -= 1;
            if *held == 0 {
                unproven.remove(&source);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.proven();
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A listener with a backlog large enough for a fleet reconnecting at once.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until `shutdown` turns true, then waits up to [`SHUTDOWN_GRACE`]
/// for requests in flight. Connections past the [`Limits`] are closed at once; every
/// connection that is shed or fails its handshake is counted and audited (aggregated per
/// source, see [`crate::audit`]).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let gate = Arc::new(Gate {
        limits,
        open: AtomicUsize::new(0),
        unproven: Default::default(),
    });
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
        };
        let mut slot = match gate.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(shed) => {
                drop(tcp);
                state.metrics.shed.fetch_add(1, Ordering::Relaxed);
                let (reason, message) = match shed {
                    Shed::Full => (
                        Reason::TooManyConnections,
                        "the server holds as many connections as it may; connection closed",
                    ),
                    Shed::SourceFull => (
                        Reason::TooManyFromSource,
                        "this source holds as many unauthenticated connections as it may; connection closed",
                    ),
                };
                let state = state.clone();
                tokio::spawn(async move {
                    state.refused_connection(remote, reason, message).await;
                });
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(state.tls.load_full());
        let router = router.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        let (handshake_timeout, idle_timeout) =
            (gate.limits.handshake_timeout, gate.limits.idle_timeout);
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    state
                        .metrics
                        .handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    let revoked = error
                        .get_ref()
                        .and_then(|e| e.downcast_ref::<rustls::Error>())
                        .is_some_and(|e| {
                            matches!(
                                e,
                                rustls::Error::InvalidCertificate(
                                    rustls::CertificateError::Revoked
                                )
                            )
                        });
                    let reason = if revoked {
                        Reason::Revoked
                    } else {
                        Reason::HandshakeFailed
                    };
                    let message = format!("TLS handshake failed: {error}");
                    state.refused_connection(remote, reason, &message).await;
                    return;
                }
                Err(_) => {
                    state
                        .metrics
                        .handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "TLS handshake timed out");
                    let message = format!(
                        "no TLS handshake within {} s; connection closed",
                        handshake_timeout.as_secs()
                    );
                    state
                        .refused_connection(remote, Reason::HandshakeTimeout, &message)
                        .await;
                    return;
                }
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.clone().into_owned());
            if peer
                .as_ref()
                .is_some_and(|der| state.is_client_certificate(der))
            {
                slot.proven();
            }
            let service =
                TowerToHyperService::new(router.layer(axum::Extension(Peer::new(peer, remote))));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle_timeout)
                .max_buf_size(MAX_HEADERS_BYTES)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; closing them");
    }
}

/// The most a request's line and headers may take, and how many headers it may have.
const MAX_HEADERS_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// The address to print and to write for the CLI: a wildcard listen address is reached
/// on loopback.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    match ip {
        std::net::IpAddr::V4(v4) => format!("https://{v4}:{}", addr.port()),
        std::net::IpAddr::V6(v6) => format!("https://[{v6}]:{}", addr.port()),
    }
}
