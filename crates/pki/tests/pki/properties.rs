//! Property tests: for any profile, key type, validity and moment, what is issued obeys
//! the profile; for any subject and SANs, the CSR policy decides as it says.
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::chain::verify;
use evergreen_pki::name::NameAttribute;
use evergreen_pki::policy::{CsrPolicy, SanRule, SubjectRule};
use evergreen_pki::{
    CertificateAuthority, CertificateRequest, DistinguishedName, Duration, IssueRequest, KeyType,
    PolicyError, PrivateKey, Profile, SubjectAltName,
};
use evergreen_test_util::fixed_now;
use proptest::prelude::*;
use x509_parser::prelude::FromDer;

fn key_type() -> impl Strategy<Value = KeyType> {
    prop_oneof![
        Just(KeyType::EcP256),
        Just(KeyType::EcP384),
        Just(KeyType::Ed25519)
    ]
}

fn profile() -> impl Strategy<Value = Profile> {
    prop_oneof![
        Just(Profile::Server),
        Just(Profile::Client),
        Just(Profile::Peer),
        Just(Profile::IntermediateCa { path_len: 0 }),
    ]
}

fn subject() -> impl Strategy<Value = DistinguishedName> {
    (
        "[a-z][a-z0-9-]{0,15}",
        proptest::option::of("[A-Za-z ]{1,12}"),
        proptest::option::of("[a-z]{1,8}"),
    )
        .prop_map(|(cn, o, ou)| {
            let mut dn = DistinguishedName::common_name(cn);
            if let Some(o) = o {
                dn = dn.with(NameAttribute::Organization, o);
            }
            if let Some(ou) = ou {
                dn = dn.with(NameAttribute::OrganizationalUnit, ou);
            }
            dn
        })
}

fn sans() -> impl Strategy<Value = Vec<SubjectAltName>> {
    proptest::collection::btree_set("[a-z]{1,8}(\\.[a-z]{1,8}){0,2}", 0..4)
        .prop_map(|set| set.into_iter().map(SubjectAltName::Dns).collect())
}

/// The extension OIDs an Evergreen certificate may carry.
const ALLOWED_EXTENSIONS: [&str; 6] = [
    "2.5.29.19",
    "2.5.29.15",
    "2.5.29.37",
    "2.5.29.17",
    "2.5.29.14",
    "2.5.29.35",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn issued_certificates_obey_their_profile(
        ca_key in key_type(),
        leaf_key in key_type(),
        profile in profile(),
        ca_days in 1i64..4000,
        leaf_days in 1i64..4000,
        at in 0.0f64..1.0,
    ) {
        let start = fixed_now();
        let root = CertificateAuthority::new_root(
            DistinguishedName::common_name("prop-root"),
            PrivateKey::generate(ca_key).unwrap(),
            Duration::days(ca_days),
            start,
        ).unwrap();
        let now = start + Duration::days(ca_days) * at;
        let key = PrivateKey::generate(leaf_key).unwrap();
        let issued = root.issue(&IssueRequest {
            subject: DistinguishedName::common_name("prop-leaf"),
            subject_alt_names: vec![SubjectAltName::Dns("leaf.test".into())],
            public_key: key.public_key(),
            profile,
            validity: Duration::days(leaf_days),
        }, now).unwrap();
        let info = CertificateInfo::from_der(&issued.der).unwrap();
        let ca = root.info();
        prop_assert_eq!(info.is_ca, profile.is_ca());
        prop_assert_eq!(&info.extended_usages, &profile.usages().to_vec());
        prop_assert!(info.not_after <= ca.not_after, "never outlives the issuer");
        prop_assert!(info.not_before >= ca.not_before && info.not_before <= now);
        prop_assert_eq!(issued.shortened, now + Duration::days(leaf_days) > ca.not_after + Duration::seconds(1));
        prop_assert!(info.subject_key_id.is_some());
        prop_assert_eq!(&info.authority_key_id, &ca.subject_key_id);
        prop_assert_eq!(&info.public_key, &key.public_key().spki_der().to_vec());
        if profile.is_ca() {
            prop_assert_eq!(info.path_len, Some(0));
            prop_assert!(info.can_sign_certificates && info.can_sign_crls);
        } else {
            for usage in profile.usages() {
                verify(&issued.der, &[], &[root.certificate().clone()], *usage, &[], now).unwrap();
            }
            let other = if profile.usages().contains(&Usage::ServerAuth) { None } else { Some(Usage::ServerAuth) };
            if let Some(other) = other {
                prop_assert!(verify(&issued.der, &[], &[root.certificate().clone()], other, &[], now).is_err());
            }
        }
        let (_, x509) = x509_parser::certificate::X509Certificate::from_der(&issued.der).unwrap();
        for ext in x509.extensions() {
            prop_assert!(ALLOWED_EXTENSIONS.contains(&ext.oid.to_id_string().as_str()), "{}", ext.oid);
        }
    }

    #[test]
    fn the_csr_policy_decides_as_it_says(
        requested in subject(),
        requested_sans in sans(),
        extra_san in "[a-z]{9,12}",
        changed_value in "[A-Z]{3}",
    ) {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let csr = evergreen_pki::csr::build(&key, &requested, &requested_sans).unwrap();
        let csr = CertificateRequest::from_der(&csr).unwrap();
        prop_assert_eq!(csr.subject(), &requested);
        prop_assert_eq!(csr.subject_alt_names(), &requested_sans[..]);

        let decided = CsrPolicy::new(Profile::Client).decide(&csr).unwrap();
        prop_assert_eq!(&decided.subject, &requested);
        prop_assert_eq!(&decided.subject_alt_names, &requested_sans);

        // Exactly the same subject renews; any attribute changed, added or removed does not.
        let mut policy = CsrPolicy::new(Profile::Client);
        policy.subject = SubjectRule::Exactly(requested.clone());
        prop_assert!(policy.decide(&csr).is_ok());
        let mut variants = vec![requested.clone().with(NameAttribute::Locality, changed_value.clone())];
        let attrs: Vec<(NameAttribute, String)> = requested.attributes().map(|(a, v)| (a.clone(), v.to_owned())).collect();
        for i in 0..attrs.len() {
            let mut changed = DistinguishedName::new();
            let mut dropped = DistinguishedName::new();
            for (j, (a, v)) in attrs.iter().enumerate() {
                changed = changed.with(a.clone(), if i == j { changed_value.clone() } else { v.clone() });
                if i != j {
                    dropped = dropped.with(a.clone(), v.clone());
                }
            }
            variants.push(changed);
            variants.push(dropped);
        }
        for expected in variants {
            policy.subject = SubjectRule::Exactly(expected.clone());
            let refused = matches!(policy.decide(&csr), Err(PolicyError::SubjectMismatch { .. }));
            prop_assert!(refused, "{} vs {}", requested, expected);
        }

        // SANs: a renewal may keep or drop names, never add one.
        let mut policy = CsrPolicy::new(Profile::Client);
        let mut allowed = requested_sans.clone();
        allowed.push(SubjectAltName::Dns(extra_san));
        policy.subject_alt_names = SanRule::AtMost(allowed);
        prop_assert!(policy.decide(&csr).is_ok());
        if let Some((_, fewer)) = requested_sans.split_first() {
            policy.subject_alt_names = SanRule::AtMost(fewer.to_vec());
            let refused = matches!(policy.decide(&csr), Err(PolicyError::SanNotAllowed { .. }));
            prop_assert!(refused);
        }
        let replaced = vec![SubjectAltName::Dns("decided.by.server".into())];
        policy.subject_alt_names = SanRule::Replace(replaced.clone());
        prop_assert_eq!(policy.decide(&csr).unwrap().subject_alt_names, replaced);
    }
}
