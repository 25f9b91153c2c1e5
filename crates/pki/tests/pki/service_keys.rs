//! The service-account key set: rotation keeps old keys, retirement refuses the signer,
//! and each JWK carries exactly the key OpenSSL reads from the same public key.
use base64::Engine as _;
use evergreen_pki::service_keys::{ServiceKeys, jwk, key_id};
use evergreen_pki::{KeyType, pem};
use evergreen_test_util::{Openssl, write};

fn member<'a>(members: &'a [(&'static str, String)], name: &str) -> &'a str {
    &members.iter().find(|(n, _)| *n == name).unwrap().1
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[test]
fn every_jwk_holds_the_key_openssl_reads() {
    let openssl = Openssl::find();
    let dir = tempfile::tempdir().unwrap();
    for (key_type, kty, alg) in [
        (KeyType::EcP256, "EC", "ES256"),
        (KeyType::EcP384, "EC", "ES384"),
        (KeyType::Ed25519, "OKP", "EdDSA"),
        (KeyType::Rsa2048, "RSA", "RS256"),
    ] {
        let keys = ServiceKeys::generate(key_type).unwrap();
        let public = keys.signer().public_key();
        let members = jwk(&public).unwrap();
        assert_eq!(member(&members, "kty"), kty);
        assert_eq!(member(&members, "alg"), alg);
        assert_eq!(member(&members, "use"), "sig");
        assert_eq!(member(&members, "kid"), key_id(&public));
        // The public key as OpenSSL derives it from the private key file.
        let key_file = write(dir.path(), "service.key", keys.to_pem());
        let out = openssl.run([
            "pkey",
            "-in",
            key_file.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        assert!(out.status.success());
        assert_eq!(out.stdout, public.spki_der(), "{key_type}");
        let spki = public.spki_der();
        match kty {
            "EC" => {
                let point = [
                    vec![4u8],
                    b64(member(&members, "x")),
                    b64(member(&members, "y")),
                ]
                .concat();
                assert_eq!(point, spki[spki.len() - point.len()..], "{key_type}");
            }
            "OKP" => assert_eq!(b64(member(&members, "x")), spki[spki.len() - 32..]),
            _ => {
                let out = openssl.run([
                    "rsa",
                    "-in",
                    key_file.to_str().unwrap(),
                    "-noout",
                    "-modulus",
                ]);
                let modulus = String::from_utf8(out.stdout).unwrap();
                let hex: String = b64(member(&members, "n"))
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect();
                assert_eq!(modulus.trim(), format!("Modulus={hex}"));
                assert_eq!(b64(member(&members, "e")), [1, 0, 1]);
            }
        }
    }
}

#[test]
fn rotation_puts_a_new_signer_first_and_retirement_keeps_the_signer() {
    let first = ServiceKeys::generate(KeyType::EcP256).unwrap();
    let old_kid = key_id(&first.signer().public_key());
    let rotated = first.rotated(KeyType::EcP384).unwrap();
    let kids: Vec<String> = rotated.public_keys().iter().map(key_id).collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], old_kid, "the old key is kept, second");
    assert_eq!(rotated.signer().key_type(), KeyType::EcP384);

    // The PEM holds every key, the signer first, and reads back the same.
    let again = ServiceKeys::from_pem("service.key", rotated.to_pem().as_bytes()).unwrap();
    assert_eq!(again.public_keys(), rotated.public_keys());

    let message = rotated.retired(&kids[0]).unwrap_err();
    assert!(message.contains("is the signing key"), "{message}");
    let message = rotated.retired("nope").unwrap_err();
    assert!(
        message.contains(&kids[0]) && message.contains(&kids[1]),
        "{message}"
    );
    let retired = rotated.retired(&old_kid).unwrap();
    assert_eq!(retired.public_keys(), vec![rotated.signer().public_key()]);

    // Unreadable key files are errors that name the file.
    let truncated = &rotated.to_pem()[..100];
    let error = ServiceKeys::from_pem("service.key", truncated.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("service.key"), "{error}");
    let error = ServiceKeys::from_pem("service.key", pem::encode("CERTIFICATE", b"x").as_bytes())
        .unwrap_err();
    assert!(error.to_string().contains("no PEM private key"), "{error}");
}
