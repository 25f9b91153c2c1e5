//! The real server in-process on 127.0.0.1 with a manual clock, real mTLS clients, and the
//! seed procedures run as written with openssl and curl. Every certificate the server
//! returns is verified by webpki and by `openssl verify`.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod api;
mod attacks;
mod changes;
mod kyma;
mod layers;
mod lifecycle;
mod named;
mod real_cas;
mod refusals;
mod revocation;
mod rotation;

use evergreen_api::client::ClientError;
use evergreen_pki::CertificateDer;
use evergreen_pki::certificate::CertificateInfo;
use evergreen_test_util::server::TestServer;

/// Verifies a returned client chain with webpki and openssl (the harness does it for
/// every enrollment too).
fn assert_client_chain(t: &TestServer, chain: &[CertificateDer<'static>]) {
    t.assert_client_chain(chain);
    assert!(!CertificateInfo::from_der(&chain[0]).unwrap().is_ca);
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
