//! `evergreen server` as a process, and the CLI commands that talk to it: the README's
//! flows end to end.
use evergreen_agent::install::CredentialSink as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Polls `done` every 50 ms, at most `seconds` long.
fn wait_for(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..seconds * 20 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {seconds} s waiting for {what}");
}

use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::pem::parse_certificates;
use evergreen_test_util::Openssl;
use serde_json::Value;

use crate::{evergreen, stderr, stdout};

/// A server process on 127.0.0.1 with a free port, stopped (SIGTERM) when dropped.
struct ServerProcess {
    child: Child,
    data_dir: PathBuf,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[], "info")
    }

    /// With `extra` arguments (the datastore, a token to join with), logging at `log`.
    /// Nothing reads its output while it runs: a busy one logs only warnings, so the
    /// pipes never fill.
    fn start_with(data_dir: &Path, extra: &[&str], log: &str) -> Self {
        let _ = std::fs::remove_file(data_dir.join("server-url"));
        let child = Command::new(env!("CARGO_BIN_EXE_evergreen"))
            .args([
                "server",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("EVERGREEN_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = ServerProcess {
            child,
            data_dir: data_dir.to_owned(),
        };
        // The server writes its URL once it listens.
        wait_for(60, "the server to listen", || {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "server exited with {status}: {}",
                    server.child.wait_with_output_now()
                );
            }
            data_dir.join("server-url").exists()
        });
        server
    }

    fn connection(&self) -> Vec<String> {
        vec!["--data-dir".into(), self.data_dir.display().to_string()]
    }

    /// SIGTERM, then the exit status and everything the server printed.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let mut status = None;
        wait_for(20, "the server to stop on SIGTERM", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let out = self.child.wait_with_output_now();
        (status.unwrap(), out)
    }
}

trait Drain {
    fn wait_with_output_now(&mut self) -> String;
}

impl Drain for Child {
    fn wait_with_output_now(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        if let Some(mut err) = self.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], connection: &[String]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(connection.iter().cloned());
    evergreen(all)
}

/// Enrolls a P-256 key made by openssl with curl, as the README shows.
fn enroll_with_curl(dir: &Path, data_dir: &Path, token: &str, subject: &str) -> (PathBuf, PathBuf) {
    let csr = Openssl::find().csr(dir, &evergreen_test_util::OPENSSL_P256, subject, &[]);
    let url = std::fs::read_to_string(data_dir.join("server-url")).unwrap();
    let b64 = evergreen_api::encode_pem(&std::fs::read_to_string(&csr).unwrap());
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            data_dir.join("ca.crt").to_str().unwrap(),
        ])
        .args(["-X", "POST", &format!("{}/v1/enroll", url.trim())])
        .args(["-d", &format!(r#"{{"token":"{token}","csr":"{b64}"}}"#)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let crt = dir.join("app.crt");
    std::fs::write(
        &crt,
        evergreen_api::decode_pem(json["crt"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    (crt, dir.join("client.key"))
}

fn verify_with_openssl(dir: &Path, data_dir: &Path, crt: &Path) {
    let bundle =
        parse_certificates("ca.crt", &std::fs::read(data_dir.join("ca.crt")).unwrap()).unwrap();
    let chain = parse_certificates("crt", &std::fs::read(crt).unwrap()).unwrap();
    Openssl::find()
        .verify(
            dir,
            &bundle[..1],
            &chain[1..],
            &chain[0],
            "sslclient",
            evergreen_test_util::wall_clock(),
            &[],
        )
        .unwrap();
    evergreen_pki::chain::verify(
        &chain[0],
        &chain[1..],
        &bundle[..1],
        evergreen_pki::certificate::Usage::ClientAuth,
        &[],
        evergreen_test_util::wall_clock(),
    )
    .unwrap();
}

#[test]
fn the_server_process_and_the_cli_that_drives_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = ServerProcess::start(&data_dir);
    let connection = server.connection();

    let out = run(
        &[
            "token",
            "create",
            "--role",
            "app",
            "--subject",
            "CN=billing, O=team",
            "--ttl",
            "1h",
        ],
        &connection,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(
        token.starts_with("EVG10") && stderr(&out).contains("expires at"),
        "{token}"
    );

    let (crt, key) = enroll_with_curl(tmp.path(), &data_dir, &token, "/CN=billing/O=team");
    verify_with_openssl(tmp.path(), &data_dir, &crt);
    let first = CertificateInfo::from_der(
        &parse_certificates("crt", &std::fs::read(&crt).unwrap()).unwrap()[0],
    )
    .unwrap();

    // evergreen renew: new certificate (and key), atomically, then the --exec hook.
    let marker = tmp.path().join("reloaded");
    let exec = format!("touch {}", marker.display());
    let out = run(
        &[
            "renew",
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--rotate-key",
            "--exec",
            &exec,
        ],
        &connection,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker.exists(), "--exec ran");
    verify_with_openssl(tmp.path(), &data_dir, &crt);
    let second = CertificateInfo::from_der(
        &parse_certificates("crt", &std::fs::read(&crt).unwrap()).unwrap()[0],
    )
    .unwrap();
    assert_eq!(second.subject, first.subject);
    assert_ne!(
        second.public_key, first.public_key,
        "--rotate-key made a new key"
    );
    assert!(
        evergreen_pki::PrivateKey::from_pem("key", &std::fs::read(&key).unwrap())
            .unwrap()
            .matches_certificate(
                &parse_certificates("crt", &std::fs::read(&crt).unwrap()).unwrap()[0]
            )
            .unwrap()
    );

    // renew --daemon as a process: it reports its next renewal, waits (where it used to
    // panic), and stops cleanly on SIGTERM with the files as they were.
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_evergreen"))
        .args([
            "renew",
            "--daemon",
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .args(&connection)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = std::io::BufReader::new(daemon.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut log, &mut line).unwrap();
    assert!(line.contains("next renewal at"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon keeps waiting"
    );
    let pid = daemon.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = None;
    wait_for(5, "renew --daemon to stop on SIGTERM", || {
        status = daemon.try_wait().unwrap();
        status.is_some()
    });
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut log, &mut rest).unwrap();
    assert!(status.unwrap().success(), "{line}{rest}");
    assert_eq!(
        CertificateInfo::from_der(
            &parse_certificates("crt", &std::fs::read(&crt).unwrap()).unwrap()[0]
        )
        .unwrap()
        .serial,
        second.serial
    );

    // The inventory shows both; revoke the current one by its file.
    let out = run(&["certificate", "check", "-o", "json"], &connection);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows.iter()
            .filter(|r| r["subject"] == "CN=billing, O=team")
            .count(),
        2
    );
    let out = run(
        &[
            "certificate",
            "revoke",
            "--cert",
            crt.to_str().unwrap(),
            "--reason",
            "key-compromise",
        ],
        &connection,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&second.serial_hex()),
        "{}",
        stdout(&out)
    );
    let out = run(
        &["certificate", "check", "--status", "revoked"],
        &connection,
    );
    assert!(
        stdout(&out).contains("REVOKED") && stdout(&out).contains(&second.serial_hex()),
        "{}",
        stdout(&out)
    );

    // A revoked certificate renews no more.
    let before = std::fs::read(&crt).unwrap();
    let out = run(
        &[
            "renew",
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        &connection,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("renewal refused"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&crt).unwrap(), before, "nothing written");

    // SIGTERM stops it cleanly; a restart keeps the same CAs.
    let ca_before = std::fs::read(data_dir.join("ca.crt")).unwrap();
    let (status, output) = server.stop();
    assert!(status.success(), "{status}: {output}");
    assert!(
        output.contains("Next, for each node")
            && output.contains("evergreen token create --data-dir")
            && output.contains("evergreen agent --server")
            && output.contains("shutting down"),
        "{output}"
    );
    let server = ServerProcess::start(&data_dir);
    assert_eq!(std::fs::read(data_dir.join("ca.crt")).unwrap(), ca_before);
    let out = run(&["certificate", "check"], &server.connection());
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, _) = server.stop();
    assert!(status.success());

    // A wrong server token refuses to start and says why.
    let token_path = data_dir.join("server/token");
    let good = std::fs::read_to_string(&token_path).unwrap();
    let (prefix, _) = good.trim().rsplit_once('.').unwrap();
    std::fs::write(&token_path, format!("{prefix}.{}", "z".repeat(32))).unwrap();
    let out = evergreen([
        "server",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not match this datastore"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn renew_daemon_renews_when_the_window_opens_and_runs_the_hook() {
    // The server's clock runs 70 days behind, so what it issues is inside its renewal
    // window for this host at once: the daemon renews immediately, runs --exec, then sees
    // the clocks disagree and backs off instead of renewing in a loop.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let clock = evergreen_api::ManualClock::new(
        evergreen_test_util::wall_clock() - evergreen_pki::Duration::days(70),
    );
    let t = runtime
        .block_on(evergreen_test_util::server::TestServer::start_in(
            &tmp.path().join("data"),
            clock,
        ))
        .unwrap();
    let app = runtime.block_on(t.enroll(
        evergreen_api::Role::App,
        &evergreen_pki::DistinguishedName::common_name("daemon-app"),
    ));
    let (crt, key) = app.write(tmp.path(), "app");
    let marker = tmp.path().join("hook-runs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_evergreen"))
        .args([
            "renew",
            "--daemon",
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .args([
            "--server",
            t.url(),
            "--ca",
            tmp.path().join("data/ca.crt").to_str().unwrap(),
        ])
        .args(["--exec", &format!("echo run >> {}", marker.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(60, "the daemon to renew", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited: {}",
            child.wait_with_output_now()
        );
        marker.exists()
    });
    // Give a runaway loop the chance to show itself, then stop the daemon.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon still runs, backing off: {}",
        child.wait_with_output_now()
    );
    let _ = child.kill();
    let _ = child.wait();
    let runs = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(runs.lines().count(), 1, "renewed once, then backed off");
    let renewed = parse_certificates("crt", &std::fs::read(&crt).unwrap()).unwrap();
    assert_ne!(renewed[0], app.chain[0]);
    let log = child.wait_with_output_now();
    assert!(log.contains("already inside its renewal window"), "{log}");
    runtime.block_on(t.shutdown());
}

#[test]
fn named_certificates_and_node_bundles_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = ServerProcess::start(&data_dir);
    let c = server.connection();

    let out = run(
        &[
            "certificate",
            "create",
            "proxy",
            "--san",
            "proxy.example",
            "--san",
            "10.0.0.10",
        ],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("proxy: version 1") && stdout(&out).contains("first certificate"),
        "{}",
        stdout(&out)
    );
    let out = run(
        &[
            "certificate",
            "create",
            "kubelet",
            "--scope",
            "node",
            "--san",
            "{node}",
            "--san",
            "{ip}",
        ],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // set: certificate and key in one file, signed by the cluster's server CA via ca sign.
    let csr = Openssl::find().csr(
        tmp.path(),
        &evergreen_test_util::OPENSSL_P256,
        "/CN=proxy",
        &[],
    );
    let signed = tmp.path().join("proxy.pem");
    // Signed by a CA made offline: another issuer, so clients must update their trust.
    let offline = tmp.path().join("offline");
    assert!(
        evergreen(["ca", "generate", "--out", offline.to_str().unwrap()])
            .status
            .success()
    );
    let out = evergreen([
        "ca",
        "sign",
        "--ca-dir",
        offline.to_str().unwrap(),
        "--ca",
        "server-ca",
        "--csr",
        csr.to_str().unwrap(),
        "--profile",
        "server",
        "--san",
        "proxy.example",
        "--out",
        signed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut combined = std::fs::read_to_string(&signed).unwrap();
    combined.push_str(&std::fs::read_to_string(tmp.path().join("client.key")).unwrap());
    std::fs::write(&signed, combined).unwrap();
    let out = run(
        &[
            "certificate",
            "set",
            "proxy",
            "--cert",
            signed.to_str().unwrap(),
        ],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("version 2")
            && stdout(&out).contains("clients must update their trust"),
        "{}",
        stdout(&out)
    );
    let out = run(
        &[
            "certificate",
            "set",
            "syncer",
            "--cert",
            signed.to_str().unwrap(),
        ],
        &c,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("(403)") && stderr(&out).contains("known: kubelet, proxy"),
        "{}",
        stderr(&out)
    );

    let out = run(&["certificate", "label", "kubelet", "v2"], &c);
    assert!(
        out.status.success() && stdout(&out).contains("kubelet: version 2"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = run(&["certificate", "rotate", "--service", "proxy"], &c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("certificate set"), "{}", stderr(&out));
    let out = run(&["certificate", "rotate", "--service", "kubelet,nope"], &c);
    assert!(
        stderr(&out).contains("valid names: kubelet, proxy"),
        "{}",
        stderr(&out)
    );
    let out = run(&["certificate", "rotate"], &c);
    assert!(
        out.status.success() && stdout(&out).contains("kubelet: version 3"),
        "{}",
        stdout(&out)
    );

    let out = run(&["certificate", "list", "-o", "json"], &c);
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let proxy = rows.iter().find(|r| r["name"] == "proxy").unwrap();
    assert_eq!(
        (proxy["type"].as_str(), proxy["version"].as_i64()),
        (Some("provided"), Some(2))
    );
    let out = run(&["certificate", "list"], &c);
    assert!(
        stdout(&out).lines().next().unwrap().contains("INSTALLED"),
        "{}",
        stdout(&out)
    );

    // A node bundle: three files, the key private, nothing overwritten the second time.
    let bundle = tmp.path().join("dp-1");
    let out = run(
        &["node", "bundle", "dp-1", "--out", bundle.to_str().unwrap()],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(bundle.join("tls.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    verify_with_openssl(tmp.path(), &data_dir, &bundle.join("tls.crt"));
    let key =
        evergreen_pki::PrivateKey::from_pem("k", &std::fs::read(bundle.join("tls.key")).unwrap())
            .unwrap();
    let chain = parse_certificates("c", &std::fs::read(bundle.join("tls.crt")).unwrap()).unwrap();
    assert!(key.matches_certificate(&chain[0]).unwrap());
    let out = run(
        &["node", "bundle", "dp-1", "--out", bundle.to_str().unwrap()],
        &c,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refusing to overwrite"),
        "{}",
        stderr(&out)
    );
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn an_agent_killed_at_any_moment_never_leaves_a_mismatched_pair() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let t = runtime
        .block_on(evergreen_test_util::server::TestServer::start_in(
            &tmp.path().join("server"),
            evergreen_api::ManualClock::new(evergreen_test_util::wall_clock()),
        ))
        .unwrap();
    let spec = evergreen_api::NamedCertificateSpec {
        name: "proxy".into(),
        scope: evergreen_api::Scope::Cluster,
        kind: evergreen_api::Kind::Selfsigned,
        label: String::new(),
        internal: false,
        usage: evergreen_api::Usage::Server,
        sans: vec!["proxy.example".into()],
        nodes: vec![],
        secret: None,
        allowed_dns: Vec::new(),
        allowed_cidrs: Vec::new(),
    };
    let _: evergreen_api::Replacement = runtime
        .block_on(
            t.admin()
                .json("POST", "/v1/cluster/certificates", Some(&spec)),
        )
        .unwrap();
    let data = tmp.path().join("agent");
    let token = runtime.block_on(t.node_token("n1"));
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_evergreen"))
            .args([
                "agent",
                "--server",
                t.url(),
                "--token",
                &token,
                "--node",
                "n1",
            ])
            .args(["--data-dir", data.to_str().unwrap()])
            .env("EVERGREEN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let consistent = |dir: &Path| {
        let target = evergreen_agent::install::FileLayout {
            dir: dir.to_owned(),
            ownership: Default::default(),
        };
        // Either nothing is installed yet, or the pair on disk matches.
        !dir.join("tls.crt").exists() || target.installed().is_some()
    };
    let mut latest = String::new();
    for round in 0..20u64 {
        let mut agent = spawn();
        let rotate = evergreen_api::RotateRequest {
            names: vec!["proxy".into()],
        };
        let answers: Vec<evergreen_api::Replacement> = runtime
            .block_on(
                t.admin()
                    .json("POST", "/v1/cluster/certificates/rotate", Some(&rotate)),
            )
            .unwrap();
        latest = answers[0].fingerprint.clone().unwrap();
        // Kill at a different moment each round: before, during or after the install.
        std::thread::sleep(Duration::from_millis((round * 53) % 700));
        let _ = agent.kill();
        let _ = agent.wait();
        assert!(
            consistent(&data.join("certs/proxy")),
            "round {round}: key and certificate do not match"
        );
        assert!(
            consistent(&data.join("identity")),
            "round {round}: identity key and certificate do not match"
        );
    }
    // Left running, it converges on the latest version.
    let mut agent = spawn();
    let target = evergreen_agent::install::FileLayout {
        dir: data.join("certs/proxy"),
        ownership: Default::default(),
    };
    wait_for(60, "the agent to install the latest version", || {
        target.installed().map(|f| f.to_string()).as_deref() == Some(latest.as_str())
    });
    let _ = agent.kill();
    let _ = agent.wait();
    runtime.block_on(t.shutdown());
}

#[test]
fn ca_generate_and_rotate_ca_rotate_a_running_cluster_the_k3s_way() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = ServerProcess::start(&data_dir);
    let c = server.connection();
    let data = data_dir.to_str().unwrap();
    let old_root = std::fs::read(data_dir.join("ca.crt")).unwrap();
    let old_root = parse_certificates("ca.crt", &old_root).unwrap().remove(0);

    // A fresh hierarchy is not related to the cluster: refused, every failure listed.
    let unrelated = tmp.path().join("unrelated");
    let out = evergreen(["ca", "generate", "--out", unrelated.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        &[
            "certificate",
            "rotate-ca",
            "--path",
            unrelated.to_str().unwrap(),
        ],
        &c,
    );
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("integrity checks failed"), "{message}");
    assert!(message.contains("cross-signed"), "{message}");
    assert!(message.contains("service.key"), "{message}");

    // New role CAs under the current root.
    let roles = tmp.path().join("roles");
    let out = evergreen([
        "ca",
        "generate",
        "--out",
        roles.to_str().unwrap(),
        "--root-from",
        data,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!roles.join("root-ca.crt").exists() && !roles.join("service.key").exists());
    let out = run(
        &[
            "certificate",
            "rotate-ca",
            "--path",
            roles.to_str().unwrap(),
        ],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Rotated server-ca, client-ca, peer-ca"),
        "{}",
        stdout(&out)
    );

    // A join token made before the root rotation (it pins the current root).
    let out = run(
        &[
            "token",
            "create",
            "--role",
            "app",
            "--subject",
            "/CN=after-rotation",
        ],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);

    // A new root cross-signed by the current one: accepted without --force.
    let next = tmp.path().join("next");
    let out = evergreen([
        "ca",
        "generate",
        "--out",
        next.to_str().unwrap(),
        "--cross-sign-from",
        data,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_root = parse_certificates(
        "root-ca.crt",
        &std::fs::read(next.join("root-ca.crt")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let new_hash = CertificateInfo::from_der(&new_root)
        .unwrap()
        .fingerprint
        .to_string();
    assert!(
        stdout(&out).contains(&new_hash),
        "the new join token hash is printed"
    );
    let out = run(
        &["certificate", "rotate-ca", "--path", next.to_str().unwrap()],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&new_hash), "{}", stdout(&out));
    // The trust bundle now starts with the new root and keeps the old one.
    let bundle =
        parse_certificates("ca.crt", &std::fs::read(data_dir.join("ca.crt")).unwrap()).unwrap();
    assert_eq!(bundle[0], new_root);
    assert!(bundle.contains(&old_root));

    // A leaf issued now verifies with openssl against the new root, and against the old
    // root through the cross-signed certificate in its chain.
    let dir = tmp.path().join("leaf");
    std::fs::create_dir_all(&dir).unwrap();
    // The token made before still enrolls while the old root is in the trust bundle.
    assert!(!token.contains(&new_hash), "it pins the old root");
    let (crt, _key) = enroll_with_curl(&dir, &data_dir, token.trim(), "/CN=after-rotation");
    verify_with_openssl(&dir, &data_dir, &crt);
    let chain = parse_certificates("crt", &std::fs::read(&crt).unwrap()).unwrap();
    let now = evergreen_test_util::wall_clock();
    Openssl::find()
        .verify(
            &dir,
            std::slice::from_ref(&old_root),
            &chain[1..],
            &chain[0],
            "sslclient",
            now,
            &[],
        )
        .unwrap();
    evergreen_pki::chain::verify(
        &chain[0],
        &chain[1..],
        std::slice::from_ref(&old_root),
        evergreen_pki::certificate::Usage::ClientAuth,
        &[],
        now,
    )
    .unwrap();

    // Service-account keys: a new signer first, the old one kept, then retired.
    let out = run(&["keys", "list"], &c);
    assert!(out.status.success(), "{}", stderr(&out));
    let first_kid = stdout(&out).split_whitespace().next().unwrap().to_owned();
    let out = run(&["keys", "rotate", "service-account"], &c);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&first_kid) && l.ends_with("verify only")),
        "{lines:?}"
    );
    let out = run(
        &["keys", "rotate", "service-account", "--retire", &first_kid],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains(&first_kid) || stdout(&out).starts_with("Retired"),
        "{}",
        stdout(&out)
    );
    let out = run(&["keys", "list"], &c);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));

    // The server restarts on the rotated CAs with its re-pinned token.
    let (status, _) = server.stop();
    assert!(status.success());
    let server = ServerProcess::start(&data_dir);
    let out = run(&["certificate", "check"], &server.connection());
    assert!(out.status.success(), "{}", stderr(&out));
    drop(server);
}

/// Two `evergreen server` processes on one PostgreSQL database: a wrong token is refused
/// at start, renewals through both at once get distinct serials, and killing one during
/// the burst loses nothing — every certificate a client received is in the inventory.
#[test]
fn replicas_on_postgres_lose_nothing_when_one_is_killed_during_a_burst() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use evergreen_api::client::Client;
    use evergreen_api::{CertificateBundle, EnrollRequest, RenewalRequest, encode_pem};
    use evergreen_pki::{DistinguishedName, KeyType, PrivateKey, pem};
    use evergreen_store::Store;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let datastore = runtime.block_on(evergreen_test_util::postgres::fresh_database());
    let tmp = tempfile::tempdir().unwrap();
    let shared = ["--datastore", datastore.as_str()];
    let a = ServerProcess::start_with(&tmp.path().join("a"), &shared, "warn");
    let token = std::fs::read_to_string(tmp.path().join("a/server/token")).unwrap();

    // A replica started with another cluster secret refuses and writes nothing.
    let (id_and_hash, _) = token.trim().rsplit_once('.').unwrap();
    let wrong = format!("{id_and_hash}.{}", "z".repeat(32));
    let refused = tmp.path().join("refused");
    let out = evergreen([
        "server",
        "--data-dir",
        refused.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--datastore",
        &datastore,
        "--token",
        &wrong,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not match this datastore")
            && !stderr(&out).contains(datastore.rsplit_once('@').unwrap().0),
        "says why, without the password: {}",
        stderr(&out)
    );
    assert!(!refused.join("server/token").exists());

    let b = ServerProcess::start_with(
        &tmp.path().join("b"),
        &["--datastore", &datastore, "--token", token.trim()],
        "warn",
    );
    let out = run(
        &[
            "token",
            "create",
            "--role",
            "app",
            "--subject",
            "CN=app-*",
            "--uses",
            "8",
        ],
        &a.connection(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let app_token = stdout(&out).trim().to_owned();
    let roots = parse_certificates(
        "ca.crt",
        &std::fs::read(tmp.path().join("a/ca.crt")).unwrap(),
    )
    .unwrap();
    let urls: Vec<String> = [&a, &b]
        .iter()
        .map(|s| std::fs::read_to_string(s.data_dir.join("server-url")).unwrap())
        .map(|u| u.trim().to_owned())
        .collect();

    // Eight clients renew in a loop, alternating between the replicas.
    let received = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (roots, urls, app_token) = (roots.clone(), urls.clone(), app_token.clone());
        let (received, stop) = (received.clone(), stop.clone());
        tasks.push(runtime.spawn(async move {
            let key = PrivateKey::generate(KeyType::EcP256).unwrap();
            let subject = DistinguishedName::common_name(format!("app-{i}"));
            let csr = encode_pem(&pem::encode(
                "CERTIFICATE REQUEST",
                &evergreen_pki::csr::build(&key, &subject, &[]).unwrap(),
            ));
            let enrolled: CertificateBundle = Client::new(&urls[i % 2], &roots, None)
                .unwrap()
                .json(
                    "POST",
                    "/v1/enroll",
                    Some(&EnrollRequest {
                        token: app_token,
                        csr: csr.clone(),
                    }),
                )
                .await
                .unwrap();
            let chain =
                pem::parse_certificates("crt", &evergreen_api::decode_pem(&enrolled.crt).unwrap())
                    .unwrap();
            let clients: Vec<Client> = urls
                .iter()
                .map(|url| {
                    Client::new(url, &roots, Some((chain.clone(), key.der().clone_key()))).unwrap()
                })
                .collect();
            let mut chains = Vec::new();
            let mut round = i;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let answer: Result<CertificateBundle, _> = clients[round % 2]
                    .json(
                        "POST",
                        "/v1/applications/certificates/renewals",
                        Some(&RenewalRequest { csr: csr.clone() }),
                    )
                    .await;
                // Requests to the killed replica fail; the client moves on.
                if let Ok(bundle) = answer {
                    chains.push(
                        pem::parse_certificates(
                            "crt",
                            &evergreen_api::decode_pem(&bundle.crt).unwrap(),
                        )
                        .unwrap(),
                    );
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            chains
        }));
    }
    wait_for(60, "renewals through both replicas", || {
        received.load(Ordering::Relaxed) >= 80
    });
    let mut b = b;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let at_kill = received.load(Ordering::Relaxed);
    wait_for(60, "renewals through the survivor", || {
        received.load(Ordering::Relaxed) >= at_kill + 80
    });
    stop.store(true, Ordering::Relaxed);
    let chains: Vec<_> = tasks
        .into_iter()
        .flat_map(|task| runtime.block_on(task).unwrap())
        .collect();

    let mut serials: Vec<String> = chains
        .iter()
        .map(|chain| CertificateInfo::from_der(&chain[0]).unwrap().serial_hex())
        .collect();
    let total = serials.len();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), total, "no serial issued twice");
    let store = runtime
        .block_on(evergreen_store::PostgresStore::connect(&datastore))
        .unwrap();
    for serial in &serials {
        let recorded = runtime
            .block_on(store.certificate_by_serial(serial))
            .unwrap();
        assert!(
            recorded.is_some(),
            "{serial} was received but is not in the inventory"
        );
    }
    runtime.block_on(store.close());
    eprintln!(
        "{total} renewals received, {at_kill} before one replica was killed; all in the inventory"
    );
    // Each chain verifies with webpki and openssl against the cluster's root.
    let now = evergreen_test_util::wall_clock();
    for chain in &chains {
        evergreen_test_util::assert_chain(
            &roots[0],
            chain,
            evergreen_pki::certificate::Usage::ClientAuth,
            now,
        );
    }
    let (status, _) = a.stop();
    assert!(status.success());
}

/// k3s's CA procedures as its documentation prints them, against a server process: a first
/// start on the CAs its contrib script makes, then a second set under the same root and
/// intermediate loaded with the literal `rotate-ca --path=<dir>/server`, then the
/// service-account key rotation with the current key supplied by `evergreen keys export`.
#[test]
fn the_k3s_ca_procedures_as_written() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let openssl = Openssl::find();
    let data_dir = tmp.path().join("data");
    let stamp = evergreen_test_util::wall_clock().unix_timestamp();
    let tls = evergreen_test_util::k3s::custom_ca_certs(&openssl, &data_dir, stamp);
    let staged_root = std::fs::read(tls.join("root-ca.pem")).unwrap();
    let server = ServerProcess::start(&data_dir);
    let c = server.connection();
    let jwks = |c: &[String]| -> Value {
        let out = run(&["keys", "list"], c);
        assert!(out.status.success(), "{}", stderr(&out));
        let url = std::fs::read_to_string(data_dir.join("server-url")).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--cacert", data_dir.join("ca.crt").to_str().unwrap()])
            .arg(format!("{}/v1/keys/service-account", url.trim()))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first_keys = jwks(&c);
    assert_eq!(
        first_keys["keys"].as_array().unwrap().len(),
        1,
        "k3s's service.key"
    );
    let out = run(&["certificate", "check"], &c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: CA CN=k3s-client-ca@")
            && stderr(&out).contains("relying parties get no CRL"),
        "{}",
        stderr(&out)
    );
    let out = evergreen(["certificate", "check", "--path", tls.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("may not sign CRLs"),
        "{}",
        stderr(&out)
    );

    // An app enrolled under the first set; its chain verifies with openssl against the
    // staged root.
    let out = run(
        &["token", "create", "--role", "app", "--subject", "/CN=app-1"],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (crt, key) = enroll_with_curl(tmp.path(), &data_dir, stdout(&out).trim(), "/CN=app-1");
    let root_only = tmp.path().join("staged-root.pem");
    std::fs::write(&root_only, &staged_root).unwrap();
    let verified = openssl.run([
        "verify",
        "-CAfile",
        root_only.to_str().unwrap(),
        "-untrusted",
        crt.to_str().unwrap(),
        crt.to_str().unwrap(),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // A second set under the same root and intermediate, made the way k3s's procedure
    // does: the root and intermediate copied in, the current service.key with them.
    let opt = tmp.path().join("opt-k3s");
    std::fs::create_dir_all(opt.join("server/tls")).unwrap();
    for file in [
        "root-ca.pem",
        "root-ca.key",
        "intermediate-ca.pem",
        "intermediate-ca.key",
    ] {
        std::fs::copy(tls.join(file), opt.join("server/tls").join(file)).unwrap();
    }
    let current = tmp.path().join("current-keys");
    let out = run(&["keys", "export", "--out", current.to_str().unwrap()], &c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(current.join("service.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let again = run(&["keys", "export", "--out", current.to_str().unwrap()], &c);
    assert!(!again.status.success() && stderr(&again).contains("refusing to overwrite"));
    std::fs::copy(
        current.join("service.key"),
        opt.join("server/tls/service.key"),
    )
    .unwrap();
    evergreen_test_util::k3s::custom_ca_certs(&openssl, &opt, stamp + 1);
    let out = run(
        &[
            "certificate",
            "rotate-ca",
            &format!("--path={}", opt.join("server").display()),
        ],
        &c,
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    for expected in [
        "etcd/peer-ca.crt (as peer-ca.crt)",
        "ignored request-header-ca.crt",
        "ignored etcd/server-ca.crt",
        "Rotated server-ca, client-ca, peer-ca, service-account keys",
        "may not sign CRLs",
    ] {
        assert!(said.contains(expected), "{expected} missing from:\n{said}");
    }
    let keys = jwks(&c);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        keys["keys"][1], first_keys["keys"][0],
        "the old key still verifies"
    );

    // The old app renews under the new client CA; a restart works.
    let out = run(
        &[
            "renew",
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        &c,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let chain = parse_certificates("crt", &std::fs::read(&crt).unwrap()).unwrap();
    let new_client_ca = parse_certificates(
        "",
        &std::fs::read(opt.join("server/tls/client-ca.pem")).unwrap(),
    )
    .unwrap();
    assert!(evergreen_pki::chain::is_signed_by(&chain[0], &new_client_ca[0]).unwrap());
    let (status, _) = server.stop();
    assert!(status.success());
    let server = ServerProcess::start(&data_dir);
    let c = server.connection();

    // Seed 003's service-account rotation, its commands as written (the current key from
    // `evergreen keys export` where k3s reads its own file).
    let current = tmp.path().join("current-keys-2");
    let out = run(&["keys", "export", "--out", current.to_str().unwrap()], &c);
    assert!(out.status.success(), "{}", stderr(&out));
    let seed = tmp.path().join("opt2");
    let script = r#"set -e
mkdir -p "$OPT/server/tls"
openssl version | grep -qF 'OpenSSL 3' && OPENSSL_GENRSA_FLAGS=-traditional
openssl genrsa ${OPENSSL_GENRSA_FLAGS:-} -out "$OPT/server/tls/service.key" 2048
cat "$CURRENT/service.key" >> "$OPT/server/tls/service.key"
"$EVERGREEN" certificate rotate-ca --path="$OPT/server" --data-dir "$DATA"
"#;
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("OPT", &seed)
        .env("CURRENT", &current)
        .env("DATA", &data_dir)
        .env("EVERGREEN", env!("CARGO_BIN_EXE_evergreen"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Rotated service-account keys"),
        "{}",
        stdout(&out)
    );
    let after = jwks(&c);
    let after = after["keys"].as_array().unwrap();
    assert_eq!(after.len(), 3, "a new signing key, both old ones kept");
    assert_eq!(after[0]["kty"], "RSA", "the new RSA key signs");
    assert_eq!(&after[1..], keys["keys"].as_array().unwrap().as_slice());
}

#[test]
fn admin_reissue_recovers_a_running_and_a_stopped_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = ServerProcess::start(&data_dir);
    let connection = server.connection();
    let keep = |name: &str| -> Vec<String> {
        let (crt, key) = (
            tmp.path().join(format!("{name}.crt")),
            tmp.path().join(format!("{name}.key")),
        );
        std::fs::copy(data_dir.join("admin.crt"), &crt).unwrap();
        std::fs::copy(data_dir.join("admin.key"), &key).unwrap();
        vec![
            "--cert".into(),
            crt.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]
    };
    let serial = |path: &Path| {
        CertificateInfo::from_der(
            &parse_certificates("", &std::fs::read(path).unwrap()).unwrap()[0],
        )
        .unwrap()
        .serial_hex()
    };
    let with =
        |extra: &[String]| -> Vec<String> { connection.iter().chain(extra).cloned().collect() };

    // Running: the old credential is revoked through the server, refused at once.
    let first = keep("first");
    let first_serial = serial(&tmp.path().join("first.crt"));
    let out = evergreen(["admin", "reissue", "--data-dir", data_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("through the running server"),
        "{}",
        stdout(&out)
    );
    assert!(run(&["certificate", "check"], &connection).status.success());
    let out = run(&["certificate", "check"], &with(&first));
    assert!(!out.status.success(), "the revoked credential is refused");

    // Stopped: revoked in the datastore, published when the server starts.
    let (status, _) = server.stop();
    assert!(status.success());
    let second = keep("second");
    let second_serial = serial(&tmp.path().join("second.crt"));
    let out = evergreen(["admin", "reissue", "--data-dir", data_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("in the datastore"),
        "{}",
        stdout(&out)
    );
    let server = ServerProcess::start(&data_dir);
    assert!(run(&["certificate", "check"], &connection).status.success());
    assert!(
        !run(&["certificate", "check"], &with(&second))
            .status
            .success()
    );
    let out = run(
        &["certificate", "check", "--status", "revoked", "-o", "json"],
        &connection,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&first_serial) && text.contains(&second_serial),
        "{text}"
    );
    let (status, _) = server.stop();
    assert!(status.success());
}

/// SIGTERM with agents in their long-polls: the watches answer at once, so the server
/// stops without waiting out its grace period (or the polls).
#[test]
fn sigterm_with_agents_watching_stops_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = ServerProcess::start(&data_dir);
    let connection = server.connection();
    let url = std::fs::read_to_string(data_dir.join("server-url")).unwrap();
    let url = url.trim();
    let mut agents = Vec::new();
    for node in ["n1", "n2", "n3"] {
        let out = run(&["token", "create", "--node", node], &connection);
        assert!(out.status.success(), "{}", stderr(&out));
        let token = stdout(&out).trim().to_owned();
        agents.push(
            Command::new(env!("CARGO_BIN_EXE_evergreen"))
                .args(["agent", "--server", url, "--token", &token, "--node", node])
                .arg("--data-dir")
                .arg(tmp.path().join(node))
                .env("EVERGREEN_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let watching = || {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(data_dir.join("ca.crt"))
            .arg(format!("{url}/metrics"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == "evergreen_agent_watches 3")
    };
    wait_for(60, "three agents watching", watching);
    #[allow(
        clippy::disallowed_methods,
        reason = "how long a process takes to stop, on the wall clock"
    )]
    let started = std::time::Instant::now();
    let (status, log) = server.stop();
    let took = started.elapsed();
    assert!(status.success(), "{log}");
    // Well under the 10 s grace (and the 30 s polls) it would otherwise wait out.
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    eprintln!("stopped with three agents watching in {took:?}");
    for mut agent in agents {
        assert!(
            agent.try_wait().unwrap().is_none(),
            "agents keep running, retrying"
        );
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

/// `certificate check --path` over a server's data dir lists its certificate files, not
/// the PEM the datastore and its write-ahead log happen to hold.
#[test]
fn certificate_check_of_a_data_dir_reads_certificate_files_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = ServerProcess::start(&data_dir);
    let connection = server.connection();
    let out = run(
        &["certificate", "create", "proxy", "--san", "proxy.example"],
        &connection,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let db_dir = data_dir.join("server/db");
    let in_db = std::fs::read_dir(&db_dir).unwrap().flatten().any(|e| {
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        bytes
            .windows(27)
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    });
    assert!(
        in_db,
        "the datastore holds PEM, so the check below can fail"
    );
    let out = evergreen([
        "certificate",
        "check",
        "--path",
        data_dir.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let files: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["filename"].as_str().unwrap())
        .collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        ["admin.crt", "ca.crt", "server/tls/serving.crt"]
    );
    let (status, _) = server.stop();
    assert!(status.success());
}
