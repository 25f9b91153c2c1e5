//! The real server in-process on 127.0.0.1 with a manual clock, real mTLS clients, and the
//! seed procedures run as written with openssl and curl. Every certificate the server
//! returns is verified by webpki and by `openssl verify`.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod api;
mod kyma;
mod lifecycle;
mod refusals;
mod revocation;

use evergreen_api::Clock;
use evergreen_api::client::ClientError;
use evergreen_pki::CertificateDer;
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_test_util::Openssl;
use evergreen_test_util::server::TestServer;

/// Verifies a client certificate chain (leaf first) the server returned, with webpki and
/// openssl, against the server's root at the server's time.
fn assert_client_chain(t: &TestServer, chain: &[CertificateDer<'static>]) {
    let now = t.clock.now();
    let root = [t.root()];
    evergreen_pki::chain::verify(&chain[0], &chain[1..], &root, Usage::ClientAuth, &[], now)
        .expect("webpki verifies the returned chain");
    let dir = tempfile::tempdir().unwrap();
    Openssl::find()
        .verify(
            dir.path(),
            &root,
            &chain[1..],
            &chain[0],
            "sslclient",
            now,
            &[],
        )
        .expect("openssl verifies the returned chain");
    let info = CertificateInfo::from_der(&chain[0]).unwrap();
    assert!(!info.is_ca);
}

/// The error message of a refused request, asserting its status.
fn refusal(result: Result<impl std::fmt::Debug, ClientError>, code: u16) -> String {
    match result {
        Err(ClientError::Status { code: c, error }) if c == code => error,
        other => panic!("expected a {code} refusal, got {other:?}"),
    }
}

/// Asserts the newest audit entries hold a refusal of `action` whose detail contains
/// `text`.
async fn assert_audited_refusal(t: &TestServer, action: &str, text: &str) {
    let log = t.server.state.store.audit_log(50).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.outcome == "refused" && e.action == action && e.detail.contains(text)),
        "no audited refusal of {action} containing {text:?} in {log:#?}"
    );
}
