use std::os::unix::fs::PermissionsExt;

use evergreen_pki::PrivateKey;
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::pem::parse_certificates;
use evergreen_test_util::{Openssl, wall_clock};

use crate::{evergreen, generate, snapshot, stderr, stdout};

const FILES: [&str; 9] = [
    "client-ca.crt",
    "client-ca.key",
    "peer-ca.crt",
    "peer-ca.key",
    "root-ca.crt",
    "root-ca.key",
    "server-ca.crt",
    "server-ca.key",
    "service.key",
];

#[test]
fn generate_writes_a_verified_hierarchy_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let out = evergreen([
        "ca",
        "generate",
        "--out",
        dir.to_str().unwrap(),
        "--key-type",
        "ec-p384",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Root CA SHA-256 (pinned by join tokens):"),
        "{text}"
    );

    let names: Vec<_> = snapshot(&dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, FILES);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for name in FILES {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let expected = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, expected, "{name}");
    }

    let root =
        parse_certificates("root", &std::fs::read(dir.join("root-ca.crt")).unwrap()).unwrap();
    assert!(
        text.contains(
            &CertificateInfo::from_der(&root[0])
                .unwrap()
                .fingerprint
                .to_string()
        )
    );
    let openssl = Openssl::find();
    for role in ["server-ca", "client-ca", "peer-ca"] {
        let bundle = parse_certificates(
            role,
            &std::fs::read(dir.join(format!("{role}.crt"))).unwrap(),
        )
        .unwrap();
        assert_eq!(bundle.len(), 2, "{role}.crt holds the role CA and the root");
        assert_eq!(bundle[1], root[0]);
        let info = CertificateInfo::from_der(&bundle[0]).unwrap();
        assert!(
            info.subject
                .to_string()
                .starts_with(&format!("CN=evergreen-{role}@")),
            "{}",
            info.subject
        );
        assert_eq!(info.path_len, Some(0));
        let key = PrivateKey::from_pem(
            role,
            &std::fs::read(dir.join(format!("{role}.key"))).unwrap(),
        )
        .unwrap();
        assert!(key.matches_certificate(&bundle[0]).unwrap());
        assert_eq!(key.key_type().name(), "ec-p384");
        let tmp = tempfile::tempdir().unwrap();
        openssl
            .verify(tmp.path(), &root, &[], &bundle[0], "any", wall_clock(), &[])
            .unwrap_or_else(|e| panic!("{role}: {e}"));
    }
    PrivateKey::from_pem(
        "service.key",
        &std::fs::read(dir.join("service.key")).unwrap(),
    )
    .unwrap();
}

#[test]
fn generate_refuses_to_overwrite_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    generate(&dir);
    let before = snapshot(&dir);
    let out = evergreen(["ca", "generate", "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refusing to overwrite existing files"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&dir), before);

    // One file in the way is enough: nothing else is written either.
    let partial = tmp.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("service.key"), "keep me").unwrap();
    let out = evergreen(["ca", "generate", "--out", partial.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("service.key"), "{}", stderr(&out));
    assert_eq!(
        snapshot(&partial),
        vec![("service.key".to_owned(), b"keep me".to_vec())]
    );

    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = evergreen(["ca", "generate", "--out", file.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_key_type_lists_the_valid_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = evergreen([
        "ca",
        "generate",
        "--out",
        tmp.path().to_str().unwrap(),
        "--key-type",
        "dsa",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("ec-p256, ec-p384, ed25519, rsa-2048"),
        "{}",
        stderr(&out)
    );
    assert!(snapshot(tmp.path()).is_empty());
}
