//! A certificate authority: a CA certificate with its key, issuing certificates.
use std::fmt;

use rcgen::{CertificateParams, KeyIdMethod, KeyUsagePurpose, SerialNumber};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::certificate::{CertificateInfo, Fingerprint, SubjectAltName};
use crate::key::{PrivateKey, PublicKey};
use crate::name::DistinguishedName;
use crate::profile::Profile;

/// How far not-before is set back from "now", so a peer whose clock is a little behind
/// does not reject a certificate that was just issued.
pub const BACKDATE: Duration = Duration::minutes(5);

/// Bytes of randomness in a serial number: 126 random bits once the top two bits are
/// fixed to keep the number positive and of constant length.
const SERIAL_BYTES: usize = 16;

/// What to issue: decided by a [`crate::policy::CsrPolicy`] or built directly for
/// certificates whose key Evergreen makes itself.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub subject: DistinguishedName,
    pub subject_alt_names: Vec<SubjectAltName>,
    pub public_key: PublicKey,
    pub profile: Profile,
    /// Wanted lifetime from now; shortened if the issuer expires sooner.
    pub validity: Duration,
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub der: CertificateDer<'static>,
    pub serial: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub fingerprint: Fingerprint,
    /// The requested validity was cut to end with the issuer's.
    pub shortened: bool,
}

/// A CA certificate, the certificates above it, and its private key.
pub struct CertificateAuthority {
    certificate: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    info: CertificateInfo,
    issuer: rcgen::Issuer<'static, PrivateKey>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.info.subject.to_string())
            .field("not_after", &self.info.not_after)
            .field("key", &"[elided]")
            .finish()
    }
}

impl CertificateAuthority {
    /// Makes a self-signed root CA.
    pub fn new_root(
        subject: DistinguishedName,
        key: PrivateKey,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, Error> {
        let (not_before, not_after) =
            (whole_seconds(now - BACKDATE), whole_seconds(now + validity));
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.to_rcgen()?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Profile::RootCa.apply(&mut params, key.key_type());
        let cert = params
            .self_signed(&key)
            .map_err(|e| crypto("signing the root CA", e))?;
        Self::from_parts(vec![cert.der().clone()], key)
    }

    /// Issues a CA certificate for `key` under this CA and returns the new CA, whose chain
    /// is this CA's bundle.
    pub fn new_intermediate(
        &self,
        subject: DistinguishedName,
        key: PrivateKey,
        path_len: u8,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, Error> {
        let issued = self.issue(
            &IssueRequest {
                subject,
                subject_alt_names: Vec::new(),
                public_key: key.public_key(),
                profile: Profile::IntermediateCa { path_len },
                validity,
            },
            now,
        )?;
        let mut bundle = vec![issued.der];
        bundle.extend(self.bundle());
        Self::from_parts(bundle, key)
    }

    /// Reads a CA from PEM: the CA certificate first, then any certificates above it.
    pub fn from_pem(what: &str, bundle_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let bundle = crate::pem::parse_certificates(what, bundle_pem)?;
        let key = PrivateKey::from_pem(&format!("{what} key"), key_pem)?;
        Self::from_parts(bundle, key)
    }

    /// A CA from its bundle (the CA first) and key, after checking that the key belongs
    /// to the certificate, that the certificate is a CA allowed to sign certificates, and
    /// that its name can be written back exactly as issuer name.
    pub fn from_parts(
        mut bundle: Vec<CertificateDer<'static>>,
        key: PrivateKey,
    ) -> Result<Self, Error> {
        if bundle.is_empty() {
            return Err(Error::Pem {
                what: "CA bundle".into(),
                reason: "holds no certificate".into(),
            });
        }
        let certificate = bundle.remove(0);
        let info = CertificateInfo::from_der(&certificate)?;
        if !key.matches_certificate(&certificate)? {
            return Err(Error::KeyMismatch {
                subject: info.subject,
            });
        }
        if !info.is_ca {
            return Err(Error::NotAnIssuer {
                subject: info.subject,
                reason: "it is not a CA (basic constraints CA:FALSE or absent)".into(),
            });
        }
        if !info.can_sign_certificates {
            return Err(Error::NotAnIssuer {
                subject: info.subject,
                reason: "its key usage does not include keyCertSign".into(),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = info.subject.to_rcgen()?;
        params.key_identifier_method = key_id_method(info.subject_key_id.as_deref());
        params.key_usages = [
            (info.can_sign_certificates, KeyUsagePurpose::KeyCertSign),
            (info.can_sign_crls, KeyUsagePurpose::CrlSign),
        ]
        .into_iter()
        .filter_map(|(set, usage)| set.then_some(usage))
        .collect();
        Ok(CertificateAuthority {
            certificate,
            chain: bundle,
            info,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// Issues a certificate. Its validity starts [`BACKDATE`] before `now` (never before
    /// the issuer's) and never outlasts the issuer's.
    pub fn issue(
        &self,
        request: &IssueRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, Error> {
        if request.validity <= Duration::ZERO {
            return Err(Error::Validity {
                subject: request.subject.clone(),
                reason: format!("cannot be issued with a validity of {}", request.validity),
            });
        }
        if request.profile.is_ca() && self.info.path_len == Some(0) {
            return Err(Error::NotAnIssuer {
                subject: self.info.subject.clone(),
                reason: "its path length is 0, so it can issue leaf certificates only".into(),
            });
        }
        let (not_before, not_after, shortened) = self.validity_for(now, request.validity)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = request.subject.to_rcgen()?;
        params.subject_alt_names = request
            .subject_alt_names
            .iter()
            .map(SubjectAltName::to_rcgen)
            .collect::<Result<_, _>>()?;
        params.not_before = not_before;
        params.not_after = not_after;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        request
            .profile
            .apply(&mut params, request.public_key.key_type());
        let cert = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|e| crypto("signing the certificate", e))?;
        let der = cert.der().clone();
        Ok(IssuedCertificate {
            fingerprint: Fingerprint::of(&der),
            der,
            serial: serial.to_bytes(),
            not_before,
            not_after,
            shortened,
        })
    }

    /// The validity a certificate issued now would get, checking the issuer itself is valid.
    pub(crate) fn validity_for(
        &self,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<(OffsetDateTime, OffsetDateTime, bool), Error> {
        if now < self.info.not_before {
            return Err(Error::Validity {
                subject: self.info.subject.clone(),
                reason: format!(
                    "is not valid until {}; it cannot issue yet",
                    self.info.not_before
                ),
            });
        }
        if now >= self.info.not_after {
            return Err(Error::Validity {
                subject: self.info.subject.clone(),
                reason: format!(
                    "expired at {}; it cannot issue any more — rotate the CA",
                    self.info.not_after
                ),
            });
        }
        let not_before = whole_seconds((now - BACKDATE).max(self.info.not_before));
        let wanted = whole_seconds(now + validity);
        let not_after = wanted.min(self.info.not_after);
        Ok((not_before, not_after, wanted > self.info.not_after))
    }

    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The certificates above this CA, nearest first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// This CA followed by its chain: what a leaf's `caCrt` is.
    pub fn bundle(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.certificate.clone())
            .chain(self.chain.iter().cloned())
            .collect()
    }

    pub fn bundle_pem(&self) -> String {
        crate::pem::encode_certificates(std::iter::once(&self.certificate).chain(&self.chain))
    }

    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    pub fn key(&self) -> &PrivateKey {
        self.issuer.key()
    }

    pub(crate) fn issuer(&self) -> &rcgen::Issuer<'static, PrivateKey> {
        &self.issuer
    }
}

/// How an existing certificate's key is identified in what it signs (AKI) or in a copy of
/// it (SKI): by the identifier it already carries, so clients keep matching issuers.
pub(crate) fn key_id_method(subject_key_id: Option<&[u8]>) -> KeyIdMethod {
    match subject_key_id {
        Some(id) => KeyIdMethod::PreSpecified(id.to_vec()),
        None => KeyIdMethod::Sha256,
    }
}

/// X.509 times have whole seconds; trimming here keeps reported and encoded times equal.
pub(crate) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// A positive serial number of constant length with 126 random bits.
pub(crate) fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; SERIAL_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Crypto {
        what: "serial number generation",
        reason: "the system random source failed".into(),
    })?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

pub(crate) fn crypto(what: &'static str, e: rcgen::Error) -> Error {
    Error::Crypto {
        what,
        reason: e.to_string(),
    }
}
