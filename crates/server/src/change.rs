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

use crate::cluster::{Cluster, Crls, Revoked};
use crate::error::{ApiError, Reason};

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
    pub(crate) cluster: Option<Arc<Cluster>>,
    pub(crate) crls: Option<(Arc<Crls>, Arc<Revoked>)>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) serving: Option<Arc<rustls::sign::CertifiedKey>>,
    pub(crate) api: Option<Option<Arc<rustls::sign::CertifiedKey>>>,
    pub(crate) files: Option<Applied>,
}

/// A change that failed at `step`: nothing was changed.
pub fn failed(action: &str, step: &str, error: impl std::fmt::Display) -> ApiError {
    tracing::error!(action, step, %error, "a change failed; nothing was changed");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("{action} failed while {step}: {error}; nothing was changed"),
    )
    .reason(Reason::ChangeFailed)
}
