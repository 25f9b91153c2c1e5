use std::path::Path;

use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::pem::{encode, parse_certificates, parse_csr};
use evergreen_test_util::{Openssl, wall_clock};

use crate::{evergreen, generate, snapshot, stderr};

/// A P-256 key and CSR made by openssl as the Kyma procedure does.
fn kyma_csr(dir: &Path, subj: &str) -> std::path::PathBuf {
    Openssl::find().csr(dir, &evergreen_test_util::OPENSSL_P256, subj, &[])
}

fn sign(
    pki: &Path,
    ca: &str,
    csr: &Path,
    profile: &str,
    out: Option<&Path>,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "ca",
        "sign",
        "--ca-dir",
        pki.to_str().unwrap(),
        "--ca",
        ca,
        "--csr",
        csr.to_str().unwrap(),
        "--profile",
        profile,
    ];
    if let Some(out) = out {
        args.extend(["--out", out.to_str().unwrap()]);
    }
    args.extend(extra);
    evergreen(args)
}

#[test]
fn a_kyma_style_csr_is_signed_with_exactly_its_key_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    generate(&pki);
    let csr = kyma_csr(
        tmp.path(),
        "/CN=kyma-app/O=Organization/OU=OrgUnit/L=Waldorf/ST=Waldorf/C=DE",
    );
    let crt = tmp.path().join("app.crt");
    let out = sign(
        &pki,
        "client-ca",
        &csr,
        "client",
        Some(&crt),
        &["--days", "92"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Signed client certificate for CN=kyma-app"),
        "{}",
        stderr(&out)
    );

    let chain = parse_certificates("app.crt", &std::fs::read(&crt).unwrap()).unwrap();
    assert_eq!(chain.len(), 3, "leaf, client CA, root");
    let info = CertificateInfo::from_der(&chain[0]).unwrap();
    assert_eq!(
        info.subject.to_string(),
        "CN=kyma-app, O=Organization, OU=OrgUnit, L=Waldorf, ST=Waldorf, C=DE"
    );
    assert_eq!((info.not_after - info.not_before).whole_days(), 92);
    assert_eq!(info.extended_usages, [Usage::ClientAuth]);

    let openssl = Openssl::find();
    let csr_key = openssl.ok(["req", "-in", csr.to_str().unwrap(), "-pubkey", "-noout"]);
    let crt_key = openssl.ok(["x509", "-in", crt.to_str().unwrap(), "-pubkey", "-noout"]);
    assert_eq!(
        crt_key, csr_key,
        "the certificate carries exactly the CSR's public key"
    );
    let root =
        parse_certificates("root", &std::fs::read(pki.join("root-ca.crt")).unwrap()).unwrap();
    evergreen_pki::chain::verify(
        &chain[0],
        &chain[1..],
        &root,
        Usage::ClientAuth,
        &[],
        wall_clock(),
    )
    .unwrap();
    openssl
        .verify(
            tmp.path(),
            &root,
            &chain[1..2],
            &chain[0],
            "sslclient",
            wall_clock(),
            &[],
        )
        .unwrap();
}

#[test]
fn a_server_certificate_takes_its_names_from_san_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    generate(&pki);
    let csr = kyma_csr(tmp.path(), "/CN=web");
    let crt = tmp.path().join("web.crt");
    let out = sign(&pki, "server-ca", &csr, "server", Some(&crt), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs at least one subject alternative name"),
        "{}",
        stderr(&out)
    );
    assert!(!crt.exists());

    let out = sign(
        &pki,
        "server-ca",
        &csr,
        "server",
        Some(&crt),
        &["--san", "web.example", "--san", "10.0.0.5"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let chain = parse_certificates("web.crt", &std::fs::read(&crt).unwrap()).unwrap();
    let info = CertificateInfo::from_der(&chain[0]).unwrap();
    let sans: Vec<_> = info
        .subject_alt_names
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(sans, ["DNS:web.example", "IP:10.0.0.5"]);
    let root =
        parse_certificates("root", &std::fs::read(pki.join("root-ca.crt")).unwrap()).unwrap();
    Openssl::find()
        .verify(
            tmp.path(),
            &root,
            &chain[1..2],
            &chain[0],
            "sslserver",
            wall_clock(),
            &[],
        )
        .unwrap();

    let out = sign(
        &pki,
        "server-ca",
        &csr,
        "server",
        None,
        &["--san", "not a name"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a valid DNS name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    generate(&pki);
    let pki_before = snapshot(&pki);
    let csr = kyma_csr(tmp.path(), "/CN=app/O=team");
    let crt = tmp.path().join("out.crt");
    std::fs::write(&crt, "previous contents").unwrap();

    let csr_pem = std::fs::read(&csr).unwrap();
    let der = parse_csr("csr", &csr_pem).unwrap().as_ref().to_vec();
    let mut broken = der.clone();
    *broken.last_mut().unwrap() ^= 0x55;
    let broken_csr = tmp.path().join("broken.csr");
    std::fs::write(&broken_csr, encode("CERTIFICATE REQUEST", &broken)).unwrap();
    let truncated_csr = tmp.path().join("truncated.csr");
    std::fs::write(&truncated_csr, &csr_pem[..csr_pem.len() / 2]).unwrap();
    let mismatched = tmp.path().join("mismatched");
    std::fs::create_dir(&mismatched).unwrap();
    std::fs::copy(pki.join("client-ca.crt"), mismatched.join("client-ca.crt")).unwrap();
    std::fs::copy(pki.join("server-ca.key"), mismatched.join("client-ca.key")).unwrap();

    let cases: [(&Path, &str, &Path, &str); 5] = [
        (&pki, "client-ca", &broken_csr, "signature does not verify"),
        (&pki, "client-ca", &truncated_csr, "truncated"),
        (
            &mismatched,
            "client-ca",
            &csr,
            "private key does not match the certificate",
        ),
        (
            &pki,
            "kubelet-ca",
            &csr,
            "available: client-ca, peer-ca, root-ca, server-ca",
        ),
        (
            &pki,
            "client-ca",
            &tmp.path().join("missing.csr"),
            "cannot open",
        ),
    ];
    for (dir, ca, csr, expected) in cases {
        let out = sign(dir, ca, csr, "client", Some(&crt), &[]);
        assert_eq!(out.status.code(), Some(1), "{expected}");
        assert!(
            stderr(&out).contains(expected),
            "expected {expected:?} in:\n{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&crt).unwrap(), "previous contents");
    }
    assert_eq!(snapshot(&pki), pki_before);
    let leftovers: Vec<_> = snapshot(tmp.path())
        .into_iter()
        .filter(|(n, _)| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files are left behind");
}

#[test]
fn the_chain_goes_to_standard_output_without_out() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    generate(&pki);
    let csr = kyma_csr(tmp.path(), "/CN=piped");
    let out = sign(&pki, "peer-ca", &csr, "peer", None, &["--san", "peer-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let chain = parse_certificates("stdout", &out.stdout).unwrap();
    assert_eq!(chain.len(), 3);
    let info = CertificateInfo::from_der(&chain[0]).unwrap();
    assert_eq!(info.extended_usages, [Usage::ServerAuth, Usage::ClientAuth]);
}
