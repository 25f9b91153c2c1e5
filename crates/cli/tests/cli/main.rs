//! Integration tests of the `evergreen` binary: the real executable, real files, and the
//! `openssl` command as an independent check of what it writes.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]
mod attacks;
mod bench;
mod ca_generate;
mod ca_sign;
mod certificate_check;
mod server;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `evergreen` with `args` and no standard input.
fn evergreen<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_evergreen"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("evergreen runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `evergreen ca generate --out DIR` and checks it succeeded.
fn generate(dir: &Path) {
    let out = evergreen(["ca", "generate", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every file in `dir` with its contents, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn help_teaches_and_version_answers() {
    let out = evergreen(["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("ca generate --out ./pki") && text.contains("certificate"),
        "{text}"
    );
    let out = evergreen(["ca", "generate", "--help"]);
    let text = stdout(&out);
    for expected in [
        "root-ca.crt",
        "service.key",
        "0600",
        "--key-type",
        "Examples:",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // Long help keeps its layout: the file table and lists stay one entry per line.
    let lines = |args: &[&str]| -> Vec<String> {
        stdout(&evergreen(args))
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let generate = lines(&["ca", "generate", "--help"]);
    assert!(
        generate
            .iter()
            .any(|l| l.starts_with("  server-ca.crt server-ca.key")),
        "{generate:#?}"
    );
    let rotate = lines(&["certificate", "rotate-ca", "--help"]);
    assert!(
        rotate
            .iter()
            .any(|l| l.starts_with("  - each new CA bundle")),
        "{rotate:#?}"
    );
    let agent = lines(&["agent", "--help"]);
    assert!(agent.iter().any(|l| l == "  [[certificate]]"), "{agent:#?}");
    assert!(
        agent.iter().any(|l| l.contains("verify_timeout")),
        "{agent:#?}"
    );
    let renew = lines(&["renew", "--help"]);
    assert!(renew.iter().any(|l| l.contains("--daemon")), "{renew:#?}");
    assert!(renew.iter().any(|l| l.contains("for ever")), "{renew:#?}");
    let server = lines(&["server", "--help"]);
    assert!(server.iter().any(|l| l.contains("SIGTERM")), "{server:#?}");
    // Errors name the flags as the command calls them.
    let empty = tempfile::tempdir().unwrap();
    let out = evergreen([
        "certificate",
        "revoke",
        "--serial",
        "01",
        "--data-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("pass --admin-cert FILE"),
        "{}",
        stderr(&out)
    );
    let out = evergreen(["ca", "sign", "--help"]);
    assert!(stdout(&out).contains("openssl req"), "{}", stdout(&out));
    let out = evergreen(["--version"]);
    assert!(stdout(&out).starts_with("evergreen "), "{}", stdout(&out));
}
