use evergreen_pki::authority::BACKDATE;
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::policy::CsrPolicy;
use evergreen_pki::{
    CertificateAuthority, DistinguishedName, Duration, Error, IssueRequest, KeyType, PrivateKey,
    Profile,
};
use evergreen_test_util::{Openssl, fixed_now, wall_clock, write};

use crate::{assert_verifies, issue_leaf};

#[test]
fn every_ca_key_type_issues_server_client_and_peer_certificates() {
    let now = fixed_now();
    for key_type in KeyType::ALL {
        let h = evergreen_test_util::hierarchy(key_type, now);
        let (_, server) = issue_leaf(
            &h.server,
            Profile::Server,
            "web",
            &["web.example", "10.0.0.1"],
            now,
        );
        assert_verifies(&h, &h.server, &server.der, Usage::ServerAuth, now);
        let (_, client) = issue_leaf(&h.client, Profile::Client, "node-1", &[], now);
        assert_verifies(&h, &h.client, &client.der, Usage::ClientAuth, now);
        let (_, peer) = issue_leaf(&h.peer, Profile::Peer, "etcd-1", &["etcd-1"], now);
        assert_verifies(&h, &h.peer, &peer.der, Usage::ServerAuth, now);
        assert_verifies(&h, &h.peer, &peer.der, Usage::ClientAuth, now);
        // A CA certificate verifies in openssl too (webpki cannot take a CA as end entity).
        let dir = tempfile::tempdir().unwrap();
        Openssl::find()
            .verify(
                dir.path(),
                &h.root_der(),
                &[],
                h.server.certificate(),
                "any",
                now,
                &[],
            )
            .unwrap_or_else(|e| panic!("{key_type}: {e}"));
    }
}

#[test]
fn certificates_carry_key_identifiers_random_serials_and_backdated_validity() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (_, leaf) = issue_leaf(&h.server, Profile::Server, "web", &["web"], now);
    let info = CertificateInfo::from_der(&leaf.der).unwrap();
    let ca = h.server.info();
    assert!(info.subject_key_id.is_some());
    assert_eq!(
        info.authority_key_id, ca.subject_key_id,
        "AKI names the issuer's key"
    );
    assert_eq!(ca.authority_key_id, h.root.info().subject_key_id);
    assert!(h.root.info().subject_key_id.is_some() && h.root.info().self_signed);
    assert!(info.serial.len() >= 8, "at least 64 bits of serial");
    assert!(info.serial[0] & 0x80 == 0, "positive serial");
    assert_eq!(info.serial, leaf.serial);
    assert_eq!(
        info.not_before,
        now.replace_nanosecond(0).unwrap() - BACKDATE
    );
    assert_eq!(info.not_after, leaf.not_after);
    assert!(!info.is_ca);
    assert_eq!(info.extended_usages, vec![Usage::ServerAuth]);
    let (_, other) = issue_leaf(&h.server, Profile::Server, "web", &["web"], now);
    assert_ne!(leaf.serial, other.serial);
}

#[test]
fn a_leaf_never_outlives_its_issuer() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy_valid_for(KeyType::EcP256, now, Duration::days(10));
    let (_, leaf) = issue_leaf(&h.client, Profile::Client, "app", &[], now);
    assert!(leaf.shortened);
    assert_eq!(leaf.not_after, h.client.info().not_after);
    assert_verifies(
        &h,
        &h.client,
        &leaf.der,
        Usage::ClientAuth,
        now + Duration::days(9),
    );
}

#[test]
fn a_ca_outside_its_validity_refuses_to_issue() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy_valid_for(KeyType::EcP256, now, Duration::days(10));
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let request = IssueRequest {
        subject: DistinguishedName::common_name("late"),
        subject_alt_names: vec![],
        public_key: key.public_key(),
        profile: Profile::Client,
        validity: Duration::days(1),
    };
    let err = h
        .client
        .issue(&request, now + Duration::days(11))
        .unwrap_err();
    assert!(matches!(err, Error::Validity { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    let err = h
        .client
        .issue(&request, now - Duration::days(1))
        .unwrap_err();
    assert!(err.to_string().contains("not valid until"), "{err}");
}

#[test]
fn a_role_ca_issues_leaves_only() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let err = h
        .server
        .new_intermediate(
            DistinguishedName::common_name("sub"),
            PrivateKey::generate(KeyType::EcP256).unwrap(),
            0,
            Duration::days(30),
            now,
        )
        .unwrap_err();
    assert!(err.to_string().contains("path length is 0"), "{err}");
}

#[test]
fn a_ca_is_refused_with_the_wrong_key_or_a_leaf_certificate() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let wrong = PrivateKey::from_pem("k", h.client.key().to_pem().as_bytes()).unwrap();
    let err = CertificateAuthority::from_parts(h.server.bundle(), wrong).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("test-server-ca"), "{err}");

    let (key, leaf) = issue_leaf(&h.client, Profile::Client, "app", &[], now);
    let err = CertificateAuthority::from_parts(vec![leaf.der], key).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn openssl_checkend_agrees_with_the_issued_validity() {
    let now = wall_clock();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut policy = CsrPolicy::new(Profile::Client);
    let csr =
        evergreen_pki::csr::build(&key, &DistinguishedName::common_name("short"), &[]).unwrap();
    let csr = evergreen_pki::CertificateRequest::from_der(&csr).unwrap();
    policy.validity = Duration::hours(1);
    let short = h.client.issue(&policy.decide(&csr).unwrap(), now).unwrap();
    let long = h
        .client
        .issue(&CsrPolicy::new(Profile::Client).decide(&csr).unwrap(), now)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let openssl = Openssl::find();
    let short_file = write(
        dir.path(),
        "short.pem",
        evergreen_pki::pem::encode("CERTIFICATE", &short.der),
    );
    let long_file = write(
        dir.path(),
        "long.pem",
        evergreen_pki::pem::encode("CERTIFICATE", &long.der),
    );
    let checkend = |file: &std::path::Path, secs: &str| {
        openssl
            .run([
                "x509",
                "-noout",
                "-checkend",
                secs,
                "-in",
                file.to_str().unwrap(),
            ])
            .status
            .success()
    };
    assert!(checkend(&short_file, "60"));
    assert!(!checkend(&short_file, "86400"), "expires within a day");
    assert!(checkend(&long_file, &(300 * 86400).to_string()));
    assert!(!checkend(&long_file, &(366 * 86400).to_string()));
}
