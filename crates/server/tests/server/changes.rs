//! Every change to the cluster PKI is all or nothing: a failure injected after each of its
//! steps leaves the datastore (`sqlite3 .dump`, or every PostgreSQL row), the files of the
//! data dir, `/cacerts` and the certificate served exactly as they were, and the server
//! starts again afterwards.
use std::sync::Arc;

use evergreen_api::client::ClientError;
use evergreen_api::{
    Clock, LabelRequest, ManualClock, Replacement, RotateRequest, ServiceKeyRotation, UpdateCert,
};
use evergreen_pki::certificate::Fingerprint;
use evergreen_pki::{DistinguishedName, Duration, IssueRequest, KeyType, PrivateKey, Profile, pem};
use evergreen_test_util::server::{LOOPBACK_ANY_PORT, TestServer, stage_role_cas, tree};

/// What a failed change must not have touched.
#[derive(Debug, PartialEq, Eq)]
struct Everything {
    datastore: String,
    files: Vec<(String, Vec<u8>, u32)>,
    cacerts: Vec<u8>,
    served: String,
}

async fn everything(t: &TestServer) -> Everything {
    let served = t.anonymous().peer_certificates().await.unwrap();
    Everything {
        datastore: t.dump_datastore().await,
        files: t.files(),
        cacerts: t
            .anonymous()
            .send("GET", "/cacerts", None)
            .await
            .unwrap()
            .body,
        served: Fingerprint::of(&served[0]).to_string(),
    }
}

/// The changes, each with the steps a failure is injected after.
const CHANGES: [(&str, &[&str]); 7] = [
    (
        "ca.rotate",
        &[
            "checked",
            "sealed",
            "crls-signed",
            "own-issued",
            "files-staged",
            "live",
        ],
    ),
    ("root", &["crls-signed", "files-staged", "live"]),
    ("keys.rotate", &["checked", "sealed", "live"]),
    ("certificate.rotate", &["prepared", "written", "live"]),
    ("certificate.set", &["prepared", "written", "live"]),
    ("certificate.label", &["prepared", "written", "live"]),
    ("crl.publish", &["live"]),
];

/// Makes change `name`; its answer's error, if refused.
async fn change(t: &TestServer, name: &str) -> Result<(), ClientError> {
    let admin = t.admin();
    let now = t.clock.now();
    match name {
        "ca.rotate" => {
            let current = t.current_root_ca().await;
            let files = stage_role_cas(&current, std::slice::from_ref(current.certificate()), now);
            t.rotate_ca(&files, false).await.map(|_| ())
        }
        "root" => {
            let (root, cross) = t.new_cross_signed_root().await;
            let mut files = stage_role_cas(&root, &[cross], now);
            files.insert("root-ca.crt".into(), root.bundle_pem());
            files.insert("root-ca.key".into(), root.key().to_pem());
            t.rotate_ca(&files, false).await.map(|_| ())
        }
        "keys.rotate" => admin
            .json::<_, serde_json::Value>(
                "POST",
                "/v1/keys/service-account/rotate",
                Some(&ServiceKeyRotation::default()),
            )
            .await
            .map(|_| ()),
        "certificate.rotate" => admin
            .json::<_, Vec<Replacement>>(
                "POST",
                "/v1/cluster/certificates/rotate",
                Some(&RotateRequest::default()),
            )
            .await
            .map(|_| ()),
        "certificate.set" => {
            let key = PrivateKey::generate(KeyType::EcP256).unwrap();
            let cluster = t.server.state.cluster.load();
            let issued = cluster
                .server_ca
                .issue(
                    &IssueRequest {
                        subject: DistinguishedName::common_name("proxy"),
                        subject_alt_names: vec!["proxy.example".parse().unwrap()],
                        public_key: key.public_key(),
                        profile: Profile::Server,
                        validity: Duration::days(30),
                    },
                    now,
                )
                .unwrap();
            let mut certificate = pem::encode("CERTIFICATE", &issued.der);
            certificate.push_str(&cluster.server_ca.bundle_pem());
            let body = UpdateCert {
                name: "proxy".into(),
                key: key.to_pem(),
                certificate,
            };
            admin
                .json::<_, Replacement>("PUT", "/v1/cluster/update_cert", Some(&body))
                .await
                .map(|_| ())
        }
        "certificate.label" => {
            let label = format!("label-{}", now.unix_timestamp());
            admin
                .json::<_, Replacement>(
                    "PUT",
                    "/v1/cluster/certificates/proxy/label",
                    Some(&LabelRequest { label }),
                )
                .await
                .map(|_| ())
        }
        "crl.publish" => t
            .server
            .state
            .publish_crls()
            .await
            .map_err(|e| ClientError::Status {
                code: e.status.as_u16(),
                error: e.message,
            }),
        other => panic!("no change {other}"),
    }
}

async fn every_step_fails_cleanly(t: TestServer) {
    let _: Replacement = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates",
            Some(&crate::named::spec("proxy")),
        )
        .await
        .unwrap();
    for (name, steps) in CHANGES {
        let action = if name == "root" { "ca.rotate" } else { name };
        if name == "crl.publish" {
            // A revocation written, its CRL not yet published.
            let victim = t
                .enroll(
                    evergreen_api::Role::App,
                    &DistinguishedName::common_name("victim"),
                )
                .await;
            let serial = evergreen_pki::CertificateInfo::from_der(victim.leaf())
                .unwrap()
                .serial_hex();
            let at = t.clock.now().unix_timestamp();
            t.server
                .state
                .store
                .revoke(&serial, at, "superseded")
                .await
                .unwrap();
        }
        for step in steps {
            let before = everything(&t).await;
            t.arm(&format!("{action}:{step}"));
            let result = change(&t, name).await.map_err(|e| e.to_string());
            let message = result.expect_err(&format!("{name} fails at {step}"));
            assert!(
                message.contains("nothing was changed")
                    && message.contains(&format!("failpoint {action}:{step}")),
                "{name} at {step}: {message}"
            );
            let after = everything(&t).await;
            assert!(
                after == before,
                "{name} failing at {step} changed something: datastore {} files {} cacerts {} served {}",
                after.datastore == before.datastore,
                after.files == before.files,
                after.cacerts == before.cacerts,
                after.served == before.served
            );
        }
        // Unarmed, the change goes through and changes what it should.
        let before = everything(&t).await;
        change(&t, name).await.unwrap();
        let after = everything(&t).await;
        assert!(after.datastore != before.datastore, "{name} did nothing");
        t.clock.advance(Duration::seconds(1));
    }
    let served = everything(&t).await.served;
    let t = t.restart().await.unwrap();
    assert_eq!(
        everything(&t).await.served,
        served,
        "a restart serves what was live"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_fails_at_any_step_changes_nothing() {
    every_step_fails_cleanly(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_fails_at_any_step_changes_nothing_on_postgres() {
    every_step_fails_cleanly(TestServer::start_postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_that_fails_at_any_step_writes_nothing() {
    for step in ["initialized", "own-issued", "crls-signed", "live"] {
        let dir = tempfile::tempdir().unwrap();
        // An existing, empty data dir, and one that does not exist yet.
        for data_dir in [dir.path().to_owned(), dir.path().join("new")] {
            let before = tree(dir.path());
            let failpoints = Arc::new(evergreen_server::change::Failpoints::default());
            failpoints.arm(&format!("start:{step}"));
            let clock = ManualClock::new(evergreen_test_util::wall_clock());
            let result = TestServer::start_failing(
                &data_dir,
                clock.clone(),
                LOOPBACK_ANY_PORT,
                None,
                None,
                failpoints,
            )
            .await;
            let error = format!("{:#}", result.expect_err("the start fails"));
            assert!(
                error.contains(&format!("failpoint start:{step}")),
                "{error}"
            );
            assert_eq!(
                tree(dir.path()),
                before,
                "a failed first start at {step} wrote nothing"
            );
            // And the next start, unarmed, works.
            let t = TestServer::start_in(&data_dir, clock).await.unwrap();
            t.shutdown().await;
            let _ = std::fs::remove_dir_all(&data_dir);
            std::fs::create_dir_all(dir.path()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_on_postgres_that_fails_writes_nothing() {
    let datastore = evergreen_test_util::postgres::fresh_database().await;
    // The schema is set up by connecting; a start's change comes after.
    evergreen_store::PostgresStore::connect(&datastore)
        .await
        .unwrap();
    let empty = evergreen_test_util::postgres::dump(&datastore).await;
    let dir = tempfile::tempdir().unwrap();
    for step in ["own-issued", "live"] {
        let failpoints = Arc::new(evergreen_server::change::Failpoints::default());
        failpoints.arm(&format!("start:{step}"));
        let clock = ManualClock::new(evergreen_test_util::wall_clock());
        let data_dir = dir.path().join("data");
        let result = TestServer::start_failing(
            &data_dir,
            clock,
            LOOPBACK_ANY_PORT,
            Some(datastore.clone()),
            None,
            failpoints,
        )
        .await;
        assert!(result.is_err());
        assert_eq!(evergreen_test_util::postgres::dump(&datastore).await, empty);
        assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    }
}
