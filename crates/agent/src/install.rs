//! Installing a credential so that a key and its certificate never mismatch on disk.
//!
//! [`CredentialSink`] is where a credential goes: [`FileLayout`], [`FilePaths`] or
//! [`Memory`]; the agent decides what to install and asks the sink what is installed.
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
use evergreen_pki::{CertificateDer, PrivateKey, pem};

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

/// Where a credential is installed: the agent's one seam to where credentials live.
///
/// Every implementation installs all of a credential or, when it fails, leaves what was
/// installed before; it reads back only a certificate installed with its matching key.
pub trait CredentialSink: std::fmt::Debug + Send + Sync {
    /// Installs `credential`, replacing what is installed.
    fn install(&self, credential: &Credential) -> Result<()>;
    /// The chain installed now, leaf first, when its key is installed with it.
    fn installed_chain(&self) -> Option<Vec<CertificateDer<'static>>>;
    /// Removes what [`CredentialSink::install`] wrote; nothing installed is no error.
    fn remove(&self) -> Result<()>;

    /// The fingerprint of the certificate installed now.
    fn installed(&self) -> Option<Fingerprint> {
        self.installed_chain()
            .map(|chain| Fingerprint::of(&chain[0]))
    }

    /// The certificate installed now.
    fn installed_leaf(&self) -> Option<CertificateDer<'static>> {
        self.installed_chain()?.into_iter().next()
    }
}

/// How installed files are owned: the certificate's and CA's mode, and the owner of all
/// three (the key is always 0600).
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    pub public_mode: u32,
    pub owner: Option<(u32, u32)>,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            public_mode: PUBLIC_MODE,
            owner: None,
        }
    }
}

impl Ownership {
    pub fn for_config(config: &CertificateConfig) -> Result<Self> {
        Ok(Ownership {
            public_mode: config
                .mode
                .as_deref()
                .map(parse_mode)
                .transpose()?
                .unwrap_or(PUBLIC_MODE),
            owner: config.owner.as_deref().map(parse_owner).transpose()?,
        })
    }
}

/// The default layout: `DIR/tls.crt`, `DIR/tls.key`, `DIR/ca.crt` as links into one
/// versioned directory, all three switched by one rename.
#[derive(Debug, Clone)]
pub struct FileLayout {
    pub dir: PathBuf,
    pub ownership: Ownership,
}

impl FileLayout {
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// Three paths a configuration gives, each replaced atomically, the key first.
#[derive(Debug, Clone)]
pub struct FilePaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub ownership: Ownership,
}

/// Credentials kept in memory: for a program that embeds the agent and hands them to its
/// own TLS stack, and for checking the agent's decisions without files.
#[derive(Debug, Default)]
pub struct Memory {
    installed: std::sync::Mutex<Option<Credential>>,
}

/// Where the credential `config` describes goes: its three paths when it gives all of
/// them, else the default layout in `default_dir`.
pub fn sink_for(
    default_dir: PathBuf,
    config: &CertificateConfig,
) -> Result<Box<dyn CredentialSink>> {
    let ownership = Ownership::for_config(config)?;
    Ok(match (&config.cert, &config.key, &config.ca) {
        (Some(cert), Some(key), Some(ca)) => Box::new(FilePaths {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            ownership,
        }),
        _ => Box::new(FileLayout {
            dir: default_dir,
            ownership,
        }),
    })
}

/// The chain at `cert` when the key at `key` matches its first certificate.
fn matching_pair(cert: &Path, key: &Path) -> Option<Vec<CertificateDer<'static>>> {
    let chain = pem::parse_certificates("", &fs::read(cert).ok()?).ok()?;
    let key = PrivateKey::from_pem("", &fs::read(key).ok()?).ok()?;
    key.matches_certificate(chain.first()?)
        .ok()?
        .then_some(chain)
}

/// Removes `path`; a missing one is no error.
fn remove_path(result: std::io::Result<()>, path: &Path) -> Result<()> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("cannot remove {}", path.display())))
        }
        _ => Ok(()),
    }
}

impl CredentialSink for FileLayout {
    fn install(&self, credential: &Credential) -> Result<()> {
        install_layout(&self.dir, credential, self.ownership)
    }

    fn installed_chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        matching_pair(&self.cert_path(), &self.key_path())
    }

    fn remove(&self) -> Result<()> {
        remove_path(fs::remove_dir_all(&self.dir), &self.dir)
    }
}

impl CredentialSink for FilePaths {
    fn install(&self, credential: &Credential) -> Result<()> {
        for (path, text, mode) in [
            (&self.key, &credential.key_pem, KEY_MODE),
            (
                &self.cert,
                &credential.chain_pem,
                self.ownership.public_mode,
            ),
            (&self.ca, &credential.ca_pem, self.ownership.public_mode),
        ] {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            files::replace(path, text.as_bytes(), mode)?;
            chown(path, self.ownership.owner)?;
        }
        Ok(())
    }

    fn installed_chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        matching_pair(&self.cert, &self.key)
    }

    fn remove(&self) -> Result<()> {
        for path in [&self.key, &self.cert, &self.ca] {
            remove_path(fs::remove_file(path), path)?;
        }
        Ok(())
    }
}

impl CredentialSink for Memory {
    fn install(&self, credential: &Credential) -> Result<()> {
        *self.installed.lock().unwrap_or_else(|e| e.into_inner()) = Some(credential.clone());
        Ok(())
    }

    fn installed_chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        let installed = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        pem::parse_certificates("", installed.as_ref()?.chain_pem.as_bytes()).ok()
    }

    fn remove(&self) -> Result<()> {
        *self.installed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot chown {}", path.display()))?;
    }
    Ok(())
}

fn install_layout(dir: &Path, credential: &Credential, ownership: Ownership) -> Result<()> {
    let Ownership { public_mode, owner } = ownership;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, made by the openssl command.
    fn credential(dir: &Path, name: &str) -> Credential {
        let dir = dir.join(name);
        fs::create_dir(&dir).unwrap();
        let (key, cert) =
            evergreen_test_util::Openssl::find().self_signed(&dir, &format!("/CN={name}"), 30, &[]);
        let text = |p: &Path| fs::read_to_string(p).unwrap();
        Credential::new(text(&cert), text(&key), text(&cert)).unwrap()
    }

    /// Every sink keeps the same contract: nothing read back before an install, exactly the
    /// credential installed last, nothing after a removal (twice is no error).
    #[test]
    fn every_sink_installs_replaces_and_removes_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let first = credential(dir.path(), "first");
        let second = credential(dir.path(), "second");
        let mismatched = Credential::new(
            first.chain_pem.clone(),
            second.key_pem.clone(),
            first.ca_pem.clone(),
        );
        assert!(
            mismatched.is_err(),
            "a key of another certificate is refused before any write"
        );
        let sinks: Vec<Box<dyn CredentialSink>> = vec![
            Box::new(FileLayout {
                dir: dir.path().join("layout"),
                ownership: Ownership::default(),
            }),
            Box::new(FilePaths {
                cert: dir.path().join("paths/tls.crt"),
                key: dir.path().join("paths/private/tls.key"),
                ca: dir.path().join("paths/ca.crt"),
                ownership: Ownership::default(),
            }),
            Box::new(Memory::default()),
        ];
        for sink in &sinks {
            assert_eq!(sink.installed(), None, "{sink:?}");
            sink.install(&first).unwrap();
            assert_eq!(sink.installed(), Some(first.fingerprint), "{sink:?}");
            sink.install(&second).unwrap();
            assert_eq!(sink.installed(), Some(second.fingerprint), "{sink:?}");
            let leaf = sink.installed_leaf().unwrap();
            assert_eq!(Fingerprint::of(&leaf), second.fingerprint);
            sink.remove().unwrap();
            assert_eq!(sink.installed(), None, "{sink:?}");
            sink.remove().unwrap();
        }
        // On disk, keys are never readable by others.
        let layout = FileLayout {
            dir: dir.path().join("layout"),
            ownership: Ownership::default(),
        };
        layout.install(&first).unwrap();
        let mode = fs::metadata(layout.key_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, KEY_MODE);
    }
}
