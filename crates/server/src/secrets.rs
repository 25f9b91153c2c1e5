//! Watching the directories of `secret` named certificates: a change there (a Kubernetes
//! secret volume swapping its `..data` link, a file written in place) makes a new version
//! within a moment. The periodic check re-reads every secret as well, for file systems
//! that report nothing (NFS, some container mounts).
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::state::AppState;

/// Events closer together than this make one re-read.
const SETTLE: Duration = Duration::from_millis(200);
/// How often the watched set is compared with the declared secret directories, besides
/// every change of the cluster revision.
const RESYNC: Duration = Duration::from_secs(30);

pub(crate) async fn watch_secrets(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let (events, mut changed) = mpsc::unbounded_channel::<()>();
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = events.send(());
            }
        },
    ) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch secret directories; they are re-read every ten minutes");
            return;
        }
    };
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    let mut revision = state.revision.subscribe();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            _ = resync.tick() => {}
            _ = revision.changed() => {}
            Some(()) = changed.recv() => {
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
                if let Err(error) = crate::named::refresh_secrets(&state).await {
                    tracing::warn!(error = %error.message, "cannot re-read a changed secret directory; the periodic check retries");
                }
            }
            stopped = stop.changed() => {
                if stopped.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
        let wanted: BTreeSet<PathBuf> = match state.store.named().await {
            Ok(records) => records
                .into_iter()
                .filter(|r| r.kind == "secret")
                .filter_map(|r| r.secret_path.map(PathBuf::from))
                .collect(),
            Err(_) => continue,
        };
        for gone in watched.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        watched.retain(|dir| wanted.contains(dir));
        for dir in wanted.difference(&watched.clone()) {
            // A directory that does not exist yet is tried again at the next resync.
            if watcher.watch(dir, RecursiveMode::NonRecursive).is_ok() {
                watched.insert(dir.clone());
            }
        }
    }
}
