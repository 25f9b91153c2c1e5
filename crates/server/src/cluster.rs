//! The cluster's CA model: the role CAs by name, the current and retired generations of
//! each, the trust bundle they make, and the CRLs and revoked serials served for them.
use std::collections::BTreeMap;

use evergreen_pki::service_keys::ServiceKeys;
use evergreen_pki::{CertificateAuthority, CertificateDer, CertificateRevocationListDer, Duration};

/// The role CAs, by name: which kind of leaf each issues.
pub const SERVER_CA: &str = "server-ca";
pub const CLIENT_CA: &str = "client-ca";
pub const PEER_CA: &str = "peer-ca";
pub const ROOT_CA: &str = "root-ca";
pub use evergreen_pki::hierarchy::ROLE_CAS;

/// How long a published CRL is valid; it is re-signed when half of that has passed, and
/// at once on every revocation.
pub const CRL_VALIDITY: Duration = Duration::days(7);

/// The CRLs served, by the name of the CA that signed each.
pub type Crls = BTreeMap<String, CertificateRevocationListDer<'static>>;

/// Serials of revoked client certificates: refused at the TLS handshake, whether or not
/// their CA may sign CRLs.
pub type Revoked = std::collections::HashSet<Vec<u8>>;

/// The cluster's CAs with their keys, and the service-account key set.
#[derive(Debug)]
pub struct Cluster {
    pub root: CertificateDer<'static>,
    pub server_ca: CertificateAuthority,
    pub client_ca: CertificateAuthority,
    pub peer_ca: CertificateAuthority,
    /// CAs a rotation replaced: still trusted, so their leaves keep working until renewed,
    /// and still publishing CRLs when their key is kept.
    pub retired: Vec<RetiredCa>,
    pub service_keys: ServiceKeys,
}

/// A CA replaced by a rotation, kept under `<role>@<first 16 hex of its SHA-256>`.
#[derive(Debug)]
pub struct RetiredCa {
    pub name: String,
    /// `root-ca`, `server-ca`, `client-ca` or `peer-ca`.
    pub role: String,
    /// The CA first, then the certificates above it.
    pub bundle: Vec<CertificateDer<'static>>,
    /// The CA with its key, to sign CRLs for the leaves it issued; `None` for a root
    /// whose key was kept offline.
    pub authority: Option<CertificateAuthority>,
}

impl RetiredCa {
    /// The name a CA is kept under once replaced.
    pub fn name_for(role: &str, certificate: &CertificateDer<'_>) -> String {
        let sha = evergreen_pki::Fingerprint::of(certificate).to_string();
        format!("{role}@{}", &sha[..16])
    }
}

impl Cluster {
    pub fn ca(&self, name: &str) -> Option<&CertificateAuthority> {
        match name {
            SERVER_CA => Some(&self.server_ca),
            CLIENT_CA => Some(&self.client_ca),
            PEER_CA => Some(&self.peer_ca),
            _ => None,
        }
    }

    /// Every CA of `role` that is trusted: the current one first, then retired ones, each
    /// as (certificate, the certificates above it). Authentication walks it per request,
    /// so it allocates nothing.
    pub fn generations<'a>(
        &'a self,
        role: &'a str,
    ) -> impl Iterator<Item = (&'a CertificateDer<'static>, &'a [CertificateDer<'static>])> + 'a
    {
        let current = match self.ca(role) {
            Some(ca) => Some((ca.certificate(), ca.chain())),
            None if role == ROOT_CA => Some((&self.root, &[][..])),
            None => None,
        };
        current.into_iter().chain(
            self.retired
                .iter()
                .filter(move |r| r.role == role)
                .filter_map(|r| r.bundle.split_first()),
        )
    }

    /// This cluster after a rotation to `root` (when it changes), the `role_cas` given and
    /// `service_keys`: each replaced CA kept as a retired one, named and ordered as the
    /// datastore keeps it ([`evergreen_store::Store::rotate`]).
    pub fn rotated(
        mut self,
        root: Option<CertificateDer<'static>>,
        role_cas: Vec<(&str, CertificateAuthority)>,
        service_keys: Option<ServiceKeys>,
    ) -> Cluster {
        if let Some(root) = root {
            let old = std::mem::replace(&mut self.root, root);
            self.retired.push(RetiredCa {
                name: RetiredCa::name_for(ROOT_CA, &old),
                role: ROOT_CA.into(),
                bundle: vec![old],
                authority: None,
            });
        }
        for (role, ca) in role_cas {
            let slot = match role {
                SERVER_CA => &mut self.server_ca,
                CLIENT_CA => &mut self.client_ca,
                PEER_CA => &mut self.peer_ca,
                _ => continue,
            };
            let old = std::mem::replace(slot, ca);
            self.retired.push(RetiredCa {
                name: RetiredCa::name_for(role, old.certificate()),
                role: role.into(),
                bundle: old.bundle(),
                authority: Some(old),
            });
        }
        if let Some(keys) = service_keys {
            self.service_keys = keys;
        }
        self.retired.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }

    /// The roots clients may trust: the current root, then retired ones.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        self.generations(ROOT_CA)
            .map(|(root, _)| root.clone())
            .collect()
    }

    /// The trust bundle (what `GET /cacerts` serves): the roots, current first, then
    /// each role CA with the certificates above it, current generations before retired.
    pub fn trust_bundle(&self) -> Vec<CertificateDer<'static>> {
        let mut bundle = self.roots();
        for role in ROLE_CAS {
            for (ca, chain) in self.generations(role) {
                for cert in std::iter::once(ca).chain(chain) {
                    if !bundle.contains(cert) {
                        bundle.push(cert.clone());
                    }
                }
            }
        }
        bundle
    }
}

/// The CAs of `cluster` that may not sign CRLs, for people: relying parties get no CRL
/// from them.
pub fn without_crls(cluster: &Cluster) -> Vec<String> {
    ROLE_CAS
        .iter()
        .filter_map(|role| cluster.ca(role))
        .filter(|ca| !ca.info().can_sign_crls)
        .map(|ca| {
            format!(
                "{} may not sign CRLs (its key usage lacks cRLSign): Evergreen refuses its revoked certificates itself, but relying parties get no CRL from it",
                ca.info().subject
            )
        })
        .collect()
}
