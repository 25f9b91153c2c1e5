//! Attacks, replayed over real mTLS: each one a security review found, as an attacker
//! holding a node join token, an app token or nothing would try it. Every test fails
//! while its hole is open.
use evergreen_api::client::ClientError;
use evergreen_api::{
    AgentIssueRequest, AgentStatus, CertificateBundle, Clock, Installed, NamedCertificateSpec,
    NodeAddresses, NodeStatus, Replacement, Role, TokenRequest, decode_pem, encode_pem,
};
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::{
    CertificateAuthority, DistinguishedName, Duration, KeyType, PrivateKey, SubjectAltName, pem,
};
use evergreen_store::InventoryQuery;
use evergreen_test_util::server::{Credential, TestServer};

use crate::{assert_audited_refusal, refusal};

fn cn(name: &str) -> DistinguishedName {
    DistinguishedName::common_name(name)
}

async fn token(t: &TestServer, request: TokenRequest) -> String {
    t.token_with(&request).await.unwrap().token
}

async fn uses(t: &TestServer, token: &str) -> i64 {
    let id = token.split("::").nth(1).unwrap().split('.').next().unwrap();
    t.server.state.store.token(id).await.unwrap().unwrap().uses
}

async fn inventory(t: &TestServer) -> Vec<String> {
    let query = InventoryQuery {
        limit: 10_000,
        ..Default::default()
    };
    let mut serials: Vec<String> = t
        .server
        .state
        .store
        .list_certificates(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.serial)
        .collect();
    serials.sort();
    serials
}

#[tokio::test]
async fn a_node_token_enrolls_its_own_name_once() {
    let t = TestServer::start().await;
    let node_2 = t.enroll(Role::Node, &cn("node-2")).await;

    // A second token for the enrolled name, a pattern token matching it, an app token for
    // its subject: all refused, none counting a use, nothing issued.
    let before = inventory(&t).await;
    let again = t.node_token("node-2").await;
    let message = refusal(t.enroll_with(&again, &cn("node-2"), &[]).await, 409);
    assert!(message.contains("node-2 is enrolled already"), "{message}");
    let pattern = token(
        &t,
        TokenRequest {
            role: Role::Node,
            nodes: Some("node-*".into()),
            uses: Some(5),
            ..Default::default()
        },
    )
    .await;
    refusal(t.enroll_with(&pattern, &cn("node-2"), &[]).await, 409);
    let app = t.app_token(&cn("node-2")).await;
    let message = refusal(t.enroll_with(&app, &cn("node-2"), &[]).await, 403);
    assert!(
        message.contains("subject of a node certificate"),
        "{message}"
    );
    assert_eq!(inventory(&t).await, before, "nothing issued");
    for token in [&again, &pattern, &app] {
        assert_eq!(uses(&t, token).await, 0, "a refusal counts no use");
    }
    assert_audited_refusal(&t, "enroll", "is enrolled already").await;

    // A token enrolls exactly its name, whatever the CSR asks for, and once.
    let node_3 = t.node_token("node-3").await;
    let message = refusal(t.enroll_with(&node_3, &cn("node-2"), &[]).await, 403);
    assert!(message.contains("does not match"), "{message}");
    let as_admin = cn("node-3").with(
        evergreen_pki::name::NameAttribute::Organization,
        "evergreen:admin",
    );
    refusal(t.enroll_with(&node_3, &as_admin, &[]).await, 403);
    let enrolled = t.enroll_with(&node_3, &cn("node-3"), &[]).await.unwrap();
    let info = CertificateInfo::from_der(enrolled.leaf()).unwrap();
    assert_eq!(info.subject.to_string(), "CN=node-3");
    let message = refusal(t.enroll_with(&node_3, &cn("node-3"), &[]).await, 401);
    assert!(message.contains("all it allows"), "{message}");

    // An agent that stopped before it saved its answer asks again with the same key: it
    // gets the same certificate, no use is counted, nothing new is issued.
    let replayed = t.node_token("node-5").await;
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let csr = evergreen_pki::csr::build(&key, &cn("node-5"), &[]).unwrap();
    let request = evergreen_api::EnrollRequest {
        token: replayed.clone(),
        csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
    };
    let first: CertificateBundle = t
        .anonymous()
        .json("POST", "/v1/enroll", Some(&request))
        .await
        .unwrap();
    let issued = inventory(&t).await;
    let again: CertificateBundle = t
        .anonymous()
        .json("POST", "/v1/enroll", Some(&request))
        .await
        .unwrap();
    assert_eq!(again.client_crt, first.client_crt);
    assert_eq!(inventory(&t).await, issued);
    assert_eq!(uses(&t, &replayed).await, 1);
    // The pattern token enrolls names it matches and has left.
    t.enroll_with(&pattern, &cn("node-4"), &[]).await.unwrap();
    refusal(t.enroll_with(&pattern, &cn("worker-1"), &[]).await, 403);

    // node replace: the old identity is revoked (its next handshake fails) and a new
    // token enrolls the name.
    let replaced: NodeStatus = t
        .admin()
        .json::<(), _>("POST", "/v1/nodes/node-2/replace", None)
        .await
        .unwrap();
    assert!(replaced.identities.is_empty(), "{replaced:?}");
    let old = t
        .client(&node_2)
        .send(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(b"{}".to_vec()),
        )
        .await;
    assert!(
        matches!(
            old,
            Err(ClientError::Handshake { .. }) | Err(ClientError::Http { .. })
        ),
        "{old:?}"
    );
    let fresh = t.node_token("node-2").await;
    t.enroll_with(&fresh, &cn("node-2"), &[]).await.unwrap();
}

#[tokio::test]
async fn no_token_enrolls_the_admins_or_the_servers_names() {
    let t = TestServer::start().await;
    for subject in [
        "CN=evergreen-admin, O=evergreen:admin",
        "CN=evergreen-server",
        "CN=app, O=evergreen:node",
    ] {
        let request = TokenRequest {
            role: Role::App,
            subject: Some(subject.into()),
            ..Default::default()
        };
        let message = refusal(t.token_with(&request).await, 403);
        assert!(
            message.contains("reserved") || message.contains("server's own"),
            "{message}"
        );
    }
    let node = TokenRequest {
        role: Role::Node,
        node: Some("evergreen-admin".into()),
        ..Default::default()
    };
    refusal(t.token_with(&node).await, 400);
    assert_audited_refusal(&t, "token.create", "reserved").await;

    // A token whose pattern would match them still cannot enroll them.
    let before = inventory(&t).await;
    let any_app = token(
        &t,
        TokenRequest {
            role: Role::App,
            subject: Some("CN=*, O=*".into()),
            uses: Some(10),
            ..Default::default()
        },
    )
    .await;
    let admin = cn("evergreen-admin").with(
        evergreen_pki::name::NameAttribute::Organization,
        "evergreen:admin",
    );
    let message = refusal(t.enroll_with(&any_app, &admin, &[]).await, 403);
    assert!(
        message.contains("never issued through a token"),
        "{message}"
    );
    let any_node = token(
        &t,
        TokenRequest {
            role: Role::Node,
            nodes: Some("*".into()),
            uses: Some(10),
            ..Default::default()
        },
    )
    .await;
    for name in ["evergreen-admin", "evergreen-server", "Node-1", "a b", "x*"] {
        refusal(t.enroll_with(&any_node, &cn(name), &[]).await, 403);
    }
    assert_eq!(inventory(&t).await, before, "nothing issued");
    assert_eq!(uses(&t, &any_app).await, 0);
    assert_eq!(uses(&t, &any_node).await, 0);
}

fn node_spec(name: &str, sans: &[&str]) -> NamedCertificateSpec {
    NamedCertificateSpec {
        name: name.into(),
        scope: evergreen_api::Scope::Node,
        kind: evergreen_api::Kind::Selfsigned,
        label: String::new(),
        internal: false,
        usage: evergreen_api::Usage::Server,
        sans: sans.iter().map(|s| s.to_string()).collect(),
        nodes: vec![],
        secret: None,
        allowed_dns: vec!["nodes.example".into()],
        allowed_cidrs: vec!["10.0.0.0/8".into()],
    }
}

/// A node-scope certificate asked for as `node`, its CSR asking for `sans`.
async fn issue_as(
    t: &TestServer,
    node: &Credential,
    name: &str,
    sans: &[SubjectAltName],
) -> Result<CertificateBundle, ClientError> {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = CertificateInfo::from_der(node.leaf()).unwrap().subject;
    let csr = evergreen_pki::csr::build(&key, &subject, sans).unwrap();
    let request = AgentIssueRequest {
        name: name.into(),
        csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
    };
    t.client(node)
        .json("POST", "/v1/agent/issue", Some(&request))
        .await
}

async fn allow(t: &TestServer, node: &str, ips: &[&str]) -> Result<NodeStatus, ClientError> {
    let body = NodeAddresses {
        addresses: ips.iter().map(|s| s.to_string()).collect(),
    };
    t.admin()
        .json("PUT", &format!("/v1/nodes/{node}/addresses"), Some(&body))
        .await
}

#[tokio::test]
async fn node_scope_names_are_facts_the_server_checks() {
    let t = TestServer::start().await;
    let node = t.enroll(Role::Node, &cn("node-1")).await;
    let _: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&node_spec("kubelet", &["{node}.nodes.example", "{ip}"])),
        )
        .await
        .unwrap();
    let before = inventory(&t).await;
    // The CSR asks for the server's names, localhost, loopback and a wildcard.
    let greedy: Vec<SubjectAltName> = ["localhost", "127.0.0.1", "*.example.com", "::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();

    // The node connects from loopback: never put in a certificate, so with no allowed
    // address there is no {ip} to issue.
    let message = refusal(issue_as(&t, &node, "kubelet", &greedy).await, 403);
    assert!(
        message.contains("never put in a node's certificate"),
        "{message}"
    );
    assert_audited_refusal(&t, "agent.issue", "evergreen node allow node-1").await;

    // The admin cannot allow a loopback address; an address outside the declared
    // ranges is allowed for the node but refused for this certificate.
    refusal(allow(&t, "node-1", &["127.0.0.1"]).await, 400);
    refusal(allow(&t, "node-1", &["0.0.0.0"]).await, 400);
    allow(&t, "node-1", &["192.168.1.5"]).await.unwrap();
    let message = refusal(issue_as(&t, &node, "kubelet", &greedy).await, 403);
    assert!(
        message.contains("outside the allowed IP ranges"),
        "{message}"
    );
    assert_eq!(inventory(&t).await, before, "nothing issued");

    // The request cannot say its address.
    let sneaky = serde_json::json!({"name": "kubelet", "csr": "", "ip": "10.9.9.9"});
    let message = refusal(
        t.client(&node)
            .json::<_, serde_json::Value>("POST", "/v1/agent/issue", Some(&sneaky))
            .await,
        400,
    );
    assert!(message.contains("unknown field `ip`"), "{message}");

    // With an allowed address: exactly the declared names, whatever the CSR asked for.
    allow(&t, "node-1", &["10.0.0.5"]).await.unwrap();
    let bundle = issue_as(&t, &node, "kubelet", &greedy).await.unwrap();
    let chain = pem::parse_certificates("crt", &decode_pem(&bundle.crt).unwrap()).unwrap();
    evergreen_test_util::assert_chain(&t.root(), &chain, Usage::ServerAuth, t.clock.now());
    let sans: Vec<String> = CertificateInfo::from_der(&chain[0])
        .unwrap()
        .subject_alt_names
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(sans, ["DNS:node-1.nodes.example", "IP:10.0.0.5"]);

    // Declarations that would name what a node never gets are refused up front.
    for sans in [
        &["*.{node}"][..],
        &["localhost"],
        &["127.0.0.1"],
        &["{node}.other.example"],
    ] {
        let mut spec = node_spec("bad", sans);
        spec.allowed_dns = vec!["nodes.example".into()];
        let result = t
            .admin()
            .json::<_, Replacement>("POST", "/v1/cluster/certificates", Some(&spec))
            .await;
        if sans[0].starts_with("{node}") {
            // {node} may hold dots, so only the issued name is checked against suffixes.
            result.unwrap();
            let message = refusal(issue_as(&t, &node, "bad", &[]).await, 403);
            assert!(
                message.contains("outside the allowed DNS suffixes"),
                "{message}"
            );
        } else {
            refusal(result, 400);
        }
    }

    // A node whose name is a name of this server, or localhost, gets nothing for it.
    let mut bare = node_spec("bare", &["{node}"]);
    bare.allowed_dns.clear();
    bare.allowed_cidrs.clear();
    let _: Replacement = t
        .admin()
        .json("POST", "/v1/cluster/certificates", Some(&bare))
        .await
        .unwrap();
    let any = token(
        &t,
        TokenRequest {
            role: Role::Node,
            nodes: Some("*".into()),
            uses: Some(3),
            ..Default::default()
        },
    )
    .await;
    let localhost = t.enroll_with(&any, &cn("localhost"), &[]).await.unwrap();
    let message = refusal(issue_as(&t, &localhost, "bare", &[]).await, 403);
    assert!(
        message.contains("localhost names whatever machine"),
        "{message}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    if let Ok(as_server) = t.enroll_with(&any, &cn(&host), &[]).await {
        let message = refusal(issue_as(&t, &as_server, "bare", &[]).await, 403);
        assert!(message.contains("a name of this server"), "{message}");
    }
}

#[tokio::test]
async fn acknowledgements_name_only_what_was_assigned() {
    let t = TestServer::start().await;
    let node = t.enroll(Role::Node, &cn("node-1")).await;
    let created: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&crate::named::spec("proxy")),
        )
        .await
        .unwrap();
    let status = |certificates: Vec<Installed>| AgentStatus {
        certificates,
        refused: Vec::new(),
    };
    let post = async |report: &AgentStatus| {
        t.client(&node)
            .send(
                "POST",
                "/v1/agent/status",
                Some(serde_json::to_vec(report).unwrap()),
            )
            .await
            .unwrap()
            .status
    };
    let made_up = |n: usize| -> Vec<Installed> {
        (0..n)
            .map(|i| Installed {
                name: format!("made-up-{i}"),
                version: 1,
                fingerprint: "0".repeat(64),
                served: None,
            })
            .collect()
    };
    assert_eq!(
        post(&status(made_up(900))).await,
        413,
        "over the body limit"
    );
    assert_eq!(post(&status(made_up(100))).await, 400, "more than declared");
    for wrong in [
        Installed {
            name: "other".into(),
            version: 1,
            fingerprint: created.fingerprint.clone().unwrap(),
            served: None,
        },
        Installed {
            name: "proxy".into(),
            version: 7,
            fingerprint: created.fingerprint.clone().unwrap(),
            served: None,
        },
        Installed {
            name: "proxy".into(),
            version: 1,
            fingerprint: "ab".repeat(32),
            served: None,
        },
    ] {
        assert_eq!(post(&status(vec![wrong])).await, 400);
    }
    assert!(
        t.server
            .state
            .store
            .acknowledgements()
            .await
            .unwrap()
            .is_empty()
    );
    let right = Installed {
        name: "proxy".into(),
        version: 1,
        fingerprint: created.fingerprint.unwrap(),
        served: None,
    };
    assert_eq!(post(&status(vec![right])).await, 204);
    assert_eq!(
        t.server.state.store.acknowledgements().await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn subjects_are_bounded_and_escaped_before_they_are_stored_or_logged() {
    let t = TestServer::start().await;
    let any = token(
        &t,
        TokenRequest {
            role: Role::App,
            subject: Some("CN=*".into()),
            uses: Some(10),
            ..Default::default()
        },
    )
    .await;
    let before = inventory(&t).await;
    for (name, expected) in [
        ("x".repeat(20_000), "RFC 5280 allows at most 64"),
        ("nul\0byte".to_owned(), "control character"),
        ("esc\u{1b}[31m".to_owned(), "control character"),
        ("new\nline".to_owned(), "control character"),
    ] {
        let message = refusal(t.enroll_with(&any, &cn(&name), &[]).await, 403);
        assert!(message.contains(expected), "{message}");
        assert!(
            message.len() < 4096,
            "the answer is bounded too: {}",
            message.len()
        );
        t.clock.advance(evergreen_test_util::AUDIT_WINDOW);
    }
    assert_eq!(inventory(&t).await, before);
    assert_eq!(uses(&t, &any).await, 0);

    // Self-signed client certificates with huge subjects holding a newline, presented by
    // curl (rustls will not even load them as a client): a 60 KB subject (120 KB with its
    // issuer) is refused at the handshake, whose messages rustls caps at 64 KiB; a 30 KB one
    // reaches the API, 1,000 times. Each source writes one full row per action and reason
    // and one summary; no field holds a line break.
    let audit_before = t.server.state.store.audit_log(100_000).await.unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/applications/certificates/renewals", t.url());
    let curl = async |size: usize, times: usize| {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let huge = format!("evil\nforged: admin {}", "A".repeat(size));
        let fake = CertificateAuthority::new_root(cn(&huge), key, Duration::days(1), t.clock.now())
            .unwrap();
        std::fs::write(dir.path().join("fake.crt"), fake.bundle_pem()).unwrap();
        std::fs::write(dir.path().join("fake.key"), fake.key().to_pem()).unwrap();
        let config: String = (0..times)
            .map(|_| format!("url = \"{url}\"\noutput = \"/dev/null\"\n"))
            .collect();
        std::fs::write(dir.path().join("urls"), config).unwrap();
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(t.data_dir.join("ca.crt"))
            .args(["--cert", "fake.crt", "--key", "fake.key", "-X", "POST"])
            .args(["-d", "{\"csr\":\"\"}", "-K", "urls"])
            .args(["-w", "%{http_code} %{size_download}\\n"])
            .current_dir(dir.path())
            .output()
            .await
            .expect("curl runs");
        String::from_utf8(out.stdout).unwrap()
    };
    let refused = curl(60_000, 10).await;
    assert!(refused.lines().all(|l| l.starts_with("000")), "{refused}");
    let answers = curl(30_000, 1000).await;
    assert_eq!(answers.lines().count(), 1000);
    for answer in answers.lines() {
        let (code, size) = answer.split_once(' ').unwrap();
        assert_eq!(code, "401", "{answer}");
        assert!(size.parse::<usize>().unwrap() < 4096, "{answer}");
    }
    t.clock.advance(evergreen_test_util::AUDIT_WINDOW);
    t.server.check_now().await.unwrap();
    let log = t.server.state.store.audit_log(100_000).await.unwrap();
    let new = &log[..log.len() - audit_before];
    assert_eq!(
        new.len(),
        4,
        "two rows for the handshakes, two for the requests: {new:#?}"
    );
    let summaries: Vec<&str> = new[..2].iter().map(|r| r.detail.as_str()).collect();
    assert!(
        summaries.iter().any(|d| d.starts_with("999 more refusals"))
            && summaries.iter().any(|d| d.starts_with("9 more refusals")),
        "{summaries:?}"
    );
    for row in new {
        let size = row.actor.len() + row.target.len() + row.detail.len() + row.action.len();
        assert!(size <= 3 * 1024, "{size} bytes: {row:?}");
        for field in [&row.actor, &row.target, &row.detail] {
            assert!(!field.contains('\n'), "{field:?}");
        }
    }
    assert!(
        new.iter().any(|r| r.actor.contains("\\nforged")),
        "the subject is quoted, escaped: {new:#?}"
    );
}

/// Everything a junk request must leave as it was.
async fn state_of(t: &TestServer) -> serde_json::Value {
    let store = &t.server.state.store;
    let named: Vec<(String, i64, String)> = store
        .named()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.version, n.kind))
        .collect();
    let cas: Vec<String> = store
        .cas()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.bundle_pem)
        .collect();
    let jwks: serde_json::Value = t
        .anonymous()
        .get_json("/v1/keys/service-account")
        .await
        .unwrap();
    serde_json::json!({
        "revision": store.revision().await.unwrap(),
        "named": named,
        "cas": cas,
        "jwks": jwks,
        "inventory": inventory(t).await,
        "acks": store.acknowledgements().await.unwrap().len(),
    })
}

#[tokio::test]
async fn junk_bodies_and_queries_change_nothing() {
    let t = TestServer::start().await;
    let node = t.enroll(Role::Node, &cn("node-1")).await;
    let app = t.enroll(Role::App, &cn("app")).await;
    let _: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&crate::named::spec("proxy")),
        )
        .await
        .unwrap();
    let before = state_of(&t).await;
    let junk: [&[u8]; 11] = [
        b"[]",
        b"[null,null]",
        b"[\"proxy\"]",
        b"\"x\"",
        b"1",
        b"null",
        b"{",
        b"{\"name\":[\"proxy\"]}",
        b"{\"unknown\":1}",
        b"",
        &[b'{'; 70_000],
    ];
    let routes = [
        ("POST", "/v1/enroll", "anonymous"),
        ("POST", "/v1/applications/certificates/renewals", "app"),
        ("POST", "/v1/applications/certificates/revocations", "app"),
        ("POST", "/v1/certificates/revocations", "admin"),
        ("PUT", "/v1/ca/rotate", "admin"),
        ("POST", "/v1/keys/service-account/rotate", "admin"),
        ("POST", "/v1/tokens", "admin"),
        ("POST", "/v1/cluster/certificates", "admin"),
        ("PUT", "/v1/cluster/certificates", "admin"),
        ("PUT", "/v1/cluster/update_cert", "admin"),
        ("POST", "/v1/cluster/certificates/rotate", "admin"),
        ("PUT", "/v1/cluster/certificates/proxy/label", "admin"),
        ("POST", "/v1/nodes/node-9/bundle", "admin"),
        ("PUT", "/v1/nodes/node-1/addresses", "admin"),
        ("POST", "/v1/nodes/node-1/replace", "admin"),
        ("POST", "/v1/agent/issue", "node"),
        ("POST", "/v1/agent/status", "node"),
    ];
    for (method, path, who) in routes {
        let client = match who {
            "admin" => t.admin(),
            "node" => t.client(&node),
            "app" => t.client(&app),
            _ => t.anonymous(),
        };
        for body in junk {
            // Routes without a body take only an empty one (or {}).
            let takes_none = path.ends_with("/revocations") && who == "app"
                || path.ends_with("/bundle")
                || path.ends_with("/replace");
            if takes_none && body.is_empty() {
                continue;
            }
            let answer = client
                .send(method, path, Some(body.to_vec()))
                .await
                .unwrap();
            let shown = String::from_utf8_lossy(&body[..body.len().min(20)]).into_owned();
            assert!(
                (400..500).contains(&answer.status),
                "{method} {path} {shown:?}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            let error: evergreen_api::ErrorBody = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{method} {path} {shown:?}: not JSON ({e})"));
            assert_eq!(error.code, answer.status);
        }
    }
    // Query strings, methods and paths the API does not have: JSON errors too.
    for (method, path, who, code) in [
        ("PUT", "/v1/ca/rotate?force=x", "admin", 400),
        ("GET", "/v1/agent/watch?revision=x", "node", 400),
        ("GET", "/v1/agent/watch?revision=1&evil=1", "node", 400),
        (
            "GET",
            "/v1/certificates?expiring_within=999999999999999d",
            "admin",
            400,
        ),
        (
            "GET",
            &format!("/v1/certificates?expiring_within={}", i64::MAX),
            "admin",
            400,
        ),
        ("GET", "/v1/certificates?limit=-1", "admin", 400),
        ("GET", "/v1/certificates?limit=0", "admin", 400),
        ("GET", "/v1/certificates?limit=1001", "admin", 400),
        ("GET", "/v1/certificates?limit=2147483648", "admin", 400),
        (
            "GET",
            "/v1/certificates?status=active&status=revoked",
            "admin",
            400,
        ),
        ("GET", "/v1/enroll", "anonymous", 405),
        ("DELETE", "/v1/tokens", "admin", 405),
        ("GET", "/v1/nothing-here", "anonymous", 404),
    ] {
        let client = match who {
            "admin" => t.admin(),
            "node" => t.client(&node),
            _ => t.anonymous(),
        };
        let answer = client.send(method, path, None).await.unwrap();
        assert_eq!(answer.status, code, "{method} {path}");
        let error: evergreen_api::ErrorBody = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e})"));
        assert_eq!(error.code, code);
    }
    let ttl = TokenRequest {
        role: Role::Node,
        node: Some("node-5".into()),
        ttl_seconds: Some(u64::MAX),
        ..Default::default()
    };
    refusal(t.token_with(&ttl).await, 400);
    let largest = t
        .admin()
        .send("GET", "/v1/certificates?limit=1000", None)
        .await
        .unwrap();
    assert_eq!(largest.status, 200, "the largest page the document allows");
    assert_eq!(state_of(&t).await, before, "junk changed nothing");
    assert_audited_refusal(&t, "http DELETE", "not allowed").await;
    assert_audited_refusal(&t, "ca.rotate", "invalid query").await;
}
