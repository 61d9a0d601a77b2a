//! The PostgreSQL source: the platform's `accounts` schema (see `migrations/`) read whole in
//! one REPEATABLE READ, READ ONLY transaction, so a reload never mixes two states of the
//! database. It `LISTEN`s on the channel the schema's triggers `NOTIFY` (per statement, at
//! COMMIT) and reloads on each notification, draining those already queued first so a burst
//! costs one or two reloads; a periodic full reload is the safety net. One connection does
//! both: `LISTEN` is issued before the first load, so nothing committed after that load is
//! missed. A lost connection is reported, retried with backoff, and followed by a full reload.
//!
//! This module reads; it never writes to the database (the migrations and `acl sync` live
//! beside it as their own entry points).

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Acquire, Postgres, Row};
use tokio::sync::mpsc::UnboundedSender;

use super::{load_and_report, Backoff, SourceEvent};
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

/// Reads the whole ACL in one consistent snapshot of the database. Entries get the edge's
/// `group` (the schema has no Kamailio `grp`: every row applies to every edge).
pub async fn load<'c, A>(conn: A, group: u32) -> Result<RuleSet, PostgresError>
where
    A: Acquire<'c, Database = Postgres>,
{
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut rules = RuleSet::default();

    let mut rows = sqlx::query(
        "SELECT ban::text, name::text, status::text FROM accounts.customers ORDER BY ban",
    )
    .fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
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
        rules.customers.push(Customer {
            name: row.try_get(1)?,
            ban,
            status,
        });
    }
    drop(rows);

    let mut rows = sqlx::query(
        "SELECT id::int8, customer_ban::text, name::text, auth_type::text, max_cps::int8, \
         max_concurrent_calls::int8, route_name::text, enabled \
         FROM accounts.trunk_groups ORDER BY id",
    )
    .fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
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
        rules.trunk_groups.push(TrunkGroup {
            id,
            ban: row.try_get(1)?,
            name: row.try_get(2)?,
            auth_type,
            max_cps: limit(4, "max_cps")?,
            max_concurrent_calls: limit(5, "max_concurrent_calls")?,
            route: row.try_get(6)?,
            enabled: row.try_get(7)?,
        });
    }
    drop(rows);

    // `network()` masks host bits, as Kamailio masks its subnets.
    let mut rows = sqlx::query(
        "SELECT ti.id::text, ti.trunk_group_id::int8, network(ti.ip)::text, ti.port::int4, \
         ti.proto::text, tg.customer_ban::text, ti.description::text \
         FROM accounts.trunk_ips ti JOIN accounts.trunk_groups tg ON tg.id = ti.trunk_group_id \
         WHERE ti.enabled ORDER BY ti.id",
    )
    .fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
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
        rules.entries.push(AclEntry {
            origin,
            group,
            network,
            port,
            proto,
            ban: row.try_get(5)?,
            trunk_group: Some(row.try_get(1)?),
        });
    }
    drop(rows);

    let mut rows = sqlx::query(
        "SELECT id::int8, host(ip), customer_ban::text, resource_name::text \
         FROM accounts.customer_dedicated_ips WHERE enabled ORDER BY id",
    )
    .fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
        let id: i64 = row.try_get(0)?;
        let ip: String = row.try_get(1)?;
        let ip: std::net::IpAddr = ip.parse().map_err(|_| {
            row_error(
                "customer_dedicated_ips",
                id,
                format!("ip: invalid value {ip:?}"),
            )
        })?;
        let resource: String = row.try_get::<Option<String>, _>(3)?.unwrap_or_default();
        let origin = if resource.is_empty() {
            format!("postgres customer_dedicated_ips {id}")
        } else {
            format!("postgres customer_dedicated_ips {id} ({resource})")
        };
        rules.dedicated_ips.push(DedicatedIp {
            origin,
            ip: ip.to_canonical(),
            ban: row.try_get(2)?,
        });
    }
    drop(rows);
    tx.commit().await?;
    Ok(rules)
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

/// Loads with a deadline and reports the outcome; `false` when the connection is unusable.
async fn reload(
    listener: &mut PgListener,
    group: u32,
    events: &UnboundedSender<SourceEvent>,
) -> bool {
    load_and_report(
        SourceKind::Postgres,
        events,
        load(&mut *listener, group),
        PostgresError::Timeout,
        PostgresError::is_connection,
    )
    .await
}

/// Runs the source until the task is dropped: connect, `LISTEN`, load, then reload on every
/// notification and every `reload_interval`; on a lost connection, back off and start over.
pub async fn run(config: PostgresConfig, group: u32, events: UnboundedSender<SourceEvent>) {
    let kind = SourceKind::Postgres;
    let mut backoff = Backoff::new();
    let target = redact_url(&config.url);
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
        if reload(&mut listener, group, &events).await {
            backoff.reset();
            let mut ticker = tokio::time::interval(config.reload_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    notification = listener.try_recv() => match notification {
                        Ok(Some(_)) => {
                            // Everything already queued is covered by the reload below.
                            while listener.next_buffered().is_some() {}
                        }
                        Ok(None) | Err(_) => break,
                    },
                    _ = ticker.tick() => {}
                }
                if !reload(&mut listener, group, &events).await {
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
