//! The API listener's provided certificate (Redis Enterprise's `api` and `cm`): one of the
//! company's CA, for browsers, scripts and monitoring that trust that CA. Evergreen's own
//! agents and CLI offer the ALPN protocol `evergreen/1` and keep getting the cluster's
//! serving certificate, the one they pin; everyone else gets the provided one. It is kept
//! sealed in the datastore, so a restart and every replica serve it too.
use std::sync::Arc;

use evergreen_api::Replacement;
use evergreen_pki::certificate::{CertificateInfo, SubjectAltName, Usage};
use evergreen_pki::{PrivateKey, pem};

use crate::error::{ApiError, Reason};
use crate::state::AppState;
use crate::text::rfc3339;

/// The datastore key of the sealed certificate and key (empty: none provided).
pub(crate) const META: &str = "api-certificate";
const AAD: &[u8] = b"evergreen:api-certificate";
const ACTION: &str = "certificate.set";

/// The names the certificate must cover: those the server is reached by from elsewhere —
/// its host name and every `--san` — not `localhost` or loopback addresses.
fn required_names(state: &AppState) -> Vec<SubjectAltName> {
    state
        .own
        .iter()
        .filter(|own| own.role == evergreen_api::Role::Server)
        .flat_map(|own| own.sans.iter().cloned())
        .filter(|san| match san {
            SubjectAltName::Dns(name) => name != "localhost",
            SubjectAltName::Ip(ip) => !ip.is_loopback(),
            _ => true,
        })
        .collect()
}

/// Whether a certificate naming `names` is valid for `wanted` (a `*.` wildcard covers one
/// label).
fn covers(names: &[SubjectAltName], wanted: &SubjectAltName) -> bool {
    names.iter().any(|name| match (name, wanted) {
        (SubjectAltName::Dns(have), SubjectAltName::Dns(want)) => {
            have.eq_ignore_ascii_case(want)
                || have.strip_prefix("*.").is_some_and(|suffix| {
                    want.split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix))
                })
        }
        (SubjectAltName::Ip(have), SubjectAltName::Ip(want)) => have == want,
        _ => false,
    })
}

/// Checks a provided API certificate and serves it from the next handshake, recorded in
/// the same change.
pub(crate) async fn set(
    state: &AppState,
    actor: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Replacement, ApiError> {
    let bad = |message: String| ApiError::bad_request(message).target("server");
    let chain = pem::parse_certificates("the certificate of server", cert_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let key = PrivateKey::from_pem("the key of server", key_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let info = CertificateInfo::from_der(&chain[0]).map_err(|e| bad(e.to_string()))?;
    if !key
        .matches_certificate(&chain[0])
        .map_err(|e| bad(e.to_string()))?
    {
        return Err(bad(format!(
            "the key of server does not match its certificate {}",
            info.subject
        )));
    }
    let now = state.now();
    if info.not_after < now || info.not_before > now {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            format!(
                "the certificate of server is valid from {} to {}, not now",
                rfc3339(info.not_before.unix_timestamp()),
                rfc3339(info.not_after.unix_timestamp())
            ),
        )
        .target("server"));
    }
    let for_servers =
        info.extended_usages.is_empty() || info.extended_usages.contains(&Usage::ServerAuth);
    if !for_servers {
        return Err(bad(format!(
            "the certificate of server ({}) is not for TLS servers (its extended key usage lacks serverAuth)",
            info.subject
        )));
    }
    let missing: Vec<String> = required_names(state)
        .iter()
        .filter(|wanted| !covers(&info.subject_alt_names, wanted))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "the certificate of server does not cover {} (clients reach the server by these names; start the server with --san for the names it is reached by); nothing was changed",
            missing.join(", ")
        ))
        .reason(Reason::Names));
    }
    let certified = crate::tls::certified_key(chain.clone(), key.der())
        .map_err(|e| bad(format!("the key of server cannot sign: {e}")))?;
    let mut text = pem::encode_certificates(&chain);
    text.push_str(&key.to_pem());
    let sealed = state
        .sealing
        .seal(text.as_bytes(), AAD)
        .map_err(ApiError::internal)?;
    let mut tx = state.store.begin().await?;
    tx.put_meta(META, &sealed).await?;
    tx.audit(&crate::audit::event(
        now,
        actor,
        ACTION,
        "server",
        "ok",
        &format!(
            "the API listener serves {} (issuer {}, sha256:{}) to clients other than Evergreen's",
            info.subject, info.issuer, info.fingerprint
        ),
    ))
    .await?;
    let live = crate::change::Live {
        api: Some(Some(Arc::new(certified))),
        ..Default::default()
    };
    state.go_live_and_commit(ACTION, tx, live).await?;
    Ok(Replacement {
        name: "server".into(),
        version: 1,
        fingerprint: Some(info.fingerprint.to_string()),
        not_after: Some(rfc3339(info.not_after.unix_timestamp())),
        clients_must_update_trust: true,
        trust: format!(
            "the API listener now serves this certificate to browsers and other clients, which must trust its issuer {}; Evergreen's agents and CLI keep the cluster's serving certificate",
            info.issuer
        ),
    })
}

/// Goes back to serving the cluster's certificate to every client.
pub(crate) async fn clear(state: &AppState, actor: &str) -> Result<Replacement, ApiError> {
    let mut tx = state.store.begin().await?;
    tx.put_meta(META, b"").await?;
    tx.audit(&crate::audit::event(
        state.now(),
        actor,
        "certificate.type",
        "server",
        "ok",
        "the API listener serves the cluster's serving certificate to every client",
    ))
    .await?;
    let live = crate::change::Live {
        api: Some(None),
        ..Default::default()
    };
    state
        .go_live_and_commit("certificate.type", tx, live)
        .await?;
    Ok(Replacement {
        name: "server".into(),
        version: 1,
        fingerprint: None,
        not_after: None,
        clients_must_update_trust: true,
        trust: "the API listener serves the cluster's serving certificate to every client again; they must trust the cluster's CA (ca.crt)".into(),
    })
}

/// Serves the provided API certificate the datastore holds (or none): at start, and when
/// another replica changed it.
pub(crate) async fn load(state: &AppState) -> anyhow::Result<()> {
    let provided = match state.store.get_meta(META).await? {
        Some(sealed) if !sealed.is_empty() => {
            let text = state.sealing.open(&sealed, AAD)?;
            let chain = pem::parse_certificates("the API certificate", &text)?;
            let key = PrivateKey::from_pem("the API certificate's key", &text)?;
            Some(Arc::new(crate::tls::certified_key(chain, key.der())?))
        }
        _ => None,
    };
    state.serving.swap_provided(provided);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let names: Vec<SubjectAltName> = vec!["*.example.com".parse().unwrap()];
        assert!(covers(&names, &"evergreen.example.com".parse().unwrap()));
        assert!(covers(&names, &"EVERGREEN.example.com".parse().unwrap()));
        assert!(!covers(&names, &"a.b.example.com".parse().unwrap()));
        assert!(!covers(&names, &"example.com".parse().unwrap()));
        let ip: Vec<SubjectAltName> = vec!["10.0.0.1".parse().unwrap()];
        assert!(covers(&ip, &"10.0.0.1".parse().unwrap()));
        assert!(!covers(&ip, &"10.0.0.2".parse().unwrap()));
    }
}
