use std::path::Path;

use evergreen_pki::pem::encode;
use evergreen_pki::{Duration, KeyType, OffsetDateTime, Profile};
use evergreen_test_util::{Openssl, wall_clock};
use serde_json::Value;

use crate::{evergreen, generate, stderr, stdout};

fn write_leaf(dir: &Path, name: &str, issued_at: OffsetDateTime, days: i64) {
    let h =
        evergreen_test_util::hierarchy_valid_for(KeyType::EcP256, issued_at, Duration::days(3650));
    let key = evergreen_pki::PrivateKey::generate(KeyType::EcP256).unwrap();
    let request = evergreen_pki::IssueRequest {
        subject: evergreen_pki::DistinguishedName::common_name(name),
        subject_alt_names: vec![],
        public_key: key.public_key(),
        profile: Profile::Client,
        validity: Duration::days(days),
    };
    let leaf = h.client.issue(&request, issued_at).unwrap();
    std::fs::write(
        dir.join(format!("{name}.crt")),
        encode("CERTIFICATE", &leaf.der),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.to_pem()).unwrap();
}

/// `evergreen certificate check --path PATH EXTRA…`.
fn check(path: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["certificate", "check", "--path", path];
    args.extend(extra);
    evergreen(args)
}

fn check_json(path: &Path) -> Vec<Value> {
    let out = check(path.to_str().unwrap(), &["-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn every_certificate_of_a_generated_hierarchy_is_ok() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path());
    let out = check(tmp.path().to_str().unwrap(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<_> = text.lines().collect();
    for column in [
        "FILENAME",
        "SUBJECT",
        "USAGES",
        "EXPIRES",
        "RESIDUAL TIME",
        "STATUS",
    ] {
        assert!(lines[0].contains(column), "{column} in {}", lines[0]);
    }
    assert_eq!(
        lines.len(),
        1 + 7,
        "root + 3 role CAs each with the root: {text}"
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.ends_with("OK") && l.contains("CertSign")),
        "{text}"
    );
    let rows = check_json(tmp.path());
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[0]["filename"], "client-ca.crt");
    assert_eq!(rows[0]["usages"], serde_json::json!(["CertSign"]));
    assert!(rows[0]["sha256"].as_str().unwrap().len() == 64);
}

#[test]
fn status_follows_the_renewal_window_and_agrees_with_openssl_checkend() {
    let tmp = tempfile::tempdir().unwrap();
    let now = wall_clock();
    write_leaf(tmp.path(), "fresh", now, 365);
    write_leaf(tmp.path(), "due", now - Duration::days(300), 365);
    write_leaf(tmp.path(), "expired", now - Duration::days(400), 365);
    write_leaf(tmp.path(), "future", now + Duration::days(30), 365);
    let rows = check_json(tmp.path());
    let status = |file: &str| {
        rows.iter()
            .find(|r| r["filename"] == file)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(rows.len(), 4, "keys are skipped");
    assert_eq!(status("fresh.crt"), "OK");
    assert_eq!(status("due.crt"), "WARNING");
    assert_eq!(status("expired.crt"), "EXPIRED");
    assert_eq!(status("future.crt"), "NOT YET VALID");

    let openssl = Openssl::find();
    let checkend = |name: &str, days: i64| {
        let file = tmp.path().join(name);
        openssl
            .run([
                "x509",
                "-noout",
                "-in",
                file.to_str().unwrap(),
                "-checkend",
                &(days * 86400).to_string(),
            ])
            .status
            .success()
    };
    assert!(checkend("fresh.crt", 90));
    assert!(checkend("due.crt", 0) && !checkend("due.crt", 90));
    assert!(!checkend("expired.crt", 0));

    // A shorter window moves "due" back to OK.
    let out = check(
        tmp.path().join("due.crt").to_str().unwrap(),
        &["--renew-before", "30"],
    );
    assert!(
        stdout(&out).lines().nth(1).unwrap().ends_with("OK"),
        "{}",
        stdout(&out)
    );
    let out = check(tmp.path().join("expired.crt").to_str().unwrap(), &[]);
    let row = stdout(&out).lines().nth(1).unwrap().to_owned();
    assert!(
        row.contains(" -") && row.contains("days") && row.ends_with("EXPIRED"),
        "{row}"
    );
}

#[test]
fn yaml_output_holds_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    write_leaf(tmp.path(), "one", wall_clock(), 365);
    let out = check(tmp.path().to_str().unwrap(), &["-o", "yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("- "), "{text}");
    assert!(
        text.contains("  status: \"OK\"") && text.contains("filename: \"one.crt\""),
        "{text}"
    );
    assert!(text.contains("  usages:\n    - \"ClientAuth\""), "{text}");
}

#[test]
fn bad_files_and_flags_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    write_leaf(tmp.path(), "good", wall_clock(), 365);
    let pem = std::fs::read_to_string(tmp.path().join("good.crt")).unwrap();
    std::fs::write(tmp.path().join("cut.crt"), &pem[..pem.len() / 2]).unwrap();
    let out = check(tmp.path().to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("good.crt"),
        "the good file is still listed"
    );
    assert!(
        stderr(&out).contains("cut.crt") && stderr(&out).contains("truncated"),
        "{}",
        stderr(&out)
    );

    let out = check(tmp.path().to_str().unwrap(), &["-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'xml'") && stderr(&out).contains("table, json, yaml"),
        "{}",
        stderr(&out)
    );

    let empty = tempfile::tempdir().unwrap();
    let out = check(empty.path().to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no certificates found"),
        "{}",
        stderr(&out)
    );

    let out = check(tmp.path().join("good.key").to_str().unwrap(), &[]);
    assert!(
        stderr(&out).contains("holds no certificate"),
        "{}",
        stderr(&out)
    );
    let out = check(tmp.path().join("nope").to_str().unwrap(), &[]);
    assert!(
        stderr(&out).contains("cannot read") && stderr(&out).contains("nope"),
        "{}",
        stderr(&out)
    );
}
