//! Integration tests of the PKI core. Every certificate, chain and CRL produced here is
//! checked twice: by rustls-webpki (through `evergreen_pki::chain`) and by the `openssl`
//! command.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]
mod chain;
mod crl;
mod cross_sign;
mod csr;
mod integrity;
mod issuance;
mod keys;
mod pem;
mod properties;
mod renewal;
mod service_keys;
mod token;

use evergreen_pki::certificate::Usage;
use evergreen_pki::policy::CsrPolicy;
use evergreen_pki::{
    CertificateAuthority, CertificateDer, CertificateRequest, DistinguishedName, IssuedCertificate,
    KeyType, OffsetDateTime, PrivateKey, Profile, SubjectAltName,
};
use evergreen_test_util::{Hierarchy, Openssl};

/// Issues a leaf of `profile` under `ca` for a fresh key, through a CSR as a client would.
fn issue_leaf(
    ca: &CertificateAuthority,
    profile: Profile,
    cn: &str,
    sans: &[&str],
    now: OffsetDateTime,
) -> (PrivateKey, IssuedCertificate) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let sans: Vec<SubjectAltName> = sans.iter().map(|s| s.parse().unwrap()).collect();
    let csr = evergreen_pki::csr::build(&key, &DistinguishedName::common_name(cn), &sans).unwrap();
    let csr = CertificateRequest::from_der(&csr).unwrap();
    let request = CsrPolicy::new(profile).decide(&csr).unwrap();
    (key, ca.issue(&request, now).unwrap())
}

/// Checks a leaf under a role CA of `h` with webpki and openssl, for `usage`.
fn assert_verifies(
    h: &Hierarchy,
    role: &CertificateAuthority,
    leaf: &CertificateDer<'_>,
    usage: Usage,
    now: OffsetDateTime,
) {
    let path = evergreen_pki::chain::verify(
        leaf,
        &[role.certificate().clone()],
        &h.root_der(),
        usage,
        &[],
        now,
    )
    .expect("webpki verifies the chain");
    assert_eq!(path.len(), 3, "leaf, role CA, root");
    assert_eq!(path[2], *h.root.certificate());
    let dir = tempfile::tempdir().unwrap();
    let purpose = match usage {
        Usage::ServerAuth => "sslserver",
        Usage::ClientAuth => "sslclient",
    };
    Openssl::find()
        .verify(
            dir.path(),
            &h.root_der(),
            &[role.certificate().clone()],
            leaf,
            purpose,
            now + time::Duration::minutes(1),
            &[],
        )
        .expect("openssl verifies the chain");
}
