//! CA material made by other tools: the CA set k3s's contrib script makes with openssl,
//! staged before first start; CAs that may not sign CRLs; a refused first start.
use evergreen_api::{Clock, ManualClock, Role};
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::{DistinguishedName, pem};
use evergreen_test_util::Openssl;
use evergreen_test_util::server::{TestServer, tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_on_the_cas_k3s_makes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let openssl = Openssl::find();
    let stamp = evergreen_test_util::wall_clock().unix_timestamp();
    let tls = evergreen_test_util::k3s::custom_ca_certs(&openssl, &data_dir, stamp);
    // The clock starts once openssl has made them (their validity starts when it did).
    let clock = ManualClock::new(evergreen_test_util::wall_clock());
    let staged_root = pem::parse_certificates(
        "root-ca.pem",
        &std::fs::read(tls.join("root-ca.pem")).unwrap(),
    )
    .unwrap()
    .remove(0);

    let t = TestServer::start_in(&data_dir, clock.clone())
        .await
        .unwrap();
    assert_eq!(t.root(), staged_root, "the staged root is the cluster's");
    let notes = t.server.notes.join("\n");
    for expected in [
        "ignored request-header-ca.crt",
        "ignored etcd/server-ca.key",
        "CN=k3s-client-ca@",
        "may not sign CRLs",
    ] {
        assert!(
            notes.contains(expected),
            "{expected} missing from:\n{notes}"
        );
    }
    let cluster = t.server.state.cluster.load();
    assert!(
        cluster
            .peer_ca
            .info()
            .subject
            .to_string()
            .contains("k3s-etcd-peer-ca")
    );

    // Leaves chain to the staged root, through k3s's intermediate, for webpki and openssl.
    let served = t.anonymous().peer_certificates().await.unwrap();
    evergreen_test_util::assert_chain(&staged_root, &served, Usage::ServerAuth, t.clock.now());
    let app = t
        .enroll(Role::App, &DistinguishedName::common_name("app"))
        .await;
    assert_eq!(app.chain.len(), 4, "leaf, client CA, intermediate, root");
    t.assert_client_chain(&app.chain);

    // The client CA may not sign CRLs: none is published, and a revoked leaf is still
    // refused at the next handshake, from the inventory.
    let crl = t
        .anonymous()
        .send("GET", "/v1/crl/client-ca", None)
        .await
        .unwrap();
    assert_eq!(crl.status, 404);
    let serial = CertificateInfo::from_der(app.leaf()).unwrap().serial_hex();
    let _: serde_json::Value = t
        .admin()
        .json(
            "POST",
            "/v1/certificates/revocations",
            Some(&serde_json::json!({"serial": serial})),
        )
        .await
        .unwrap();
    let refused = t
        .client(&app)
        .send(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(b"{}".to_vec()),
        )
        .await;
    assert!(
        refused.is_err(),
        "the revoked leaf's handshake fails: {refused:?}"
    );

    // The metrics and a restart see the same cluster.
    let t = t.restart().await.unwrap();
    assert_eq!(t.root(), staged_root);
    let refused = t
        .client(&app)
        .send(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(b"{}".to_vec()),
        )
        .await;
    assert!(refused.is_err(), "still refused after a restart");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_start_leaves_the_data_dir_as_it_found_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let openssl = Openssl::find();
    let stamp = evergreen_test_util::wall_clock().unix_timestamp();
    let tls = evergreen_test_util::k3s::custom_ca_certs(&openssl, &data_dir, stamp);
    // The clock starts once openssl has made them (their validity starts when it did).
    let clock = ManualClock::new(evergreen_test_util::wall_clock());
    // The client CA's key belongs to the server CA: Evergreen cannot issue with it.
    let right_key = std::fs::read(tls.join("client-ca.key")).unwrap();
    std::fs::copy(tls.join("server-ca.key"), tls.join("client-ca.key")).unwrap();
    let before = tree(dir.path());
    let error = TestServer::start_in(&data_dir, clock.clone())
        .await
        .map(|_| ())
        .expect_err("the start is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("client-ca.key") && message.contains("does not match"),
        "{message}"
    );
    assert_eq!(tree(dir.path()), before, "nothing was created or changed");

    // With the right key back, it starts on the same staged files.
    std::fs::write(tls.join("client-ca.key"), right_key).unwrap();
    let t = TestServer::start_in(&data_dir, clock).await.unwrap();
    assert!(t.server.first_start);
    t.shutdown().await;
}
