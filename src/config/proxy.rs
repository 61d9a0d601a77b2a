//! The `[proxy]` section: forwarding to vendors. Egress pool, the Record-Route token key,
//! transaction limits, protocol timers and gateway probing.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::Parsed;
use crate::proxy::dialog::{DialogKeys, MIN_KEY_BYTES};
use crate::proxy::transaction::Timers;
use crate::route::HealthPolicy;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProxyFile {
    #[serde(default)]
    egress: Vec<Parsed<SocketAddr>>,
    dialog_key: Option<String>,
    /// The key read from a file (a Kubernetes Secret), trailing newline ignored.
    dialog_key_file: Option<std::path::PathBuf>,
    previous_dialog_key: Option<String>,
    #[serde(default = "default_max_transactions")]
    max_transactions: usize,
    #[serde(default = "default_drain_secs")]
    drain_secs: u64,
    #[serde(default = "default_max_attempts")]
    max_attempts: usize,
    #[serde(default)]
    failover_codes: Vec<u16>,
    default_route: Option<String>,
    #[serde(default = "default_t1")]
    t1_ms: u64,
    #[serde(default = "default_t2")]
    t2_ms: u64,
    #[serde(default = "default_t4")]
    t4_ms: u64,
    timer_b_ms: Option<u64>,
    #[serde(default = "default_timer_c")]
    timer_c_ms: u64,
    #[serde(default = "default_dns_refresh")]
    dns_refresh_secs: u64,
    #[serde(default)]
    probe: ProbeFile,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    #[serde(default = "default_probe_interval")]
    interval_ms: u64,
    #[serde(default = "default_probe_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_up_codes")]
    up_codes: Vec<u16>,
    #[serde(default = "default_down_after")]
    down_after: u32,
    #[serde(default = "default_up_after")]
    up_after: u32,
}

impl Default for ProbeFile {
    fn default() -> Self {
        ProbeFile {
            interval_ms: default_probe_interval(),
            timeout_ms: default_probe_timeout(),
            up_codes: default_up_codes(),
            down_after: default_down_after(),
            up_after: default_up_after(),
        }
    }
}

fn default_max_transactions() -> usize {
    100_000
}
fn default_drain_secs() -> u64 {
    30
}
fn default_max_attempts() -> usize {
    3
}
fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4_000
}
fn default_t4() -> u64 {
    5_000
}
fn default_timer_c() -> u64 {
    181_000
}
fn default_dns_refresh() -> u64 {
    60
}
fn default_probe_interval() -> u64 {
    10_000
}
fn default_probe_timeout() -> u64 {
    2_000
}
fn default_up_codes() -> Vec<u16> {
    vec![200]
}
fn default_down_after() -> u32 {
    3
}
fn default_up_after() -> u32 {
    2
}

/// Gateway probing settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub policy: HealthPolicy,
}

/// Validated `[proxy]` settings.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Local addresses vendor-bound traffic leaves from (the IPs vendors whitelist).
    pub egress: Vec<SocketAddr>,
    pub keys: DialogKeys,
    pub max_transactions: usize,
    pub drain: Duration,
    pub max_attempts: usize,
    pub failover_codes: Vec<u16>,
    pub default_route: Option<String>,
    pub timers: Timers,
    pub dns_refresh: Duration,
    pub probe: ProbeConfig,
}

/// `Err((key, message))`: the caller adds the file name.
pub(super) fn validate(
    raw: ProxyFile,
    base: &std::path::Path,
) -> Result<ProxyConfig, (String, String)> {
    let bad = |key: &str, message: String| Err((format!("proxy.{key}"), message));
    let dialog_key = match (raw.dialog_key, &raw.dialog_key_file) {
        (Some(key), None) => key,
        (None, Some(file)) => {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => text.trim_end_matches(['\r', '\n']).to_owned(),
                Err(e) => {
                    return bad(
                        "dialog_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                }
            }
        }
        _ => {
            return bad(
                "dialog_key",
                "exactly one of dialog_key and dialog_key_file is required".to_owned(),
            )
        }
    };
    if raw.egress.is_empty() {
        return bad(
            "egress",
            "at least one egress address is required (the source of vendor-bound traffic)"
                .to_owned(),
        );
    }
    let mut egress: Vec<SocketAddr> = Vec::with_capacity(raw.egress.len());
    for (i, e) in raw.egress.iter().enumerate() {
        if e.0.ip().is_unspecified() {
            return bad(
                &format!("egress[{i}]"),
                format!(
                    "invalid value \"{}\": an egress address must be a concrete IP vendors can whitelist",
                    e.0
                ),
            );
        }
        if egress.contains(&e.0) {
            return bad(
                &format!("egress[{i}]"),
                format!("invalid value \"{}\": listed twice", e.0),
            );
        }
        egress.push(e.0);
    }
    let keys = match DialogKeys::new(
        dialog_key.as_bytes(),
        raw.previous_dialog_key.as_deref().map(str::as_bytes),
    ) {
        Ok(keys) => keys,
        Err(_) => {
            // Never echo a key: name the key and the rule only.
            let key = if dialog_key.len() < MIN_KEY_BYTES {
                "dialog_key"
            } else {
                "previous_dialog_key"
            };
            return bad(
                key,
                format!("too short: at least {MIN_KEY_BYTES} bytes are required"),
            );
        }
    };
    if raw.max_transactions == 0 {
        return bad("max_transactions", "invalid value 0".to_owned());
    }
    if !(1..=16).contains(&raw.max_attempts) {
        return bad(
            "max_attempts",
            format!("invalid value {}: expected 1 to 16", raw.max_attempts),
        );
    }
    for (i, &code) in raw.failover_codes.iter().enumerate() {
        if !matches!(code, 300..=399 | 500..=599) {
            return bad(
                &format!("failover_codes[{i}]"),
                format!(
                    "invalid value {code}: only 3xx and 5xx codes can be added (a 4xx other \
                     than 408 or a 6xx is the callee's answer and is never failed over)"
                ),
            );
        }
    }
    for (key, value, range) in [
        ("t1_ms", raw.t1_ms, 10..=10_000),
        ("t2_ms", raw.t2_ms, raw.t1_ms..=60_000),
        ("t4_ms", raw.t4_ms, 0..=60_000),
        ("timer_c_ms", raw.timer_c_ms, 100..=3_600_000),
        ("dns_refresh_secs", raw.dns_refresh_secs, 1..=86_400),
        ("probe.interval_ms", raw.probe.interval_ms, 100..=3_600_000),
        ("probe.timeout_ms", raw.probe.timeout_ms, 10..=60_000),
    ] {
        if !range.contains(&value) {
            return bad(
                key,
                format!(
                    "invalid value {value}: expected {} to {}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
    let timer_b = match raw.timer_b_ms {
        Some(ms) if !(raw.t1_ms..=600_000).contains(&ms) => {
            return bad(
                "timer_b_ms",
                format!("invalid value {ms}: expected t1_ms to 600000"),
            );
        }
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_millis(raw.t1_ms * 64),
    };
    let timers = Timers {
        t1: Duration::from_millis(raw.t1_ms),
        t2: Duration::from_millis(raw.t2_ms),
        t4: Duration::from_millis(raw.t4_ms),
        timer_b,
        timer_c: Duration::from_millis(raw.timer_c_ms),
    };
    if raw.probe.down_after == 0 || raw.probe.up_after == 0 {
        return bad(
            "probe",
            "down_after and up_after must be at least 1".to_owned(),
        );
    }
    if raw.probe.up_codes.iter().any(|c| !(100..=699).contains(c)) {
        return bad(
            "probe.up_codes",
            format!(
                "invalid value {:?}: not SIP status codes",
                raw.probe.up_codes
            ),
        );
    }
    Ok(ProxyConfig {
        egress,
        keys,
        max_transactions: raw.max_transactions,
        drain: Duration::from_secs(raw.drain_secs),
        max_attempts: raw.max_attempts,
        failover_codes: raw.failover_codes,
        default_route: raw.default_route,
        timers,
        dns_refresh: Duration::from_secs(raw.dns_refresh_secs),
        probe: ProbeConfig {
            interval: Duration::from_millis(raw.probe.interval_ms),
            timeout: Duration::from_millis(raw.probe.timeout_ms),
            policy: HealthPolicy {
                down_after: raw.probe.down_after,
                up_after: raw.probe.up_after,
                up_codes: raw.probe.up_codes,
            },
        },
    })
}
