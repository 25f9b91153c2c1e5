//! The agent's configuration file (TOML): per certificate name, where it goes and what
//! runs after it changes.
//!
//! ```toml
//! [[certificate]]
//! name = "proxy"
//! cert = "/etc/proxy/tls.crt"
//! key = "/etc/proxy/tls.key"
//! ca = "/etc/proxy/ca.crt"
//! reload = "systemctl reload proxy"
//! verify = "127.0.0.1:8443"     # optional: confirm the service serves the new certificate
//! verify_timeout = "30s"        # optional: how long to keep looking (default 30 s)
//! mode = "0640"                 # optional: certificate and CA file mode (the key is 0600)
//! owner = "proxy:proxy"         # optional: user:group of the files (names or numbers)
//! ```
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<CertificateConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub name: String,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    /// Shell command run after each change.
    pub reload: Option<String>,
    /// `HOST:PORT` to connect to after the reload, to confirm the new certificate is served.
    pub verify: Option<String>,
    /// How long to keep looking for the new certificate at `verify` (`30s`, `2m`; default
    /// 30 s).
    pub verify_timeout: Option<String>,
    /// Octal mode of the certificate and CA files.
    pub mode: Option<String>,
    /// `user:group` of all three files.
    pub owner: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parses and checks a configuration's text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).context("not a valid agent configuration")?;
        for c in &config.certificates {
            let custom = [c.cert.is_some(), c.key.is_some(), c.ca.is_some()];
            if custom.iter().any(|x| *x) && !custom.iter().all(|x| *x) {
                bail!(
                    "certificate {:?} gives some of cert, key and ca; give all three or none",
                    c.name
                );
            }
            if let Some(timeout) = &c.verify_timeout {
                evergreen_api::duration::parse(timeout)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("certificate {:?}: verify_timeout", c.name))?;
            }
            if let Some(mode) = &c.mode {
                parse_mode(mode).with_context(|| format!("certificate {:?}", c.name))?;
            }
            if let Some(owner) = &c.owner {
                parse_owner(owner).with_context(|| format!("certificate {:?}", c.name))?;
            }
        }
        Ok(config)
    }

    pub fn for_name(&self, name: &str) -> CertificateConfig {
        self.certificates
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| CertificateConfig {
                name: name.to_owned(),
                ..CertificateConfig::default()
            })
    }
}

impl CertificateConfig {
    /// How long to look for the new certificate at `verify`.
    pub fn verify_timeout(&self) -> std::time::Duration {
        self.verify_timeout
            .as_deref()
            .and_then(|t| evergreen_api::duration::parse(t).ok())
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .unwrap_or(std::time::Duration::from_secs(30))
    }
}

pub fn parse_mode(mode: &str) -> Result<u32> {
    let value = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
        .with_context(|| format!("mode {mode:?} is not octal"))?;
    if value > 0o777 {
        bail!("mode {mode:?} is larger than 0777");
    }
    Ok(value)
}

/// `user:group` to numeric ids, by name from /etc/passwd and /etc/group or as numbers.
pub fn parse_owner(owner: &str) -> Result<(u32, u32)> {
    let (user, group) = owner
        .split_once(':')
        .with_context(|| format!("owner {owner:?} must be user:group"))?;
    let lookup = |file: &str, name: &str| -> Result<u32> {
        if let Ok(id) = name.parse() {
            return Ok(id);
        }
        let text = std::fs::read_to_string(file)?;
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let n = f.next()?;
                let id = f.nth(1)?.parse().ok()?;
                (n == name).then_some(id)
            })
            .next()
            .with_context(|| format!("no {name:?} in {file}"))
    };
    Ok((lookup("/etc/passwd", user)?, lookup("/etc/group", group)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_that_names_no_one_is_refused_when_the_file_is_read() {
        let refused = Config::from_toml(
            "[[certificate]]\nname = \"proxy\"\nowner = \"no-such-user-here:root\"\n",
        )
        .unwrap_err();
        let message = format!("{refused:#}");
        assert!(message.contains("certificate \"proxy\""), "{message}");
        assert!(
            message.contains("no \"no-such-user-here\" in /etc/passwd"),
            "{message}"
        );
        let accepted =
            Config::from_toml("[[certificate]]\nname = \"proxy\"\nowner = \"0:0\"\n").unwrap();
        assert_eq!(accepted.for_name("proxy").owner.as_deref(), Some("0:0"));
    }
}
