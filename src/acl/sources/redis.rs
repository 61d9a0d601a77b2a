//! The Redis source: Kamailio's permissions `address` table as db_redis stores it (a hash per
//! row at `address:entry::<id>`: id, grp, ip_addr, mask, port, tag) and the platform's variant
//! `address:entry:<uuid>` with a `proto` field. The tag is the customer's BAN; `mask` 0 (or
//! absent) is a host; only rows of the edge's group apply (the snapshot skips and counts the
//! others).
//!
//! A full load is `SCAN MATCH {prefix}address:entry:* COUNT n` (never `KEYS`, which blocks the
//! server) and, for each batch of keys SCAN returns, one pipeline of `HMGET`s of the six fields
//! the edge reads, several pipelines in flight while SCAN goes on (sequential `HGETALL`
//! pipelines took twice as long at 100k rows, BENCHMARKS.md). A key with none of the
//! fields was deleted between SCAN and HMGET. Changes are seen through a pub/sub channel the
//! writer publishes on after writing (`warp-edge acl sync` does; any message there reloads
//! everything), and, when configured, through keyspace notifications on the address keys (the
//! edge adds the `Khg` flags to `notify-keyspace-events` itself with `CONFIG SET`). A keyspace
//! notification names its key: the source re-reads just the named keys (one HMGET pipeline)
//! and merges them into its [`Mirror`], kept in key order. A periodic full reload is the safety
//! net. A SCAN is not a snapshot: a writer that changes keys during a load is seen by the
//! reload its own notification triggers.
//!
//! One bad row (no tag, a mask too long, an address that does not parse) fails the whole
//! reload and the previous rules stay: a row is never dropped silently.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use ipnet::IpNet;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::mpsc::UnboundedSender;

use super::mirror::{by_id, merge, Bans, Mirror};
use super::{load_and_report, Backoff, Outcome, SourceEvent, LOAD_TIMEOUT};
use crate::acl::rules::{AclEntry, Proto, RuleSet};
use crate::config::{redact_url, RedisConfig, SourceKind};

/// Every address row key starts with this (after the configured prefix).
pub const ADDRESS_KEY: &str = "address:entry:";
/// Where db_redis keeps the address table's schema version (6).
pub const VERSION_KEY: &str = "version:entry::address";
/// The keyspace-notification flags the source needs: keyspace events, hash and generic
/// commands (HSET, DEL, RENAME, EXPIRE).
pub const KEYSPACE_FLAGS: &str = "Khg";

#[derive(Debug, thiserror::Error)]
pub enum RedisSourceError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: {key}: {message}")]
    Row { key: String, message: String },
    #[error("redis: the load took longer than {0:?}")]
    Timeout(std::time::Duration),
}

impl RedisSourceError {
    fn is_connection(&self) -> bool {
        match self {
            RedisSourceError::Redis(e) => {
                e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
            }
            RedisSourceError::Row { .. } => false,
            RedisSourceError::Timeout(_) => true,
        }
    }
}

/// `text` with the glob characters of a SCAN/PSUBSCRIBE pattern escaped.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The fields of an address row the edge reads, in the order `HMGET` asks for them.
pub const FIELDS: [&str; 6] = ["grp", "ip_addr", "mask", "port", "proto", "tag"];

/// At most this many `HMGET` pipelines in flight during a load.
pub const PIPELINES_IN_FLIGHT: usize = 4;

/// One address row as an ACL entry. `field` reads the hash; `key` names it in errors.
pub fn parse_row<'a>(
    key: &str,
    field: impl Fn(&str) -> Option<&'a str>,
) -> Result<AclEntry, RedisSourceError> {
    let bad = |message: String| RedisSourceError::Row {
        key: key.to_owned(),
        message,
    };
    let field = |name: &str| field(name).map(str::trim).filter(|v| !v.is_empty());
    let grp = field("grp").ok_or_else(|| bad("grp: missing".to_owned()))?;
    let group: u32 = grp
        .parse()
        .ok()
        .filter(|g| *g > 0)
        .ok_or_else(|| bad(format!("grp: invalid value {grp:?} (groups start at 1)")))?;
    let ip = field("ip_addr").ok_or_else(|| bad("ip_addr: missing".to_owned()))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad(format!("ip_addr: invalid value {ip:?}")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let mask = match field("mask") {
        None => 0,
        Some(m) => m
            .parse::<u8>()
            .ok()
            .filter(|m| *m <= max)
            .ok_or_else(|| bad(format!("mask: invalid value {m:?} (0 to {max})")))?,
    };
    // Kamailio reads mask 0 as a host; any other mask is a subnet, its host bits ignored.
    let len = if mask == 0 { max } else { mask };
    let network = IpNet::new(ip, len)
        .map_err(|_| bad(format!("mask: invalid value {mask}")))?
        .trunc();
    let port = match field("port") {
        None => 0,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad(format!("port: invalid value {p:?}")))?,
    };
    let proto = match field("proto") {
        None => Proto::Any,
        Some(p) => p.parse().map_err(|m: String| bad(format!("proto: {m}")))?,
    };
    let ban = field("tag").ok_or_else(|| bad("tag: missing (the customer's BAN)".to_owned()))?;
    Ok(AclEntry {
        origin: format!("redis {key}").into(),
        group,
        network,
        port,
        proto,
        ban: ban.into(),
        trunk_group: None,
    })
}

/// The six [`FIELDS`] of each of `keys`, in one pipeline.
async fn fetch_rows(
    mut conn: MultiplexedConnection,
    keys: Vec<String>,
) -> Result<Vec<(String, [Option<String>; 6])>, RedisSourceError> {
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("HMGET").arg(key).arg(&FIELDS[..]);
    }
    let rows: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn).await?;
    Ok(keys
        .into_iter()
        .zip(rows)
        .map(|(key, row)| {
            let mut values = row.into_iter();
            let fields = std::array::from_fn(|_| values.next().flatten());
            (key, fields)
        })
        .collect())
}

/// One `SCAN cursor MATCH pattern COUNT count` step: the next cursor (0 when done) and the
/// keys found (possibly none, possibly some seen before).
pub(crate) async fn scan_page(
    conn: &mut MultiplexedConnection,
    cursor: u64,
    pattern: &str,
    count: u32,
) -> Result<(u64, Vec<String>), redis::RedisError> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
}

/// Above this many keys named by one burst of keyspace notifications, a full load is cheaper.
pub const MAX_DELTA_KEYS: usize = 1000;

/// What a burst of messages asks the source to re-read: a keyspace notification names one
/// key; a message on the writer's channel (or too many keys) asks for everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    full: bool,
    keys: BTreeSet<String>,
}

impl Change {
    /// A full load (start-up, reconnection, the safety net, the writer's channel).
    pub fn full() -> Change {
        Change {
            full: true,
            keys: BTreeSet::new(),
        }
    }

    /// Adds one message, by the channel it came on; `keyspace` is the channel prefix of
    /// keyspace notifications (`__keyspace@<db>__:`).
    pub fn note(&mut self, channel: &str, keyspace: &str) {
        match channel.strip_prefix(keyspace) {
            Some(key) if !self.full => {
                self.keys.insert(key.to_owned());
                if self.keys.len() > MAX_DELTA_KEYS {
                    self.full = true;
                }
            }
            Some(_) => {}
            None => self.full = true,
        }
    }

    pub fn is_full(&self) -> bool {
        self.full
    }
}

/// The rows of `fetched` that exist, parsed, with one string per BAN. A key with none of
/// the fields was deleted after it was named: gone, not malformed.
fn parse_rows(
    fetched: Vec<(String, [Option<String>; 6])>,
    bans: &mut Bans,
) -> Result<Vec<(Box<str>, AclEntry)>, RedisSourceError> {
    let mut rows = Vec::with_capacity(fetched.len());
    for (key, fields) in fetched {
        if fields.iter().all(Option::is_none) {
            continue;
        }
        let field = |name: &str| {
            FIELDS
                .iter()
                .position(|f| *f == name)
                .and_then(|i| fields[i].as_deref())
        };
        let mut entry = parse_row(&key, field)?;
        entry.ban = bans.get(&entry.ban);
        rows.push((key.into_boxed_str(), entry));
    }
    Ok(rows)
}

/// Reads every address row under `prefix`: SCAN for the keys, and for each batch a pipeline
/// of HMGETs, a few in flight at once.
pub async fn load(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    batch: u32,
) -> Result<RuleSet, RedisSourceError> {
    let mut mirror = None;
    refresh(conn, prefix, batch, &mut mirror, &Change::full()).await?;
    Ok(mirror.map(|m| m.rules).unwrap_or_default())
}

/// Brings `mirror` up to date with what `change` names: every row when the change is full or
/// there is no mirror yet, otherwise one pipeline of HMGETs for the named keys, merged in.
/// A bad row fails the whole change and leaves the mirror as it was.
pub async fn refresh(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    batch: u32,
    mirror: &mut Option<Mirror>,
    change: &Change,
) -> Result<(), RedisSourceError> {
    if let Some(current) = mirror.as_mut().filter(|_| !change.full) {
        if change.keys.is_empty() {
            return Ok(());
        }
        let fetched = fetch_rows(conn.clone(), change.keys.iter().cloned().collect()).await?;
        let fresh = by_id(parse_rows(fetched, &mut current.bans)?);
        merge(
            &mut current.entry_keys,
            &mut current.rules.entries,
            &change.keys,
            fresh,
        );
        return Ok(());
    }
    let pattern = format!("{}{ADDRESS_KEY}*", glob_escape(prefix));
    let mut fetched = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found) = scan_page(conn, cursor, &pattern, batch).await?;
        if !found.is_empty() {
            in_flight.push(fetch_rows(conn.clone(), found));
        }
        while in_flight.len() >= PIPELINES_IN_FLIGHT {
            if let Some(done) = in_flight.next().await {
                fetched.extend(done?);
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    while let Some(done) = in_flight.next().await {
        fetched.extend(done?);
    }
    // SCAN may return a key more than once.
    fetched.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    fetched.dedup_by(|a, b| a.0 == b.0);
    let mut bans = Bans::default();
    let (keys, entries) = by_id(parse_rows(fetched, &mut bans)?);
    *mirror = Some(Mirror {
        rules: RuleSet {
            entries,
            ..RuleSet::default()
        },
        entry_keys: keys,
        dedicated_keys: Vec::new(),
        bans,
    });
    Ok(())
}

/// Adds [`KEYSPACE_FLAGS`] to the server's `notify-keyspace-events`, keeping what is set.
pub async fn enable_keyspace_events(
    conn: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    let current: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(conn)
        .await?;
    let mut flags = current.get(1).cloned().unwrap_or_default();
    // `A` is an alias for every class, `g` and `h` among them.
    let has = |flags: &str, c: char| flags.contains(c) || (c != 'K' && flags.contains('A'));
    let missing: String = KEYSPACE_FLAGS
        .chars()
        .filter(|c| !has(&flags, *c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    flags.push_str(&missing);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(&flags)
        .query_async::<()>(conn)
        .await
}

async fn reload(
    conn: &mut MultiplexedConnection,
    config: &RedisConfig,
    mirror: &mut Option<Mirror>,
    change: &Change,
    events: &UnboundedSender<SourceEvent>,
) -> Outcome {
    let work = async {
        refresh(conn, &config.key_prefix, config.scan_count, mirror, change).await?;
        Ok::<_, RedisSourceError>(mirror.as_ref().map(|m| m.rules.clone()).unwrap_or_default())
    };
    load_and_report(
        SourceKind::Redis,
        events,
        work,
        RedisSourceError::Timeout,
        RedisSourceError::is_connection,
    )
    .await
}

/// Runs the source until the task is dropped: connect (a command connection and a pub/sub
/// connection), subscribe, load, then apply every burst of messages (those already queued
/// join one change: keyspace notifications re-read their keys, the writer's channel reloads
/// everything) and a full reload every `reload_interval`; when either connection is lost,
/// back off and start over with a full load.
pub async fn run(config: RedisConfig, events: UnboundedSender<SourceEvent>) {
    let kind = SourceKind::Redis;
    let target = redact_url(&config.url);
    let mut backoff = Backoff::new();
    let mut mirror: Option<Mirror> = None;
    loop {
        let started = Instant::now();
        let connected = async {
            let client = redis::Client::open(config.url.as_str())?;
            let settings = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(LOAD_TIMEOUT));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&settings)
                .await?;
            let mut pubsub =
                tokio::time::timeout(config.connect_timeout, client.get_async_pubsub())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "pub/sub connection timed out",
                        ))
                    })??;
            pubsub.subscribe(&config.channel).await?;
            let db = client.get_connection_info().redis_settings().db();
            if config.keyspace_notifications {
                if let Err(error) = enable_keyspace_events(&mut conn).await {
                    tracing::warn!(acl.source = kind.as_str(), %error, "cannot enable keyspace notifications (CONFIG SET refused?); relying on the pub/sub channel and the periodic reload");
                }
                pubsub
                    .psubscribe(format!(
                        "__keyspace@{db}__:{}{ADDRESS_KEY}*",
                        glob_escape(&config.key_prefix)
                    ))
                    .await?;
            }
            Ok::<_, redis::RedisError>((conn, pubsub, format!("__keyspace@{db}__:")))
        }
        .await;
        let (mut conn, mut pubsub, keyspace) = match connected {
            Ok(pair) => pair,
            Err(error) => {
                let _ = events.send(SourceEvent::Failed {
                    kind,
                    error: format!("redis: cannot connect to {target}: {error}"),
                    seconds: started.elapsed().as_secs_f64(),
                });
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        let _ = events.send(SourceEvent::Connected { kind, up: true });
        tracing::info!(acl.source = kind.as_str(), redis = %target, channel = %config.channel, "acl source connected");
        // Changes made while disconnected were never notified: start from a full load.
        let mut outcome = reload(&mut conn, &config, &mut mirror, &Change::full(), &events).await;
        if outcome != Outcome::Lost {
            backoff.reset();
            let mut ticker = tokio::time::interval(config.reload_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut messages = pubsub.on_message();
            loop {
                let mut change = Change::default();
                tokio::select! {
                    message = messages.next() => {
                        let Some(first) = message else {
                            break;
                        };
                        change.note(first.get_channel_name(), &keyspace);
                        while let Some(Some(next)) = messages.next().now_or_never() {
                            change.note(next.get_channel_name(), &keyspace);
                        }
                    }
                    _ = ticker.tick() => change = Change::full(),
                }
                // A refused change was not applied, and its keys will not be named again.
                if outcome == Outcome::Refused {
                    change = Change::full();
                }
                outcome = reload(&mut conn, &config, &mut mirror, &change, &events).await;
                if outcome == Outcome::Lost {
                    break;
                }
            }
        }
        let _ = events.send(SourceEvent::Connected { kind, up: false });
        tracing::warn!(acl.source = kind.as_str(), redis = %target, "acl source lost its connection; the last good rules stay in force");
        tokio::time::sleep(backoff.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;

    fn row(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn kamailio_row_with_mask_zero_is_a_host() {
        let fields = row(&[
            ("id", "7"),
            ("grp", "1"),
            ("ip_addr", "192.0.2.10"),
            ("mask", "0"),
            ("port", "0"),
            ("tag", "100001"),
        ]);
        let e = parse_row("address:entry::7", |n| fields.get(n).map(String::as_str)).unwrap();
        assert_eq!(e.network, "192.0.2.10/32".parse::<IpNet>().unwrap());
        assert_eq!((e.group, e.port, e.proto), (1, 0, Proto::Any));
        assert_eq!(&*e.ban, "100001");
        assert_eq!(&*e.origin, "redis address:entry::7");
    }

    #[test]
    fn platform_row_with_subnet_and_proto() {
        let fields = row(&[
            ("grp", "2"),
            ("ip_addr", "2001:db8::7"),
            ("mask", "48"),
            ("port", "5061"),
            ("proto", "TLS"),
            ("tag", "200002"),
        ]);
        let e = parse_row("address:entry:0b6f", |n| fields.get(n).map(String::as_str)).unwrap();
        assert_eq!(e.network, "2001:db8::/48".parse::<IpNet>().unwrap());
        assert_eq!((e.group, e.port, e.proto), (2, 5061, Proto::Tls));
    }

    #[test]
    fn bad_rows_name_key_field_and_value() {
        let base = [
            ("grp", "1"),
            ("ip_addr", "192.0.2.10"),
            ("mask", "32"),
            ("tag", "1"),
        ];
        let cases: [(&str, &str, &str); 6] = [
            ("grp", "0", "grp: invalid value \"0\""),
            ("grp", "-1", "grp: invalid value \"-1\""),
            (
                "ip_addr",
                "192.0.2.300",
                "ip_addr: invalid value \"192.0.2.300\"",
            ),
            ("mask", "33", "mask: invalid value \"33\""),
            ("tag", "", "tag: missing"),
            ("proto", "sctp", "proto: unknown proto \"sctp\""),
        ];
        for (name, value, expected) in cases {
            let mut fields = row(&base);
            fields.insert(name.to_owned(), value.to_owned());
            let error = parse_row("address:entry::9", |n| fields.get(n).map(String::as_str))
                .unwrap_err()
                .to_string();
            assert!(error.contains("address:entry::9"), "{error}");
            assert!(error.contains(expected), "{error} should say {expected}");
        }
    }

    #[test]
    fn patterns_escape_glob_characters() {
        assert_eq!(glob_escape("t[1]*?\\:"), "t\\[1\\]\\*\\?\\\\:");
    }
}
