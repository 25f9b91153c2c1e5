//! The storage suite: every behaviour of the `Store` trait, run against each
//! implementation with a real database (SQLite in a file here).
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::sync::Arc;
use std::time::Duration;

use evergreen_store::{
    Acknowledgement, AuditEvent, CaRecord, CertificateRecord, Change, EnrollOutcome, Enrollment,
    Initialization, InventoryQuery, Job, NamedChange, NamedRecord, NamedVersion, NodeRecord,
    PostgresStore, RevokeOutcome, Rotation, SqliteStore, Store, StoreError, TokenRecord, TokenUse,
};

fn cert(serial: &str, not_after: i64, issuer: &str) -> CertificateRecord {
    CertificateRecord {
        serial: serial.into(),
        sha256: format!("{serial:0>64}"),
        subject: format!("CN={serial}"),
        sans: vec!["DNS:a".into(), "IP:10.0.0.1".into()],
        profile: "client".into(),
        role: "app".into(),
        issuer: issuer.into(),
        owner: "token:abc".into(),
        not_before: 0,
        not_after,
        issued_at: 0,
        renewed_from: None,
        revoked_at: None,
        revocation_reason: None,
        superseded_by: None,
        der: vec![0x30, 0x00],
    }
}

async fn suite(store: &dyn Store) {
    // First start is one transaction, and only once.
    assert!(!store.is_initialized().await.unwrap());
    let ca = CaRecord {
        name: "client-ca".into(),
        bundle_pem: "PEM".into(),
        sealed_key: Some(vec![1, 2, 3]),
        updated_at: 5,
    };
    let token = TokenRecord {
        id: "abc123".into(),
        secret_sha256: "f".repeat(64),
        role: "node".into(),
        created_at: 1,
        expires_at: Some(100),
        uses: 0,
        max_uses: Some(2),
        node: None,
        node_pattern: Some("node-*".into()),
        subject: None,
        description: "first node".into(),
    };
    store
        .initialize(Initialization {
            meta: vec![("salt".into(), b"pepper".to_vec())],
            cas: vec![ca.clone()],
            tokens: vec![token.clone()],
            certificates: vec![cert("01", 50, "client-ca")],
            audit: vec![],
        })
        .await
        .unwrap();
    assert!(store.is_initialized().await.unwrap());
    assert_eq!(
        store.get_meta("salt").await.unwrap(),
        Some(b"pepper".to_vec())
    );
    assert_eq!(store.cas().await.unwrap(), vec![ca.clone()]);
    assert!(matches!(
        store.initialize(Initialization::default()).await,
        Err(StoreError::AlreadyInitialized)
    ));
    assert!(
        !format!("{ca:?}").contains("[1, 2, 3]"),
        "sealed keys are not printed"
    );

    // CAs: replace, CRL numbers grow.
    let mut rotated = ca.clone();
    rotated.bundle_pem = "NEW".into();
    store.put_ca(&rotated).await.unwrap();
    assert_eq!(store.cas().await.unwrap()[0].bundle_pem, "NEW");
    assert_eq!(store.next_crl_number("client-ca").await.unwrap(), 1);
    assert_eq!(store.next_crl_number("client-ca").await.unwrap(), 2);
    assert!(store.next_crl_number("nope").await.is_err());

    // Inventory.
    for (serial, not_after) in [("02", 20), ("03", 30), ("04", 30), ("05", 200)] {
        store
            .insert_certificate(&cert(serial, not_after, "client-ca"))
            .await
            .unwrap();
    }
    assert!(
        store.insert_certificate(&cert("02", 1, "x")).await.is_err(),
        "serials are unique"
    );
    let got = store.certificate_by_serial("03").await.unwrap().unwrap();
    assert_eq!(got, cert("03", 30, "client-ca"));
    assert_eq!(
        store.certificate_by_sha256(&got.sha256).await.unwrap(),
        Some(got)
    );
    assert_eq!(store.certificate_by_serial("99").await.unwrap(), None);

    let page =
        |after: Option<(i64, String)>, status: Option<&str>, before: Option<i64>| InventoryQuery {
            not_after_before: before,
            status: status.map(str::to_owned),
            now: 40,
            after,
            limit: 2,
        };
    let serials = |v: Vec<CertificateRecord>| v.into_iter().map(|c| c.serial).collect::<Vec<_>>();
    let first = store
        .list_certificates(&page(None, None, None))
        .await
        .unwrap();
    assert_eq!(serials(first.clone()), ["02", "03"]);
    let last = first.last().unwrap();
    let second = store
        .list_certificates(&page(
            Some((last.not_after, last.serial.clone())),
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(serials(second), ["04", "01"]);
    let mut all = page(None, Some("active"), None);
    all.limit = 100;
    assert_eq!(
        serials(store.list_certificates(&all).await.unwrap()),
        ["01", "05"]
    );
    all.status = Some("expired".into());
    assert_eq!(
        serials(store.list_certificates(&all).await.unwrap()),
        ["02", "03", "04"]
    );
    all.status = None;
    all.not_after_before = Some(30);
    assert_eq!(
        serials(store.list_certificates(&all).await.unwrap()),
        ["02", "03", "04"]
    );
    all.status = Some("bogus".into());
    assert!(store.list_certificates(&all).await.is_err());

    // Revocation.
    let RevokeOutcome::Revoked(r) = store.revoke("05", 41, "key-compromise").await.unwrap() else {
        panic!("revoked")
    };
    assert_eq!((r.revoked_at, r.status(41)), (Some(41), "revoked"));
    assert!(matches!(
        store.revoke("05", 42, "x").await.unwrap(),
        RevokeOutcome::AlreadyRevoked(_)
    ));
    assert_eq!(
        store.revoke("77", 42, "x").await.unwrap(),
        RevokeOutcome::NotFound
    );
    let revoked = store.revoked("client-ca").await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        (
            revoked[0].serial.as_str(),
            revoked[0].revoked_at,
            revoked[0].reason.as_str()
        ),
        ("05", 41, "key-compromise")
    );
    assert!(store.revoked("server-ca").await.unwrap().is_empty());

    // Tokens: read without counting; an enrollment counts a use only when it is written,
    // and refuses a subject a live certificate of an exclusive role holds.
    assert_eq!(store.token("zzz").await.unwrap(), None);
    let read = store.token("abc123").await.unwrap().unwrap();
    assert_eq!(
        (read.uses, read.node_pattern.as_deref()),
        (0, Some("node-*"))
    );
    assert_eq!(
        read.clone().check(&"e".repeat(64), 10),
        TokenUse::WrongSecret
    );
    let enrollment = |serial: &str, subject: &str, secret: &str, now: i64| Enrollment {
        token_id: "abc123".into(),
        secret_sha256: secret.into(),
        now,
        certificate: CertificateRecord {
            subject: subject.into(),
            role: "node".into(),
            ..cert(serial, 90, "client-ca")
        },
        event: AuditEvent {
            at: now,
            actor: "token:abc123".into(),
            action: "enroll".into(),
            target: subject.into(),
            outcome: "ok".into(),
            detail: String::new(),
        },
        exclusive_of: vec!["node".into(), "admin".into()],
    };
    let refused_unknown = Enrollment {
        token_id: "zzz".into(),
        ..enrollment("e0", "CN=node-0", &"f".repeat(64), 10)
    };
    assert_eq!(
        store.enroll(&refused_unknown).await.unwrap(),
        EnrollOutcome::Refused(TokenUse::Unknown)
    );
    assert_eq!(
        store
            .enroll(&enrollment("e1", "CN=node-1", &"e".repeat(64), 10))
            .await
            .unwrap(),
        EnrollOutcome::Refused(TokenUse::WrongSecret)
    );
    assert_eq!(
        store
            .enroll(&enrollment("e1", "CN=node-1", &"f".repeat(64), 10))
            .await
            .unwrap(),
        EnrollOutcome::Enrolled
    );
    let EnrollOutcome::SubjectTaken(holder) = store
        .enroll(&enrollment("e2", "CN=node-1", &"f".repeat(64), 11))
        .await
        .unwrap()
    else {
        panic!("an enrolled subject is taken")
    };
    assert_eq!(holder.serial, "e1");
    assert_eq!(
        store.token("abc123").await.unwrap().unwrap().uses,
        1,
        "a refusal counts no use"
    );
    assert!(store.certificate_by_serial("e2").await.unwrap().is_none());
    assert_eq!(
        store
            .enroll(&enrollment("e3", "CN=node-3", &"f".repeat(64), 12))
            .await
            .unwrap(),
        EnrollOutcome::Enrolled
    );
    assert_eq!(
        store
            .enroll(&enrollment("e4", "CN=node-4", &"f".repeat(64), 13))
            .await
            .unwrap(),
        EnrollOutcome::Refused(TokenUse::UsedUp { max_uses: 2 })
    );
    let by_subject = store.certificates_by_subject("CN=node-3").await.unwrap();
    assert_eq!(by_subject.len(), 1);
    assert_eq!(by_subject[0].serial, "e3");
    let forever = TokenRecord {
        id: "forever".into(),
        expires_at: None,
        max_uses: None,
        ..token
    };
    store.insert_token(&forever).await.unwrap();
    assert!(matches!(
        store
            .token("forever")
            .await
            .unwrap()
            .unwrap()
            .check(&"f".repeat(64), i64::MAX),
        TokenUse::Accepted(_)
    ));
    assert_eq!(
        store
            .token("abc123")
            .await
            .unwrap()
            .unwrap()
            .check(&"f".repeat(64), 100),
        TokenUse::Expired { expires_at: 100 }
    );

    // Nodes: the addresses an admin allowed, with an audit entry.
    assert_eq!(store.node("node-1").await.unwrap(), None);
    let node = NodeRecord {
        name: "node-1".into(),
        addresses: vec!["10.0.0.5".into(), "fd00::5".into()],
        updated_at: 7,
    };
    let allowed = AuditEvent {
        at: 7,
        actor: "admin".into(),
        action: "node.allow".into(),
        target: "node-1".into(),
        outcome: "ok".into(),
        detail: String::new(),
    };
    store.put_node(&node, &allowed).await.unwrap();
    assert_eq!(store.node("node-1").await.unwrap(), Some(node));

    // Audit, newest first.
    for (i, outcome) in ["ok", "refused"].iter().enumerate() {
        store
            .audit(&AuditEvent {
                at: i as i64,
                actor: "anonymous".into(),
                action: "enroll".into(),
                target: "CN=x".into(),
                outcome: (*outcome).into(),
                detail: format!("event {i}"),
            })
            .await
            .unwrap();
    }
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(
        (log[0].outcome.as_str(), log[0].detail.as_str()),
        ("refused", "event 1")
    );
    assert_eq!(
        (log[1].outcome.as_str(), log[1].detail.as_str()),
        ("ok", "event 0")
    );

    // An issuance and its audit entry are recorded together, or not at all.
    let issued = AuditEvent {
        at: 3,
        actor: "token:abc".into(),
        action: "enroll".into(),
        target: "CN=06".into(),
        outcome: "ok".into(),
        detail: "issued".into(),
    };
    store
        .record_issuance(&cert("06", 60, "client-ca"), &issued)
        .await
        .unwrap();
    assert!(store.certificate_by_serial("06").await.unwrap().is_some());
    assert_eq!(store.audit_log(1).await.unwrap()[0], issued);
    let again = AuditEvent {
        detail: "duplicate".into(),
        ..issued.clone()
    };
    assert!(
        store
            .record_issuance(&cert("06", 60, "client-ca"), &again)
            .await
            .is_err()
    );
    assert_eq!(
        store.audit_log(1).await.unwrap()[0],
        issued,
        "no audit entry without its certificate"
    );

    transactions(store).await;
    named_certificates(store).await;
    rotations(store).await;
    crls_and_locks(store).await;
}

/// A transaction's writes are seen by no one until it commits, and not at all if dropped.
async fn transactions(store: &dyn Store) {
    let before = store.audit_log(1000).await.unwrap().len();
    let event = AuditEvent {
        at: 9,
        actor: "server".into(),
        action: "test".into(),
        target: "-".into(),
        outcome: "ok".into(),
        detail: "in a transaction".into(),
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_certificate(&cert("t1", 70, "client-ca"))
        .await
        .unwrap();
    tx.audit(&event).await.unwrap();
    tx.put_meta("test-fact", b"1").await.unwrap();
    drop(tx);
    assert!(store.certificate_by_serial("t1").await.unwrap().is_none());
    assert_eq!(store.audit_log(1000).await.unwrap().len(), before);
    assert_eq!(store.get_meta("test-fact").await.unwrap(), None);
    let mut tx = store.begin().await.unwrap();
    tx.insert_certificate(&cert("t1", 70, "client-ca"))
        .await
        .unwrap();
    tx.audit(&event).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.certificate_by_serial("t1").await.unwrap().is_some());
    assert_eq!(store.audit_log(1).await.unwrap()[0], event);
}

async fn named_certificates(store: &dyn Store) {
    assert_eq!(store.revision().await.unwrap(), 0);
    let proxy = NamedRecord {
        name: "proxy".into(),
        scope: "cluster".into(),
        kind: "selfsigned".into(),
        label: String::new(),
        internal: false,
        usage: "server".into(),
        sans: vec!["DNS:proxy.example".into()],
        nodes: vec![],
        secret_path: None,
        secret_keys: ["cert".into(), "key".into(), "cacert".into()],
        allowed_dns: vec!["example".into()],
        allowed_cidrs: vec![],
        version: 1,
        created_at: 1,
        updated_at: 1,
    };
    let version = |name: &str, v: i64| NamedVersion {
        name: name.into(),
        version: v,
        chain_pem: Some(format!("chain {v}")),
        sealed_key: Some(vec![v as u8]),
        ca_pem: Some("ca".into()),
        fingerprint: Some(format!("fp{v}")),
        not_after: Some(100),
        reason: "created".into(),
        created_at: 1,
    };
    let kubelet = NamedRecord {
        name: "kubelet".into(),
        scope: "node".into(),
        sans: vec!["DNS:{node}".into(), "IP:{ip}".into()],
        nodes: vec!["a".into(), "b".into()],
        version: 0,
        ..proxy.clone()
    };
    let revision = store
        .save_named(&[
            NamedChange {
                record: proxy.clone(),
                new_version: Some(version("proxy", 1)),
            },
            NamedChange {
                record: kubelet.clone(),
                new_version: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(revision, 1);
    assert_eq!(store.revision().await.unwrap(), 1);
    assert_eq!(
        store.named().await.unwrap(),
        vec![kubelet.clone(), proxy.clone()]
    );
    assert_eq!(
        store.named_by_name("kubelet").await.unwrap().unwrap().sans,
        ["DNS:{node}", "IP:{ip}"]
    );
    assert_eq!(
        store.named_version("proxy", 1).await.unwrap().unwrap(),
        version("proxy", 1)
    );
    assert!(!format!("{:?}", version("proxy", 1)).contains("sealed_key: Some([1"));

    // A change and its version land together; a failing batch changes nothing.
    let labelled = NamedRecord {
        label: "v2".into(),
        version: 2,
        updated_at: 2,
        ..proxy.clone()
    };
    assert_eq!(
        store
            .save_named(&[NamedChange {
                record: labelled.clone(),
                new_version: Some(version("proxy", 2))
            }])
            .await
            .unwrap(),
        2
    );
    let duplicate = NamedChange {
        record: labelled.clone(),
        new_version: Some(version("proxy", 2)),
    };
    let other = NamedChange {
        record: NamedRecord {
            label: "never".into(),
            ..kubelet.clone()
        },
        new_version: None,
    };
    assert!(store.save_named(&[other, duplicate]).await.is_err());
    assert_eq!(
        store.named_by_name("kubelet").await.unwrap().unwrap().label,
        "",
        "rolled back"
    );
    assert_eq!(store.revision().await.unwrap(), 2);

    for (node, v) in [("a", 1), ("b", 2), ("a", 2)] {
        store
            .acknowledge(&Acknowledgement {
                node: node.into(),
                name: "proxy".into(),
                version: v,
                fingerprint: format!("fp{v}"),
                at: v,
                served: (node == "a").then_some(v == 2),
            })
            .await
            .unwrap();
    }
    let acks = store.acknowledgements().await.unwrap();
    assert_eq!(acks.len(), 2, "one row per node and name");
    assert!(acks.iter().all(|a| a.version == 2));
    let served: Vec<Option<bool>> = acks.iter().map(|a| a.served).collect();
    assert_eq!(
        served,
        [Some(true), None],
        "the latest report's word on serving"
    );
}

/// A rotation keeps each predecessor (key and CRL number) under its retired name, writes
/// the facts and the audit entry with it, and advances the revision; a failed one changes
/// nothing.
async fn rotations(store: &dyn Store) {
    let before = store.cas().await.unwrap();
    let revision = store.revision().await.unwrap();
    let audit_len = store.audit_log(1000).await.unwrap().len();
    let event = AuditEvent {
        at: 60,
        actor: "admin".into(),
        action: "ca.rotate".into(),
        target: "client-ca".into(),
        outcome: "ok".into(),
        detail: "rotated".into(),
    };
    let new = CaRecord {
        name: "client-ca".into(),
        bundle_pem: "NEWER".into(),
        sealed_key: Some(vec![9]),
        updated_at: 60,
    };
    // A retired name already taken: nothing changes.
    let taken = Rotation {
        cas: vec![(new.clone(), "client-ca".into())],
        meta: vec![("service".into(), b"keys".to_vec())],
        event: event.clone(),
    };
    assert!(store.rotate(&taken).await.is_err());
    // A CA that does not exist: nothing changes either.
    let missing = Rotation {
        cas: vec![(
            CaRecord {
                name: "nope".into(),
                ..new.clone()
            },
            "nope@1".into(),
        )],
        ..taken.clone()
    };
    assert!(store.rotate(&missing).await.is_err());
    assert_eq!(store.cas().await.unwrap(), before);
    assert_eq!(store.get_meta("service").await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(store.audit_log(1000).await.unwrap().len(), audit_len);

    let rotation = Rotation {
        cas: vec![(new.clone(), "client-ca@old".into())],
        ..taken
    };
    let next = store.rotate(&rotation).await.unwrap();
    assert_eq!(next, revision + 1);
    assert_eq!(store.revision().await.unwrap(), next);
    let cas = store.cas().await.unwrap();
    assert_eq!(cas.len(), before.len() + 1);
    assert!(cas.contains(&new));
    let retired = cas.iter().find(|c| c.name == "client-ca@old").unwrap();
    let old = before.iter().find(|c| c.name == "client-ca").unwrap();
    assert_eq!(
        (&retired.bundle_pem, &retired.sealed_key),
        (&old.bundle_pem, &old.sealed_key)
    );
    assert_eq!(
        store.next_crl_number("client-ca@old").await.unwrap(),
        3,
        "the retired CA continues its CRL numbers"
    );
    assert_eq!(
        store.get_meta("service").await.unwrap(),
        Some(b"keys".to_vec())
    );
    assert_eq!(store.audit_log(1).await.unwrap()[0], event);

    // Facts with their audit entry.
    let mut replaced = event.clone();
    replaced.action = "keys.rotate".into();
    store.put_meta("service", b"more", &replaced).await.unwrap();
    assert_eq!(
        store.get_meta("service").await.unwrap(),
        Some(b"more".to_vec())
    );
    assert_eq!(store.audit_log(1).await.unwrap()[0], replaced);
}

/// Published CRLs are replaced as a set; a job's lock is held by one holder at a time.
async fn crls_and_locks(store: &dyn Store) {
    assert!(store.crls().await.unwrap().is_empty());
    let first = vec![
        ("client-ca".to_owned(), vec![1, 2]),
        ("server-ca".to_owned(), vec![3]),
    ];
    store.put_crls(&first).await.unwrap();
    assert_eq!(store.crls().await.unwrap(), first);
    let second = vec![("client-ca".to_owned(), vec![4])];
    store.put_crls(&second).await.unwrap();
    assert_eq!(
        store.crls().await.unwrap(),
        second,
        "the whole set is replaced"
    );

    let held = store.lock(Job::Named).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(300), store.lock(Job::Named)).await;
    assert!(waiting.is_err(), "a held job lock is not granted twice");
    let other = tokio::time::timeout(Duration::from_secs(10), store.lock(Job::Crls)).await;
    assert!(other.is_ok(), "other jobs are not blocked");
    drop(other);
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(10), store.lock(Job::Named)).await;
    assert!(again.is_ok(), "released when the guard drops");
}

/// Writes from many tasks at once share commits; a failing one fails alone.
async fn group_commits(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Every 50th reuses serial 1000, which exists by then or collides.
            let serial = if i % 50 == 0 {
                "1000".to_owned()
            } else {
                format!("{:04}", 2000 + i)
            };
            store
                .insert_certificate(&cert(&serial, 10, "client-ca"))
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 300 - 6 + 1, "only the duplicate serials fail");
    let query = InventoryQuery {
        limit: 1000,
        ..Default::default()
    };
    let serials: Vec<String> = store
        .list_certificates(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert!(serials.contains(&"1000".to_owned()) && serials.contains(&"2299".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    group_commits(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).await.unwrap();
    suite(&store).await;
    store.close().await;
    // Everything survives a reopen.
    survived(&SqliteStore::open(&path).await.unwrap()).await;
}

/// What the suite wrote, read by a new connection.
async fn survived(again: &dyn Store) {
    assert!(again.is_initialized().await.unwrap());
    assert_eq!(
        again
            .certificate_by_serial("05")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(41)
    );
    assert_eq!(again.next_crl_number("client-ca").await.unwrap(), 3);
}

#[tokio::test]
async fn sqlite_in_memory() {
    suite(&SqliteStore::in_memory().await.unwrap()).await;
}

/// A fresh database on the throwaway PostgreSQL that `scripts/test` starts
/// (`EVERGREEN_TEST_POSTGRES` is its admin URL). Never skipped: without one the test fails
/// and says how to start it.
async fn postgres_database() -> String {
    let admin = std::env::var("EVERGREEN_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "the PostgreSQL tests need a server: run ./scripts/test, or \
             eval \"$(scripts/postgres start)\" first"
        )
    });
    let name = format!(
        "store_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

static NEXT_DATABASE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let url = postgres_database().await;
    let store = PostgresStore::connect(&url).await.unwrap();
    suite(&store).await;
    store.close().await;
    // Everything survives a reconnect, and migrating again is a no-op.
    let again = PostgresStore::connect(&url).await.unwrap();
    survived(&again).await;
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit() {
    let url = postgres_database().await;
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
    group_commits(store.clone()).await;
    store.close().await;
}

/// The next change heard within 5 s that is not one of `skip`.
async fn next(changes: &mut tokio::sync::broadcast::Receiver<Change>, skip: &[Change]) -> Change {
    loop {
        let change = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("a change within 5 s")
            .unwrap();
        if !skip.contains(&change) {
            return change;
        }
    }
}

/// Two replicas' connections to one database: counters stay exact, job locks exclude
/// each other, and each sees the other's changes announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas() {
    let url = postgres_database().await;
    let a = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let b = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let mut a_changes = a.changes().unwrap();
    let mut b_changes = b.changes().unwrap();
    a.initialize(Initialization {
        cas: vec![CaRecord {
            name: "client-ca".into(),
            bundle_pem: "PEM".into(),
            sealed_key: None,
            updated_at: 0,
        }],
        tokens: vec![TokenRecord {
            id: "t".into(),
            secret_sha256: "a".repeat(64),
            role: "node".into(),
            created_at: 0,
            expires_at: None,
            uses: 0,
            max_uses: Some(30),
            node: None,
            node_pattern: Some("*".into()),
            subject: None,
            description: String::new(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(matches!(
        b.initialize(Initialization::default()).await,
        Err(StoreError::AlreadyInitialized)
    ));

    // Enrollments and CRL numbers from both at once: a token allowing 30 uses enrolls 30
    // of 40 subjects, one subject asked for twice is enrolled once, no CRL number repeats.
    let enrollment = |serial: String, subject: String| Enrollment {
        token_id: "t".into(),
        secret_sha256: "a".repeat(64),
        now: 1,
        certificate: CertificateRecord {
            subject: subject.clone(),
            role: "node".into(),
            ..cert(&serial, 10, "client-ca")
        },
        event: AuditEvent {
            at: 1,
            actor: "token:t".into(),
            action: "enroll".into(),
            target: subject,
            outcome: "ok".into(),
            detail: String::new(),
        },
        exclusive_of: vec!["node".into()],
    };
    let mut tasks = Vec::new();
    for i in 0..42 {
        let store: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
        // 40 and 41 ask for the same subject.
        let subject = format!("CN=node-{}", i.min(40));
        let enrollment = enrollment(format!("{i:02x}"), subject);
        tasks.push(tokio::spawn(async move {
            (
                store.enroll(&enrollment).await.unwrap(),
                store.next_crl_number("client-ca").await.unwrap(),
            )
        }));
    }
    let mut outcomes = std::collections::BTreeMap::new();
    let mut numbers = Vec::new();
    for task in tasks {
        let (outcome, number) = task.await.unwrap();
        let kind = match outcome {
            EnrollOutcome::Enrolled => "enrolled",
            EnrollOutcome::Refused(TokenUse::UsedUp { max_uses: 30 }) => "used up",
            EnrollOutcome::SubjectTaken(_) => "taken",
            other => panic!("{other:?}"),
        };
        *outcomes.entry(kind).or_insert(0) += 1;
        numbers.push(number);
    }
    numbers.sort_unstable();
    assert_eq!(outcomes["enrolled"], 30, "{outcomes:?}");
    assert_eq!(a.token("t").await.unwrap().unwrap().uses, 30);
    assert_eq!(numbers, (1..=42).collect::<Vec<u64>>());
    let holders = a.certificates_by_subject("CN=node-40").await.unwrap();
    assert!(
        holders.len() <= 1,
        "one subject enrolled twice: {holders:?}"
    );

    // One subject through both replicas at once, from a token with uses left: once.
    a.insert_token(&TokenRecord {
        id: "u".into(),
        secret_sha256: "a".repeat(64),
        role: "node".into(),
        created_at: 0,
        expires_at: None,
        uses: 0,
        max_uses: None,
        node: None,
        node_pattern: Some("*".into()),
        subject: None,
        description: String::new(),
    })
    .await
    .unwrap();
    let twice = |serial: &str| Enrollment {
        token_id: "u".into(),
        ..enrollment(serial.into(), "CN=twin".into())
    };
    let (one, two) = (twice("t1"), twice("t2"));
    let (first, second) = tokio::join!(a.enroll(&one), b.enroll(&two));
    let mut both = [first.unwrap(), second.unwrap()];
    both.sort_by_key(|o| matches!(o, EnrollOutcome::Enrolled));
    assert!(
        matches!(
            both,
            [EnrollOutcome::SubjectTaken(_), EnrollOutcome::Enrolled]
        ),
        "{both:?}"
    );

    // A serial recorded through one is refused through the other.
    a.insert_certificate(&cert("aa", 10, "client-ca"))
        .await
        .unwrap();
    assert!(matches!(
        b.insert_certificate(&cert("aa", 10, "client-ca")).await,
        Err(StoreError::Conflict(_))
    ));

    // The same named-certificate version written by both: one wins, the other conflicts.
    let record = NamedRecord {
        name: "proxy".into(),
        scope: "cluster".into(),
        kind: "selfsigned".into(),
        label: String::new(),
        internal: false,
        usage: "server".into(),
        sans: vec![],
        nodes: vec![],
        secret_path: None,
        secret_keys: ["cert".into(), "key".into(), "cacert".into()],
        allowed_dns: vec!["example".into()],
        allowed_cidrs: vec![],
        version: 1,
        created_at: 0,
        updated_at: 0,
    };
    let version = NamedVersion {
        name: "proxy".into(),
        version: 1,
        chain_pem: None,
        sealed_key: None,
        ca_pem: None,
        fingerprint: None,
        not_after: None,
        reason: "created".into(),
        created_at: 0,
    };
    let change = [NamedChange {
        record,
        new_version: Some(version),
    }];
    let (first, second) = tokio::join!(a.save_named(&change), b.save_named(&change));
    assert!(
        first.is_ok() != second.is_ok(),
        "exactly one write of version 1 succeeds: {first:?} {second:?}"
    );
    assert!(matches!(
        first.err().or(second.err()),
        Some(StoreError::Conflict(_))
    ));
    assert_eq!(b.revision().await.unwrap(), 1, "the loser changed nothing");

    // Each hears the other's changes when they commit, never its own. Whichever won the
    // race above announced a revision only to the other: a revision through A now.
    let mut second = change.clone();
    second[0].record.name = "proxy-2".into();
    if let Some(v) = second[0].new_version.as_mut() {
        v.name = "proxy-2".into();
    }
    a.save_named(&second).await.unwrap();
    assert_eq!(next(&mut b_changes, &[]).await, Change::Revision);
    a.put_crls(&[("client-ca".into(), vec![1])]).await.unwrap();
    assert_eq!(
        next(&mut b_changes, &[Change::Revision]).await,
        Change::Crls
    );
    let fact = AuditEvent {
        at: 1,
        actor: "test".into(),
        action: "meta".into(),
        target: "fact".into(),
        outcome: "ok".into(),
        detail: String::new(),
    };
    b.put_meta("fact", b"1", &fact).await.unwrap();
    assert_eq!(
        next(&mut a_changes, &[Change::Revision]).await,
        Change::Meta,
        "A hears B's fact, not its own CRLs before it"
    );

    // A job lock held through A keeps B waiting until A lets go.
    let held = a.lock(Job::Checks).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), b.lock(Job::Checks)).await;
    assert!(waiting.is_err(), "B must wait while A holds the lock");
    drop(held);
    let granted = tokio::time::timeout(Duration::from_secs(10), b.lock(Job::Checks)).await;
    assert!(granted.is_ok(), "B gets the lock once A lets go");
    drop(granted);
    a.close().await;
    b.close().await;
}

/// Certificates a datastore from before `superseded_by` holds: renewals (recorded with
/// `renewed_from`) and certificates issued in place of others without a record of which.
/// `blob` is the database's literal for the DER bytes.
fn rows_before_superseded(blob: &str) -> String {
    let rows = [
        // serial, subject, role, owner, issued_at, renewed_from, revoked_at
        ("a1", "CN=app", "app", "token:x", 1, None, None),
        ("a2", "CN=app", "app", "renewal of a1", 2, Some("a1"), None),
        ("a3", "CN=app", "app", "renewal of a2", 3, Some("a2"), None),
        (
            "s1",
            "CN=evergreen-server",
            "server",
            "server",
            1,
            None,
            None,
        ),
        (
            "s2",
            "CN=evergreen-server",
            "server",
            "server",
            2,
            None,
            None,
        ),
        (
            "m1",
            "CN=evergreen-admin",
            "admin",
            "server",
            1,
            None,
            Some(5),
        ),
        ("m2", "CN=evergreen-admin", "admin", "server", 2, None, None),
        ("n1", "CN=proxy", "service", "named:proxy", 1, None, None),
        ("n2", "CN=proxy", "service", "named:proxy", 2, None, None),
        (
            "k1",
            "CN=node-a",
            "service",
            "node node-a, kubelet version 1",
            1,
            None,
            None,
        ),
        (
            "k2",
            "CN=node-a",
            "service",
            "node node-a, kubelet version 2",
            2,
            None,
            None,
        ),
        (
            "k3",
            "CN=node-b",
            "service",
            "node node-b, kubelet version 1",
            1,
            None,
            None,
        ),
        ("t1", "CN=twin", "app", "token:y", 1, None, None),
        ("t2", "CN=twin", "app", "token:y", 2, None, None),
    ];
    let mut sql = String::new();
    for (serial, subject, role, owner, issued_at, renewed_from, revoked_at) in rows {
        let text = |v: Option<&str>| v.map_or("NULL".to_owned(), |v| format!("'{v}'"));
        let revoked = revoked_at.map_or("NULL".to_owned(), |at: i64| at.to_string());
        sql.push_str(&format!(
            "INSERT INTO certificates (serial, sha256, subject, sans, profile, role, issuer, owner, \
             not_before, not_after, issued_at, renewed_from, revoked_at, revocation_reason, der) \
             VALUES ('{serial}', '{serial:0>64}', '{subject}', '', 'client', '{role}', 'client-ca', \
             '{owner}', 0, 10000000000, {issued_at}, {}, {revoked}, NULL, {blob});\n",
            text(renewed_from)
        ));
    }
    sql
}

/// After the migration: one active certificate per replaced line, the rest superseded,
/// and a new renewal supersedes what it renews.
async fn supersession_migrated(store: &dyn Store) {
    let listed = |status: &str| InventoryQuery {
        status: Some(status.into()),
        now: 100,
        limit: 100,
        ..InventoryQuery::default()
    };
    let serials = |rows: Vec<CertificateRecord>| {
        let mut s: Vec<String> = rows.into_iter().map(|c| c.serial).collect();
        s.sort();
        s
    };
    let active = serials(store.list_certificates(&listed("active")).await.unwrap());
    assert_eq!(active, ["a3", "k2", "k3", "m2", "n2", "s2", "t1", "t2"]);
    let superseded = serials(
        store
            .list_certificates(&listed("superseded"))
            .await
            .unwrap(),
    );
    assert_eq!(superseded, ["a1", "a2", "k1", "n1", "s1"]);
    let revoked = serials(store.list_certificates(&listed("revoked")).await.unwrap());
    assert_eq!(revoked, ["m1"]);
    let a1 = store.certificate_by_serial("a1").await.unwrap().unwrap();
    assert_eq!(
        (a1.superseded_by.as_deref(), a1.status(100)),
        (Some("a2"), "superseded")
    );
    let apps: i64 = store
        .active_counts(100)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.role == "app")
        .map(|c| c.count)
        .sum();
    assert_eq!(
        apps, 3,
        "a3, t1 and t2 are the live application certificates"
    );

    let mut a4 = cert("a4", 10_000_000_000, "client-ca");
    a4.subject = "CN=app".into();
    a4.renewed_from = Some("a3".into());
    store.insert_certificate(&a4).await.unwrap();
    let a3 = store.certificate_by_serial("a3").await.unwrap().unwrap();
    assert_eq!(a3.superseded_by.as_deref(), Some("a4"));
    let app_rows = store.certificates_by_subject("CN=app").await.unwrap();
    assert_eq!(
        app_rows
            .iter()
            .filter(|c| c.status(100) == "active")
            .count(),
        1,
        "a renewal leaves exactly one active certificate"
    );
}

#[tokio::test]
async fn sqlite_datastores_from_before_supersession_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
            .await
            .unwrap();
        let mut sql = String::from("CREATE TABLE schema_version (version INTEGER NOT NULL);\n");
        for (version, file) in [
            (1, include_str!("../../migrations/sqlite/0001_initial.sql")),
            (
                2,
                include_str!("../../migrations/sqlite/0002_named_certificates.sql"),
            ),
            (3, include_str!("../../migrations/sqlite/0003_crls.sql")),
            (
                4,
                include_str!("../../migrations/sqlite/0004_bound_identity.sql"),
            ),
        ] {
            sql.push_str(file);
            sql.push_str(&format!(
                "\nINSERT INTO schema_version (version) VALUES ({version});\n"
            ));
        }
        sql.push_str(&rows_before_superseded("X'3000'"));
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    supersession_migrated(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_datastores_from_before_supersession_are_migrated() {
    let url = postgres_database().await;
    {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let mut sql = String::from("CREATE TABLE schema_version (version BIGINT NOT NULL);\n");
        for (version, file) in [
            (
                1,
                include_str!("../../migrations/postgres/0001_initial.sql"),
            ),
            (
                2,
                include_str!("../../migrations/postgres/0002_bound_identity.sql"),
            ),
        ] {
            sql.push_str(file);
            sql.push_str(&format!(
                "\nINSERT INTO schema_version (version) VALUES ({version});\n"
            ));
        }
        sql.push_str(&rows_before_superseded("'\\x3000'::bytea"));
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
    }
    let store = PostgresStore::connect(&url).await.unwrap();
    supersession_migrated(&store).await;
    store.close().await;
}
