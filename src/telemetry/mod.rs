//! Telemetry: metric names (constants, each described once), the handles the hot path uses
//! (registered once, never formatted per packet), tracing setup, and the admin HTTP server
//! (`/metrics`, `/healthz`, `/readyz`).
//!
//! Each edge owns its recorder instead of installing a global one, so that several edges in
//! one process (the integration tests) keep separate counts.

mod admin;
mod forwarding;
pub mod names;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use metrics::{Counter, Gauge, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use admin::serve_admin;
pub use forwarding::{CallOutcome, ForwardMetrics, GatewayMetrics, Retransmission};

use crate::acl::rules::Proto;
use crate::acl::{DenyReason, MatchedBy};
use crate::sip::{Method, ParseError};
use names::*;

/// Distinct customer BANs given their own label; the rest are counted as `other`.
pub const MAX_CUSTOMER_LABELS: usize = 1000;

const METHODS: [Method; 15] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Register,
    Method::Prack,
    Method::Update,
    Method::Info,
    Method::Subscribe,
    Method::Notify,
    Method::Refer,
    Method::Message,
    Method::Publish,
    Method::Other,
];
const TRANSPORTS: [Proto; 3] = [Proto::Udp, Proto::Tcp, Proto::Tls];

/// Why a received message was dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Bytes that do not scan as a SIP message.
    Garbage,
    /// A response that does not scan or validate.
    MalformedResponse,
    /// A well-formed response for which no transaction exists.
    StrayResponse,
    /// An ACK the edge absorbs (to its own final response, or not routable).
    AbsorbedAck,
    /// A request from a denied source, with `deny_action = "drop"`.
    Denied,
    /// A datagram of nothing but CR and LF: a NAT keep-alive some PBXs send over UDP.
    Keepalive,
}

impl DropReason {
    const ALL: [DropReason; 6] = [
        DropReason::Garbage,
        DropReason::MalformedResponse,
        DropReason::StrayResponse,
        DropReason::AbsorbedAck,
        DropReason::Denied,
        DropReason::Keepalive,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Garbage => "garbage",
            DropReason::MalformedResponse => "malformed_response",
            DropReason::StrayResponse => "stray_response",
            DropReason::AbsorbedAck => "absorbed_ack",
            DropReason::Denied => "denied",
            DropReason::Keepalive => "keepalive",
        }
    }
}

fn method_label(m: Method) -> &'static str {
    m.as_str().unwrap_or("other")
}

fn transport_index(t: Proto) -> usize {
    match t {
        Proto::Udp | Proto::Any => 0,
        Proto::Tcp => 1,
        Proto::Tls => 2,
    }
}

fn method_index(m: Method) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m)
        .unwrap_or(METHODS.len() - 1)
}

/// Per-customer decision counters, rebuilt (off the hot path) whenever the ACL changes.
#[derive(Default)]
struct CustomerCounters {
    by_ban: HashMap<String, [Counter; 2]>,
}

/// All metric handles of one edge.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: Vec<[Counter; 3]>,
    responses: Vec<OnceLock<Counter>>,
    /// Allowed decisions by [`MatchedBy`], refused ones by [`DenyReason`].
    allowed: [Counter; 2],
    denied: [Counter; 4],
    customers: ArcSwap<CustomerCounters>,
    customers_other: [Counter; 2],
    parse_errors: Vec<Counter>,
    dropped: Vec<Counter>,
    pub tcp_open: Gauge,
    pub tcp_accepted: Counter,
    pub tcp_refused: Counter,
    pub tcp_closed_malformed: Counter,
    pub keepalive_pongs: Counter,
    ready: AtomicBool,
    /// False while the ACL sources have no snapshot to serve (issue 5); true otherwise.
    acl_ready: AtomicBool,
}

pub(crate) const META: Metadata<'static> = Metadata::new("warp_edge", metrics::Level::INFO, None);

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_response_seconds".to_owned()),
                forwarding::LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &META)
        };
        let requests = METHODS
            .iter()
            .map(|&m| {
                TRANSPORTS.map(|t| {
                    counter(
                        SIP_REQUESTS_RECEIVED_TOTAL,
                        vec![
                            Label::new("method", method_label(m)),
                            Label::new("transport", t.as_str()),
                        ],
                    )
                })
            })
            .collect();
        let decision = |result: &'static str, reason: &'static str| {
            counter(
                ACL_DECISIONS_TOTAL,
                vec![Label::new("result", result), Label::new("reason", reason)],
            )
        };
        let allowed = [MatchedBy::SourceIp, MatchedBy::DedicatedIp]
            .map(|via| decision("allow", via.as_str()));
        let denied = DenyReason::ALL.map(|reason| decision("deny", reason.as_str()));
        let parse_errors = ParseError::KINDS
            .iter()
            .map(|kind| counter(SIP_PARSE_ERRORS_TOTAL, vec![Label::new("kind", *kind)]))
            .collect();
        let customers_other = customer_counters(&recorder, "other");
        let dropped = DropReason::ALL
            .iter()
            .map(|r| counter(SIP_DROPPED_TOTAL, vec![Label::new("reason", r.as_str())]))
            .collect();
        let tcp_open = recorder.register_gauge(&Key::from_name(TCP_CONNECTIONS_OPEN), &META);
        let tcp_accepted = counter(
            TCP_CONNECTIONS_TOTAL,
            vec![Label::new("outcome", "accepted")],
        );
        let tcp_refused = counter(
            TCP_CONNECTIONS_TOTAL,
            vec![Label::new("outcome", "refused_limit")],
        );
        let tcp_closed_malformed = counter(TCP_CONNECTIONS_CLOSED_MALFORMED_TOTAL, vec![]);
        let keepalive_pongs = counter(SIP_KEEPALIVE_PONGS_TOTAL, vec![]);
        Arc::new(Metrics {
            requests,
            responses: (100..700).map(|_| OnceLock::new()).collect(),
            allowed,
            denied,
            customers: ArcSwap::from_pointee(CustomerCounters::default()),
            customers_other,
            parse_errors,
            dropped,
            tcp_open,
            tcp_accepted,
            tcp_refused,
            tcp_closed_malformed,
            keepalive_pongs,
            ready: AtomicBool::new(false),
            acl_ready: AtomicBool::new(true),
            recorder,
            handle,
        })
    }

    /// The recorder, for handles registered outside this file (see [`ForwardMetrics`]).
    pub(crate) fn recorder(&self) -> &PrometheusRecorder {
        &self.recorder
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    pub fn request_received(&self, method: Method, transport: Proto) {
        self.requests[method_index(method)][transport_index(transport)].increment(1);
    }

    pub fn response_sent(&self, code: u16) {
        let Some(slot) = self.responses.get(usize::from(code).wrapping_sub(100)) else {
            return;
        };
        slot.get_or_init(|| {
            self.recorder.register_counter(
                &Key::from_parts(
                    SIP_RESPONSES_SENT_TOTAL,
                    vec![Label::new("code", code.to_string())],
                ),
                &META,
            )
        })
        .increment(1);
    }

    /// Counts an allowed request, by how it was recognised and by customer.
    pub fn allowed(&self, via: MatchedBy, ban: &str) {
        self.allowed[via as usize].increment(1);
        self.customer_counter(ban, 0);
    }

    /// Counts a refused request, by reason and, when it was recognised, by customer.
    pub fn denied(&self, reason: DenyReason, ban: Option<&str>) {
        self.denied[reason as usize].increment(1);
        if let Some(ban) = ban {
            self.customer_counter(ban, 1);
        }
    }

    fn customer_counter(&self, ban: &str, result: usize) {
        let customers = self.customers.load();
        let pair = customers.by_ban.get(ban).unwrap_or(&self.customers_other);
        pair[result].increment(1);
    }

    /// Rebuilds the per-customer counters for the customers now known (first
    /// [`MAX_CUSTOMER_LABELS`] by BAN order; the rest share `other`).
    pub fn set_customers<'a>(&self, bans: impl Iterator<Item = &'a str>) {
        let mut bans: Vec<&str> = bans.collect();
        bans.sort_unstable();
        bans.dedup();
        let current = self.customers.load();
        let by_ban = bans
            .into_iter()
            .take(MAX_CUSTOMER_LABELS)
            .map(|ban| {
                let pair = current
                    .by_ban
                    .get(ban)
                    .cloned()
                    .unwrap_or_else(|| customer_counters(&self.recorder, ban));
                (ban.to_owned(), pair)
            })
            .collect();
        self.customers.store(Arc::new(CustomerCounters { by_ban }));
    }

    pub fn parse_error(&self, error: ParseError) {
        if let Some(counter) = self.parse_errors.get(error.kind_index()) {
            counter.increment(1);
        }
    }

    pub fn dropped(&self, reason: DropReason) {
        // `ALL` lists the reasons in declaration order, so the discriminant is the index.
        self.dropped[reason as usize].increment(1);
    }

    /// Records a reload attempt of an ACL source.
    pub fn acl_reload(&self, source: &'static str, ok: bool, seconds: f64) {
        let outcome = if ok { "success" } else { "failure" };
        self.recorder
            .register_counter(
                &Key::from_parts(
                    ACL_RELOADS_TOTAL,
                    vec![Label::new("source", source), Label::new("outcome", outcome)],
                ),
                &META,
            )
            .increment(1);
        self.gauge(
            ACL_RELOAD_DURATION_SECONDS,
            vec![Label::new("source", source)],
        )
        .set(seconds);
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.gauge(
                ACL_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
                vec![Label::new("source", source)],
            )
            .set(now);
        }
    }

    /// Sets the entry counts of the snapshot in force.
    pub fn acl_entries(&self, v4: usize, v6: usize, dedicated: usize, customers: usize) {
        self.gauge(ACL_ENTRIES, vec![Label::new("family", "ipv4")])
            .set(v4 as f64);
        self.gauge(ACL_ENTRIES, vec![Label::new("family", "ipv6")])
            .set(v6 as f64);
        self.gauge(ACL_DEDICATED_IPS, vec![]).set(dedicated as f64);
        self.gauge(ACL_CUSTOMERS, vec![]).set(customers as f64);
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &META)
    }

    /// Marks the edge ready (`/readyz` answers 200): a snapshot is loaded and listeners bound.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.acl_ready.load(Ordering::Acquire)
    }

    /// Whether the ACL sources have a snapshot to serve; `/readyz` needs it as well.
    pub fn set_acl_ready(&self, ready: bool) {
        self.acl_ready.store(ready, Ordering::Release);
    }

    /// The handles of one ACL source, registered once when the source starts.
    pub fn acl_source(&self, source: &'static str) -> AclSourceMetrics {
        let label = || vec![Label::new("source", source)];
        let reloads = |outcome: &'static str| {
            self.recorder.register_counter(
                &Key::from_parts(
                    ACL_RELOADS_TOTAL,
                    vec![Label::new("source", source), Label::new("outcome", outcome)],
                ),
                &META,
            )
        };
        AclSourceMetrics {
            reloads_ok: reloads("success"),
            reloads_failed: reloads("failure"),
            duration: self.gauge(ACL_RELOAD_DURATION_SECONDS, label()),
            last_success: self.gauge(ACL_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS, label()),
            entries: self.gauge(ACL_SOURCE_ENTRIES, label()),
            connected: self.gauge(ACL_SOURCE_CONNECTED, label()),
            last_known_good: self.gauge(ACL_SOURCE_LAST_KNOWN_GOOD, label()),
        }
    }

    /// Counts a write of the last-known-good file.
    pub fn acl_last_known_good_written(&self, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.recorder
            .register_counter(
                &Key::from_parts(
                    ACL_LAST_KNOWN_GOOD_WRITES_TOTAL,
                    vec![Label::new("outcome", outcome)],
                ),
                &META,
            )
            .increment(1);
    }
}

/// The metrics of one ACL source (`source` label): reload outcomes and duration, last
/// success, entries in its last good state, whether it is connected, and whether that state
/// came from the last-known-good file.
#[derive(Clone)]
pub struct AclSourceMetrics {
    reloads_ok: Counter,
    reloads_failed: Counter,
    duration: Gauge,
    last_success: Gauge,
    entries: Gauge,
    connected: Gauge,
    last_known_good: Gauge,
}

impl AclSourceMetrics {
    /// A reload that produced rules now held as the source's good state.
    pub fn reloaded(&self, seconds: f64, entries: usize) {
        self.reloads_ok.increment(1);
        self.duration.set(seconds);
        self.entries.set(entries as f64);
        self.last_known_good.set(0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success.set(now);
    }

    /// A reload that failed (store unreachable, bad row, rules that do not build).
    pub fn failed(&self, seconds: f64) {
        self.reloads_failed.increment(1);
        self.duration.set(seconds);
    }

    pub fn connected(&self, up: bool) {
        self.connected.set(if up { 1.0 } else { 0.0 });
    }

    /// The source's state was seeded from the last-known-good file.
    pub fn from_last_known_good(&self, entries: usize) {
        self.entries.set(entries as f64);
        self.last_known_good.set(1.0);
    }
}

/// The `[allow, deny]` decision counters of one customer (or of `other`).
fn customer_counters(recorder: &PrometheusRecorder, ban: &str) -> [Counter; 2] {
    ["allow", "deny"].map(|result| {
        let labels = vec![
            Label::new("ban", ban.to_owned()),
            Label::new("result", result),
        ];
        recorder.register_counter(
            &Key::from_parts(ACL_CUSTOMER_DECISIONS_TOTAL, labels),
            &META,
        )
    })
}

fn describe(recorder: &PrometheusRecorder) {
    let counter = |name: &'static str, text: &'static str| {
        recorder.describe_counter(
            KeyName::from_const_str(name),
            Some(Unit::Count),
            SharedString::const_str(text),
        );
    };
    counter(
        SIP_REQUESTS_RECEIVED_TOTAL,
        "SIP requests received, by method and transport.",
    );
    counter(
        SIP_RESPONSES_SENT_TOTAL,
        "SIP responses sent by the edge, by status code.",
    );
    counter(
        SIP_PARSE_ERRORS_TOTAL,
        "Messages that failed to parse, by kind of fault.",
    );
    counter(
        SIP_DROPPED_TOTAL,
        "Messages dropped without an answer, by reason.",
    );
    counter(
        SIP_KEEPALIVE_PONGS_TOTAL,
        "CRLF pongs sent for double-CRLF keep-alive pings (RFC 5626).",
    );
    counter(
        ACL_DECISIONS_TOTAL,
        "ACL decisions, by result and reason (match path for allows).",
    );
    counter(
        ACL_CUSTOMER_DECISIONS_TOTAL,
        "ACL decisions by customer BAN (capped; the rest as `other`).",
    );
    counter(
        ACL_RELOADS_TOTAL,
        "ACL source reloads, by source and outcome.",
    );
    counter(
        TCP_CONNECTIONS_TOTAL,
        "TCP connections accepted or refused at the connection limit.",
    );
    counter(
        TCP_CONNECTIONS_CLOSED_MALFORMED_TOTAL,
        "TCP connections closed because their stream could not be framed.",
    );
    let gauge = |name: &'static str, unit: Unit, text: &'static str| {
        recorder.describe_gauge(
            KeyName::from_const_str(name),
            Some(unit),
            SharedString::const_str(text),
        );
    };
    gauge(
        ACL_ENTRIES,
        Unit::Count,
        "ACL entries in the snapshot in force, by address family.",
    );
    gauge(
        ACL_DEDICATED_IPS,
        Unit::Count,
        "Dedicated ingress IPs in the snapshot in force.",
    );
    gauge(
        ACL_CUSTOMERS,
        Unit::Count,
        "Customers in the snapshot in force.",
    );
    gauge(
        ACL_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last successful reload, by source.",
    );
    gauge(
        ACL_RELOAD_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of the last reload attempt, by source.",
    );
    gauge(TCP_CONNECTIONS_OPEN, Unit::Count, "Open TCP connections.");
    gauge(
        ACL_SOURCE_CONNECTED,
        Unit::Count,
        "1 while an ACL store source (postgres, redis) is connected, else 0.",
    );
    gauge(
        ACL_SOURCE_ENTRIES,
        Unit::Count,
        "Entries in an ACL source's last good state, by source.",
    );
    gauge(
        ACL_SOURCE_LAST_KNOWN_GOOD,
        Unit::Count,
        "1 while a source's state is the one read from the last-known-good file.",
    );
    counter(
        ACL_LAST_KNOWN_GOOD_WRITES_TOTAL,
        "Writes of the ACL last-known-good file, by outcome.",
    );
}

/// Installs the tracing subscriber: `RUST_LOG` wins over the configured level; logs go to
/// stderr.
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
