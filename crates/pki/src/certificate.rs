//! What a certificate says: names, validity, usages, keys and fingerprints.
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use aws_lc_rs::digest;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::Error;
use crate::name::DistinguishedName;

/// Parses DER as an X.509 certificate, refusing trailing data.
pub(crate) fn parse_x509<'a>(what: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(Error::Der {
            what: what.to_owned(),
            reason: "trailing data after the certificate".into(),
        }),
        Err(e) => Err(Error::Der {
            what: what.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Lowercase hex, the form fingerprints and serials are shown and compared in.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The SHA-256 of a certificate's DER: how Evergreen names a certificate everywhere
/// (inventory, revocation by hash, installed-fingerprint reports, join tokens).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// Parses 64 hex digits (either case, optional `sha256:` prefix, colons allowed).
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.strip_prefix("sha256:").unwrap_or(s).replace(':', "");
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
}

impl SubjectAltName {
    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType, Error> {
        let bad = |e: rcgen::Error| Error::Name {
            name: self.to_string(),
            reason: format!("cannot be encoded: {e}"),
        };
        Ok(match self {
            SubjectAltName::Dns(d) => rcgen::SanType::DnsName(d.as_str().try_into().map_err(bad)?),
            SubjectAltName::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            SubjectAltName::Email(e) => {
                rcgen::SanType::Rfc822Name(e.as_str().try_into().map_err(bad)?)
            }
            SubjectAltName::Uri(u) => rcgen::SanType::URI(u.as_str().try_into().map_err(bad)?),
        })
    }

    pub(crate) fn from_general_name(name: &GeneralName<'_>) -> Option<Self> {
        Some(match name {
            GeneralName::DNSName(d) => SubjectAltName::Dns((*d).to_owned()),
            GeneralName::RFC822Name(e) => SubjectAltName::Email((*e).to_owned()),
            GeneralName::URI(u) => SubjectAltName::Uri((*u).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => SubjectAltName::Ip(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                16 => SubjectAltName::Ip(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectAltName::Dns(d) => write!(f, "DNS:{d}"),
            SubjectAltName::Ip(ip) => write!(f, "IP:{ip}"),
            SubjectAltName::Email(e) => write!(f, "email:{e}"),
            SubjectAltName::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

/// `10.0.0.1` and `IP:10.0.0.1` are IP addresses; `node-1` and `DNS:node-1` DNS names;
/// `email:` and `URI:` prefixes name the other kinds.
impl FromStr for SubjectAltName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, value) = match s.split_once(':') {
            Some((k, v)) if ["DNS", "IP", "email", "URI"].contains(&k) => (Some(k), v),
            _ => (None, s),
        };
        if value.is_empty() {
            return Err(format!("empty subject alternative name {s:?}"));
        }
        match kind {
            Some("IP") => value
                .parse()
                .map(SubjectAltName::Ip)
                .map_err(|_| format!("{value:?} is not an IP address")),
            Some("email") => Ok(SubjectAltName::Email(value.to_owned())),
            Some("URI") => Ok(SubjectAltName::Uri(value.to_owned())),
            _ => match value.parse() {
                Ok(ip) if kind.is_none() => Ok(SubjectAltName::Ip(ip)),
                _ => {
                    let valid = value.len() <= 253
                        && value.split('.').enumerate().all(|(i, label)| {
                            !label.is_empty()
                                && label.len() <= 63
                                && !label.starts_with('-')
                                && !label.ends_with('-')
                                && (label
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                                    || (i == 0 && label == "*"))
                        });
                    if valid {
                        Ok(SubjectAltName::Dns(value.to_ascii_lowercase()))
                    } else {
                        Err(format!("{value:?} is not a valid DNS name or IP address"))
                    }
                }
            },
        }
    }
}

/// What a certificate may be used for, as far as Evergreen's profiles go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// TLS server authentication (EKU serverAuth).
    ServerAuth,
    /// TLS client authentication (EKU clientAuth).
    ClientAuth,
}

/// The facts about one certificate that Evergreen shows and decides on.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    pub subject: DistinguishedName,
    pub issuer: DistinguishedName,
    /// Serial number, big-endian without leading zero bytes.
    pub serial: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    /// keyCertSign is set (or there is no key usage extension at all).
    pub can_sign_certificates: bool,
    /// cRLSign is set (or there is no key usage extension at all).
    pub can_sign_crls: bool,
    pub extended_usages: Vec<Usage>,
    pub subject_alt_names: Vec<SubjectAltName>,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    pub fingerprint: Fingerprint,
    /// Subject equals issuer and the certificate verifies with its own key.
    pub self_signed: bool,
}

impl CertificateInfo {
    pub fn from_der(der: &CertificateDer<'_>) -> Result<Self, Error> {
        let x509 = parse_x509("certificate", der)?;
        Self::from_x509(der, &x509)
    }

    pub(crate) fn from_x509(der: &[u8], x509: &X509Certificate<'_>) -> Result<Self, Error> {
        let tbs = &x509.tbs_certificate;
        let subject = DistinguishedName::from_x509(&tbs.subject)?;
        let issuer = DistinguishedName::from_x509(&tbs.issuer)?;
        let mut info = CertificateInfo {
            serial: tbs
                .raw_serial()
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect(),
            not_before: tbs.validity.not_before.to_datetime(),
            not_after: tbs.validity.not_after.to_datetime(),
            is_ca: false,
            path_len: None,
            can_sign_certificates: true,
            can_sign_crls: true,
            extended_usages: Vec::new(),
            subject_alt_names: Vec::new(),
            subject_key_id: None,
            authority_key_id: None,
            public_key: tbs.subject_pki.raw.to_vec(),
            fingerprint: Fingerprint::of(der),
            self_signed: tbs.subject.as_raw() == tbs.issuer.as_raw()
                && x509.verify_signature(None).is_ok(),
            subject,
            issuer,
        };
        for ext in tbs.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => {
                    info.is_ca = bc.ca;
                    info.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => {
                    info.can_sign_certificates = ku.key_cert_sign();
                    info.can_sign_crls = ku.crl_sign();
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    if eku.server_auth || eku.any {
                        info.extended_usages.push(Usage::ServerAuth);
                    }
                    if eku.client_auth || eku.any {
                        info.extended_usages.push(Usage::ClientAuth);
                    }
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    info.subject_alt_names = san
                        .general_names
                        .iter()
                        .filter_map(SubjectAltName::from_general_name)
                        .collect();
                }
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    info.subject_key_id = Some(id.0.to_vec());
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    info.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// Serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }

    /// Names of what the certificate may do, as `certificate check` shows them:
    /// `CertSign` for a CA, then `ServerAuth` / `ClientAuth`.
    pub fn usage_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.is_ca && self.can_sign_certificates {
            names.push("CertSign");
        }
        for usage in &self.extended_usages {
            names.push(match usage {
                Usage::ServerAuth => "ServerAuth",
                Usage::ClientAuth => "ClientAuth",
            });
        }
        names
    }
}
