//! Revocation: by the holder (Kyma) and by an admin; CRLs follow at once, and a revoked
//! certificate can neither renew nor open an mTLS session.
use evergreen_api::client::ClientError;
use evergreen_api::{CertificateSummary, Clock, RevocationRequest, Role};
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::crl::CrlInfo;
use evergreen_pki::{CertificateRevocationListDer, DistinguishedName};
use evergreen_test_util::Openssl;
use evergreen_test_util::server::TestServer;

use crate::{assert_audited_refusal, refusal};

async fn crl(t: &TestServer, ca: &str) -> CertificateRevocationListDer<'static> {
    let response = t
        .anonymous()
        .send("GET", &format!("/v1/crl/{ca}"), None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.content_type.as_deref(),
        Some("application/pkix-crl")
    );
    CertificateRevocationListDer::from(response.body)
}

fn is_handshake_refusal(result: &Result<evergreen_api::client::Response, ClientError>) -> bool {
    matches!(
        result,
        Err(ClientError::Http { .. } | ClientError::Handshake { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_revokes_its_own_certificate_and_it_stops_working() {
    let t = TestServer::start().await;
    let app = t
        .enroll(Role::App, &DistinguishedName::common_name("app"))
        .await;
    let serial = CertificateInfo::from_der(app.leaf()).unwrap().serial_hex();
    let before = CrlInfo::from_der(&crl(&t, "client-ca").await).unwrap();
    assert!(!before.is_revoked(&CertificateInfo::from_der(app.leaf()).unwrap().serial));

    let response = t
        .client(&app)
        .send("POST", "/v1/applications/certificates/revocations", None)
        .await
        .unwrap();
    assert_eq!(response.status, 201);

    // The CRL lists it, is newer, and verifies in openssl and webpki.
    let after_der = crl(&t, "client-ca").await;
    let after = CrlInfo::from_der(&after_der).unwrap();
    assert!(after.is_revoked(&CertificateInfo::from_der(app.leaf()).unwrap().serial));
    assert!(after.crl_number > before.crl_number);
    let cluster = t.server.state.cluster.load();
    let dir = tempfile::tempdir().unwrap();
    let openssl = Openssl::find();
    assert!(openssl.crl_verifies(dir.path(), &after_der, &cluster.client_ca.bundle_pem()));
    let err = evergreen_pki::chain::verify(
        app.leaf(),
        &app.chain[1..],
        &[t.root()],
        Usage::ClientAuth,
        std::slice::from_ref(&after_der),
        t.clock.now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("is revoked"), "{err}");
    let crl_file = evergreen_test_util::write(
        dir.path(),
        "client-ca.crl",
        evergreen_pki::pem::encode("X509 CRL", &after_der),
    );
    let verdict = openssl
        .verify(
            dir.path(),
            &[t.root()],
            &app.chain[1..],
            app.leaf(),
            "sslclient",
            t.clock.now(),
            &["-crl_check", "-CRLfile", crl_file.to_str().unwrap()],
        )
        .unwrap_err();
    assert!(verdict.contains("certificate revoked"), "{verdict}");

    // The handshake with it now fails, for any route; without it the server answers.
    let result = t.client(&app).send("GET", "/healthz", None).await;
    assert!(is_handshake_refusal(&result), "{result:?}");
    assert_eq!(
        t.anonymous()
            .send("GET", "/healthz", None)
            .await
            .unwrap()
            .status,
        200
    );
    let record = t
        .server
        .state
        .store
        .certificate_by_serial(&serial)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.revocation_reason.as_deref(),
        Some("cessation-of-operation")
    );
}

#[tokio::test]
async fn an_admin_revokes_by_hash_or_serial() {
    let t = TestServer::start().await;
    let a = t
        .enroll(Role::Node, &DistinguishedName::common_name("node-a"))
        .await;
    let b = t
        .enroll(Role::Node, &DistinguishedName::common_name("node-b"))
        .await;
    let admin = t.admin();
    let a_info = CertificateInfo::from_der(a.leaf()).unwrap();
    let b_info = CertificateInfo::from_der(b.leaf()).unwrap();

    let by_hash = RevocationRequest {
        hash: Some(a_info.fingerprint.to_string()),
        reason: Some("key-compromise".into()),
        ..Default::default()
    };
    let revoked: CertificateSummary = admin
        .json("POST", "/v1/certificates/revocations", Some(&by_hash))
        .await
        .unwrap();
    assert_eq!(
        (revoked.status.as_str(), revoked.serial.as_str()),
        ("revoked", a_info.serial_hex().as_str())
    );
    let colon_serial = b_info
        .serial
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let by_serial = RevocationRequest {
        serial: Some(colon_serial),
        ..Default::default()
    };
    let revoked: CertificateSummary = admin
        .json("POST", "/v1/certificates/revocations", Some(&by_serial))
        .await
        .unwrap();
    assert_eq!(revoked.subject, "CN=node-b");

    let info = CrlInfo::from_der(&crl(&t, "client-ca").await).unwrap();
    assert!(info.is_revoked(&a_info.serial) && info.is_revoked(&b_info.serial));
    assert_eq!(
        info.revoked
            .iter()
            .find(|r| r.serial == a_info.serial)
            .unwrap()
            .reason
            .name(),
        "key-compromise"
    );

    let message = refusal(
        admin
            .json::<_, CertificateSummary>("POST", "/v1/certificates/revocations", Some(&by_hash))
            .await,
        409,
    );
    assert!(message.contains("already revoked"), "{message}");
    let unknown = RevocationRequest {
        serial: Some("abcdef".into()),
        ..Default::default()
    };
    let message = refusal(
        admin
            .json::<_, CertificateSummary>("POST", "/v1/certificates/revocations", Some(&unknown))
            .await,
        404,
    );
    assert!(message.contains("no certificate abcdef"), "{message}");
    let both = RevocationRequest {
        serial: Some("ab".into()),
        hash: Some("cd".into()),
        ..Default::default()
    };
    let message = refusal(
        admin
            .json::<_, CertificateSummary>("POST", "/v1/certificates/revocations", Some(&both))
            .await,
        400,
    );
    assert!(message.contains("exactly one"), "{message}");
    assert_audited_refusal(&t, "revoke", "already revoked").await;
    // A node cannot revoke others.
    let c = t
        .enroll(Role::Node, &DistinguishedName::common_name("node-c"))
        .await;
    refusal(
        t.client(&c)
            .json::<_, CertificateSummary>("POST", "/v1/certificates/revocations", Some(&by_serial))
            .await,
        403,
    );

    let response = t
        .anonymous()
        .send("GET", "/v1/crl/nope-ca", None)
        .await
        .unwrap();
    assert_eq!(response.status, 404);
    assert!(String::from_utf8_lossy(&response.body).contains("server-ca, client-ca, peer-ca"));
}

/// A connection is authenticated once and the result reused: a revocation must still stop
/// the next request on a connection opened (and used) before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_refused_once_its_certificate_is_revoked() {
    let t = TestServer::start().await;
    let subject = DistinguishedName::common_name("kept-alive");
    let app = t.enroll(Role::App, &subject).await;
    let info = CertificateInfo::from_der(app.leaf()).unwrap();
    let renewal = || {
        let key = evergreen_pki::PrivateKey::generate(evergreen_pki::key::KeyType::EcP256).unwrap();
        let csr = evergreen_pki::csr::build(&key, &subject, &[]).unwrap();
        let body = evergreen_api::RenewalRequest {
            csr: evergreen_api::encode_pem(&evergreen_pki::pem::encode(
                "CERTIFICATE REQUEST",
                &csr,
            )),
        };
        serde_json::to_vec(&body).unwrap()
    };
    let path = "/v1/applications/certificates/renewals";
    let mut session = t.client(&app).session().await.unwrap();
    for _ in 0..2 {
        let response = session.send("POST", path, Some(renewal())).await.unwrap();
        assert_eq!(response.status, 201);
    }

    let revoke = RevocationRequest {
        serial: Some(info.serial_hex()),
        ..Default::default()
    };
    let _: CertificateSummary = t
        .admin()
        .json("POST", "/v1/certificates/revocations", Some(&revoke))
        .await
        .unwrap();
    let issued_before = t.server.state.store.audit_log(1000).await.unwrap().len();
    let response = session.send("POST", path, Some(renewal())).await.unwrap();
    assert_eq!(
        response.status,
        403,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    let error: evergreen_api::ErrorBody = serde_json::from_slice(&response.body).unwrap();
    assert!(error.error.contains("was revoked"), "{}", error.error);
    // Refused and audited; nothing issued.
    let log = t.server.state.store.audit_log(1000).await.unwrap();
    assert_eq!(log.len(), issued_before + 1);
    assert_eq!(
        (log[0].action.as_str(), log[0].outcome.as_str()),
        ("renew", "refused"),
        "{:?}",
        log[0]
    );
    assert_eq!(
        t.server
            .state
            .metrics
            .renewed
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

fn serial_of(path: &std::path::Path) -> String {
    let chain = evergreen_pki::pem::parse_certificates("", &std::fs::read(path).unwrap()).unwrap();
    CertificateInfo::from_der(&chain[0]).unwrap().serial_hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cannot_lock_itself_out_and_a_revoked_own_certificate_is_reissued_at_start() {
    let t = TestServer::start().await;
    let admin_serial = serial_of(&t.data_dir.join("admin.crt"));

    // Through the holder endpoint and through the admin endpoint alike: 409, saying how to
    // replace the credential, and nothing revoked.
    let own = t
        .admin()
        .json::<(), CertificateSummary>("POST", "/v1/applications/certificates/revocations", None)
        .await;
    let message = refusal(own, 409);
    assert!(message.contains("evergreen admin reissue"), "{message}");
    assert_audited_refusal(&t, "revoke", "refusing to revoke the admin credential").await;
    let by_serial = RevocationRequest {
        hash: None,
        serial: Some(admin_serial.clone()),
        reason: None,
    };
    let message = refusal(
        t.admin()
            .json::<_, CertificateSummary>("POST", "/v1/certificates/revocations", Some(&by_serial))
            .await,
        409,
    );
    assert!(message.contains("evergreen admin reissue"), "{message}");
    let record = t
        .server
        .state
        .store
        .certificate_by_serial(&admin_serial)
        .await
        .unwrap()
        .unwrap();
    assert!(record.revoked_at.is_none());
    let _: evergreen_api::InventoryPage = t.admin().get_json("/v1/certificates").await.unwrap();

    // The serving certificate revoked by an admin, and the admin credential revoked in the
    // datastore while the server was down: the serving certificate is replaced at once, the
    // admin credential at the next start.
    let serving_serial = serial_of(&t.data_dir.join("server/tls/serving.crt"));
    let revoke_serving = RevocationRequest {
        hash: None,
        serial: Some(serving_serial.clone()),
        reason: Some("key-compromise".into()),
    };
    let _: CertificateSummary = t
        .admin()
        .json(
            "POST",
            "/v1/certificates/revocations",
            Some(&revoke_serving),
        )
        .await
        .unwrap();
    // Revoking the certificate the server serves replaces it first: the server never serves
    // a revoked certificate, on disk or on the wire.
    let replaced = serial_of(&t.data_dir.join("server/tls/serving.crt"));
    assert_ne!(replaced, serving_serial);
    let served = t.anonymous().peer_certificates().await.unwrap();
    assert_eq!(
        CertificateInfo::from_der(&served[0]).unwrap().serial_hex(),
        replaced
    );
    evergreen_test_util::assert_chain(&t.root(), &served, Usage::ServerAuth, t.clock.now());
    let data_dir = t.data_dir.clone();
    let clock = t.clock.clone();
    let t = t
        .restart_after(async {
            evergreen_server::revoke_offline(
                &data_dir,
                None,
                &admin_serial,
                evergreen_pki::crl::RevocationReason::KeyCompromise,
                &clock,
            )
            .await
            .unwrap();
        })
        .await
        .unwrap();
    let new_admin = serial_of(&t.data_dir.join("admin.crt"));
    let new_serving = serial_of(&t.data_dir.join("server/tls/serving.crt"));
    assert_ne!(new_admin, admin_serial);
    assert_ne!(new_serving, serving_serial);
    assert_eq!(
        new_serving, replaced,
        "the replacement is not revoked, so it is kept"
    );
    // The new admin works over mTLS with the new serving certificate, which verifies.
    let page: evergreen_api::InventoryPage = t
        .admin()
        .get_json("/v1/certificates?status=revoked")
        .await
        .unwrap();
    let revoked: Vec<&str> = page
        .certificates
        .iter()
        .filter(|r| r.status == "revoked")
        .map(|r| r.serial.as_str())
        .collect();
    assert!(revoked.contains(&admin_serial.as_str()) && revoked.contains(&serving_serial.as_str()));
    let served = t.anonymous().peer_certificates().await.unwrap();
    assert_eq!(
        CertificateInfo::from_der(&served[0]).unwrap().serial_hex(),
        new_serving
    );
    evergreen_test_util::assert_chain(&t.root(), &served, Usage::ServerAuth, t.clock.now());
    let crl = crl(&t, "client-ca").await;
    let listed = CrlInfo::from_der(&crl).unwrap();
    let same = |a: &str, b: &str| a.trim_start_matches('0') == b.trim_start_matches('0');
    assert!(
        listed
            .revoked
            .iter()
            .any(|r| same(&hex(&r.serial), &admin_serial)),
        "the CRL published at start lists the offline revocation"
    );
    let dir = tempfile::tempdir().unwrap();
    let client_ca = t.server.state.cluster.load().client_ca.bundle_pem();
    assert!(Openssl::find().crl_verifies(dir.path(), &crl, &client_ca));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
