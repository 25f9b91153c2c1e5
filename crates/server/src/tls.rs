//! TLS: one port, client certificates optional, everything swappable while running.
//!
//! - The serving certificate sits behind [`ServingCert`]: a new one is used by the next
//!   handshake, with no restart.
//! - The client-certificate verifier and its CRLs live in the `ServerConfig`, which the
//!   accept loop loads afresh for every connection; publishing a CRL swaps it.
//! - rustls reads time from the server's clock, so tests move time instead of waiting.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use evergreen_api::Clock;
use evergreen_pki::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::state::{AppState, CLIENT_CA, Cluster};

/// A client that has not finished its TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client certificate a connection presented, if any, as the handlers see it. It has
/// passed only the revocation check at the handshake; handlers authenticate it fully, once
/// per connection while the cluster's CAs and CRLs stay the same (see
/// [`crate::auth::authenticate`]).
#[derive(Debug, Clone)]
pub struct Peer {
    pub certificate: Option<CertificateDer<'static>>,
    pub(crate) authenticated: Arc<std::sync::Mutex<Option<crate::auth::Authenticated>>>,
}

impl Peer {
    pub fn new(certificate: Option<CertificateDer<'static>>) -> Self {
        Peer {
            certificate,
            authenticated: Arc::default(),
        }
    }
}

/// The serving certificate, replaceable while running.
#[derive(Debug)]
pub struct ServingCert(ArcSwap<CertifiedKey>);

impl ServingCert {
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> anyhow::Result<Self> {
        Ok(ServingCert(ArcSwap::from_pointee(certified_key(
            chain, key,
        )?)))
    }

    /// New handshakes use the new certificate; open connections keep theirs.
    pub fn replace(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> anyhow::Result<()> {
        self.0.store(Arc::new(certified_key(chain, key)?));
        Ok(())
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0.load_full()
    }
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> anyhow::Result<CertifiedKey> {
    let signing = provider().key_provider.load_private_key(key.clone_key())?;
    Ok(CertifiedKey::new(chain, signing))
}

#[derive(Debug)]
struct Resolver(Arc<ServingCert>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// Client certificates are optional, and a presented one is refused at the handshake
/// only when the client CA's CRL lists it as revoked. Any other fault (expired, foreign,
/// wrong usage) passes the handshake so the handler can answer with a message that says
/// exactly what is wrong; handlers never trust a peer they have not authenticated.
#[derive(Debug)]
struct ClientVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.0.verify_client_cert(end_entity, intermediates, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            _ => Ok(ClientCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A `ServerConfig` for the current serving certificate, client CA and CRLs.
pub fn server_config(
    state: &AppState,
    cluster: &Cluster,
    crls: &BTreeMap<String, CertificateRevocationListDer<'static>>,
) -> anyhow::Result<rustls::ServerConfig> {
    build_config(state.clock.clone(), state.serving.clone(), cluster, crls)
}

pub fn build_config(
    clock: Arc<dyn Clock>,
    serving: Arc<ServingCert>,
    cluster: &Cluster,
    crls: &BTreeMap<String, CertificateRevocationListDer<'static>>,
) -> anyhow::Result<rustls::ServerConfig> {
    // Every client CA generation, with its CRL: leaves of a retired client CA keep
    // working until renewed, and stay revocable.
    let mut roots = rustls::RootCertStore::empty();
    for (ca, _) in cluster.generations(CLIENT_CA) {
        roots.add(ca.clone())?;
    }
    let client_crls = crls
        .iter()
        .filter(|(name, _)| name.split('@').next() == Some(CLIENT_CA))
        .map(|(_, crl)| crl.clone());
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(client_crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_details(
        provider(),
        Arc::new(evergreen_api::clock::RustlsTime(clock)),
    )
    .with_safe_default_protocol_versions()?
    .with_client_cert_verifier(Arc::new(ClientVerifier(inner)))
    .with_cert_resolver(Arc::new(Resolver(serving)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections until `shutdown` turns true, then waits up to [`SHUTDOWN_GRACE`]
/// for requests in flight.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(state.tls.load_full());
        let router = router.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    state
                        .metrics
                        .handshake_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    state
                        .metrics
                        .handshake_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.clone().into_owned());
            let service = TowerToHyperService::new(router.layer(axum::Extension(Peer::new(peer))));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
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
