//! What is issued for a CSR. The CSR proposes a subject and SANs; the policy decides.
use time::Duration;

use crate::PolicyError;
use crate::authority::IssueRequest;
use crate::certificate::SubjectAltName;
use crate::csr::CertificateRequest;
use crate::name::DistinguishedName;
use crate::profile::Profile;

/// Which subject the certificate gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRule {
    /// The CSR's subject (offline signing by an operator who has looked at it).
    AsRequested,
    /// The CSR must carry exactly this subject, attribute for attribute (renewal of an
    /// existing certificate: the subject is the identity and may not change).
    Exactly(DistinguishedName),
}

/// Which subject alternative names the certificate gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanRule {
    /// The CSR's SANs.
    AsRequested,
    /// The CSR's SANs, each of which must be in this list (renewal may keep or drop
    /// names, never add one).
    AtMost(Vec<SubjectAltName>),
    /// These SANs, whatever the CSR asks for (names the server decides, or an operator's
    /// `--san`).
    Replace(Vec<SubjectAltName>),
}

/// A decision procedure from CSR to [`IssueRequest`].
#[derive(Debug, Clone)]
pub struct CsrPolicy {
    pub profile: Profile,
    pub validity: Duration,
    pub subject: SubjectRule,
    pub subject_alt_names: SanRule,
}

impl CsrPolicy {
    /// Subject and SANs as requested, the profile's default validity.
    pub fn new(profile: Profile) -> Self {
        CsrPolicy {
            profile,
            validity: profile.default_validity(),
            subject: SubjectRule::AsRequested,
            subject_alt_names: SanRule::AsRequested,
        }
    }

    /// Decides what to issue for `csr`, or says precisely why not.
    pub fn decide(&self, csr: &CertificateRequest) -> Result<IssueRequest, PolicyError> {
        let subject = match &self.subject {
            SubjectRule::AsRequested => csr.subject().clone(),
            SubjectRule::Exactly(expected) => {
                if let Some(detail) = csr.subject().difference(expected) {
                    return Err(PolicyError::SubjectMismatch {
                        requested: csr.subject().clone(),
                        expected: expected.clone(),
                        detail,
                    });
                }
                expected.clone()
            }
        };
        if subject.is_empty() {
            return Err(PolicyError::EmptySubject);
        }
        let subject_alt_names = match &self.subject_alt_names {
            SanRule::AsRequested => csr.subject_alt_names().to_vec(),
            SanRule::AtMost(allowed) => {
                if let Some(extra) = csr
                    .subject_alt_names()
                    .iter()
                    .find(|san| !allowed.contains(san))
                {
                    return Err(PolicyError::SanNotAllowed {
                        requested: extra.to_string(),
                        allowed: if allowed.is_empty() {
                            "none".into()
                        } else {
                            allowed
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    });
                }
                csr.subject_alt_names().to_vec()
            }
            SanRule::Replace(sans) => sans.clone(),
        };
        if self.profile.needs_subject_alt_names() && subject_alt_names.is_empty() {
            return Err(PolicyError::NoSubjectAltNames {
                profile: self.profile.name().into(),
            });
        }
        Ok(IssueRequest {
            subject,
            subject_alt_names,
            public_key: csr.public_key().clone(),
            profile: self.profile,
            validity: self.validity,
        })
    }
}
