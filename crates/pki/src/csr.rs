//! Certificate signing requests: parsed, signature-checked, and reduced to the three things
//! Evergreen ever takes from them — the public key, the subject and the requested SANs.
//!
//! Every other requested extension is ignored (never copied into a certificate), so a CSR
//! carrying an extension Evergreen does not know, such as `tlsfeature=status_request`, is
//! still accepted; what is issued is decided by [`crate::policy`].
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;

use crate::certificate::SubjectAltName;
use crate::key::{self, PublicKey};
use crate::name::DistinguishedName;
use crate::{CsrError, Error};

/// OID 1.2.840.10045.4.1, ecdsa-with-SHA1.
const ECDSA_WITH_SHA1: &str = "1.2.840.10045.4.1";

/// A CSR whose signature verifies with its own key, of a supported key type.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    der: CertificateSigningRequestDer<'static>,
    subject: DistinguishedName,
    subject_alt_names: Vec<SubjectAltName>,
    public_key: PublicKey,
}

impl CertificateRequest {
    /// Reads a PEM CSR (`-----BEGIN CERTIFICATE REQUEST-----`).
    pub fn from_pem(what: &str, text: &[u8]) -> Result<Self, Error> {
        let der = crate::pem::parse_csr(what, text)?;
        Self::from_der(der.as_ref())
    }

    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let csr = match X509CertificationRequest::from_der(der) {
            Ok(([], csr)) => csr,
            Ok(_) => return Err(CsrError::Malformed("trailing data after the CSR".into()).into()),
            Err(e) => return Err(CsrError::Malformed(e.to_string()).into()),
        };
        let alg = &csr.signature_algorithm.algorithm;
        if *alg == OID_PKCS1_SHA1WITHRSA
            || *alg == OID_SHA1_WITH_RSA
            || alg.to_id_string() == ECDSA_WITH_SHA1
        {
            return Err(CsrError::WeakSignature("SHA-1".into()).into());
        }
        let info = &csr.certification_request_info;
        key::key_type_of(&info.subject_pki).map_err(CsrError::UnsupportedKey)?;
        csr.verify_signature().map_err(|e| match e {
            X509Error::SignatureUnsupportedAlgorithm => CsrError::Malformed(format!(
                "signature algorithm {alg} is not supported; sign with SHA-256"
            )),
            _ => CsrError::BadSignature,
        })?;
        let subject = DistinguishedName::from_x509(&info.subject)?;
        let public_key = PublicKey::from_spki_der(info.subject_pki.raw)?;

        let mut subject_alt_names = Vec::new();
        let requested = info
            .iter_attributes()
            .filter_map(|attr| match attr.parsed_attribute() {
                ParsedCriAttribute::ExtensionRequest(req) => Some(&req.extensions),
                _ => None,
            });
        for ext in requested.flatten() {
            // Only the SAN extension is read; every other extension is ignored, known or not.
            if ext.oid != OID_X509_EXT_SUBJECT_ALT_NAME {
                continue;
            }
            let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
                return Err(
                    CsrError::BadSubjectAltNames("the extension is malformed".into()).into(),
                );
            };
            for name in &san.general_names {
                let san = SubjectAltName::from_general_name(name).ok_or_else(|| {
                    CsrError::BadSubjectAltNames(format!(
                        "{name} is not a DNS name, IP address, email or URI"
                    ))
                })?;
                if !subject_alt_names.contains(&san) {
                    subject_alt_names.push(san);
                }
            }
        }
        Ok(CertificateRequest {
            der: CertificateSigningRequestDer::from(der.to_vec()),
            subject,
            subject_alt_names,
            public_key,
        })
    }

    pub fn der(&self) -> &CertificateSigningRequestDer<'static> {
        &self.der
    }

    pub fn subject(&self) -> &DistinguishedName {
        &self.subject
    }

    pub fn subject_alt_names(&self) -> &[SubjectAltName] {
        &self.subject_alt_names
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
}

/// Builds a CSR for `key` with `subject` and requested `subject_alt_names`: what a node
/// or application sends to be issued a certificate for a key that never leaves it.
pub fn build(
    key: &crate::key::PrivateKey,
    subject: &DistinguishedName,
    subject_alt_names: &[SubjectAltName],
) -> Result<CertificateSigningRequestDer<'static>, Error> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = subject.to_rcgen()?;
    params.subject_alt_names = subject_alt_names
        .iter()
        .map(SubjectAltName::to_rcgen)
        .collect::<Result<_, _>>()?;
    let csr = params
        .serialize_request(key)
        .map_err(|e| crate::authority::crypto("building the CSR", e))?;
    Ok(csr.der().clone())
}
