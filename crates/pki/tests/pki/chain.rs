use evergreen_pki::certificate::Usage;
use evergreen_pki::chain::verify;
use evergreen_pki::{Duration, KeyType, Profile};
use evergreen_test_util::fixed_now;

use crate::issue_leaf;

#[test]
fn the_path_is_built_from_an_unordered_pool_of_intermediates() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (_, leaf) = issue_leaf(&h.server, Profile::Server, "web", &["web"], now);
    let pool = [
        h.client.certificate().clone(),
        h.peer.certificate().clone(),
        h.server.certificate().clone(),
    ];
    let path = verify(&leaf.der, &pool, &h.root_der(), Usage::ServerAuth, &[], now).unwrap();
    assert_eq!(
        path,
        vec![
            leaf.der.clone(),
            h.server.certificate().clone(),
            h.root.certificate().clone()
        ]
    );
}

#[test]
fn failures_say_what_is_wrong() {
    let now = fixed_now();
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let other = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (_, leaf) = issue_leaf(&h.client, Profile::Client, "app", &[], now);
    let inter = [h.client.certificate().clone()];

    let err = verify(
        &leaf.der,
        &inter,
        &other.root_der(),
        Usage::ClientAuth,
        &[],
        now,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("CN=app")
            && err
                .to_string()
                .contains("does not verify with the key of the CA named"),
        "{err}"
    );
    let err = verify(
        &leaf.der,
        &inter,
        &h.root_der(),
        Usage::ServerAuth,
        &[],
        now,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not valid for this purpose"),
        "{err}"
    );
    let err = verify(
        &leaf.der,
        &inter,
        &h.root_der(),
        Usage::ClientAuth,
        &[],
        now + Duration::days(400),
    )
    .unwrap_err();
    assert!(err.to_string().contains("expired at"), "{err}");
    let err = verify(&leaf.der, &[], &h.root_der(), Usage::ClientAuth, &[], now).unwrap_err();
    assert!(err.to_string().contains("issuer is not among"), "{err}");
}
