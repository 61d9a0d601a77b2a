//! The command line: `run`, `check`, `acl explain`, `acl sync`, `db migrate`. `main.rs`
//! parses it and calls [`dispatch`]; configuration errors become exit code 64.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::acl::rules::Proto;
use crate::acl::{AclRequest, Snapshot};
use crate::config::{Config, ConfigError, TrunksFile, EXIT_CONFIG};
use crate::edge::StartError;

const DEFAULT_CONFIG: &str = "config/warp-edge.toml";

/// SIP edge proxy for the WARP wholesale trunking platform.
#[derive(Debug, Parser)]
#[command(name = "warp-edge", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the edge.
    Run(ConfigArg),
    /// Validate the configuration and the trunks file, and print a summary.
    Check(ConfigArg),
    /// Inspect the IP ACL, or copy it between stores.
    #[command(subcommand)]
    Acl(AclCommand),
    /// The platform database (PostgreSQL).
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the embedded migrations (the `accounts` schema, its functions and triggers).
    /// Already applied migrations are skipped, so running it twice is harmless.
    Migrate {
        /// `postgres://user:password@host:port/database`
        #[arg(long)]
        database_url: String,
    },
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The edge's config file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Print the decision for a request and the rule that made it.
    Explain {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The request's source: IP or IP:PORT (an IPv6 address with a port in brackets).
        #[arg(long, value_parser = parse_source)]
        source: SocketAddr,
        /// The local IP the request arrived on (for dedicated-IP customers).
        #[arg(long)]
        dest: Option<IpAddr>,
        #[arg(long, default_value = "udp", value_parser = parse_transport)]
        transport: Proto,
    },
    /// Write the PostgreSQL ACL into Redis in the platform's address format, delete
    /// platform keys PostgreSQL no longer has, and publish on the edges' channel.
    Sync {
        #[arg(long)]
        database_url: String,
        /// `redis://[:password@]host:port[/db]`
        #[arg(long)]
        redis_url: String,
        /// Put before every key (the edges' `acl.redis.key_prefix`).
        #[arg(long, default_value = "")]
        prefix: String,
        /// The pub/sub channel the edges listen on (`acl.redis.channel`).
        #[arg(long, default_value = "warp_edge_acl")]
        channel: String,
        /// The Kamailio group (`grp`) written on every row.
        #[arg(long, default_value_t = 1)]
        group: u32,
    },
}

fn parse_source(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| format!("{text:?} is not IP or IP:PORT"))
}

fn parse_transport(text: &str) -> Result<Proto, String> {
    match text.parse::<Proto>()? {
        Proto::Any => Err("transport must be udp, tcp or tls".to_owned()),
        proto => Ok(proto),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// A bad argument (a URL that does not parse).
    #[error("{0}")]
    Usage(String),
    /// A store refused or failed (`db migrate`, `acl sync`).
    #[error("{0}")]
    Store(String),
}

impl CliError {
    /// 64 for anything the operator must fix in configuration; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Config(_) | CliError::Start(StartError::Acl { .. }) | CliError::Usage(_) => {
                EXIT_CONFIG
            }
            CliError::Start(StartError::Bind { .. })
            | CliError::Runtime(_)
            | CliError::Store(_) => 1,
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(ConfigArg { config }) => {
            let (config, trunks) = Config::load_all(&config)?;
            crate::telemetry::init_tracing(&config.log_level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            runtime.block_on(crate::edge::run(&config, trunks))?;
            Ok(())
        }
        Command::Check(ConfigArg { config }) => {
            let (config, trunks, snapshot) = load_snapshot(&config)?;
            print!("{}", summary(&config, &trunks, &snapshot));
            Ok(())
        }
        Command::Acl(AclCommand::Explain {
            config,
            source,
            dest,
            transport,
        }) => {
            let (_, _, snapshot) = load_snapshot(&config)?;
            let local = dest.unwrap_or(match source {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            });
            println!(
                "{}",
                snapshot.explain(&AclRequest {
                    source,
                    local,
                    transport
                })
            );
            Ok(())
        }
        Command::Db(DbCommand::Migrate { database_url }) => {
            let options = crate::acl::sources::postgres::connect_options(&database_url)
                .map_err(|e| usage("--database-url", &database_url, e))?;
            block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::postgres::PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| store("postgres", e))?;
                crate::acl::sources::postgres::MIGRATOR
                    .run(&mut conn)
                    .await
                    .map_err(|e| store("migrate", e))?;
                let applied = crate::acl::sources::postgres::MIGRATOR.iter().count();
                println!(
                    "migrations: {applied} known, all applied to {}",
                    crate::config::redact_url(&database_url)
                );
                Ok(())
            })
        }
        Command::Acl(AclCommand::Sync {
            database_url,
            redis_url,
            prefix,
            channel,
            group,
        }) => {
            crate::acl::sources::postgres::connect_options(&database_url)
                .map_err(|e| usage("--database-url", &database_url, e))?;
            redis::Client::open(redis_url.as_str())
                .map_err(|e| usage("--redis-url", &redis_url, e))?;
            if group == 0 {
                return Err(CliError::Usage(
                    "--group: invalid value 0: groups start at 1".to_owned(),
                ));
            }
            block_on(async {
                let report = crate::acl::sources::sync::sync(
                    &database_url,
                    &redis_url,
                    &prefix,
                    &channel,
                    group,
                )
                .await
                .map_err(|e| store("acl sync", e))?;
                println!(
                    "acl sync: {} entries written, {} stale entries deleted, published on {channel}",
                    report.written, report.deleted
                );
                Ok(())
            })
        }
    }
}

fn usage(flag: &str, url: &str, error: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!(
        "{flag}: invalid value {:?}: {error}",
        crate::config::redact_url(url)
    ))
}

fn store(what: &str, error: impl std::fmt::Display) -> CliError {
    CliError::Store(format!("{what}: {error}"))
}

/// Runs one store command on a small runtime of its own.
fn block_on(
    future: impl std::future::Future<Output = Result<(), CliError>>,
) -> Result<(), CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(future)
}

/// The config, its trunks file, and the snapshot they build: what `check` and `acl explain`
/// both need.
fn load_snapshot(path: &std::path::Path) -> Result<(Config, TrunksFile, Snapshot), CliError> {
    let (config, trunks) = Config::load_all(path)?;
    let snapshot = crate::edge::build_snapshot(&config, &trunks)?;
    Ok((config, trunks, snapshot))
}

fn summary(config: &Config, trunks: &TrunksFile, snapshot: &Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "config {}: ok", config.file.display());
    for l in &config.listeners {
        let _ = writeln!(
            out,
            "  listener {:?} {} (advertised as {})",
            l.transport, l.address, l.advertise
        );
    }
    let _ = writeln!(
        out,
        "  admin {} (/metrics, /healthz, /readyz)",
        config.admin
    );
    let counts = snapshot.counts();
    let _ = writeln!(out, "trunks {}: ok", config.acl.trunks_file.display());
    let _ = writeln!(
        out,
        "  {} customers, {} trunk groups, {} IPv4 and {} IPv6 entries in group {}, {} dedicated IPs",
        trunks.rules.customers.len(),
        trunks.rules.trunk_groups.len(),
        counts.v4_entries,
        counts.v6_entries,
        config.acl.group,
        counts.dedicated_ips
    );
    let sources = &config.acl.sources;
    if !sources.is_file_only() {
        let names: Vec<&str> = sources.enabled.iter().map(|k| k.as_str()).collect();
        let how = match (sources.combine, sources.primary) {
            (crate::config::Combine::Primary, Some(primary)) => {
                format!("primary {}, the others as fallback", primary.as_str())
            }
            _ => "union".to_owned(),
        };
        let _ = writeln!(
            out,
            "acl sources: {} ({how}); the stores are not contacted by check",
            names.join(", ")
        );
    }
    if trunks.disabled_entries > 0 || counts.skipped_other_group > 0 {
        let _ = writeln!(
            out,
            "  {} disabled entries, {} entries of other groups (not used here)",
            trunks.disabled_entries, counts.skipped_other_group
        );
    }
    out
}
