//! `warp-edge acl sync`: writes the PostgreSQL state into Redis in the platform's address
//! format (what the platform's API does on every change), so the two stores can be checked
//! against each other and an edge can run from either.
//!
//! Only rows that admit calls are written, as Kamailio's table has no notion of a disabled
//! row or a suspended customer: enabled trunk IPs on enabled trunk groups of active
//! customers. Each is a hash at `{prefix}address:entry:<trunk_ips.id>` with the fields id,
//! grp, ip_addr, mask (the prefix length; 32 or 128 for a host), port, proto and tag (the
//! BAN). Platform-format keys no longer in PostgreSQL are deleted; Kamailio-format keys
//! (`address:entry::<id>`) belong to other writers and are left alone. Everything is written
//! in one MULTI/EXEC, then `PUBLISH {channel} sync` tells the edges.

use futures_util::TryStreamExt;
use sqlx::{Connection, Row};

use super::postgres::{connect_options, PostgresError};
use super::redis::{glob_escape, scan_page, ADDRESS_KEY, VERSION_KEY};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> SyncError {
        SyncError::Postgres(PostgresError::Sql(e))
    }
}

/// What a sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub written: usize,
    pub deleted: usize,
}

/// One row as the platform writes it.
struct AddressRow {
    id: String,
    ip: String,
    mask: i32,
    port: i32,
    proto: String,
    tag: String,
}

pub async fn sync(
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    channel: &str,
    group: u32,
) -> Result<SyncReport, SyncError> {
    let mut pg =
        sqlx::postgres::PgConnection::connect_with(&connect_options(database_url)?).await?;
    let mut tx = pg.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut rows = sqlx::query(
        "SELECT ti.id::text, host(network(ti.ip)), masklen(ti.ip), ti.port::int4, ti.proto::text, \
         tg.customer_ban::text \
         FROM accounts.trunk_ips ti \
         JOIN accounts.trunk_groups tg ON tg.id = ti.trunk_group_id \
         JOIN accounts.customers c ON c.ban = tg.customer_ban \
         WHERE ti.enabled AND tg.enabled AND c.status = 'active' ORDER BY ti.id",
    )
    .fetch(&mut *tx);
    let mut wanted = Vec::new();
    while let Some(row) = rows.try_next().await? {
        wanted.push(AddressRow {
            id: row.try_get(0)?,
            ip: row.try_get(1)?,
            mask: row.try_get(2)?,
            port: row.try_get(3)?,
            proto: row.try_get(4)?,
            tag: row.try_get(5)?,
        });
    }
    drop(rows);
    tx.commit().await?;
    drop(pg);

    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let platform_prefix = format!("{prefix}{ADDRESS_KEY}");
    let pattern = format!("{}*", glob_escape(&platform_prefix));
    let mut existing = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found) = scan_page(&mut conn, cursor, &pattern, 1000).await?;
        existing.extend(found);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let wanted_keys: std::collections::HashSet<String> = wanted
        .iter()
        .map(|r| format!("{platform_prefix}{}", r.id))
        .collect();
    // Platform keys only: `address:entry:<uuid>`, not Kamailio's `address:entry::<id>`.
    let mut stale: Vec<String> = existing
        .into_iter()
        .filter(|k| {
            k.strip_prefix(&platform_prefix)
                .is_some_and(|id| !id.starts_with(':'))
                && !wanted_keys.contains(k)
        })
        .collect();
    stale.sort_unstable();
    stale.dedup();

    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in &stale {
        pipe.cmd("DEL").arg(key).ignore();
    }
    let group = group.to_string();
    for row in &wanted {
        let key = format!("{platform_prefix}{}", row.id);
        pipe.cmd("DEL").arg(&key).ignore();
        pipe.cmd("HSET")
            .arg(&key)
            .arg("id")
            .arg(&row.id)
            .arg("grp")
            .arg(&group)
            .arg("ip_addr")
            .arg(&row.ip)
            .arg("mask")
            .arg(row.mask)
            .arg("port")
            .arg(row.port)
            .arg("proto")
            .arg(&row.proto)
            .arg("tag")
            .arg(&row.tag)
            .ignore();
    }
    pipe.cmd("SET")
        .arg(format!("{prefix}{VERSION_KEY}"))
        .arg(6)
        .ignore();
    pipe.query_async::<()>(&mut conn).await?;
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg("sync")
        .query_async::<i64>(&mut conn)
        .await?;
    Ok(SyncReport {
        written: wanted.len(),
        deleted: stale.len(),
    })
}
