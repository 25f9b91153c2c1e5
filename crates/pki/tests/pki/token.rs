use evergreen_pki::certificate::Fingerprint;
use evergreen_pki::token::JoinToken;
use evergreen_pki::{KeyType, TokenError};
use evergreen_test_util::fixed_now;

#[test]
fn tokens_round_trip_and_pin_the_root() {
    let h = evergreen_test_util::hierarchy(KeyType::EcP256, fixed_now());
    let token = JoinToken::generate(h.root.certificate()).unwrap();
    let text = token.to_string();
    assert!(text.starts_with("EVG10"));
    assert_eq!(text.len(), 5 + 64 + 2 + 6 + 1 + 16);
    let parsed: JoinToken = text.parse().unwrap();
    assert_eq!(parsed, token);
    assert_eq!(parsed.root_hash(), Fingerprint::of(h.root.certificate()));
    assert!(!format!("{token:?}").contains(token.secret()));

    // Any role CA bundle (role CA + root) is accepted; role CAs can rotate freely.
    token.verify_bundle(&h.server.bundle()).unwrap();
    token.verify_bundle(&h.root_der()).unwrap();
    let other = evergreen_test_util::hierarchy(KeyType::EcP256, fixed_now());
    let err = token.verify_bundle(&other.server.bundle()).unwrap_err();
    let TokenError::RootMismatch { expected, found } = &err else {
        panic!("{err}")
    };
    assert_eq!(expected, &token.root_hash().to_string());
    assert_eq!(
        found,
        &format!("sha256:{}", Fingerprint::of(other.root.certificate()))
    );
    assert!(err.to_string().contains(expected.as_str()));
    // A bundle without its root is not enough: the server must present the root.
    assert!(
        token
            .verify_bundle(&[h.server.certificate().clone()])
            .is_err()
    );
}

#[test]
fn malformed_tokens_get_specific_errors() {
    let hash = "a".repeat(64);
    let cases = [
        (
            "K10abc::x.y",
            TokenError::WrongPrefix {
                expected: "EVG10",
                found: "K10ab".into(),
            },
        ),
        (
            &format!("EVG10{hash}x.y") as &str,
            TokenError::MissingSeparator,
        ),
        (
            &format!("EVG10{}::id.secret", &hash[1..]),
            TokenError::HashLength { found: 63 },
        ),
        (
            &format!("EVG10{}zz::id.secret", &hash[2..]),
            TokenError::HashNotHex,
        ),
        (&format!("EVG10{hash}::idsecret"), TokenError::MissingDot),
        (&format!("EVG10{hash}::.secret"), TokenError::EmptyId),
        (&format!("EVG10{hash}::id."), TokenError::EmptySecret),
        (
            &format!("EVG10{hash}::id.se/cret"),
            TokenError::BadCharacter,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<JoinToken>().unwrap_err(), expected, "{text}");
    }
}
