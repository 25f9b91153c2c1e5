//! `evergreen renew --daemon`'s loop run as it runs for users: through its waits, two
//! renewals, a server outage and a stop, on the manual clock.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use evergreen_agent::renew::{ClientCertificate, Pace};
use evergreen_api::{Clock, Role};
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::{DistinguishedName, Duration, PrivateKey, pem};
use evergreen_test_util::server::TestServer;
use tokio::sync::watch;

use crate::until;

fn leaf(path: &Path) -> CertificateInfo {
    let chain = pem::parse_certificates("cert", &std::fs::read(path).unwrap()).unwrap();
    CertificateInfo::from_der(&chain[0]).unwrap()
}

fn matches(cert: &Path, key: &Path) -> bool {
    let chain = pem::parse_certificates("cert", &std::fs::read(cert).unwrap()).unwrap();
    PrivateKey::from_pem("key", &std::fs::read(key).unwrap())
        .unwrap()
        .matches_certificate(&chain[0])
        .unwrap()
}

fn hooks(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renew_daemon_renews_through_waits_and_an_outage() {
    let t = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let subject: DistinguishedName = "CN=kong-dp, O=Evergreen".parse().unwrap();
    let (cert, key) = t
        .enroll(Role::App, &subject)
        .await
        .write(dir.path(), "client");
    let log = dir.path().join("hooks.log");
    let daemon = ClientCertificate {
        server: t.url().to_owned(),
        ca: t.data_dir.join("ca.crt"),
        cert: cert.clone(),
        key: key.clone(),
        rotate_key: true,
        exec: Some(format!("echo reloaded >> {}", log.display())),
        clock: Arc::new(t.clock.clone()),
    };
    let pace = Pace {
        tick: StdDuration::from_millis(20),
        min_backoff: StdDuration::from_millis(50),
        max_backoff: StdDuration::from_millis(200),
    };
    let (stop, receiver) = watch::channel(false);
    let task = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.run(pace, receiver).await }
    });

    // Waiting for the window: 92-day certificates renew with about a third left.
    let first = leaf(&cert);
    t.clock.advance(Duration::days(30));
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(leaf(&cert).serial, first.serial, "not due yet");
    t.clock.advance(Duration::days(32));
    until("the first renewal", async || {
        leaf(&cert).serial != first.serial && hooks(&log) == 1
    })
    .await;
    let second = leaf(&cert);
    assert_eq!(second.subject, first.subject);
    assert_ne!(second.public_key, first.public_key, "--rotate-key");
    assert!(matches(&cert, &key));
    let chain = pem::parse_certificates("cert", &std::fs::read(&cert).unwrap()).unwrap();
    evergreen_test_util::assert_chain(&t.root(), &chain, Usage::ClientAuth, t.clock.now());

    // The server goes away when the next window opens: the daemon keeps the files and
    // retries (each attempt keeps its new key in client.key.pending before it asks).
    let pending = dir.path().join("client.key.pending");
    let cert_before = std::fs::read(&cert).unwrap();
    let key_before = std::fs::read(&key).unwrap();
    let clock = t.clock.clone();
    let t = t
        .restart_after(async {
            clock.advance(Duration::days(62));
            until("a renewal attempt while the server is down", async || {
                pending.exists()
            })
            .await;
            tokio::time::sleep(StdDuration::from_millis(300)).await;
            assert_eq!(std::fs::read(&cert).unwrap(), cert_before);
            assert_eq!(std::fs::read(&key).unwrap(), key_before);
            assert_eq!(hooks(&log), 1);
        })
        .await
        .unwrap();
    until("the renewal after the outage", async || {
        leaf(&cert).serial != second.serial && hooks(&log) == 2
    })
    .await;
    assert!(matches(&cert, &key));
    assert!(!pending.exists(), "the pending key became the key");
    let chain = pem::parse_certificates("cert", &std::fs::read(&cert).unwrap()).unwrap();
    evergreen_test_util::assert_chain(&t.root(), &chain, Usage::ClientAuth, t.clock.now());
    assert!(!task.is_finished(), "the daemon runs for ever");

    // Stopping ends it at once, mid-wait.
    stop.send(true).unwrap();
    tokio::time::timeout(StdDuration::from_secs(2), task)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();

    // A rotation stopped between the certificate and the key is finished at the next start.
    std::fs::rename(&key, &pending).unwrap();
    std::fs::write(
        &key,
        PrivateKey::generate(evergreen_pki::KeyType::EcP256)
            .unwrap()
            .to_pem(),
    )
    .unwrap();
    assert!(!matches(&cert, &key));
    daemon.current().unwrap();
    assert!(matches(&cert, &key) && !pending.exists());
}
