//! Issuance profiles: what each kind of certificate must carry.
use std::fmt;
use std::str::FromStr;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use time::Duration;

use crate::certificate::Usage;
use crate::key::KeyType;

/// The kind of certificate being issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// A self-signed root: may issue CAs at any depth.
    RootCa,
    /// An intermediate or role CA. `path_len` 0 is a role CA that issues only leaves.
    IntermediateCa { path_len: u8 },
    /// A TLS server: serverAuth.
    Server,
    /// A TLS client (node, application, administrator): clientAuth.
    Client,
    /// Both ends of a connection between peers (etcd-style): serverAuth and clientAuth.
    Peer,
}

impl Profile {
    /// Validity when none is asked for: CAs 10 years, leaves 365 days.
    pub fn default_validity(self) -> Duration {
        if self.is_ca() {
            Duration::days(3650)
        } else {
            Duration::days(365)
        }
    }

    pub fn is_ca(self) -> bool {
        matches!(self, Profile::RootCa | Profile::IntermediateCa { .. })
    }

    /// Server and peer certificates are useless without a name to match.
    pub fn needs_subject_alt_names(self) -> bool {
        matches!(self, Profile::Server | Profile::Peer)
    }

    pub fn usages(self) -> &'static [Usage] {
        match self {
            Profile::RootCa | Profile::IntermediateCa { .. } => &[],
            Profile::Server => &[Usage::ServerAuth],
            Profile::Client => &[Usage::ClientAuth],
            Profile::Peer => &[Usage::ServerAuth, Usage::ClientAuth],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::RootCa => "root CA",
            Profile::IntermediateCa { .. } => "intermediate CA",
            Profile::Server => "server",
            Profile::Client => "client",
            Profile::Peer => "peer",
        }
    }

    /// Sets basic constraints, key usage and extended key usage.
    ///
    /// Leaves signed with RSA keys also get keyEncipherment (RSA key exchange in TLS 1.2);
    /// EC and Ed25519 leaves get digitalSignature only, as RFC 5480 and RFC 8410 require.
    pub(crate) fn apply(self, params: &mut CertificateParams, key_type: KeyType) {
        match self {
            Profile::RootCa => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            }
            Profile::IntermediateCa { path_len } => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
            }
            _ => params.is_ca = IsCa::ExplicitNoCa,
        }
        params.key_usages = if self.is_ca() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ]
        } else if key_type.is_rsa() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params.extended_key_usages = self
            .usages()
            .iter()
            .map(|u| match u {
                Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The leaf profiles by their command-line names: `server`, `client`, `peer`.
impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Profile::Server),
            "client" => Ok(Profile::Client),
            "peer" => Ok(Profile::Peer),
            other => Err(format!(
                "unknown profile {other:?}; use server, client or peer"
            )),
        }
    }
}
