//! What the server is told at start: its policy settings and where it keeps its files.
use std::path::PathBuf;

use evergreen_pki::Duration;
use evergreen_pki::renewal::RenewalPolicy;

/// Server settings that policy reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Validity of application client certificates (Kyma: 92 days).
    pub app_validity: Duration,
    /// Validity of node, admin and serving certificates.
    pub node_validity: Duration,
    pub renewal: RenewalPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            app_validity: Duration::days(92),
            node_validity: Duration::days(365),
            renewal: RenewalPolicy::default(),
        }
    }
}

/// Where the server keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
}

impl Paths {
    pub fn server(&self) -> PathBuf {
        self.data_dir.join("server")
    }
    pub fn token(&self) -> PathBuf {
        self.server().join("token")
    }
    pub fn node_token(&self) -> PathBuf {
        self.server().join("node-token")
    }
    pub fn db(&self) -> PathBuf {
        self.server().join("db").join("state.db")
    }
    pub fn tls(&self) -> PathBuf {
        self.server().join("tls")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.tls().join("serving.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.tls().join("serving.key")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.data_dir.join("admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.data_dir.join("admin.key")
    }
    pub fn ca_bundle(&self) -> PathBuf {
        self.data_dir.join("ca.crt")
    }
    pub fn server_url(&self) -> PathBuf {
        self.data_dir.join("server-url")
    }
}
