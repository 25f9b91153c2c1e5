//! The cluster's CA hierarchy: a root CA and, under it, one role CA per kind of leaf.
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::authority::CertificateAuthority;
use crate::key::{KeyType, PrivateKey};
use crate::name::DistinguishedName;

/// The role CAs, by name: `server-ca` issues serving certificates, `client-ca` node,
/// application and admin client certificates, `peer-ca` peer (server and client)
/// certificates.
pub const ROLE_CAS: [&str; 3] = ["server-ca", "client-ca", "peer-ca"];

/// A root CA and the three role CAs under it (path length 0: they issue leaves only).
#[derive(Debug)]
pub struct Hierarchy {
    pub root: CertificateAuthority,
    pub server: CertificateAuthority,
    pub client: CertificateAuthority,
    pub peer: CertificateAuthority,
}

impl Hierarchy {
    /// Makes a new hierarchy with fresh keys of `key_type`, every CA valid for
    /// `validity`. CAs are named `<prefix>-<ca>@<unix time>` (as k3s names its CAs), so
    /// successive generations are told apart.
    pub fn generate(
        prefix: &str,
        key_type: KeyType,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, Error> {
        let stamp = now.unix_timestamp();
        let name = |ca: &str| DistinguishedName::common_name(format!("{prefix}-{ca}@{stamp}"));
        let root = CertificateAuthority::new_root(
            name("root-ca"),
            PrivateKey::generate(key_type)?,
            validity,
            now,
        )?;
        let role = |ca: &str| {
            root.new_intermediate(name(ca), PrivateKey::generate(key_type)?, 0, validity, now)
        };
        Ok(Hierarchy {
            server: role(ROLE_CAS[0])?,
            client: role(ROLE_CAS[1])?,
            peer: role(ROLE_CAS[2])?,
            root,
        })
    }

    /// The role CAs with their names, in the order of [`ROLE_CAS`].
    pub fn roles(&self) -> [(&'static str, &CertificateAuthority); 3] {
        [
            (ROLE_CAS[0], &self.server),
            (ROLE_CAS[1], &self.client),
            (ROLE_CAS[2], &self.peer),
        ]
    }

    /// The root as the one trust anchor.
    pub fn root_der(&self) -> Vec<CertificateDer<'static>> {
        vec![self.root.certificate().clone()]
    }
}
