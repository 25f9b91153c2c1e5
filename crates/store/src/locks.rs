//! Cluster-wide job locks.
//!
//! Within one process a job's lock is a mutex, so waiting for it costs no database
//! connection; [`crate::PostgresStore`] then also takes a transaction-scoped advisory lock,
//! which the database releases when the guard ends the transaction or the process dies.
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// Work that must run in one process at a time across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The periodic check: renewal of server-issued named certificates, secrets.
    Checks,
    /// Signing and publishing CRLs.
    Crls,
    /// CA and service-account key rotations.
    Rotation,
    /// Changes to named certificates, so versions are assigned in order.
    Named,
}

impl Job {
    const ALL: [Job; 4] = [Job::Checks, Job::Crls, Job::Rotation, Job::Named];

    fn index(self) -> usize {
        match self {
            Job::Checks => 0,
            Job::Crls => 1,
            Job::Rotation => 2,
            Job::Named => 3,
        }
    }

    /// The PostgreSQL advisory-lock key: "EVG" and the job's number.
    pub(crate) fn advisory_key(self) -> i64 {
        0x4556_4700 + i64::try_from(self.index()).unwrap_or_default()
    }
}

/// Holds a job's lock until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct JobLock {
    // Fields drop in order: the database's lock first, then this process's.
    /// What holds the lock in the database, if anything (an open transaction).
    _shared: Option<Box<dyn std::any::Any + Send>>,
    _local: OwnedMutexGuard<()>,
}

impl std::fmt::Debug for JobLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLock").finish_non_exhaustive()
    }
}

/// One mutex per job, for the processes' own tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalLocks([Arc<Mutex<()>>; Job::ALL.len()]);

impl LocalLocks {
    /// Waits for this process's turn at `job`.
    pub(crate) async fn wait(&self, job: Job) -> OwnedMutexGuard<()> {
        self.0[job.index()].clone().lock_owned().await
    }
}

impl JobLock {
    /// A lock held by `local` in this process and, when shared, by `shared` in the
    /// database.
    pub(crate) fn new(
        local: OwnedMutexGuard<()>,
        shared: Option<Box<dyn std::any::Any + Send>>,
    ) -> Self {
        JobLock {
            _shared: shared,
            _local: local,
        }
    }
}
