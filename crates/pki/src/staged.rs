//! A staged CA directory: the CA files an operator prepares for a first start or for a
//! rotation (k3s's `rotate-ca --path`).
//!
//! Two layouts are read. `evergreen ca generate` writes `root-ca.crt`, `server-ca.crt`,
//! `client-ca.crt`, `peer-ca.crt` (each the CA followed by the certificates above it) with
//! their `.key` files, and `service.key`. k3s's `contrib/util/generate-custom-ca-certs.sh`
//! writes `root-ca.pem`, `intermediate-ca.pem`, each role CA as `<role>-ca.pem` (the CA
//! alone) and `<role>-ca.crt` (with the intermediate and the root), the peer CA as
//! `etcd/peer-ca.*`, and CAs Evergreen has no role for (`request-header-ca.*`,
//! `etcd/server-ca.*`). [`resolve`] maps either to Evergreen's file names and says what it
//! ignored and why; [`Staged::decode`] reads them.
use std::collections::BTreeMap;

use rustls_pki_types::CertificateDer;

use crate::key::PrivateKey;
use crate::service_keys::ServiceKeys;

/// Evergreen's names for the files of a staged directory.
pub const FILES: [&str; 9] = [
    "root-ca.crt",
    "root-ca.key",
    "server-ca.crt",
    "server-ca.key",
    "client-ca.crt",
    "client-ca.key",
    "peer-ca.crt",
    "peer-ca.key",
    "service.key",
];

/// The CAs of a staged directory, by Evergreen's names.
pub const CAS: [&str; 4] = ["root-ca", "server-ca", "client-ca", "peer-ca"];

/// CAs of k3s's layout that have no role in Evergreen.
const NO_ROLE: [&str; 2] = ["request-header-ca", "etcd/server-ca"];

/// Whether a file name belongs to a staged directory of either layout: what tells a
/// staged directory from its parents.
pub fn is_staged_name(name: &str) -> bool {
    FILES.contains(&name)
        || [
            "root-ca.pem",
            "intermediate-ca.pem",
            "intermediate-ca.crt",
            "server-ca.pem",
            "client-ca.pem",
            "peer-ca.pem",
            "etcd/peer-ca.crt",
            "etcd/peer-ca.pem",
            "etcd/peer-ca.key",
        ]
        .contains(&name)
}

/// A directory's files mapped to Evergreen's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// By Evergreen's name ([`FILES`]), as PEM text.
    pub files: BTreeMap<String, String>,
    /// Where each came from, when it had another name (`etcd/peer-ca.crt`).
    pub sources: BTreeMap<String, String>,
    /// Files not used, each with the reason.
    pub ignored: Vec<(String, String)>,
}

/// Maps a directory listing (relative path → contents) to Evergreen's names.
///
/// For each CA the bundle `<ca>.crt` is taken, else the CA alone (`<ca>.pem`) followed by
/// the intermediate and the root found beside it; the peer CA may be `etcd/peer-ca.*`.
/// An intermediate CA is used only to complete bundles. Every other file is listed as
/// ignored, with the reason.
pub fn resolve(listing: &BTreeMap<String, Vec<u8>>) -> Result<Resolved, String> {
    let text = |name: &str| -> Result<Option<String>, String> {
        match listing.get(name) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| format!("{name} is not text; a staged file is PEM")),
        }
    };
    let mut resolved = Resolved::default();
    let mut used: Vec<String> = Vec::new();
    let root_pem = text("root-ca.pem")?;
    let intermediate = match text("intermediate-ca.pem")? {
        Some(pem) => Some(pem),
        None => text("intermediate-ca.crt")?,
    };
    for name in ["intermediate-ca.pem", "intermediate-ca.crt"] {
        if listing.contains_key(name) {
            used.push(name.to_owned());
        }
    }
    for ca in CAS {
        let places: &[&str] = if ca == "peer-ca" {
            &["peer-ca", "etcd/peer-ca"]
        } else {
            &[ca]
        };
        for place in places {
            let (crt, pem, key) = (
                format!("{place}.crt"),
                format!("{place}.pem"),
                format!("{place}.key"),
            );
            let bundle = match (text(&crt)?, text(&pem)?) {
                (Some(bundle), _) => Some((bundle, crt.clone())),
                (None, Some(alone)) if ca == "root-ca" => Some((alone, pem.clone())),
                (None, Some(alone)) => {
                    // The CA alone: completed with what it chains to.
                    let mut bundle = alone;
                    for above in [&intermediate, &root_pem].into_iter().flatten() {
                        if !bundle.ends_with('\n') {
                            bundle.push('\n');
                        }
                        bundle.push_str(above);
                    }
                    Some((bundle, pem.clone()))
                }
                (None, None) => None,
            };
            let target = format!("{ca}.crt");
            if let Some((bundle, source)) = bundle {
                if resolved.files.contains_key(&target) {
                    return Err(format!(
                        "both {} and {source} stage the {ca}; keep one",
                        resolved.sources.get(&target).map_or(&target, |s| s)
                    ));
                }
                if source != target {
                    resolved.sources.insert(target.clone(), source.clone());
                }
                resolved.files.insert(target, bundle);
                used.extend([crt.clone(), pem.clone()]);
            }
            if let Some(k) = text(&key)? {
                let target = format!("{ca}.key");
                if key != target {
                    resolved.sources.insert(target.clone(), key.clone());
                }
                resolved.files.insert(target, k);
                used.push(key);
            }
        }
    }
    if let Some(keys) = text("service.key")? {
        resolved.files.insert("service.key".into(), keys);
        used.push("service.key".into());
    }
    for name in listing.keys() {
        if used.contains(name) {
            continue;
        }
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let reason = if NO_ROLE.contains(&stem) {
            "a CA Evergreen has no role for (it issues no certificate Evergreen makes)".to_owned()
        } else if stem == "intermediate-ca" {
            "the intermediate CA's key: not needed, Evergreen signs with the role CAs".to_owned()
        } else {
            "not a file of a staged CA directory".to_owned()
        };
        resolved.ignored.push((name.clone(), reason));
    }
    Ok(resolved)
}

/// One staged CA: its bundle and its key, each when staged.
#[derive(Debug, Default)]
pub struct StagedCa {
    pub bundle: Option<Vec<CertificateDer<'static>>>,
    pub key: Option<PrivateKey>,
}

/// A staged directory, read.
#[derive(Debug, Default)]
pub struct Staged {
    pub cas: BTreeMap<&'static str, StagedCa>,
    pub service_keys: Option<ServiceKeys>,
}

impl Staged {
    /// Reads files by Evergreen's names ([`FILES`]); an empty file counts as absent. A name
    /// outside [`FILES`], a file that does not parse, or nothing staged at all is an error
    /// naming the file.
    pub fn decode(files: &BTreeMap<String, String>) -> Result<Self, String> {
        if let Some(unknown) = files.keys().find(|f| !FILES.contains(&f.as_str())) {
            return Err(format!(
                "{unknown:?} is not a file of a staged CA directory; expected any of {}",
                FILES.join(", ")
            ));
        }
        let text = |name: &str| files.get(name).filter(|t| !t.trim().is_empty());
        let mut staged = Staged::default();
        for ca in CAS {
            let cert_file = format!("{ca}.crt");
            let key_file = format!("{ca}.key");
            let bundle = text(&cert_file)
                .map(|t| crate::pem::parse_certificates(&cert_file, t.as_bytes()))
                .transpose()
                .map_err(|e| e.to_string())?;
            let key = text(&key_file)
                .map(|t| PrivateKey::from_pem(&key_file, t.as_bytes()))
                .transpose()
                .map_err(|e| e.to_string())?;
            if bundle.is_some() || key.is_some() {
                staged.cas.insert(ca, StagedCa { bundle, key });
            }
        }
        staged.service_keys = text("service.key")
            .map(|t| ServiceKeys::from_pem("service.key", t.as_bytes()))
            .transpose()
            .map_err(|e| e.to_string())?;
        if staged.cas.is_empty() && staged.service_keys.is_none() {
            return Err(format!(
                "nothing is staged: the directory holds none of {} (or only empty files)",
                FILES.join(", ")
            ));
        }
        Ok(staged)
    }

    /// Every staged certificate: the pool cross-signed certificates are looked for in.
    pub fn pool(&self) -> Vec<CertificateDer<'static>> {
        self.cas
            .values()
            .filter_map(|s| s.bundle.as_ref())
            .flatten()
            .cloned()
            .collect()
    }

    /// The staged bundle of `ca`, if any.
    pub fn bundle(&self, ca: &str) -> Option<&[CertificateDer<'static>]> {
        self.cas.get(ca)?.bundle.as_deref()
    }

    /// The staged key of `ca`, if any.
    pub fn key(&self, ca: &str) -> Option<&PrivateKey> {
        self.cas.get(ca)?.key.as_ref()
    }
}
