use evergreen_pki::cross_sign::cross_sign;
use evergreen_pki::integrity::{IntegrityReport, StagedCa};
use evergreen_pki::{CertificateDer, DistinguishedName, Duration, KeyType, PrivateKey};
use evergreen_test_util::fixed_now;

fn check(
    bundle: &[CertificateDer<'static>],
    key: Option<&PrivateKey>,
    roots: &[CertificateDer<'static>],
) -> IntegrityReport {
    let mut report = IntegrityReport::new();
    report.check_ca(
        &StagedCa {
            cert_file: "server-ca.crt",
            key_file: "server-ca.key",
            bundle,
            key,
        },
        roots,
        fixed_now(),
    );
    report
}

#[test]
fn a_cross_signed_bundle_passes() {
    let now = fixed_now();
    let old = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let new = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let cross = cross_sign(new.root.certificate(), &old.root, now).unwrap();
    let bundle = vec![
        new.server.certificate().clone(),
        cross.clone(),
        new.root.certificate().clone(),
    ];
    let report = check(&bundle, Some(new.server.key()), &old.root_der());
    assert_eq!(report.failures, vec![], "{report}");
    // A role CA rotated under the same root passes directly.
    let same_root = old
        .root
        .new_intermediate(
            DistinguishedName::common_name("server-ca-2"),
            PrivateKey::generate(KeyType::EcP256).unwrap(),
            0,
            Duration::days(100),
            now,
        )
        .unwrap();
    let report = check(&same_root.bundle(), Some(same_root.key()), &old.root_der());
    assert_eq!(report.failures, vec![], "{report}");
    // The root itself, cross-signed.
    let root_bundle = vec![new.root.certificate().clone(), cross];
    let report = check(&root_bundle, Some(new.root.key()), &old.root_der());
    assert_eq!(report.failures, vec![], "{report}");
}

#[test]
fn each_failure_is_named_and_all_are_reported_together() {
    let now = fixed_now();
    let old = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let unrelated = evergreen_test_util::hierarchy(KeyType::EcP256, now);

    let single = check(
        &[unrelated.server.certificate().clone()],
        Some(unrelated.server.key()),
        &old.root_der(),
    );
    assert!(
        single
            .failures
            .iter()
            .any(|f| f.reason.contains("holds only the new CA")),
        "{single}"
    );

    let report = check(
        &unrelated.server.bundle(),
        Some(unrelated.server.key()),
        &old.root_der(),
    );
    assert_eq!(report.failures.len(), 1, "{report}");
    assert!(
        report.failures[0]
            .reason
            .contains("does not verify against the current root"),
        "{report}"
    );
    assert_eq!(report.failures[0].file, "server-ca.crt");
    assert!(report.to_string().contains("CN=test-server-ca"), "{report}");

    let mismatch = check(
        &old.server.bundle(),
        Some(old.client.key()),
        &old.root_der(),
    );
    assert_eq!(mismatch.failures.len(), 1, "{mismatch}");
    assert_eq!(mismatch.failures[0].file, "server-ca.key");
    assert!(
        mismatch.failures[0].reason.contains("does not match"),
        "{mismatch}"
    );

    let missing = check(&old.server.bundle(), None, &old.root_der());
    assert!(
        missing.failures[0].reason.contains("key file is missing"),
        "{missing}"
    );

    // Three faults at once: single certificate, unrelated root, wrong key.
    let all = check(
        &[unrelated.server.certificate().clone()],
        Some(old.client.key()),
        &old.root_der(),
    );
    assert_eq!(all.failures.len(), 3, "{all}");
    let text = all.to_string();
    assert!(text.starts_with("3 integrity checks failed:"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn expired_and_non_ca_certificates_fail() {
    let now = fixed_now();
    let old = evergreen_test_util::hierarchy(KeyType::EcP256, now - Duration::days(10));
    let short = old
        .root
        .new_intermediate(
            DistinguishedName::common_name("short-ca"),
            PrivateKey::generate(KeyType::EcP256).unwrap(),
            0,
            Duration::days(1),
            now - Duration::days(3),
        )
        .unwrap();
    let report = check(&short.bundle(), Some(short.key()), &old.root_der());
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.reason.starts_with("expired at")),
        "{report}"
    );

    let (key, leaf) = crate::issue_leaf(
        &old.client,
        evergreen_pki::Profile::Client,
        "leaf",
        &[],
        now,
    );
    let report = check(
        &[leaf.der, old.client.certificate().clone()],
        Some(&key),
        &old.root_der(),
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.reason.contains("is not a CA")),
        "{report}"
    );
}

#[test]
fn the_current_service_account_key_must_be_kept() {
    let current = PrivateKey::generate(KeyType::EcP256).unwrap().public_key();
    let added = PrivateKey::generate(KeyType::EcP256).unwrap().public_key();
    let mut report = IntegrityReport::new();
    report.check_service_keys("service.key", &current, &[added.clone(), current.clone()]);
    assert!(report.clone().into_result().is_ok());
    report.check_service_keys("service.key", &current, &[added]);
    let err = report.into_result().unwrap_err();
    assert!(
        err.to_string().contains("service.key")
            && err
                .to_string()
                .contains("current service-account signing key"),
        "{err}"
    );
}

#[test]
fn a_new_root_must_come_cross_signed_by_the_current_one() {
    let now = fixed_now();
    let old = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let new = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let cross = cross_sign(new.root.certificate(), &old.root, now).unwrap();
    let root = new.root.certificate();
    let check_root = |pool: &[CertificateDer<'static>], key: &PrivateKey| {
        let mut report = IntegrityReport::new();
        report.check_root(
            "root-ca.crt",
            "root-ca.key",
            root,
            Some(key),
            pool,
            &old.root_der(),
            now,
        );
        report
    };
    let staged = [new.server.certificate().clone(), cross.clone()];
    assert_eq!(check_root(&staged, new.root.key()).failures, vec![]);

    // Not cross-signed: refused, pointing at ca generate --cross-sign-from.
    let report = check_root(&[new.server.certificate().clone()], new.root.key());
    assert_eq!(report.failures.len(), 1, "{report}");
    assert!(report.to_string().contains("--cross-sign-from"), "{report}");

    // Cross-signed by a root the cluster does not trust: refused too.
    let stranger = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let foreign_cross = cross_sign(root, &stranger.root, now).unwrap();
    let report = check_root(&[foreign_cross], new.root.key());
    assert_eq!(report.failures.len(), 1, "{report}");

    // A key that is not the root's, and the current root staged again (no change).
    let report = check_root(&staged, old.root.key());
    assert!(report.to_string().contains("root-ca.key"), "{report}");
    let mut unchanged = IntegrityReport::new();
    unchanged.check_root(
        "root-ca.crt",
        "root-ca.key",
        old.root.certificate(),
        None,
        &[],
        &old.root_der(),
        now,
    );
    assert_eq!(unchanged.failures, vec![]);
}
