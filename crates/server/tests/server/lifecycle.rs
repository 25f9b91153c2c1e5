//! First start, restart, a wrong secret, staged CA files, and the server's own
//! certificates renewed while it runs.
use evergreen_api::client::Client;
use evergreen_api::{Clock, ManualClock, Role};
use evergreen_pki::certificate::{CertificateInfo, Fingerprint, Usage};
use evergreen_pki::token::JoinToken;
use evergreen_pki::{DistinguishedName, Duration, KeyType, PrivateKey, pem};
use evergreen_test_util::Openssl;
use evergreen_test_util::server::TestServer;

#[tokio::test]
async fn a_restart_keeps_every_ca_token_and_inventory_row() {
    let t = TestServer::start().await;
    let root = t.root();
    let node_token = t.node_token("node-2").await;
    let node = t
        .enroll(Role::Node, &DistinguishedName::common_name("node-1"))
        .await;
    let serial = CertificateInfo::from_der(node.leaf()).unwrap().serial_hex();
    let data_dir = t.data_dir.clone();
    let clock = t.clock.clone();
    let _dir = t.shutdown().await;

    let t = TestServer::start_in(&data_dir, clock).await.unwrap();
    assert_eq!(t.root(), root, "same root CA");
    assert!(
        t.server
            .state
            .store
            .certificate_by_serial(&serial)
            .await
            .unwrap()
            .is_some()
    );
    // A token made before the restart still enrolls, and the old credential renews.
    t.enroll_with(&node_token, &DistinguishedName::common_name("node-2"), &[])
        .await
        .unwrap();
    let csr = evergreen_pki::csr::build(&node.key, &DistinguishedName::common_name("node-1"), &[])
        .unwrap();
    let request = evergreen_api::RenewalRequest {
        csr: evergreen_api::encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
    };
    let _: evergreen_api::CertificateBundle = t
        .client(&node)
        .json(
            "POST",
            "/v1/applications/certificates/renewals",
            Some(&request),
        )
        .await
        .unwrap();
    let _ = t.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_stops_start_up_and_changes_nothing() {
    let t = TestServer::start().await;
    let data_dir = t.data_dir.clone();
    let clock = t.clock.clone();
    let _dir = t.shutdown().await;
    let token_path = data_dir.join("server/token");
    let good: JoinToken = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bad = JoinToken::new(good.root_hash(), good.id().into(), "x".repeat(32)).unwrap();
    std::fs::write(&token_path, bad.to_string()).unwrap();
    // Every file, except SQLite's sidecars: opening a WAL database creates an index
    // (-shm) and an empty log (-wal) that closing removes, a moment later on sqlx's
    // worker threads. A write would show in the log, so it must be absent or empty.
    let snapshot = |dir: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = walk(dir)
            .into_iter()
            .filter(|p| {
                let name = p.display().to_string();
                if name.ends_with("-wal") {
                    assert_eq!(
                        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
                        0,
                        "nothing was written to the log"
                    );
                }
                !name.ends_with("-shm") && !name.ends_with("-wal")
            })
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&data_dir);
    let err = TestServer::start_in(&data_dir, clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not match this datastore") && err.contains("nothing was changed"),
        "{err}"
    );
    let after = snapshot(&data_dir);
    let changed: Vec<&String> = after
        .iter()
        .filter(|f| !before.contains(f))
        .map(|(name, _)| name)
        .chain(
            before
                .iter()
                .filter(|f| !after.contains(f))
                .map(|(name, _)| name),
        )
        .collect();
    assert!(
        changed.is_empty(),
        "files changed by a refused start: {changed:?}"
    );

    std::fs::remove_file(&token_path).unwrap();
    let err = TestServer::start_in(&data_dir, clock)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server token") && err.contains("is missing"),
        "{err}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn ca_files_staged_before_first_start_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let tls = data_dir.join("server/tls");
    std::fs::create_dir_all(&tls).unwrap();
    let clock = ManualClock::new(evergreen_test_util::wall_clock());
    let staged = evergreen_test_util::hierarchy(KeyType::EcP384, clock.now());
    std::fs::write(
        tls.join("root-ca.crt"),
        pem::encode("CERTIFICATE", staged.root.certificate()),
    )
    .unwrap();
    for (name, ca) in [
        ("server-ca", &staged.server),
        ("client-ca", &staged.client),
        ("peer-ca", &staged.peer),
    ] {
        std::fs::write(tls.join(format!("{name}.crt")), ca.bundle_pem()).unwrap();
        std::fs::write(tls.join(format!("{name}.key")), ca.key().to_pem()).unwrap();
    }
    let t = TestServer::start_in(&data_dir, clock).await.unwrap();
    assert_eq!(t.root(), *staged.root.certificate());
    assert_eq!(
        t.server.state.cluster.load().client_ca.certificate(),
        staged.client.certificate()
    );
    let node = t
        .enroll(Role::Node, &DistinguishedName::common_name("node-1"))
        .await;
    crate::assert_client_chain(&t, &node.chain);
    let _ = t.shutdown().await;

    // A staged CA that does not chain to the staged root is refused with the reason.
    let dir2 = tempfile::tempdir().unwrap();
    let tls2 = dir2.path().join("data/server/tls");
    std::fs::create_dir_all(&tls2).unwrap();
    let other = evergreen_test_util::hierarchy(KeyType::EcP256, evergreen_test_util::wall_clock());
    for entry in std::fs::read_dir(&tls).unwrap().flatten() {
        std::fs::copy(entry.path(), tls2.join(entry.file_name())).unwrap();
    }
    std::fs::write(tls2.join("peer-ca.crt"), other.peer.bundle_pem()).unwrap();
    std::fs::write(tls2.join("peer-ca.key"), other.peer.key().to_pem()).unwrap();
    let err = TestServer::start_in(
        &dir2.path().join("data"),
        ManualClock::new(evergreen_test_util::wall_clock()),
    )
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("peer-ca.crt") && text.contains("does not verify against the current root"),
        "{text}"
    );
}

#[tokio::test]
async fn the_serving_and_admin_certificates_renew_without_a_restart() {
    let t = TestServer::start().await;
    let fetch = |t: &TestServer| {
        let client = Client::with_clock(
            t.url(),
            &t.roots(),
            None,
            std::sync::Arc::new(t.clock.clone()),
        )
        .unwrap();
        async move { client.peer_certificates().await.unwrap() }
    };
    let first = fetch(&t).await;
    let admin_before = std::fs::read(t.data_dir.join("admin.crt")).unwrap();
    t.server.check_now().await.unwrap();
    assert_eq!(fetch(&t).await, first, "nothing to do while fresh");

    t.clock.advance(Duration::days(300));
    t.server.check_now().await.unwrap();
    let second = fetch(&t).await;
    assert_ne!(
        Fingerprint::of(&second[0]),
        Fingerprint::of(&first[0]),
        "a new serving certificate is served"
    );
    let info = CertificateInfo::from_der(&second[0]).unwrap();
    assert!(info.not_after > t.clock.now() + Duration::days(300));
    let sans: Vec<String> = info
        .subject_alt_names
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        sans.contains(&"IP:127.0.0.1".to_owned()) && sans.contains(&"DNS:localhost".to_owned()),
        "{sans:?}"
    );
    evergreen_pki::chain::verify(
        &second[0],
        &second[1..],
        &[t.root()],
        Usage::ServerAuth,
        &[],
        t.clock.now(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    Openssl::find()
        .verify(
            dir.path(),
            &[t.root()],
            &second[1..],
            &second[0],
            "sslserver",
            t.clock.now(),
            &[],
        )
        .unwrap();
    assert_ne!(
        std::fs::read(t.data_dir.join("admin.crt")).unwrap(),
        admin_before,
        "admin credential renewed"
    );
    // The renewed admin credential works, and the certificates it and the serving
    // certificate replaced are superseded: one of each in use.
    let active: evergreen_api::InventoryPage = t
        .admin()
        .get_json("/v1/certificates?status=active")
        .await
        .unwrap();
    for role in ["server", "admin"] {
        assert_eq!(
            active
                .certificates
                .iter()
                .filter(|c| c.role == role)
                .count(),
            1,
            "{role}"
        );
    }
    let superseded: evergreen_api::InventoryPage = t
        .admin()
        .get_json("/v1/certificates?status=superseded")
        .await
        .unwrap();
    assert_eq!(superseded.certificates.len(), 2);
    assert!(
        superseded
            .certificates
            .iter()
            .all(|c| c.superseded_by.is_some())
    );
}

#[tokio::test]
async fn renewals_leave_one_active_certificate_per_subject_and_role() {
    let t = TestServer::start().await;
    let subject = DistinguishedName::common_name("billing");
    let mut current = t.enroll(Role::App, &subject).await;
    let first = CertificateInfo::from_der(current.leaf())
        .unwrap()
        .serial_hex();
    for _ in 0..3 {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let csr = evergreen_pki::csr::build(&key, &subject, &[]).unwrap();
        let request = evergreen_api::RenewalRequest {
            csr: evergreen_api::encode_pem(&evergreen_pki::pem::encode(
                "CERTIFICATE REQUEST",
                &csr,
            )),
        };
        let bundle: evergreen_api::CertificateBundle = t
            .client(&current)
            .json(
                "POST",
                "/v1/applications/certificates/renewals",
                Some(&request),
            )
            .await
            .unwrap();
        let chain = evergreen_pki::pem::parse_certificates(
            "crt",
            &evergreen_api::decode_pem(&bundle.crt).unwrap(),
        )
        .unwrap();
        current = evergreen_test_util::server::Credential { key, chain, bundle };
    }
    let listed = |status: &'static str| {
        let client = t.admin();
        async move {
            let page: evergreen_api::InventoryPage = client
                .get_json(&format!("/v1/certificates?status={status}"))
                .await
                .unwrap();
            page.certificates
                .into_iter()
                .filter(|c| c.subject == "CN=billing")
                .collect::<Vec<_>>()
        }
    };
    let active = listed("active").await;
    assert_eq!(active.len(), 1);
    assert_eq!(
        active[0].serial,
        CertificateInfo::from_der(current.leaf())
            .unwrap()
            .serial_hex()
    );
    let superseded = listed("superseded").await;
    assert_eq!(superseded.len(), 3);
    assert!(superseded.iter().any(|c| c.serial == first));
    // The metrics count what is in use; expiry alerts fire for nothing already replaced.
    let metrics = t.anonymous().send("GET", "/metrics", None).await.unwrap();
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "evergreen_certificates_active{role=\"app\",issuer=\"client-ca\"} 1"),
        "{text}"
    );
}
