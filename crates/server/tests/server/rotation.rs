//! CA rotation from staged files, with every integrity check and its refusal; role-CA and
//! root rotation while old leaves keep working; service-account keys; and the renewal
//! window of the certificates the server issues itself.
use std::collections::BTreeMap;

use base64::Engine as _;
use evergreen_api::client::ClientError;
use evergreen_api::{
    CertificateBundle, Clock, Jwks, NamedCertificateStatus, RenewalRequest, Role,
    ServiceKeyRotation, decode_pem, encode_pem,
};
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::service_keys::{ServiceKeys, key_id};
use evergreen_pki::{
    CertificateDer, DistinguishedName, Duration, Fingerprint, KeyType, OffsetDateTime, PrivateKey,
    pem,
};
use evergreen_test_util::server::{Credential, TestServer, stage_role_cas};
use evergreen_test_util::{Openssl, hierarchy};

use crate::{assert_audited_refusal, refusal};

/// Everything a rotation may change: the stored CAs and keys, the revision, and the files.
async fn snapshot(t: &TestServer) -> Vec<Vec<u8>> {
    let store = &t.server.state.store;
    let mut all: Vec<Vec<u8>> = store
        .cas()
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            [
                c.name.into_bytes(),
                c.bundle_pem.into_bytes(),
                c.sealed_key.unwrap_or_default(),
            ]
            .concat()
        })
        .collect();
    all.push(
        store
            .get_meta("service_account_keys")
            .await
            .unwrap()
            .unwrap(),
    );
    all.push(store.revision().await.unwrap().to_be_bytes().to_vec());
    for file in [
        "ca.crt",
        "admin.crt",
        "server/tls/serving.crt",
        "server/token",
    ] {
        all.push(std::fs::read(t.data_dir.join(file)).unwrap());
    }
    all
}

/// Renews `credential` over mTLS with a client trusting `roots`, returning the new chain.
async fn renew(
    t: &TestServer,
    credential: &Credential,
    roots: &[CertificateDer<'static>],
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = CertificateInfo::from_der(&credential.chain[0])
        .unwrap()
        .subject;
    let csr = evergreen_pki::csr::build(&key, &subject, &[]).unwrap();
    let client = evergreen_api::client::Client::with_clock(
        t.url(),
        roots,
        Some((credential.chain.clone(), credential.key.der().clone_key())),
        std::sync::Arc::new(t.clock.clone()),
    )
    .unwrap();
    let bundle: CertificateBundle = client
        .json(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(&RenewalRequest {
                csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
            }),
        )
        .await?;
    Ok(pem::parse_certificates("crt", &decode_pem(&bundle.crt).unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_check_is_refused_and_changes_nothing() {
    let t = TestServer::start().await;
    let now = t.clock.now();
    let current = t.current_root_ca().await;
    let good = stage_role_cas(&current, std::slice::from_ref(current.certificate()), now);
    let before = snapshot(&t).await;

    // A bundle holding only the new CA.
    let mut single = good.clone();
    let lone = pem::parse_certificates("", single["server-ca.crt"].as_bytes()).unwrap();
    single.insert("server-ca.crt".into(), pem::encode("CERTIFICATE", &lone[0]));
    let message = refusal(t.rotate_ca(&single, false).await, 400);
    assert!(
        message.contains("server-ca.crt") && message.contains("holds only the new CA"),
        "{message}"
    );
    assert!(message.contains("1 integrity check failed"), "{message}");
    assert_audited_refusal(&t, "ca.rotate", "holds only the new CA").await;
    assert_eq!(snapshot(&t).await, before);

    // Role CAs under a root the cluster does not trust.
    let foreign = hierarchy(KeyType::EcP256, now);
    let unrelated = stage_role_cas(&foreign.root, &foreign.root_der(), now);
    let message = refusal(t.rotate_ca(&unrelated, false).await, 400);
    assert!(
        message.contains("does not verify against the current root CA"),
        "{message}"
    );
    assert!(
        message.contains("3 integrity checks failed"),
        "one per role CA: {message}"
    );
    assert_eq!(snapshot(&t).await, before);

    // A key that does not match its certificate.
    let mut mismatch = good.clone();
    mismatch.insert(
        "client-ca.key".into(),
        PrivateKey::generate(KeyType::EcP256).unwrap().to_pem(),
    );
    let message = refusal(t.rotate_ca(&mismatch, false).await, 400);
    assert!(
        message.contains("client-ca.key") && message.contains("does not match"),
        "{message}"
    );
    assert_eq!(snapshot(&t).await, before);

    // A service.key without the current signing key.
    let mut service = good.clone();
    service.insert(
        "service.key".into(),
        ServiceKeys::generate(KeyType::EcP256).unwrap().to_pem(),
    );
    let message = refusal(t.rotate_ca(&service, false).await, 400);
    assert!(
        message.contains("current service-account signing key"),
        "{message}"
    );
    assert_eq!(snapshot(&t).await, before);

    // Several at once: all reported together.
    let mut several = single.clone();
    several.insert("client-ca.key".into(), mismatch["client-ca.key"].clone());
    several.insert("service.key".into(), service["service.key"].clone());
    let message = refusal(t.rotate_ca(&several, false).await, 400);
    for expected in [
        "3 integrity checks failed",
        "holds only the new CA",
        "client-ca.key",
        "service-account signing key",
        "Nothing was changed",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert_eq!(snapshot(&t).await, before);

    // Unreadable files and unknown names are refused even with force.
    let mut truncated = good.clone();
    let text = truncated["peer-ca.crt"].clone();
    truncated.insert("peer-ca.crt".into(), text[..text.len() - 40].to_owned());
    let message = refusal(t.rotate_ca(&truncated, true).await, 400);
    assert!(
        message.contains("peer-ca.crt") && message.contains("truncated"),
        "{message}"
    );
    let mut unknown = good.clone();
    unknown.insert("ca.pem".into(), String::new());
    let message = refusal(t.rotate_ca(&unknown, true).await, 400);
    assert!(message.contains("\"ca.pem\" is not a file"), "{message}");
    let message = refusal(t.rotate_ca(&BTreeMap::new(), true).await, 400);
    assert!(message.contains("nothing is staged"), "{message}");
    assert_eq!(snapshot(&t).await, before);
    // Staging the current CAs again changes nothing either.
    let mut same = BTreeMap::new();
    same.insert(
        "root-ca.crt".to_owned(),
        pem::encode("CERTIFICATE", &t.root()),
    );
    let message = refusal(t.rotate_ca(&same, false).await, 400);
    assert!(message.contains("nothing to rotate"), "{message}");
    assert_eq!(snapshot(&t).await, before);

    // Forced: the unrelated CAs go in, the audit log says so.
    let forced = t.rotate_ca(&unrelated, true).await.unwrap();
    assert_eq!(forced.rotated, ["server-ca", "client-ca", "peer-ca"]);
    assert_eq!(forced.forced_past.len(), 3);
    let log = t.server.state.store.audit_log(5).await.unwrap();
    assert!(
        log.iter().any(|e| e.action == "ca.rotate"
            && e.outcome == "ok"
            && e.detail.starts_with("FORCED past 3")),
        "{log:#?}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_cas_rotate_under_the_same_root_while_old_leaves_keep_working() {
    let t = TestServer::start().await;
    let openssl = Openssl::find();
    let dir = tempfile::tempdir().unwrap();
    let node_token = t.node_token("late-node").await;
    let app = t
        .enroll(Role::App, &DistinguishedName::common_name("old-app"))
        .await;
    let old_client_ca = t
        .server
        .state
        .cluster
        .load()
        .client_ca
        .certificate()
        .clone();
    let now = t.clock.now();
    let current = t.current_root_ca().await;
    let files = stage_role_cas(&current, std::slice::from_ref(current.certificate()), now);

    let rotated = t.rotate_ca(&files, false).await.unwrap();
    assert_eq!(rotated.rotated, ["server-ca", "client-ca", "peer-ca"]);
    assert!(rotated.forced_past.is_empty());
    assert_eq!(rotated.root_sha256, Fingerprint::of(&t.root()).to_string());
    assert_eq!(
        rotated.trust_bundle_certificates, 7,
        "the root, three new and three old role CAs"
    );
    let cluster = t.server.state.cluster.load_full();
    let new_server_ca = pem::parse_certificates("", files["server-ca.crt"].as_bytes()).unwrap();
    assert_eq!(cluster.server_ca.certificate(), &new_server_ca[0]);

    // The serving certificate moved to the new server CA at once.
    let served = t.anonymous().peer_certificates().await.unwrap();
    assert!(evergreen_pki::chain::is_signed_by(&served[0], &new_server_ca[0]).unwrap());
    evergreen_test_util::assert_chain(&t.root(), &served, Usage::ServerAuth, t.clock.now());

    // The leaf of the old client CA still authenticates, and renews under the new one.
    let renewed = renew(&t, &app, &t.roots()).await.unwrap();
    assert!(
        evergreen_pki::chain::is_signed_by(&renewed[0], cluster.client_ca.certificate()).unwrap()
    );
    t.assert_client_chain(&renewed);

    // The retired client CA still publishes a CRL, verified by openssl with the old CA.
    let retired = evergreen_server::cluster::RetiredCa::name_for("client-ca", &old_client_ca);
    let response = t
        .anonymous()
        .send("GET", &format!("/v1/crl/{retired}"), None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let old_bundle = pem::encode_certificates([&old_client_ca, &t.root()]);
    assert!(openssl.crl_verifies(dir.path(), &response.body, &old_bundle));

    // The node join token made before still enrolls.
    let node = t
        .enroll_with(
            &node_token,
            &DistinguishedName::common_name("late-node"),
            &[],
        )
        .await
        .unwrap();
    assert!(
        evergreen_pki::chain::is_signed_by(&node.chain[0], cluster.client_ca.certificate())
            .unwrap()
    );

    // A restart loads the new and the retired CAs.
    let data_dir = t.data_dir.clone();
    let clock = t.clock.clone();
    let keep = t.shutdown().await;
    let t = TestServer::start_in(&data_dir, clock).await.unwrap();
    let reloaded = t.server.state.cluster.load_full();
    assert_eq!(reloaded.retired.len(), 3);
    assert_eq!(
        reloaded.client_ca.certificate(),
        cluster.client_ca.certificate()
    );
    renew(&t, &app, &t.roots()).await.unwrap();
    t.shutdown().await;
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_signed_root_rotates_without_force_and_old_trust_still_works() {
    let t = TestServer::start().await;
    let openssl = Openssl::find();
    let dir = tempfile::tempdir().unwrap();
    let old_root = t.root();
    let app = t
        .enroll(Role::App, &DistinguishedName::common_name("app"))
        .await;
    let (root, cross) = t.new_cross_signed_root().await;
    let now = t.clock.now();

    // A new root that is not cross-signed is refused.
    let mut files = stage_role_cas(&root, std::slice::from_ref(root.certificate()), now);
    files.insert("root-ca.crt".into(), root.bundle_pem());
    let message = refusal(t.rotate_ca(&files, false).await, 400);
    assert!(
        message.contains("root-ca.crt") && message.contains("cross-signed"),
        "{message}"
    );
    // A new root with role CAs left out is refused too.
    let mut only_root = BTreeMap::new();
    only_root.insert("root-ca.crt".to_owned(), root.bundle_pem());
    only_root.insert(
        "server-ca.crt".to_owned(),
        pem::encode("CERTIFICATE", &cross),
    );
    let message = refusal(t.rotate_ca(&only_root, false).await, 400);
    assert!(
        message.contains("client-ca.crt: is not staged"),
        "{message}"
    );

    // Each bundle: the role CA, then the new root cross-signed by the current one (not
    // the self-signed new root, which would lead OpenSSL clients that trust only the
    // current root down a dead end).
    let mut files = stage_role_cas(&root, std::slice::from_ref(&cross), now);
    files.insert("root-ca.crt".into(), root.bundle_pem());
    files.insert("root-ca.key".into(), root.key().to_pem());
    let rotated = t.rotate_ca(&files, false).await.unwrap();
    assert_eq!(
        rotated.rotated,
        ["root-ca", "server-ca", "client-ca", "peer-ca"]
    );
    assert_eq!(
        rotated.root_sha256,
        Fingerprint::of(root.certificate()).to_string()
    );
    let bundle = t.roots();
    assert_eq!(bundle[0], *root.certificate(), "the new root first");
    assert!(bundle.contains(&old_root), "the old root stays trusted");
    let token = std::fs::read_to_string(t.data_dir.join("server/token")).unwrap();
    assert!(
        token.contains(&rotated.root_sha256),
        "the server token pins the new root"
    );

    // A client that trusts only the old root still reaches the server (through the
    // cross-signed certificate in the serving chain) and renews.
    let renewed = renew(&t, &app, std::slice::from_ref(&old_root))
        .await
        .unwrap();
    // The new leaf verifies against the new root, and against the old one through the
    // cross-signed root, with webpki and with openssl.
    evergreen_test_util::assert_chain(
        root.certificate(),
        &renewed,
        Usage::ClientAuth,
        t.clock.now(),
    );
    evergreen_pki::chain::verify(
        &renewed[0],
        &renewed[1..],
        std::slice::from_ref(&old_root),
        Usage::ClientAuth,
        &[],
        t.clock.now(),
    )
    .unwrap();
    openssl
        .verify(
            dir.path(),
            std::slice::from_ref(&old_root),
            &renewed[1..],
            &renewed[0],
            "sslclient",
            t.clock.now(),
            &[],
        )
        .unwrap();

    // A restart with the re-pinned token works.
    let data_dir = t.data_dir.clone();
    let clock = t.clock.clone();
    let keep = t.shutdown().await;
    let t = TestServer::start_in(&data_dir, clock).await.unwrap();
    assert_eq!(t.root(), *root.certificate());
    t.shutdown().await;
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_keys_rotate_keep_old_ones_and_publish_a_jwks() {
    let t = TestServer::start().await;
    let jwks = || async {
        t.anonymous()
            .get_json::<Jwks>("/v1/keys/service-account")
            .await
            .unwrap()
    };
    let first = jwks().await;
    assert_eq!(first.keys.len(), 1);
    let kid = first.keys[0]["kid"].clone();
    assert_eq!(first.keys[0]["kty"], "EC");
    assert_eq!(first.keys[0]["alg"], "ES256");

    // The JWK's x and y are the public key's point.
    let signer = t
        .server
        .state
        .cluster
        .load()
        .service_keys
        .signer()
        .public_key();
    assert_eq!(key_id(&signer), kid);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let x = b64.decode(&first.keys[0]["x"]).unwrap();
    let y = b64.decode(&first.keys[0]["y"]).unwrap();
    let spki = signer.spki_der();
    assert_eq!([&[4u8][..], &x, &y].concat(), spki[spki.len() - 65..]);

    let admin = t.admin();
    let rotate = |request: ServiceKeyRotation| {
        let admin = admin.clone();
        async move {
            admin
                .json::<_, Jwks>("POST", "/v1/keys/service-account/rotate", Some(&request))
                .await
        }
    };
    let rotated = rotate(ServiceKeyRotation {
        retire: None,
        key_type: Some("rsa-2048".into()),
    })
    .await
    .unwrap();
    assert_eq!(rotated.keys.len(), 2);
    assert_eq!(rotated.keys[0]["kty"], "RSA");
    assert_eq!(
        rotated.keys[1]["kid"], kid,
        "the old key kept for verification"
    );
    assert_eq!(jwks().await, rotated);

    let message = refusal(
        rotate(ServiceKeyRotation {
            retire: Some(rotated.keys[0]["kid"].clone()),
            key_type: None,
        })
        .await,
        400,
    );
    assert!(message.contains("is the signing key"), "{message}");
    let message = refusal(
        rotate(ServiceKeyRotation {
            retire: Some("nope".into()),
            key_type: None,
        })
        .await,
        400,
    );
    assert!(
        message.contains("no service-account key with kid"),
        "{message}"
    );
    let message = refusal(
        rotate(ServiceKeyRotation {
            retire: None,
            key_type: Some("ed25519".into()),
        })
        .await,
        400,
    );
    assert!(message.contains("not supported"), "{message}");
    assert_audited_refusal(&t, "keys.rotate", "not supported").await;

    let retired = rotate(ServiceKeyRotation {
        retire: Some(kid.clone()),
        key_type: None,
    })
    .await
    .unwrap();
    assert_eq!(retired.keys.len(), 1);
    assert_eq!(retired.keys[0]["kid"], rotated.keys[0]["kid"]);

    // A rotate-ca service.key must keep the current signer: appending to it passes.
    let current = t.server.state.cluster.load().service_keys.to_pem();
    let mut files = BTreeMap::new();
    files.insert(
        "service.key".to_owned(),
        format!(
            "{}{current}",
            PrivateKey::generate(KeyType::EcP256).unwrap().to_pem()
        ),
    );
    let answer = t.rotate_ca(&files, false).await.unwrap();
    assert_eq!(answer.rotated, ["service-account keys"]);
    assert_eq!(jwks().await.keys.len(), 2);
    t.shutdown().await;
}

async fn named_version(t: &TestServer, name: &str) -> i64 {
    let all: Vec<NamedCertificateStatus> = t
        .admin()
        .get_json("/v1/cluster/certificates")
        .await
        .unwrap();
    all.into_iter().find(|s| s.name == name).unwrap().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_certificates_renew_one_day_inside_the_window_not_one_day_outside() {
    let t = TestServer::start().await;
    let spec = crate::named::spec("proxy");
    let _: serde_json::Value = t
        .admin()
        .json("POST", "/v1/cluster/certificates", Some(&spec))
        .await
        .unwrap();
    assert_eq!(named_version(&t, "proxy").await, 1);
    let not_after = |version: i64| {
        let t = &t;
        async move {
            let v = t
                .server
                .state
                .store
                .named_version("proxy", version)
                .await
                .unwrap()
                .unwrap();
            OffsetDateTime::from_unix_timestamp(v.not_after.unwrap()).unwrap()
        }
    };
    // 365-day certificates renew 90 days before expiry (k3s's window).
    let window_opens = not_after(1).await - Duration::days(90);

    t.clock.set(window_opens - Duration::days(1));
    t.server.check_now().await.unwrap();
    assert_eq!(named_version(&t, "proxy").await, 1, "one day outside: kept");

    t.clock.set(window_opens + Duration::days(1));
    t.server.check_now().await.unwrap();
    assert_eq!(
        named_version(&t, "proxy").await,
        2,
        "one day inside: re-issued"
    );
    let log = t.server.state.store.audit_log(20).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "certificate.renew" && e.target == "proxy")
    );

    // Expired (the server was down for a year): re-issued at the next check.
    t.clock.set(not_after(2).await + Duration::days(1));
    t.server.check_now().await.unwrap();
    assert_eq!(named_version(&t, "proxy").await, 3, "expired: re-issued");
    assert!(not_after(3).await > t.clock.now() + Duration::days(300));
    t.shutdown().await;
}
