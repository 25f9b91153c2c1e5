use evergreen_pki::pem::{encode, encode_certificates, parse_certificates};
use evergreen_pki::{KeyType, PrivateKey};
use evergreen_test_util::fixed_now;

#[test]
fn bundles_parse_in_order_and_skip_keys() {
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, fixed_now());
    let mut text = h.server.key().to_pem();
    text.push_str(&h.server.bundle_pem());
    let certs = parse_certificates("bundle.pem", text.as_bytes()).unwrap();
    assert_eq!(certs, h.server.bundle());
    assert_eq!(encode_certificates(&certs), h.server.bundle_pem());
}

#[test]
fn truncated_corrupt_and_empty_pem_name_the_file_and_the_fault() {
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, fixed_now());
    let pem = h.server.bundle_pem();
    let cut = &pem[..pem.len() - 40];
    let err = parse_certificates("ca.crt", cut.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.crt") && err.contains("truncated"), "{err}");

    // Valid base64 and framing, but the DER inside is cut short.
    let der = h.server.certificate();
    let short = encode("CERTIFICATE", &der[..der.len() - 10]);
    let err = parse_certificates("ca.crt", short.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ca.crt, certificate 1") && err.contains("not valid DER"),
        "{err}"
    );

    let corrupt = pem.replacen("MII", "M!I", 1);
    let err = parse_certificates("ca.crt", corrupt.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.crt"), "{err}");

    let key_only = PrivateKey::generate(KeyType::EcP256).unwrap().to_pem();
    let err = parse_certificates("k", key_only.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
}
