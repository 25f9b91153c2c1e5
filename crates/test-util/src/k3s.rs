//! CA files made the way k3s's `contrib/util/generate-custom-ca-certs.sh` makes them, with
//! the `openssl` command line and nothing of Evergreen's: an RSA root and intermediate, EC
//! P-256 leaf CAs for client, server, request-header, etcd/peer and etcd/server, each as
//! `<ca>.pem` (alone) and `<ca>.crt` (with the intermediate and the root), the CA
//! extensions k3s uses — `keyUsage = critical, digitalSignature, keyEncipherment,
//! keyCertSign`, no `cRLSign`, no path length — and an RSA `service.key` in OpenSSL's
//! "traditional" form.
use std::path::{Path, PathBuf};

use crate::Openssl;

/// The CA extensions of k3s's script.
const CA_EXTENSIONS: &str = "[v3_ca]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
";

/// The leaf CAs k3s makes, by their path under `server/tls`.
pub const LEAF_CAS: [&str; 5] = [
    "client",
    "server",
    "request-header",
    "etcd/peer",
    "etcd/server",
];

/// Writes a k3s CA set into `data_dir/server/tls` (made if missing) and returns that
/// directory. Like the script, it reuses a `root-ca.pem`/`root-ca.key` and an
/// `intermediate-ca.pem`/`intermediate-ca.key` found there (copied in by the caller), and
/// appends a `service.key` found there to the new one.
pub fn custom_ca_certs(openssl: &Openssl, data_dir: &Path, stamp: i64) -> PathBuf {
    let tls = data_dir.join("server/tls");
    std::fs::create_dir_all(tls.join("etcd")).expect("tls dir");
    let path = |name: &str| tls.join(name).display().to_string();
    let config = tls.join(".ca.cnf");
    std::fs::write(&config, CA_EXTENSIONS).expect("openssl config");
    let config = config.display().to_string();

    let old_service_key = std::fs::read(tls.join("service.key")).unwrap_or_default();
    openssl.ok([
        "genrsa",
        "-traditional",
        "-out",
        &path("service.key"),
        "2048",
    ]);
    if !old_service_key.is_empty() {
        let mut keys = std::fs::read(tls.join("service.key")).expect("service.key");
        keys.extend_from_slice(&old_service_key);
        std::fs::write(tls.join("service.key"), keys).expect("service.key");
    }

    if !tls.join("root-ca.pem").exists() {
        openssl.ok([
            "genrsa",
            "-traditional",
            "-out",
            &path("root-ca.key"),
            "2048",
        ]);
        openssl.ok([
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-sha256",
            "-days",
            "7300",
            "-subj",
            &format!("/CN=k3s-root-ca@{stamp}"),
            "-key",
            &path("root-ca.key"),
            "-out",
            &path("root-ca.pem"),
            "-config",
            &config,
            "-extensions",
            "v3_ca",
        ]);
    }
    std::fs::copy(tls.join("root-ca.pem"), tls.join("root-ca.crt")).expect("root-ca.crt");
    if !tls.join("intermediate-ca.pem").exists() {
        openssl.ok([
            "genrsa",
            "-traditional",
            "-out",
            &path("intermediate-ca.key"),
            "2048",
        ]);
        sign(
            openssl,
            &tls,
            "intermediate-ca",
            &format!("k3s-intermediate-ca@{stamp}"),
            ("root-ca.pem", "root-ca.key"),
            &config,
        );
    }
    bundle(
        &tls,
        "intermediate-ca",
        &["intermediate-ca.pem", "root-ca.pem"],
    );
    for leaf in LEAF_CAS {
        let name = format!("{leaf}-ca");
        openssl.ok([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &path(&format!("{name}.key")),
        ]);
        let cn = format!("k3s-{}-ca@{stamp}", leaf.replace('/', "-"));
        sign(
            openssl,
            &tls,
            &name,
            &cn,
            ("intermediate-ca.pem", "intermediate-ca.key"),
            &config,
        );
        bundle(
            &tls,
            &name,
            &[&format!("{name}.pem"), "intermediate-ca.pem", "root-ca.pem"],
        );
    }
    let _ = std::fs::remove_file(tls.join(".ca.cnf"));
    let _ = std::fs::remove_file(tls.join(".csr"));
    tls
}

/// `openssl req` for `name`'s key, signed by `issuer` with the CA extensions.
fn sign(openssl: &Openssl, tls: &Path, name: &str, cn: &str, issuer: (&str, &str), config: &str) {
    let path = |file: &str| tls.join(file).display().to_string();
    openssl.ok([
        "req",
        "-new",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-key",
        &path(&format!("{name}.key")),
        "-out",
        &path(".csr"),
    ]);
    let mut serial = [0u8; 8];
    aws_lc_rs::rand::fill(&mut serial).expect("random serial");
    let serial: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    openssl.ok([
        "x509",
        "-req",
        "-sha256",
        "-days",
        "3700",
        "-in",
        &path(".csr"),
        "-CA",
        &path(issuer.0),
        "-CAkey",
        &path(issuer.1),
        "-set_serial",
        &format!("0x{serial}"),
        "-extfile",
        config,
        "-extensions",
        "v3_ca",
        "-out",
        &path(&format!("{name}.pem")),
    ]);
}

/// `cat`s `parts` into `name.crt`.
fn bundle(tls: &Path, name: &str, parts: &[&str]) {
    let mut out = Vec::new();
    for part in parts {
        out.extend(std::fs::read(tls.join(part)).expect("bundle part"));
    }
    std::fs::write(tls.join(format!("{name}.crt")), out).expect("bundle");
}
