//! The checks a staged CA must pass before it may replace the current one.
//!
//! Every check runs and every failure is kept, so an operator fixes everything in one go.
//! Each failure names the file and the certificate and says why.
use std::fmt;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::certificate::CertificateInfo;
use crate::chain::{chains_to, is_cross_signed};
use crate::key::{PrivateKey, PublicKey};
use crate::name::DistinguishedName;

/// A CA as staged for rotation: its bundle (the CA first, then the certificates that link
/// it to a root, cross-signed ones included) and its key.
#[derive(Debug)]
pub struct StagedCa<'a> {
    /// The certificate file, as the operator knows it (`server-ca.crt`).
    pub cert_file: &'a str,
    /// The key file (`server-ca.key`).
    pub key_file: &'a str,
    pub bundle: &'a [CertificateDer<'static>],
    /// `None` when the key file is absent.
    pub key: Option<&'a PrivateKey>,
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityFailure {
    pub file: String,
    pub certificate: Option<DistinguishedName>,
    pub reason: String,
}

impl fmt::Display for IntegrityFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.certificate {
            Some(subject) => write!(f, "{} ({subject}): {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// All failures of a rotation's checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    pub failures: Vec<IntegrityFailure>,
}

impl fmt::Display for IntegrityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.failures.len();
        write!(
            f,
            "{n} integrity check{} failed:",
            if n == 1 { "" } else { "s" }
        )?;
        for failure in &self.failures {
            write!(f, "\n  - {failure}")?;
        }
        Ok(())
    }
}

impl std::error::Error for IntegrityReport {}

impl IntegrityReport {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure of a check made outside this module.
    pub fn fail(&mut self, file: &str, certificate: Option<&DistinguishedName>, reason: String) {
        self.failures.push(IntegrityFailure {
            file: file.to_owned(),
            certificate: certificate.cloned(),
            reason,
        });
    }

    /// Checks one staged CA against the roots clients trust today:
    /// - the bundle holds more than the CA itself (the root or intermediates it chains to),
    ///   unless the CA is one of the current roots, unchanged;
    /// - the key matches the certificate;
    /// - the certificate is a CA allowed to sign certificates;
    /// - every certificate in the bundle is valid at `now`;
    /// - the CA verifies against a current root, directly or through certificates in
    ///   the bundle (cross-signed ones included).
    pub fn check_ca(
        &mut self,
        staged: &StagedCa<'_>,
        current_roots: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) {
        let file = staged.cert_file;
        let Some(ca) = staged.bundle.first() else {
            self.fail(file, None, "holds no certificate".into());
            return;
        };
        let info = match CertificateInfo::from_der(ca) {
            Ok(info) => info,
            Err(e) => {
                self.fail(file, None, e.to_string());
                return;
            }
        };
        let subject = Some(&info.subject);
        let unchanged_root = current_roots.iter().any(|r| r.as_ref() == ca.as_ref());

        if staged.bundle.len() < 2 && !unchanged_root {
            self.fail(
                file,
                subject,
                "the bundle holds only the new CA; append the certificates it chains to (its root, intermediates or cross-signed certificates)".into(),
            );
        }
        match staged.key {
            None => self.fail(
                staged.key_file,
                subject,
                "the key file is missing; stage the CA's private key beside its certificate".into(),
            ),
            Some(key) => match key.matches_certificate(ca) {
                Ok(true) if info.is_ca && info.can_sign_certificates => {
                    // Everything Evergreen needs to issue with it, its name written back as
                    // the issuer of what it signs included.
                    let usable = key.try_clone().and_then(|key| {
                        crate::authority::CertificateAuthority::from_parts(
                            staged.bundle.to_vec(),
                            key,
                        )
                    });
                    if let Err(e) = usable {
                        self.fail(
                            file,
                            subject,
                            format!("cannot be used as a CA by Evergreen: {e}"),
                        );
                    }
                }
                Ok(true) => {}
                Ok(false) => self.fail(
                    staged.key_file,
                    subject,
                    format!("the private key does not match the certificate in {file}"),
                ),
                Err(e) => self.fail(staged.key_file, subject, e.to_string()),
            },
        }
        if !info.is_ca {
            self.fail(
                file,
                subject,
                "is not a CA certificate (basic constraints CA:FALSE or absent)".into(),
            );
        } else if !info.can_sign_certificates {
            self.fail(
                file,
                subject,
                "its key usage does not allow signing certificates (keyCertSign)".into(),
            );
        }
        for cert in staged.bundle {
            let Ok(c) = CertificateInfo::from_der(cert) else {
                continue;
            };
            if now > c.not_after {
                self.fail(
                    file,
                    Some(&c.subject),
                    format!("expired at {}", c.not_after),
                );
            } else if now < c.not_before {
                self.fail(
                    file,
                    Some(&c.subject),
                    format!("is not valid until {}", c.not_before),
                );
            }
        }
        if !unchanged_root && !chains_to(ca, staged.bundle, current_roots) {
            let roots: Vec<String> = current_roots
                .iter()
                .filter_map(|r| CertificateInfo::from_der(r).ok())
                .map(|r| r.subject.to_string())
                .collect();
            self.fail(
                file,
                subject,
                format!(
                    "does not verify against the current root CA ({}), directly or through the certificates in its bundle; include a certificate cross-signed by the current root (evergreen ca generate --cross-sign-from)",
                    roots.join("; ")
                ),
            );
        }
    }

    /// Checks a staged root that replaces the current one: a self-signed CA, valid at `now`,
    /// its key (when staged) matching, and cross-signed: `pool` (every staged bundle)
    /// holds a certificate with the new root's subject and key that verifies against a
    /// current root, so clients that trust only the current root accept the new one.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one staged fact"
    )]
    pub fn check_root(
        &mut self,
        cert_file: &str,
        key_file: &str,
        root: &CertificateDer<'_>,
        key: Option<&PrivateKey>,
        pool: &[CertificateDer<'_>],
        current_roots: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) {
        let info = match CertificateInfo::from_der(root) {
            Ok(info) => info,
            Err(e) => {
                self.fail(cert_file, None, e.to_string());
                return;
            }
        };
        let subject = Some(&info.subject);
        if current_roots.iter().any(|r| r.as_ref() == root.as_ref()) {
            return;
        }
        if !info.self_signed || !info.is_ca {
            self.fail(
                cert_file,
                subject,
                "is not a self-signed CA certificate; a root must sign itself".into(),
            );
        }
        if now > info.not_after || now < info.not_before {
            self.fail(
                cert_file,
                subject,
                format!(
                    "is not valid now (valid from {} to {})",
                    info.not_before, info.not_after
                ),
            );
        }
        if let Some(key) = key {
            match key.matches_certificate(root) {
                Ok(true) => {}
                Ok(false) => self.fail(
                    key_file,
                    subject,
                    format!("the private key does not match the certificate in {cert_file}"),
                ),
                Err(e) => self.fail(key_file, subject, e.to_string()),
            }
        }
        if !is_cross_signed(root, pool, current_roots) {
            self.fail(
                cert_file,
                subject,
                "replaces the current root but no staged bundle holds a copy of it cross-signed by the current root, so clients that trust only the current root would refuse it; make the new root with evergreen ca generate --cross-sign-from".into(),
            );
        }
    }

    /// Checks that the key currently signing service-account tokens is still among the
    /// staged keys, so tokens already issued keep verifying.
    pub fn check_service_keys(
        &mut self,
        file: &str,
        current_signer: &PublicKey,
        staged: &[PublicKey],
    ) {
        if !staged.contains(current_signer) {
            self.fail(
                file,
                None,
                "does not contain the current service-account signing key; append the new key to the existing keys instead of replacing them".into(),
            );
        }
    }

    /// `Ok` when every check passed.
    pub fn into_result(self) -> Result<(), IntegrityReport> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}
