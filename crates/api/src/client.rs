//! A small HTTPS client for Evergreen's API: trusts only the roots it is given, presents a
//! client certificate when it has one, one connection per request.
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::ErrorBody;

/// How long a TCP connection and TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one request may take once connected: longer than the longest the server
/// holds a watch (60 s), so an idle long-poll is answered, not cut off.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// The ALPN protocol Evergreen's own clients (agents, the CLI) offer, alongside
/// `http/1.1`: it asks for the cluster's serving certificate.
pub const ALPN: &[u8] = b"evergreen/1";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("request to {addr} failed: {reason}")]
    Http { addr: String, reason: String },
    #[error("{addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    /// The server answered with an error status.
    #[error("server refused ({code}): {error}")]
    Status { code: u16, error: String },
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct Client {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Accepts any server certificate (signatures in the handshake are still checked). See
/// [`Client::unauthenticated`].
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Splits `https://host[:port]` (default port 9443; IPv6 in brackets).
pub fn parse_url(url: &str) -> Result<(String, u16), ClientError> {
    let bad = |reason: &str| ClientError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("it must start with https:// (Evergreen speaks TLS only)"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        (host.to_owned(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 9443,
        Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
    };
    Ok((host, port))
}

impl Client {
    /// A client for `url` that trusts `roots` only and presents `identity` (certificate
    /// chain and key) when given.
    pub fn new(
        url: &str,
        roots: &[CertificateDer<'static>],
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, ClientError> {
        Self::with_clock(url, roots, identity, Arc::new(crate::SystemClock))
    }

    /// As [`Client::new`], judging the server certificate's validity at `clock`'s time.
    pub fn with_clock(
        url: &str,
        roots: &[CertificateDer<'static>],
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        clock: Arc<dyn crate::Clock>,
    ) -> Result<Self, ClientError> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root.clone()).map_err(|e| {
                ClientError::Config(format!("a CA certificate cannot be trusted: {e}"))
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_details(
            provider,
            Arc::new(crate::clock::RustlsTime(clock)),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .with_root_certificates(store);
        let config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                ClientError::Config(format!("the client certificate cannot be used: {e}"))
            })?,
            None => builder.with_no_client_auth(),
        };
        Self::from_config(url, config)
    }

    /// A client that does not authenticate the server. Only for fetching `/cacerts`
    /// before the cluster's CA is known: the caller must check the bundle against the
    /// join token's pinned root hash before trusting it or sending anything secret.
    pub fn unauthenticated(url: &str) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        Self::from_config(url, config)
    }

    fn from_config(url: &str, mut config: rustls::ClientConfig) -> Result<Self, ClientError> {
        // Says "an Evergreen client": the server answers with the cluster's serving
        // certificate, the one this client pins, even when the API listener serves a
        // certificate of the company's CA to everyone else.
        config.alpn_protocols = vec![ALPN.to_vec(), b"http/1.1".to_vec()];
        let (host, port) = parse_url(url)?;
        let server_name = ServerName::try_from(host.clone()).map_err(|_| ClientError::Url {
            url: url.to_owned(),
            reason: "the host is not a valid DNS name or IP address".into(),
        })?;
        Ok(Client {
            host,
            port,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a TLS connection and returns the certificate chain the server presents: proof
    /// of which certificate is being served now.
    pub async fn peer_certificates(&self) -> Result<Vec<CertificateDer<'static>>, ClientError> {
        let addr = self.addr();
        let tls = self.connect().await?;
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        if chain.is_empty() {
            return Err(ClientError::Handshake {
                addr,
                reason: "the server presented no certificate".into(),
            });
        }
        Ok(chain.iter().map(|c| c.clone().into_owned()).collect())
    }

    /// A TCP connection and TLS handshake, within [`CONNECT_TIMEOUT`]: every way of
    /// talking to the server starts here, so none of them can hang on a peer that accepts
    /// the connection and then says nothing.
    async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let addr = self.addr();
        let timeout = ClientError::Timeout {
            addr: addr.clone(),
            secs: CONNECT_TIMEOUT.as_secs(),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner(addr))
            .await
            .map_err(|_| timeout)?
    }

    async fn connect_inner(
        &self,
        addr: String,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Connect {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        // Small requests must not wait for Nagle's algorithm (about 40 ms each).
        let _ = tcp.set_nodelay(true);
        self.connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| ClientError::Handshake {
                addr,
                reason: e.to_string(),
            })
    }

    /// Sends one request on a new connection; any status is returned as a [`Response`].
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        self.session().await?.send(method, path, body).await
    }

    /// Opens one connection for several requests (HTTP/1.1 keep-alive): what a caller
    /// making many requests uses, so it pays for one TLS handshake, not one each.
    pub async fn session(&self) -> Result<Session, ClientError> {
        let addr = self.addr();
        let tls = self.connect().await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| http_error(&addr, e))?;
        tokio::spawn(connection);
        Ok(Session { sender, addr })
    }

    /// Sends a request with a JSON body (or none) and decodes a JSON answer; an error
    /// status becomes [`ClientError::Status`] with the server's message.
    pub async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.session().await?.json(method, path, body).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json::<(), T>("GET", path, None).await
    }
}

/// One kept-alive connection to the server.
pub struct Session {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn http_error(addr: &str, e: hyper::Error) -> ClientError {
    ClientError::Http {
        addr: addr.to_owned(),
        reason: match std::error::Error::source(&e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl Session {
    /// Sends one request on this connection; any status is returned as a [`Response`].
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let addr = self.addr.clone();
        let timeout = ClientError::Timeout {
            addr: addr.clone(),
            secs: REQUEST_TIMEOUT.as_secs(),
        };
        tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(method, path, body))
            .await
            .map_err(|_| timeout)?
    }

    async fn send_inner(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let addr = self.addr.clone();
        self.sender
            .ready()
            .await
            .map_err(|e| http_error(&addr, e))?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.as_str());
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| http_error(&addr, e))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http_error(&addr, e))?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            content_type,
            body,
        })
    }

    /// As [`Client::json`], on this connection.
    pub async fn json<B: Serialize, T: DeserializeOwned>(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let response = self.send(method, path, body).await?;
        check(&response)?;
        serde_json::from_slice(&response.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// Turns an error status into [`ClientError::Status`].
pub fn check(response: &Response) -> Result<(), ClientError> {
    if (200..300).contains(&response.status) {
        return Ok(());
    }
    let error = serde_json::from_slice::<ErrorBody>(&response.body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&response.body).into_owned());
    Err(ClientError::Status {
        code: response.status,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            parse_url("https://evergreen.local").unwrap(),
            ("evergreen.local".into(), 9443)
        );
        assert_eq!(parse_url("https://[::1]:1/x").unwrap(), ("::1".into(), 1));
        assert!(
            parse_url("http://a")
                .unwrap_err()
                .to_string()
                .contains("https://")
        );
        assert!(parse_url("https://a:b").is_err());
    }
}
