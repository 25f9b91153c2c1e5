//! Following the other servers that share a PostgreSQL datastore.
//!
//! Every write another replica must see is announced by the datastore when it commits
//! ([`evergreen_store::Store::changes`]). A new revision (named certificates, a CA rotation) or new
//! cluster facts (service-account keys) reload the cluster from the datastore and wake the
//! agents watching this server; new CRLs are served at once, with the TLS configuration
//! that refuses the certificates they revoke.
use std::sync::Arc;

use evergreen_pki::service_keys::key_id;
use evergreen_store::Change;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::state::AppState;

pub(crate) async fn follow(
    state: Arc<AppState>,
    mut changes: Receiver<Change>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let change = tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => change,
                // Fell behind: whatever was missed, reloading everything covers it.
                Err(RecvError::Lagged(_)) => Change::Resync,
                Err(RecvError::Closed) => return,
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        if let Err(error) = apply(&state, change).await {
            tracing::warn!(
                error = format!("{error:#}"),
                ?change,
                "cannot apply a change made by another server; the next change or periodic check retries"
            );
        }
    }
}

async fn apply(state: &AppState, change: Change) -> anyhow::Result<()> {
    if change != Change::Crls {
        // A rotation handled by this process holds the lock until it is live here: waiting
        // for it keeps two rotations from being made live here at the same time.
        let _rotation = state.store.lock(evergreen_store::Job::Rotation).await?;
        let cluster = crate::bootstrap::load_cluster(state.store.as_ref(), &state.sealing).await?;
        if differs(&state.cluster.load(), &cluster) {
            tracing::info!("the cluster's CAs or keys were changed by another server; reloaded");
            crate::rotation::follow_rotation(state, cluster).await?;
        }
    }
    if change != Change::Crls {
        crate::api_cert::load(state).await?;
    }
    state.adopt_crls().await?;
    state.advance_revision(state.store.revision().await?);
    Ok(())
}

/// Whether the CAs or the service-account keys differ.
fn differs(current: &Cluster, stored: &Cluster) -> bool {
    let kids = |c: &Cluster| {
        c.service_keys
            .public_keys()
            .iter()
            .map(key_id)
            .collect::<Vec<_>>()
    };
    current.trust_bundle() != stored.trust_bundle() || kids(current) != kids(stored)
}
