//! Settings of the ACL store sources (issue 5): which sources are enabled, how their rules
//! combine, the PostgreSQL and Redis connections, and the last-known-good file. All of it is
//! optional; without any of these keys the edge uses the trunks file alone, as before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// An ACL source, as named in `acl.sources`, `acl.primary` and the `source` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    File,
    Postgres,
    Redis,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [SourceKind::File, SourceKind::Postgres, SourceKind::Redis];

    /// The metric label and log value.
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Postgres => "postgres",
            SourceKind::Redis => "redis",
        }
    }
}

/// How the rules of several sources make one snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Every source's last good rules together.
    #[default]
    Union,
    /// The primary's rules while it is healthy; otherwise the first healthy other source's.
    Primary,
}

pub(super) fn default_startup_wait_ms() -> u64 {
    5000
}
fn default_channel() -> String {
    "warp_edge_acl".to_owned()
}
fn default_store_reload_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    2000
}
fn default_scan_count() -> u32 {
    1000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PostgresFile {
    url: String,
    #[serde(default = "default_channel")]
    channel: String,
    #[serde(default = "default_store_reload_ms")]
    reload_interval_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisFile {
    url: String,
    #[serde(default)]
    key_prefix: String,
    #[serde(default = "default_channel")]
    channel: String,
    #[serde(default)]
    keyspace_notifications: bool,
    #[serde(default = "default_store_reload_ms")]
    reload_interval_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_scan_count")]
    scan_count: u32,
}

/// The `[acl]` keys of this module, as read from the file.
pub(super) struct SourcesFile {
    pub sources: Option<Vec<SourceKind>>,
    pub combine: Combine,
    pub primary: Option<SourceKind>,
    pub last_known_good: Option<PathBuf>,
    pub startup_wait_ms: u64,
    pub postgres: Option<PostgresFile>,
    pub redis: Option<RedisFile>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    pub url: String,
    /// The channel the triggers `NOTIFY` (the migrations' default is `warp_edge_acl`).
    pub channel: String,
    /// The safety-net full reload, on top of notifications.
    pub reload_interval: Duration,
    pub connect_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
    /// Put before every key: `{key_prefix}address:entry:...`. Empty by default.
    pub key_prefix: String,
    /// The pub/sub channel writers publish on after a change (`acl sync` does).
    pub channel: String,
    /// Also follow keyspace notifications (the edge enables them with `CONFIG SET`).
    pub keyspace_notifications: bool,
    pub reload_interval: Duration,
    pub connect_timeout: Duration,
    /// `SCAN ... COUNT`; each batch of keys is one pipeline of `HMGET`s.
    pub scan_count: u32,
}

/// Which ACL sources feed the snapshot and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcesConfig {
    /// Enabled sources, in order: the union lists their rules in this order, and with
    /// `primary` the fallbacks are tried in this order.
    pub enabled: Vec<SourceKind>,
    pub combine: Combine,
    /// With [`Combine::Primary`]: the preferred source.
    pub primary: Option<SourceKind>,
    pub postgres: Option<PostgresConfig>,
    pub redis: Option<RedisConfig>,
    /// Where the store sources' last good rules are written after each change, and read at
    /// start-up for a store that cannot be reached.
    pub last_known_good: Option<PathBuf>,
    /// How long start-up waits for the stores' first load before serving what it has.
    pub startup_wait: Duration,
}

impl SourcesConfig {
    /// The trunks file alone, as before issue 5.
    pub fn file_only() -> SourcesConfig {
        SourcesConfig {
            enabled: vec![SourceKind::File],
            combine: Combine::Union,
            primary: None,
            postgres: None,
            redis: None,
            last_known_good: None,
            startup_wait: Duration::from_millis(default_startup_wait_ms()),
        }
    }

    /// True when only the trunks file is enabled (the edge then runs exactly as before).
    pub fn is_file_only(&self) -> bool {
        self.enabled == [SourceKind::File]
    }
}

/// `scheme://user:password@host` with the password replaced, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn check_range(
    invalid: &dyn Fn(&str, String) -> ConfigError,
    key: &str,
    value: u64,
    low: u64,
    high: u64,
) -> Result<Duration, ConfigError> {
    if (low..=high).contains(&value) {
        Ok(Duration::from_millis(value))
    } else {
        Err(invalid(
            key,
            format!("invalid value {value}: expected {low} to {high}"),
        ))
    }
}

fn check_channel(
    invalid: &dyn Fn(&str, String) -> ConfigError,
    key: &str,
    channel: &str,
) -> Result<(), ConfigError> {
    // A PostgreSQL identifier is at most 63 bytes; the same rule keeps Redis names sane.
    if channel.is_empty() || channel.len() > 63 || channel.chars().any(char::is_whitespace) {
        return Err(invalid(
            key,
            format!("invalid value {channel:?}: 1 to 63 characters without spaces"),
        ));
    }
    Ok(())
}

/// Validates the source keys of `[acl]`; `base` is the config file's directory.
pub(super) fn validate(
    file: &Path,
    base: &Path,
    raw: SourcesFile,
) -> Result<SourcesConfig, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        message,
    };

    let postgres = match raw.postgres {
        None => None,
        Some(pg) => {
            if let Err(e) = crate::acl::sources::postgres::connect_options(&pg.url) {
                return Err(invalid(
                    "acl.postgres.url",
                    format!("invalid value {:?}: {e}", redact_url(&pg.url)),
                ));
            }
            check_channel(&invalid, "acl.postgres.channel", &pg.channel)?;
            Some(PostgresConfig {
                reload_interval: check_range(
                    &invalid,
                    "acl.postgres.reload_interval_ms",
                    pg.reload_interval_ms,
                    100,
                    3_600_000,
                )?,
                connect_timeout: check_range(
                    &invalid,
                    "acl.postgres.connect_timeout_ms",
                    pg.connect_timeout_ms,
                    100,
                    60_000,
                )?,
                url: pg.url,
                channel: pg.channel,
            })
        }
    };
    let redis = match raw.redis {
        None => None,
        Some(r) => {
            if let Err(e) = redis::Client::open(r.url.as_str()) {
                return Err(invalid(
                    "acl.redis.url",
                    format!("invalid value {:?}: {e}", redact_url(&r.url)),
                ));
            }
            check_channel(&invalid, "acl.redis.channel", &r.channel)?;
            if r.key_prefix.chars().any(|c| c.is_whitespace() || c == '*') {
                return Err(invalid(
                    "acl.redis.key_prefix",
                    format!(
                        "invalid value {:?}: no spaces or '*' (it is part of a SCAN pattern)",
                        r.key_prefix
                    ),
                ));
            }
            if !(10..=100_000).contains(&r.scan_count) {
                return Err(invalid(
                    "acl.redis.scan_count",
                    format!("invalid value {}: expected 10 to 100000", r.scan_count),
                ));
            }
            Some(RedisConfig {
                reload_interval: check_range(
                    &invalid,
                    "acl.redis.reload_interval_ms",
                    r.reload_interval_ms,
                    100,
                    3_600_000,
                )?,
                connect_timeout: check_range(
                    &invalid,
                    "acl.redis.connect_timeout_ms",
                    r.connect_timeout_ms,
                    100,
                    60_000,
                )?,
                url: r.url,
                key_prefix: r.key_prefix,
                channel: r.channel,
                keyspace_notifications: r.keyspace_notifications,
                scan_count: r.scan_count,
            })
        }
    };

    let configured = |kind: SourceKind| match kind {
        SourceKind::File => true,
        SourceKind::Postgres => postgres.is_some(),
        SourceKind::Redis => redis.is_some(),
    };
    let enabled = match raw.sources {
        None => [SourceKind::Postgres, SourceKind::Redis, SourceKind::File]
            .into_iter()
            .filter(|kind| configured(*kind))
            .collect(),
        Some(list) => {
            if list.is_empty() {
                return Err(invalid(
                    "acl.sources",
                    "invalid value []: at least one source is required".to_owned(),
                ));
            }
            for (i, kind) in list.iter().enumerate() {
                if list[..i].contains(kind) {
                    return Err(invalid(
                        &format!("acl.sources[{i}]"),
                        format!("invalid value {:?}: listed twice", kind.as_str()),
                    ));
                }
                if !configured(*kind) {
                    return Err(invalid(
                        &format!("acl.sources[{i}]"),
                        format!(
                            "invalid value {:?}: needs an [acl.{}] section",
                            kind.as_str(),
                            kind.as_str()
                        ),
                    ));
                }
            }
            for kind in [SourceKind::Postgres, SourceKind::Redis] {
                if configured(kind) && !list.contains(&kind) {
                    return Err(invalid(
                        &format!("acl.{}", kind.as_str()),
                        format!(
                            "configured but not listed in acl.sources {:?}",
                            list.iter().map(|k| k.as_str()).collect::<Vec<_>>()
                        ),
                    ));
                }
            }
            list
        }
    };
    let primary = match (raw.combine, raw.primary) {
        (Combine::Union, None) => None,
        (Combine::Union, Some(kind)) => {
            return Err(invalid(
                "acl.primary",
                format!(
                    "invalid value {:?}: only with acl.combine = \"primary\"",
                    kind.as_str()
                ),
            ));
        }
        (Combine::Primary, Some(kind)) if !enabled.contains(&kind) => {
            return Err(invalid(
                "acl.primary",
                format!(
                    "invalid value {:?}: not an enabled source (acl.sources)",
                    kind.as_str()
                ),
            ));
        }
        (Combine::Primary, Some(kind)) => Some(kind),
        (Combine::Primary, None) => enabled.first().copied(),
    };
    let startup_wait = check_range(
        &invalid,
        "acl.startup_wait_ms",
        raw.startup_wait_ms,
        0,
        600_000,
    )?;
    Ok(SourcesConfig {
        enabled,
        combine: raw.combine,
        primary,
        postgres,
        redis,
        last_known_good: raw.last_known_good.map(|path| base.join(path)),
        startup_wait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://edge:s3cret@db.example:5432/platform?sslmode=require"),
            "postgres://edge:***@db.example:5432/platform?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres://edge@db/platform"),
            "postgres://edge@db/platform"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
