//! The PostgreSQL source: the platform's `accounts` schema (see `migrations/`). Every read is
//! one REPEATABLE READ, READ ONLY transaction, so the source never mixes two states of the
//! database.
//!
//! The source keeps a [`Mirror`] of the store and `LISTEN`s on the channel the schema's
//! triggers `NOTIFY` (at COMMIT). Migration 2 makes the trunk IP and dedicated IP triggers name
//! the changed rows, so a change costs a re-read of those rows, merged into the mirror, not a
//! reload of the whole table (at 100k entries: about 1 ms against about 150 ms). Notifications
//! already queued join one change; a statement that touched more than 100 rows, a burst naming
//! more than [`MAX_DELTA_IDS`], a TRUNCATE, an unknown payload, the periodic safety net and
//! every (re)connection read everything. One connection does both: `LISTEN` is issued before
//! the first load, so nothing committed after that load is missed. A lost connection is
//! reported, retried with backoff, and followed by a full reload.
//!
//! This module reads; it never writes to the database (the migrations and `acl sync` live
//! beside it as their own entry points).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions, PgRow};
use sqlx::{Acquire, Postgres, Row};
use tokio::sync::mpsc::UnboundedSender;

use super::mirror::{by_id, merge, Bans, Mirror};
use super::{load_and_report, Backoff, Outcome, SourceEvent};
use crate::acl::rules::{
    AclEntry, AuthType, Customer, CustomerStatus, DedicatedIp, Proto, RuleSet, TrunkGroup,
};
use crate::config::{redact_url, PostgresConfig, SourceKind};

/// The migrations that create the `accounts` schema, embedded so `warp-edge db migrate` needs
/// no files at run time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `application_name` of the source's connection (operators find it in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "warp-edge-acl";

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("postgres: {table} {id}: {message}")]
    Row {
        table: &'static str,
        id: String,
        message: String,
    },
    #[error("postgres: the load took longer than {0:?}")]
    Timeout(Duration),
}

impl PostgresError {
    /// True when the connection is unusable (reconnect), false for a bad row.
    fn is_connection(&self) -> bool {
        match self {
            PostgresError::Sql(e) => !matches!(e, sqlx::Error::Database(_)),
            PostgresError::Row { .. } => false,
            PostgresError::Timeout(_) => true,
        }
    }
}

fn row_error(table: &'static str, id: impl ToString, message: String) -> PostgresError {
    PostgresError::Row {
        table,
        id: id.to_string(),
        message,
    }
}

/// Connection options for `url`, named for `pg_stat_activity`.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(sqlx::Error::Configuration(
            "expected postgres:// or postgresql://".into(),
        ));
    }
    Ok(url
        .parse::<PgConnectOptions>()?
        .application_name(APPLICATION_NAME))
}

// === reading ===

/// Above this many row ids gathered from one burst of notifications, a full reload is cheaper
/// than a delta.
pub const MAX_DELTA_IDS: usize = 1000;

const CUSTOMERS: &str =
    "SELECT ban::text, name::text, status::text FROM accounts.customers ORDER BY ban";

const TRUNK_GROUPS: &str = "SELECT id::int8, customer_ban::text, name::text, auth_type::text, \
     max_cps::int8, max_concurrent_calls::int8, route_name::text, enabled \
     FROM accounts.trunk_groups ORDER BY id";

// `network()` masks host bits, as Kamailio masks its subnets. No ORDER BY: sorting 100k rows
// in the database costs more than the rest of the query; the mirror sorts by id itself.
const TRUNK_IPS: &str = "SELECT ti.id::text, ti.trunk_group_id::int8, network(ti.ip)::text, \
     ti.port::int4, ti.proto::text, tg.customer_ban::text, ti.description::text \
     FROM accounts.trunk_ips ti JOIN accounts.trunk_groups tg ON tg.id = ti.trunk_group_id \
     WHERE ti.enabled";

/// The rows of [`TRUNK_IPS`] a delta names. The cast follows the migrations' UUID ids; a
/// platform table with other ids fails it, and the source falls back to a full reload.
const TRUNK_IPS_NAMED: &str = " AND ti.id = ANY($1::text[]::uuid[])";

const DEDICATED_IPS: &str = "SELECT id::text, host(ip), customer_ban::text, \
     resource_name::text FROM accounts.customer_dedicated_ips WHERE enabled";

const DEDICATED_IPS_NAMED: &str = " AND id = ANY($1::text[]::int8[])";

/// What a burst of notifications asks the source to re-read. Payloads are the migrations':
/// `trunk_ips:<id>,<id>` or `customer_dedicated_ips:<id>` name rows (migration 2); the bare
/// name of `customers` or `trunk_groups` asks for those small tables; anything else (a bare
/// big table, a TRUNCATE, an unknown payload) asks for everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    full: bool,
    small_tables: bool,
    trunk_ips: BTreeSet<String>,
    dedicated_ips: BTreeSet<String>,
}

impl Change {
    /// A full reload (start-up, reconnection, the safety net).
    pub fn full() -> Change {
        Change {
            full: true,
            ..Change::default()
        }
    }

    /// Adds one notification's payload.
    pub fn note(&mut self, payload: &str) {
        let (table, ids) = match payload.split_once(':') {
            Some((table, ids)) => (table, Some(ids)),
            None => (payload, None),
        };
        let named = match table {
            "customers" | "trunk_groups" if ids.is_none() => {
                self.small_tables = true;
                return;
            }
            "trunk_ips" => &mut self.trunk_ips,
            "customer_dedicated_ips" => &mut self.dedicated_ips,
            _ => {
                self.full = true;
                return;
            }
        };
        match ids {
            Some(ids) if !ids.is_empty() && !self.full => {
                named.extend(ids.split(',').map(str::to_owned));
                if self.trunk_ips.len() + self.dedicated_ips.len() > MAX_DELTA_IDS {
                    self.full = true;
                }
            }
            _ => self.full = true,
        }
    }

    pub fn is_full(&self) -> bool {
        self.full
    }
}

fn customer(row: &PgRow) -> Result<Customer, PostgresError> {
    let ban: String = row.try_get(0)?;
    let status: String = row.try_get(2)?;
    let status = match status.to_ascii_lowercase().as_str() {
        "active" => CustomerStatus::Active,
        "suspended" => CustomerStatus::Suspended,
        "closed" => CustomerStatus::Closed,
        _ => {
            return Err(row_error(
                "customers",
                &ban,
                format!("status: invalid value {status:?}"),
            ))
        }
    };
    Ok(Customer {
        name: row.try_get(1)?,
        ban,
        status,
    })
}

fn trunk_group(row: &PgRow) -> Result<TrunkGroup, PostgresError> {
    let id: i64 = row.try_get(0)?;
    let auth: String = row.try_get(3)?;
    let auth_type = match auth.to_ascii_uppercase().as_str() {
        "IP_ACL" => AuthType::IpAcl,
        "DIGEST" => AuthType::Digest,
        "BOTH" => AuthType::Both,
        _ => {
            return Err(row_error(
                "trunk_groups",
                id,
                format!("auth_type: invalid value {auth:?}"),
            ))
        }
    };
    let limit = |column: usize, name: &str| -> Result<Option<u32>, PostgresError> {
        let value: Option<i64> = row.try_get(column)?;
        value
            .map(|v| {
                u32::try_from(v).map_err(|_| {
                    row_error("trunk_groups", id, format!("{name}: invalid value {v}"))
                })
            })
            .transpose()
    };
    Ok(TrunkGroup {
        id,
        ban: row.try_get(1)?,
        name: row.try_get(2)?,
        auth_type,
        max_cps: limit(4, "max_cps")?,
        max_concurrent_calls: limit(5, "max_concurrent_calls")?,
        route: row.try_get(6)?,
        enabled: row.try_get(7)?,
    })
}

/// A trunk IP row and its id. Entries get the edge's `group` (the schema has no Kamailio
/// `grp`: every row applies to every edge).
fn entry(row: &PgRow, group: u32, bans: &mut Bans) -> Result<(Box<str>, AclEntry), PostgresError> {
    let id: String = row.try_get(0)?;
    let network: String = row.try_get(2)?;
    let network = crate::config::parse_cidr(&network)
        .map_err(|m| row_error("trunk_ips", &id, format!("ip: {m}")))?;
    let port: i32 = row.try_get(3)?;
    let port = u16::try_from(port)
        .map_err(|_| row_error("trunk_ips", &id, format!("port: invalid value {port}")))?;
    let proto: String = row.try_get(4)?;
    let proto: Proto = proto
        .parse()
        .map_err(|m| row_error("trunk_ips", &id, format!("proto: {m}")))?;
    let description: String = row.try_get::<Option<String>, _>(6)?.unwrap_or_default();
    let origin = if description.is_empty() {
        format!("postgres trunk_ips {id}")
    } else {
        format!("postgres trunk_ips {id} ({description})")
    };
    let entry = AclEntry {
        origin: origin.into(),
        group,
        network,
        port,
        proto,
        ban: bans.get(row.try_get::<&str, _>(5)?),
        trunk_group: Some(row.try_get(1)?),
    };
    Ok((id.into_boxed_str(), entry))
}

fn dedicated_ip(row: &PgRow) -> Result<(Box<str>, DedicatedIp), PostgresError> {
    let id: String = row.try_get(0)?;
    let ip: String = row.try_get(1)?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| {
        row_error(
            "customer_dedicated_ips",
            &id,
            format!("ip: invalid value {ip:?}"),
        )
    })?;
    let resource: String = row.try_get::<Option<String>, _>(3)?.unwrap_or_default();
    let origin = if resource.is_empty() {
        format!("postgres customer_dedicated_ips {id}")
    } else {
        format!("postgres customer_dedicated_ips {id} ({resource})")
    };
    let row = DedicatedIp {
        origin,
        ip: ip.to_canonical(),
        ban: row.try_get(2)?,
    };
    Ok((id.into_boxed_str(), row))
}

/// Runs `sql` (binding `ids` when given) and decodes every row.
async fn read<T>(
    tx: &mut PgConnection,
    sql: &str,
    ids: Option<&BTreeSet<String>>,
    mut decode: impl FnMut(&PgRow) -> Result<T, PostgresError>,
) -> Result<Vec<T>, PostgresError> {
    let mut query = sqlx::query(sql);
    if let Some(ids) = ids {
        query = query.bind(ids.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let mut rows = query.fetch(tx);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        out.push(decode(&row)?);
    }
    Ok(out)
}

/// Reads the whole ACL in one consistent snapshot of the database.
pub async fn load<'c, A>(conn: A, group: u32) -> Result<RuleSet, PostgresError>
where
    A: Acquire<'c, Database = Postgres>,
{
    let mut mirror = None;
    refresh(conn, group, &mut mirror, &Change::full()).await?;
    Ok(mirror.map(|m| m.rules).unwrap_or_default())
}

/// Brings `mirror` up to date with what `change` names, in one REPEATABLE READ, READ ONLY
/// transaction: everything when the change is full or there is no mirror yet; otherwise the
/// named rows, plus customers and trunk groups when they changed or a named row belongs to a
/// trunk group the mirror does not know. When a trunk group moved to another customer (its
/// entries' BAN changed) every trunk IP and dedicated IP is re-read in the same transaction. All reads finish
/// before the mirror changes, so an error leaves it as it was.
pub async fn refresh<'c, A>(
    conn: A,
    group: u32,
    mirror: &mut Option<Mirror>,
    change: &Change,
) -> Result<(), PostgresError>
where
    A: Acquire<'c, Database = Postgres>,
{
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let current = mirror.as_mut().filter(|_| !change.full);
    let Some(current) = current else {
        let customers = read(&mut tx, CUSTOMERS, None, customer).await?;
        let trunk_groups = read(&mut tx, TRUNK_GROUPS, None, trunk_group).await?;
        let mut bans = Bans::default();
        let entries = read(&mut tx, TRUNK_IPS, None, |r| entry(r, group, &mut bans)).await?;
        let dedicated = read(&mut tx, DEDICATED_IPS, None, dedicated_ip).await?;
        tx.commit().await?;
        let (entry_keys, entries) = by_id(entries);
        let (dedicated_keys, dedicated_ips) = by_id(dedicated);
        *mirror = Some(Mirror {
            rules: RuleSet {
                customers,
                trunk_groups,
                entries,
                dedicated_ips,
            },
            entry_keys,
            dedicated_keys,
            bans,
        });
        return Ok(());
    };

    let named_entries = if change.trunk_ips.is_empty() {
        Vec::new()
    } else {
        let sql = format!("{TRUNK_IPS}{TRUNK_IPS_NAMED}");
        read(&mut tx, &sql, Some(&change.trunk_ips), |r| {
            entry(r, group, &mut current.bans)
        })
        .await?
    };
    let named_dedicated = if change.dedicated_ips.is_empty() {
        Vec::new()
    } else {
        let sql = format!("{DEDICATED_IPS}{DEDICATED_IPS_NAMED}");
        read(&mut tx, &sql, Some(&change.dedicated_ips), dedicated_ip).await?
    };
    // Trunk groups are read in id order.
    let known = |id: i64| {
        current
            .rules
            .trunk_groups
            .binary_search_by_key(&id, |t| t.id)
            .is_ok()
    };
    let small_tables = change.small_tables
        || named_entries
            .iter()
            .any(|(_, e)| e.trunk_group.is_some_and(|id| !known(id)));
    let mut small = None;
    // Rows come back with the ids the triggers sent (both are `id::text`); a row that does
    // not could not be merged, so everything is read instead.
    let mut everything = named_entries
        .iter()
        .any(|(id, _)| !change.trunk_ips.contains(&**id))
        || named_dedicated
            .iter()
            .any(|(id, _)| !change.dedicated_ips.contains(&**id));
    if small_tables {
        let customers = read(&mut tx, CUSTOMERS, None, customer).await?;
        let trunk_groups = read(&mut tx, TRUNK_GROUPS, None, trunk_group).await?;
        let ban_of: HashMap<i64, &str> = trunk_groups
            .iter()
            .map(|t| (t.id, t.ban.as_str()))
            .collect();
        // A trunk group that moved to another customer changes its entries' BAN.
        everything |= current
            .rules
            .trunk_groups
            .iter()
            .any(|t| ban_of.get(&t.id).is_some_and(|ban| *ban != t.ban));
        small = Some((customers, trunk_groups));
    }
    let all = if everything {
        let entries = read(&mut tx, TRUNK_IPS, None, |r| {
            entry(r, group, &mut current.bans)
        })
        .await?;
        let dedicated = read(&mut tx, DEDICATED_IPS, None, dedicated_ip).await?;
        Some((entries, dedicated))
    } else {
        None
    };
    tx.commit().await?;

    if let Some((customers, trunk_groups)) = small {
        current.rules.customers = customers;
        current.rules.trunk_groups = trunk_groups;
    }
    match all {
        Some((entries, dedicated)) => {
            (current.entry_keys, current.rules.entries) = by_id(entries);
            (current.dedicated_keys, current.rules.dedicated_ips) = by_id(dedicated);
        }
        None => {
            merge(
                &mut current.entry_keys,
                &mut current.rules.entries,
                &change.trunk_ips,
                by_id(named_entries),
            );
            merge(
                &mut current.dedicated_keys,
                &mut current.rules.dedicated_ips,
                &change.dedicated_ips,
                by_id(named_dedicated),
            );
        }
    }
    Ok(())
}

async fn connect(config: &PostgresConfig) -> Result<PgListener, sqlx::Error> {
    // A pool of one: PgListener wants a pool, and reconnection is ours (with backoff and a
    // full reload), not the pool's.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(config.connect_timeout)
        .max_lifetime(None)
        .idle_timeout(None)
        .test_before_acquire(false)
        .connect_with(connect_options(&config.url)?)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(&config.channel).await?;
    Ok(listener)
}

/// Applies `change` to the mirror under a deadline and reports the source's new rules. A delta
/// the database refuses (say, a platform table whose ids are not UUIDs) falls back to a full
/// reload.
async fn reload(
    listener: &mut PgListener,
    group: u32,
    mirror: &mut Option<Mirror>,
    change: &Change,
    events: &UnboundedSender<SourceEvent>,
) -> Outcome {
    let work = async {
        match refresh(&mut *listener, group, mirror, change).await {
            Err(error) if !change.is_full() && !error.is_connection() => {
                tracing::warn!(%error, "acl delta refused; reloading everything");
                refresh(&mut *listener, group, mirror, &Change::full()).await
            }
            done => done,
        }?;
        Ok(Arc::new(
            mirror.as_ref().map(|m| m.rules.clone()).unwrap_or_default(),
        ))
    };
    load_and_report(
        SourceKind::Postgres,
        events,
        work,
        PostgresError::Timeout,
        PostgresError::is_connection,
    )
    .await
}

/// Runs the source until the task is dropped: connect, `LISTEN`, load, then apply every burst
/// of notifications (coalesced: everything already queued joins one change) and a full reload
/// every `reload_interval`; on a lost connection, back off and start over with a full load.
pub async fn run(config: PostgresConfig, group: u32, events: UnboundedSender<SourceEvent>) {
    let kind = SourceKind::Postgres;
    let mut backoff = Backoff::new();
    let target = redact_url(&config.url);
    let mut mirror: Option<Mirror> = None;
    loop {
        let started = Instant::now();
        let mut listener = match connect(&config).await {
            Ok(listener) => listener,
            Err(error) => {
                let _ = events.send(SourceEvent::Failed {
                    kind,
                    error: format!("postgres: cannot connect to {target}: {error}"),
                    seconds: started.elapsed().as_secs_f64(),
                });
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        let _ = events.send(SourceEvent::Connected { kind, up: true });
        tracing::info!(acl.source = kind.as_str(), db = %target, channel = %config.channel, "acl source connected");
        // Changes made while disconnected were never notified: start from a full load.
        let mut outcome = reload(&mut listener, group, &mut mirror, &Change::full(), &events).await;
        if outcome != Outcome::Lost {
            backoff.reset();
            let mut ticker = tokio::time::interval(config.reload_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                let mut change = Change::default();
                tokio::select! {
                    notification = listener.try_recv() => match notification {
                        Ok(Some(first)) => {
                            change.note(first.payload());
                            while let Some(next) = listener.next_buffered() {
                                change.note(next.payload());
                            }
                        }
                        Ok(None) | Err(_) => break,
                    },
                    _ = ticker.tick() => change = Change::full(),
                }
                // A refused change was not applied, and its rows will not be named again.
                if outcome == Outcome::Refused {
                    change = Change::full();
                }
                outcome = reload(&mut listener, group, &mut mirror, &change, &events).await;
                if outcome == Outcome::Lost {
                    break;
                }
            }
        }
        let _ = events.send(SourceEvent::Connected { kind, up: false });
        tracing::warn!(acl.source = kind.as_str(), db = %target, "acl source lost its connection; the last good rules stay in force");
        drop(listener);
        tokio::time::sleep(backoff.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn payloads_name_rows_or_ask_for_everything() {
        let mut change = Change::default();
        change.note("trunk_ips:b,a");
        change.note("customer_dedicated_ips:7");
        change.note("trunk_ips:c");
        change.note("customers");
        assert!(!change.is_full());
        assert!(change.small_tables);
        assert_eq!(change.trunk_ips, set(&["a", "b", "c"]));
        assert_eq!(change.dedicated_ips, set(&["7"]));
        for everything in [
            "trunk_ips",
            "customer_dedicated_ips",
            "trunk_ips:",
            "x",
            "customers:1",
        ] {
            let mut change = Change::default();
            change.note(everything);
            assert!(change.is_full(), "{everything}");
        }
        let mut change = Change::default();
        let ids: Vec<String> = (0..=MAX_DELTA_IDS).map(|i| i.to_string()).collect();
        change.note(&format!("trunk_ips:{}", ids.join(",")));
        assert!(change.is_full(), "too many ids for a delta");
    }
}
