//! PEM in and out.
//!
//! Decoding uses the PEM functions of `rustls-pki-types`; every error names what was being
//! read, so "the file is truncated" reaches the user instead of "no items found".
use base64::Engine as _;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, CertificateSigningRequestDer, PrivateKeyDer,
};

use crate::Error;

/// Encodes DER as PEM with 64-column lines, the form every tool reads.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Encodes certificates as one PEM bundle, in the order given.
pub fn encode_certificates<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|c| encode("CERTIFICATE", c))
        .collect()
}

/// Reads every certificate in a PEM bundle. Other sections (keys, CRLs) are skipped; a
/// bundle with no certificate, a section without its END line, bad base64 or a
/// certificate that is not valid DER is an error.
pub fn parse_certificates(what: &str, text: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut certs = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(text).enumerate() {
        let der = item.map_err(|e| pem_error(what, e))?;
        crate::certificate::parse_x509(&format!("{what}, certificate {}", index + 1), &der)?;
        certs.push(der);
    }
    if certs.is_empty() {
        return Err(Error::Pem {
            what: what.to_owned(),
            reason: "holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' section)".into(),
        });
    }
    Ok(certs)
}

/// Reads the one private key in PEM text (PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1
/// "RSA PRIVATE KEY").
pub fn parse_private_key(what: &str, text: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(text).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::Pem {
            what: what.to_owned(),
            reason: "holds no PEM private key (no section labelled PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)".into(),
        },
        e => pem_error(what, e),
    })
}

/// Reads the one CSR in PEM text ("CERTIFICATE REQUEST").
pub fn parse_csr(what: &str, text: &[u8]) -> Result<CertificateSigningRequestDer<'static>, Error> {
    CertificateSigningRequestDer::from_pem_slice(text).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::Pem {
            what: what.to_owned(),
            reason: "holds no PEM CSR (no '-----BEGIN CERTIFICATE REQUEST-----' section)".into(),
        },
        e => pem_error(what, e),
    })
}

/// Reads the one CRL in PEM text ("X509 CRL").
pub fn parse_crl(what: &str, text: &[u8]) -> Result<CertificateRevocationListDer<'static>, Error> {
    CertificateRevocationListDer::from_pem_slice(text).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::Pem {
            what: what.to_owned(),
            reason: "holds no PEM CRL (no '-----BEGIN X509 CRL-----' section)".into(),
        },
        e => pem_error(what, e),
    })
}

fn pem_error(what: &str, e: pem::Error) -> Error {
    let reason = match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "is truncated: a PEM section has no '{}' line",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "has a malformed PEM BEGIN line: {:?}",
            String::from_utf8_lossy(&line)
        ),
        pem::Error::Base64Decode(e) => {
            format!("has a PEM section whose base64 is corrupt or truncated ({e})")
        }
        pem::Error::NoItemsFound => "holds no PEM section of the expected kind".into(),
        pem::Error::SectionTooLarge => "has a PEM section that is too large".into(),
        e => e.to_string(),
    };
    Error::Pem {
        what: what.to_owned(),
        reason,
    }
}
