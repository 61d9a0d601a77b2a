//! Transaction-stateful forwarding: initial INVITEs to vendor gateways with serial failover,
//! in-dialog requests routed by the Record-Route token, responses relayed back, CANCEL and
//! ACK handled as RFC 3261 16 and 17 (with RFC 6026) say. No I/O and no clock of its own:
//! every entry point takes `now` and returns the messages to send.
//!
//! State lives in shards keyed so that every message of a transaction lands on one shard:
//! the customer's request (and its retransmissions, CANCEL and ACK) by a hash of its
//! transaction key, and vendor responses by the transaction id the edge wrote into its own
//! branch. Each shard keeps its timers in an ordered set; [`Forwarder::on_timer`] fires the
//! due ones.
//!
//! The edge keeps no dialog state: in-dialog requests are routed by their Route headers and
//! authorised by the token in the edge's own Record-Route (see [`super::dialog`]).

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::core::{local_response, reply_address};
use super::dialog::{DialogKeys, TOKEN_PARAM};
use super::io::{BranchRef, Face, Inbound, Send, Sends, Side};
use super::transaction::{
    Action, ClientState, ClientTransaction, ServerState, ServerTransaction, Timers,
};
use crate::acl::rules::Proto;
use crate::config::ProbeConfig;
use crate::route::table::rewrite_user;
use crate::route::{attempt_order, best_response, should_fail_over, GatewayChoice, RouteTable};
use crate::sip::{
    ack_for, cancel_for, options_probe, Edit, Message, Method, NameAddr, Scheme, Uri,
};
use crate::telemetry::{CallOutcome, ForwardMetrics, Metrics, Retransmission};

const SHARDS: usize = 8;
/// Our branches: `z9hG4bK` + a kind letter pair + this edge's salt + ids.
const CALL_BRANCH: &[u8] = b"z9hG4bKwe";
const PROBE_BRANCH: &[u8] = b"z9hG4bKwp";
const ACK_BRANCH: &[u8] = b"z9hG4bKwa";

/// A customer-facing listener, as forwarding names it in Via and Record-Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerFace {
    pub transport: Proto,
    pub bound: SocketAddr,
    /// The host written into Via and Record-Route (IPv6 in brackets).
    pub advertise: String,
}

/// Everything forwarding is configured with.
#[derive(Clone, Debug)]
pub struct ForwardSettings {
    pub listeners: Vec<ListenerFace>,
    /// Bound egress addresses (UDP socket and TCP listener on each).
    pub egress: Vec<SocketAddr>,
    pub keys: DialogKeys,
    pub max_transactions: usize,
    pub max_attempts: usize,
    pub failover_codes: Vec<u16>,
    pub default_route: Option<String>,
    pub timers: Timers,
    pub probe: ProbeConfig,
    pub retry_after_secs: u32,
}

/// The customer and trunk an allowed INVITE belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub customer: &'a str,
    pub route: Option<&'a str>,
}

// === transaction state ===

/// What identifies a customer's (or vendor's) server transaction (RFC 3261 17.2.3, with the
/// RFC 2543 fallback for requests without a usable branch).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ServerKey {
    id: SmallVec<[u8; 64]>,
    /// INVITE and its ACK/CANCEL share a key; other methods carry the method in `id`.
    invite: bool,
}

/// `invite`: the key of an INVITE transaction (for an INVITE, its ACK, or the INVITE a
/// CANCEL names); otherwise the request's own non-INVITE transaction (CANCEL included).
fn server_key(msg: &Message, invite: bool) -> ServerKey {
    let via = msg.top_via();
    let mut id = SmallVec::new();
    if via.is_rfc3261_branch() {
        id.extend_from_slice(via.branch().unwrap_or_default());
        id.push(b'|');
        id.extend_from_slice(via.host());
        id.extend_from_slice(
            itoa::Buffer::new()
                .format(via.port().unwrap_or(0))
                .as_bytes(),
        );
    } else {
        for part in [
            msg.call_id(),
            msg.from().tag().unwrap_or_default(),
            itoa::Buffer::new().format(msg.cseq().seq).as_bytes(),
            via.as_bytes(),
        ] {
            id.extend_from_slice(part);
            id.push(b'|');
        }
    }
    if !invite {
        id.extend_from_slice(msg.method_bytes());
    }
    ServerKey { id, invite }
}

fn shard_of(key: &ServerKey) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}

/// Where a branch's requests go, and from which face.
#[derive(Clone, Copy, Debug)]
struct Hop {
    to: SocketAddr,
    transport: Proto,
    face: Face,
}

#[derive(Debug)]
struct Branch {
    client: ClientTransaction,
    hop: Hop,
    gateway: Option<usize>,
    /// The request as forwarded (retransmissions; CANCEL and ACK are built from it).
    bytes: Bytes,
    started: Instant,
    responded: bool,
    provisional: bool,
    /// A CANCEL is owed once the branch has had a provisional response (RFC 3261 9.1).
    cancel_pending: bool,
    cancel: Option<(ClientTransaction, Bytes)>,
}

impl Branch {
    /// A branch whose request `bytes` is being sent now.
    fn start(
        now: Instant,
        invite: bool,
        hop: Hop,
        gateway: Option<usize>,
        bytes: Bytes,
        timers: Timers,
    ) -> Branch {
        Branch {
            client: ClientTransaction::start(now, invite, hop.transport != Proto::Udp, timers),
            hop,
            gateway,
            bytes,
            started: now,
            responded: false,
            provisional: false,
            cancel_pending: false,
            cancel: None,
        }
    }

    /// The message that sends this branch's request (again).
    fn send(&self, branch: Option<BranchRef>) -> Send {
        self.send_bytes(self.bytes.clone(), branch)
    }

    /// `bytes` (a CANCEL, an ACK) to where this branch's request went.
    fn send_bytes(&self, bytes: Bytes, branch: Option<BranchRef>) -> Send {
        Send {
            face: self.hop.face,
            to: self.hop.to,
            transport: self.hop.transport,
            bytes,
            branch,
        }
    }

    fn pending(&self) -> bool {
        matches!(
            self.client.state(),
            ClientState::Trying | ClientState::Proceeding
        )
    }
}

#[derive(Debug)]
enum Kind {
    /// An initial INVITE from a customer: gateways to try, in order.
    Call {
        customer: Arc<str>,
        plan: SmallVec<[usize; 4]>,
        next: usize,
    },
    /// A request inside a dialog, from either side: one branch, no failover.
    Dialog,
}

#[derive(Debug)]
struct Txn {
    key: ServerKey,
    kind: Kind,
    request: Message,
    inbound: Inbound,
    reply_to: SocketAddr,
    server: ServerTransaction,
    /// The last response sent upstream, for retransmissions of the request (and Timer G).
    last_response: Option<Bytes>,
    branches: SmallVec<[Branch; 2]>,
    /// Failure finals collected for RFC 3261 16.7 (`None`: a timeout, answered 408 by us).
    finals: SmallVec<[(u16, Option<Bytes>); 3]>,
    cancelled: bool,
    final_sent: bool,
    /// Counted in [`Forwarder::pending_transactions`] (inserted, no final sent yet).
    pending: bool,
    egress: usize,
    scheduled: Option<Instant>,
}

impl Txn {
    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.server.next_deadline();
        for b in &self.branches {
            for d in [
                b.client.next_deadline(),
                b.cancel.as_ref().and_then(|(c, _)| c.next_deadline()),
            ]
            .into_iter()
            .flatten()
            {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        next
    }

    fn finished(&self) -> bool {
        self.server.state() == ServerState::Terminated
            && self.branches.iter().all(|b| {
                b.client.state() == ClientState::Terminated
                    && b.cancel
                        .as_ref()
                        .is_none_or(|(c, _)| c.state() == ClientState::Terminated)
            })
    }

    fn upstream(&self, bytes: Bytes) -> Send {
        Send {
            face: self.inbound.face(),
            to: self.reply_to,
            transport: self.inbound.transport,
            bytes,
            branch: None,
        }
    }
}

#[derive(Default)]
struct Shard {
    txns: HashMap<u64, Txn>,
    by_key: HashMap<ServerKey, u64>,
    timers: BTreeSet<(Instant, u64)>,
}

impl Shard {
    fn reschedule(&mut self, id: u64) {
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let next = txn.next_deadline();
        if next == txn.scheduled {
            return;
        }
        if let Some(old) = txn.scheduled {
            self.timers.remove(&(old, id));
        }
        txn.scheduled = next;
        if let Some(at) = next {
            self.timers.insert((at, id));
        }
    }
}

#[derive(Debug, Default)]
struct ProbeSlot {
    next_at: Option<Instant>,
    outstanding: Option<(u32, Instant)>,
    cseq: u32,
}

// === impl Forwarder ===

pub struct Forwarder {
    settings: ForwardSettings,
    routes: Arc<RouteTable>,
    shards: Box<[Mutex<Shard>]>,
    counter: AtomicU64,
    live: AtomicUsize,
    /// Transactions waiting for a final response: the load the cap limits.
    pending: AtomicUsize,
    draining: AtomicBool,
    /// Distinguishes this process's branches from another replica's.
    salt: [u8; 8],
    retry_after: String,
    metrics: Arc<Metrics>,
    stats: ForwardMetrics,
    probes: Mutex<Vec<ProbeSlot>>,
}

fn hex(mut value: u64, out: &mut Vec<u8>) {
    let start = out.len();
    loop {
        out.push(b"0123456789abcdef"[(value & 0xf) as usize]);
        value >>= 4;
        if value == 0 {
            break;
        }
    }
    out[start..].reverse();
}

fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &c| {
        let digit = (c as char).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn transport_token(t: Proto) -> &'static str {
    match t {
        Proto::Tcp => "TCP",
        Proto::Tls => "TLS",
        Proto::Udp | Proto::Any => "UDP",
    }
}

fn uri_transport(uri: &Uri<'_>) -> Option<Proto> {
    let t = uri.param(b"transport")?;
    if t.eq_ignore_ascii_case(b"tcp") {
        Some(Proto::Tcp)
    } else if t.eq_ignore_ascii_case(b"udp") {
        Some(Proto::Udp)
    } else {
        None
    }
}

/// What the last of the edge's own Route values says about the face on the other side.
#[derive(Debug, Default)]
struct RouteHint {
    ip: Option<IpAddr>,
    port: Option<u16>,
    transport: Option<Proto>,
    host: Vec<u8>,
}

impl Forwarder {
    pub fn new(
        settings: ForwardSettings,
        routes: Arc<RouteTable>,
        metrics: Arc<Metrics>,
    ) -> Forwarder {
        let names: Vec<&str> = routes.gateways.iter().map(|g| g.name()).collect();
        let egress: Vec<String> = settings.egress.iter().map(|e| e.to_string()).collect();
        let stats = ForwardMetrics::new(&metrics, &names, &egress);
        let mut salt_hasher = std::hash::DefaultHasher::new();
        std::process::id().hash(&mut salt_hasher);
        std::time::SystemTime::now().hash(&mut salt_hasher);
        settings.egress.hash(&mut salt_hasher);
        let mut salt = [0u8; 8];
        let bits = salt_hasher.finish();
        for (i, b) in salt.iter_mut().enumerate() {
            *b = b"0123456789abcdefghijklmnopqrstuv"[((bits >> (5 * i)) & 31) as usize];
        }
        let probes = routes
            .gateways
            .iter()
            .map(|_| ProbeSlot::default())
            .collect();
        Forwarder {
            retry_after: settings.retry_after_secs.to_string(),
            settings,
            routes,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            counter: AtomicU64::new(1),
            live: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            salt,
            metrics,
            stats,
            probes: Mutex::new(probes),
        }
    }

    /// Stop taking new calls (SIGTERM): new INVITEs get 503 with Retry-After; everything in
    /// flight and every in-dialog request is still served.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn live_transactions(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Transactions still waiting for a final response: what the cap limits and a drain
    /// waits for. Those that only linger to absorb retransmissions (RFC 3261 Timers J and
    /// L, bounded by rate times 64*T1) do not count.
    pub fn pending_transactions(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transaction id whose shard is `shard`.
    fn new_id(&self, shard: usize) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) * SHARDS as u64 + shard as u64
    }

    fn branch_param(&self, kind: &[u8], id: u64, index: u8) -> Vec<u8> {
        let mut b = Vec::with_capacity(40);
        b.extend_from_slice(kind);
        b.extend_from_slice(&self.salt);
        b.push(b'.');
        hex(id, &mut b);
        b.push(b'.');
        b.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        b
    }

    /// `(kind, id, index)` of a branch this edge wrote.
    fn parse_branch<'b>(&self, branch: &'b [u8]) -> Option<(&'b [u8], u64, u32)> {
        let kind = branch.get(..CALL_BRANCH.len())?;
        let rest = branch.get(CALL_BRANCH.len()..)?;
        let rest = rest.strip_prefix(&self.salt[..])?.strip_prefix(b".")?;
        let dot = memchr::memchr(b'.', rest)?;
        let id = parse_hex(&rest[..dot])?;
        let index = std::str::from_utf8(&rest[dot + 1..]).ok()?.parse().ok()?;
        Some((kind, id, index))
    }

    fn via_for(&self, face: &Face, transport: Proto, branch: &[u8]) -> Vec<u8> {
        let host = match face.side {
            Side::Egress(_) => host_text(face.local.ip()),
            Side::Listener => self
                .listener_face(face.local, transport)
                .map_or_else(|| host_text(face.local.ip()), |l| l.advertise.clone()),
        };
        let mut via = Vec::with_capacity(96);
        via.extend_from_slice(b"SIP/2.0/");
        via.extend_from_slice(transport_token(transport).as_bytes());
        via.push(b' ');
        via.extend_from_slice(host.as_bytes());
        via.push(b':');
        via.extend_from_slice(itoa::Buffer::new().format(face.local.port()).as_bytes());
        via.extend_from_slice(b";branch=");
        via.extend_from_slice(branch);
        via.extend_from_slice(b";rport");
        via
    }

    fn listener_face(&self, local: SocketAddr, transport: Proto) -> Option<&ListenerFace> {
        let matches = |l: &&ListenerFace| {
            l.bound.port() == local.port()
                && (l.bound.ip() == local.ip() || l.bound.ip().is_unspecified())
        };
        let listeners = &self.settings.listeners;
        listeners
            .iter()
            .filter(matches)
            .find(|l| l.transport == transport)
            .or_else(|| listeners.iter().find(matches))
    }

    /// A Record-Route value naming `face` and carrying the dialog token.
    fn record_route(&self, face: &Face, transport: Proto, token: &str) -> Vec<u8> {
        let host = match face.side {
            Side::Egress(_) => host_text(face.local.ip()),
            Side::Listener => self
                .listener_face(face.local, transport)
                .map_or_else(|| host_text(face.local.ip()), |l| l.advertise.clone()),
        };
        let mut rr = Vec::with_capacity(80);
        rr.extend_from_slice(b"<sip:");
        rr.extend_from_slice(host.as_bytes());
        rr.push(b':');
        rr.extend_from_slice(itoa::Buffer::new().format(face.local.port()).as_bytes());
        if transport == Proto::Tcp {
            rr.extend_from_slice(b";transport=tcp");
        }
        rr.extend_from_slice(b";lr;");
        rr.extend_from_slice(TOKEN_PARAM.as_bytes());
        rr.push(b'=');
        rr.extend_from_slice(token.as_bytes());
        rr.push(b'>');
        rr
    }

    fn egress_face(&self, index: usize) -> Face {
        let index = index.min(self.settings.egress.len().saturating_sub(1));
        Face {
            side: Side::Egress(index),
            local: self.settings.egress[index],
            conn: None,
        }
    }

    /// The egress address a call uses: a stable hash of its Call-ID, the same on every
    /// replica with the same pool, so in-dialog requests leave from it too.
    fn egress_for_call(&self, call_id: &[u8]) -> usize {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in call_id {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (hash % self.settings.egress.len().max(1) as u64) as usize
    }

    fn local_reply(
        &self,
        request: &Message,
        inbound: &Inbound,
        code: u16,
        reason: Option<&str>,
        headers: &[(&str, &[u8])],
    ) -> Send {
        local_response(&self.metrics, request, inbound, code, reason, headers)
    }

    fn unavailable(&self, request: &Message, inbound: &Inbound, reason: &str) -> Send {
        self.local_reply(
            request,
            inbound,
            503,
            Some(reason),
            &[("Retry-After", self.retry_after.as_bytes())],
        )
    }

    /// Whether the request's top Route is this edge's, with a token valid for its dialog.
    pub fn routes_token(&self, msg: &Message) -> bool {
        let tags = [
            msg.from().tag().unwrap_or_default(),
            msg.to().tag().unwrap_or_default(),
        ];
        msg.routes()
            .next()
            .and_then(Result::ok)
            .is_some_and(|route| {
                route
                    .uri()
                    .param(TOKEN_PARAM.as_bytes())
                    .is_some_and(|t| self.settings.keys.verify(t, msg.call_id(), tags))
            })
    }

    // === requests ===

    /// A retransmission of a request with a live server transaction: answered from state.
    /// `None` when the request is new.
    pub fn retransmission(&self, msg: &Message) -> Option<Sends> {
        let key = server_key(msg, msg.method() == Some(Method::Invite));
        let shard = self.shard(shard_of(&key));
        let id = *shard.by_key.get(&key)?;
        let txn = shard.txns.get(&id)?;
        let mut out = Sends::new();
        if !txn.server.on_retransmission().is_empty() {
            if let Some(last) = &txn.last_response {
                out.push(txn.upstream(last.clone()));
            }
        }
        self.stats.retransmission(Retransmission::Absorbed);
        Some(out)
    }

    /// An initial INVITE from an allowed customer.
    pub fn invite(
        &self,
        now: Instant,
        msg: Message,
        inbound: &Inbound,
        caller: Caller<'_>,
    ) -> Sends {
        let mut out = Sends::new();
        self.stats.call(caller.customer, CallOutcome::Attempted);
        if self.is_draining() {
            self.stats.call(caller.customer, CallOutcome::Failed);
            out.push(self.unavailable(&msg, inbound, "Service Unavailable (shutting down)"));
            return out;
        }
        if self.pending_transactions() >= self.settings.max_transactions {
            self.stats.call(caller.customer, CallOutcome::Failed);
            out.push(self.unavailable(&msg, inbound, "Service Unavailable (overloaded)"));
            return out;
        }
        let route = caller
            .route
            .or(self.settings.default_route.as_deref())
            .and_then(|name| self.routes.route(name));
        let plan: SmallVec<[usize; 4]> = match route {
            Some(route) => {
                let choices: Vec<GatewayChoice> = route
                    .gateways
                    .iter()
                    .map(|&g| {
                        let gateway = &self.routes.gateways[g];
                        GatewayChoice {
                            priority: gateway.spec.priority,
                            weight: gateway.spec.weight,
                            up: gateway.is_up() && gateway.address().is_some(),
                        }
                    })
                    .collect();
                let limit = route.max_attempts.unwrap_or(self.settings.max_attempts);
                attempt_order(&choices, msg.call_id(), limit)
                    .into_iter()
                    .map(|i| route.gateways[i])
                    .collect()
            }
            None => SmallVec::new(),
        };
        // 100 Trying at once, whatever happens next (RFC 3261 16.2, as Kamailio's tm does).
        let trying = self.local_reply(&msg, inbound, 100, None, &[]);
        if plan.is_empty() {
            out.push(trying);
            self.stats.call(caller.customer, CallOutcome::Failed);
            let reason = if route.is_none() {
                tracing::debug!(customer.ban = caller.customer, route = ?caller.route, "no route for call");
                "Service Unavailable (no route)"
            } else {
                "Service Unavailable (no gateway available)"
            };
            out.push(self.unavailable(&msg, inbound, reason));
            return out;
        }
        let key = server_key(&msg, true);
        let shard_index = shard_of(&key);
        let id = self.new_id(shard_index);
        let egress = self.egress_for_call(msg.call_id());
        let reliable = inbound.transport != Proto::Udp;
        let mut txn = Txn {
            key: key.clone(),
            kind: Kind::Call {
                customer: Arc::from(caller.customer),
                plan,
                next: 0,
            },
            reply_to: reply_address(&msg, inbound),
            request: msg,
            inbound: *inbound,
            server: ServerTransaction::start(true, reliable, self.settings.timers),
            last_response: Some(trying.bytes.clone()),
            branches: SmallVec::new(),
            finals: SmallVec::new(),
            cancelled: false,
            final_sent: false,
            pending: false,
            egress,
            scheduled: None,
        };
        out.push(trying);
        self.stats.egress[egress].increment(1);
        self.next_attempt(now, id, &mut txn, &mut out);
        self.insert(shard_index, id, txn);
        out
    }

    fn insert(&self, shard_index: usize, id: u64, mut txn: Txn) {
        let mut shard = self.shard(shard_index);
        if txn.finished() {
            return;
        }
        if !txn.final_sent {
            txn.pending = true;
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
        shard.by_key.insert(txn.key.clone(), id);
        shard.txns.insert(id, txn);
        shard.reschedule(id);
        let live = self.live.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats.transactions_live.set(live as f64);
    }

    fn remove_if_finished(&self, shard: &mut Shard, id: u64) {
        let finished = shard.txns.get(&id).is_some_and(Txn::finished);
        if finished {
            if let Some(txn) = shard.txns.remove(&id) {
                if let Some(at) = txn.scheduled {
                    shard.timers.remove(&(at, id));
                }
                if shard.by_key.get(&txn.key) == Some(&id) {
                    shard.by_key.remove(&txn.key);
                }
                if txn.pending {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                }
                let live = self.live.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
                self.stats.transactions_live.set(live as f64);
            }
        } else {
            shard.reschedule(id);
        }
    }

    /// Starts the next attempt of a call, or relays the best final when none is left.
    fn next_attempt(&self, now: Instant, id: u64, txn: &mut Txn, out: &mut Sends) {
        loop {
            let Kind::Call { plan, next, .. } = &mut txn.kind else {
                return;
            };
            if txn.cancelled || *next >= plan.len() {
                self.relay_best(now, txn, out);
                return;
            }
            let gateway_index = plan[*next];
            *next += 1;
            let gateway = &self.routes.gateways[gateway_index];
            let Some(to) = gateway.address() else {
                continue;
            };
            let transport = gateway.spec.transport;
            let face = self.egress_face(txn.egress);
            let branch_index = txn.branches.len() as u8;
            let branch = self.branch_param(CALL_BRANCH, id, branch_index);
            let via = self.via_for(&face, transport, &branch);
            let token = self.settings.keys.token(
                txn.request.call_id(),
                txn.request.from().tag().unwrap_or_default(),
            );
            let egress_rr = self.record_route(&face, transport, token.as_str());
            let ingress_rr =
                self.record_route(&txn.inbound.face(), txn.inbound.transport, token.as_str());
            let user = txn
                .request
                .request_uri()
                .and_then(|u| u.user())
                .unwrap_or_default();
            let mut uri = Vec::with_capacity(64);
            uri.extend_from_slice(b"sip:");
            let user = rewrite_user(user, gateway.spec.strip, &gateway.spec.prefix);
            if !user.is_empty() {
                uri.extend_from_slice(&user);
                uri.push(b'@');
            }
            uri.extend_from_slice(gateway.spec.host.as_bytes());
            if gateway.spec.host.contains(':') {
                // An IPv6 literal.
                uri.clear();
                uri.extend_from_slice(b"sip:");
                if !user.is_empty() {
                    uri.extend_from_slice(&user);
                    uri.push(b'@');
                }
                uri.push(b'[');
                uri.extend_from_slice(gateway.spec.host.as_bytes());
                uri.push(b']');
            }
            uri.push(b':');
            uri.extend_from_slice(itoa::Buffer::new().format(gateway.spec.port).as_bytes());
            if transport == Proto::Tcp {
                uri.extend_from_slice(b";transport=tcp");
            }
            let max_forwards = txn
                .request
                .max_forwards()
                .map_or(70, |m| m.saturating_sub(1));
            let routes = txn.request.routes().count();
            let mut edits: SmallVec<[Edit<'_>; 8]> = SmallVec::new();
            edits.push(Edit::SetRequestUri(&uri));
            edits.push(Edit::PushVia(&via));
            edits.push(Edit::ViaReceived(txn.inbound.source));
            edits.push(Edit::SetMaxForwards(max_forwards));
            edits.push(Edit::AddRecordRoute(&egress_rr));
            edits.push(Edit::AddRecordRoute(&ingress_rr));
            if routes > 0 {
                // A customer does not choose the vendor path: preloaded Routes are dropped.
                edits.push(Edit::RemoveRoutes(routes));
            }
            let mut buf = BytesMut::with_capacity(txn.request.bytes().len() + 256);
            if txn.request.write(&edits, &mut buf).is_err() {
                tracing::warn!(sip.call_id = %String::from_utf8_lossy(txn.request.call_id()), "could not write forwarded INVITE");
                continue;
            }
            self.stats.gateways[gateway_index].attempts.increment(1);
            let branch = Branch::start(
                now,
                true,
                Hop {
                    to,
                    transport,
                    face,
                },
                Some(gateway_index),
                buf.freeze(),
                self.settings.timers,
            );
            out.push(branch.send(Some(BranchRef {
                txn: id,
                branch: branch_index,
            })));
            txn.branches.push(branch);
            tracing::debug!(gateway.name = gateway.name(), peer.addr = %to, attempt = branch_index + 1, "forwarding INVITE");
            return;
        }
    }

    /// Every attempt failed (or the call was cancelled): relay the best final (16.7).
    fn relay_best(&self, now: Instant, txn: &mut Txn, out: &mut Sends) {
        if txn.final_sent {
            return;
        }
        let codes: SmallVec<[u16; 4]> = txn.finals.iter().map(|(c, _)| *c).collect();
        let chosen = best_response(&codes).map(|i| txn.finals[i].clone());
        let (code, bytes) = match chosen {
            Some((code, Some(bytes))) => (code, bytes),
            Some((code, None)) => {
                let code = if txn.cancelled { 487 } else { code };
                (
                    code,
                    self.local_reply(&txn.request, &txn.inbound, code, None, &[])
                        .bytes,
                )
            }
            None if txn.cancelled => (
                487,
                self.local_reply(&txn.request, &txn.inbound, 487, None, &[])
                    .bytes,
            ),
            None => {
                let send = self.unavailable(
                    &txn.request,
                    &txn.inbound,
                    "Service Unavailable (no gateway available)",
                );
                (503, send.bytes)
            }
        };
        self.send_final(now, txn, code, bytes, out);
    }

    fn send_final(&self, now: Instant, txn: &mut Txn, code: u16, bytes: Bytes, out: &mut Sends) {
        txn.final_sent = true;
        if std::mem::take(&mut txn.pending) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        txn.server.on_final_sent(now, code);
        txn.last_response = Some(bytes.clone());
        if let Kind::Call { customer, .. } = &txn.kind {
            let outcome = if (200..300).contains(&code) {
                CallOutcome::Answered
            } else {
                CallOutcome::Failed
            };
            self.stats.call(customer, outcome);
        }
        out.push(txn.upstream(bytes));
    }

    /// A CANCEL from the customer: 200 for it, CANCEL on every pending branch; 481 when no
    /// INVITE matches.
    pub fn cancel(&self, now: Instant, msg: &Message, inbound: &Inbound) -> Sends {
        let mut out = Sends::new();
        let key = server_key(msg, true);
        let shard_index = shard_of(&key);
        let mut shard = self.shard(shard_index);
        let Some(&id) = shard.by_key.get(&key) else {
            drop(shard);
            out.push(self.local_reply(msg, inbound, 481, None, &[]));
            return out;
        };
        out.push(self.local_reply(msg, inbound, 200, None, &[]));
        let Some(txn) = shard.txns.get_mut(&id) else {
            return out;
        };
        if txn.final_sent || txn.cancelled {
            return out;
        }
        txn.cancelled = true;
        for index in 0..txn.branches.len() {
            self.cancel_branch(now, txn, index, &mut out);
        }
        self.remove_if_finished(&mut shard, id);
        out
    }

    fn cancel_branch(&self, now: Instant, txn: &mut Txn, index: usize, out: &mut Sends) {
        let branch = &mut txn.branches[index];
        if !branch.pending() || branch.cancel.is_some() {
            return;
        }
        if !branch.provisional {
            branch.cancel_pending = true;
            return;
        }
        let Ok(forwarded) = Message::parse(branch.bytes.clone()) else {
            return;
        };
        let bytes = cancel_for(&forwarded);
        let reliable = branch.hop.transport != Proto::Udp;
        branch.cancel = Some((
            ClientTransaction::start(now, false, reliable, self.settings.timers),
            bytes.clone(),
        ));
        branch.cancel_pending = false;
        out.push(branch.send_bytes(bytes, None));
    }

    /// An ACK: absorbed when it acknowledges a non-2xx final the edge sent; `None` when it
    /// belongs to a 2xx (end to end, routed by its Route headers).
    pub fn ack(&self, now: Instant, msg: &Message) -> Option<()> {
        let key = server_key(msg, true);
        let mut shard = self.shard(shard_of(&key));
        let id = *shard.by_key.get(&key)?;
        let txn = shard.txns.get_mut(&id)?;
        if !matches!(
            txn.server.state(),
            ServerState::Completed | ServerState::Confirmed
        ) {
            return None;
        }
        txn.server.on_ack(now);
        self.stats.retransmission(Retransmission::Absorbed);
        self.remove_if_finished(&mut shard, id);
        Some(())
    }

    /// An in-dialog request (from either side). Routed when its top Route is the edge's own
    /// Record-Route with a valid token; otherwise 403.
    pub fn in_dialog(&self, now: Instant, msg: Message, inbound: &Inbound) -> Sends {
        let mut out = Sends::new();
        let method = msg.method().unwrap_or(Method::Other);
        let call_id = msg.call_id();
        let tags = [
            msg.from().tag().unwrap_or_default(),
            msg.to().tag().unwrap_or_default(),
        ];
        // Both of the edge's Record-Route values carry the same token: an HMAC computed once
        // per request is enough.
        let verified: std::cell::RefCell<SmallVec<[u8; 32]>> = Default::default();
        let verifies = |uri: &Uri<'_>| {
            uri.param(TOKEN_PARAM.as_bytes()).is_some_and(|t| {
                if !t.is_empty() && verified.borrow().as_slice() == t {
                    return true;
                }
                let ok = self.settings.keys.verify(t, call_id, tags);
                if ok {
                    *verified.borrow_mut() = SmallVec::from_slice(t);
                }
                ok
            })
        };
        let hint_of = |uri: &Uri<'_>| RouteHint {
            ip: uri.ip(),
            port: uri.port(),
            transport: uri_transport(uri),
            host: uri.host().to_vec(),
        };
        let routes: SmallVec<[NameAddr<'_>; 4]> = msg.routes().map_while(Result::ok).collect();
        // RFC 3261 16.4: a strict router before us put our Record-Route URI in the
        // Request-URI; the real Request-URI is then the last Route value.
        let mut other_face: Option<RouteHint> = None;
        let strict_in = msg.request_uri().is_some_and(|u| verifies(&u));
        let (route_set, request_uri) = if strict_in {
            let Some((last, rest)) = routes.split_last() else {
                out.push(self.local_reply(
                    &msg,
                    inbound,
                    400,
                    Some("Bad Request (strict routing without Route)"),
                    &[],
                ));
                return out;
            };
            other_face = msg.request_uri().map(|u| hint_of(&u));
            (rest, Some(last.uri()))
        } else {
            (&routes[..], msg.request_uri())
        };
        // Our Record-Route values at the top of the route set: one or two (one per face).
        let mut popped = 0;
        for route in route_set.iter().take(2) {
            let uri = route.uri();
            if !verifies(&uri) {
                break;
            }
            popped += 1;
            other_face = Some(hint_of(&uri));
        }
        if popped == 0 && !strict_in {
            if method == Method::Ack {
                self.metrics
                    .dropped(crate::telemetry::DropReason::AbsorbedAck);
                return out;
            }
            tracing::debug!(peer.addr = %inbound.source, "in-dialog request without a valid edge route");
            out.push(self.local_reply(&msg, inbound, 403, Some("Forbidden (no valid route)"), &[]));
            return out;
        }
        if msg.max_forwards() == Some(0) {
            if method != Method::Ack {
                out.push(self.local_reply(&msg, inbound, 483, None, &[]));
            }
            return out;
        }
        // The next hop: the next Route, else the Request-URI. A next Route without `lr` is a
        // strict router: it becomes the Request-URI and the Request-URI goes to the end of
        // the route set (16.6 step 6).
        let next_route = route_set.get(popped);
        let strict_out = next_route.is_some_and(|r| !r.is_loose_route());
        let target_uri = match next_route {
            Some(route) => Some(route.uri()),
            None => request_uri,
        };
        let Some(target_uri) = target_uri else {
            out.push(self.local_reply(&msg, inbound, 400, Some("Bad Request (no target)"), &[]));
            return out;
        };
        let new_request_uri: Option<&[u8]> = if strict_out {
            Some(target_uri.as_bytes())
        } else if strict_in {
            request_uri.map(|u| u.as_bytes())
        } else {
            None
        };
        let mut appended = Vec::new();
        if strict_out {
            appended.push(b'<');
            appended.extend_from_slice(request_uri.map(|u| u.as_bytes()).unwrap_or_default());
            appended.push(b'>');
        }
        let removed_front = popped + usize::from(strict_out);
        if strict_in && removed_front >= routes.len() {
            out.push(self.local_reply(
                &msg,
                inbound,
                400,
                Some("Bad Request (route set too short)"),
                &[],
            ));
            return out;
        }
        let Some(ip) = target_uri.ip() else {
            if method != Method::Ack {
                out.push(self.local_reply(
                    &msg,
                    inbound,
                    502,
                    Some("Bad Gateway (next hop is not an IP address)"),
                    &[],
                ));
            }
            return out;
        };
        let default_port = if target_uri.scheme() == Scheme::Sips {
            5061
        } else {
            5060
        };
        let to = SocketAddr::new(ip, target_uri.port().unwrap_or(default_port));
        let hint = other_face.unwrap_or_default();
        let transport = uri_transport(&target_uri)
            .or(hint.transport)
            .unwrap_or(Proto::Udp);
        let face = match inbound.side {
            Side::Listener => {
                // Customer to vendor: the egress the dialog uses.
                let index = hint
                    .ip
                    .and_then(|ip| self.settings.egress.iter().position(|e| e.ip() == ip))
                    .unwrap_or_else(|| self.egress_for_call(call_id));
                self.stats.dialog_requests[0].increment(1);
                self.egress_face(index)
            }
            Side::Egress(_) => {
                self.stats.dialog_requests[1].increment(1);
                self.customer_face(&hint.host, hint.ip, hint.port, transport)
            }
        };
        let via_branch = if method == Method::Ack {
            let mut hasher = std::hash::DefaultHasher::new();
            msg.top_via().branch().hash(&mut hasher);
            call_id.hash(&mut hasher);
            self.branch_param(ACK_BRANCH, hasher.finish(), 0)
        } else {
            Vec::new()
        };
        let key = server_key(&msg, method == Method::Invite);
        let shard_index = shard_of(&key);
        let id = self.new_id(shard_index);
        let branch = if method == Method::Ack {
            via_branch
        } else {
            self.branch_param(CALL_BRANCH, id, 0)
        };
        let via = self.via_for(&face, transport, &branch);
        let max_forwards = msg.max_forwards().map_or(70, |m| m.saturating_sub(1));
        let mut edits: SmallVec<[Edit<'_>; 8]> = SmallVec::new();
        edits.push(Edit::PushVia(&via));
        edits.push(Edit::ViaReceived(inbound.source));
        edits.push(Edit::SetMaxForwards(max_forwards));
        // Removing the front and the last Route value would touch when nothing is left
        // between them: then every value goes at once.
        let remove_all = strict_in && removed_front + 1 == routes.len();
        if remove_all {
            edits.push(Edit::RemoveRoutes(routes.len()));
        } else if removed_front > 0 {
            edits.push(Edit::RemoveRoutes(removed_front));
        }
        if let Some(uri) = new_request_uri {
            edits.push(Edit::SetRequestUri(uri));
        }
        if strict_in && !remove_all {
            edits.push(Edit::RemoveLastRoute);
        }
        if strict_out {
            edits.push(Edit::AppendRoute(&appended));
        }
        let mut buf = BytesMut::with_capacity(msg.bytes().len() + 128);
        if let Err(error) = msg.write(&edits, &mut buf) {
            tracing::debug!(%error, "in-dialog request cannot be rewritten");
            if method != Method::Ack {
                out.push(self.local_reply(
                    &msg,
                    inbound,
                    400,
                    Some("Bad Request (route set)"),
                    &[],
                ));
            }
            return out;
        }
        drop(edits);
        drop(routes);
        let bytes = buf.freeze();
        if method == Method::Ack {
            // End to end, no transaction: forwarded once per ACK received.
            out.push(Send {
                face,
                to,
                transport,
                bytes,
                branch: None,
            });
            return out;
        }
        if self.pending_transactions() >= self.settings.max_transactions {
            out.push(self.unavailable(&msg, inbound, "Service Unavailable (overloaded)"));
            return out;
        }
        let reliable_in = inbound.transport != Proto::Udp;
        let invite = method == Method::Invite;
        let mut txn = Txn {
            key,
            kind: Kind::Dialog,
            reply_to: reply_address(&msg, inbound),
            request: msg,
            inbound: *inbound,
            server: ServerTransaction::start(invite, reliable_in, self.settings.timers),
            last_response: None,
            branches: SmallVec::new(),
            finals: SmallVec::new(),
            cancelled: false,
            final_sent: false,
            pending: false,
            egress: match face.side {
                Side::Egress(i) => i,
                Side::Listener => 0,
            },
            scheduled: None,
        };
        if invite {
            let trying = self.local_reply(&txn.request, inbound, 100, None, &[]);
            txn.last_response = Some(trying.bytes.clone());
            out.push(trying);
        }
        let branch = Branch::start(
            now,
            invite,
            Hop {
                to,
                transport,
                face,
            },
            None,
            bytes,
            self.settings.timers,
        );
        out.push(branch.send(Some(BranchRef { txn: id, branch: 0 })));
        txn.branches.push(branch);
        self.insert(shard_index, id, txn);
        out
    }

    /// The customer-side face for a request from a vendor: the listener named by the edge's
    /// ingress Record-Route, else the first listener of the transport.
    fn customer_face(
        &self,
        host: &[u8],
        ip: Option<IpAddr>,
        port: Option<u16>,
        transport: Proto,
    ) -> Face {
        let listeners = &self.settings.listeners;
        let named = listeners.iter().find(|l| {
            l.transport == transport
                && port.is_none_or(|p| p == l.bound.port())
                && (l.advertise.as_bytes() == host || ip == Some(l.bound.ip()))
        });
        let chosen = named
            .or_else(|| listeners.iter().find(|l| l.transport == transport))
            .or_else(|| listeners.first());
        let local = match (chosen, ip) {
            (Some(l), Some(ip)) if l.bound.ip().is_unspecified() => {
                SocketAddr::new(ip, l.bound.port())
            }
            (Some(l), _) => l.bound,
            (None, _) => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        Face {
            side: Side::Listener,
            local,
            conn: None,
        }
    }

    // === responses ===

    /// A response that arrived on any face. Returns what to relay (nothing for a stray).
    pub fn response(&self, now: Instant, msg: Message) -> Option<Sends> {
        let branch = msg.top_via().branch()?;
        let (kind, id, index) = self.parse_branch(branch)?;
        if kind == PROBE_BRANCH {
            self.probe_answered(now, id as usize, index, msg.status().unwrap_or(0));
            return Some(Sends::new());
        }
        if kind != CALL_BRANCH {
            return None;
        }
        let code = msg.status()?;
        let mut shard = self.shard((id % SHARDS as u64) as usize);
        let txn = shard.txns.get_mut(&id)?;
        let index = usize::try_from(index).ok()?;
        let branch = txn.branches.get_mut(index)?;
        let mut out = Sends::new();
        if msg.cseq().method == Method::Cancel {
            if let Some((client, _)) = branch.cancel.as_mut() {
                client.on_response(now, code);
            }
            self.remove_if_finished(&mut shard, id);
            return Some(out);
        }
        if branch.client.state() == ClientState::Terminated {
            if (200..300).contains(&code) && msg.cseq().method == Method::Invite {
                // A 2xx retransmission: forwarded, as RFC 6026 requires.
                if let Some(bytes) = strip_top_via(&msg) {
                    self.stats.retransmission(Retransmission::Forwarded);
                    out.push(txn.upstream(bytes));
                }
            }
            return Some(out);
        }
        if !branch.responded {
            branch.responded = true;
            if let Some(g) = branch.gateway {
                self.stats.gateways[g]
                    .first_response
                    .record(now.saturating_duration_since(branch.started).as_secs_f64());
            }
        }
        let actions = branch.client.on_response(now, code);
        for action in actions {
            match action {
                Action::SendAck => {
                    let branch = &txn.branches[index];
                    if let Ok(forwarded) = Message::parse(branch.bytes.clone()) {
                        out.push(branch.send_bytes(ack_for(&forwarded, &msg), None));
                    }
                }
                Action::PassUp(code) => {
                    self.on_branch_response(now, id, txn, index, code, Some(&msg), &mut out)
                }
                _ => {}
            }
        }
        self.remove_if_finished(&mut shard, id);
        Some(out)
    }

    /// A response (or, with `msg` None, a timeout or connect failure as 408) on a branch.
    #[allow(clippy::too_many_arguments)]
    fn on_branch_response(
        &self,
        now: Instant,
        id: u64,
        txn: &mut Txn,
        index: usize,
        code: u16,
        msg: Option<&Message>,
        out: &mut Sends,
    ) {
        let branch = &mut txn.branches[index];
        let gateway = branch.gateway;
        if code >= 200 {
            if let Some(g) = gateway {
                let stats = &self.stats.gateways[g];
                stats.response(code);
                stats
                    .final_response
                    .record(now.saturating_duration_since(branch.started).as_secs_f64());
            }
        }
        match code {
            100 => {}
            101..=199 => {
                branch.provisional = true;
                if branch.cancel_pending {
                    self.cancel_branch(now, txn, index, out);
                }
                if txn.final_sent {
                    return;
                }
                if let Some(bytes) = msg.and_then(strip_top_via) {
                    txn.last_response = Some(bytes.clone());
                    out.push(txn.upstream(bytes));
                }
            }
            200..=299 => {
                let Some(bytes) = msg.and_then(strip_top_via) else {
                    return;
                };
                if txn.final_sent {
                    // A second 2xx (forking downstream): forwarded too (16.7 step 5).
                    out.push(txn.upstream(bytes));
                    return;
                }
                self.send_final(now, txn, code, bytes, out);
            }
            _ => {
                let bytes = msg.and_then(strip_top_via);
                let is_call = matches!(txn.kind, Kind::Call { .. });
                if is_call && !txn.final_sent {
                    txn.finals.push((code, bytes));
                    if !txn.cancelled && should_fail_over(code, &self.settings.failover_codes) {
                        if let Some(g) = gateway {
                            self.stats.gateways[g].failovers.increment(1);
                        }
                        self.next_attempt(now, id, txn, out);
                    } else {
                        self.relay_best(now, txn, out);
                    }
                } else if !txn.final_sent {
                    let bytes = match bytes {
                        Some(bytes) => bytes,
                        None => {
                            self.local_reply(&txn.request, &txn.inbound, code, None, &[])
                                .bytes
                        }
                    };
                    self.send_final(now, txn, code, bytes, out);
                }
            }
        }
    }

    /// The transport could not deliver a request on `branch` (TCP connect failed): the
    /// branch fails like a timeout, and the gateway's health hears of it.
    pub fn transport_failed(&self, now: Instant, branch: BranchRef) -> Sends {
        let mut out = Sends::new();
        let id = branch.txn;
        let mut shard = self.shard((id % SHARDS as u64) as usize);
        let Some(txn) = shard.txns.get_mut(&id) else {
            return out;
        };
        let index = usize::from(branch.branch);
        let Some(b) = txn.branches.get_mut(index) else {
            return out;
        };
        if !b.pending() {
            return out;
        }
        if let Some(g) = b.gateway {
            self.gateway_failed(g);
        }
        b.client.abandon();
        self.on_branch_response(now, id, txn, index, 408, None, &mut out);
        self.remove_if_finished(&mut shard, id);
        out
    }

    fn gateway_failed(&self, index: usize) {
        let Some(gateway) = self.routes.gateway(index) else {
            return;
        };
        if gateway.failed(&self.settings.probe.policy).is_some() {
            tracing::warn!(gateway.name = gateway.name(), "gateway marked down");
            self.stats.gateways[index].up.set(0.0);
        }
    }

    // === timers ===

    /// Fires every timer due at `now`: retransmissions, timeouts, Timer C, probes.
    pub fn on_timer(&self, now: Instant) -> Sends {
        let mut out = Sends::new();
        for shard_index in 0..SHARDS {
            let mut shard = self.shard(shard_index);
            while let Some(&(at, id)) = shard.timers.first() {
                if at > now {
                    break;
                }
                shard.timers.pop_first();
                if let Some(txn) = shard.txns.get_mut(&id) {
                    txn.scheduled = None;
                    self.fire(now, id, txn, &mut out);
                }
                self.remove_if_finished(&mut shard, id);
            }
        }
        self.probe_tick(now, &mut out);
        out
    }

    fn fire(&self, now: Instant, id: u64, txn: &mut Txn, out: &mut Sends) {
        for action in txn.server.on_timer(now) {
            if action == Action::Retransmit {
                if let Some(last) = &txn.last_response {
                    self.stats.retransmission(Retransmission::Sent);
                    out.push(txn.upstream(last.clone()));
                }
            }
        }
        for index in 0..txn.branches.len() {
            let branch = &mut txn.branches[index];
            let cancel_due = branch
                .cancel
                .as_mut()
                .is_some_and(|(client, _)| client.on_timer(now).contains(&Action::Retransmit));
            if let (true, Some((_, bytes))) = (cancel_due, &branch.cancel) {
                out.push(branch.send_bytes(bytes.clone(), None));
            }
            let actions = branch.client.on_timer(now);
            for action in actions {
                match action {
                    Action::Retransmit => {
                        let branch = &txn.branches[index];
                        self.stats.retransmission(Retransmission::Sent);
                        out.push(branch.send(None));
                    }
                    Action::Timeout => {
                        if let Some(g) = txn.branches[index].gateway {
                            self.gateway_failed(g);
                        }
                        self.on_branch_response(now, id, txn, index, 408, None, out);
                    }
                    Action::CancelBranch => {
                        txn.branches[index].provisional = true;
                        self.cancel_branch(now, txn, index, out);
                    }
                    _ => {}
                }
            }
        }
    }

    // === probes ===

    fn probe_tick(&self, now: Instant, out: &mut Sends) {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let policy = &self.settings.probe.policy;
        for (index, slot) in probes.iter_mut().enumerate() {
            let gateway = &self.routes.gateways[index];
            if !gateway.spec.probe {
                continue;
            }
            if let Some((_, sent)) = slot.outstanding {
                if now.saturating_duration_since(sent) >= self.settings.probe.timeout {
                    slot.outstanding = None;
                    self.stats.gateways[index].probes_failed.increment(1);
                    if let Some(state) = gateway.failed(policy) {
                        tracing::warn!(
                            gateway.name = gateway.name(),
                            ?state,
                            "gateway probe timed out; state changed"
                        );
                        self.stats.gateways[index].up.set(0.0);
                    }
                }
            }
            if slot.next_at.is_some_and(|at| at > now) {
                continue;
            }
            slot.next_at = Some(now + self.settings.probe.interval);
            let Some(to) = gateway.address() else {
                continue;
            };
            slot.cseq = slot.cseq.wrapping_add(1);
            slot.outstanding = Some((slot.cseq, now));
            let face = self.egress_face(0);
            let transport = gateway.spec.transport;
            let branch = self.branch_param(PROBE_BRANCH, index as u64, 0);
            let mut branch = branch;
            // The index slot carries the probe's CSeq so a late answer is told apart.
            let cut = branch.len() - 1;
            branch.truncate(cut);
            branch.extend_from_slice(itoa::Buffer::new().format(slot.cseq).as_bytes());
            let via = self.via_for(&face, transport, &branch);
            let uri = format!(
                "sip:{}:{}{}",
                if gateway.spec.host.contains(':') {
                    format!("[{}]", gateway.spec.host)
                } else {
                    gateway.spec.host.clone()
                },
                gateway.spec.port,
                if transport == Proto::Tcp {
                    ";transport=tcp"
                } else {
                    ""
                }
            );
            let from = format!("sip:warp-edge@{}", host_text(face.local.ip()));
            let call_id = format!(
                "probe-{}-{}@warp-edge",
                String::from_utf8_lossy(&self.salt),
                index
            );
            out.push(Send {
                face,
                to,
                transport,
                bytes: options_probe(&uri, &via, &from, &call_id, slot.cseq),
                branch: None,
            });
        }
    }

    fn probe_answered(&self, _now: Instant, index: usize, cseq: u32, code: u16) {
        if code < 200 {
            return;
        }
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = probes.get_mut(index) else {
            return;
        };
        if slot.outstanding.map(|(c, _)| c) != Some(cseq) {
            return;
        }
        slot.outstanding = None;
        let Some(gateway) = self.routes.gateway(index) else {
            return;
        };
        let policy = &self.settings.probe.policy;
        let up = policy.up_codes.contains(&code);
        let stats = &self.stats.gateways[index];
        if up {
            stats.probes_ok.increment(1);
        } else {
            stats.probes_failed.increment(1);
        }
        if let Some(state) = gateway.probe_answered(code, policy) {
            tracing::warn!(
                gateway.name = gateway.name(),
                ?state,
                code,
                "gateway state changed"
            );
            stats.up.set(if gateway.is_up() { 1.0 } else { 0.0 });
        }
    }
}

/// The response with the edge's Via removed, ready to relay upstream.
fn strip_top_via(msg: &Message) -> Option<Bytes> {
    let mut buf = BytesMut::with_capacity(msg.bytes().len());
    msg.write(&[Edit::RemoveTopVia], &mut buf).ok()?;
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    //! The forwarder driven without sockets: messages in, messages out, time passed by hand.

    use std::time::Duration;

    use super::*;
    use crate::acl::rules::{Customer, CustomerStatus, TrunkGroup};
    use crate::acl::{Acl, AclEntry, RuleSet, Snapshot};
    use crate::config::DenyAction;
    use crate::proxy::{Core, CoreSettings};
    use crate::route::{GatewaySpec, HealthPolicy, RouteSpec, Routing};
    use crate::sip::Limits;

    const PBX: &str = "192.0.2.10:5060";
    const EDGE: &str = "198.51.100.1:5060";
    const EGRESS: &str = "198.51.100.9:5060";
    const VENDOR_A: &str = "203.0.113.20:5080";
    const VENDOR_B: &str = "203.0.113.21:5080";

    fn gateway(name: &str, addr: &str, priority: u32) -> GatewaySpec {
        let addr: SocketAddr = addr.parse().unwrap();
        GatewaySpec {
            name: name.to_owned(),
            host: addr.ip().to_string(),
            port: addr.port(),
            transport: Proto::Udp,
            weight: 1,
            priority,
            strip: 0,
            prefix: String::new(),
            probe: false,
        }
    }

    fn core() -> Core {
        core_with(100)
    }

    fn core_with(max_transactions: usize) -> Core {
        core_tuned(|s| s.max_transactions = max_transactions)
    }

    fn core_tuned(tune: impl FnOnce(&mut ForwardSettings)) -> Core {
        let rules = RuleSet {
            customers: vec![Customer {
                ban: "100001".to_owned(),
                name: "demo".to_owned(),
                status: CustomerStatus::Active,
            }],
            trunk_groups: vec![TrunkGroup {
                id: 1,
                ban: "100001".to_owned(),
                name: "pbx".to_owned(),
                auth_type: Default::default(),
                max_cps: None,
                max_concurrent_calls: None,
                route: Some("r".to_owned()),
                enabled: true,
            }],
            entries: vec![AclEntry {
                origin: "test".into(),
                group: 1,
                network: "192.0.2.10/32".parse().unwrap(),
                port: 0,
                proto: Proto::Any,
                ban: "100001".into(),
                trunk_group: Some(1),
            }],
            ..RuleSet::default()
        };
        let metrics = Metrics::new();
        let routes = Arc::new(RouteTable::new(&Routing {
            gateways: vec![gateway("a", VENDOR_A, 0), gateway("b", VENDOR_B, 1)],
            routes: vec![RouteSpec {
                name: "r".to_owned(),
                gateways: vec!["a".to_owned(), "b".to_owned()],
                max_attempts: None,
            }],
        }));
        let settings = ForwardSettings {
            listeners: vec![ListenerFace {
                transport: Proto::Udp,
                bound: EDGE.parse().unwrap(),
                advertise: "198.51.100.1".to_owned(),
            }],
            egress: vec![EGRESS.parse().unwrap()],
            keys: DialogKeys::new(b"0123456789abcdef0123", None).unwrap(),
            max_transactions: 100,
            max_attempts: 3,
            failover_codes: vec![],
            default_route: None,
            timers: Timers::default(),
            probe: ProbeConfig {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                policy: HealthPolicy::default(),
            },
            retry_after_secs: 30,
        };
        let mut settings = settings;
        tune(&mut settings);
        let forwarder = Forwarder::new(settings, routes, metrics.clone());
        let acl = Arc::new(Acl::new(
            Snapshot::build(Arc::new(rules.clone()), 1).unwrap(),
        ));
        let settings = CoreSettings {
            limits: Limits::default(),
            deny_action: DenyAction::Reject,
            deny_reason_in_reply: false,
            retry_after_secs: 30,
        };
        Core::new(settings, acl, metrics, Some(forwarder))
    }

    fn from_pbx() -> Inbound {
        Inbound {
            source: PBX.parse().unwrap(),
            local: EDGE.parse().unwrap(),
            transport: Proto::Udp,
            side: Side::Listener,
            conn: None,
        }
    }

    fn from_vendor(addr: &str) -> Inbound {
        Inbound {
            source: addr.parse().unwrap(),
            local: EGRESS.parse().unwrap(),
            transport: Proto::Udp,
            side: Side::Egress(0),
            conn: None,
        }
    }

    fn invite(max_forwards: u8) -> Bytes {
        Bytes::from(format!(
            "INVITE sip:+12025550100@198.51.100.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKpbx1\r\n\
             From: <sip:100@192.0.2.10>;tag=f1\r\nTo: <sip:+12025550100@198.51.100.1>\r\n\
             Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:100@192.0.2.10>\r\n\
             Max-Forwards: {max_forwards}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn parse(send: &Send) -> Message {
        Message::parse(send.bytes.clone()).expect("the edge sends valid SIP")
    }

    fn status(send: &Send) -> u16 {
        parse(send).status().expect("a response")
    }

    /// The vendor's response to the request in `forwarded`.
    fn answer(forwarded: &Send, code: u16, to_tag: &str) -> Bytes {
        let msg = parse(forwarded);
        let mut text = format!("SIP/2.0 {code} Whatever\r\n");
        for via in msg.vias() {
            text.push_str(&format!(
                "Via: {}\r\n",
                String::from_utf8_lossy(via.unwrap().as_bytes())
            ));
        }
        for rr in msg.record_routes() {
            text.push_str(&format!(
                "Record-Route: {}\r\n",
                String::from_utf8_lossy(rr.unwrap().as_bytes())
            ));
        }
        text.push_str(&format!(
            "From: <sip:100@192.0.2.10>;tag=f1\r\nTo: <sip:+12025550100@198.51.100.1>;tag={to_tag}\r\n\
             Call-ID: call-1\r\nCSeq: {} {}\r\nContact: <sip:v@203.0.113.20:5080>\r\nContent-Length: 0\r\n\r\n",
            msg.cseq().seq,
            String::from_utf8_lossy(msg.cseq().method_bytes)
        ));
        Bytes::from(text)
    }

    #[test]
    fn invite_gets_100_and_goes_to_the_first_gateway_with_double_record_route() {
        let core = core();
        let now = Instant::now();
        let out = core.on_datagram(now, invite(70), &from_pbx());
        assert_eq!(out.len(), 2);
        assert_eq!(status(&out[0]), 100);
        assert_eq!(out[1].to, VENDOR_A.parse().unwrap());
        assert_eq!(out[1].face.side, Side::Egress(0));
        let fwd = parse(&out[1]);
        assert_eq!(
            fwd.request_uri().unwrap().as_bytes(),
            b"sip:+12025550100@203.0.113.20:5080"
        );
        assert!(fwd
            .top_via()
            .as_bytes()
            .starts_with(b"SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKwe"));
        assert_eq!(fwd.max_forwards(), Some(69));
        let rr: Vec<Vec<u8>> = fwd
            .record_routes()
            .map(|r| r.unwrap().uri().host().to_vec())
            .collect();
        assert_eq!(rr, vec![b"198.51.100.9".to_vec(), b"198.51.100.1".to_vec()]);
    }

    #[test]
    fn retransmitted_invite_is_absorbed_with_the_last_provisional() {
        let core = core();
        let now = Instant::now();
        let out = core.on_datagram(now, invite(70), &from_pbx());
        let relayed = core.on_datagram(now, answer(&out[1], 180, "v1"), &from_vendor(VENDOR_A));
        assert_eq!(relayed.iter().map(status).collect::<Vec<_>>(), vec![180]);
        let again = core.on_datagram(now, invite(70), &from_pbx());
        assert_eq!(
            again.iter().map(status).collect::<Vec<_>>(),
            vec![180],
            "nothing to the vendor"
        );
    }

    #[test]
    fn a_503_fails_over_a_486_does_not_and_the_non_2xx_ack_is_hop_by_hop() {
        let core = core();
        let now = Instant::now();
        let out = core.on_datagram(now, invite(70), &from_pbx());
        let next = core.on_datagram(now, answer(&out[1], 503, "a"), &from_vendor(VENDOR_A));
        // The edge ACKs the 503 itself and tries the second gateway.
        assert_eq!(next.len(), 2);
        assert_eq!(parse(&next[0]).method(), Some(Method::Ack));
        assert_eq!(next[0].to, VENDOR_A.parse().unwrap());
        assert_eq!(next[1].to, VENDOR_B.parse().unwrap());
        let last = core.on_datagram(now, answer(&next[1], 486, "b"), &from_vendor(VENDOR_B));
        assert_eq!(last.len(), 2);
        assert_eq!(parse(&last[0]).method(), Some(Method::Ack));
        assert_eq!(status(&last[1]), 486);
        assert_eq!(last[1].to, PBX.parse().unwrap());
        assert_eq!(parse(&last[1]).vias().count(), 1, "the edge's Via is gone");
        // The customer's ACK for the 486 stops at the edge.
        let ack = String::from_utf8_lossy(&invite(70))
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "To: <sip:+12025550100@198.51.100.1>",
                "To: <sip:+12025550100@198.51.100.1>;tag=b",
            );
        assert!(core
            .on_datagram(now, Bytes::from(ack), &from_pbx())
            .is_empty());
    }

    #[test]
    fn timer_b_fails_over_then_the_best_response_is_relayed() {
        let core = core();
        let t0 = Instant::now();
        let out = core.on_datagram(t0, invite(70), &from_pbx());
        // Retransmissions at T1 doublings, then Timer B moves the call to gateway b.
        let retransmits = core.on_timer(t0 + Duration::from_millis(500));
        assert_eq!(retransmits.len(), 1);
        assert_eq!(retransmits[0].bytes, out[1].bytes);
        let failover = core.on_timer(t0 + Duration::from_secs(32));
        let to_b: Vec<_> = failover
            .iter()
            .filter(|s| s.to == VENDOR_B.parse().unwrap())
            .collect();
        assert_eq!(to_b.len(), 1);
        let last = core.on_datagram(
            t0 + Duration::from_secs(33),
            answer(to_b[0], 503, "b"),
            &from_vendor(VENDOR_B),
        );
        // 408 (timeout) and 503: both 4xx/5xx; the lower class wins (RFC 3261 16.7).
        let finals: Vec<u16> = last
            .iter()
            .filter(|s| s.to == PBX.parse().unwrap())
            .map(status)
            .collect();
        assert_eq!(finals, vec![408]);
    }

    #[test]
    fn cancel_answers_200_cancels_the_branch_and_relays_487() {
        let core = core();
        let now = Instant::now();
        let out = core.on_datagram(now, invite(70), &from_pbx());
        core.on_datagram(now, answer(&out[1], 180, "v1"), &from_vendor(VENDOR_A));
        let cancel = String::from_utf8_lossy(&invite(70))
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL");
        let sent = core.on_datagram(now, Bytes::from(cancel.clone()), &from_pbx());
        assert_eq!(status(&sent[0]), 200);
        let downstream = parse(&sent[1]);
        assert_eq!(downstream.method(), Some(Method::Cancel));
        assert_eq!(
            downstream.top_via().branch(),
            parse(&out[1]).top_via().branch()
        );
        let relayed = core.on_datagram(now, answer(&out[1], 487, "v1"), &from_vendor(VENDOR_A));
        let codes: Vec<u16> = relayed
            .iter()
            .filter(|s| s.to == PBX.parse().unwrap())
            .map(status)
            .collect();
        assert_eq!(codes, vec![487], "no failover after a CANCEL");
        // An unknown CANCEL gets 481.
        let unknown = cancel.replace("z9hG4bKpbx1", "z9hG4bKother");
        assert_eq!(
            core.on_datagram(now, Bytes::from(unknown), &from_pbx())
                .iter()
                .map(status)
                .collect::<Vec<_>>(),
            vec![481]
        );
    }

    #[test]
    fn in_dialog_requests_need_the_token_from_either_side() {
        let core = core();
        let now = Instant::now();
        let out = core.on_datagram(now, invite(70), &from_pbx());
        let ok = core.on_datagram(now, answer(&out[1], 200, "v1"), &from_vendor(VENDOR_A));
        let answered = parse(&ok[0]);
        let rr: Vec<String> = answered
            .record_routes()
            .map(|r| String::from_utf8_lossy(r.unwrap().as_bytes()).into_owned())
            .collect();
        let bye_from_pbx = |route: &str| {
            Bytes::from(format!(
                "BYE sip:v@203.0.113.20:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKbye\r\n\
                 Route: {route}\r\nFrom: <sip:100@192.0.2.10>;tag=f1\r\nTo: <sip:+12025550100@198.51.100.1>;tag=v1\r\n\
                 Call-ID: call-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        let good = core.on_datagram(
            now,
            bye_from_pbx(&format!("{}, {}", rr[1], rr[0])),
            &from_pbx(),
        );
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].to, "203.0.113.20:5080".parse().unwrap());
        assert_eq!(
            parse(&good[0]).routes().count(),
            0,
            "both edge routes popped"
        );
        let forged = rr[1].replace("wt=1", "wt=2");
        let forged =
            String::from_utf8_lossy(&bye_from_pbx(&forged)).replace("z9hG4bKbye", "z9hG4bKbye2");
        let bad = core.on_datagram(now, Bytes::from(forged), &from_pbx());
        assert_eq!(bad.iter().map(status).collect::<Vec<_>>(), vec![403]);
        // The vendor's BYE toward the customer, on the egress face.
        let bye_from_vendor = format!(
            "BYE sip:100@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.20:5080;branch=z9hG4bKvbye\r\n\
             Route: {}, {}\r\nFrom: <sip:+12025550100@198.51.100.1>;tag=v1\r\nTo: <sip:100@192.0.2.10>;tag=f1\r\n\
             Call-ID: call-1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            rr[0], rr[1]
        );
        let routed = core.on_datagram(now, Bytes::from(bye_from_vendor), &from_vendor(VENDOR_A));
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0].to, PBX.parse().unwrap());
        assert_eq!(routed[0].face.side, Side::Listener);
        assert_eq!(routed[0].face.local, EDGE.parse().unwrap());
    }

    /// The Record-Route values a 200 carries back to the PBX (egress face first).
    fn answered_route_set(core: &Core) -> Vec<String> {
        let now = Instant::now();
        let out = core.on_datagram(now, invite(70), &from_pbx());
        let ok = core.on_datagram(now, answer(&out[1], 200, "v1"), &from_vendor(VENDOR_A));
        parse(&ok[0])
            .record_routes()
            .map(|r| String::from_utf8_lossy(r.unwrap().as_bytes()).into_owned())
            .collect()
    }

    fn bye(uri: &str, routes: &str) -> Bytes {
        Bytes::from(format!(
            "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKs1\r\n\
             Route: {routes}\r\nFrom: <sip:100@192.0.2.10>;tag=f1\r\n\
             To: <sip:+12025550100@198.51.100.1>;tag=v1\r\nCall-ID: call-1\r\nCSeq: 2 BYE\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn a_strict_router_before_the_edge_is_fixed_up() {
        // RFC 3261 16.4: our ingress Record-Route URI arrives as the Request-URI, the real
        // target as the last Route value.
        let core = core();
        let rr = answered_route_set(&core);
        let ingress_uri = rr[1].trim_start_matches('<').trim_end_matches('>');
        let out = core.on_datagram(
            Instant::now(),
            bye(
                ingress_uri,
                &format!("{}, <sip:v@203.0.113.20:5080>", rr[0]),
            ),
            &from_pbx(),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            out[0].to,
            VENDOR_A.parse().unwrap(),
            "{}",
            String::from_utf8_lossy(&out[0].bytes)
        );
        assert_eq!(out[0].face.side, Side::Egress(0));
        let sent = parse(&out[0]);
        assert_eq!(
            sent.request_uri().unwrap().as_bytes(),
            b"sip:v@203.0.113.20:5080"
        );
        assert_eq!(sent.routes().count(), 0);
    }

    #[test]
    fn a_strict_router_after_the_edge_gets_the_request_uri_in_route() {
        // RFC 3261 16.6 step 6: the next Route has no `lr`.
        let core = core();
        let rr = answered_route_set(&core);
        let out = core.on_datagram(
            Instant::now(),
            bye(
                "sip:v@203.0.113.20:5080",
                &format!("{}, {}, <sip:203.0.113.50:5060>", rr[1], rr[0]),
            ),
            &from_pbx(),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].to, "203.0.113.50:5060".parse().unwrap());
        let sent = parse(&out[0]);
        assert_eq!(
            sent.request_uri().unwrap().as_bytes(),
            b"sip:203.0.113.50:5060"
        );
        let routes: Vec<Vec<u8>> = sent
            .routes()
            .map(|r| r.unwrap().as_bytes().to_vec())
            .collect();
        assert_eq!(routes, vec![b"<sip:v@203.0.113.20:5080>".to_vec()]);
    }

    #[test]
    fn max_forwards_zero_gets_483_and_one_is_forwarded_as_zero() {
        let core = core();
        let now = Instant::now();
        let out = core.on_datagram(now, invite(0), &from_pbx());
        assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![483]);
        let out = core.on_datagram(now, invite(1), &from_pbx());
        assert_eq!(parse(&out[1]).max_forwards(), Some(0));
    }

    #[test]
    fn draining_refuses_new_calls_with_retry_after() {
        let core = core();
        core.forwarder().unwrap().start_drain();
        let out = core.on_datagram(Instant::now(), invite(70), &from_pbx());
        assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![503]);
        assert!(parse(&out[0])
            .header_values(b"Retry-After")
            .next()
            .is_some());
    }

    #[test]
    fn the_attempt_limit_and_extra_failover_codes() {
        // One attempt: the 503 is relayed, gateway b is never tried.
        let core = core_tuned(|s| s.max_attempts = 1);
        let now = Instant::now();
        let out = core.on_datagram(now, invite(70), &from_pbx());
        let last = core.on_datagram(now, answer(&out[1], 503, "a"), &from_vendor(VENDOR_A));
        let to_pbx: Vec<u16> = last
            .iter()
            .filter(|s| s.to == PBX.parse().unwrap())
            .map(status)
            .collect();
        assert_eq!(to_pbx, vec![503]);
        assert!(last.iter().all(|s| s.to != VENDOR_B.parse().unwrap()));
        // 501 fails over when configured to.
        let core = core_tuned(|s| s.failover_codes = vec![501]);
        let out = core.on_datagram(now, invite(70), &from_pbx());
        let next = core.on_datagram(now, answer(&out[1], 501, "a"), &from_vendor(VENDOR_A));
        assert!(
            next.iter().any(|s| s.to == VENDOR_B.parse().unwrap()),
            "{next:?}"
        );
    }

    #[test]
    fn timer_c_cancels_a_branch_that_rings_too_long() {
        let core = core();
        let t0 = Instant::now();
        let out = core.on_datagram(t0, invite(70), &from_pbx());
        core.on_datagram(t0, answer(&out[1], 180, "v1"), &from_vendor(VENDOR_A));
        assert!(core.on_timer(t0 + Duration::from_secs(180)).is_empty());
        let fired = core.on_timer(t0 + Duration::from_secs(182));
        let cancel = fired
            .iter()
            .find(|s| s.to == VENDOR_A.parse().unwrap())
            .expect("a CANCEL");
        assert_eq!(parse(cancel).method(), Some(Method::Cancel));
        assert_eq!(
            parse(cancel).top_via().branch(),
            parse(&out[1]).top_via().branch()
        );
    }

    #[test]
    fn the_transaction_cap_refuses_new_calls_with_503() {
        let core = core_with(1);
        let now = Instant::now();
        let first = core.on_datagram(now, invite(70), &from_pbx());
        assert_eq!(first.len(), 2, "100 and the forwarded INVITE");
        let second = String::from_utf8_lossy(&invite(70))
            .replace("call-1", "call-2")
            .replace("z9hG4bKpbx1", "z9hG4bKpbx2");
        let refused = core.on_datagram(now, Bytes::from(second), &from_pbx());
        assert_eq!(refused.iter().map(status).collect::<Vec<_>>(), vec![503]);
        assert!(parse(&refused[0])
            .header_values(b"Retry-After")
            .next()
            .is_some());
    }

    #[test]
    fn transactions_are_removed_when_done() {
        let core = core();
        let t0 = Instant::now();
        let out = core.on_datagram(t0, invite(70), &from_pbx());
        core.on_datagram(t0, answer(&out[1], 200, "v1"), &from_vendor(VENDOR_A));
        assert_eq!(
            core.forwarder().unwrap().live_transactions(),
            1,
            "Accepted (RFC 6026)"
        );
        core.on_timer(t0 + Duration::from_secs(33));
        assert_eq!(core.forwarder().unwrap().live_transactions(), 0);
    }
}
