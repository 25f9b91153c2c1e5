//! TLS configuration: client certificates optional, everything swappable while running
//! (the accept loop that uses it is [`crate::accept`]).
//!
//! - The serving certificate sits behind [`ServingCert`]: a new one is used by the next
//!   handshake, with no restart.
//! - The client-certificate verifier and its CRLs live in the `ServerConfig`, which the
//!   accept loop loads afresh for every connection; publishing a CRL swaps it.
//! - rustls reads time from the server's clock, so tests move time instead of waiting.
use std::sync::Arc;

use arc_swap::ArcSwap;
use evergreen_api::Clock;
use evergreen_pki::{CertificateDer, PrivateKeyDer};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::cluster::{CLIENT_CA, Cluster, Revoked};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The serving certificate, replaceable while running: new handshakes use the new one,
/// open connections keep theirs.
#[derive(Debug)]
pub struct ServingCert {
    cluster: ArcSwap<CertifiedKey>,
    /// A certificate an admin provided for the API listener (of the company's CA): served
    /// to every client but Evergreen's own, which offer [`evergreen_api::client::ALPN`].
    provided: arc_swap::ArcSwapOption<CertifiedKey>,
}

impl ServingCert {
    pub fn from_key(key: Arc<CertifiedKey>) -> Self {
        ServingCert {
            cluster: ArcSwap::new(key),
            provided: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// The cluster's serving certificate.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.cluster.load_full()
    }

    /// The provided API certificate, if any.
    pub fn provided(&self) -> Option<Arc<CertifiedKey>> {
        self.provided.load_full()
    }

    /// Serves `key` (or none) to clients other than Evergreen's from the next handshake;
    /// returns the one it replaces.
    pub fn swap_provided(&self, key: Option<Arc<CertifiedKey>>) -> Option<Arc<CertifiedKey>> {
        self.provided.swap(key)
    }

    /// What a client is served: Evergreen's own get the cluster's certificate.
    fn for_client(&self, evergreen_client: bool) -> Arc<CertifiedKey> {
        match self.provided.load_full() {
            Some(provided) if !evergreen_client => provided,
            _ => self.current(),
        }
    }

    /// Serves `key` from the next handshake on; returns the one it replaces.
    pub fn swap(&self, key: Arc<CertifiedKey>) -> Arc<CertifiedKey> {
        self.cluster.swap(key)
    }

    pub fn store(&self, key: Arc<CertifiedKey>) {
        self.cluster.store(key);
    }
}

/// A chain and key as the TLS layer serves them.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> anyhow::Result<CertifiedKey> {
    let signing = provider().key_provider.load_private_key(key.clone_key())?;
    Ok(CertifiedKey::new(chain, signing))
}

#[derive(Debug)]
struct Resolver(Arc<ServingCert>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let evergreen_client = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == evergreen_api::client::ALPN));
        Some(self.0.for_client(evergreen_client))
    }
}

/// Client certificates are optional, and a presented one is refused at the handshake
/// only when it is revoked: its serial is among the revoked ones in the inventory,
/// whether or not its CA may sign CRLs. Any other fault (expired, foreign, wrong usage)
/// passes the handshake so the handler can answer with a message that says exactly what
/// is wrong; handlers never trust a peer they have not authenticated.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revoked>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.revoked.is_empty() {
            return Ok(ClientCertVerified::assertion());
        }
        let serial = evergreen_pki::CertificateInfo::from_der(end_entity)
            .ok()
            .map(|info| info.serial);
        if serial.is_some_and(|s| self.revoked.contains(&s)) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub fn build_config(
    clock: Arc<dyn Clock>,
    serving: Arc<ServingCert>,
    cluster: &Cluster,
    revoked: &Revoked,
) -> anyhow::Result<rustls::ServerConfig> {
    // Every client CA generation: leaves of a retired client CA keep working until
    // renewed, and stay revocable. The names offered to clients come from these.
    let mut roots = rustls::RootCertStore::empty();
    for (ca, _) in cluster.generations(CLIENT_CA) {
        roots.add(ca.clone())?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()?;
    let verifier = ClientVerifier {
        inner,
        revoked: Arc::new(revoked.clone()),
    };
    let mut config = rustls::ServerConfig::builder_with_details(
        provider(),
        Arc::new(evergreen_api::clock::RustlsTime(clock)),
    )
    .with_safe_default_protocol_versions()?
    .with_client_cert_verifier(Arc::new(verifier))
    .with_cert_resolver(Arc::new(Resolver(serving)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
