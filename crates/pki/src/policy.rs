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
    /// The CSR's subject, which must have this name's attributes in this order, each value
    /// equal or, where the pattern's value holds `*`, matching it ([`glob_match`]): what a
    /// join token bound to `CN=billing-*, O=team` may enroll.
    Matching(DistinguishedName),
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
            SubjectRule::Matching(pattern) => {
                if let Some(reason) = pattern_difference(csr.subject(), pattern) {
                    return Err(PolicyError::SubjectNotAllowed {
                        requested: csr.subject().clone(),
                        reason,
                    });
                }
                csr.subject().clone()
            }
        };
        if subject.is_empty() {
            return Err(PolicyError::EmptySubject);
        }
        subject
            .check_bounds()
            .map_err(|reason| PolicyError::BadSubject {
                subject: subject.clone(),
                reason,
            })?;

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
        for san in &subject_alt_names {
            check_san_syntax(san)?;
        }
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

/// Describes how `subject` differs from `pattern`, or `None` when it matches.
fn pattern_difference(subject: &DistinguishedName, pattern: &DistinguishedName) -> Option<String> {
    let mine: Vec<_> = subject.attributes().collect();
    let wanted: Vec<_> = pattern.attributes().collect();
    if mine.len() != wanted.len() {
        return Some(format!("it must be {pattern}"));
    }
    for ((attribute, value), (want_attribute, want_value)) in mine.iter().zip(&wanted) {
        if attribute != want_attribute || !glob_match(want_value, value) {
            return Some(format!(
                "{attribute}={value} does not match {want_attribute}={want_value}; it must match {pattern}"
            ));
        }
    }
    None
}

/// Whether `value` matches `pattern`, where `*` stands for any run of characters
/// (possibly empty) and every other character for itself: `worker-*` matches `worker-1`.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let value: Vec<char> = value.chars().collect();
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((star_p, star_v)) = star {
            p = star_p + 1;
            v = star_v + 1;
            star = Some((star_p, star_v + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The longest email or URI name accepted in a CSR.
const MAX_NAME_LEN: usize = 255;

/// A requested SAN must be what its kind says: a DNS name of letters, digits, `-` and `_`
/// labels (a leading `*` label allowed), an email or URI of printable characters.
fn check_san_syntax(san: &SubjectAltName) -> Result<(), PolicyError> {
    let bad = |reason: &str| PolicyError::BadSan {
        requested: san.to_string().chars().take(MAX_NAME_LEN).collect(),
        reason: reason.to_owned(),
    };
    match san {
        SubjectAltName::Ip(_) => Ok(()),
        SubjectAltName::Dns(name) => match name.parse::<SubjectAltName>() {
            Ok(SubjectAltName::Dns(parsed)) if parsed == name.to_ascii_lowercase() => Ok(()),
            _ => Err(bad(
                "a DNS name holds labels of letters, digits, '-' and '_' (at most 63 each, 253 in all)",
            )),
        },
        SubjectAltName::Email(text) | SubjectAltName::Uri(text) => {
            if text.is_empty() || text.len() > MAX_NAME_LEN {
                Err(bad("it must hold 1 to 255 characters"))
            } else if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
                Err(bad("it holds a control or space character"))
            } else {
                Ok(())
            }
        }
    }
}
