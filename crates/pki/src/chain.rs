//! Chains: built and verified with rustls-webpki, the verifier Evergreen's own TLS uses,
//! so what passes here is what a handshake accepts.
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::Error;
use crate::certificate::{CertificateInfo, Usage, parse_x509};
use crate::name::DistinguishedName;

/// The signature algorithms Evergreen accepts in chains it verifies.
pub static SIGNATURE_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Verifies `leaf` for `usage` at `now` against `anchors`, using any of `intermediates`,
/// and returns the path found: leaf, intermediates, anchor.
///
/// With CRLs given, the leaf's revocation status is checked against them (the CRL of its
/// issuer must be among them, and not be past its next update). Only the leaf is checked:
/// webpki would otherwise want a CRL for every CA in the chain.
pub fn verify(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[CertificateDer<'_>],
    usage: Usage,
    crls: &[CertificateRevocationListDer<'_>],
    now: OffsetDateTime,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let subject = || subject_of(leaf);
    let fail = |reason: String| Error::Chain {
        subject: subject(),
        reason,
    };
    let ee = EndEntityCert::try_from(leaf).map_err(|e| fail(describe(&e)))?;
    let trust_anchors = anchors
        .iter()
        .map(|a| {
            webpki::anchor_from_trusted_cert(a).map_err(|e| Error::Chain {
                subject: subject_of(a),
                reason: format!("cannot be used as a trust anchor: {}", describe(&e)),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crls = crls
        .iter()
        .map(|c| {
            OwnedCertRevocationList::from_der(c)
                .map(CertRevocationList::from)
                .map_err(|e| fail(format!("a CRL cannot be read: {}", describe(&e))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let revocation = match RevocationOptionsBuilder::new(&crl_refs) {
        Ok(builder) => Some(
            builder
                .with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(ExpirationPolicy::Enforce)
                .build(),
        ),
        Err(_) => None, // no CRLs given
    };
    let time = unix_time(now).ok_or_else(|| fail("time is before 1970".into()))?;
    let key_usage = match usage {
        Usage::ServerAuth => KeyUsage::server_auth(),
        Usage::ClientAuth => KeyUsage::client_auth(),
    };
    let path = ee
        .verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &trust_anchors,
            intermediates,
            time,
            key_usage,
            revocation,
            None,
        )
        .map_err(|e| fail(describe(&e)))?;

    let mut out = vec![leaf.clone().into_owned()];
    out.extend(
        path.intermediate_certificates()
            .map(|c| c.der().into_owned()),
    );
    // webpki's anchor is the subject and key of one of `anchors`; return that certificate.
    let anchor = path.anchor();
    if let Some(i) = trust_anchors.iter().position(|a| {
        a.subject == anchor.subject && a.subject_public_key_info == anchor.subject_public_key_info
    }) {
        out.push(anchors[i].clone().into_owned());
    }
    Ok(out)
}

/// Whether `child` names `issuer` as its issuer and carries a valid signature by the
/// issuer's key. Used for CA certificates, which webpki cannot validate as end entities.
pub fn is_signed_by(
    child: &CertificateDer<'_>,
    issuer: &CertificateDer<'_>,
) -> Result<bool, Error> {
    let child = parse_x509("certificate", child)?;
    let issuer = parse_x509("issuer certificate", issuer)?;
    Ok(child.issuer().as_raw() == issuer.subject().as_raw()
        && child.verify_signature(Some(issuer.public_key())).is_ok())
}

/// How many CA certificates a path from a CA to a root may pass through.
const MAX_DEPTH: usize = 8;

/// Whether CA certificate `cert` is signed by one of `roots`, directly or through
/// certificates of `pool` (cross-signed ones included): a depth-first search with
/// signatures checked by x509-parser, since webpki validates end entities only.
pub fn chains_to(
    cert: &CertificateDer<'_>,
    pool: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
) -> bool {
    chains_to_within(cert, pool, roots, &mut Vec::new())
}

fn chains_to_within(
    cert: &CertificateDer<'_>,
    pool: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
    visited: &mut Vec<Vec<u8>>,
) -> bool {
    if roots.iter().any(|r| is_signed_by(cert, r).unwrap_or(false)) {
        return true;
    }
    if visited.len() >= MAX_DEPTH {
        return false;
    }
    visited.push(cert.to_vec());
    for candidate in pool {
        if visited.iter().any(|v| v.as_slice() == candidate.as_ref()) {
            continue;
        }
        if is_signed_by(cert, candidate).unwrap_or(false)
            && chains_to_within(candidate, pool, roots, visited)
        {
            return true;
        }
    }
    visited.pop();
    false
}

/// Whether the self-signed `root` is vouched for by `trusted`: `pool` holds a copy of it
/// (its subject and public key) that chains to one of `trusted`. This is how a new root
/// proves itself to whoever trusts only the old one.
pub fn is_cross_signed(
    root: &CertificateDer<'_>,
    pool: &[CertificateDer<'_>],
    trusted: &[CertificateDer<'_>],
) -> bool {
    let Ok(info) = CertificateInfo::from_der(root) else {
        return false;
    };
    pool.iter().any(|candidate| {
        candidate.as_ref() != root.as_ref()
            && CertificateInfo::from_der(candidate)
                .is_ok_and(|c| c.subject == info.subject && c.public_key == info.public_key)
            && chains_to(candidate, pool, trusted)
    })
}

pub(crate) fn unix_time(t: OffsetDateTime) -> Option<UnixTime> {
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        secs,
    )))
}

fn subject_of(cert: &CertificateDer<'_>) -> DistinguishedName {
    CertificateInfo::from_der(cert)
        .map(|i| i.subject)
        .unwrap_or_default()
}

fn describe_time(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(
            || format!("{} s after 1970", t.as_secs()),
            |t| t.to_string(),
        )
}

/// webpki's errors in words an operator can act on.
fn describe(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => {
            "its issuer is not among the trusted CAs or the intermediates given (wrong CA bundle?)"
                .into()
        }
        E::CertExpired { not_after, .. } => format!("expired at {}", describe_time(*not_after)),
        E::CertNotValidYet { not_before, .. } => {
            format!("is not valid until {}", describe_time(*not_before))
        }
        E::CertRevoked => "is revoked".into(),
        E::UnknownRevocationStatus => {
            "has no CRL from its issuer to check revocation against".into()
        }
        E::CrlExpired { next_update, .. } => format!(
            "the issuer's CRL is stale (next update was {})",
            describe_time(*next_update)
        ),
        E::InvalidSignatureForPublicKey => {
            "its signature does not verify with the key of the CA named as its issuer (a different CA with the same name?)".into()
        }
        E::CaUsedAsEndEntity => "is a CA certificate, not a leaf".into(),
        E::EndEntityUsedAsCa => "a leaf certificate appears as an issuer in the chain".into(),
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            "is not valid for this purpose (extended key usage)".into()
        }
        E::PathLenConstraintViolated => "the chain is longer than a CA's path length allows".into(),
        E::BadDer | E::BadDerTime => "is not valid DER".into(),
        other => format!("does not verify ({other:?})"),
    }
}
