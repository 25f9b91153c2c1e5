//! PEM files come from operators and the network: certificate bundles, keys, CRLs and
//! join tokens must parse or fail cleanly, never panic.
#![no_main]

use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::crl::CrlInfo;
use evergreen_pki::token::JoinToken;
use evergreen_pki::{pem, PrivateKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = pem::parse_certificates("fuzz", data) {
        for cert in &certs {
            let _ = CertificateInfo::from_der(cert).map(|i| i.subject.to_string());
        }
        let _ = JoinToken::generate(&certs[0]).map(|t| t.verify_bundle(&certs));
    }
    let _ = CertificateInfo::from_der(&data.to_vec().into());
    let _ = PrivateKey::from_pem("fuzz", data);
    if let Ok(crl) = pem::parse_crl("fuzz", data) {
        let _ = CrlInfo::from_der(&crl);
    }
    let _ = CrlInfo::from_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<JoinToken>();
        let _ = text.parse::<evergreen_pki::SubjectAltName>();
    }
});
