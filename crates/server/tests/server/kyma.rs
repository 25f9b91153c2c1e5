//! The Kyma client-certificate procedure (`shared/seeds/001_…`) run as written: openssl
//! makes the key and CSRs, curl talks to the server. Two adaptations, as noted in the
//! README: `base64 -w0` keeps the CSR on one line for the shell, and OpenSSL 3 prints the
//! subject as `subject=CN = …`, so it is read with `-nameopt compat`.
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::pem::parse_certificates;
use evergreen_test_util::Openssl;
use evergreen_test_util::server::TestServer;
use serde_json::Value;

use crate::assert_client_chain;

pub(crate) async fn sh(dir: &std::path::Path, script: &str, env: &[(&str, &str)]) -> String {
    let out = tokio::process::Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "script failed:\n{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn decode_chain(json: &Value, field: &str) -> Vec<evergreen_pki::CertificateDer<'static>> {
    let pem = evergreen_api::decode_pem(json[field].as_str().unwrap()).unwrap();
    parse_certificates(field, &pem).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kyma_procedure_works_with_openssl_and_curl() {
    let t = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let subject = "CN=kyma-app, O=Organization, OU=OrgUnit, L=Waldorf, ST=Waldorf, C=DE";
    let token = t.app_token(&subject.parse().unwrap()).await;
    let ca = t.data_dir.join("ca.crt");
    let env = [
        ("URL", t.url()),
        ("TOKEN", token.as_str()),
        ("CA", ca.to_str().unwrap()),
    ];
    Openssl::find().csr(
        dir.path(),
        &evergreen_test_util::OPENSSL_P256,
        "/CN=kyma-app/O=Organization/OU=OrgUnit/L=Waldorf/ST=Waldorf/C=DE",
        &[],
    );

    // Get the first certificate with a join token.
    let enrolled = sh(
        dir.path(),
        r#"curl -sS --fail-with-body --cacert "$CA" -X POST "$URL/v1/enroll" \
             -d '{"token":"'"$TOKEN"'","csr":"'$(base64 -w0 client.csr)'"}'"#,
        &env,
    )
    .await;
    let enrolled: Value = serde_json::from_str(&enrolled).unwrap();
    let crt = evergreen_api::decode_pem(enrolled["crt"].as_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("app.crt"), &crt).unwrap();
    let first = decode_chain(&enrolled, "crt");
    assert_client_chain(&t, &first);
    let info = CertificateInfo::from_der(&first[0]).unwrap();
    assert_eq!(
        (info.not_after - info.not_before - evergreen_pki::authority::BACKDATE).whole_days(),
        92
    );

    // The seed's renewal, step by step.
    let renewed = sh(
        dir.path(),
        r#"export SUBJECT=$(openssl x509 -noout -subject -nameopt compat -in app.crt | sed 's/^subject=//')
           openssl req -new -sha256 -out renewal.csr -key client.key -subj "$SUBJECT"
           curl -sS --fail-with-body --cacert "$CA" -X POST "$URL/v1/applications/certificates/renewals" \
                -d '{"csr":"'$(cat renewal.csr | base64 -w0)'"}' --cert app.crt --key client.key"#,
        &env,
    )
    .await;
    let renewed: Value = serde_json::from_str(&renewed).unwrap();
    let chain = decode_chain(&renewed, "crt");
    let leaf = decode_chain(&renewed, "clientCrt");
    let ca_chain = decode_chain(&renewed, "caCrt");
    assert_eq!(chain[0], leaf[0], "crt starts with clientCrt");
    assert_eq!(chain[1..], ca_chain[..], "crt continues with caCrt");
    assert_client_chain(&t, &chain);
    let renewed_info = CertificateInfo::from_der(&chain[0]).unwrap();
    assert_eq!(renewed_info.subject, info.subject);
    assert_eq!(
        renewed_info.public_key, info.public_key,
        "the same key was renewed"
    );
    assert_ne!(renewed_info.serial, info.serial);
    let record = t
        .server
        .state
        .store
        .certificate_by_serial(&renewed_info.serial_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.renewed_from, Some(info.serial_hex()));

    // GNU base64 wraps at 76 columns: the CSR quoted as `"$(base64 renewal.csr)"` carries raw
    // line breaks inside the JSON string, and is read as the client means it.
    let raw = sh(
        dir.path(),
        r#"curl -sS --fail-with-body --cacert "$CA" -X POST "$URL/v1/applications/certificates/renewals" \
                -d '{"csr":"'"$(base64 renewal.csr)"'"}' --cert app.crt --key client.key -o /dev/null -w '%{http_code}'"#,
        &env,
    )
    .await;
    assert_eq!(raw, "201");

    // base64 with escaped line breaks inside the JSON is accepted too.
    let wrapped = sh(
        dir.path(),
        r#"printf '{"csr":"%s"}' "$(base64 renewal.csr | sed 's/$/\\n/' | tr -d '\n')" > body.json
           curl -sS --fail-with-body --cacert "$CA" -X POST "$URL/v1/applications/certificates/renewals" \
                --data-binary @body.json --cert app.crt --key client.key -o /dev/null -w '%{http_code}'"#,
        &env,
    )
    .await;
    assert_eq!(wrapped, "201");

    // The holder revokes its certificate (Kyma's revocation endpoint); from then on the
    // server refuses it at the TLS handshake, before any HTTP: curl reports the alert.
    let revoked = sh(
        dir.path(),
        r#"curl -sS --fail-with-body --cacert "$CA" -X POST "$URL/v1/applications/certificates/revocations" \
                --cert app.crt --key client.key -o /dev/null -w '%{http_code}'"#,
        &env,
    )
    .await;
    assert_eq!(revoked, "201");
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(
            r#"curl -sS --cacert "$CA" -X POST "$URL/v1/applications/certificates/renewals" \
                    -d '{"csr":"'$(base64 -w0 renewal.csr)'"}' --cert app.crt --key client.key"#,
        )
        .current_dir(dir.path())
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{said}");
    assert!(said.contains("alert certificate revoked"), "{said}");
}
