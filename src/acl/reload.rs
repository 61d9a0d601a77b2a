//! Keeping the snapshot current from the trunks file: the file is polled and rebuilt when it
//! changes. A change that fails to parse or build is refused: the previous snapshot stays in
//! force, and the failure is logged (`warn`) and counted.
//!
//! Polling, not inotify: Kubernetes ConfigMaps change by swapping a symlink two directories
//! up, which inotify watchers on the file miss; `stat` every 250 ms (by default) costs
//! nothing and sees every kind of replacement (edit in place, rename, symlink swap).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{Acl, AclError, RuleSet, Snapshot};
use crate::config::{load_trunks, ConfigError};
use crate::telemetry::Metrics;

/// The metric label of the trunks-file source.
pub const FILE_SOURCE: &str = "file";

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: {source}")]
    Acl {
        file: PathBuf,
        source: Box<AclError>,
    },
}

/// Makes `snapshot` current and updates the gauges that describe it. Returns the snapshot it
/// replaced: keep it until the next publish (see [`Acl::store`]).
#[must_use = "keep the replaced snapshot until the next publish, so a request never frees it"]
pub fn publish(acl: &Acl, metrics: &Metrics, snapshot: Snapshot) -> Arc<Snapshot> {
    let counts = snapshot.counts();
    metrics.acl_entries(
        counts.v4_entries,
        counts.v6_entries,
        counts.dedicated_ips,
        counts.customers,
    );
    metrics.set_customers(snapshot.bans());
    acl.store(snapshot)
}

/// What identifies a version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(file: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Polls a file's stamp on a fixed interval and wakes its owner when the stamp changes
/// (edited, replaced, removed). The first poll always counts as a change, so an edit made
/// between the initial load and the first poll is not lost.
pub(crate) struct FileWatch {
    file: PathBuf,
    last: Option<Option<Stamp>>,
    ticker: tokio::time::Interval,
}

impl FileWatch {
    pub(crate) fn new(file: PathBuf, interval: Duration) -> FileWatch {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        FileWatch {
            file,
            last: None,
            ticker,
        }
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Waits for the next change: `true` when the file is there, `false` when it is gone.
    pub(crate) async fn changed(&mut self) -> bool {
        loop {
            self.ticker.tick().await;
            let now = stamp(&self.file);
            if self.last != Some(now) {
                self.last = Some(now);
                return now.is_some();
            }
        }
    }
}

/// A reload that changed the snapshot: the rules now in force and the snapshot they replaced.
pub type Reloaded = (Arc<RuleSet>, Arc<Snapshot>);

/// Rebuilds from the file once unless it says what `current` already says; on failure the
/// current snapshot stays. Returns the rules now in force and the snapshot they replaced
/// (keep it until the next reload, see [`Acl::store`]).
pub fn reload_file(
    file: &Path,
    group: u32,
    current: &RuleSet,
    acl: &Acl,
    metrics: &Metrics,
) -> Result<Option<Reloaded>, ReloadError> {
    let started = Instant::now();
    let result = load_trunks(file)
        .map_err(ReloadError::from)
        .and_then(|trunks| {
            if *trunks.rules == *current {
                return Ok(None);
            }
            let snapshot = Snapshot::build(trunks.rules.clone(), group).map_err(|source| {
                ReloadError::Acl {
                    file: file.to_owned(),
                    source: Box::new(source),
                }
            })?;
            Ok(Some((snapshot, trunks.rules)))
        });
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(None) => Ok(None),
        Ok(Some((snapshot, rules))) => {
            let counts = snapshot.counts();
            let replaced = publish(acl, metrics, snapshot);
            metrics.acl_reload(FILE_SOURCE, true, seconds);
            tracing::info!(
                acl.source = FILE_SOURCE,
                acl.entries.v4 = counts.v4_entries,
                acl.entries.v6 = counts.v6_entries,
                acl.dedicated_ips = counts.dedicated_ips,
                duration_ms = seconds * 1e3,
                "acl reloaded"
            );
            Ok(Some((rules, replaced)))
        }
        Err(error) => {
            metrics.acl_reload(FILE_SOURCE, false, seconds);
            tracing::warn!(acl.source = FILE_SOURCE, %error, "acl reload refused; the previous snapshot stays in force");
            Err(error)
        }
    }
}

/// Polls `file` every `interval` and reloads when it changes, until the task is dropped.
/// `loaded` is what the snapshot in force was built from. The first poll always reads the
/// file, so an edit made between the initial load and the first poll is not lost.
pub async fn watch_file(
    file: PathBuf,
    group: u32,
    interval: Duration,
    loaded: Arc<RuleSet>,
    acl: Arc<Acl>,
    metrics: Arc<Metrics>,
) {
    let mut current = loaded;
    // The snapshot the last reload replaced: freed on the blocking thread of the next one,
    // not by whichever request drops it last, nor on a reactor thread (see `Acl::store`).
    let mut replaced: Option<Arc<Snapshot>> = None;
    let mut watch = FileWatch::new(file.clone(), interval);
    loop {
        if !watch.changed().await {
            metrics.acl_reload(FILE_SOURCE, false, 0.0);
            tracing::warn!(acl.source = FILE_SOURCE, file = %file.display(), "trunks file is gone; the previous snapshot stays in force");
            continue;
        }
        // Parsing a large file takes milliseconds: keep it off the reactor threads.
        let (file2, acl2, metrics2, current2) =
            (file.clone(), acl.clone(), metrics.clone(), current.clone());
        let retired = replaced.take();
        let reloaded = tokio::task::spawn_blocking(move || {
            drop(retired);
            reload_file(&file2, group, &current2, &acl2, &metrics2)
        })
        .await;
        if let Ok(Ok(Some((rules, previous)))) = reloaded {
            current = rules;
            replaced = Some(previous);
        }
    }
}
