//! The agent's check that the service serves what it installed, against a real nginx
//! whose reload completes after the reload command has returned.
use std::path::Path;
use std::process::Command;

use evergreen_agent::config::{CertificateConfig, Config};
use evergreen_api::{Replacement, RotateRequest};
use evergreen_test_util::server::TestServer;

use crate::{spec, start_agent_with, status, until};

/// nginx on 127.0.0.1, serving `dir/cert.pem`; stopped when dropped.
struct Nginx {
    dir: std::path::PathBuf,
}

impl Nginx {
    fn command(&self) -> String {
        format!(
            "nginx -p {0} -c {0}/nginx.conf -e {0}/error.log",
            self.dir.display()
        )
    }

    fn start(dir: &Path, port: u16) -> Self {
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/cert.pem;\n\
                 ssl_certificate_key {d}/key.pem;\n    return 200 \"ok\\n\";\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        // Until the agent installs the cluster's certificate, a placeholder.
        evergreen_test_util::Openssl::find().self_signed(dir, "/CN=placeholder", 1, &[]);
        std::fs::copy(dir.join("cert.pem"), dir.join("ca.pem")).unwrap();
        let nginx = Nginx {
            dir: dir.to_owned(),
        };
        let out = Command::new("sh")
            .arg("-c")
            .arg(nginx.command())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("{} -s stop", self.command()))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_check_waits_out_an_asynchronous_reload_and_reports_what_it_saw() {
    let t = TestServer::start().await;
    for name in ["proxy", "other"] {
        let _: Replacement = t
            .admin()
            .json(
                "POST",
                "/v1/cluster/certificates",
                Some(&spec(name, "cluster", &["proxy.example"])),
            )
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("nginx");
    std::fs::create_dir(&web).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nginx = Nginx::start(&web, port);

    // The reload returns at once and nginx takes the new certificate a second later, as a
    // service manager's non-blocking reload does.
    let config = Config {
        certificates: vec![
            CertificateConfig {
                name: "proxy".into(),
                cert: Some(web.join("cert.pem")),
                key: Some(web.join("key.pem")),
                ca: Some(web.join("ca.pem")),
                reload: Some(format!(
                    "(sleep 1; {} -s reload) >/dev/null 2>&1 &",
                    nginx.command()
                )),
                verify: Some(format!("127.0.0.1:{port}")),
                verify_timeout: Some("20s".into()),
                ..CertificateConfig::default()
            },
            // Checked where nothing will ever serve it: the server's own port.
            CertificateConfig {
                name: "other".into(),
                verify: Some(t.server.addr.to_string()),
                verify_timeout: Some("1s".into()),
                ..CertificateConfig::default()
            },
        ],
    };
    let agent = start_agent_with(
        &t,
        dir.path(),
        "node-a",
        Some(t.node_token("node-a").await),
        config,
    );
    let acked = |t: &TestServer, name: &'static str, version: i64| {
        let admin = t.admin();
        async move {
            let all: Vec<evergreen_api::NamedCertificateStatus> =
                admin.get_json("/v1/cluster/certificates").await.unwrap();
            all.into_iter()
                .find(|s| s.name == name)
                .unwrap()
                .acknowledged
                .into_iter()
                .find(|a| a.version == version)
                .map(|a| a.served)
        }
    };
    until("proxy v1 acknowledged", async || {
        acked(&t, "proxy", 1).await.is_some()
    })
    .await;
    assert_eq!(
        acked(&t, "proxy", 1).await,
        Some(Some(true)),
        "seen served after the reload"
    );
    until("other v1 acknowledged", async || {
        acked(&t, "other", 1).await.is_some()
    })
    .await;
    assert_eq!(
        acked(&t, "other", 1).await,
        Some(Some(false)),
        "never served: reported so"
    );

    // A new version: the same wait, the same proof.
    let _: Vec<Replacement> = t
        .admin()
        .json(
            "POST",
            "/v1/cluster/certificates/rotate",
            Some(&RotateRequest {
                names: vec!["proxy".into()],
            }),
        )
        .await
        .unwrap();
    until("proxy v2 acknowledged", async || {
        acked(&t, "proxy", 2).await.is_some()
    })
    .await;
    assert_eq!(acked(&t, "proxy", 2).await, Some(Some(true)));
    let served = evergreen_agent::install::served_fingerprint(&format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    assert_eq!(
        Some(served.to_string()),
        status(&t, "proxy").await.fingerprint
    );
    agent.stop().await;
}
