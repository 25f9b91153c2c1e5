//! How the CLI reaches the server: on the server host it finds the URL, the trust bundle
//! and the admin credential in the data dir; elsewhere `--server`, `--ca`, `--cert` and
//! `--key` say.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use evergreen_api::client::Client;
use evergreen_api::files;
use evergreen_pki::{PrivateKey, pem};

/// The data dir when none is given: `EVERGREEN_DATA_DIR`, else `/var/lib/evergreen` for
/// root and `~/.local/share/evergreen` for anyone else.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("EVERGREEN_DATA_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => state_dir("evergreen"),
    }
}

/// `/var/lib/NAME` for root, `~/.local/share/NAME` for anyone else.
pub fn state_dir(name: &str) -> PathBuf {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false);
    match std::env::var_os("HOME") {
        Some(home) if !is_root => PathBuf::from(home).join(".local/share").join(name),
        _ => PathBuf::from("/var/lib").join(name),
    }
}

#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Server URL (https://HOST:PORT). Default: the URL the server wrote to its data dir.
    #[arg(long, value_name = "URL", env = "EVERGREEN_SERVER")]
    pub server: Option<String>,
    /// Client certificate (with its chain). Default: admin.crt in the data dir.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Key of the client certificate. Default: admin.key in the data dir.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CA bundle to trust for the server. Default: ca.crt in the data dir.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The server's data dir, where the defaults above are found.
    #[arg(long, value_name = "DIR", env = "EVERGREEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl Connection {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    fn pick(&self, given: &Option<PathBuf>, file: &str, flag: &str) -> Result<PathBuf> {
        if let Some(path) = given {
            return Ok(path.clone());
        }
        let path = self.data_dir().join(file);
        if !path.exists() {
            bail!(
                "no {flag} given and {} does not exist; pass {flag} FILE, or run this on the server host (or --data-dir DIR)",
                path.display()
            );
        }
        Ok(path)
    }

    pub fn url(&self) -> Result<String> {
        if let Some(url) = &self.server {
            return Ok(url.clone());
        }
        let path = self.data_dir().join("server-url");
        let url = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --server given and {} cannot be read; pass --server https://HOST:PORT, or run this on the server host",
                path.display()
            )
        })?;
        Ok(url.trim().to_owned())
    }

    /// A client presenting the admin credential (or `--cert`/`--key`).
    pub fn client(&self) -> Result<Client> {
        self.client_flagged("--cert", "--key")
    }

    /// As [`Connection::client`], naming the credential's flags as the command calls them.
    fn client_flagged(&self, cert_flag: &str, key_flag: &str) -> Result<Client> {
        let cert = self.pick(&self.cert, "admin.crt", cert_flag)?;
        let key = self.pick(&self.key, "admin.key", key_flag)?;
        self.client_with(&cert, &key)
    }

    /// The CA bundle that verifies the server: `--ca`, else `ca.crt` in the data dir.
    pub fn ca_path(&self) -> Result<PathBuf> {
        self.pick(&self.ca, "ca.crt", "--ca")
    }

    /// A client presenting the given certificate and key.
    pub fn client_with(&self, cert: &Path, key: &Path) -> Result<Client> {
        let ca = self.ca_path()?;
        let roots = pem::parse_certificates(&ca.display().to_string(), &files::read_input(&ca)?)?;
        let chain =
            pem::parse_certificates(&cert.display().to_string(), &files::read_input(cert)?)?;
        let key_path = key;
        let key = PrivateKey::from_pem(
            &key_path.display().to_string(),
            &files::read_input(key_path)?,
        )?;
        if !key.matches_certificate(&chain[0])? {
            bail!(
                "{} does not match the certificate in {}",
                key_path.display(),
                cert.display()
            );
        }
        Ok(Client::new(
            &self.url()?,
            &roots,
            Some((chain, key.der().clone_key())),
        )?)
    }
}

/// The connection options of commands whose own `--cert`/`--key` name something else
/// (`certificate set`, `certificate revoke`): the admin credential is `--admin-cert` and
/// `--admin-key`.
#[derive(Debug, Clone, Args)]
pub struct AdminConnection {
    /// Server URL (https://HOST:PORT). Default: the URL the server wrote to its data dir.
    #[arg(long, value_name = "URL", env = "EVERGREEN_SERVER")]
    pub server: Option<String>,
    /// Admin certificate. Default: admin.crt in the data dir.
    #[arg(long, value_name = "FILE")]
    pub admin_cert: Option<PathBuf>,
    /// Key of the admin certificate. Default: admin.key in the data dir.
    #[arg(long, value_name = "FILE")]
    pub admin_key: Option<PathBuf>,
    /// CA bundle to trust for the server. Default: ca.crt in the data dir.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The server's data dir, where the defaults above are found.
    #[arg(long, value_name = "DIR", env = "EVERGREEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl AdminConnection {
    pub fn client(&self) -> Result<Client> {
        Connection {
            server: self.server.clone(),
            cert: self.admin_cert.clone(),
            key: self.admin_key.clone(),
            ca: self.ca.clone(),
            data_dir: self.data_dir.clone(),
        }
        .client_flagged("--admin-cert", "--admin-key")
    }
}
