//! Two server replicas on one PostgreSQL database, with an agent on one of them.
use std::time::{Duration as StdDuration, Instant};

use evergreen_api::Clock as _;
use evergreen_api::client::{Client, ClientError};
use evergreen_api::{AgentWatch, CertificateBundle, RenewalRequest, Replacement, Role, encode_pem};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::crl::CrlInfo;
use evergreen_pki::token::JoinToken;
use evergreen_pki::{CertificateDer, DistinguishedName, Fingerprint, PrivateKey, pem};
use evergreen_test_util::server::{TestServer, stage_role_cas};

use super::{spec, start_agent, until};

/// What a refused start must leave as it was: the cluster's rows that matter.
async fn snapshot(t: &TestServer) -> String {
    let store = &t.server.state.store;
    format!(
        "{:?} {:?} {:?} {:?}",
        store.revision().await.unwrap(),
        store.cas().await.unwrap(),
        store.audit_log(10_000).await.unwrap(),
        store.crls().await.unwrap(),
    )
}

/// One Kyma renewal with `key` through `client`: the new chain, leaf first.
async fn renew(client: &Client, key: &PrivateKey, subject: &str) -> Vec<CertificateDer<'static>> {
    let csr =
        evergreen_pki::csr::build(key, &DistinguishedName::common_name(subject), &[]).unwrap();
    let request = RenewalRequest {
        csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
    };
    let bundle: CertificateBundle = client
        .json(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(&request),
        )
        .await
        .unwrap();
    pem::parse_certificates("crt", &evergreen_api::decode_pem(&bundle.crt).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_share_the_cluster_and_each_others_changes() {
    let a = TestServer::start_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let b = a.start_replica(&dir.path().join("b")).await.unwrap();
    assert_eq!(b.root(), a.root(), "one cluster, one root");
    let token: JoinToken = std::fs::read_to_string(a.data_dir.join("server/token"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(b.data_dir.join("server/token")).unwrap(),
        std::fs::read_to_string(a.data_dir.join("server/token")).unwrap(),
        "the replica keeps the cluster's server token"
    );

    // Refused joins change nothing, in the database or in their data dir.
    let before = snapshot(&a).await;
    let other_secret = JoinToken::new(token.root_hash(), "server".into(), "y".repeat(32)).unwrap();
    let other_root = JoinToken::new(
        Fingerprint::of(b"another cluster's root"),
        "server".into(),
        token.secret().to_owned(),
    )
    .unwrap();
    let datastore = a.datastore.clone();
    for (bad, expected) in [
        (other_secret.to_string(), "does not match this datastore"),
        (other_root.to_string(), "is not this cluster's root"),
        ("K10nonsense".to_owned(), "malformed"),
    ] {
        let refused_dir = dir.path().join("refused");
        let error = TestServer::start_with(
            &refused_dir,
            a.clock.clone(),
            "127.0.0.1:0".parse().unwrap(),
            datastore.clone(),
            Some(bad),
        )
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(error.contains(expected), "{error}");
        assert!(
            !refused_dir.join("server/token").exists(),
            "a refused replica writes no token"
        );
    }
    // A token offered to an empty database: there is nothing to join.
    let empty = evergreen_test_util::postgres::fresh_database().await;
    let error = TestServer::start_with(
        &dir.path().join("empty"),
        a.clock.clone(),
        "127.0.0.1:0".parse().unwrap(),
        Some(empty.clone()),
        Some(token.to_string()),
    )
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(error.contains("nothing to join"), "{error}");
    let empty = evergreen_store::PostgresStore::connect(&empty)
        .await
        .unwrap();
    assert!(
        !evergreen_store::Store::is_initialized(&empty)
            .await
            .unwrap()
    );
    assert_eq!(snapshot(&a).await, before, "refused joins changed nothing");

    // An agent enrolled through B with a node token A made.
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        &b,
        agent_dir.path(),
        "node-b",
        Some(a.node_token("node-b").await),
    );

    // A watch long-polling B wakes when A commits a change: notified, not timed out.
    let node = b
        .enroll_with(
            &a.node_token("watcher").await,
            &DistinguishedName::common_name("watcher"),
            &[],
        )
        .await
        .unwrap();
    let known = b.server.state.store.revision().await.unwrap();
    let watch = {
        let client = b.client(&node);
        tokio::spawn(async move {
            #[allow(
                clippy::disallowed_methods,
                reason = "how long a real long poll waited, on the wall clock"
            )]
            let started = Instant::now();
            let answer: AgentWatch = client
                .get_json(&format!("/v1/agent/watch?revision={known}&timeout=30"))
                .await
                .unwrap();
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let created: Replacement = a
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&spec("proxy", "cluster", &["proxy.example"])),
        )
        .await
        .unwrap();
    let (answer, waited) = watch.await.unwrap();
    assert!(answer.revision > known);
    assert!(
        waited < StdDuration::from_secs(20),
        "B's watch woke on A's notice, not at its 30 s timeout ({waited:?})"
    );
    eprintln!("a change through A woke a watch on B after {waited:?}");
    let fingerprint = created.fingerprint.unwrap();
    until("the agent on B to install what A declared", async || {
        agent.installed("proxy").as_deref() == Some(fingerprint.as_str())
    })
    .await;
    super::assert_installed_pair(&b, &agent.data_dir.join("certs/proxy"));

    // Renewals through both at once: every serial distinct, every one in the inventory.
    let app_token = a
        .token_with(&evergreen_api::TokenRequest {
            role: Role::App,
            subject: Some("CN=app-*".into()),
            uses: Some(9),
            ..Default::default()
        })
        .await
        .unwrap()
        .token;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (through, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let subject = format!("app-{i}");
        let credential = through
            .enroll_with(&app_token, &DistinguishedName::common_name(&subject), &[])
            .await
            .unwrap();
        let clients = [through.client(&credential), other.client(&credential)];
        tasks.push(tokio::spawn(async move {
            let mut chains = Vec::new();
            for round in 0..6 {
                let client = &clients[round % 2];
                chains.push(renew(client, &credential.key, &subject).await);
            }
            chains
        }));
    }
    let mut serials = Vec::new();
    for task in tasks {
        for chain in task.await.unwrap() {
            a.assert_client_chain(&chain);
            serials.push(CertificateInfo::from_der(&chain[0]).unwrap().serial_hex());
        }
    }
    let mut distinct = serials.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), serials.len(), "no serial issued twice");
    for serial in &serials {
        assert!(
            a.server
                .state
                .store
                .certificate_by_serial(serial)
                .await
                .unwrap()
                .is_some(),
            "{serial} is in the inventory"
        );
    }

    // Revoked through A: B's TLS layer serves and enforces the new CRL.
    let victim = b
        .enroll_with(
            &app_token,
            &DistinguishedName::common_name("app-victim"),
            &[],
        )
        .await
        .unwrap();
    let serial = CertificateInfo::from_der(victim.leaf()).unwrap().serial;
    let response = a
        .client(&victim)
        .send("POST", "/v1/applications/certificates/revocations", None)
        .await
        .unwrap();
    assert_eq!(response.status, 201);
    until("B to serve the CRL listing it", async || {
        b.server
            .state
            .crls
            .load()
            .get("client-ca")
            .is_some_and(|crl| CrlInfo::from_der(crl).unwrap().is_revoked(&serial))
    })
    .await;
    let refused = b.client(&victim).send("GET", "/healthz", None).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Http { .. } | ClientError::Handshake { .. })
        ),
        "B refuses the revoked certificate at the handshake: {refused:?}"
    );
    let published = b
        .anonymous()
        .send("GET", "/v1/crl/client-ca", None)
        .await
        .unwrap();
    let cluster = b.server.state.cluster.load();
    let crl_dir = tempfile::tempdir().unwrap();
    assert!(evergreen_test_util::Openssl::find().crl_verifies(
        crl_dir.path(),
        &published.body,
        &cluster.client_ca.bundle_pem()
    ));

    // Role CAs rotated through A (their key read as `ca generate --root-from` does):
    // B serves the new CAs, re-issues its own serving certificate under the new server CA
    // and its CLI trust bundle lists them.
    let now = a.clock.now();
    let root = a.current_root_ca().await;
    let staged = stage_role_cas(&root, std::slice::from_ref(root.certificate()), now);
    a.rotate_ca(&staged, false).await.unwrap();
    let new_server_ca = a
        .server
        .state
        .cluster
        .load()
        .server_ca
        .certificate()
        .clone();
    until("B to take the rotated CAs", async || {
        b.server.state.cluster.load().server_ca.certificate() == &new_server_ca
    })
    .await;
    until(
        "B's serving certificate under the new server CA",
        async || {
            let serving = b.anonymous().peer_certificates().await.unwrap();
            serving.get(1) == Some(&new_server_ca)
        },
    )
    .await;
    let bundle =
        pem::parse_certificates("ca.crt", &std::fs::read(b.data_dir.join("ca.crt")).unwrap())
            .unwrap();
    assert!(bundle.contains(&new_server_ca));
    assert_eq!(
        b.server.state.cluster.load().retired.len(),
        3,
        "the replaced role CAs stay trusted on B too"
    );

    agent.stop().await;
    b.shutdown().await;
    a.shutdown().await;
}
