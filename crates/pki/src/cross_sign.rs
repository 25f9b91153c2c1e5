//! Cross-signing: the same CA (subject, public key, subject key identifier) certified by
//! another issuer, so clients that trust only the other issuer accept it during rotation.
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::Error;
use crate::authority::{CertificateAuthority, crypto, key_id_method, random_serial};
use crate::certificate::{CertificateInfo, parse_x509};

/// Re-signs the CA certificate `ca` under `issuer`. The result keeps the subject, the
/// public key, the subject key identifier, the basic constraints and key usages of `ca`,
/// and is valid from now until `ca` or `issuer` expires, whichever is first.
pub fn cross_sign(
    ca: &CertificateDer<'_>,
    issuer: &CertificateAuthority,
    now: OffsetDateTime,
) -> Result<CertificateDer<'static>, Error> {
    let x509 = parse_x509("CA to cross-sign", ca)?;
    let info = CertificateInfo::from_x509(ca, &x509)?;
    if !info.is_ca {
        return Err(Error::NotAnIssuer {
            subject: info.subject,
            reason: "it is not a CA, so it cannot be cross-signed".into(),
        });
    }
    if info.not_after <= now {
        return Err(Error::Validity {
            subject: info.subject,
            reason: format!(
                "expired at {}, so it cannot be cross-signed",
                info.not_after
            ),
        });
    }
    let (not_before, not_after, _) = issuer.validity_for(now, info.not_after - now)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = info.subject.to_rcgen()?;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    params.is_ca = IsCa::Ca(match info.path_len {
        Some(n) => BasicConstraints::Constrained(u8::try_from(n).unwrap_or(u8::MAX)),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if info.can_sign_certificates {
        params.key_usages.push(KeyUsagePurpose::KeyCertSign);
    }
    if info.can_sign_crls {
        params.key_usages.push(KeyUsagePurpose::CrlSign);
    }
    // Clients match issuers by key identifier: the cross-signed copy must keep it.
    params.key_identifier_method = key_id_method(info.subject_key_id.as_deref());
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(&info.public_key)
        .map_err(|e| crypto("reading the CA's public key", e))?;
    let cert = params
        .signed_by(&public_key, issuer.issuer())
        .map_err(|e| crypto("cross-signing", e))?;
    Ok(cert.der().clone())
}
