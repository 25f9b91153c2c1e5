//! The peer: `cfssl serve` on 127.0.0.1 with a P-256 CA made by `cfssl gencert -initca`,
//! behind mutual TLS like Evergreen, signing CSRs at `/api/v1/cfssl/sign`.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use evergreen_api::client::Client;
use evergreen_pki::authority::{CertificateAuthority, IssueRequest};
use evergreen_pki::key::KeyType;
use evergreen_pki::{DistinguishedName, Duration as Validity, PrivateKey, Profile, pem};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::load::{Identity, now, wall_time};
use crate::process::{Guarded, Proc, on_path};

/// The signing profile: Evergreen's application certificates (92 days, client auth).
const CONFIG: &str =
    r#"{"signing":{"default":{"expiry":"2208h","usages":["digital signature","client auth"]}}}"#;

#[derive(Debug)]
pub struct Cfssl {
    process: Guarded,
    url: String,
    /// What the TLS connection trusts (the bench's TLS CA).
    tls_roots: Vec<CertificateDer<'static>>,
    /// The CA cfssl signs with.
    pub signing_root: CertificateDer<'static>,
    identities: Vec<Identity>,
}

#[derive(Deserialize)]
struct InitCa {
    cert: String,
    key: String,
}

#[derive(Deserialize)]
struct SignResponse {
    success: bool,
    #[serde(default)]
    result: Option<SignResult>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct SignResult {
    certificate: String,
}

impl Cfssl {
    /// Makes the CA and the TLS credentials in `dir` and starts `cfssl serve` with one
    /// client identity per connection.
    pub async fn start(dir: &Path, connections: usize) -> Result<Self> {
        if !on_path("cfssl") {
            bail!(
                "--vs cfssl needs the cfssl command on PATH (Debian: apt-get install golang-cfssl)"
            );
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("ca-csr.json"),
            r#"{"CN":"Evergreen bench cfssl CA","key":{"algo":"ecdsa","size":256},"names":[{"O":"evergreen-bench"}]}"#,
        )?;
        let out = Command::new("cfssl")
            .current_dir(dir)
            .args(["gencert", "-initca", "ca-csr.json"])
            .output()
            .context("running cfssl gencert -initca")?;
        if !out.status.success() {
            bail!(
                "cfssl gencert -initca failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ca: InitCa = serde_json::from_slice(&out.stdout).context("reading cfssl's CA")?;
        let signing_root = pem::parse_certificates("cfssl CA", ca.cert.as_bytes())?
            .into_iter()
            .next()
            .context("cfssl made no CA certificate")?;
        evergreen_api::files::replace(&dir.join("ca.pem"), ca.cert.as_bytes(), 0o644)?;
        evergreen_api::files::replace(&dir.join("ca-key.pem"), ca.key.as_bytes(), 0o600)?;
        std::fs::write(dir.join("config.json"), CONFIG)?;

        // TLS for cfssl's listener, and client certificates it requires (mutual TLS).
        let at = wall_time();
        let tls_ca = CertificateAuthority::new_root(
            DistinguishedName::common_name("Evergreen bench TLS CA"),
            PrivateKey::generate(KeyType::EcP256)?,
            Validity::days(2),
            at,
        )?;
        let issue = |subject: &str, sans: Vec<_>, profile| -> Result<Identity> {
            let key = PrivateKey::generate(KeyType::EcP256)?;
            let issued = tls_ca.issue(
                &IssueRequest {
                    subject: DistinguishedName::common_name(subject),
                    subject_alt_names: sans,
                    public_key: key.public_key(),
                    profile,
                    validity: Validity::days(1),
                },
                at,
            )?;
            Ok(Identity {
                chain: vec![issued.der],
                key,
            })
        };
        let listener = issue(
            "127.0.0.1",
            vec!["127.0.0.1".parse().map_err(anyhow::Error::msg)?],
            Profile::Server,
        )?;
        evergreen_api::files::replace(
            &dir.join("tls.crt"),
            pem::encode_certificates(&listener.chain).as_bytes(),
            0o644,
        )?;
        evergreen_api::files::replace(
            &dir.join("tls.key"),
            listener.key.to_pem().as_bytes(),
            0o600,
        )?;
        std::fs::write(dir.join("mtls-ca.pem"), tls_ca.bundle_pem())?;
        let identities = (0..connections)
            .map(|i| issue(&format!("bench-cfssl-{i}"), Vec::new(), Profile::Client))
            .collect::<Result<Vec<_>>>()?;

        let port = free_port()?;
        let mut command = Command::new("cfssl");
        command.current_dir(dir).args([
            "serve",
            "-address",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-ca",
            "ca.pem",
            "-ca-key",
            "ca-key.pem",
            "-config",
            "config.json",
            "-tls-cert",
            "tls.crt",
            "-tls-key",
            "tls.key",
            "-mutual-tls-ca",
            "mtls-ca.pem",
            "-loglevel",
            "4",
        ]);
        let process = Guarded::spawn("cfssl serve", command, dir.join("cfssl.log"))?;
        let mut cfssl = Cfssl {
            process,
            url: format!("https://127.0.0.1:{port}"),
            tls_roots: vec![tls_ca.certificate().clone()],
            signing_root,
            identities,
        };
        let started = now();
        while cfssl.client(0)?.peer_certificates().await.is_err() {
            cfssl.process.still_running()?;
            if started.elapsed() > Duration::from_secs(30) {
                bail!("cfssl serve did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(cfssl)
    }

    pub fn proc(&self) -> Proc {
        self.process.proc()
    }

    /// A client for connection `i`, with that connection's certificate.
    pub fn client(&self, i: usize) -> Result<Client> {
        self.identities[i].client(&self.url, &self.tls_roots)
    }

    /// The request body for one CSR (PEM).
    pub fn body(csr_pem: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "certificate_request": csr_pem }))
            .unwrap_or_default()
    }

    /// The certificate in one answer.
    pub fn certificate(answer: &[u8]) -> Result<CertificateDer<'static>> {
        let response: SignResponse =
            serde_json::from_slice(answer).context("reading cfssl's answer")?;
        match (response.success, response.result) {
            (true, Some(result)) => {
                pem::parse_certificates("cfssl certificate", result.certificate.as_bytes())?
                    .into_iter()
                    .next()
                    .context("cfssl answered without a certificate")
            }
            _ => bail!("cfssl refused: {:?}", response.errors),
        }
    }

    pub async fn stop(self) -> Result<()> {
        self.process.stop().await
    }
}

/// A port on 127.0.0.1 that was free a moment ago (cfssl takes a port number, not 0).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
