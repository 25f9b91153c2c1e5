//! Named certificates: Redis Enterprise's update_cert answers, Event Streams' labels and
//! types, rotation, secrets, trust decisions and node bundles.
use evergreen_api::client::ClientError;
use evergreen_api::{
    Clock, LabelRequest, NamedCertificateSpec, NamedCertificateStatus, NamedDeletion, NodeBundle,
    Replacement, RotateRequest, SecretRef, TypeRequest, UpdateCert, UpdateCerts, decode_pem,
};
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::{DistinguishedName, Duration, IssueRequest, KeyType, PrivateKey, Profile, pem};
use evergreen_test_util::server::TestServer;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{assert_audited_refusal, refusal};

pub(crate) fn spec(name: &str) -> NamedCertificateSpec {
    NamedCertificateSpec {
        name: name.into(),
        scope: evergreen_api::Scope::Cluster,
        kind: evergreen_api::Kind::Selfsigned,
        label: String::new(),
        internal: false,
        usage: evergreen_api::Usage::Server,
        sans: vec![format!("{name}.example"), "10.0.0.9".into()],
        nodes: vec![],
        secret: None,
        allowed_dns: Vec::new(),
        allowed_cidrs: Vec::new(),
    }
}

async fn admin<B: Serialize, T: DeserializeOwned>(
    t: &TestServer,
    method: &str,
    path: &str,
    body: &B,
) -> Result<T, ClientError> {
    t.admin().json(method, path, Some(body)).await
}

async fn status(t: &TestServer, name: &str) -> NamedCertificateStatus {
    let all: Vec<NamedCertificateStatus> = t
        .admin()
        .get_json("/v1/cluster/certificates")
        .await
        .unwrap();
    all.into_iter().find(|s| s.name == name).unwrap()
}

/// A server certificate for `names` from `ca`, valid `days` from `at`, as PEM chain and key.
fn upload(
    ca: &evergreen_pki::CertificateAuthority,
    names: &[&str],
    at: evergreen_pki::OffsetDateTime,
    days: i64,
) -> (String, String) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let request = IssueRequest {
        subject: DistinguishedName::common_name(names[0]),
        subject_alt_names: names.iter().map(|n| n.parse().unwrap()).collect(),
        public_key: key.public_key(),
        profile: Profile::Server,
        validity: Duration::days(days),
    };
    let issued = ca.issue(&request, at).unwrap();
    let mut chain = pem::encode("CERTIFICATE", &issued.der);
    chain.push_str(&ca.bundle_pem());
    (chain, key.to_pem())
}

/// Checks the stored version of `name` with webpki and openssl (server usage).
async fn assert_version_verifies(t: &TestServer, name: &str) {
    let record = t
        .server
        .state
        .store
        .named_by_name(name)
        .await
        .unwrap()
        .unwrap();
    let version = t
        .server
        .state
        .store
        .named_version(name, record.version)
        .await
        .unwrap()
        .unwrap();
    let chain = pem::parse_certificates("chain", version.chain_pem.unwrap().as_bytes()).unwrap();
    evergreen_test_util::assert_chain(&t.root(), &chain, Usage::ServerAuth, t.clock.now());
    let sealed = version.sealed_key.unwrap();
    assert!(
        !sealed.windows(10).any(|w| w == b"PRIVATE KE"),
        "the key is sealed in the datastore"
    );
}

#[tokio::test]
async fn a_selfsigned_certificate_is_issued_on_declaration() {
    let t = TestServer::start().await;
    let answer: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &spec("proxy"))
        .await
        .unwrap();
    assert_eq!(answer.version, 1);
    assert!(
        answer.clients_must_update_trust,
        "first version: {}",
        answer.trust
    );
    assert_version_verifies(&t, "proxy").await;
    let s = status(&t, "proxy").await;
    assert_eq!(
        (s.kind.as_str(), s.version, s.fingerprint.as_deref()),
        ("selfsigned", 1, answer.fingerprint.as_deref())
    );
    assert!(s.not_after.is_some());
    let message = refusal(
        admin::<_, Replacement>(&t, "POST", "/v1/cluster/certificates", &spec("proxy")).await,
        409,
    );
    assert!(message.contains("already exists"), "{message}");
    let message = refusal(
        admin::<_, Replacement>(&t, "POST", "/v1/cluster/certificates", &spec("server")).await,
        400,
    );
    assert!(message.contains("built in"), "{message}");
    // A named certificate is no API credential.
    let record = t
        .server
        .state
        .store
        .named_by_name("proxy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.version, 1);
}

#[tokio::test]
async fn update_cert_answers_as_redis_enterprise_does() {
    let t = TestServer::start().await;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &spec("proxy"))
        .await
        .unwrap();
    let cluster = t.server.state.cluster.load();
    let now = t.clock.now();
    let (good_cert, good_key) = upload(&cluster.server_ca, &["proxy.example"], now, 90);
    let set = |name: &str, cert: &str, key: &str| UpdateCert {
        name: name.into(),
        certificate: cert.into(),
        key: key.into(),
    };

    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/update_cert",
            &set("syncer", &good_cert, &good_key),
        )
        .await,
        403,
    );
    assert!(
        message.contains("no named certificate \"syncer\"; known: proxy"),
        "{message}"
    );
    assert_audited_refusal(&t, "certificate.set", "no named certificate").await;

    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/update_cert",
            &set("proxy", "not pem", &good_key),
        )
        .await,
        400,
    );
    assert!(message.contains("certificate of proxy"), "{message}");
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/update_cert",
            &set("proxy", &good_cert, &good_key[..40]),
        )
        .await,
        400,
    );
    assert!(message.contains("key of proxy"), "{message}");
    let other_key = PrivateKey::generate(KeyType::EcP256).unwrap().to_pem();
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/update_cert",
            &set("proxy", &good_cert, &other_key),
        )
        .await,
        400,
    );
    assert!(
        message.contains("does not match its certificate"),
        "{message}"
    );

    let past = evergreen_test_util::hierarchy(KeyType::EcP256, now - Duration::days(400));
    let (old_cert, old_key) = upload(
        &past.server,
        &["proxy.example"],
        now - Duration::days(40),
        30,
    );
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/update_cert",
            &set("proxy", &old_cert, &old_key),
        )
        .await,
        406,
    );
    assert!(message.contains("expired at"), "{message}");
    assert_audited_refusal(&t, "certificate.set", "expired at").await;
    assert_eq!(
        status(&t, "proxy").await.version,
        1,
        "refusals change nothing"
    );

    // Same CA as the version it replaces: clients keep working.
    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/update_cert",
        &set("proxy", &good_cert, &good_key),
    )
    .await
    .unwrap();
    assert_eq!(answer.version, 2);
    assert!(!answer.clients_must_update_trust, "{}", answer.trust);
    assert!(answer.trust.contains("same CA"), "{}", answer.trust);
    assert_eq!(status(&t, "proxy").await.kind, "provided");
    assert_version_verifies(&t, "proxy").await;

    // Another CA: clients must update their trust, and the answer says which CA changed.
    let foreign = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (cert, key) = upload(&foreign.server, &["proxy.example"], now, 90);
    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/update_cert",
        &set("proxy", &cert, &key),
    )
    .await
    .unwrap();
    assert!(answer.clients_must_update_trust);
    assert!(
        answer.trust.contains("changed from") && answer.trust.contains("test-server-ca"),
        "{}",
        answer.trust
    );
}

#[tokio::test]
async fn a_bulk_replacement_is_all_or_nothing() {
    let t = TestServer::start().await;
    for name in ["proxy", "syncer"] {
        let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &spec(name))
            .await
            .unwrap();
    }
    let now = t.clock.now();
    let cluster = t.server.state.cluster.load();
    let (proxy_cert, proxy_key) = upload(&cluster.server_ca, &["proxy.example"], now, 90);
    let (syncer_cert, syncer_key) = upload(&cluster.server_ca, &["syncer.example"], now, 90);
    let past = evergreen_test_util::hierarchy(KeyType::EcP256, now - Duration::days(400));
    let (expired_cert, expired_key) = upload(
        &past.server,
        &["syncer.example"],
        now - Duration::days(40),
        30,
    );
    let body = |certs: Vec<(&str, &str, &str)>| UpdateCerts {
        certificates: certs
            .into_iter()
            .map(|(n, c, k)| UpdateCert {
                name: n.into(),
                certificate: c.into(),
                key: k.into(),
            })
            .collect(),
    };
    let bad = body(vec![
        ("proxy", &proxy_cert, &proxy_key),
        ("syncer", &expired_cert, &expired_key),
        ("nope", &proxy_cert, &proxy_key),
    ]);
    let result: Result<Vec<Replacement>, _> =
        admin(&t, "PUT", "/v1/cluster/certificates", &bad).await;
    let message = refusal(result, 406);
    assert!(
        message.contains("2 certificates refused, none changed") && message.contains("nope"),
        "{message}"
    );
    assert_eq!(
        status(&t, "proxy").await.version,
        1,
        "the valid one was not applied either"
    );
    let good = body(vec![
        ("proxy", &proxy_cert, &proxy_key),
        ("syncer", &syncer_cert, &syncer_key),
    ]);
    let answers: Vec<Replacement> = admin(&t, "PUT", "/v1/cluster/certificates", &good)
        .await
        .unwrap();
    assert_eq!(
        answers.iter().map(|a| a.version).collect::<Vec<_>>(),
        [2, 2]
    );
}

#[tokio::test]
async fn labels_and_types_follow_event_streams_rules() {
    let t = TestServer::start().await;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &spec("external"))
        .await
        .unwrap();
    let label = |l: &str| LabelRequest { label: l.into() };
    for bad in ["has space", &"x".repeat(64), "semi;colon"] {
        let message = refusal(
            admin::<_, Replacement>(
                &t,
                "PUT",
                "/v1/cluster/certificates/external/label",
                &label(bad),
            )
            .await,
            400,
        );
        assert!(message.contains("letters, digits"), "{message}");
    }
    let first: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/certificates/external/label",
        &label("upgraded-1"),
    )
    .await
    .unwrap();
    assert_eq!(first.version, 2, "a new label regenerates");
    assert!(
        !first.clients_must_update_trust,
        "same cluster CA: {}",
        first.trust
    );
    let same: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/certificates/external/label",
        &label("upgraded-1"),
    )
    .await
    .unwrap();
    assert_eq!((same.version, same.fingerprint), (2, first.fingerprint));
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/certificates/nope/label",
            &label("x"),
        )
        .await,
        404,
    );
    assert!(message.contains("known: external"), "{message}");

    // Internal certificates are selfsigned only, at declaration and when set.
    let mut internal = spec("internal");
    internal.internal = true;
    internal.kind = evergreen_api::Kind::Provided;
    let message = refusal(
        admin::<_, Replacement>(&t, "POST", "/v1/cluster/certificates", &internal).await,
        400,
    );
    assert!(
        message.contains("internal certificates may only be selfsigned"),
        "{message}"
    );
    internal.kind = evergreen_api::Kind::Selfsigned;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &internal)
        .await
        .unwrap();
    let (cert, key) = upload(
        &t.server.state.cluster.load().server_ca,
        &["internal.example"],
        t.clock.now(),
        30,
    );
    let set = UpdateCert {
        name: "internal".into(),
        certificate: cert,
        key,
    };
    let message = refusal(
        admin::<_, Replacement>(&t, "PUT", "/v1/cluster/update_cert", &set).await,
        400,
    );
    assert!(message.contains("may only be selfsigned"), "{message}");

    // Node scope: per node, selfsigned, templated names.
    let mut kubelet = spec("kubelet");
    kubelet.scope = evergreen_api::Scope::Node;
    kubelet.sans = vec!["{node}".into(), "{ip}".into()];
    kubelet.kind = evergreen_api::Kind::Provided;
    let message = refusal(
        admin::<_, Replacement>(&t, "POST", "/v1/cluster/certificates", &kubelet).await,
        400,
    );
    assert!(message.contains("node scope"), "{message}");
    kubelet.kind = evergreen_api::Kind::Selfsigned;
    let answer: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &kubelet)
        .await
        .unwrap();
    assert_eq!((answer.version, answer.fingerprint), (1, None));
    kubelet.name = "kubelet-2".into();
    kubelet.sans = vec!["{nodes}".into()];
    let message = refusal(
        admin::<_, Replacement>(&t, "POST", "/v1/cluster/certificates", &kubelet).await,
        400,
    );
    assert!(message.contains("not a valid DNS name"), "{message}");

    // Rotation: unknown names list the valid ones; provided ones are set, not rotated.
    let mut provided = spec("cm");
    provided.kind = evergreen_api::Kind::Provided;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &provided)
        .await
        .unwrap();
    let rotate = |names: &[&str]| RotateRequest {
        names: names.iter().map(|s| s.to_string()).collect(),
    };
    let message = refusal(
        admin::<_, Vec<Replacement>>(
            &t,
            "POST",
            "/v1/cluster/certificates/rotate",
            &rotate(&["nope"]),
        )
        .await,
        400,
    );
    assert!(
        message.contains("valid names: cm, external, internal, kubelet"),
        "{message}"
    );
    let message = refusal(
        admin::<_, Vec<Replacement>>(
            &t,
            "POST",
            "/v1/cluster/certificates/rotate",
            &rotate(&["cm"]),
        )
        .await,
        400,
    );
    assert!(message.contains("certificate set"), "{message}");
    assert_audited_refusal(&t, "certificate.rotate", "valid names").await;
    let rotated: Vec<Replacement> =
        admin(&t, "POST", "/v1/cluster/certificates/rotate", &rotate(&[]))
            .await
            .unwrap();
    let names: Vec<&str> = rotated.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["external", "internal", "kubelet", "server", "admin"],
        "every selfsigned one, then the server's own"
    );
    // The serving certificate is replaced on disk and served by the next handshake.
    let served = t.anonymous().peer_certificates().await.unwrap();
    assert_eq!(
        rotated[3].fingerprint.as_deref(),
        Some(
            evergreen_pki::Fingerprint::of(&served[0])
                .to_string()
                .as_str()
        )
    );
    assert_eq!(status(&t, "external").await.version, 3);
}

#[tokio::test]
async fn a_secret_directory_is_read_and_watched() {
    let t = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = t.server.state.cluster.load();
    let write = |names: &[&str]| {
        let (cert, key) = upload(&cluster.server_ca, names, t.clock.now(), 90);
        let chain = pem::parse_certificates("", cert.as_bytes()).unwrap();
        std::fs::write(
            dir.path().join("tls.crt"),
            pem::encode("CERTIFICATE", &chain[0]),
        )
        .unwrap();
        std::fs::write(dir.path().join("tls.key"), key).unwrap();
        std::fs::write(
            dir.path().join("ca.crt"),
            pem::encode_certificates(&chain[1..]),
        )
        .unwrap();
    };
    write(&["ui.example"]);
    let mut ui = spec("ui");
    ui.kind = evergreen_api::Kind::Secret;
    ui.secret = Some(SecretRef {
        path: dir.path().display().to_string(),
        cert: "tls.crt".into(),
        key: "tls.key".into(),
        cacert: "ca.crt".into(),
    });
    let first: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &ui)
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_version_verifies(&t, "ui").await;
    t.server.check_now().await.unwrap();
    assert_eq!(
        status(&t, "ui").await.version,
        1,
        "unchanged files, no new version"
    );
    write(&["ui.example", "ui2.example"]);
    t.server.check_now().await.unwrap();
    let s = status(&t, "ui").await;
    assert_eq!(s.version, 2);
    assert_ne!(s.fingerprint, first.fingerprint);

    // Watched: files written in place make a new version within moments, no check needed.
    write(&["ui.example", "ui3.example"]);
    for _ in 0..100 {
        if status(&t, "ui").await.version == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status(&t, "ui").await.version,
        3,
        "the watcher saw the change"
    );
    assert_version_verifies(&t, "ui").await;

    // A label change re-reads the secret at once. The directory is swapped for a new one
    // (the watch follows the old one until it resyncs), so only the label can see it.
    let old = dir.path().with_extension("old");
    std::fs::rename(dir.path(), &old).unwrap();
    std::fs::create_dir(dir.path()).unwrap();
    write(&["ui.example", "ui4.example"]);
    let labelled: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/certificates/ui/label",
        &LabelRequest {
            label: "renewed".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(labelled.version, 4, "{}", labelled.trust);
    assert_version_verifies(&t, "ui").await;
    std::fs::remove_dir_all(&old).unwrap();
}

/// Event Streams lets an operator move a certificate between generated and provided; so
/// does `certificate set-type`, and a certificate can be deleted.
#[tokio::test]
async fn types_switch_back_and_forth_and_a_certificate_can_be_deleted() {
    let t = TestServer::start().await;
    let mut external = spec("external");
    external.kind = evergreen_api::Kind::Provided;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &external)
        .await
        .unwrap();
    let cluster = t.server.state.cluster.load();
    let (cert, key) = upload(&cluster.server_ca, &["external.example"], t.clock.now(), 90);
    let set = UpdateCert {
        name: "external".into(),
        certificate: cert.clone(),
        key: key.clone(),
    };
    let _: Replacement = admin(&t, "PUT", "/v1/cluster/update_cert", &set)
        .await
        .unwrap();
    let to = |kind: &str, secret: Option<SecretRef>| TypeRequest {
        kind: kind.parse().unwrap(),
        secret,
    };

    // provided -> selfsigned: a new version at once, issued by the cluster.
    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/certificates/external/type",
        &to("selfsigned", None),
    )
    .await
    .unwrap();
    assert_eq!(answer.version, 2);
    let s = status(&t, "external").await;
    assert_eq!((s.kind.as_str(), s.version), ("selfsigned", 2));
    assert_version_verifies(&t, "external").await;

    // selfsigned -> secret: the directory is read now; one that cannot be read is refused
    // and changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let secret = SecretRef {
        path: dir.path().display().to_string(),
        cert: "tls.crt".into(),
        key: "tls.key".into(),
        cacert: "ca.crt".into(),
    };
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/certificates/external/type",
            &to("secret", Some(secret.clone())),
        )
        .await,
        400,
    );
    assert!(message.contains("cannot read"), "{message}");
    assert_eq!(status(&t, "external").await.kind, "selfsigned");
    std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    std::fs::write(dir.path().join("ca.crt"), cluster.server_ca.bundle_pem()).unwrap();
    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/certificates/external/type",
        &to("secret", Some(secret)),
    )
    .await
    .unwrap();
    assert_eq!(answer.version, 3);
    assert_eq!(status(&t, "external").await.kind, "secret");

    // secret -> provided: the current version stays.
    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/certificates/external/type",
        &to("provided", None),
    )
    .await
    .unwrap();
    assert_eq!(answer.version, 3);
    assert!(answer.trust.contains("stays installed"), "{}", answer.trust);

    // What no type allows is refused: a node-scope certificate is only selfsigned.
    let _: Replacement = admin(
        &t,
        "POST",
        "/v1/cluster/certificates",
        &NamedCertificateSpec {
            scope: evergreen_api::Scope::Node,
            sans: vec!["{node}.example".into()],
            ..spec("kubelet")
        },
    )
    .await
    .unwrap();
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/certificates/kubelet/type",
            &to("provided", None),
        )
        .await,
        400,
    );
    assert!(message.contains("node scope"), "{message}");
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/certificates/nothing/type",
            &to("selfsigned", None),
        )
        .await,
        404,
    );
    assert!(message.contains("known: external, kubelet"), "{message}");

    // Delete: what the cluster issued for it (the selfsigned version 2) is revoked with it.
    let issued = t
        .server
        .state
        .store
        .named_version("external", 2)
        .await
        .unwrap()
        .unwrap()
        .fingerprint
        .unwrap();
    let serial = t
        .server
        .state
        .store
        .certificate_by_sha256(&issued)
        .await
        .unwrap()
        .unwrap()
        .serial;
    let deleted: NamedDeletion = t
        .admin()
        .json::<(), _>("DELETE", "/v1/cluster/certificates/external", None)
        .await
        .unwrap();
    assert_eq!(deleted.revoked, std::slice::from_ref(&serial));
    let all: Vec<NamedCertificateStatus> = t
        .admin()
        .get_json("/v1/cluster/certificates")
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["kubelet"]
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
    let crl = t
        .anonymous()
        .send("GET", "/v1/crl/server-ca", None)
        .await
        .unwrap()
        .body;
    let listed = evergreen_pki::crl::CrlInfo::from_der(&crl).unwrap();
    assert!(listed.revoked.iter().any(|r| {
        let hex: String = r.serial.iter().map(|b| format!("{b:02x}")).collect();
        hex.trim_start_matches('0') == serial.trim_start_matches('0')
    }));
    let dir = tempfile::tempdir().unwrap();
    assert!(evergreen_test_util::Openssl::find().crl_verifies(
        dir.path(),
        &evergreen_pki::CertificateRevocationListDer::from(crl),
        &cluster.server_ca.bundle_pem()
    ));
    let message = refusal(
        t.admin()
            .json::<(), NamedDeletion>("DELETE", "/v1/cluster/certificates/external", None)
            .await,
        404,
    );
    assert!(message.contains("no named certificate"), "{message}");
}

#[tokio::test]
async fn a_node_bundle_for_a_runtime_without_an_agent() {
    let t = TestServer::start().await;
    let bundle: NodeBundle = t
        .admin()
        .json::<(), _>("POST", "/v1/nodes/dp-1/bundle", None)
        .await
        .unwrap();
    let chain = pem::parse_certificates("crt", &decode_pem(&bundle.crt).unwrap()).unwrap();
    let key = PrivateKey::from_pem("key", &decode_pem(&bundle.key).unwrap()).unwrap();
    assert!(key.matches_certificate(&chain[0]).unwrap());
    t.assert_client_chain(&chain);
    let info = CertificateInfo::from_der(&chain[0]).unwrap();
    assert_eq!(info.subject.to_string(), "CN=dp-1");
    let record = t
        .server
        .state
        .store
        .certificate_by_serial(&info.serial_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.role, "node");
    let message = refusal(
        t.admin()
            .json::<(), NodeBundle>("POST", "/v1/nodes/Bad_Name/bundle", None)
            .await,
        400,
    );
    assert!(message.contains("lowercase"), "{message}");
}

/// Redis Enterprise's tip, as printed: escape the PEM files' line breaks with
/// `sed -z 's/\n/\\\n/g'` and paste them into the `update_cert` body — here through shell
/// variables, which also drop the last line break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_cert_takes_the_redis_sed_recipe() {
    let t = TestServer::start().await;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &spec("proxy"))
        .await
        .unwrap();
    let cluster = t.server.state.cluster.load();
    let (cert, key) = upload(&cluster.server_ca, &["proxy.example"], t.clock.now(), 90);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy_cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("proxy_key.pem"), &key).unwrap();
    let data = |f: &str| t.data_dir.join(f).to_str().unwrap().to_owned();
    let env = [
        ("URL", t.url().to_owned()),
        ("CA", data("ca.crt")),
        ("ADMIN_CRT", data("admin.crt")),
        ("ADMIN_KEY", data("admin.key")),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let put = r#"curl -sS --cacert "$CA" --cert "$ADMIN_CRT" --key "$ADMIN_KEY" \
          -X PUT "$URL/v1/cluster/update_cert" -H 'Content-Type: application/json' \
          -o answer.json -w '%{http_code}' --data-binary @body.json"#;

    // Pasted by hand: each line of the file ends in a backslash before its line break.
    let pasted = crate::kyma::sh(
        dir.path(),
        &format!(
            r#"{{ printf '{{ "name": "proxy", "key": "'; sed -z 's/\n/\\\n/g' proxy_key.pem
                 printf '", "certificate": "'; sed -z 's/\n/\\\n/g' proxy_cert.pem
                 printf '" }}'; }} > body.json
               grep -q '^-----END PRIVATE KEY-----\\$' body.json
               {put}"#
        ),
        &env,
    )
    .await;
    assert_eq!(
        pasted,
        "200",
        "{}",
        std::fs::read_to_string(dir.path().join("answer.json")).unwrap()
    );
    assert_eq!(status(&t, "proxy").await.version, 2);
    assert_version_verifies(&t, "proxy").await;

    // Through shell variables, which drop the last line break and leave its backslash.
    let substituted = crate::kyma::sh(
        dir.path(),
        r#"KEY=$(sed -z 's/\n/\\\n/g' proxy_key.pem)
           CERT=$(sed -z 's/\n/\\\n/g' proxy_cert.pem)
           curl -sS --cacert "$CA" --cert "$ADMIN_CRT" --key "$ADMIN_KEY" -X PUT "$URL/v1/cluster/update_cert" \
                -d '{ "name": "proxy", "key": "'"$KEY"'", "certificate": "'"$CERT"'" }' \
                -o answer.json -w '%{http_code}'"#,
        &env,
    )
    .await;
    assert_eq!(
        substituted,
        "200",
        "{}",
        std::fs::read_to_string(dir.path().join("answer.json")).unwrap()
    );
    assert_eq!(status(&t, "proxy").await.version, 3);
    assert_version_verifies(&t, "proxy").await;

    // A raw line break anywhere but in the PEM fields is still a malformed body.
    let malformed = crate::kyma::sh(
        dir.path(),
        &format!(
            r#"printf '{{ "name": "pro\nxy", "key": "k", "certificate": "c" }}' > body.json
               {put}"#
        ),
        &env,
    )
    .await;
    assert_eq!(malformed, "400");
    let answer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("answer.json")).unwrap()).unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("control character"),
        "{answer}"
    );
    assert_eq!(status(&t, "proxy").await.version, 3, "nothing changed");
}

/// A provided certificate sent without its chain: completed from the cluster CA that
/// issued it, or refused with the reason — never installed with an empty ca.crt.
#[tokio::test]
async fn a_provided_certificate_without_its_chain_is_completed_or_refused() {
    let t = TestServer::start().await;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &spec("proxy"))
        .await
        .unwrap();
    let now = t.clock.now();
    let leaf_only = |chain: &str| {
        let first = pem::parse_certificates("", chain.as_bytes())
            .unwrap()
            .remove(0);
        pem::encode("CERTIFICATE", &first)
    };
    let set = |cert: String, key: String| UpdateCert {
        name: "proxy".into(),
        certificate: cert,
        key,
    };

    let foreign = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (cert, key) = upload(&foreign.server, &["proxy.example"], now, 90);
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/update_cert",
            &set(leaf_only(&cert), key),
        )
        .await,
        400,
    );
    assert!(message.contains("without its chain"), "{message}");
    assert_audited_refusal(&t, "certificate.set", "without its chain").await;
    assert_eq!(status(&t, "proxy").await.version, 1, "nothing changed");

    // Issued by the cluster's server CA: ca.crt is that CA, and the chain is served whole.
    let cluster = t.server.state.cluster.load();
    let (cert, key) = upload(&cluster.server_ca, &["proxy.example"], now, 90);
    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/update_cert",
        &set(leaf_only(&cert), key),
    )
    .await
    .unwrap();
    assert_eq!(answer.version, 2);
    let version = t
        .server
        .state
        .store
        .named_version("proxy", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        version.ca_pem.as_deref(),
        Some(cluster.server_ca.bundle_pem().as_str())
    );
    assert_version_verifies(&t, "proxy").await;

    // Self-signed, made by openssl: it is its own CA.
    let dir = tempfile::tempdir().unwrap();
    evergreen_test_util::Openssl::find().self_signed(
        dir.path(),
        "/CN=proxy.example",
        90,
        &["-addext", "subjectAltName=DNS:proxy.example"],
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    // openssl does not backdate; the server's manual clock was read before it ran.
    t.clock.advance(Duration::minutes(1));
    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/update_cert",
        &set(read("cert.pem"), read("key.pem")),
    )
    .await
    .unwrap();
    assert_eq!(answer.version, 3);
    let version = t
        .server
        .state
        .store
        .named_version("proxy", 3)
        .await
        .unwrap()
        .unwrap();
    let ca = pem::parse_certificates("", version.ca_pem.unwrap().as_bytes()).unwrap();
    let leaf = pem::parse_certificates("", read("cert.pem").as_bytes()).unwrap();
    assert_eq!(ca, leaf);
}

/// A selfsigned certificate that fell due while the server was down renews when it
/// starts, not at the first ten-minute check.
#[tokio::test]
async fn named_certificates_due_at_start_renew_at_start() {
    let t = TestServer::start().await;
    let _: Replacement = admin(&t, "POST", "/v1/cluster/certificates", &spec("proxy"))
        .await
        .unwrap();
    let clock = t.clock.clone();
    let t = t
        .restart_after(async { clock.advance(Duration::days(300)) })
        .await
        .unwrap();
    for _ in 0..100 {
        if status(&t, "proxy").await.version == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status(&t, "proxy").await.version, 2, "renewed at start");
    assert_version_verifies(&t, "proxy").await;
}

/// Redis Enterprise's `api`/`cm` certificate: the API listener serves a certificate of the
/// company's CA to curl and browsers, hot, while Evergreen's own clients keep the cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_listener_serves_a_provided_certificate_to_everyone_but_evergreen() {
    let t = TestServer::start().await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    let now = t.clock.now();
    let company = evergreen_test_util::hierarchy(KeyType::EcP256, now - Duration::days(1));
    let set = |(certificate, key): (String, String)| UpdateCert {
        name: "server".into(),
        certificate,
        key,
    };
    let dir = tempfile::tempdir().unwrap();
    let company_root = dir.path().join("company.pem");
    std::fs::write(&company_root, company.root.bundle_pem()).unwrap();
    let port = t.server.addr.port();
    let curl = |ca: &std::path::Path| {
        std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "--cacert"])
            .arg(ca)
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .arg(format!("https://{host}:{port}/healthz"))
            .output()
            .unwrap()
    };
    let cluster_ca = t.data_dir.join("ca.crt");
    assert!(curl(&cluster_ca).status.success());

    // One that does not name the server's host is refused, and nothing changes.
    let message = refusal(
        admin::<_, Replacement>(
            &t,
            "PUT",
            "/v1/cluster/update_cert",
            &set(upload(&company.server, &["elsewhere.example"], now, 90)),
        )
        .await,
        400,
    );
    assert!(
        message.contains(&format!("does not cover DNS:{host}")),
        "{message}"
    );
    assert!(curl(&cluster_ca).status.success());

    let answer: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/update_cert",
        &set(upload(
            &company.server,
            &[&host, "evergreen.example"],
            now,
            90,
        )),
    )
    .await
    .unwrap();
    assert!(answer.clients_must_update_trust, "{}", answer.trust);
    // curl trusts the company's root now, not the cluster's; Evergreen's client still
    // verifies the cluster's serving certificate.
    let out = curl(&company_root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!curl(&cluster_ca).status.success());
    let served = t.anonymous().peer_certificates().await.unwrap();
    evergreen_test_util::assert_chain(&t.root(), &served, Usage::ServerAuth, t.clock.now());
    let _: Vec<NamedCertificateStatus> = t
        .admin()
        .get_json("/v1/cluster/certificates")
        .await
        .unwrap();

    // Kept across a restart, and undone with set-type selfsigned.
    let t = t.restart().await.unwrap();
    assert!(curl(&company_root).status.success());
    let _: Replacement = admin(
        &t,
        "PUT",
        "/v1/cluster/certificates/server/type",
        &TypeRequest {
            kind: evergreen_api::Kind::Selfsigned,
            secret: None,
        },
    )
    .await
    .unwrap();
    assert!(curl(&cluster_ca).status.success());
    assert!(!curl(&company_root).status.success());
}
