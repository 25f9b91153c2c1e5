//! Helpers for Evergreen's tests: the real `openssl` command as an independent check of
//! everything Evergreen produces, and test PKI generated at test time.
#![forbid(unsafe_code)]

pub mod k3s;
pub mod postgres;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use evergreen_pki::{CertificateDer, Duration, KeyType, OffsetDateTime, pem};

/// The wall clock, for tests that hand certificates to programs which use it (`openssl
/// x509 -checkend`). Everything else takes a fixed time.
#[allow(
    clippy::disallowed_methods,
    reason = "tests compare with external tools' clocks"
)]
pub fn wall_clock() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// How long the server aggregates anonymous refusals from one source into one audit row
/// (`evergreen_server`'s audit window); tests that expect each refusal in full move the
/// clock this far between them.
pub const AUDIT_WINDOW: Duration = Duration::minutes(1);

/// A fixed instant for tests that need no wall clock.
pub fn fixed_now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("valid timestamp")
}

/// `openssl` arguments that make a P-256 key (`-out FILE` follows).
pub const OPENSSL_P256: [&str; 5] = [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
];

/// The `openssl` command: `EVERGREEN_OPENSSL` if set, else `openssl` on `PATH`. Interop
/// tests are never skipped: a machine without OpenSSL fails them, saying how to fix it.
#[derive(Debug, Clone)]
pub struct Openssl {
    program: PathBuf,
}

impl Openssl {
    pub fn find() -> Self {
        let program = std::env::var_os("EVERGREEN_OPENSSL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("openssl"));
        match Command::new(&program).arg("version").output() {
            Ok(out) if out.status.success() => Openssl { program },
            _ => panic!(
                "the openssl command is needed by the interop tests: install it \
                 (apt-get install openssl) or set EVERGREEN_OPENSSL; ./scripts/test does this"
            ),
        }
    }

    /// Runs openssl with `args`; returns the output whatever the exit status.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(&self.program)
            .args(args)
            .output()
            .expect("openssl runs")
    }

    /// Runs openssl and panics with its stderr unless it succeeds; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "openssl {:?} failed:\n{}{}",
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes a key with `keygen` (openssl arguments, `-out` is added) and a CSR for it the
    /// way the Kyma procedure does, `openssl req -new -sha256 -key KEY -subj SUBJ`, with
    /// `extra` arguments; returns the CSR's path. Both land in `dir` as `client.key` and
    /// `client.csr`.
    pub fn csr(&self, dir: &Path, keygen: &[&str], subj: &str, extra: &[&str]) -> PathBuf {
        let key = dir.join("client.key");
        let csr = dir.join("client.csr");
        let key_arg = key.display().to_string();
        let mut args: Vec<&str> = keygen.to_vec();
        args.extend(["-out", &key_arg]);
        self.ok(&args);
        let csr_arg = csr.display().to_string();
        let mut args = vec!["req", "-new", "-sha256", "-key", &key_arg, "-subj", subj];
        args.extend(extra);
        args.extend(["-out", &csr_arg]);
        self.ok(&args);
        csr
    }

    /// A self-signed P-256 certificate for `subj`, valid `days`, made the usual way
    /// (`openssl req -x509 -newkey ec … -nodes`) with `extra` arguments; written to `dir`
    /// as `key.pem` and `cert.pem`, whose paths it returns (key, certificate).
    pub fn self_signed(
        &self,
        dir: &Path,
        subj: &str,
        days: u32,
        extra: &[&str],
    ) -> (PathBuf, PathBuf) {
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let (key_arg, cert_arg, days) = (
            key.display().to_string(),
            cert.display().to_string(),
            days.to_string(),
        );
        let mut args = vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subj,
            "-days",
            &days,
        ];
        args.extend(extra);
        args.extend(["-keyout", &key_arg, "-out", &cert_arg]);
        self.ok(&args);
        (key, cert)
    }

    /// Whether `openssl crl -CAfile` accepts the CRL's signature by the CA bundle.
    pub fn crl_verifies(&self, dir: &Path, crl: &[u8], ca_bundle_pem: &str) -> bool {
        let crl_file = write(dir, "check.crl", pem::encode("X509 CRL", crl));
        let ca_file = write(dir, "check-ca.crt", ca_bundle_pem);
        let out = self.run([
            "crl",
            "-noout",
            "-in",
            crl_file.to_str().unwrap_or_default(),
            "-CAfile",
            ca_file.to_str().unwrap_or_default(),
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stderr).contains("verify OK")
    }

    /// `openssl verify -x509_strict` of `leaf` against `root` with `untrusted`
    /// intermediates, at `at` (seconds since 1970), for `purpose` (`sslserver`,
    /// `sslclient`, or `any`). Extra arguments (such as `-crl_check -CRLfile F`) go before
    /// the leaf. Returns OpenSSL's verdict text on failure.
    #[allow(clippy::too_many_arguments, reason = "one per openssl verify option")]
    pub fn verify(
        &self,
        dir: &Path,
        root: &[CertificateDer<'_>],
        untrusted: &[CertificateDer<'_>],
        leaf: &CertificateDer<'_>,
        purpose: &str,
        at: OffsetDateTime,
        extra: &[&str],
    ) -> Result<(), String> {
        let root_file = write(dir, "verify-root.pem", pem::encode_certificates(root));
        let leaf_file = write(dir, "verify-leaf.pem", pem::encode("CERTIFICATE", leaf));
        let mut args: Vec<String> = vec![
            "verify".into(),
            "-x509_strict".into(),
            "-attime".into(),
            at.unix_timestamp().to_string(),
            "-CAfile".into(),
            root_file.display().to_string(),
        ];
        if purpose != "any" {
            args.extend(["-purpose".into(), purpose.into()]);
        }
        if !untrusted.is_empty() {
            let file = write(
                dir,
                "verify-untrusted.pem",
                pem::encode_certificates(untrusted),
            );
            args.extend(["-untrusted".into(), file.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(leaf_file.display().to_string());
        let out = self.run(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && text.contains(": OK") {
            Ok(())
        } else {
            Err(text)
        }
    }
}

/// Verifies `chain` (leaf first) for `usage` against `root` at `at`, with webpki and with
/// `openssl verify`; panics with both verdicts' text on failure.
pub fn assert_chain(
    root: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
    usage: evergreen_pki::certificate::Usage,
    at: OffsetDateTime,
) {
    let roots = std::slice::from_ref(root);
    evergreen_pki::chain::verify(&chain[0], &chain[1..], roots, usage, &[], at)
        .expect("webpki verifies the chain");
    let purpose = match usage {
        evergreen_pki::certificate::Usage::ServerAuth => "sslserver",
        evergreen_pki::certificate::Usage::ClientAuth => "sslclient",
    };
    let dir = tempfile::tempdir().expect("tempdir");
    Openssl::find()
        .verify(dir.path(), roots, &chain[1..], &chain[0], purpose, at, &[])
        .expect("openssl verifies the chain");
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

pub use evergreen_pki::hierarchy::Hierarchy;

/// A test hierarchy (CAs valid for ten years from `now`).
pub fn hierarchy(key_type: KeyType, now: OffsetDateTime) -> Hierarchy {
    hierarchy_valid_for(key_type, now, Duration::days(3650))
}

pub fn hierarchy_valid_for(
    key_type: KeyType,
    now: OffsetDateTime,
    validity: Duration,
) -> Hierarchy {
    Hierarchy::generate("test", key_type, validity, now).expect("test hierarchy")
}
