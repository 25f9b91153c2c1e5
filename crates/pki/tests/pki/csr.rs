use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::policy::CsrPolicy;
use evergreen_pki::{CertificateRequest, CsrError, Error, KeyType, Profile};
use evergreen_test_util::{Openssl, fixed_now, write};

use crate::assert_verifies;

/// A key and CSR made by openssl as the Kyma procedure does; returns the PEM CSR.
fn openssl_csr(dir: &std::path::Path, keygen: &[&str], subj: &str, extra: &[&str]) -> Vec<u8> {
    std::fs::read(Openssl::find().csr(dir, keygen, subj, extra)).unwrap()
}

fn spki_of_csr(dir: &std::path::Path, csr: &[u8]) -> String {
    let file = write(dir, "spki.csr", csr);
    Openssl::find().ok(["req", "-in", file.to_str().unwrap(), "-pubkey", "-noout"])
}

fn spki_of_cert(dir: &std::path::Path, der: &[u8]) -> String {
    let file = write(
        dir,
        "spki.crt",
        evergreen_pki::pem::encode("CERTIFICATE", der),
    );
    Openssl::find().ok(["x509", "-in", file.to_str().unwrap(), "-pubkey", "-noout"])
}

#[test]
fn openssl_csrs_of_every_key_type_are_signed_with_exactly_their_public_key() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let dir = tempfile::tempdir().unwrap();
    let keygens: [&[&str]; 4] = [
        &evergreen_test_util::OPENSSL_P256,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
        ],
        &["genpkey", "-algorithm", "ed25519"],
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
    ];
    for keygen in keygens {
        let pem = openssl_csr(
            dir.path(),
            keygen,
            "/CN=kyma-app/O=Organization/OU=OrgUnit/L=Waldorf/ST=Waldorf/C=DE",
            &[],
        );
        let csr = CertificateRequest::from_pem("client.csr", &pem).unwrap();
        assert_eq!(
            csr.subject().to_string(),
            "CN=kyma-app, O=Organization, OU=OrgUnit, L=Waldorf, ST=Waldorf, C=DE"
        );
        let issued = h
            .client
            .issue(&CsrPolicy::new(Profile::Client).decide(&csr).unwrap(), now)
            .unwrap();
        let info = CertificateInfo::from_der(&issued.der).unwrap();
        assert_eq!(info.public_key, csr.public_key().spki_der(), "{keygen:?}");
        assert_eq!(
            spki_of_cert(dir.path(), &issued.der),
            spki_of_csr(dir.path(), &pem)
        );
        assert_eq!(&info.subject, csr.subject());
        assert_verifies(&h, &h.client, &issued.der, Usage::ClientAuth, now);
    }
}

#[test]
fn unknown_and_unwanted_csr_extensions_are_never_copied() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_csr(
        dir.path(),
        &evergreen_test_util::OPENSSL_P256,
        "/CN=web",
        &[
            "-addext",
            "tlsfeature=status_request",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-addext",
            "subjectAltName=DNS:web.example,IP:10.1.2.3",
        ],
    );
    let csr =
        CertificateRequest::from_pem("web.csr", &pem).expect("an unknown extension is accepted");
    let issued = h
        .server
        .issue(&CsrPolicy::new(Profile::Server).decide(&csr).unwrap(), now)
        .unwrap();
    let info = CertificateInfo::from_der(&issued.der).unwrap();
    assert!(!info.is_ca, "a CSR cannot ask for a CA");
    assert_eq!(
        info.subject_alt_names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["DNS:web.example", "IP:10.1.2.3"]
    );
    let file = write(
        dir.path(),
        "web.crt",
        evergreen_pki::pem::encode("CERTIFICATE", &issued.der),
    );
    let text = Openssl::find().ok(["x509", "-in", file.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        !text.contains("TLS Feature") && !text.contains("1.3.6.1.5.5.7.1.24"),
        "{text}"
    );
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert_verifies(&h, &h.server, &issued.der, Usage::ServerAuth, now);
}

#[test]
fn a_csr_with_a_broken_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_csr(
        dir.path(),
        &["genpkey", "-algorithm", "ed25519"],
        "/CN=app",
        &[],
    );
    let der = evergreen_pki::pem::parse_csr("csr", &pem)
        .unwrap()
        .as_ref()
        .to_vec();
    // The last byte is in the signature; the CN's last byte is inside the signed part.
    let mut sig = der.clone();
    *sig.last_mut().unwrap() ^= 1;
    let err = CertificateRequest::from_der(&sig).unwrap_err();
    assert!(matches!(err, Error::Csr(CsrError::BadSignature)), "{err}");
    let mut body = der.clone();
    let at = body.windows(3).position(|w| w == b"app").unwrap();
    body[at] = b'b';
    let err = CertificateRequest::from_der(&body).unwrap_err();
    assert!(matches!(err, Error::Csr(CsrError::BadSignature)), "{err}");
    assert!(err.to_string().contains("altered"), "{err}");
}

#[test]
fn truncated_weak_and_unsupported_csrs_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_csr(
        dir.path(),
        &evergreen_test_util::OPENSSL_P256,
        "/CN=app",
        &[],
    );
    let cut = &pem[..pem.len() / 2];
    let err = CertificateRequest::from_pem("app.csr", cut)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("app.csr") && err.contains("truncated"),
        "{err}"
    );
    let err = CertificateRequest::from_der(&[0x30, 0x03, 0x02, 0x01]).unwrap_err();
    assert!(matches!(err, Error::Csr(CsrError::Malformed(_))), "{err}");

    let p521 = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
    ];
    let pem = openssl_csr(dir.path(), &p521, "/CN=app", &[]);
    let err = CertificateRequest::from_pem("app.csr", &pem).unwrap_err();
    assert!(
        matches!(err, Error::Csr(CsrError::UnsupportedKey(_))),
        "{err}"
    );

    let key = dir.path().join("client.key");
    let out = dir.path().join("sha1.csr");
    let sha1 = Openssl::find().run([
        "req",
        "-new",
        "-sha1",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/CN=app",
        "-out",
        out.to_str().unwrap(),
    ]);
    assert!(sha1.status.success(), "openssl makes a SHA-1 CSR: {sha1:?}");
    let err = CertificateRequest::from_pem("sha1.csr", &std::fs::read(&out).unwrap()).unwrap_err();
    assert!(
        matches!(err, Error::Csr(CsrError::WeakSignature(_))),
        "{err}"
    );
}

#[test]
fn server_certificates_need_a_subject_alt_name() {
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_csr(
        dir.path(),
        &["genpkey", "-algorithm", "ed25519"],
        "/CN=web",
        &[],
    );
    let csr = CertificateRequest::from_pem("web.csr", &pem).unwrap();
    let err = CsrPolicy::new(Profile::Server).decide(&csr).unwrap_err();
    assert!(
        err.to_string()
            .contains("at least one subject alternative name"),
        "{err}"
    );
    assert!(CsrPolicy::new(Profile::Client).decide(&csr).is_ok());
}

#[test]
fn a_malformed_san_extension_is_refused_not_ignored() {
    let key = evergreen_pki::PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "app");
    // A SAN extension whose content is not a SEQUENCE of GeneralNames.
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 17],
        vec![0x04, 0x02, 0xde, 0xad],
    )];
    let csr = params.serialize_request(&key).unwrap();
    let err = CertificateRequest::from_der(csr.der()).unwrap_err();
    assert!(
        matches!(err, Error::Csr(CsrError::BadSubjectAltNames(_))),
        "{err}"
    );
}
