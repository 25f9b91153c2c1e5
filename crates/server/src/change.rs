//! One change to the cluster PKI, all or nothing.
//!
//! Every change — a first start, a CA or key rotation, a named certificate set, rotated or
//! relabelled, the server's own certificates renewed — is prepared in full before anything
//! shared is touched: certificates issued and CRLs signed in memory, keys sealed, files
//! written under temporary names and flushed. Then its writes go into one datastore
//! transaction, it goes live in this process ([`Live`]: the new CAs, CRLs and serving
//! certificate swapped in, the staged files moved into place with the ones they replace
//! kept aside), and the transaction commits last. A failure at any step drops the
//! transaction and undoes going live, so the datastore, the files and what is served are
//! exactly as they were; the error names the step.
//!
//! Going live comes before the commit, not after, so that no state exists in which the
//! datastore holds a change this process does not serve (a restart would otherwise be the
//! only way to finish it).
use std::sync::Arc;

use evergreen_api::files::{Applied, Staging};
use evergreen_store::Transaction;

use crate::error::ApiError;
use crate::state::{AppState, Cluster, Crls, Revoked};

/// Test-only failure injection: with the `failpoints` feature, a test arms a named step of
/// a change, and the change fails there as if that step had failed.
#[derive(Debug, Default)]
pub struct Failpoints {
    #[cfg(feature = "failpoints")]
    armed: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Failpoints {
    /// Fails once if `step` is armed.
    pub fn check(&self, step: &str) -> anyhow::Result<()> {
        #[cfg(feature = "failpoints")]
        if self
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(step)
        {
            anyhow::bail!("failpoint {step} was hit");
        }
        let _ = step;
        Ok(())
    }

    /// Arms `step` (`ca.rotate:crls-signed`, …) to fail the next time it is reached.
    #[cfg(feature = "failpoints")]
    pub fn arm(&self, step: &str) {
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(step.to_owned());
    }
}

/// What a change makes live in this process. Everything in it is built before the swap,
/// so the swap itself only moves pointers and renames files.
#[derive(Debug, Default)]
pub struct Live {
    pub cluster: Option<Arc<Cluster>>,
    /// The CRLs to serve and the revoked serials to refuse at the handshake.
    pub crls: Option<(Crls, Revoked)>,
    pub serving: Option<Arc<rustls::sign::CertifiedKey>>,
    /// The provided API certificate to serve (`Some(None)`: none any more).
    pub api: Option<Option<Arc<rustls::sign::CertifiedKey>>>,
    pub files: Staging,
}

/// What going live replaced, to put back unless the change commits.
#[derive(Debug)]
pub struct Undo {
    cluster: Option<Arc<Cluster>>,
    crls: Option<(Arc<Crls>, Arc<Revoked>)>,
    tls: Option<Arc<rustls::ServerConfig>>,
    serving: Option<Arc<rustls::sign::CertifiedKey>>,
    api: Option<Option<Arc<rustls::sign::CertifiedKey>>>,
    files: Option<Applied>,
}

impl AppState {
    /// Makes `live` what this process serves; returns how to undo it. What can fail (the
    /// TLS configuration, moving files) is done before anything is swapped.
    pub(crate) fn go_live(&self, live: Live) -> anyhow::Result<Undo> {
        let tls = if live.cluster.is_some() || live.crls.is_some() {
            let cluster = live
                .cluster
                .clone()
                .unwrap_or_else(|| self.cluster.load_full());
            let revoked = match &live.crls {
                Some((_, revoked)) => revoked.clone(),
                None => (**self.revoked.load()).clone(),
            };
            Some(crate::tls::server_config(self, &cluster, &revoked)?)
        } else {
            None
        };
        let files = if live.files.is_empty() {
            None
        } else {
            Some(live.files.apply()?)
        };
        Ok(Undo {
            cluster: live.cluster.map(|c| self.cluster.swap(c)),
            serving: live.serving.map(|s| self.serving.swap(s)),
            api: live.api.map(|a| self.serving.swap_provided(a)),
            crls: live.crls.map(|(crls, revoked)| {
                (
                    self.crls.swap(Arc::new(crls)),
                    self.revoked.swap(Arc::new(revoked)),
                )
            }),
            tls: tls.map(|config| self.tls.swap(Arc::new(config))),
            files,
        })
    }

    /// Goes live with no transaction to wait for (a change another replica committed):
    /// the files stay.
    pub(crate) fn go_live_kept(&self, live: Live) -> anyhow::Result<()> {
        if let Some(files) = self.go_live(live)?.files {
            files.keep();
        }
        Ok(())
    }

    /// Puts back what [`AppState::go_live`] replaced.
    pub(crate) fn undo(&self, undo: Undo) {
        if let Some(cluster) = undo.cluster {
            self.cluster.store(cluster);
        }
        if let Some(serving) = undo.serving {
            self.serving.store(serving);
        }
        if let Some(api) = undo.api {
            self.serving.swap_provided(api);
        }
        if let Some((crls, revoked)) = undo.crls {
            self.crls.store(crls);
            self.revoked.store(revoked);
        }
        if let Some(tls) = undo.tls {
            self.tls.store(tls);
        }
        // Dropping the applied files moves the replaced ones back.
        drop(undo.files);
    }

    /// The last steps of every change: goes live, passes the change's last failpoint,
    /// commits; on any failure undoes going live (the transaction is dropped). `action`
    /// names the change in the error.
    pub(crate) async fn go_live_and_commit(
        &self,
        action: &str,
        tx: Box<dyn Transaction>,
        live: Live,
    ) -> Result<(), ApiError> {
        let undo = self
            .go_live(live)
            .map_err(|e| failed(action, "going live", e))?;
        let committed = match self.failpoints.check(&format!("{action}:live")) {
            Ok(()) => tx
                .commit()
                .await
                .map_err(|e| failed(action, "committing", e)),
            Err(e) => Err(failed(action, "going live", e)),
        };
        match committed {
            Ok(()) => {
                if let Some(files) = undo.files {
                    files.keep();
                }
                Ok(())
            }
            Err(error) => {
                self.undo(undo);
                Err(error)
            }
        }
    }
}

/// A change that failed at `step`: nothing was changed.
pub fn failed(action: &str, step: &str, error: impl std::fmt::Display) -> ApiError {
    tracing::error!(action, step, %error, "a change failed; nothing was changed");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("{action} failed while {step}: {error}; nothing was changed"),
    )
    .reason("change_failed")
}

/// Runs `step`'s failpoint, as an answer.
pub fn passed(state: &AppState, action: &str, step: &str) -> Result<(), ApiError> {
    state
        .failpoints
        .check(&format!("{action}:{step}"))
        .map_err(|e| failed(action, step, e))
}
