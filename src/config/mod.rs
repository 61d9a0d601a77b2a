//! Configuration: the edge's TOML file and the trunks file it points at, parsed with unknown
//! keys rejected and validated into typed structs. Every error names the file, the key and
//! the bad value; the binary exits with code 64 on any of them.
//!
//! Relative paths inside a config file are resolved against that file's directory.

mod proxy;
mod sources;
mod trunks;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

pub use proxy::{ProbeConfig, ProxyConfig};
pub use sources::{redact_url, Combine, PostgresConfig, RedisConfig, SourceKind, SourcesConfig};
pub(crate) use trunks::parse_cidr;
pub use trunks::{load_trunks, parse_trunks, TrunksFile};

use crate::sip::Limits;

/// The exit code for configuration errors (`EX_USAGE`-style `EX_CONFIG` is 78; the project
/// standard is 64).
pub const EXIT_CONFIG: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// Parses TOML into `T`, reporting the dotted key path of any error.
pub(crate) fn parse_toml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        message: one_line(&e.to_string()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let message = one_line(&e.into_inner().to_string());
        if key == "." {
            ConfigError::Syntax {
                file: file.to_owned(),
                message,
            }
        } else {
            ConfigError::Invalid {
                file: file.to_owned(),
                key,
                message,
            }
        }
    })
}

/// toml's messages span several lines (with a source excerpt); logs want one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })
}

/// A value parsed with `FromStr` whose error quotes the value (`"10.0.0.300/24"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<T>()
            .map(Parsed)
            .map_err(|e| serde::de::Error::custom(format!("invalid value {text:?}: {e}")))
    }
}

// === the edge's own file ===

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTransport {
    Udp,
    Tcp,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerFile {
    transport: ListenerTransport,
    address: Parsed<SocketAddr>,
    advertise: Option<String>,
}

/// A SIP listener: where it binds and what it calls itself in Via and Record-Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub transport: ListenerTransport,
    pub address: SocketAddr,
    /// Host or IP written into Via/Record-Route; defaults to the bound IP (unspecified
    /// addresses need one).
    pub advertise: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    #[serde(default = "default_admin")]
    address: Parsed<SocketAddr>,
}

fn default_admin() -> Parsed<SocketAddr> {
    Parsed(SocketAddr::from(([127, 0, 0, 1], 9090)))
}

/// What the edge does with a request from a denied source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyAction {
    /// Answer 403 Forbidden.
    #[default]
    Reject,
    /// Send nothing.
    Drop,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    #[serde(default = "default_group")]
    group: u32,
    trunks_file: PathBuf,
    #[serde(default = "default_reload_ms")]
    reload_interval_ms: u64,
    #[serde(default)]
    deny_action: DenyAction,
    #[serde(default)]
    deny_reason_in_reply: bool,
    // --- store sources (issue 5): see `sources.rs` ---
    sources: Option<Vec<SourceKind>>,
    #[serde(default)]
    combine: Combine,
    primary: Option<SourceKind>,
    last_known_good: Option<PathBuf>,
    #[serde(default = "sources::default_startup_wait_ms")]
    startup_wait_ms: u64,
    postgres: Option<sources::PostgresFile>,
    redis: Option<sources::RedisFile>,
}

fn default_group() -> u32 {
    1
}
fn default_reload_ms() -> u64 {
    250
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipFile {
    #[serde(default = "default_max_message_size")]
    max_message_size: usize,
    #[serde(default = "default_max_headers")]
    max_headers: usize,
    #[serde(default = "default_max_line_length")]
    max_line_length: usize,
    #[serde(default = "default_retry_after")]
    retry_after_secs: u32,
}

fn default_max_message_size() -> usize {
    crate::sip::MAX_MESSAGE_SIZE
}
fn default_max_headers() -> usize {
    crate::sip::MAX_HEADERS
}
fn default_max_line_length() -> usize {
    crate::sip::MAX_LINE_LEN
}
fn default_retry_after() -> u32 {
    30
}

impl Default for SipFile {
    fn default() -> Self {
        SipFile {
            max_message_size: default_max_message_size(),
            max_headers: default_max_headers(),
            max_line_length: default_max_line_length(),
            retry_after_secs: default_retry_after(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpFile {
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_idle_secs")]
    idle_timeout_secs: u64,
}

fn default_max_connections() -> usize {
    4096
}
fn default_idle_secs() -> u64 {
    300
}

impl Default for TcpFile {
    fn default() -> Self {
        TcpFile {
            max_connections: default_max_connections(),
            idle_timeout_secs: default_idle_secs(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdpFile {
    #[serde(default = "default_recv_buffer")]
    receive_buffer_bytes: usize,
    #[serde(default = "default_sockets")]
    sockets_per_listener: usize,
    #[serde(default = "default_receivers")]
    receivers_per_socket: usize,
}

fn default_recv_buffer() -> usize {
    8 * 1024 * 1024
}
fn default_sockets() -> usize {
    1
}
fn default_receivers() -> usize {
    1
}

impl Default for UdpFile {
    fn default() -> Self {
        UdpFile {
            receive_buffer_bytes: default_recv_buffer(),
            sockets_per_listener: default_sockets(),
            receivers_per_socket: default_receivers(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFile {
    #[serde(default = "default_level")]
    level: String,
}

fn default_level() -> String {
    "info".to_owned()
}

impl Default for LogFile {
    fn default() -> Self {
        LogFile {
            level: default_level(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeFile {
    listeners: Vec<ListenerFile>,
    admin: Option<AdminFile>,
    acl: AclFile,
    #[serde(default)]
    sip: SipFile,
    #[serde(default)]
    tcp: TcpFile,
    #[serde(default)]
    udp: UdpFile,
    #[serde(default)]
    log: LogFile,
    proxy: Option<proxy::ProxyFile>,
}

/// ACL settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclConfig {
    /// Kamailio's `grp`: only entries of this group apply to this edge.
    pub group: u32,
    /// The trunks file (resolved path), polled for changes.
    pub trunks_file: PathBuf,
    pub reload_interval: Duration,
    pub deny_action: DenyAction,
    /// Put the deny reason in the 403's reason phrase (off by default: plain "Forbidden").
    pub deny_reason_in_reply: bool,
    /// Which sources feed the snapshot (the trunks file alone unless configured).
    pub sources: SourcesConfig,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    pub receive_buffer_bytes: usize,
    pub sockets_per_listener: usize,
    /// Tasks receiving from each UDP socket (listeners and egress). More than one lets one
    /// busy peer's datagrams be worked on by several cores, as Kamailio's UDP children do,
    /// but every datagram then wakes every waiting task; 1 measured no worse (BENCHMARKS.md).
    pub receivers_per_socket: usize,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub listeners: Vec<Listener>,
    pub admin: SocketAddr,
    pub acl: AclConfig,
    pub limits: Limits,
    pub retry_after_secs: u32,
    pub tcp: TcpConfig,
    pub udp: UdpConfig,
    pub log_level: String,
    /// Forwarding to vendors; without it the edge answers allowed INVITEs 503 itself.
    pub proxy: Option<ProxyConfig>,
}

impl Config {
    /// Reads and validates the edge's config file (the trunks file is loaded by the ACL
    /// source, but [`Config::load_all`] checks it too).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = read(file)?;
        Config::parse(file, &text)
    }

    /// Loads the config and the trunks file it names, so that both are known good.
    pub fn load_all(file: &Path) -> Result<(Config, TrunksFile), ConfigError> {
        let config = Config::load(file)?;
        let trunks = load_trunks(&config.acl.trunks_file)?;
        Ok((config, trunks))
    }

    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: EdgeFile = parse_toml(file, text)?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: key.to_owned(),
            message,
        };
        if raw.listeners.is_empty() {
            return Err(invalid(
                "listeners",
                "at least one listener is required".to_owned(),
            ));
        }
        let mut listeners = Vec::with_capacity(raw.listeners.len());
        for (i, l) in raw.listeners.into_iter().enumerate() {
            let address = l.address.0;
            let advertise = match l.advertise {
                Some(a) if a.trim().is_empty() || a.contains(char::is_whitespace) => {
                    return Err(invalid(
                        &format!("listeners[{i}].advertise"),
                        format!("invalid value {a:?}: not a host"),
                    ));
                }
                Some(a) => a,
                None if address.ip().is_unspecified() => {
                    return Err(invalid(
                        &format!("listeners[{i}].advertise"),
                        format!("required when binding {address} (the edge must name itself in Via and Record-Route)"),
                    ));
                }
                None => match address.ip() {
                    IpAddr::V6(ip) => format!("[{ip}]"),
                    IpAddr::V4(ip) => ip.to_string(),
                },
            };
            if listeners
                .iter()
                .any(|x: &Listener| x.transport == l.transport && x.address == address)
            {
                return Err(invalid(
                    &format!("listeners[{i}].address"),
                    format!("duplicate listener {address}"),
                ));
            }
            listeners.push(Listener {
                transport: l.transport,
                address,
                advertise,
            });
        }
        if raw.acl.group == 0 {
            return Err(invalid(
                "acl.group",
                "invalid value 0: groups start at 1 (as in Kamailio)".to_owned(),
            ));
        }
        if !(10..=60_000).contains(&raw.acl.reload_interval_ms) {
            return Err(invalid(
                "acl.reload_interval_ms",
                format!(
                    "invalid value {}: expected 10 to 60000",
                    raw.acl.reload_interval_ms
                ),
            ));
        }
        let sip = raw.sip;
        if !(1024..=1024 * 1024).contains(&sip.max_message_size) {
            return Err(invalid(
                "sip.max_message_size",
                format!(
                    "invalid value {}: expected 1024 to 1048576",
                    sip.max_message_size
                ),
            ));
        }
        if !(8..=1024).contains(&sip.max_headers) {
            return Err(invalid(
                "sip.max_headers",
                format!("invalid value {}: expected 8 to 1024", sip.max_headers),
            ));
        }
        if !(256..=sip.max_message_size).contains(&sip.max_line_length) {
            return Err(invalid(
                "sip.max_line_length",
                format!(
                    "invalid value {}: expected 256 to sip.max_message_size",
                    sip.max_line_length
                ),
            ));
        }
        if raw.tcp.max_connections == 0 {
            return Err(invalid("tcp.max_connections", "invalid value 0".to_owned()));
        }
        if raw.udp.sockets_per_listener == 0 || raw.udp.sockets_per_listener > 64 {
            return Err(invalid(
                "udp.sockets_per_listener",
                format!(
                    "invalid value {}: expected 1 to 64",
                    raw.udp.sockets_per_listener
                ),
            ));
        }
        if raw.udp.receivers_per_socket == 0 || raw.udp.receivers_per_socket > 64 {
            return Err(invalid(
                "udp.receivers_per_socket",
                format!(
                    "invalid value {}: expected 1 to 64",
                    raw.udp.receivers_per_socket
                ),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!("invalid value {:?}: not a tracing filter", raw.log.level),
            ));
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let proxy = raw
            .proxy
            .map(|p| proxy::validate(p, base))
            .transpose()
            .map_err(|(key, message)| invalid(&key, message))?;
        let acl_sources = sources::validate(
            file,
            base,
            sources::SourcesFile {
                sources: raw.acl.sources,
                combine: raw.acl.combine,
                primary: raw.acl.primary,
                last_known_good: raw.acl.last_known_good,
                startup_wait_ms: raw.acl.startup_wait_ms,
                postgres: raw.acl.postgres,
                redis: raw.acl.redis,
            },
        )?;
        Ok(Config {
            file: file.to_owned(),
            listeners,
            admin: raw.admin.map_or_else(default_admin, |a| a.address).0,
            acl: AclConfig {
                group: raw.acl.group,
                trunks_file: base.join(&raw.acl.trunks_file),
                reload_interval: Duration::from_millis(raw.acl.reload_interval_ms),
                deny_action: raw.acl.deny_action,
                deny_reason_in_reply: raw.acl.deny_reason_in_reply,
                sources: acl_sources,
            },
            limits: Limits {
                max_message_size: sip.max_message_size,
                max_headers: sip.max_headers,
                max_line_len: sip.max_line_length,
            },
            retry_after_secs: sip.retry_after_secs,
            tcp: TcpConfig {
                max_connections: raw.tcp.max_connections,
                idle_timeout: Duration::from_secs(raw.tcp.idle_timeout_secs.max(1)),
            },
            udp: UdpConfig {
                receive_buffer_bytes: raw.udp.receive_buffer_bytes,
                sockets_per_listener: raw.udp.sockets_per_listener,
                receivers_per_socket: raw.udp.receivers_per_socket,
            },
            log_level: raw.log.level,
            proxy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("conf/edge.toml"), text)
    }

    const MINIMAL: &str = r#"
[[listeners]]
transport = "udp"
address = "127.0.0.1:5060"

[acl]
trunks_file = "trunks.toml"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.listeners[0].advertise, "127.0.0.1");
        assert_eq!(c.admin, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.acl.group, 1);
        assert_eq!(c.acl.trunks_file, Path::new("conf/trunks.toml"));
        assert_eq!(c.acl.deny_action, DenyAction::Reject);
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn errors_name_file_key_and_value() {
        let cases = [
            (
                MINIMAL.replace("127.0.0.1:5060", "127.0.0.1:99999"),
                "listeners[0].address",
                "127.0.0.1:99999",
            ),
            (
                MINIMAL.replace("\"udp\"", "\"sctp\""),
                "listeners[0].transport",
                "sctp",
            ),
            (format!("{MINIMAL}group = 0\n"), "acl.group", "0"),
            (format!("{MINIMAL}bogus = 1\n"), "acl", "bogus"),
            (
                MINIMAL.replace("127.0.0.1:5060", "0.0.0.0:5060"),
                "listeners[0].advertise",
                "0.0.0.0:5060",
            ),
            (
                format!("{MINIMAL}[sip]\nmax_headers = 2\n"),
                "sip.max_headers",
                "2",
            ),
            (
                format!("{MINIMAL}[log]\nlevel = \"[[\"\n"),
                "log.level",
                "[[",
            ),
        ];
        for (text, key, value) in cases {
            let err = parse(&text).expect_err(key).to_string();
            assert!(err.starts_with("conf/edge.toml: "), "{err}");
            assert!(err.contains(key), "{err} should name {key}");
            assert!(err.contains(value), "{err} should quote {value}");
        }
        let err = parse("[[listeners]\n").expect_err("syntax").to_string();
        assert!(err.starts_with("conf/edge.toml: "), "{err}");
    }

    const PROXY: &str =
        "[proxy]\negress = [\"192.0.2.1:5060\"]\ndialog_key = \"0123456789abcdef-key\"\n";

    #[test]
    fn proxy_section_defaults_and_timers() {
        assert!(parse(MINIMAL).expect("valid").proxy.is_none());
        let c = parse(&format!("{MINIMAL}{PROXY}t1_ms = 100\n")).expect("valid");
        let p = c.proxy.expect("[proxy]");
        assert_eq!(p.egress, vec!["192.0.2.1:5060".parse().unwrap()]);
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.timers.t1, Duration::from_millis(100));
        assert_eq!(p.timers.timer_b, Duration::from_millis(6400), "64 * T1");
        assert_eq!(p.probe.policy.up_codes, vec![200]);
    }

    #[test]
    fn proxy_errors_name_the_key_and_never_echo_the_dialog_key() {
        let cases = [
            (
                PROXY.replace("192.0.2.1:5060", "0.0.0.0:5060"),
                "proxy.egress[0]",
                "0.0.0.0:5060",
            ),
            (
                format!("{PROXY}max_attempts = 0\n"),
                "proxy.max_attempts",
                "0",
            ),
            (
                format!("{PROXY}failover_codes = [580, 486]\n"),
                "proxy.failover_codes[1]",
                "486",
            ),
            (format!("{PROXY}t1_ms = 1\n"), "proxy.t1_ms", "1"),
            (format!("{PROXY}timer_b_ms = 5\n"), "proxy.timer_b_ms", "5"),
            (
                format!("{PROXY}[proxy.probe]\nup_codes = [999]\n"),
                "proxy.probe.up_codes",
                "999",
            ),
            (format!("{PROXY}colour = 1\n"), "proxy", "colour"),
            (
                format!("{PROXY}dialog_key_file = \"key\"\n"),
                "proxy.dialog_key",
                "exactly one",
            ),
        ];
        for (text, key, value) in cases {
            let err = parse(&format!("{MINIMAL}{text}"))
                .expect_err(key)
                .to_string();
            assert!(err.contains(key), "{err} should name {key}");
            assert!(err.contains(value), "{err} should quote {value}");
        }
        let short = PROXY.replace("0123456789abcdef-key", "s3cret");
        let err = parse(&format!("{MINIMAL}{short}"))
            .expect_err("short key")
            .to_string();
        assert!(
            err.contains("proxy.dialog_key") && err.contains("16 bytes"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "the key is never printed: {err}");
    }

    #[test]
    fn dialog_key_from_a_file_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("warp-edge-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dialog.key"), "0123456789abcdef-from-file\n").unwrap();
        let text = format!(
            "{MINIMAL}[proxy]\negress = [\"192.0.2.1:5060\"]\ndialog_key_file = \"dialog.key\"\n"
        );
        let c = Config::parse(&dir.join("edge.toml"), &text).expect("valid");
        let keys = c.proxy.expect("[proxy]").keys;
        let same =
            crate::proxy::dialog::DialogKeys::new(b"0123456789abcdef-from-file", None).unwrap();
        assert_eq!(keys.token(b"c", b"t"), same.token(b"c", b"t"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn store_sources_are_optional_and_default_sensibly() {
        let c = parse(MINIMAL).expect("valid");
        assert!(c.acl.sources.is_file_only());
        let c = parse(&format!(
            "{MINIMAL}last_known_good = \"state/lkg.json\"\n\
             [acl.postgres]\nurl = \"postgres://edge:pw@db/platform\"\n\
             [acl.redis]\nurl = \"redis://127.0.0.1/2\"\nkey_prefix = \"edge1:\"\n"
        ))
        .expect("valid");
        let s = &c.acl.sources;
        assert_eq!(
            s.enabled,
            [SourceKind::Postgres, SourceKind::Redis, SourceKind::File]
        );
        assert_eq!((s.combine, s.primary), (Combine::Union, None));
        assert_eq!(
            s.last_known_good.as_deref(),
            Some(Path::new("conf/state/lkg.json"))
        );
        let pg = s.postgres.as_ref().expect("postgres");
        assert_eq!(pg.channel, "warp_edge_acl");
        assert_eq!(pg.reload_interval, Duration::from_secs(30));
        let redis = s.redis.as_ref().expect("redis");
        assert_eq!(
            (redis.key_prefix.as_str(), redis.scan_count),
            ("edge1:", 1000)
        );
        assert!(!redis.keyspace_notifications);

        let c = parse(&format!(
            "{MINIMAL}combine = \"primary\"\nsources = [\"redis\", \"file\"]\n\
             [acl.redis]\nurl = \"redis://127.0.0.1/\"\n"
        ))
        .expect("valid");
        assert_eq!(c.acl.sources.primary, Some(SourceKind::Redis));
    }

    #[test]
    fn store_source_errors_name_the_key_and_hide_passwords() {
        let pg = "[acl.postgres]\nurl = \"postgres://edge:pw@db/platform\"\n";
        let cases = [
            (
                format!("{MINIMAL}[acl.postgres]\nurl = \"http://edge:s3cret@db/x\"\n"),
                "acl.postgres.url",
                "http://edge:***@db/x",
            ),
            (
                format!("{MINIMAL}[acl.redis]\nurl = \"nope\"\n"),
                "acl.redis.url",
                "nope",
            ),
            (format!("{MINIMAL}sources = []\n"), "acl.sources", "[]"),
            (
                format!("{MINIMAL}sources = [\"file\", \"file\"]\n"),
                "acl.sources[1]",
                "file",
            ),
            (
                format!("{MINIMAL}sources = [\"postgres\"]\n"),
                "acl.sources[0]",
                "postgres",
            ),
            (
                format!("{MINIMAL}sources = [\"file\"]\n{pg}"),
                "acl.postgres",
                "not listed",
            ),
            (
                format!("{MINIMAL}sources = [\"ldap\"]\n"),
                "acl.sources[0]",
                "ldap",
            ),
            (
                format!("{MINIMAL}combine = \"primary\"\nprimary = \"redis\"\n"),
                "acl.primary",
                "redis",
            ),
            (
                format!("{MINIMAL}primary = \"file\"\n"),
                "acl.primary",
                "file",
            ),
            (
                format!("{MINIMAL}startup_wait_ms = 9999999\n"),
                "acl.startup_wait_ms",
                "9999999",
            ),
            (
                format!("{MINIMAL}{pg}reload_interval_ms = 5\n"),
                "acl.postgres.reload_interval_ms",
                "5",
            ),
            (
                format!("{MINIMAL}{pg}channel = \"two words\"\n"),
                "acl.postgres.channel",
                "two words",
            ),
            (
                format!("{MINIMAL}{pg}colour = 1\n"),
                "acl.postgres",
                "colour",
            ),
            (
                format!("{MINIMAL}[acl.redis]\nurl = \"redis://h/\"\nkey_prefix = \"a*\"\n"),
                "acl.redis.key_prefix",
                "a*",
            ),
        ];
        for (text, key, value) in cases {
            let err = parse(&text).expect_err(key).to_string();
            assert!(err.starts_with("conf/edge.toml: "), "{err}");
            assert!(err.contains(key), "{err} should name {key}");
            assert!(err.contains(value), "{err} should quote {value}");
            assert!(!err.contains("s3cret"), "{err} leaks a password");
        }
    }
}
