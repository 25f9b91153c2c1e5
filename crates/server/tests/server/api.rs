//! The rest of the API: validity by role, inventory, tokens, trust bundle, metrics,
//! health and the OpenAPI document.
use evergreen_api::{Clock, InventoryPage, Role};
use evergreen_pki::certificate::{CertificateInfo, Fingerprint};
use evergreen_pki::token::JoinToken;
use evergreen_pki::{DistinguishedName, Duration, pem};
use evergreen_test_util::server::TestServer;

#[tokio::test]
async fn applications_get_92_days_and_nodes_365() {
    let t = TestServer::start().await;
    for (role, days) in [(Role::App, 92), (Role::Node, 365)] {
        let c = t
            .enroll(role, &DistinguishedName::common_name(format!("{role}-1")))
            .await;
        crate::assert_client_chain(&t, &c.chain);
        let info = CertificateInfo::from_der(c.leaf()).unwrap();
        let lifetime = info.not_after - info.not_before - evergreen_pki::authority::BACKDATE;
        assert_eq!(lifetime.whole_days(), days, "{role}");
        let record = t
            .server
            .state
            .store
            .certificate_by_serial(&info.serial_hex())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.role, role.as_str());
        assert!(record.owner.starts_with("token:"));
    }
}

#[tokio::test]
async fn the_trust_bundle_holds_the_root_the_tokens_pin() {
    let t = TestServer::start().await;
    let response = t.anonymous().send("GET", "/cacerts", None).await.unwrap();
    let bundle = pem::parse_certificates("cacerts", &response.body).unwrap();
    assert_eq!(bundle.len(), 4, "root and three role CAs");
    let token: JoinToken = t.node_token("node-1").await.parse().unwrap();
    token.verify_bundle(&bundle).unwrap();
    assert_eq!(token.root_hash(), Fingerprint::of(&t.root()));
}

#[tokio::test]
async fn the_inventory_pages_and_filters() {
    let t = TestServer::start().await;
    for i in 0..5 {
        t.enroll(
            Role::App,
            &DistinguishedName::common_name(format!("app-{i}")),
        )
        .await;
    }
    let admin = t.admin();
    let mut seen = Vec::new();
    let mut path = "/v1/certificates?limit=3".to_owned();
    loop {
        let page: InventoryPage = admin.get_json(&path).await.unwrap();
        seen.extend(page.certificates.iter().map(|c| c.serial.clone()));
        match page.next_cursor {
            Some(cursor) => path = format!("/v1/certificates?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    // Five apps, the serving certificate and the admin credential.
    assert_eq!(seen.len(), 7);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7, "no row twice across pages");

    let soon: InventoryPage = admin
        .get_json("/v1/certificates?expiring_within=100d")
        .await
        .unwrap();
    assert_eq!(soon.certificates.len(), 5, "the 92-day certificates");
    t.clock.advance(Duration::days(93));
    t.server.check_now().await.unwrap();
    let expired: InventoryPage = t
        .admin()
        .get_json("/v1/certificates?status=expired")
        .await
        .unwrap();
    assert_eq!(expired.certificates.len(), 5);
    let response = t
        .admin()
        .send("GET", "/v1/certificates?status=sleeping", None)
        .await
        .unwrap();
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn metrics_health_and_the_api_description() {
    let t = TestServer::start().await;
    let app = t
        .enroll(Role::App, &DistinguishedName::common_name("app"))
        .await;
    let _ = t
        .anonymous()
        .send(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(b"{}".to_vec()),
        )
        .await;
    let metrics = String::from_utf8(
        t.anonymous()
            .send("GET", "/metrics", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(
        metrics.contains("evergreen_enrollments_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("evergreen_requests_refused_total{reason=\"no_client_certificate\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("evergreen_ca_expiry_timestamp_seconds{ca=\"client-ca\""),
        "{metrics}"
    );
    let serial = CertificateInfo::from_der(app.leaf()).unwrap().serial_hex();
    let not_after = CertificateInfo::from_der(app.leaf())
        .unwrap()
        .not_after
        .unix_timestamp();
    // Anyone sees counts and the soonest expiry, never a subject or a serial.
    assert!(
        metrics.contains("evergreen_certificates_active{role=\"app\",issuer=\"client-ca\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "evergreen_certificates_soonest_expiry_timestamp_seconds{{role=\"app\",issuer=\"client-ca\"}} {not_after}"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&serial) && !metrics.contains("CN=app"),
        "{metrics}"
    );
    // Admins see every certificate; others are refused.
    let detail = t
        .admin()
        .send("GET", "/v1/metrics/certificates", None)
        .await
        .unwrap();
    assert_eq!(detail.status, 200);
    assert!(String::from_utf8(detail.body).unwrap().contains(&format!(
        "serial=\"{serial}\",subject=\"CN=app\",role=\"app\",issuer=\"client-ca\"}} {not_after}"
    )));
    for who in [t.anonymous(), t.client(&app)] {
        let refused = who
            .send("GET", "/v1/metrics/certificates", None)
            .await
            .unwrap();
        assert!([401, 403].contains(&refused.status), "{}", refused.status);
    }

    assert_eq!(
        t.anonymous()
            .send("GET", "/healthz", None)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        t.anonymous()
            .send("GET", "/readyz", None)
            .await
            .unwrap()
            .status,
        200
    );
    let doc: serde_json::Value = t.anonymous().get_json("/v1/openapi.json").await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    // The API's words are enums in the document, as on the wire.
    for (schema, words) in [
        ("Scope", &["cluster", "node"][..]),
        ("Kind", &["selfsigned", "provided", "secret"][..]),
        ("Usage", &["server", "client", "peer"][..]),
        (
            "Status",
            &["active", "expired", "superseded", "revoked"][..],
        ),
    ] {
        assert_eq!(
            doc["components"]["schemas"][schema]["enum"],
            serde_json::json!(words),
            "{schema}"
        );
    }
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        evergreen_server::routes::document().paths.paths.len()
    );
}

/// The OpenAPI document is generated from the router, so every operation it lists is one
/// the router serves (never the "no such endpoint" fallback or a 405), every change is
/// audited under a name, and every path the clients call is in it.
#[tokio::test]
async fn the_openapi_document_lists_exactly_what_the_router_serves() {
    let t = TestServer::start().await;
    let operations = evergreen_server::openapi::operations(evergreen_server::routes::document());
    for (method, path) in [
        ("GET", "/cacerts"),
        ("POST", "/v1/enroll"),
        ("POST", "/v1/applications/certificates/renewals"),
        ("POST", "/v1/certificates/revocations"),
        ("GET", "/v1/certificates"),
        ("GET", "/v1/crl/{ca}"),
        ("POST", "/v1/tokens"),
        ("GET", "/v1/agent/watch"),
        ("POST", "/v1/agent/issue"),
        ("POST", "/v1/agent/status"),
        ("PUT", "/v1/cluster/update_cert"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    ] {
        assert!(
            operations.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert!(operations.len() >= 30, "{}", operations.len());
    let admin = t.admin();
    for (method, path) in &operations {
        let probe = path
            .replace("{ca}", "client-ca")
            .replace("{name}", "no-such-certificate")
            .replace("{node}", "no-such-node");
        // A body no handler accepts, so nothing is changed by the probe itself.
        let body = (method != "GET").then(|| b"{\"noSuchField\": true}".to_vec());
        let answer = admin.send(method, &probe, body).await.unwrap();
        let text = String::from_utf8_lossy(&answer.body);
        assert_ne!(answer.status, 405, "{method} {path}: {text}");
        assert!(
            !text.contains("no such endpoint"),
            "{method} {path} is documented but not routed: {text}"
        );
        if method != "GET" {
            assert!(
                evergreen_server::routes::action_of(&method.parse().unwrap(), path).is_some(),
                "{method} {path} changes the cluster but has no audit action"
            );
        }
    }
    // And what is not documented is not served.
    let unknown = admin
        .send("GET", "/v1/no-such-endpoint", None)
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    assert!(String::from_utf8_lossy(&unknown.body).contains("no such endpoint"));
    let _ = t.clock.now();
}

#[tokio::test]
async fn tokens_are_for_nodes_and_applications_only() {
    let t = TestServer::start().await;
    let request = evergreen_api::TokenRequest {
        role: Role::Admin,
        ..Default::default()
    };
    let result = t
        .admin()
        .json::<_, evergreen_api::TokenResponse>("POST", "/v1/tokens", Some(&request))
        .await;
    let message = crate::refusal(result, 400);
    assert!(message.contains("for node or app, not admin"), "{message}");
    crate::assert_audited_refusal(&t, "token.create", "for node or app").await;
    let app = t
        .enroll(Role::App, &DistinguishedName::common_name("app"))
        .await;
    let request = evergreen_api::TokenRequest {
        role: Role::Node,
        node: Some("node-1".into()),
        ..Default::default()
    };
    let result = t
        .client(&app)
        .json::<_, evergreen_api::TokenResponse>("POST", "/v1/tokens", Some(&request))
        .await;
    crate::refusal(result, 403);
    crate::assert_audited_refusal(&t, "token.create", "for admin certificates").await;
}

#[test]
fn clients_wait_longer_than_the_longest_watch() {
    assert!(evergreen_api::client::REQUEST_TIMEOUT > evergreen_server::MAX_WATCH);
}
