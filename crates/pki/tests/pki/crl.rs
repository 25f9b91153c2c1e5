use evergreen_pki::certificate::Usage;
use evergreen_pki::chain::verify;
use evergreen_pki::crl::{CrlInfo, RevocationReason, RevokedCertificate, is_signed_by};
use evergreen_pki::{Duration, KeyType, Profile, pem};
use evergreen_test_util::{Openssl, fixed_now, write};

use crate::issue_leaf;

#[test]
fn a_crl_lists_revoked_serials_with_reasons_and_is_enforced_by_webpki_and_openssl() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (_, revoked) = issue_leaf(&h.client, Profile::Client, "gone", &[], now);
    let (_, kept) = issue_leaf(&h.client, Profile::Client, "kept", &[], now);
    let (_, other) = issue_leaf(&h.client, Profile::Client, "other", &[], now);
    let entries = [
        RevokedCertificate {
            serial: revoked.serial.clone(),
            revoked_at: now,
            reason: RevocationReason::KeyCompromise,
        },
        RevokedCertificate {
            serial: other.serial.clone(),
            revoked_at: now,
            reason: RevocationReason::Superseded,
        },
    ];
    let crl = h
        .client
        .issue_crl(7, &entries, now, now + Duration::days(7))
        .unwrap();

    let info = CrlInfo::from_der(&crl).unwrap();
    assert_eq!(info.crl_number, Some(vec![7]));
    assert_eq!(&info.issuer, &h.client.info().subject);
    assert_eq!(info.revoked.len(), 2);
    assert_eq!(info.revoked[0].reason, RevocationReason::KeyCompromise);
    assert!(info.is_revoked(&revoked.serial) && !info.is_revoked(&kept.serial));
    assert!(is_signed_by(&crl, h.client.certificate()).unwrap());
    assert!(!is_signed_by(&crl, h.server.certificate()).unwrap());

    // webpki
    let inter = [h.client.certificate().clone()];
    let crls = [crl.clone()];
    let err = verify(
        &revoked.der,
        &inter,
        &h.root_der(),
        Usage::ClientAuth,
        &crls,
        now,
    )
    .unwrap_err();
    assert!(err.to_string().contains("is revoked"), "{err}");
    verify(
        &kept.der,
        &inter,
        &h.root_der(),
        Usage::ClientAuth,
        &crls,
        now,
    )
    .unwrap();
    let err = verify(
        &kept.der,
        &inter,
        &h.root_der(),
        Usage::ClientAuth,
        &crls,
        now + Duration::days(8),
    )
    .unwrap_err();
    assert!(err.to_string().contains("CRL is stale"), "{err}");

    // openssl
    let openssl = Openssl::find();
    let dir = tempfile::tempdir().unwrap();
    assert!(openssl.crl_verifies(dir.path(), &crl, &h.client.bundle_pem()));
    assert!(!openssl.crl_verifies(dir.path(), &crl, &h.server.bundle_pem()));
    let crl_file = write(dir.path(), "client-ca.crl", pem::encode("X509 CRL", &crl));
    let text = openssl.ok(["crl", "-in", crl_file.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        text.contains("X509v3 CRL Number") && text.contains("7"),
        "{text}"
    );
    assert!(
        text.contains("Key Compromise") && text.contains("Superseded"),
        "{text}"
    );
    let crl_path = crl_file.to_str().unwrap();
    let at = now + Duration::minutes(1);
    let err = openssl
        .verify(
            dir.path(),
            &h.root_der(),
            &inter,
            &revoked.der,
            "sslclient",
            at,
            &["-crl_check", "-CRLfile", crl_path],
        )
        .unwrap_err();
    assert!(err.contains("certificate revoked"), "{err}");
    openssl
        .verify(
            dir.path(),
            &h.root_der(),
            &inter,
            &kept.der,
            "sslclient",
            at,
            &["-crl_check", "-CRLfile", crl_path],
        )
        .unwrap();
}

#[test]
fn an_empty_crl_is_valid() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::Ed25519, now);
    let crl = h
        .server
        .issue_crl(1, &[], now, now + Duration::days(1))
        .unwrap();
    let info = CrlInfo::from_der(&crl).unwrap();
    assert!(info.revoked.is_empty());
    let dir = tempfile::tempdir().unwrap();
    assert!(Openssl::find().crl_verifies(dir.path(), &crl, &h.server.bundle_pem()));
}

#[test]
fn reasons_have_names_and_codes() {
    for reason in RevocationReason::ALL {
        assert_eq!(reason.name().parse::<RevocationReason>().unwrap(), reason);
        assert_eq!(RevocationReason::from_code(reason.code()), Some(reason));
    }
    assert!(
        "stolen"
            .parse::<RevocationReason>()
            .unwrap_err()
            .contains("key-compromise")
    );
}
