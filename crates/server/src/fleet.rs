//! What agents' watches are answered from: one snapshot per revision and cluster, shared
//! by every node waiting (built in [`crate::agent`], kept in the shared state).
use std::sync::Arc;

use evergreen_api::Assignment;

use crate::cluster::Cluster;

/// What every watch answers at one revision and cluster, before each node's own filter:
/// built once when either changes, not once per agent (a fleet wakes all at once).
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) revision: i64,
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) trust_bundle: String,
    pub(crate) identity_ca: String,
    /// The CA whose key signs the attestations: `server-ca` with its chain.
    pub(crate) attested_by: String,
    /// Each assignment with the nodes it is for (none: every node).
    pub(crate) certificates: Vec<(Vec<String>, Assignment)>,
}
