//! Floods from one source against a server process held to 1,024 open files: it stays up,
//! sheds what is past its limits, closes what it admitted when its time runs out, keeps
//! answering everyone else, and its log stays bounded.
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use evergreen_api::client::Client;
use evergreen_pki::{CertificateAuthority, DistinguishedName, KeyType, PrivateKey, pem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The attacker's address: another loopback address than everyone else's.
const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const IDLE: usize = 5_000;
const SLOW_BODIES: usize = 1_000;

/// Connects from the attacker's address.
async fn connect_from_attacker(server: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ATTACKER, 0))?;
    socket.connect(server).await
}

/// Waits until the server closes `stream` (or it breaks), at most `limit`; whether it did.
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read).await.is_ok()
}

/// A TLS connection from the attacker without a client certificate, sending a request
/// whose body then trickles in a byte a second; returns whether the server closed it by
/// `limit` (refused at once, or when its body was late).
async fn slow_body(server: SocketAddr, roots: Arc<rustls::RootCertStore>, limit: Duration) -> bool {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let started = tokio::time::Instant::now();
    let Ok(tcp) = connect_from_attacker(server).await else {
        return true;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    let Ok(Ok(mut tls)) = tokio::time::timeout(limit, connector.connect(name, tcp)).await else {
        // Shed before or during the handshake.
        return true;
    };
    let head = "POST /v1/enroll HTTP/1.1\r\nhost: evergreen\r\ncontent-length: 1000\r\n\r\n{";
    if tls.write_all(head.as_bytes()).await.is_err() {
        return true;
    }
    let (mut reader, mut writer) = tokio::io::split(tls);
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b" ").await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        closed = closed_within(&mut reader, limit.saturating_sub(started.elapsed())) => closed,
        () = trickle => true,
    }
}

/// A certificate with a 30 KB subject holding a line break, as curl presents it.
fn write_huge_client_certificate(dir: &Path) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = format!("evil\nforged: admin {}", "A".repeat(30_000));
    let now = evergreen_test_util::wall_clock();
    let fake = CertificateAuthority::new_root(
        DistinguishedName::common_name(subject),
        key,
        evergreen_pki::Duration::days(1),
        now,
    )
    .unwrap();
    std::fs::write(dir.join("huge.crt"), fake.bundle_pem()).unwrap();
    std::fs::write(dir.join("huge.key"), fake.key().to_pem()).unwrap();
}

#[test]
fn floods_from_one_source_leave_everyone_else_served() {
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        files >= (IDLE + SLOW_BODIES + 1_000) as u64,
        "this test holds {} connections and may open only {files} files; raise the hard limit (ulimit -Hn)",
        IDLE + SLOW_BODIES
    );
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let log = tmp.path().join("server.log");
    // The server may open 1,024 files, as on a default Linux login.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" server --data-dir \"$1\" --listen 127.0.0.1:0 2>\"$2\"")
        .arg(env!("CARGO_BIN_EXE_evergreen"))
        .arg(&data_dir)
        .arg(&log)
        .env("EVERGREEN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..1200 {
        if data_dir.join("server-url").exists() {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = std::fs::read_to_string(data_dir.join("server-url")).unwrap();
    let url = url.trim().to_owned();
    let server: SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let roots = pem::parse_certificates("ca.crt", &std::fs::read(data_dir.join("ca.crt")).unwrap())
        .unwrap();
    let mut store = rustls::RootCertStore::empty();
    for root in &roots {
        store.add(root.clone()).unwrap();
    }
    let store = Arc::new(store);
    write_huge_client_certificate(tmp.path());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (latencies, idle_closed, slow_closed, shed) = runtime.block_on(async {
        let healthy = Client::new(&url, &roots, None).unwrap();
        // Everyone else: a new connection to /healthz every 50 ms throughout.
        let prober = tokio::spawn(async move {
            let mut latencies = Vec::new();
            let until = tokio::time::Instant::now() + Duration::from_secs(14);
            while tokio::time::Instant::now() < until {
                #[allow(clippy::disallowed_methods, reason = "a latency, on the wall clock")]
                let started = std::time::Instant::now();
                let answer = healthy.send("GET", "/healthz", None).await;
                let took = started.elapsed();
                assert_eq!(answer.map(|a| a.status).ok(), Some(200), "/healthz failed");
                latencies.push(took);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            latencies
        });
        // The attacker: 5,000 connections that say nothing, 1,000 slow bodies, and
        // certificates with 30 KB subjects.
        let mut idle = Vec::new();
        for _ in 0..IDLE {
            if let Ok(stream) = connect_from_attacker(server).await {
                idle.push(stream);
            }
        }
        let slow: Vec<_> = (0..SLOW_BODIES)
            .map(|_| tokio::spawn(slow_body(server, store.clone(), Duration::from_secs(16))))
            .collect();
        let curl = tokio::process::Command::new("curl")
            .args(["-s", "--interface", "127.0.0.2", "--cacert"])
            .arg(data_dir.join("ca.crt"))
            .args(["--cert", "huge.crt", "--key", "huge.key", "-o", "/dev/null"])
            .args(["-w", "%{http_code}\\n", "-X", "POST", "-d", "{}"])
            .args(std::iter::repeat_n(
                format!("{url}/v1/applications/certificates/renewals"),
                200,
            ))
            .current_dir(tmp.path())
            .output();
        let mut idle_closed = 0;
        let closing: Vec<_> = idle
            .into_iter()
            .map(|mut stream| {
                tokio::spawn(
                    async move { closed_within(&mut stream, Duration::from_secs(16)).await },
                )
            })
            .collect();
        for task in closing {
            idle_closed += usize::from(task.await.unwrap());
        }
        let mut slow_closed = 0;
        for task in slow {
            slow_closed += usize::from(task.await.unwrap());
        }
        let curl = curl.await.unwrap();
        assert!(
            String::from_utf8_lossy(&curl.stdout)
                .lines()
                .all(|l| l == "401" || l == "000"),
            "{}",
            String::from_utf8_lossy(&curl.stdout)
        );
        let latencies = prober.await.unwrap();
        let metrics = Client::new(&url, &roots, None)
            .unwrap()
            .send("GET", "/metrics", None)
            .await
            .unwrap();
        let metrics = String::from_utf8(metrics.body).unwrap();
        let shed: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("evergreen_connections_shed_total "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (latencies, idle_closed, slow_closed, shed)
    });
    assert!(child.try_wait().unwrap().is_none(), "the server stayed up");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();

    let mut sorted = latencies.clone();
    sorted.sort();
    let p99 = sorted[sorted.len() * 99 / 100];
    let max = sorted[sorted.len() - 1];
    eprintln!(
        "healthz from 127.0.0.1 under the flood: {} probes, p50 {:?}, p99 {p99:?}, max {max:?}; {shed} connections shed",
        sorted.len(),
        sorted[sorted.len() / 2]
    );
    assert!(sorted.len() > 100, "the prober kept probing");
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    assert!(shed > 0, "connections past the limits were shed");
    assert_eq!(idle_closed, IDLE, "every idle connection was closed");
    assert_eq!(slow_closed, SLOW_BODIES, "every slow body was cut off");

    // The log: a few lines, none long, whatever was refused.
    let text = std::fs::read_to_string(&log).unwrap();
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    let refusals = text.lines().filter(|l| l.contains("refused")).count();
    eprintln!(
        "server log: {} lines, {} bytes, longest {longest}",
        text.lines().count(),
        text.len()
    );
    assert!(longest <= 4096, "a log line of {longest} bytes");
    assert!(refusals <= 40, "{refusals} refusal lines:\n{text}");
    assert!(
        !text.contains("forged: admin"),
        "a subject's line break forged a line"
    );
}
