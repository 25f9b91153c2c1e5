//! The server's background work: the periodic check, and the audit log's aggregated
//! refusals flushed as their windows close.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::state::AppState;
use crate::{audit, bootstrap, change, named};

/// The periodic work, also run at start and after a CA rotation: the server's own
/// certificates, CRLs, `secret` named certificates, and the renewal of every named
/// certificate the server issues.
///
/// Re-issues the server's own certificates when they are inside the renewal window or no
/// longer match (the new serving certificate is used by the next handshake), and re-signs
/// CRLs past half their validity.
pub(crate) async fn run_checks(state: &AppState) -> anyhow::Result<()> {
    let _job = state.store.lock(evergreen_store::Job::Checks).await?;
    let cluster = state.cluster.load_full();
    let mut revoked = Vec::new();
    for own in &state.own {
        if bootstrap::own_revoked(state.store.as_ref(), own).await? {
            revoked.push(own.name);
        }
    }
    let issued = state.own_due(&cluster, &revoked, "server")?;
    if !issued.is_empty() {
        let mut tx = state.store.begin().await?;
        let mut live = change::Live::default();
        state.stage_own(&issued, tx.as_mut(), &mut live).await?;
        state
            .go_live_and_commit("certificate.renew", tx, live)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        for own in &issued {
            tracing::info!(certificate = own.name, "re-issued");
        }
    }
    // A revocation written to the datastore by another process (`evergreen admin reissue`
    // while this server was unreachable) is published here.
    if state.crls_stale() || **state.revoked.load() != state.revoked_client_serials().await? {
        state
            .publish_crls()
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
    }
    state.flush_refusals().await?;
    named::refresh_secrets(state)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    named::renew_due(state)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    Ok(())
}

/// Runs [`run_checks`] every `interval` (at once first) and flushes aggregated refusals,
/// until `stop` turns true.
pub(crate) async fn periodic(
    state: Arc<AppState>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // The first check runs at once: named certificates due while the server was down
    // renew at start, not ten minutes later.
    let mut checks = tokio::time::interval(interval);
    let window = std::time::Duration::try_from(audit::WINDOW).unwrap_or(interval);
    let mut refusals = tokio::time::interval_at(tokio::time::Instant::now() + window, window);
    loop {
        tokio::select! {
            _ = checks.tick() => {}
            _ = refusals.tick() => {
                if let Err(error) = state.flush_refusals().await {
                    tracing::error!(%error, "cannot write the audit log");
                }
                continue;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        if let Err(error) = run_checks(&state).await {
            tracing::error!(
                error = format!("{error:#}"),
                "periodic check failed; retrying at the next one"
            );
        }
    }
}
