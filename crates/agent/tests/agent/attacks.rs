//! A server that is not the cluster's, holding a certificate of the cluster for the
//! server's address (as a node could have got one before names were checked): it sends an
//! agent an unrelated root, an assignment from that root, a forged attestation, and its
//! own certificate and key. The agent keeps its pin, installs nothing, and says so.
use std::path::Path;
use std::sync::{Arc, Mutex};

use evergreen_api::{AgentWatch, Assignment, Clock, encode_pem};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::{
    CertificateAuthority, DistinguishedName, Duration, IssueRequest, KeyType, PrivateKey, Profile,
    pem,
};
use evergreen_test_util::server::TestServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::{Replacement, spec, start_agent, until};

/// A leaf of `ca` for `sans`, with its key: (chain PEM, key PEM).
fn leaf(
    ca: &CertificateAuthority,
    cn: &str,
    sans: &[&str],
    now: evergreen_pki::OffsetDateTime,
) -> (String, String) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let issued = ca
        .issue(
            &IssueRequest {
                subject: DistinguishedName::common_name(cn),
                subject_alt_names: sans.iter().map(|s| s.parse().unwrap()).collect(),
                public_key: key.public_key(),
                profile: Profile::Server,
                validity: Duration::days(30),
            },
            now,
        )
        .unwrap();
    let mut chain = pem::encode("CERTIFICATE", &issued.der);
    chain.push_str(&ca.bundle_pem());
    (chain, key.to_pem())
}

/// Serves `watch` at `/v1/agent/watch` and keeps every `/v1/agent/status` body.
async fn fake_server(
    serving: (String, String),
    watch: AgentWatch,
    reports: Arc<Mutex<Vec<serde_json::Value>>>,
) -> String {
    let chain = pem::parse_certificates("fake", serving.0.as_bytes()).unwrap();
    let key = PrivateKey::from_pem("fake key", serving.1.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key.der().clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let watch = serde_json::to_vec(&watch).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, watch, reports) = (acceptor.clone(), watch.clone(), reports.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let (watch, reports) = (watch.clone(), reports.clone());
                        async move {
                            let path = request.uri().path().to_owned();
                            let body = request.into_body().collect().await?.to_bytes();
                            let (status, answer) = match path.as_str() {
                                "/v1/agent/watch" => (200, watch),
                                "/v1/agent/status" => {
                                    reports
                                        .lock()
                                        .unwrap()
                                        .push(serde_json::from_slice(&body).unwrap_or_default());
                                    (204, Vec::new())
                                }
                                _ => (404, b"{}".to_vec()),
                            };
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    url
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_server_moves_no_agents_trust_and_installs_nothing() {
    let t = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let now = t.clock.now();

    // The agent enrolls with the real server and installs proxy.
    let agent = start_agent(&t, dir.path(), "node-a", Some(t.node_token("node-a").await));
    let created: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&spec("proxy", "cluster", &["proxy.example"])),
        )
        .await
        .unwrap();
    let real = created.fingerprint.unwrap();
    until("proxy installed from the real server", async || {
        agent.installed("proxy").as_deref() == Some(real.as_str())
    })
    .await;
    let data_dir = agent.data_dir.clone();
    agent.stop().await;
    let pinned = read(&data_dir.join("root.crt"));
    let proxy_before = read(&data_dir.join("certs/proxy/tls.crt"));

    // The fake: a serving certificate of the cluster for the server's address, and an
    // unrelated hierarchy of its own.
    let cluster = t.server.state.cluster.load_full();
    let serving = leaf(&cluster.server_ca, "fake", &["127.0.0.1"], now);
    let evil = evergreen_test_util::hierarchy(KeyType::EcP256, now);
    let (evil_chain, evil_key) = leaf(&evil.server, "proxy", &["proxy.example"], now);
    let evil_fp =
        CertificateInfo::from_der(&pem::parse_certificates("", evil_chain.as_bytes()).unwrap()[0])
            .unwrap()
            .fingerprint
            .to_string();
    let forged = evil
        .server
        .key()
        .sign(&evergreen_api::attestation_message("proxy", 2, &evil_fp))
        .unwrap();
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut bundle = pem::encode_certificates(&cluster.trust_bundle());
    bundle.push_str(&pem::encode_certificates(&evil.root_der()));
    bundle.push_str(&evil.server.bundle_pem());
    let assignment = |name: &str, version: i64, crt: &str, key: &str, ca: &str| Assignment {
        name: name.into(),
        scope: evergreen_api::Scope::Cluster,
        version,
        usage: evergreen_api::Usage::Server,
        crt: Some(encode_pem(crt)),
        key: Some(encode_pem(key)),
        ca: Some(encode_pem(ca)),
        attestation: None,
    };
    let watch = AgentWatch {
        revision: 1_000,
        trust_bundle: encode_pem(&bundle),
        identity_ca: Some(encode_pem(&cluster.client_ca.bundle_pem())),
        attested_by: Some(encode_pem(&evil.server.bundle_pem())),
        certificates: vec![
            // From the unrelated root, "attested" by the unrelated CA.
            Assignment {
                attestation: Some(b64(&forged)),
                ..assignment(
                    "proxy",
                    2,
                    &evil_chain,
                    &evil_key,
                    &evil.server.bundle_pem(),
                )
            },
            // The fake's own certificate of the cluster, and its key, to serve with.
            assignment(
                "proxy-b",
                1,
                &serving.0,
                &serving.1,
                &cluster.server_ca.bundle_pem(),
            ),
        ],
    };
    let reports = Arc::new(Mutex::new(Vec::new()));
    let url = fake_server(serving.clone(), watch, reports.clone()).await;

    // The same agent, pointed at the fake.
    let settings = evergreen_agent::Settings {
        server: url,
        token: None,
        data_dir: data_dir.clone(),
        node: "node-a".into(),
        config: Default::default(),
        clock: Arc::new(t.clock.clone()),
        poll_timeout: std::time::Duration::from_secs(1),
        max_backoff: std::time::Duration::from_millis(500),
    };
    let (stop, receiver) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(evergreen_agent::run(settings, receiver));
    until("the agent to report what it refused", async || {
        reports.lock().unwrap().iter().any(|r| {
            r["refused"]
                .as_array()
                .is_some_and(|refused| refused.len() >= 3)
        })
    })
    .await;
    let _ = stop.send(true);
    task.await.unwrap().unwrap();

    assert_eq!(
        read(&data_dir.join("root.crt")),
        pinned,
        "the pin did not move"
    );
    assert_eq!(
        read(&data_dir.join("certs/proxy/tls.crt")),
        proxy_before,
        "proxy untouched"
    );
    assert!(
        !data_dir.join("certs/proxy-b").exists(),
        "nothing installed"
    );
    let report = reports.lock().unwrap().last().cloned().unwrap();
    let refused: Vec<String> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with("refused root CN=test-root-ca")),
        "{refused:#?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with("refused to install proxy version 2")
                && r.contains("does not chain to a root this node trusts")),
        "{refused:#?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with("refused to install proxy-b") && r.contains("no attestation")),
        "{refused:#?}"
    );
    assert_eq!(
        report["certificates"][0]["fingerprint"].as_str(),
        Some(real.as_str()),
        "it reports what it really has installed"
    );
    t.shutdown().await;
}

/// The judgement the fuzzer drives ([`evergreen_agent::judge_watch`]) on a real answer:
/// the cluster's attested credential passes; the same answer with another attestation, or
/// judged by a node that trusts another root, does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_answer_is_judged_before_anything_is_installed() {
    let t = TestServer::start().await;
    let _: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&spec("proxy", "cluster", &["proxy.example"])),
        )
        .await
        .unwrap();
    let node = t
        .enroll(
            evergreen_api::Role::Node,
            &DistinguishedName::common_name("node-a"),
        )
        .await;
    let answer = t
        .client(&node)
        .send("GET", "/v1/agent/watch?revision=0&timeout=1", None)
        .await
        .unwrap()
        .body;
    let trusted = evergreen_agent::trust::Trust::in_memory(vec![t.root()]);
    let verdicts = evergreen_agent::judge_watch(&trusted, &answer, t.clock.now()).unwrap();
    assert_eq!(verdicts, [Ok(())]);

    let mut watch: AgentWatch = serde_json::from_slice(&answer).unwrap();
    watch.certificates[0].attestation = Some("AAAA".into());
    let forged = serde_json::to_vec(&watch).unwrap();
    let verdicts = evergreen_agent::judge_watch(&trusted, &forged, t.clock.now()).unwrap();
    assert!(verdicts[0].is_err(), "{verdicts:?}");

    let other = evergreen_test_util::hierarchy(KeyType::EcP256, t.clock.now());
    let stranger = evergreen_agent::trust::Trust::in_memory(vec![other.root.certificate().clone()]);
    let verdicts = evergreen_agent::judge_watch(&stranger, &answer, t.clock.now()).unwrap();
    assert!(verdicts[0].is_err(), "{verdicts:?}");
    assert!(evergreen_agent::judge_watch(&trusted, b"{\"revision\":", t.clock.now()).is_err());
}
