//! Builders for the front-door integration tests: a [`TestEdge`] started in-process on port 0
//! from a config and trunks file written to its own temp dir, a [`TestPbx`] that speaks UDP or
//! TCP from a chosen loopback address, SIP requests built from a [`Request`] template, and a
//! tiny `/metrics` scraper ([`Scrape`]) that reads series by the names in
//! `warp_edge::telemetry::names`.
//!
//! Loopback addresses stand for different hosts (all of 127.0.0.0/8 is local on Linux).
//! Timeouts here only turn a missing answer into a failure; no test measures time.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use warp_edge::config::Config;
use warp_edge::edge::{self, Edge};

/// How long to wait for an answer before calling it missing. Generous: it only detects failure.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long polling loops (hot reload) keep trying before the test fails.
pub const POLL_LIMIT: Duration = Duration::from_secs(10);
/// The pause between two polls.
pub const POLL_STEP: Duration = Duration::from_millis(20);

/// The shared ingress address (the edge's ordinary listener).
pub const SHARED_INGRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The dedicated ingress address of the premium customer.
pub const DEDICATED_INGRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The demo customer's PBX, listed in the trunks file.
pub const CUSTOMER_PBX: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
/// A caller in no ACL.
pub const UNKNOWN_CALLER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));

/// The BAN of the demo customer (owner of [`CUSTOMER_PBX`]).
pub const DEMO_BAN: &str = "100001";

/// `127.0.0.<last>`: one more loopback "host".
pub fn host(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Waits at most [`RECV_TIMEOUT`] for `future`, failing the test with `what` otherwise.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(RECV_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing within {RECV_TIMEOUT:?}"),
    }
}

/// Polls `check` until it returns `Some`, failing the test with `what` after [`POLL_LIMIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + POLL_LIMIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not so after {POLL_LIMIT:?}"
        );
        tokio::time::sleep(POLL_STEP).await;
    }
}

// === TempDir ===

/// A directory of its own under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "warp-edge-{label}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    /// Replaces `name` atomically: write a sibling, then rename over it (as a deploy would).
    pub fn replace(&self, name: &str, text: &str) {
        let staging = self.write(&format!(".{name}.new"), text);
        std::fs::rename(staging, self.path.join(name)).expect("rename over the old file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// === Trunks ===

/// The text of a trunks file, built a row at a time.
#[derive(Clone, Debug, Default)]
pub struct Trunks {
    text: String,
}

impl Trunks {
    pub fn new() -> Trunks {
        Trunks::default()
    }

    /// One active customer ([`DEMO_BAN`]) with trunk group 1 admitting [`CUSTOMER_PBX`].
    pub fn demo() -> Trunks {
        Trunks::new()
            .customer(DEMO_BAN, "active")
            .trunk_group(1, DEMO_BAN, true)
            .trunk_ip(1, "127.0.0.10")
    }

    pub fn customer(mut self, ban: &str, status: &str) -> Trunks {
        let _ = write!(
            self.text,
            "\n[[customers]]\nban = \"{ban}\"\nname = \"customer {ban}\"\nstatus = \"{status}\"\n"
        );
        self
    }

    pub fn trunk_group(mut self, id: i64, ban: &str, enabled: bool) -> Trunks {
        let _ = write!(
            self.text,
            "\n[[trunk_groups]]\nid = {id}\nban = \"{ban}\"\nname = \"trunk {id}\"\nenabled = {enabled}\n"
        );
        self
    }

    /// An entry for any port and transport.
    pub fn trunk_ip(self, trunk_group: i64, cidr: &str) -> Trunks {
        self.trunk_ip_with(trunk_group, cidr, 0, "any")
    }

    pub fn trunk_ip_with(mut self, trunk_group: i64, cidr: &str, port: u16, proto: &str) -> Trunks {
        let _ = write!(
            self.text,
            "\n[[trunk_ips]]\ntrunk_group = {trunk_group}\ncidr = \"{cidr}\"\nport = {port}\nproto = \"{proto}\"\n"
        );
        self
    }

    pub fn dedicated_ip(mut self, ip: IpAddr, ban: &str) -> Trunks {
        let _ = write!(
            self.text,
            "\n[[dedicated_ips]]\nip = \"{ip}\"\nban = \"{ban}\"\n"
        );
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// A trunk group whose calls take the route `route` (a `[[routes]]` name).
    pub fn routed_trunk_group(mut self, id: i64, ban: &str, route: &str) -> Trunks {
        let _ = write!(
            self.text,
            "\n[[trunk_groups]]\nid = {id}\nban = \"{ban}\"\nname = \"trunk {id}\"\nroute = \"{route}\"\n"
        );
        self
    }

    /// A vendor gateway at `address` over `transport` (`udp`/`tcp`); a lower `priority` is
    /// tried first, so tests pin the failover order with it.
    pub fn gateway(
        self,
        name: &str,
        address: SocketAddr,
        transport: &str,
        priority: u32,
    ) -> Trunks {
        self.gateway_with(name, address, transport, &format!("priority = {priority}"))
    }

    /// A vendor gateway with more `key = value` lines (strip, prefix, probe, ...).
    pub fn gateway_with(
        mut self,
        name: &str,
        address: SocketAddr,
        transport: &str,
        lines: &str,
    ) -> Trunks {
        let _ = write!(
            self.text,
            "\n[[gateways]]\nname = \"{name}\"\nhost = \"{}\"\nport = {}\ntransport = \"{transport}\"\n{lines}\n",
            address.ip(),
            address.port()
        );
        self
    }

    /// A route trying `gateways` in order of their priority.
    /// A vendor gateway given by DNS name.
    pub fn gateway_by_name(mut self, name: &str, host: &str, port: u16) -> Trunks {
        let _ = write!(
            self.text,
            "\n[[gateways]]\nname = \"{name}\"\nhost = \"{host}\"\nport = {port}\n"
        );
        self
    }

    pub fn route(mut self, name: &str, gateways: &[&str]) -> Trunks {
        let list = gateways
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            self.text,
            "\n[[routes]]\nname = \"{name}\"\ngateways = [{list}]\n"
        );
        self
    }
}

// === TestEdge ===

/// How a [`TestEdge`] is configured before it starts.
#[derive(Clone, Debug)]
pub struct TestEdgeBuilder {
    listeners: Vec<(&'static str, SocketAddr, Option<String>)>,
    trunks: Trunks,
    acl: String,
    extra: String,
}

impl TestEdgeBuilder {
    /// Adds a UDP listener (the default listeners are then left out).
    pub fn udp(mut self, address: SocketAddr) -> Self {
        self.listeners.push(("udp", address, None));
        self
    }

    /// Adds a UDP listener with an `advertise` name (required for a wildcard address).
    pub fn udp_advertised(mut self, address: SocketAddr, advertise: &str) -> Self {
        self.listeners
            .push(("udp", address, Some(advertise.to_owned())));
        self
    }

    pub fn tcp(mut self, address: SocketAddr) -> Self {
        self.listeners.push(("tcp", address, None));
        self
    }

    pub fn trunks(mut self, trunks: Trunks) -> Self {
        self.trunks = trunks;
        self
    }

    /// One more `key = value` line in the `[acl]` section.
    pub fn acl(mut self, line: &str) -> Self {
        self.acl.push_str(line);
        self.acl.push('\n');
        self
    }

    /// Raw TOML appended to the config file (whole sections such as `[sip]`).
    pub fn config(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self
    }

    /// The config file's text.
    fn render(&self) -> String {
        let default = [
            ("udp", SocketAddr::new(SHARED_INGRESS, 0), None),
            ("tcp", SocketAddr::new(SHARED_INGRESS, 0), None),
        ];
        let listeners = if self.listeners.is_empty() {
            &default[..]
        } else {
            &self.listeners[..]
        };
        let mut text = String::new();
        for (transport, address, advertise) in listeners {
            let _ = write!(
                text,
                "[[listeners]]\ntransport = \"{transport}\"\naddress = \"{address}\"\n"
            );
            if let Some(advertise) = advertise {
                let _ = writeln!(text, "advertise = \"{advertise}\"");
            }
            text.push('\n');
        }
        // A short reload interval keeps the hot-reload test quick; a small receive buffer
        // keeps many parallel edges cheap.
        text.push_str(
            "[admin]\naddress = \"127.0.0.1:0\"\n\n\
             [udp]\nreceive_buffer_bytes = 262144\n\n\
             [acl]\ntrunks_file = \"trunks.toml\"\nreload_interval_ms = 20\n",
        );
        text.push_str(&self.acl);
        text.push('\n');
        text.push_str(&self.extra);
        text
    }

    /// Writes the files and starts the edge in this runtime.
    pub async fn start(self) -> TestEdge {
        let dir = TempDir::new("front-door");
        dir.write("trunks.toml", self.trunks.text());
        let file = dir.write("warp-edge.toml", &self.render());
        let (config, trunks) = Config::load_all(&file).expect("test config is valid");
        let edge = edge::start(&config, trunks)
            .await
            .expect("test edge starts");
        TestEdge { edge, config, dir }
    }

    /// One more `key = value` line in the `[proxy]` section.
    pub fn proxy(self, line: &str) -> Self {
        self.section_line("[proxy]", line)
    }

    /// One more `key = value` line in the `[proxy.probe]` section.
    pub fn proxy_probe(self, line: &str) -> Self {
        self.section_line("[proxy.probe]", line)
    }

    /// Adds `line` under `header` in the raw TOML, opening the section the first time. TOML
    /// forbids a section twice, so later lines go right under the existing header.
    fn section_line(mut self, header: &str, line: &str) -> Self {
        let marker = format!("\n{header}\n");
        match self.extra.find(&marker) {
            Some(at) => self
                .extra
                .insert_str(at + marker.len(), &format!("{line}\n")),
            None => {
                let _ = writeln!(self.extra, "{marker}{line}");
            }
        }
        self
    }

    /// The config file's text, for a test that runs the binary with it.
    pub fn config_text(&self) -> String {
        self.render()
    }

    /// The trunks file's text.
    pub fn trunks_text(&self) -> &str {
        self.trunks.text()
    }
}

/// An edge running in-process on loopback, with its config dir. Dropping it stops the edge
/// and removes the dir.
pub struct TestEdge {
    pub edge: Edge,
    pub config: Config,
    dir: TempDir,
}

impl TestEdge {
    /// UDP and TCP on 127.0.0.1, the demo trunks file.
    pub fn builder() -> TestEdgeBuilder {
        TestEdgeBuilder {
            listeners: Vec::new(),
            trunks: Trunks::demo(),
            acl: String::new(),
            extra: String::new(),
        }
    }

    /// The default edge with `trunks`.
    pub async fn with_trunks(trunks: Trunks) -> TestEdge {
        TestEdge::builder().trunks(trunks).start().await
    }

    /// The first UDP listener's address.
    pub fn udp(&self) -> SocketAddr {
        *self.edge.udp.first().expect("the edge has a UDP listener")
    }

    /// The UDP listener reachable at `ip`: the one bound to it, else a wildcard one.
    pub fn udp_at(&self, ip: IpAddr) -> SocketAddr {
        let listener = self
            .edge
            .udp
            .iter()
            .find(|a| a.ip() == ip)
            .or_else(|| self.edge.udp.iter().find(|a| a.ip().is_unspecified()))
            .expect("a UDP listener reachable at that address");
        SocketAddr::new(ip, listener.port())
    }

    /// The first TCP listener's address.
    pub fn tcp(&self) -> SocketAddr {
        *self.edge.tcp.first().expect("the edge has a TCP listener")
    }

    /// Replaces the trunks file the way a deploy does (write, then rename).
    pub fn replace_trunks(&self, text: &str) {
        self.dir.replace("trunks.toml", text);
    }

    /// `GET path` on the admin endpoint: the status code and the body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.edge.admin, path).await
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> Scrape {
        let (status, body) = self.admin_get("/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Scrape { text: body }
    }
}

/// A one-shot HTTP/1.1 GET (the admin endpoint closes after each answer).
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    within(&format!("GET {path}"), async {
        let mut stream = TcpStream::connect(address).await.expect("connect admin");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send HTTP request");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .expect("read HTTP answer");
        let answer = String::from_utf8(answer).expect("HTTP answer is UTF-8");
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("HTTP answer without a header end: {answer:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("HTTP status line: {head:?}"));
        (status, body.to_owned())
    })
    .await
}

// === Scrape ===

/// One `/metrics` exposition.
#[derive(Clone, Debug)]
pub struct Scrape {
    text: String,
}

impl Scrape {
    /// The value of the series `name` with exactly `labels` (in any order); 0 when the series
    /// has not been exported (a counter never incremented may be absent).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        let mut found = None;
        for (series, series_labels, value) in self.series() {
            if series == name && series_labels == want {
                assert!(found.is_none(), "{name}{labels:?} exported twice");
                found = Some(value);
            }
        }
        let value = found.unwrap_or(0.0);
        assert!(
            value >= 0.0 && value.fract() == 0.0,
            "{name}{labels:?} = {value} is not a count"
        );
        value as u64
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every sample: name, sorted labels, value.
    fn series(&self) -> impl Iterator<Item = (&str, Vec<(String, String)>, f64)> + '_ {
        self.text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("metric line without a value: {line:?}"));
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("metric value: {line:?}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                (name, labels, value)
            })
    }
}

/// `a="x",b="y"` into sorted pairs (label values here never hold quotes or commas).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = text
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("label without a value: {pair:?}"));
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect();
    labels.sort();
    labels
}

// === Request ===

/// A SIP request template. The Via is written when sent (it names the sender's transport and
/// address, with `rport` so UDP answers come back to the sending socket); everything else can
/// be replaced or removed to build a malformed request.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    uri: String,
    version: String,
    headers: Vec<(String, String)>,
    body: String,
    serial: u64,
}

/// Stands for the Via value computed at send time.
const VIA_PLACEHOLDER: &str = "{via}";

impl Request {
    pub fn new(method: &str, uri: &str) -> Request {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let to = if uri.starts_with("sip:") || uri.starts_with("sips:") || uri.starts_with("tel:") {
            uri.to_owned()
        } else {
            "sip:edge@example.invalid".to_owned()
        };
        let headers = [
            ("Via", VIA_PLACEHOLDER.to_owned()),
            ("Max-Forwards", "70".to_owned()),
            (
                "From",
                format!("\"Test PBX\" <sip:pbx@example.com>;tag=f{serial}"),
            ),
            ("To", format!("<{to}>")),
            ("Call-ID", format!("front-door-{pid}-{serial}@pbx.test")),
            ("CSeq", format!("1 {method}")),
            ("Contact", "<sip:pbx@example.com>".to_owned()),
            ("User-Agent", "warp-edge front door test".to_owned()),
            ("Content-Length", "0".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        Request {
            method: method.to_owned(),
            uri: uri.to_owned(),
            version: "SIP/2.0".to_owned(),
            headers,
            body: String::new(),
            serial,
        }
    }

    /// OPTIONS addressed to the edge itself (no user part).
    pub fn options() -> Request {
        Request::new("OPTIONS", "sip:127.0.0.1")
    }

    /// INVITE to a number behind the edge.
    pub fn invite() -> Request {
        Request::new("INVITE", "sip:+15551234567@127.0.0.1")
    }

    pub fn register() -> Request {
        Request::new("REGISTER", "sip:127.0.0.1")
    }

    /// Sets `name` (replacing the first field of that name, else appending it).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(field) => field.1 = value.to_owned(),
            None => {
                // Keep Content-Length last, where real stacks put it.
                let at = self.headers.len().saturating_sub(1);
                self.headers.insert(at, (name.to_owned(), value.to_owned()));
            }
        }
        self
    }

    /// Removes every field named `name`.
    pub fn without(mut self, name: &str) -> Request {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn version(mut self, version: &str) -> Request {
        self.version = version.to_owned();
        self
    }

    /// A body, with a Content-Length to match.
    pub fn body(mut self, body: &str) -> Request {
        self.body = body.to_owned();
        let length = body.len().to_string();
        self.header("Content-Length", &length)
    }

    /// The Call-ID field as set (empty when removed).
    pub fn call_id(&self) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Call-ID"))
            .map_or("", |(_, v)| v.as_str())
    }

    /// The bytes sent from `local` over `transport` ("UDP" or "TCP").
    pub fn render(&self, transport: &str, local: SocketAddr) -> Vec<u8> {
        let via = format!(
            "SIP/2.0/{transport} {local};branch=z9hG4bK-front-{}-{};rport",
            std::process::id(),
            self.serial
        );
        let mut out = format!("{} {} {}\r\n", self.method, self.uri, self.version);
        for (name, value) in &self.headers {
            let value = if value == VIA_PLACEHOLDER {
                &via
            } else {
                value
            };
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

// === Response ===

/// A response as received.
#[derive(Clone, Debug)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    headers: Vec<(String, String)>,
    pub body: String,
    /// Where it came from (the edge's address for UDP; the peer for TCP).
    pub from: SocketAddr,
    pub text: String,
}

impl Response {
    /// Parses a whole response; fails the test on anything that is not one.
    pub fn parse(bytes: &[u8], from: SocketAddr) -> Response {
        let text = String::from_utf8(bytes.to_vec()).expect("response is UTF-8");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("response without a header end: {text:?}"));
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let mut parts = status.splitn(3, ' ');
        assert_eq!(parts.next(), Some("SIP/2.0"), "status line {status:?}");
        let code = parts
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("status code in {status:?}"));
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("header line {line:?} in {text:?}"));
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        Response {
            code,
            reason,
            headers,
            body: body.to_owned(),
            from,
            text: text.clone(),
        }
    }

    /// The first field named `name` (full names only: the edge copies what it received).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// The `tag` parameter of To, if any.
    pub fn to_tag(&self) -> Option<&str> {
        self.header("To")?
            .split(';')
            .skip(1)
            .find_map(|param| param.trim().strip_prefix("tag="))
    }
}

// === TestPbx ===

enum Link {
    Udp(UdpSocket),
    Tcp { stream: TcpStream, buffer: Vec<u8> },
}

/// A customer PBX (or any caller) on a loopback address, talking to one edge listener.
pub struct TestPbx {
    link: Link,
    local: SocketAddr,
    edge: SocketAddr,
}

impl TestPbx {
    /// A UDP client on `ip` (any port) sending to `edge`.
    pub async fn udp(ip: IpAddr, edge: SocketAddr) -> TestPbx {
        TestPbx::udp_bound(SocketAddr::new(ip, 0), edge).await
    }

    /// A UDP client bound to exactly `local`.
    pub async fn udp_bound(local: SocketAddr, edge: SocketAddr) -> TestPbx {
        let socket = UdpSocket::bind(local).await.expect("bind test PBX socket");
        let local = socket.local_addr().expect("test PBX address");
        TestPbx {
            link: Link::Udp(socket),
            local,
            edge,
        }
    }

    /// A TCP connection from `ip` to `edge`.
    pub async fn tcp(ip: IpAddr, edge: SocketAddr) -> TestPbx {
        let socket = TcpSocket::new_v4().expect("tcp socket");
        socket
            .bind(SocketAddr::new(ip, 0))
            .expect("bind test PBX socket");
        let stream = within("TCP connect", socket.connect(edge))
            .await
            .expect("connect to the edge");
        stream.set_nodelay(true).ok();
        let local = stream.local_addr().expect("test PBX address");
        TestPbx {
            link: Link::Tcp {
                stream,
                buffer: Vec::new(),
            },
            local,
            edge,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Sends to `edge` from now on (for a client bound before the edge starts).
    pub fn retarget(&mut self, edge: SocketAddr) {
        self.edge = edge;
    }

    fn transport(&self) -> &'static str {
        match self.link {
            Link::Udp(_) => "UDP",
            Link::Tcp { .. } => "TCP",
        }
    }

    /// Sends `request` to the edge.
    pub async fn send(&mut self, request: &Request) {
        let bytes = request.render(self.transport(), self.local);
        self.send_raw(&bytes).await;
    }

    /// Sends `request` over UDP to another edge address than the default one.
    pub async fn send_to(&mut self, to: SocketAddr, request: &Request) {
        let bytes = request.render(self.transport(), self.local);
        match &self.link {
            Link::Udp(socket) => {
                socket.send_to(&bytes, to).await.expect("send datagram");
            }
            Link::Tcp { .. } => panic!("send_to is for UDP"),
        }
    }

    /// Sends bytes as they are (one datagram, or one write on the stream).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(socket) => {
                socket
                    .send_to(bytes, self.edge)
                    .await
                    .expect("send datagram");
            }
            Link::Tcp { stream, .. } => stream.write_all(bytes).await.expect("write to stream"),
        }
    }

    /// The next response; fails the test when none comes.
    pub async fn recv(&mut self) -> Response {
        let edge = self.edge;
        match &mut self.link {
            Link::Udp(socket) => {
                let mut buf = vec![0u8; 65_535];
                let (len, from) = within("UDP answer", socket.recv_from(&mut buf))
                    .await
                    .expect("receive datagram");
                Response::parse(&buf[..len], from)
            }
            Link::Tcp { stream, buffer } => {
                let bytes = within("TCP answer", read_frame(stream, buffer)).await;
                Response::parse(&bytes, edge)
            }
        }
    }

    /// Sends `request` and returns the next response, which must be for it.
    pub async fn request(&mut self, request: &Request) -> Response {
        self.send(request).await;
        let response = self.recv().await;
        assert_eq!(
            response.call_id(),
            request.call_id(),
            "answer for another request: {}",
            response.text
        );
        response
    }

    /// Proves that nothing was answered to what was sent before: sends an OPTIONS and checks
    /// that the next response is the one for it. The edge answers a socket's (or a
    /// connection's) messages in order, so an earlier answer would arrive first.
    pub async fn assert_nothing_pending(&mut self) {
        let probe = Request::options();
        self.send(&probe).await;
        let response = self.recv().await;
        assert_eq!(
            response.call_id(),
            probe.call_id(),
            "unexpected answer before the probe's: {}",
            response.text
        );
    }

    /// Reads exactly `n` raw bytes from the stream.
    pub async fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let Link::Tcp { stream, buffer } = &mut self.link else {
            panic!("read_raw is for TCP");
        };
        within("TCP bytes", async {
            while buffer.len() < n {
                let mut chunk = [0u8; 4096];
                let got = stream.read(&mut chunk).await.expect("read stream");
                assert!(got > 0, "connection closed after {buffer:?}");
                buffer.extend_from_slice(&chunk[..got]);
            }
            buffer.drain(..n).collect()
        })
        .await
    }

    /// Waits for the edge to close the connection: the result of the read that ends it
    /// (`Ok(0)` for an orderly close).
    pub async fn read_until_closed(&mut self) -> io::Result<usize> {
        let Link::Tcp { stream, buffer } = &mut self.link else {
            panic!("read_until_closed is for TCP");
        };
        assert!(buffer.is_empty(), "unread bytes: {buffer:?}");
        let mut chunk = [0u8; 4096];
        let got = within("TCP close", stream.read(&mut chunk)).await;
        if let Ok(n) = got {
            assert_eq!(n, 0, "data instead of a close: {:?}", &chunk[..n]);
        }
        got
    }
}

/// Reads one SIP message off a stream (framed by its Content-Length).
async fn read_frame(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .split("\r\n")
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    let name = name.trim();
                    (name.eq_ignore_ascii_case("Content-Length") || name == "l")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or_else(|| panic!("response without Content-Length: {head:?}"));
            let total = end + 4 + length;
            if buffer.len() >= total {
                return buffer.drain(..total).collect();
            }
        }
        let mut chunk = [0u8; 4096];
        let got = stream.read(&mut chunk).await.expect("read stream");
        assert!(got > 0, "connection closed; unread: {buffer:?}");
        buffer.extend_from_slice(&chunk[..got]);
    }
}

pub mod peer;

/// A port free for both UDP and TCP on `ip` (for a peer or binary that cannot bind port 0).
pub fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind UDP");
        let port = udp.local_addr().expect("UDP address").port();
        if std::net::TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for UDP and TCP on {ip}");
}

// === Stores (issue 5): a PostgreSQL database and a Redis key space per test ===

/// The PostgreSQL server the store tests use (`WARP_EDGE_TEST_PG` overrides it); its
/// `postgres` maintenance database creates and drops each test's own database.
pub fn pg_server() -> String {
    std::env::var("WARP_EDGE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The Redis server the store tests use (`WARP_EDGE_TEST_REDIS` overrides it).
pub fn redis_url() -> String {
    std::env::var("WARP_EDGE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// `label_<pid>_<n>_<nanos>`: a name no other test (or earlier run) uses.
pub fn unique_name(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{label}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database of its own (`warp_edge_test_...`), dropped (with its connections) on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
    conn: tokio::sync::Mutex<sqlx::PgConnection>,
}

impl TestDb {
    /// A new database with the migrations applied.
    pub async fn migrated() -> TestDb {
        let db = TestDb::empty().await;
        {
            let mut conn = db.conn.lock().await;
            warp_edge::acl::sources::postgres::MIGRATOR
                .run(&mut *conn)
                .await
                .expect("migrations apply");
        }
        db
    }

    /// A new, empty database.
    pub async fn empty() -> TestDb {
        use sqlx::Connection;
        let name = unique_name("warp_edge_test");
        let server = pg_server();
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("connect to the test PostgreSQL server (is it running on 127.0.0.1:5432?)");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = format!("{server}/{name}");
        let conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("connect to the test database");
        TestDb {
            name,
            url,
            conn: tokio::sync::Mutex::new(conn),
        }
    }

    /// Runs `sql` (one statement, or several without parameters) and commits it.
    pub async fn execute(&self, sql: &str) {
        use sqlx::Executor;
        let mut conn = self.conn.lock().await;
        conn.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of every row of `sql`, as text.
    pub async fn column(&self, sql: &str) -> Vec<Option<String>> {
        use sqlx::Row;
        let mut conn = self.conn.lock().await;
        sqlx::query(sql)
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.try_get::<Option<String>, _>(0).expect("a text column"))
            .collect()
    }

    /// One text value.
    pub async fn value(&self, sql: &str) -> String {
        self.column(sql)
            .await
            .into_iter()
            .next()
            .flatten()
            .unwrap_or_else(|| panic!("{sql}: no value"))
    }

    pub async fn customer(&self, ban: &str, status: &str) {
        self.execute(&format!(
            "INSERT INTO accounts.customers (ban, name, status) VALUES ('{ban}', 'customer {ban}', '{status}')"
        ))
        .await;
    }

    /// A trunk group of `ban`; returns its id.
    pub async fn trunk_group(&self, ban: &str, name: &str) -> i64 {
        self.value(&format!(
            "INSERT INTO accounts.trunk_groups (customer_ban, name) VALUES ('{ban}', '{name}') RETURNING id::text"
        ))
        .await
        .parse()
        .expect("an id")
    }

    /// A trunk IP on `trunk_group` (any port, any proto); returns its id.
    pub async fn trunk_ip(&self, trunk_group: i64, ip: &str) -> String {
        self.value(&format!(
            "INSERT INTO accounts.trunk_ips (trunk_group_id, ip) VALUES ({trunk_group}, '{ip}') RETURNING id::text"
        ))
        .await
    }

    /// The `[acl.postgres]` section for this database (`url` may point elsewhere, e.g. a relay).
    pub fn section(url: &str) -> String {
        format!(
            "\n[acl.postgres]\nurl = \"{url}\"\nreload_interval_ms = 60000\nconnect_timeout_ms = 500\n"
        )
    }

    /// This database's URL through another address (a [`TcpRelay`], a closed port).
    pub fn url_via(&self, address: SocketAddr) -> String {
        let server = pg_server();
        let rest = server.split_once("://").map_or(server.as_str(), |(_, r)| r);
        let user = rest
            .split('/')
            .next()
            .and_then(|authority| authority.rsplit_once('@'))
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        format!("postgres://{user}{address}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let server = pg_server();
        // Drop is synchronous and may run inside a runtime: drop the database from a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) =
                    sqlx::PgConnection::connect(&format!("{server}/postgres")).await
                {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join();
    }
}

/// A key prefix and pub/sub channel of its own on the test Redis; its keys are deleted on
/// drop.
pub struct TestRedis {
    pub prefix: String,
    pub channel: String,
    client: redis::Client,
}

impl TestRedis {
    pub fn new() -> TestRedis {
        let name = unique_name("wetest");
        TestRedis {
            prefix: format!("{name}:"),
            channel: format!("{name}_acl"),
            client: redis::Client::open(redis_url()).expect("redis url"),
        }
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test Redis (is it running on 127.0.0.1:6379?)")
    }

    /// Writes one address row at `{prefix}{key}` (fields as given), like the platform does.
    pub async fn hset(&self, key: &str, fields: &[(&str, &str)]) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(format!("{}{key}", self.prefix));
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        cmd.query_async::<()>(&mut self.conn().await)
            .await
            .expect("HSET");
    }

    pub async fn del(&self, key: &str) {
        redis::cmd("DEL")
            .arg(format!("{}{key}", self.prefix))
            .query_async::<()>(&mut self.conn().await)
            .await
            .expect("DEL");
    }

    /// Tells the edges to reload, as a writer does after a change.
    pub async fn publish(&self) {
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg("changed")
            .query_async::<()>(&mut self.conn().await)
            .await
            .expect("PUBLISH");
    }

    /// Keys under the prefix (without it), sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("SCAN");
            keys.extend(found.into_iter().map(|k| k[self.prefix.len()..].to_owned()));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys
    }

    pub async fn hgetall(&self, key: &str) -> std::collections::HashMap<String, String> {
        redis::cmd("HGETALL")
            .arg(format!("{}{key}", self.prefix))
            .query_async(&mut self.conn().await)
            .await
            .expect("HGETALL")
    }

    /// The `[acl.redis]` section for this prefix and channel (`url` may be a relay).
    pub fn section(&self, url: &str) -> String {
        format!(
            "\n[acl.redis]\nurl = \"{url}\"\nkey_prefix = \"{}\"\nchannel = \"{}\"\nreload_interval_ms = 60000\nconnect_timeout_ms = 500\n",
            self.prefix, self.channel
        )
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(mut conn) = self.client.get_connection() else {
            return;
        };
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query::<(u64, Vec<String>)>(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _ = redis::cmd("DEL").arg(keys).query::<()>(&mut conn);
            }
            cursor = next;
            if cursor == 0 {
                return;
            }
        }
    }
}

/// A TCP relay on loopback standing between the edge and a store, so a test can take the
/// store away (every connection closed, new ones refused at once) and bring it back.
pub struct TcpRelay {
    pub address: SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpRelay {
    pub async fn start(target: SocketAddr) -> TcpRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let address = listener.local_addr().expect("relay address");
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (open2, generation2) = (open.clone(), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !open2.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let mut cut = generation2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpRelay {
            address,
            open,
            generation,
            task,
        }
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::Release);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address")
}

impl TestEdgeBuilder {
    /// Starts with the config written into `dir` (which the test keeps), so files such as a
    /// last-known-good file can be placed beside it first.
    pub async fn start_in(self, dir: TempDir) -> TestEdge {
        dir.write("trunks.toml", self.trunks.text());
        let file = dir.write("warp-edge.toml", &self.render());
        let (config, trunks) = Config::load_all(&file).expect("test config is valid");
        let edge = edge::start(&config, trunks)
            .await
            .expect("test edge starts");
        TestEdge { edge, config, dir }
    }
}

impl TestEdge {
    /// The path of `name` in the edge's config dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }
}

/// Sends OPTIONS from `pbx` until the answer is `code` (a reload has applied).
pub async fn eventually_answers(what: &str, pbx: &mut TestPbx, code: u16) {
    let pbx = tokio::sync::Mutex::new(pbx);
    eventually(what, || async {
        let response = pbx.lock().await.request(&Request::options()).await;
        (response.code == code).then_some(())
    })
    .await;
}

/// `host:port` of a `scheme://[user@]host:port[/...]` URL, for a [`TcpRelay`] in front of it.
fn socket_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("{url}: no host:port"))
}

/// The test PostgreSQL server's address ([`pg_server`]).
pub fn pg_socket() -> SocketAddr {
    socket_of(&pg_server())
}

/// The test Redis server's address ([`redis_url`]).
pub fn redis_socket() -> SocketAddr {
    socket_of(&redis_url())
}
