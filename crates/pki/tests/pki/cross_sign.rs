use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::chain::{is_signed_by, verify};
use evergreen_pki::cross_sign::cross_sign;
use evergreen_pki::{KeyType, Profile};
use evergreen_test_util::{Openssl, fixed_now};

use crate::issue_leaf;

#[test]
fn a_new_root_cross_signed_by_the_old_one_is_trusted_by_old_clients() {
    let now = fixed_now();
    let old = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let new = evergreen_test_util::hierarchy(KeyType::EcP384, now);
    let cross = cross_sign(new.root.certificate(), &old.root, now).unwrap();

    let c = CertificateInfo::from_der(&cross).unwrap();
    let n = new.root.info();
    assert_eq!(c.subject, n.subject);
    assert_eq!(c.public_key, n.public_key);
    assert_eq!(
        c.subject_key_id, n.subject_key_id,
        "the key identifier is kept"
    );
    assert_eq!(c.authority_key_id, old.root.info().subject_key_id);
    assert!(c.is_ca && c.can_sign_certificates && !c.self_signed);
    assert!(c.not_after <= n.not_after && c.not_after <= old.root.info().not_after);
    assert!(is_signed_by(&cross, old.root.certificate()).unwrap());

    // A leaf of the new hierarchy verifies for a client that trusts only the old root,
    // through the new role CA and the cross-signed root, in webpki and in openssl.
    let (_, leaf) = issue_leaf(&new.server, Profile::Server, "web", &["web"], now);
    let inter = [new.server.certificate().clone(), cross.clone()];
    let path = verify(
        &leaf.der,
        &inter,
        &old.root_der(),
        Usage::ServerAuth,
        &[],
        now,
    )
    .unwrap();
    assert_eq!(path.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let openssl = Openssl::find();
    openssl
        .verify(
            dir.path(),
            &old.root_der(),
            &inter,
            &leaf.der,
            "sslserver",
            now,
            &[],
        )
        .unwrap();
    openssl
        .verify(dir.path(), &old.root_der(), &[], &cross, "any", now, &[])
        .unwrap();
    // And for new clients that trust only the new root.
    verify(
        &leaf.der,
        &inter,
        &new.root_der(),
        Usage::ServerAuth,
        &[],
        now,
    )
    .unwrap();
}

#[test]
fn only_cas_are_cross_signed() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (_, leaf) = issue_leaf(&h.client, Profile::Client, "app", &[], now);
    let err = cross_sign(&leaf.der, &h.root, now).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}
