//! Agents and a server on 127.0.0.1, each agent with its own data dir, all real TLS.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use evergreen_agent::Settings;
use evergreen_agent::config::{CertificateConfig, Config};
use evergreen_agent::install::{CredentialSink, FileLayout, FilePaths};
use evergreen_api::{Clock, NamedCertificateSpec, NamedCertificateStatus, Replacement, UpdateCert};
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::{DistinguishedName, Duration, IssueRequest, KeyType, PrivateKey, Profile, pem};
use evergreen_test_util::server::TestServer;
use tokio::sync::watch;

mod attacks;
mod renew;
mod replicas;
mod served;

struct RunningAgent {
    data_dir: PathBuf,
    reloads: PathBuf,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start_agent(t: &TestServer, dir: &Path, node: &str, token: Option<String>) -> RunningAgent {
    let reloads = dir.join(format!("{node}.reloads"));
    let config = Config {
        certificates: vec![CertificateConfig {
            name: "proxy".into(),
            reload: Some(format!("echo reload >> {}", reloads.display())),
            ..CertificateConfig::default()
        }],
    };
    start_agent_with(t, dir, node, token, config)
}

fn start_agent_with(
    t: &TestServer,
    dir: &Path,
    node: &str,
    token: Option<String>,
    config: Config,
) -> RunningAgent {
    let data_dir = dir.join(node);
    let reloads = dir.join(format!("{node}.reloads"));
    let settings = Settings {
        server: t.url().to_owned(),
        token,
        data_dir: data_dir.clone(),
        node: node.into(),
        config,
        clock: Arc::new(t.clock.clone()),
        poll_timeout: StdDuration::from_secs(1),
        max_backoff: StdDuration::from_millis(500),
    };
    let (stop, receiver) = watch::channel(false);
    let task = tokio::spawn(evergreen_agent::run(settings, receiver));
    RunningAgent {
        data_dir,
        reloads,
        stop,
        task,
    }
}

impl RunningAgent {
    fn installed(&self, name: &str) -> Option<String> {
        layout(&self.data_dir.join("certs").join(name))
            .installed()
            .map(|f| f.to_string())
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

/// Polls until `done` holds, at most 30 s.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if done().await {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn status(t: &TestServer, name: &str) -> NamedCertificateStatus {
    let all: Vec<NamedCertificateStatus> = t
        .admin()
        .get_json("/v1/cluster/certificates")
        .await
        .unwrap();
    all.into_iter().find(|s| s.name == name).unwrap()
}

fn spec(name: &str, scope: &str, sans: &[&str]) -> NamedCertificateSpec {
    NamedCertificateSpec {
        name: name.into(),
        scope: scope.parse().unwrap(),
        kind: evergreen_api::Kind::Selfsigned,
        label: String::new(),
        internal: false,
        usage: evergreen_api::Usage::Server,
        sans: sans.iter().map(|s| s.to_string()).collect(),
        nodes: vec![],
        secret: None,
        allowed_dns: Vec::new(),
        allowed_cidrs: Vec::new(),
    }
}

/// The installed pair matches, and the chain verifies for server use with webpki and
/// openssl against the cluster's root.
fn assert_installed_pair(t: &TestServer, dir: &Path) -> CertificateInfo {
    let chain =
        pem::parse_certificates("tls.crt", &std::fs::read(dir.join("tls.crt")).unwrap()).unwrap();
    let key =
        PrivateKey::from_pem("tls.key", &std::fs::read(dir.join("tls.key")).unwrap()).unwrap();
    assert!(key.matches_certificate(&chain[0]).unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("tls.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    evergreen_test_util::assert_chain(&t.root(), &chain, Usage::ServerAuth, t.clock.now());
    CertificateInfo::from_der(&chain[0]).unwrap()
}

/// `update_cert` for proxy with a certificate from the cluster's server CA; returns its
/// fingerprint.
async fn set_proxy(t: &TestServer) -> String {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let cluster = t.server.state.cluster.load();
    let request = IssueRequest {
        subject: DistinguishedName::common_name("proxy"),
        subject_alt_names: vec!["proxy.example".parse().unwrap()],
        public_key: key.public_key(),
        profile: Profile::Server,
        validity: Duration::days(90),
    };
    let issued = cluster.server_ca.issue(&request, t.clock.now()).unwrap();
    let mut certificate = pem::encode("CERTIFICATE", &issued.der);
    certificate.push_str(&cluster.server_ca.bundle_pem());
    let body = UpdateCert {
        name: "proxy".into(),
        key: key.to_pem(),
        certificate,
    };
    let set: Replacement = t
        .admin()
        .json("PUT", "/v1/cluster/update_cert", Some(&body))
        .await
        .unwrap();
    set.fingerprint.unwrap()
}

fn reload_count(agent: &RunningAgent) -> usize {
    std::fs::read_to_string(&agent.reloads)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_install_every_change_once_and_survive_a_server_restart() {
    two_agents_and_a_restart(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_install_every_change_once_and_survive_a_server_restart_on_postgres() {
    two_agents_and_a_restart(TestServer::start_postgres().await).await;
}

/// The end-to-end run on each datastore: declare, set, node scope, server down and back.
async fn two_agents_and_a_restart(t: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let a = start_agent(&t, dir.path(), "node-a", Some(t.node_token("node-a").await));
    let b = start_agent(&t, dir.path(), "node-b", Some(t.node_token("node-b").await));

    // Declared: both install version 1.
    let first: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&spec("proxy", "cluster", &["proxy.example"])),
        )
        .await
        .unwrap();
    let fp1 = first.fingerprint.clone().unwrap();
    until("both agents to install version 1", async || {
        a.installed("proxy").as_deref() == Some(&fp1)
            && b.installed("proxy").as_deref() == Some(&fp1)
    })
    .await;

    // certificate set: a certificate uploaded once reaches both.
    let fp2 = set_proxy(&t).await;
    until("both agents to install version 2", async || {
        a.installed("proxy").as_deref() == Some(&fp2)
            && b.installed("proxy").as_deref() == Some(&fp2)
    })
    .await;
    until("both acknowledgements", async || {
        let s = status(&t, "proxy").await;
        s.acknowledged.len() == 2
            && s.acknowledged
                .iter()
                .all(|a| a.version == 2 && a.fingerprint == fp2)
    })
    .await;
    // An agent reports only after its reload ran, so the count is final here.
    for agent in [&a, &b] {
        let info = assert_installed_pair(&t, &agent.data_dir.join("certs/proxy"));
        assert_eq!(info.fingerprint.to_string(), fp2);
        assert_eq!(
            reload_count(agent),
            2,
            "the reload command ran once per change"
        );
    }

    // Node scope: each node gets its own certificate, its key made on the node, naming the
    // node's enrolled name and the address an admin allowed for it (the agents connect
    // from loopback, which is never put in a node's certificate).
    for (node, ip) in [("node-a", "10.0.0.11"), ("node-b", "10.0.0.12")] {
        let _: evergreen_api::NodeStatus = t
            .admin()
            .json(
                "PUT",
                &format!("/v1/nodes/{node}/addresses"),
                Some(&evergreen_api::NodeAddresses {
                    addresses: vec![ip.into()],
                }),
            )
            .await
            .unwrap();
    }
    let _: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&spec("kubelet", "node", &["{node}", "{ip}"])),
        )
        .await
        .unwrap();
    for (agent, node, ip) in [(&a, "node-a", "10.0.0.11"), (&b, "node-b", "10.0.0.12")] {
        until("the node certificate", async || {
            agent.installed("kubelet").is_some()
        })
        .await;
        let info = assert_installed_pair(&t, &agent.data_dir.join("certs/kubelet"));
        let sans: Vec<String> = info
            .subject_alt_names
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(sans, [format!("DNS:{node}"), format!("IP:{ip}")]);
        assert_eq!(info.subject.to_string(), format!("CN={node}"));
    }

    // The server goes away: the agents keep every file; back on the same port, they pick
    // up the next change by themselves.
    let before: Vec<Vec<u8>> = [&a, &b]
        .iter()
        .map(|x| std::fs::read(x.data_dir.join("certs/proxy/tls.crt")).unwrap())
        .collect();
    let t = t
        .restart_after(async {
            tokio::time::sleep(StdDuration::from_secs(2)).await;
            let after: Vec<Vec<u8>> = [&a, &b]
                .iter()
                .map(|x| std::fs::read(x.data_dir.join("certs/proxy/tls.crt")).unwrap())
                .collect();
            assert_eq!(before, after, "files kept while the server is down");
        })
        .await
        .unwrap();
    let fp3 = set_proxy(&t).await;
    until("both agents to recover and install version 3", async || {
        a.installed("proxy").as_deref() == Some(&fp3)
            && b.installed("proxy").as_deref() == Some(&fp3)
    })
    .await;
    until("the reload after version 3", async || reload_count(&a) >= 3).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(reload_count(&a), 3, "once per change");
    a.stop().await;
    b.stop().await;
    t.shutdown().await;
}

#[tokio::test]
async fn a_token_for_another_cluster_sends_nothing() {
    let t = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let other = evergreen_test_util::hierarchy(KeyType::EcP256, t.clock.now());
    let token = evergreen_pki::token::JoinToken::generate(other.root.certificate())
        .unwrap()
        .to_string();
    let agent = start_agent(&t, dir.path(), "node-x", Some(token));
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    assert!(
        !agent.data_dir.join("identity/tls.crt").exists(),
        "no identity"
    );
    let query = evergreen_store::InventoryQuery {
        limit: 100,
        ..Default::default()
    };
    let rows = t
        .server
        .state
        .store
        .list_certificates(&query)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.role != "node"), "nothing enrolled");
    let log = t.server.state.store.audit_log(50).await.unwrap();
    assert!(
        log.iter().all(|e| e.action != "enroll"),
        "the token was never sent: {log:#?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_renews_before_expiry_and_an_expired_one_keeps_every_file() {
    let t = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Paths from the config file instead of the default layout.
    let custom = dir.path().join("etc-proxy");
    let config = Config {
        certificates: vec![CertificateConfig {
            name: "proxy".into(),
            cert: Some(custom.join("proxy.crt")),
            key: Some(custom.join("private/proxy.key")),
            ca: Some(custom.join("ca.pem")),
            mode: Some("0640".into()),
            ..CertificateConfig::default()
        }],
    };
    let agent = start_agent_with(
        &t,
        dir.path(),
        "node-c",
        Some(t.node_token("node-c").await),
        config.clone(),
    );
    let created: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&spec("proxy", "cluster", &["proxy.example"])),
        )
        .await
        .unwrap();
    let target = FilePaths {
        cert: custom.join("proxy.crt"),
        key: custom.join("private/proxy.key"),
        ca: custom.join("ca.pem"),
        ownership: Default::default(),
    };
    until("the install at the configured paths", async || {
        target.installed().map(|f| f.to_string()) == created.fingerprint
    })
    .await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(custom.join("proxy.crt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::metadata(custom.join("private/proxy.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // When the renewal window opens (90 days before expiry, minus jitter) the identity is
    // renewed, by itself.
    let identity = layout(&agent.data_dir.join("identity"));
    let first = identity.installed().unwrap();
    t.clock.advance(Duration::days(276));
    until("the identity to renew", async || {
        identity.installed().is_some_and(|f| f != first)
    })
    .await;
    let data_dir = agent.data_dir.clone();
    agent.stop().await;

    // Expired, and no token to enroll again: nothing is deleted, the agent keeps trying.
    t.clock.advance(Duration::days(400));
    let files: Vec<Vec<u8>> = ["proxy.crt", "private/proxy.key", "ca.pem"]
        .iter()
        .map(|f| std::fs::read(custom.join(f)).unwrap())
        .collect();
    let identity_files = std::fs::read(data_dir.join("identity/tls.crt")).unwrap();
    let again = start_agent_with(&t, dir.path(), "node-c", None, config);
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    assert!(!again.task.is_finished(), "still running, still retrying");
    let now: Vec<Vec<u8>> = ["proxy.crt", "private/proxy.key", "ca.pem"]
        .iter()
        .map(|f| std::fs::read(custom.join(f)).unwrap())
        .collect();
    assert_eq!(files, now, "installed files kept");
    assert_eq!(
        std::fs::read(again.data_dir.join("identity/tls.crt")).unwrap(),
        identity_files
    );
    again.stop().await;
}

/// The default layout at `dir`, as the agent reads it.
fn layout(dir: &Path) -> FileLayout {
    FileLayout {
        dir: dir.to_owned(),
        ownership: Default::default(),
    }
}

/// The chain installed at `dir` (Kubernetes secret-volume layout).
fn installed_chain(dir: &Path) -> Vec<evergreen_pki::CertificateDer<'static>> {
    pem::parse_certificates("tls.crt", &std::fs::read(layout(dir).cert_path()).unwrap()).unwrap()
}

fn issued_by(
    chain: &[evergreen_pki::CertificateDer<'static>],
    ca: &evergreen_pki::CertificateDer<'_>,
) -> bool {
    evergreen_pki::chain::is_signed_by(&chain[0], ca).unwrap()
}

/// What the busy mTLS client saw.
#[derive(Default)]
struct Busy {
    rounds: usize,
    failures: Vec<String>,
    chain: Vec<evergreen_pki::CertificateDer<'static>>,
}

/// An application that renews its certificate over a new mTLS connection each round,
/// trusting only `roots` (what it was given at enrollment), until `stop`.
async fn busy_client(
    url: String,
    roots: Vec<evergreen_pki::CertificateDer<'static>>,
    clock: evergreen_api::ManualClock,
    mut credential: evergreen_test_util::server::Credential,
    seen: Arc<std::sync::Mutex<Busy>>,
    stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let csr = evergreen_pki::csr::build(&key, &DistinguishedName::common_name("busy-app"), &[])
            .unwrap();
        let client = evergreen_api::client::Client::with_clock(
            &url,
            &roots,
            Some((credential.chain.clone(), credential.key.der().clone_key())),
            Arc::new(clock.clone()),
        )
        .unwrap();
        let answer: Result<evergreen_api::CertificateBundle, _> = client
            .json(
                "POST",
                "/v1/applications/certificates/renewals",
                Some(&evergreen_api::RenewalRequest {
                    csr: evergreen_api::encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
                }),
            )
            .await;
        {
            let mut seen = seen.lock().unwrap();
            seen.rounds += 1;
            match answer {
                Ok(bundle) => {
                    let chain = pem::parse_certificates(
                        "crt",
                        &evergreen_api::decode_pem(&bundle.crt).unwrap(),
                    )
                    .unwrap();
                    credential.chain = chain.clone();
                    credential.key = key;
                    seen.chain = chain;
                }
                Err(e) => seen.failures.push(e.to_string()),
            }
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_and_an_mtls_client_stay_connected_through_role_ca_and_root_rotation() {
    let t = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let old_root = t.root();
    let agent = start_agent(&t, dir.path(), "node-a", Some(t.node_token("node-a").await));
    for named in [
        spec("proxy", "cluster", &["proxy.example"]),
        spec("kubelet", "node", &["{node}"]),
    ] {
        let _: Replacement = t
            .admin()
            .json("POST", "/v1/cluster/certificates", Some(&named))
            .await
            .unwrap();
    }
    until("both certificates installed", async || {
        agent.installed("proxy").is_some() && agent.installed("kubelet").is_some()
    })
    .await;

    let app = t
        .enroll(
            evergreen_api::Role::App,
            &DistinguishedName::common_name("busy-app"),
        )
        .await;
    let seen = Arc::new(std::sync::Mutex::new(Busy::default()));
    let (stop, stopped) = watch::channel(false);
    let client = tokio::spawn(busy_client(
        t.url().to_owned(),
        vec![old_root.clone()],
        t.clock.clone(),
        app,
        seen.clone(),
        stopped,
    ));

    // Every leaf (the agent's identity and certificates, the client's) on the current CAs.
    let all_moved = async || {
        let cluster = t.server.state.cluster.load_full();
        let (server_ca, client_ca) = (
            cluster.server_ca.certificate(),
            cluster.client_ca.certificate(),
        );
        let rounds = seen.lock().unwrap().rounds;
        until("every leaf on the new CAs", async || {
            let seen = seen.lock().unwrap();
            seen.rounds > rounds + 2
                && issued_by(&seen.chain, client_ca)
                && issued_by(
                    &installed_chain(&agent.data_dir.join("identity")),
                    client_ca,
                )
                && issued_by(
                    &installed_chain(&agent.data_dir.join("certs/proxy")),
                    server_ca,
                )
                && issued_by(
                    &installed_chain(&agent.data_dir.join("certs/kubelet")),
                    server_ca,
                )
        })
        .await;
    };

    // Role CAs rotate under the same root.
    let files = evergreen_test_util::server::stage_role_cas(
        &t.current_root_ca().await,
        std::slice::from_ref(&old_root),
        t.clock.now(),
    );
    t.rotate_ca(&files, false).await.unwrap();
    all_moved().await;

    // The root rotates, cross-signed.
    let (root, cross) = t.new_cross_signed_root().await;
    let mut files = evergreen_test_util::server::stage_role_cas(
        &root,
        std::slice::from_ref(&cross),
        t.clock.now(),
    );
    files.insert("root-ca.crt".into(), root.bundle_pem());
    files.insert("root-ca.key".into(), root.key().to_pem());
    t.rotate_ca(&files, false).await.unwrap();
    all_moved().await;
    until("the agent to trust the new root", async || {
        std::fs::read_to_string(agent.data_dir.join("root.crt"))
            .is_ok_and(|roots| roots.contains(&root.bundle_pem()))
    })
    .await;

    let _ = stop.send(true);
    client.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.failures.is_empty(),
        "the client failed: {:?}",
        seen.failures
    );
    assert!(
        seen.rounds > 6,
        "the client kept renewing ({} rounds)",
        seen.rounds
    );
    assert_eq!(
        t.server
            .state
            .metrics
            .handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no TLS handshake with the server failed"
    );
    // At the end every leaf chains to the new root (webpki and openssl).
    let now = t.clock.now();
    let new_root = root.certificate();
    evergreen_test_util::assert_chain(new_root, &seen.chain, Usage::ClientAuth, now);
    for (path, usage) in [
        ("identity", Usage::ClientAuth),
        ("certs/proxy", Usage::ServerAuth),
        ("certs/kubelet", Usage::ServerAuth),
    ] {
        let chain = installed_chain(&agent.data_dir.join(path));
        evergreen_test_util::assert_chain(new_root, &chain, usage, now);
    }
    agent.stop().await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_certificate_is_removed_from_the_node() {
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
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&t, dir.path(), "node-a", Some(t.node_token("node-a").await));
    until("proxy installed", async || {
        agent.installed("proxy").is_some()
    })
    .await;
    let installed = agent.data_dir.join("certs/proxy");
    assert_installed_pair(&t, &installed);

    let _: evergreen_api::NamedDeletion = t
        .admin()
        .json::<(), _>("DELETE", "/v1/cluster/certificates/proxy", None)
        .await
        .unwrap();
    until("proxy removed from the node", async || !installed.exists()).await;
    let state = std::fs::read_to_string(agent.data_dir.join("state.json")).unwrap();
    assert!(!state.contains("proxy"), "{state}");
    agent.stop().await;
}
