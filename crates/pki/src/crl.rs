//! Certificate revocation lists.
use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, RevokedCertParams, SerialNumber};
use rustls_pki_types::CertificateRevocationListDer;
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList as ParsedCrl;

use crate::Error;
use crate::authority::{CertificateAuthority, crypto, key_id_method, whole_seconds};
use crate::certificate::parse_x509;
use crate::name::DistinguishedName;

/// Why a certificate was revoked (RFC 5280 CRLReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 8] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::CertificateHold => "certificate-hold",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    /// The RFC 5280 code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => R::Unspecified,
            RevocationReason::KeyCompromise => R::KeyCompromise,
            RevocationReason::CaCompromise => R::CaCompromise,
            RevocationReason::AffiliationChanged => R::AffiliationChanged,
            RevocationReason::Superseded => R::Superseded,
            RevocationReason::CessationOfOperation => R::CessationOfOperation,
            RevocationReason::CertificateHold => R::CertificateHold,
            RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|r| r.name()).collect();
                format!(
                    "unknown revocation reason {s:?}; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One revoked certificate, by serial number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCertificate {
    /// Big-endian serial number without leading zero bytes.
    pub serial: Vec<u8>,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// What a CRL says.
#[derive(Debug, Clone)]
pub struct CrlInfo {
    pub issuer: DistinguishedName,
    pub crl_number: Option<Vec<u8>>,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    pub revoked: Vec<RevokedCertificate>,
}

impl CrlInfo {
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let crl = match ParsedCrl::from_der(der) {
            Ok(([], crl)) => crl,
            Ok(_) => {
                return Err(Error::Der {
                    what: "CRL".into(),
                    reason: "trailing data".into(),
                });
            }
            Err(e) => {
                return Err(Error::Der {
                    what: "CRL".into(),
                    reason: e.to_string(),
                });
            }
        };
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| RevokedCertificate {
                serial: r
                    .raw_serial()
                    .iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect(),
                revoked_at: r.revocation_date.to_datetime(),
                reason: r
                    .reason_code()
                    .and_then(|(_, code)| RevocationReason::from_code(code.0))
                    .unwrap_or_default(),
            })
            .collect();
        Ok(CrlInfo {
            issuer: DistinguishedName::from_x509(crl.issuer())?,
            crl_number: crl.crl_number().map(|n| n.to_bytes_be()),
            this_update: crl.last_update().to_datetime(),
            next_update: crl.next_update().map(|t| t.to_datetime()),
            revoked,
        })
    }

    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        let serial: Vec<u8> = serial.iter().skip_while(|b| **b == 0).copied().collect();
        self.revoked.iter().any(|r| r.serial == serial)
    }
}

/// Whether `crl` carries a valid signature by the CA certificate `issuer`.
pub fn is_signed_by(
    crl: &CertificateRevocationListDer<'_>,
    issuer: &rustls_pki_types::CertificateDer<'_>,
) -> Result<bool, Error> {
    let (_, parsed) = ParsedCrl::from_der(crl).map_err(|e| Error::Der {
        what: "CRL".into(),
        reason: e.to_string(),
    })?;
    let issuer = parse_x509("CRL issuer", issuer)?;
    Ok(parsed.issuer().as_raw() == issuer.subject().as_raw()
        && parsed.verify_signature(issuer.public_key()).is_ok())
}

impl CertificateAuthority {
    /// Signs a CRL listing `revoked`, numbered `crl_number` (which must grow with every
    /// CRL this CA publishes), valid from `now` until `next_update`.
    pub fn issue_crl(
        &self,
        crl_number: u64,
        revoked: &[RevokedCertificate],
        now: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<CertificateRevocationListDer<'static>, Error> {
        let params = CertificateRevocationListParams {
            this_update: whole_seconds(now),
            next_update: whole_seconds(next_update),
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: whole_seconds(r.revoked_at),
                    reason_code: Some(r.reason.to_rcgen()),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: key_id_method(self.info().subject_key_id.as_deref()),
        };
        let crl = params
            .signed_by(self.issuer())
            .map_err(|e| crypto("signing the CRL", e))?;
        Ok(crl.der().clone())
    }
}
