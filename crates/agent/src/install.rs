//! Installing a credential so that a key and its certificate never mismatch on disk.
//!
//! The default layout, `DIR/tls.crt`, `DIR/tls.key`, `DIR/ca.crt`, is made of symbolic
//! links into `DIR/..data`, itself a link to a versioned directory (the layout Kubernetes
//! uses for secret volumes). A new version is written to a fresh directory, flushed, and
//! made current by renaming one link: all three files change in one step, and a crash at
//! any moment leaves either the old set or the new one. Files at paths a configuration
//! gives are replaced one by one (key first), each atomically.
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};
use evergreen_pki::certificate::{CertificateInfo, Fingerprint};
use evergreen_pki::{PrivateKey, pem};

use crate::config::{CertificateConfig, parse_mode, parse_owner};

/// A credential ready to install: PEM texts, checked to belong together.
#[derive(Debug, Clone)]
pub struct Credential {
    pub chain_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub fingerprint: Fingerprint,
}

impl Credential {
    /// Checks that the key matches the first certificate before anything is written.
    pub fn new(chain_pem: String, key_pem: String, ca_pem: String) -> Result<Self> {
        let chain = pem::parse_certificates("certificate", chain_pem.as_bytes())?;
        let key = PrivateKey::from_pem("key", key_pem.as_bytes())?;
        if !key.matches_certificate(&chain[0])? {
            bail!("the key does not match the certificate; nothing installed");
        }
        Ok(Credential {
            fingerprint: Fingerprint::of(&chain[0]),
            chain_pem,
            key_pem,
            ca_pem,
        })
    }
}

/// Where one credential goes: the default layout in a directory, or three given paths.
#[derive(Debug, Clone)]
pub enum Target {
    Layout(PathBuf),
    Paths {
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    },
}

impl Target {
    pub fn for_config(default_dir: PathBuf, config: &CertificateConfig) -> Self {
        match (&config.cert, &config.key, &config.ca) {
            (Some(cert), Some(key), Some(ca)) => Target::Paths {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            },
            _ => Target::Layout(default_dir),
        }
    }

    pub fn cert_path(&self) -> PathBuf {
        match self {
            Target::Layout(dir) => dir.join("tls.crt"),
            Target::Paths { cert, .. } => cert.clone(),
        }
    }

    pub fn key_path(&self) -> PathBuf {
        match self {
            Target::Layout(dir) => dir.join("tls.key"),
            Target::Paths { key, .. } => key.clone(),
        }
    }

    /// The fingerprint of the certificate installed now, if a matching pair is there.
    pub fn installed(&self) -> Option<Fingerprint> {
        let chain = pem::parse_certificates("", &fs::read(self.cert_path()).ok()?).ok()?;
        let key = PrivateKey::from_pem("", &fs::read(self.key_path()).ok()?).ok()?;
        key.matches_certificate(&chain[0])
            .ok()?
            .then(|| Fingerprint::of(&chain[0]))
    }
}

/// Installs `credential` at `target` with the config's modes and owner.
pub fn install(target: &Target, credential: &Credential, config: &CertificateConfig) -> Result<()> {
    let public_mode = config
        .mode
        .as_deref()
        .map(parse_mode)
        .transpose()?
        .unwrap_or(PUBLIC_MODE);
    let owner = config.owner.as_deref().map(parse_owner).transpose()?;
    match target {
        Target::Layout(dir) => install_layout(dir, credential, public_mode, owner),
        Target::Paths { cert, key, ca } => {
            for (path, text, mode) in [
                (key, &credential.key_pem, KEY_MODE),
                (cert, &credential.chain_pem, public_mode),
                (ca, &credential.ca_pem, public_mode),
            ] {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                files::replace(path, text.as_bytes(), mode)?;
                chown(path, owner)?;
            }
            Ok(())
        }
    }
}

/// Removes what [`install`] wrote at `target`: the layout directory, or the three files.
pub fn remove(target: &Target) -> Result<()> {
    let gone = |result: std::io::Result<()>, path: &Path| match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("cannot remove {}", path.display())))
        }
        _ => Ok(()),
    };
    match target {
        Target::Layout(dir) => gone(fs::remove_dir_all(dir), dir),
        Target::Paths { cert, key, ca } => {
            for path in [key, cert, ca] {
                gone(fs::remove_file(path), path)?;
            }
            Ok(())
        }
    }
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot chown {}", path.display()))?;
    }
    Ok(())
}

fn install_layout(
    dir: &Path,
    credential: &Credential,
    public_mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    files::create_private_dir(dir)?;
    let suffix = evergreen_pki::token::random_string(8)?;
    let version_dir = format!(
        "..{}-{suffix}",
        credential
            .fingerprint
            .to_string()
            .get(..12)
            .unwrap_or_default()
    );
    let staging = dir.join(format!("{version_dir}.tmp"));
    fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o755))?;
    for (name, text, mode) in [
        ("tls.key", &credential.key_pem, KEY_MODE),
        ("tls.crt", &credential.chain_pem, public_mode),
        ("ca.crt", &credential.ca_pem, public_mode),
    ] {
        let path = staging.join(name);
        files::Staged::write(&path, text.as_bytes(), mode)?.commit_new()?;
        chown(&path, owner)?;
    }
    sync(&staging)?;
    fs::rename(&staging, dir.join(&version_dir))?;
    // Switch ..data in one rename.
    let link_tmp = dir.join(format!("..data.{suffix}.tmp"));
    symlink(&version_dir, &link_tmp)?;
    fs::rename(&link_tmp, dir.join("..data"))?;
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        let link = dir.join(name);
        let wanted = PathBuf::from("..data").join(name);
        if fs::read_link(&link).ok().as_deref() != Some(wanted.as_path()) {
            let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
            symlink(&wanted, &tmp)?;
            fs::rename(&tmp, &link)?;
        }
    }
    sync(dir)?;
    // Older versions (and staging left by a crash) go; never the current one.
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old_version = name.starts_with("..") && name != "..data" && name != version_dir;
        let stale_link = name.starts_with(".") && name.ends_with(".tmp") && !name.starts_with("..");
        if old_version || stale_link {
            let path = entry.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
    Ok(())
}

fn sync(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Waits, for at most `timeout`, to see `addr` serve the certificate `expected`. A reload
/// is often asynchronous (`nginx -s reload` returns before its workers have the new
/// certificate), so the first look may still see the old one: it looks again with backoff
/// (100 ms doubling to 5 s). The error says what was seen last.
pub async fn wait_until_served(
    addr: &str,
    expected: &Fingerprint,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = crate::renew::Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    );
    loop {
        let seen = match served_fingerprint(addr).await {
            Ok(served) if served == *expected => return Ok(()),
            Ok(served) => format!("it still serves sha256:{served}"),
            Err(e) => format!("cannot check what it serves: {e:#}"),
        };
        let delay = backoff.next_delay();
        if tokio::time::Instant::now() + delay > deadline {
            return Err(format!("{seen} after {} s", timeout.as_secs()));
        }
        tokio::time::sleep(delay).await;
    }
}

/// Connects to `addr` and returns the fingerprint of the certificate it serves.
pub async fn served_fingerprint(addr: &str) -> Result<Fingerprint> {
    let client = evergreen_api::client::Client::unauthenticated(&format!("https://{addr}"))?;
    let chain = client.peer_certificates().await?;
    Ok(CertificateInfo::from_der(&chain[0])?.fingerprint)
}
