use evergreen_pki::{Error, KeyType, PrivateKey};
use evergreen_test_util::{Openssl, fixed_now, write};

#[test]
fn generated_keys_round_trip_through_pem_and_match_openssl() {
    let openssl = Openssl::find();
    let dir = tempfile::tempdir().unwrap();
    for key_type in KeyType::ALL {
        let key = PrivateKey::generate(key_type).unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        let again = PrivateKey::from_pem("key", pem.as_bytes()).unwrap();
        assert_eq!(again.key_type(), key_type);
        assert_eq!(again.public_key(), key.public_key());
        // openssl reads the key and derives the same public key.
        let file = write(dir.path(), "k.pem", &pem);
        let spki_pem = openssl.ok(["pkey", "-in", file.to_str().unwrap(), "-pubout"]);
        let spki_der = rustls_pki_types::pem::PemObject::from_pem_slice(spki_pem.as_bytes())
            .map(|d: rustls_pki_types::SubjectPublicKeyInfoDer<'static>| d.as_ref().to_vec())
            .unwrap();
        assert_eq!(spki_der, key.public_key().spki_der(), "{key_type}");
        assert!(
            !format!("{key:?}").contains(&pem[30..60]),
            "Debug never prints key material"
        );
        assert!(format!("{key:?}").contains("[elided]"));
    }
}

#[test]
fn openssl_keys_in_every_container_load() {
    let openssl = Openssl::find();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: [(&str, &[&str], KeyType); 5] = [
        (
            "sec1.pem",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            KeyType::EcP256,
        ),
        (
            "p384.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
            KeyType::EcP384,
        ),
        (
            "ed.pem",
            &["genpkey", "-algorithm", "ed25519"],
            KeyType::Ed25519,
        ),
        ("rsa1.pem", &["genrsa", "-traditional"], KeyType::Rsa2048),
        (
            "rsa8.pem",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:3072",
            ],
            KeyType::Rsa3072,
        ),
    ];
    for (name, args, expected) in cases {
        let path = format!("{d}/{name}");
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["-out", &path]);
        if args[0] == "genrsa" {
            args.push("2048"); // the key size comes after the options
        }
        openssl.ok(&args);
        let key = PrivateKey::from_pem(name, &std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.key_type(), expected, "{name}");
        let reread = PrivateKey::from_pem(name, key.to_pem().as_bytes()).unwrap();
        assert_eq!(
            reread.public_key(),
            key.public_key(),
            "{name} keeps its container"
        );
    }
}

#[test]
fn unsupported_and_broken_keys_are_refused() {
    let openssl = Openssl::find();
    let dir = tempfile::tempdir().unwrap();
    let p521 = dir.path().join("p521.pem");
    openssl.ok([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
        "-out",
        p521.to_str().unwrap(),
    ]);
    let err = PrivateKey::from_pem("p521.pem", &std::fs::read(&p521).unwrap()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedKey(_)), "{err}");

    let pem = PrivateKey::generate(KeyType::EcP256).unwrap().to_pem();
    let truncated = &pem[..pem.len() / 2];
    let err = PrivateKey::from_pem("tls.key", truncated.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("tls.key") && err.to_string().contains("truncated"),
        "{err}"
    );
    let err = PrivateKey::from_pem("tls.key", b"not a key").unwrap_err();
    assert!(err.to_string().contains("no PEM private key"), "{err}");
}

#[test]
fn a_key_matches_its_own_certificate_only() {
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, fixed_now());
    assert!(
        h.server
            .key()
            .matches_certificate(h.server.certificate())
            .unwrap()
    );
    assert!(
        !h.client
            .key()
            .matches_certificate(h.server.certificate())
            .unwrap()
    );
}
