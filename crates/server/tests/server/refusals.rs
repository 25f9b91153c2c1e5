//! Each refusal: the answer's status and message, nothing issued, and an audit entry.
use evergreen_api::{Clock, RenewalRequest, Role, encode_pem};
use evergreen_pki::name::NameAttribute;
use evergreen_pki::{DistinguishedName, Duration, KeyType, PrivateKey, SubjectAltName, pem};
use evergreen_test_util::server::{Credential, TestServer};

use crate::{assert_audited_refusal, refusal};

fn app_subject() -> DistinguishedName {
    DistinguishedName::common_name("kyma-app").with(NameAttribute::Organization, "Organization")
}

/// A renewal request for `key` with `subject` and `sans`.
fn renewal(
    key: &PrivateKey,
    subject: &DistinguishedName,
    sans: &[SubjectAltName],
) -> RenewalRequest {
    let csr = evergreen_pki::csr::build(key, subject, sans).unwrap();
    RenewalRequest {
        csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
    }
}

async fn renew(
    t: &TestServer,
    who: &Credential,
    request: &RenewalRequest,
) -> Result<serde_json::Value, evergreen_api::client::ClientError> {
    t.client(who)
        .json(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(request),
        )
        .await
}

async fn inventory_size(t: &TestServer) -> usize {
    let query = evergreen_store::InventoryQuery {
        limit: 10_000,
        ..Default::default()
    };
    t.server
        .state
        .store
        .list_certificates(&query)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn renewal_without_a_client_certificate() {
    let t = TestServer::start().await;
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let result = t
        .anonymous()
        .json::<_, serde_json::Value>(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(&renewal(&key, &app_subject(), &[])),
        )
        .await;
    assert!(refusal(result, 401).contains("needs a client certificate"));
    assert_audited_refusal(&t, "renew", "needs a client certificate").await;
}

#[tokio::test]
async fn renewal_of_an_expired_certificate() {
    let t = TestServer::start().await;
    let app = t.enroll(Role::App, &app_subject()).await;
    t.clock.advance(Duration::days(93));
    let before = inventory_size(&t).await;
    let message = refusal(
        renew(&t, &app, &renewal(&app.key, &app_subject(), &[])).await,
        403,
    );
    assert!(
        message.contains("expired at") && message.contains("enroll again"),
        "{message}"
    );
    assert_eq!(inventory_size(&t).await, before, "nothing issued");
    assert_audited_refusal(&t, "renew", "expired at").await;
}

#[tokio::test]
async fn renewal_with_a_foreign_certificate() {
    let t = TestServer::start().await;
    let other = evergreen_test_util::hierarchy(KeyType::EcP256, t.clock.now());
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let request = evergreen_pki::IssueRequest {
        subject: app_subject(),
        subject_alt_names: vec![],
        public_key: key.public_key(),
        profile: evergreen_pki::Profile::Client,
        validity: Duration::days(30),
    };
    let leaf = other.client.issue(&request, t.clock.now()).unwrap();
    let foreign = Credential {
        chain: vec![leaf.der, other.client.certificate().clone()],
        key,
        bundle: evergreen_api::CertificateBundle {
            crt: String::new(),
            client_crt: String::new(),
            ca_crt: String::new(),
        },
    };
    let message = refusal(
        renew(&t, &foreign, &renewal(&foreign.key, &app_subject(), &[])).await,
        401,
    );
    assert!(
        message.contains("was not issued by this cluster"),
        "{message}"
    );
    assert_audited_refusal(&t, "renew", "not issued by this cluster").await;
}

#[tokio::test]
async fn renewal_for_another_subject_or_more_names() {
    let t = TestServer::start().await;
    let app = t.enroll(Role::App, &app_subject()).await;
    let before = inventory_size(&t).await;

    let other = app_subject().with(NameAttribute::OrganizationalUnit, "Finance");
    let message = refusal(renew(&t, &app, &renewal(&app.key, &other, &[])).await, 403);
    assert!(
        message.contains("does not match the certificate subject")
            && message.contains("OU=Finance is extra"),
        "{message}"
    );
    assert_audited_refusal(&t, "renew", "does not match the certificate subject").await;

    let changed =
        DistinguishedName::common_name("admin").with(NameAttribute::Organization, "Organization");
    let message = refusal(
        renew(&t, &app, &renewal(&app.key, &changed, &[])).await,
        403,
    );
    assert!(
        message.contains("CN is \"admin\", expected \"kyma-app\""),
        "{message}"
    );

    let sans = ["extra.example".parse().unwrap()];
    let message = refusal(
        renew(&t, &app, &renewal(&app.key, &app_subject(), &sans)).await,
        403,
    );
    assert!(
        message.contains("DNS:extra.example, which is not allowed here (allowed: none)"),
        "{message}"
    );
    assert_audited_refusal(&t, "renew", "not allowed here").await;
    assert_eq!(inventory_size(&t).await, before, "nothing issued");
}

#[tokio::test]
async fn renewal_with_a_broken_csr() {
    let t = TestServer::start().await;
    let app = t.enroll(Role::App, &app_subject()).await;
    let csr = evergreen_pki::csr::build(&app.key, &app_subject(), &[]).unwrap();
    let mut der = csr.as_ref().to_vec();
    *der.last_mut().unwrap() ^= 1;
    let broken = RenewalRequest {
        csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &der)),
    };
    let message = refusal(renew(&t, &app, &broken).await, 400);
    assert!(
        message.contains("CSR signature does not verify"),
        "{message}"
    );
    assert_audited_refusal(&t, "renew", "CSR signature does not verify").await;

    let pem_text = pem::encode("CERTIFICATE REQUEST", csr.as_ref());
    let truncated = RenewalRequest {
        csr: encode_pem(&pem_text[..pem_text.len() / 2]),
    };
    let message = refusal(renew(&t, &app, &truncated).await, 400);
    assert!(message.contains("truncated"), "{message}");

    let not_base64 = RenewalRequest { csr: "!!!".into() };
    let message = refusal(renew(&t, &app, &not_base64).await, 400);
    assert!(message.contains("base64"), "{message}");
}

#[tokio::test]
async fn oversized_malformed_and_misrouted_requests() {
    let t = TestServer::start().await;
    let app = t.enroll(Role::App, &app_subject()).await;
    let huge = vec![b'x'; 200 * 1024];
    let response = t
        .client(&app)
        .send("POST", "/v1/applications/certificates/renewals", Some(huge))
        .await
        .unwrap();
    assert_eq!(response.status, 413);
    let body: evergreen_api::ErrorBody = serde_json::from_slice(&response.body).unwrap();
    assert!(body.error.contains("larger than"), "{body:?}");

    let response = t
        .client(&app)
        .send(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(b"{not json".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    let response = t.anonymous().send("GET", "/v1/nope", None).await.unwrap();
    assert_eq!(response.status, 404);
    assert!(String::from_utf8_lossy(&response.body).contains("openapi"));

    // An application certificate is not an admin credential.
    let message = refusal(
        t.client(&app)
            .get_json::<serde_json::Value>("/v1/certificates")
            .await,
        403,
    );
    assert!(
        message.contains("for admin certificates") && message.contains("is a app certificate"),
        "{message}"
    );
    assert_audited_refusal(&t, "inventory", "for admin certificates").await;
}

#[tokio::test]
async fn enrollment_with_bad_tokens() {
    let t = TestServer::start().await;
    let good = t.node_token("node-1").await;
    let subject = DistinguishedName::common_name("node-1");
    let (id_and_secret, hash) = (good.split("::").nth(1).unwrap(), &good[5..69]);
    let (id, _) = id_and_secret.split_once('.').unwrap();
    let other_root = "0".repeat(64);
    let cases = [
        ("K10abc".to_owned(), "malformed"),
        (format!("EVG10{hash}::nosuch.secret"), "is not known"),
        (format!("EVG10{hash}::{id}.wrongsecret"), "wrong secret"),
        (
            format!("EVG10{other_root}::{id_and_secret}"),
            "for another cluster",
        ),
    ];
    for (token, expected) in cases {
        let message = refusal(t.enroll_with(&token, &subject, &[]).await.map(|_| ()), 401);
        assert!(message.contains(expected), "{token}: {message}");
        assert_audited_refusal(&t, "enroll", expected).await;
        // Anonymous refusals from one source share a row a minute (see the attack tests).
        t.clock.advance(evergreen_test_util::AUDIT_WINDOW);
    }
    // A refused enrollment counted no use: the single-use token still enrolls, once.
    t.enroll_with(&good, &subject, &[]).await.unwrap();
    let message = refusal(t.enroll_with(&good, &subject, &[]).await.map(|_| ()), 401);
    assert!(message.contains("all it allows"), "{message}");

    // A token works within its time to live, not after it.
    let late = t.node_token("node-2").await;
    t.clock.advance(Duration::hours(24) + Duration::seconds(1));
    let node_2 = DistinguishedName::common_name("node-2");
    let message = refusal(t.enroll_with(&late, &node_2, &[]).await.map(|_| ()), 401);
    assert!(message.contains("expired at"), "{message}");
    assert_audited_refusal(&t, "enroll", "expired at").await;
}
