//! ACL sources beyond the trunks file: PostgreSQL ([`postgres`]), Redis ([`redis`]) and the
//! file together, combined into one snapshot, with a last-known-good file ([`lkg`]).
//!
//! Each enabled source keeps its last good [`RuleSet`]. A reload that fails (store down, a bad
//! row, rules that do not build with the others) changes nothing but the source's health and
//! metrics: the snapshot is only ever rebuilt from good states, so the edge never falls open
//! and never falls to an empty ACL because a store went away. How states combine:
//! - `union`: every source's last good rules together, in `acl.sources` order.
//! - `primary`: the primary's rules while it is healthy (connected and its last reload
//!   good); otherwise the first healthy other source's; with none healthy, the first source
//!   that has any good state (the primary's last good state, if it ever had one).
//!
//! Everything here runs on one thread of its own (`warp-edge-acl`, a current-thread tokio
//! runtime): store I/O, row decoding, snapshot builds and last-known-good writes never take
//! a worker of the runtime that serves calls. The hot path only sees [`Acl::store`].
//!
//! With only the trunks file enabled, [`start`] does exactly what the edge did before: publish
//! the file's snapshot and poll the file ([`super::reload::watch_file`]).

pub mod lkg;
mod mirror;
pub mod postgres;
pub mod redis;
pub mod sync;

pub use mirror::Mirror;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::reload::{publish, watch_file, FileWatch, FILE_SOURCE};
use super::{Acl, AclError, RuleSet, Snapshot};
use crate::config::{load_trunks, Combine, Config, SourceKind, SourcesConfig, TrunksFile};
use crate::telemetry::{AclSourceMetrics, Metrics};

/// A store's full load (query or SCAN, and decoding) must finish within this, or the
/// connection is treated as lost.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The first retry after a lost connection; doubled on each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The last-known-good file is written at most this often (the newest state once the
/// interval has passed, and at shutdown): 100k entries are 16 MB of JSON, and a change a
/// second must not mean a 16 MB write a second. The file is for a restart during an outage,
/// where rules a few seconds old serve as well as the newest.
pub const LAST_KNOWN_GOOD_INTERVAL: Duration = Duration::from_secs(5);

/// What a source tells the combiner.
#[derive(Debug)]
pub enum SourceEvent {
    /// A load succeeded: the source's complete rules.
    Loaded {
        kind: SourceKind,
        rules: Arc<RuleSet>,
        seconds: f64,
    },
    /// A load or a connection attempt failed; the source's last good state stays.
    Failed {
        kind: SourceKind,
        error: String,
        seconds: f64,
    },
    /// The store connection came up or went down.
    Connected { kind: SourceKind, up: bool },
}

/// Exponential backoff between reconnection attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        now
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

// === Combiner ===

/// One enabled source's last good state and health.
struct Slot {
    kind: SourceKind,
    rules: Option<Arc<RuleSet>>,
    /// Connected and its last reload good.
    healthy: bool,
    /// The rules were read from the last-known-good file, not from the store.
    from_lkg: bool,
    /// Bumped whenever `rules` changes.
    version: u64,
    metrics: AclSourceMetrics,
}

/// Rebuilds the snapshot from the sources' good states. Owned by the ACL thread.
pub struct Combiner {
    group: u32,
    combine: Combine,
    primary: Option<SourceKind>,
    slots: Vec<Slot>,
    last_known_good: Option<PathBuf>,
    acl: Arc<Acl>,
    metrics: Arc<Metrics>,
    /// The (source, version) pairs the snapshot in force was built from.
    serving: Option<Vec<(SourceKind, u64)>>,
    /// The snapshot the last publish replaced, kept until the next one so that this thread,
    /// not a request, frees it (see [`Acl::store`]).
    replaced: Option<Arc<Snapshot>>,
    /// A store's rules changed since the last-known-good file was written.
    last_known_good_stale: bool,
    last_known_good_written: Option<Instant>,
}

impl Combiner {
    fn new(config: &SourcesConfig, group: u32, acl: Arc<Acl>, metrics: Arc<Metrics>) -> Combiner {
        let slots = config
            .enabled
            .iter()
            .map(|&kind| Slot {
                kind,
                rules: None,
                healthy: false,
                from_lkg: false,
                version: 0,
                metrics: metrics.acl_source(kind.as_str()),
            })
            .collect();
        Combiner {
            group,
            combine: config.combine,
            primary: config.primary,
            slots,
            last_known_good: config.last_known_good.clone(),
            acl,
            metrics,
            serving: None,
            replaced: None,
            last_known_good_stale: false,
            last_known_good_written: None,
        }
    }

    fn slot(&mut self, kind: SourceKind) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.kind == kind)
    }

    /// Seeds the store sources from the last-known-good file, if there is one.
    fn seed_from_last_known_good(&mut self) {
        let Some(file) = self.last_known_good.clone() else {
            return;
        };
        let saved = match lkg::read(&file) {
            Ok(Some(saved)) => saved,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "ignoring the acl last-known-good file");
                return;
            }
        };
        if saved.group != self.group {
            tracing::warn!(file = %file.display(), lkg.group = saved.group, acl.group = self.group, "ignoring the acl last-known-good file: written for another group");
            return;
        }
        for (kind, rules) in saved.sources {
            if kind == SourceKind::File {
                continue;
            }
            if let Some(slot) = self.slot(kind) {
                slot.metrics.from_last_known_good(rules.entries.len());
                slot.rules = Some(Arc::new(rules));
                slot.from_lkg = true;
                slot.version += 1;
            }
        }
    }

    /// The slots the snapshot is built from, in order.
    fn selection(&self) -> Vec<usize> {
        let with_rules = |i: &usize| self.slots[*i].rules.is_some();
        match self.combine {
            Combine::Union => (0..self.slots.len()).filter(with_rules).collect(),
            Combine::Primary => {
                let mut order: Vec<usize> = (0..self.slots.len()).collect();
                if let Some(p) = self.slots.iter().position(|s| Some(s.kind) == self.primary) {
                    order.retain(|i| *i != p);
                    order.insert(0, p);
                }
                let healthy = order
                    .iter()
                    .copied()
                    .find(|i| with_rules(i) && self.slots[*i].healthy);
                healthy
                    .or_else(|| order.iter().copied().find(with_rules))
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Builds and publishes the snapshot of the current selection unless it is already in
    /// force. On failure nothing changes.
    fn rebuild(&mut self) -> Result<(), AclError> {
        let selection = self.selection();
        if selection.is_empty() {
            return Ok(());
        }
        let key: Vec<(SourceKind, u64)> = selection
            .iter()
            .map(|&i| (self.slots[i].kind, self.slots[i].version))
            .collect();
        if self.serving.as_ref() == Some(&key) {
            return Ok(());
        }
        let combined: Arc<RuleSet> = if let [only] = selection[..] {
            self.slots[only].rules.clone().unwrap_or_default()
        } else {
            let mut all = RuleSet::default();
            for &i in &selection {
                if let Some(rules) = &self.slots[i].rules {
                    all.extend(RuleSet::clone(rules));
                }
            }
            Arc::new(all)
        };
        let snapshot = Snapshot::build(combined.clone(), self.group)?;
        self.replaced = Some(publish(&self.acl, &self.metrics, snapshot));
        let used: Vec<&str> = key.iter().map(|(k, _)| k.as_str()).collect();
        tracing::debug!(acl.sources = ?used, "acl snapshot rebuilt");
        self.serving = Some(key);
        Ok(())
    }

    fn update_ready(&self) {
        let ready = match self.combine {
            Combine::Union => self.slots.iter().all(|s| s.rules.is_some()),
            Combine::Primary => self.slots.iter().any(|s| s.rules.is_some()),
        };
        self.metrics.set_acl_ready(ready);
    }

    /// When the stale last-known-good file is due to be written, if it is stale.
    fn last_known_good_due(&self) -> Option<Instant> {
        if !self.last_known_good_stale {
            return None;
        }
        Some(
            self.last_known_good_written
                .map_or_else(Instant::now, |at| at + LAST_KNOWN_GOOD_INTERVAL),
        )
    }

    /// Writes the last-known-good file if it is stale and due (with `force`, if it is stale).
    fn flush_last_known_good(&mut self, force: bool) {
        match self.last_known_good_due() {
            Some(due) if force || due <= Instant::now() => {
                self.last_known_good_stale = false;
                self.last_known_good_written = Some(Instant::now());
                self.write_last_known_good();
            }
            _ => {}
        }
    }

    fn write_last_known_good(&self) {
        let Some(file) = &self.last_known_good else {
            return;
        };
        let stores: Vec<(SourceKind, &RuleSet)> = self
            .slots
            .iter()
            .filter(|s| s.kind != SourceKind::File)
            .filter_map(|s| s.rules.as_deref().map(|r| (s.kind, r)))
            .collect();
        if stores.is_empty() {
            return;
        }
        match lkg::write(file, self.group, &stores) {
            Ok(()) => self.metrics.acl_last_known_good_written(true),
            Err(error) => {
                self.metrics.acl_last_known_good_written(false);
                tracing::warn!(%error, "cannot write the acl last-known-good file");
            }
        }
    }

    /// Applies one event: a new good state (validated by building), a failure, or a change of
    /// connection. Always leaves a snapshot built from good states in force.
    pub fn handle(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Loaded {
                kind,
                rules,
                seconds,
            } => self.loaded(kind, rules, seconds),
            SourceEvent::Failed {
                kind,
                error,
                seconds,
            } => {
                if let Some(slot) = self.slot(kind) {
                    slot.healthy = false;
                    slot.metrics.failed(seconds);
                }
                tracing::warn!(acl.source = kind.as_str(), %error, "acl reload failed; the source's last good rules stay in force");
                self.rebuild_or_warn();
            }
            SourceEvent::Connected { kind, up } => {
                if let Some(slot) = self.slot(kind) {
                    slot.metrics.connected(up);
                    if !up {
                        slot.healthy = false;
                    }
                }
                self.rebuild_or_warn();
            }
        }
        self.update_ready();
    }

    fn rebuild_or_warn(&mut self) {
        if let Err(error) = self.rebuild() {
            tracing::warn!(%error, "acl snapshot rebuild refused; the snapshot in force stays");
        }
    }

    fn loaded(&mut self, kind: SourceKind, rules: Arc<RuleSet>, seconds: f64) {
        let group = self.group;
        let combine = self.combine;
        let Some(index) = self.slots.iter().position(|s| s.kind == kind) else {
            return;
        };
        let entries = rules.entries.len();
        let slot = &mut self.slots[index];
        if slot.rules.as_deref() == Some(&*rules) {
            // Nothing new (a safety-net reload, or the store agrees with the LKG file).
            slot.healthy = true;
            slot.from_lkg = false;
            slot.metrics.reloaded(seconds, entries);
            tracing::debug!(acl.source = kind.as_str(), "acl source unchanged");
            self.rebuild_or_warn();
            return;
        }
        let previous = (slot.rules.take(), slot.version, slot.from_lkg);
        slot.rules = Some(rules);
        slot.version += 1;
        slot.from_lkg = false;
        slot.healthy = true;
        // A source the primary selection does not use is validated on its own, so a later
        // switch to it cannot fail.
        let used = self.selection().contains(&index);
        let outcome = if !used && combine == Combine::Primary {
            let rules = self.slots[index].rules.clone().unwrap_or_default();
            Snapshot::build(rules, group).map(drop)
        } else {
            self.rebuild()
        };
        let slot = &mut self.slots[index];
        match outcome {
            Ok(()) => {
                slot.metrics.reloaded(seconds, entries);
                tracing::info!(
                    acl.source = kind.as_str(),
                    acl.entries = entries,
                    duration_ms = seconds * 1e3,
                    "acl source reloaded"
                );
                if kind != SourceKind::File && self.last_known_good.is_some() {
                    self.last_known_good_stale = true;
                    self.flush_last_known_good(false);
                }
            }
            Err(error) => {
                (slot.rules, slot.version, slot.from_lkg) = previous;
                slot.healthy = false;
                slot.metrics.failed(seconds);
                tracing::warn!(acl.source = kind.as_str(), %error, "acl reload refused (the rules do not build); the source's last good rules stay in force");
                self.rebuild_or_warn();
            }
        }
    }
}

/// How a store load ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Loaded,
    /// The store answered but the load failed (a bad row): the connection is fine, and the
    /// next change must read everything, since this one's rows were not applied.
    Refused,
    /// The connection is unusable: the source reconnects.
    Lost,
}

/// Runs one store load under [`LOAD_TIMEOUT`] and reports it to the combiner.
pub(crate) async fn load_and_report<R: Into<Arc<RuleSet>>, E: std::fmt::Display>(
    kind: SourceKind,
    events: &UnboundedSender<SourceEvent>,
    load: impl std::future::Future<Output = Result<R, E>>,
    timed_out: impl FnOnce(Duration) -> E,
    is_connection: impl FnOnce(&E) -> bool,
) -> Outcome {
    let started = Instant::now();
    let result = match tokio::time::timeout(LOAD_TIMEOUT, load).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(LOAD_TIMEOUT)),
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(rules) => {
            let _ = events.send(SourceEvent::Loaded {
                kind,
                rules: rules.into(),
                seconds,
            });
            Outcome::Loaded
        }
        Err(error) => {
            let connection = is_connection(&error);
            let _ = events.send(SourceEvent::Failed {
                kind,
                error: error.to_string(),
                seconds,
            });
            if connection {
                Outcome::Lost
            } else {
                Outcome::Refused
            }
        }
    }
}

// === the ACL thread ===

/// Polls the trunks file for the combiner (the file-only edge uses
/// [`super::reload::watch_file`] instead). The first poll always reads the file.
async fn poll_file(file: PathBuf, interval: Duration, events: UnboundedSender<SourceEvent>) {
    let kind = SourceKind::File;
    let mut watch = FileWatch::new(file, interval);
    loop {
        let present = watch.changed().await;
        let started = Instant::now();
        let event = match present.then(|| load_trunks(watch.file())) {
            None => SourceEvent::Failed {
                kind,
                error: format!("{}: the trunks file is gone", watch.file().display()),
                seconds: 0.0,
            },
            Some(Ok(trunks)) => SourceEvent::Loaded {
                kind,
                rules: trunks.rules,
                seconds: started.elapsed().as_secs_f64(),
            },
            Some(Err(error)) => SourceEvent::Failed {
                kind,
                error: error.to_string(),
                seconds: started.elapsed().as_secs_f64(),
            },
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// Everything the ACL thread needs.
struct Plan {
    sources: SourcesConfig,
    group: u32,
    trunks_file: PathBuf,
    file_interval: Duration,
    file_rules: Arc<RuleSet>,
    acl: Arc<Acl>,
    metrics: Arc<Metrics>,
}

async fn run_sources(plan: Plan, first_round: oneshot::Sender<()>, stop: oneshot::Receiver<()>) {
    let (events, mut inbox): (UnboundedSender<SourceEvent>, UnboundedReceiver<SourceEvent>) =
        unbounded_channel();
    let mut combiner = Combiner::new(&plan.sources, plan.group, plan.acl, plan.metrics);
    combiner.seed_from_last_known_good();
    if let Some(slot) = combiner.slot(SourceKind::File) {
        slot.metrics.reloaded(0.0, plan.file_rules.entries.len());
        slot.metrics.connected(true);
        slot.rules = Some(plan.file_rules);
        slot.healthy = true;
        slot.version += 1;
    }
    combiner.rebuild_or_warn();
    combiner.update_ready();

    let mut tasks = Vec::new();
    let mut awaiting = Vec::new();
    for kind in &plan.sources.enabled {
        match kind {
            SourceKind::File => tasks.push(tokio::spawn(poll_file(
                plan.trunks_file.clone(),
                plan.file_interval,
                events.clone(),
            ))),
            SourceKind::Postgres => {
                if let Some(config) = plan.sources.postgres.clone() {
                    awaiting.push(*kind);
                    tasks.push(tokio::spawn(postgres::run(
                        config,
                        plan.group,
                        events.clone(),
                    )));
                }
            }
            SourceKind::Redis => {
                if let Some(config) = plan.sources.redis.clone() {
                    awaiting.push(*kind);
                    tasks.push(tokio::spawn(redis::run(config, events.clone())));
                }
            }
        }
    }
    drop(events);
    let mut first_round = Some(first_round);
    let mut stop = stop;
    loop {
        if awaiting.is_empty() {
            if let Some(done) = first_round.take() {
                for slot in combiner.slots.iter().filter(|s| s.from_lkg) {
                    tracing::warn!(
                        acl.source = slot.kind.as_str(),
                        "acl source unreachable at start-up; serving its last-known-good rules"
                    );
                }
                let _ = done.send(());
            }
        }
        let due = combiner.last_known_good_due();
        let event = tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                combiner.flush_last_known_good(false);
                continue;
            }
            event = inbox.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        match &event {
            SourceEvent::Loaded { kind, .. } | SourceEvent::Failed { kind, .. } => {
                awaiting.retain(|k| k != kind);
            }
            SourceEvent::Connected { .. } => {}
        }
        combiner.handle(event);
    }
    combiner.flush_last_known_good(true);
    for task in tasks {
        task.abort();
    }
}

/// Publishes the first snapshot and starts keeping it current; returns the tasks to keep
/// (dropping or aborting them stops the sources). `snapshot` is the trunks file's, already
/// built from `trunks`.
///
/// With store sources this waits for their first load (at most `acl.startup_wait_ms`); a
/// store that cannot be reached by then is served from the last-known-good file if there is
/// one, and `/readyz` stays 503 until every source the combination needs has a state.
pub async fn start(
    config: &Config,
    trunks: TrunksFile,
    snapshot: Snapshot,
    acl: &Arc<Acl>,
    metrics: &Arc<Metrics>,
) -> Vec<JoinHandle<()>> {
    let sources = &config.acl.sources;
    if sources.is_file_only() {
        // What this replaces is the empty snapshot of start-up.
        drop(publish(acl, metrics, snapshot));
        metrics.acl_reload(FILE_SOURCE, true, 0.0);
        return vec![tokio::spawn(watch_file(
            config.acl.trunks_file.clone(),
            config.acl.group,
            config.acl.reload_interval,
            trunks.rules,
            acl.clone(),
            metrics.clone(),
        ))];
    }
    drop(snapshot);
    // Not ready until the ACL thread has a snapshot for every source the combination needs.
    metrics.set_acl_ready(false);
    let plan = Plan {
        sources: sources.clone(),
        group: config.acl.group,
        trunks_file: config.acl.trunks_file.clone(),
        file_interval: config.acl.reload_interval,
        file_rules: trunks.rules,
        acl: acl.clone(),
        metrics: metrics.clone(),
    };
    let (first_tx, first_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("warp-edge-acl".to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run_sources(plan, first_tx, stop_rx)),
                Err(error) => {
                    tracing::error!(%error, "cannot start the acl sources' runtime; the acl will not change")
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the acl sources' thread; the acl will not change");
        return Vec::new();
    }
    let _ = tokio::time::timeout(sources.startup_wait, first_rx).await;
    // Dropping `stop_tx` (when the edge aborts this task) ends the ACL thread.
    vec![tokio::spawn(async move {
        let _stop = stop_tx;
        std::future::pending::<()>().await
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclEntry, AclRequest, Customer, CustomerStatus, Proto};

    fn entry(network: &str, ban: &str) -> AclEntry {
        AclEntry {
            origin: format!("test {network}").into(),
            group: 1,
            network: network.parse().unwrap(),
            port: 0,
            proto: Proto::Any,
            ban: ban.into(),
            trunk_group: None,
        }
    }

    fn rules(entries: &[(&str, &str)]) -> RuleSet {
        RuleSet {
            entries: entries.iter().map(|(n, b)| entry(n, b)).collect(),
            ..RuleSet::default()
        }
    }

    fn allowed(acl: &Acl, ip: [u8; 4]) -> Option<String> {
        let snapshot = acl.load();
        match snapshot.decide(&AclRequest {
            source: (ip, 5060).into(),
            local: [127, 0, 0, 1].into(),
            transport: Proto::Udp,
        }) {
            crate::acl::Decision::Allow { customer, .. } => Some(customer.to_owned()),
            crate::acl::Decision::Deny { .. } => None,
        }
    }

    fn combiner(
        combine: Combine,
        primary: Option<SourceKind>,
    ) -> (Combiner, Arc<Acl>, Arc<Metrics>) {
        let config = SourcesConfig {
            enabled: vec![SourceKind::Postgres, SourceKind::Redis, SourceKind::File],
            combine,
            primary,
            ..SourcesConfig::file_only()
        };
        let acl = Arc::new(Acl::default());
        let metrics = Metrics::new();
        metrics.set_ready(true);
        (
            Combiner::new(&config, 1, acl.clone(), metrics.clone()),
            acl,
            metrics,
        )
    }

    fn loaded(kind: SourceKind, rules: RuleSet) -> SourceEvent {
        SourceEvent::Loaded {
            kind,
            rules: Arc::new(rules),
            seconds: 0.0,
        }
    }

    #[test]
    fn union_keeps_a_failed_sources_last_good_rules() {
        let (mut c, acl, metrics) = combiner(Combine::Union, None);
        c.handle(loaded(SourceKind::Postgres, rules(&[("10.0.0.1/32", "1")])));
        assert!(!metrics.is_ready(), "redis and file have no state yet");
        c.handle(loaded(SourceKind::Redis, rules(&[("10.0.0.2/32", "2")])));
        c.handle(loaded(SourceKind::File, RuleSet::default()));
        assert!(metrics.is_ready());
        assert_eq!(allowed(&acl, [10, 0, 0, 1]).as_deref(), Some("1"));
        assert_eq!(allowed(&acl, [10, 0, 0, 2]).as_deref(), Some("2"));

        c.handle(SourceEvent::Connected {
            kind: SourceKind::Postgres,
            up: false,
        });
        c.handle(SourceEvent::Failed {
            kind: SourceKind::Postgres,
            error: "down".to_owned(),
            seconds: 0.0,
        });
        assert_eq!(allowed(&acl, [10, 0, 0, 1]).as_deref(), Some("1"), "kept");
        assert!(metrics.is_ready());
    }

    #[test]
    fn rules_that_do_not_build_are_refused_and_the_old_ones_stay() {
        let (mut c, acl, _) = combiner(Combine::Union, None);
        c.handle(loaded(SourceKind::Postgres, rules(&[("10.0.0.1/32", "1")])));
        let mut bad = rules(&[("10.0.0.9/32", "9")]);
        bad.entries[0].trunk_group = Some(77);
        c.handle(loaded(SourceKind::Postgres, bad));
        assert_eq!(allowed(&acl, [10, 0, 0, 1]).as_deref(), Some("1"));
        assert_eq!(allowed(&acl, [10, 0, 0, 9]), None);
        // A conflict between two sources refuses the newcomer, not the rules in force.
        let customer = |status| Customer {
            ban: "1".to_owned(),
            name: "x".to_owned(),
            status,
        };
        let mut pg = rules(&[("10.0.0.1/32", "1")]);
        pg.customers.push(customer(CustomerStatus::Active));
        c.handle(loaded(SourceKind::Postgres, pg));
        let mut file = RuleSet::default();
        file.customers.push(customer(CustomerStatus::Suspended));
        c.handle(loaded(SourceKind::File, file));
        assert_eq!(allowed(&acl, [10, 0, 0, 1]).as_deref(), Some("1"));
    }

    #[test]
    fn primary_falls_back_to_a_healthy_source_and_returns() {
        let (mut c, acl, metrics) = combiner(Combine::Primary, Some(SourceKind::Postgres));
        c.handle(loaded(SourceKind::Redis, rules(&[("10.0.0.2/32", "2")])));
        assert!(metrics.is_ready(), "a fallback is enough");
        assert_eq!(allowed(&acl, [10, 0, 0, 2]).as_deref(), Some("2"));
        c.handle(loaded(SourceKind::Postgres, rules(&[("10.0.0.1/32", "1")])));
        assert_eq!(allowed(&acl, [10, 0, 0, 1]).as_deref(), Some("1"));
        assert_eq!(allowed(&acl, [10, 0, 0, 2]), None, "primary only");

        c.handle(SourceEvent::Connected {
            kind: SourceKind::Postgres,
            up: false,
        });
        assert_eq!(allowed(&acl, [10, 0, 0, 2]).as_deref(), Some("2"));
        c.handle(SourceEvent::Connected {
            kind: SourceKind::Redis,
            up: false,
        });
        assert_eq!(
            allowed(&acl, [10, 0, 0, 1]).as_deref(),
            Some("1"),
            "nothing healthy: the primary's last good state"
        );
        c.handle(loaded(SourceKind::Postgres, rules(&[("10.0.0.1/32", "1")])));
        assert_eq!(allowed(&acl, [10, 0, 0, 1]).as_deref(), Some("1"));
    }

    #[test]
    fn last_known_good_is_written_at_once_then_at_most_every_interval() {
        let dir = std::env::temp_dir().join(format!("warp-edge-lkg-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("acl-lkg.json");
        let config = SourcesConfig {
            enabled: vec![SourceKind::Postgres],
            last_known_good: Some(file.clone()),
            ..SourcesConfig::file_only()
        };
        let metrics = Metrics::new();
        let mut c = Combiner::new(&config, 1, Arc::new(Acl::default()), metrics);
        let saved = || {
            lkg::read(&file).unwrap().unwrap().sources[0]
                .1
                .entries
                .len()
        };

        c.handle(loaded(SourceKind::Postgres, rules(&[("10.0.0.1/32", "1")])));
        assert_eq!(saved(), 1, "the first change is written at once");
        c.handle(loaded(
            SourceKind::Postgres,
            rules(&[("10.0.0.1/32", "1"), ("10.0.0.2/32", "1")]),
        ));
        assert_eq!(saved(), 1, "the next one waits for the interval");
        let written = c.last_known_good_written.expect("written once");
        assert_eq!(
            c.last_known_good_due(),
            Some(written + LAST_KNOWN_GOOD_INTERVAL),
            "due one interval after the last write"
        );
        c.flush_last_known_good(true);
        assert_eq!(saved(), 2, "written at shutdown");
        assert_eq!(c.last_known_good_due(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[1], BACKOFF_MIN * 2);
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next(), BACKOFF_MIN);
    }
}
