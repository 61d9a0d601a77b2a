//! The front door's decisions: ACL first, then request validation as RFC 3261 16.3 lays it
//! out, then what the edge answers itself, and what it hands to [`super::forward`].
//!
//! Order, and why: the ACL decision needs only addresses, so it comes first: an unknown
//! source learns nothing about our parser and a flood of junk costs one trie lookup. A denied
//! request gets 403 (or nothing, if configured), whatever its shape; an allowed one is
//! validated (400 naming the fault, 505, 416, 420, 483) before anything else.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::forward::{Caller, Forwarder};
use super::io::{Inbound, Send, Sends, Side};
use crate::acl::rules::Proto;
use crate::acl::{Acl, AclRequest, Decision};
use crate::config::DenyAction;
use crate::sip::{
    response_destination, Framing, HeaderName, Limits, Message, Method, ParseError, RawMessage,
    ResponseBuilder, Scheme,
};
use crate::telemetry::{DropReason, Metrics};

/// Methods the edge proxies (the `Allow` header of its own answers).
pub const ALLOW: &[u8] = b"INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY";
const ACCEPT: &[u8] = b"application/sdp";

#[derive(Clone, Debug)]
pub struct CoreSettings {
    pub limits: Limits,
    pub deny_action: DenyAction,
    pub deny_reason_in_reply: bool,
    pub retry_after_secs: u32,
}

/// The decision-making half of the edge, shared by every listener task.
pub struct Core {
    settings: CoreSettings,
    retry_after: String,
    acl: Arc<Acl>,
    metrics: Arc<Metrics>,
    /// Forwarding to vendors; `None` when the config has no `[proxy]` section.
    forwarder: Option<Forwarder>,
}

impl Core {
    pub fn new(
        settings: CoreSettings,
        acl: Arc<Acl>,
        metrics: Arc<Metrics>,
        forwarder: Option<Forwarder>,
    ) -> Core {
        let retry_after = settings.retry_after_secs.to_string();
        Core {
            settings,
            retry_after,
            acl,
            metrics,
            forwarder,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    pub fn forwarder(&self) -> Option<&Forwarder> {
        self.forwarder.as_ref()
    }

    /// A datagram: scanned here, with datagram framing.
    pub fn on_datagram(&self, now: Instant, bytes: Bytes, inbound: &Inbound) -> Sends {
        if !bytes.is_empty() && bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
            // A CRLF keep-alive over UDP: nothing to answer, and not a parse error.
            self.metrics.dropped(DropReason::Keepalive);
            return Sends::new();
        }
        match RawMessage::scan(bytes, Framing::Datagram, &self.settings.limits) {
            Ok(raw) => self.on_message(now, raw, inbound),
            Err(error) => {
                self.metrics.parse_error(error);
                self.metrics.dropped(DropReason::Garbage);
                tracing::debug!(peer.addr = %inbound.source, error = %error, "dropped unparseable datagram");
                Sends::new()
            }
        }
    }

    /// A scanned message (a datagram, or a frame cut from a stream).
    pub fn on_message(&self, now: Instant, raw: RawMessage, inbound: &Inbound) -> Sends {
        let Some(method) = raw.method() else {
            return self.on_response(now, raw, inbound);
        };
        self.metrics.request_received(method, inbound.transport);
        if let Side::Egress(_) = inbound.side {
            // The vendor side: no ACL (vendors are not customers); only in-dialog requests
            // carrying the edge's token get through.
            return self.on_vendor_request(now, raw, method, inbound);
        }
        let snapshot = self.acl.load();
        let request = AclRequest {
            source: inbound.source,
            local: inbound.local.ip(),
            transport: inbound.transport,
        };
        match snapshot.decide(&request) {
            Decision::Deny { reason, customer } => {
                // An in-dialog request with the edge's own Route is authorised by its token,
                // not by the ACL (a dedicated-IP customer's BYE may reach another address).
                if self.forwarder.is_some() && raw.header(HeaderName::Route).is_some() {
                    if let Ok(msg) = Message::validate(raw.clone()) {
                        if msg.to().tag().is_some() && self.has_token(&msg) {
                            return self.on_allowed(now, msg.into_raw(), method, inbound, None);
                        }
                    }
                }
                self.metrics.denied(reason, customer);
                tracing::debug!(peer.addr = %inbound.source, acl.reason = reason.as_str(), "denied");
                if method == Method::Ack {
                    self.metrics.dropped(DropReason::AbsorbedAck);
                    return Sends::new();
                }
                if self.settings.deny_action == DenyAction::Drop {
                    self.metrics.dropped(DropReason::Denied);
                    return Sends::new();
                }
                let detailed;
                let reason_phrase = if self.settings.deny_reason_in_reply {
                    detailed = format!("Forbidden ({})", reason.as_str());
                    detailed.as_str()
                } else {
                    "Forbidden"
                };
                self.reply_one(&raw, inbound, 403, Some(reason_phrase), &[])
            }
            Decision::Allow {
                customer,
                trunk,
                via,
            } => {
                self.metrics.allowed(via, customer);
                tracing::trace!(peer.addr = %inbound.source, customer.ban = customer, trunk.id = ?trunk, "allowed");
                let caller = Caller {
                    customer,
                    route: trunk.and_then(|t| snapshot.trunk_route(t)),
                };
                self.on_allowed(now, raw, method, inbound, Some(caller))
            }
        }
    }

    fn has_token(&self, msg: &Message) -> bool {
        let Some(forwarder) = &self.forwarder else {
            return false;
        };
        forwarder.routes_token(msg)
    }

    fn on_response(&self, now: Instant, raw: RawMessage, inbound: &Inbound) -> Sends {
        match Message::validate(raw) {
            Ok(msg) => {
                if let Some(sends) = self.forwarder.as_ref().and_then(|f| f.response(now, msg)) {
                    return sends;
                }
                self.metrics.dropped(DropReason::StrayResponse);
            }
            Err(rejected) => {
                self.metrics.parse_error(rejected.error);
                self.metrics.dropped(DropReason::MalformedResponse);
            }
        }
        tracing::trace!(peer.addr = %inbound.source, "dropped response without transaction");
        Sends::new()
    }

    /// Validates a request (RFC 3261 16.3): `Err` holds the answer (400, 505) or nothing.
    fn validate(
        &self,
        raw: RawMessage,
        method: Method,
        inbound: &Inbound,
    ) -> Result<Message, Box<Sends>> {
        match Message::validate(raw) {
            Ok(msg) => Ok(msg),
            Err(rejected) => {
                self.metrics.parse_error(rejected.error);
                if method == Method::Ack {
                    self.metrics.dropped(DropReason::AbsorbedAck);
                    return Err(Box::default());
                }
                let (code, reason) = match rejected.error {
                    ParseError::VersionNotSupported => (505, None),
                    error => (400, Some(error.to_string())),
                };
                tracing::debug!(peer.addr = %inbound.source, error = %rejected.error, "malformed request");
                Err(Box::new(self.reply_one(
                    &rejected.raw,
                    inbound,
                    code,
                    reason.as_deref(),
                    &[],
                )))
            }
        }
    }

    /// A request that arrived on an egress address (from a vendor).
    fn on_vendor_request(
        &self,
        now: Instant,
        raw: RawMessage,
        method: Method,
        inbound: &Inbound,
    ) -> Sends {
        let msg = match self.validate(raw, method, inbound) {
            Ok(msg) => msg,
            Err(answer) => return *answer,
        };
        let Some(forwarder) = &self.forwarder else {
            return Sends::new();
        };
        match method {
            Method::Ack => {
                if forwarder.ack(now, &msg).is_some() {
                    return Sends::new();
                }
                forwarder.in_dialog(now, msg, inbound)
            }
            Method::Cancel => forwarder.cancel(now, &msg, inbound),
            _ => {
                if let Some(answer) = forwarder.retransmission(&msg) {
                    return answer;
                }
                if msg.to().tag().is_some() {
                    return forwarder.in_dialog(now, msg, inbound);
                }
                let to_edge = msg.request_uri().is_some_and(|u| u.user().is_none());
                if method == Method::Options && to_edge {
                    return self.reply_one(
                        &msg,
                        inbound,
                        200,
                        None,
                        &[("Allow", ALLOW), ("Accept", ACCEPT)],
                    );
                }
                self.reply_one(
                    &msg,
                    inbound,
                    403,
                    Some("Forbidden (vendors cannot start calls)"),
                    &[],
                )
            }
        }
    }

    /// An allowed request: validate (RFC 3261 16.3), then answer what the edge answers itself
    /// or forward. `caller` is `None` for an in-dialog request let in by its token.
    fn on_allowed(
        &self,
        now: Instant,
        raw: RawMessage,
        method: Method,
        inbound: &Inbound,
        caller: Option<Caller<'_>>,
    ) -> Sends {
        let msg = match self.validate(raw, method, inbound) {
            Ok(msg) => msg,
            Err(answer) => return *answer,
        };
        if method == Method::Ack {
            match &self.forwarder {
                Some(f) if f.ack(now, &msg).is_none() => return f.in_dialog(now, msg, inbound),
                _ => {
                    self.metrics.dropped(DropReason::AbsorbedAck);
                    return Sends::new();
                }
            }
        }
        if let Some(answer) = self.forwarder.as_ref().and_then(|f| f.retransmission(&msg)) {
            return answer;
        }
        let uri = msg.request_uri();
        if uri.is_some_and(|u| u.scheme() == Scheme::Other) {
            return self.reply_one(&msg, inbound, 416, None, &[]);
        }
        if method != Method::Cancel {
            let unsupported = proxy_require(&msg);
            if !unsupported.is_empty() {
                return self.reply_one(
                    &msg,
                    inbound,
                    420,
                    None,
                    &[("Unsupported", unsupported.as_slice())],
                );
            }
        }
        let in_dialog = msg.to().tag().is_some();
        let to_edge = uri.is_some_and(|u| u.user().is_none()) || msg.max_forwards() == Some(0);
        if method == Method::Options && to_edge && !in_dialog {
            return self.reply_one(
                &msg,
                inbound,
                200,
                None,
                &[("Allow", ALLOW), ("Accept", ACCEPT)],
            );
        }
        if msg.max_forwards() == Some(0) && method != Method::Cancel {
            return self.reply_one(&msg, inbound, 483, None, &[]);
        }
        let Some(forwarder) = &self.forwarder else {
            return self.front_door_only(&msg, method, inbound);
        };
        match (method, caller) {
            (Method::Cancel, _) => forwarder.cancel(now, &msg, inbound),
            (_, _) if in_dialog => forwarder.in_dialog(now, msg, inbound),
            (Method::Invite, Some(caller)) => forwarder.invite(now, msg, inbound, caller),
            (Method::Register, _) => self.reply_one(&msg, inbound, 405, None, &[("Allow", ALLOW)]),
            _ => self.reply_one(
                &msg,
                inbound,
                403,
                Some("Forbidden (only INVITE starts a call)"),
                &[],
            ),
        }
    }

    /// Answers without forwarding (no `[proxy]` section): what the front door did alone.
    fn front_door_only(&self, msg: &Message, method: Method, inbound: &Inbound) -> Sends {
        match method {
            Method::Register => self.reply_one(msg, inbound, 405, None, &[("Allow", ALLOW)]),
            // No transactions exist, so there is nothing to cancel.
            Method::Cancel => self.reply_one(msg, inbound, 481, None, &[]),
            Method::Invite => {
                let mut replies = self.reply_one(msg, inbound, 100, None, &[]);
                replies.extend(self.reply_one(
                    msg,
                    inbound,
                    503,
                    None,
                    &[("Retry-After", self.retry_after.as_bytes())],
                ));
                replies
            }
            _ if msg.to().tag().is_some() => self.reply_one(msg, inbound, 481, None, &[]),
            _ => self.reply_one(
                msg,
                inbound,
                503,
                None,
                &[("Retry-After", self.retry_after.as_bytes())],
            ),
        }
    }

    /// Fires due protocol timers (retransmissions, timeouts, probes).
    pub fn on_timer(&self, now: Instant) -> Sends {
        self.forwarder
            .as_ref()
            .map_or_else(Sends::new, |f| f.on_timer(now))
    }

    fn reply_one(
        &self,
        request: &RawMessage,
        inbound: &Inbound,
        code: u16,
        reason: Option<&str>,
        headers: &[(&str, &[u8])],
    ) -> Sends {
        let mut replies = Sends::new();
        replies.push(local_response(
            &self.metrics,
            request,
            inbound,
            code,
            reason,
            headers,
        ));
        replies
    }
}

/// A response the edge makes itself, with a stable To-tag, addressed as RFC 3261 18.2.2 says.
pub(super) fn local_response(
    metrics: &Metrics,
    request: &RawMessage,
    inbound: &Inbound,
    code: u16,
    reason: Option<&str>,
    headers: &[(&str, &[u8])],
) -> Send {
    let tag = to_tag(request);
    let mut builder = ResponseBuilder::new(request, code)
        .source(inbound.source)
        .to_tag(&tag);
    if let Some(reason) = reason {
        builder = builder.reason(reason);
    }
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    metrics.response_sent(code);
    Send {
        face: inbound.face(),
        to: reply_address(request, inbound),
        transport: inbound.transport,
        bytes: builder.build(),
        branch: None,
    }
}

/// Option tags in Proxy-Require: the edge supports none, so every one is unsupported.
fn proxy_require(msg: &Message) -> SmallVec<[u8; 32]> {
    let mut out = SmallVec::new();
    for value in msg.header_values(b"Proxy-Require") {
        for tag in value
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
        {
            if !out.is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(tag);
        }
    }
    out
}

/// Where a reply goes: on streams, back on the connection; over UDP, RFC 3261 18.2.2.
pub(super) fn reply_address(request: &RawMessage, inbound: &Inbound) -> SocketAddr {
    if inbound.transport == Proto::Udp {
        response_destination(request, inbound.source)
    } else {
        inbound.source
    }
}

/// A To-tag that is the same for every retransmission of a request (and on every replica),
/// so stateless answers stay consistent.
fn to_tag(request: &RawMessage) -> [u8; 16] {
    let mut hasher = std::hash::DefaultHasher::new();
    request.header(HeaderName::CallId).hash(&mut hasher);
    request.header(HeaderName::From).hash(&mut hasher);
    request.header(HeaderName::CSeq).hash(&mut hasher);
    let hash = hasher.finish();
    let mut tag = [0u8; 16];
    for (i, b) in tag.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclEntry, RuleSet, Snapshot};
    use crate::telemetry::names::SIP_DROPPED_TOTAL;

    const PBX: &str = "192.0.2.10:40000";
    const EDGE: &str = "198.51.100.1:5060";

    fn core() -> (Core, Arc<Metrics>) {
        let rules = RuleSet {
            entries: vec![AclEntry {
                origin: "test".into(),
                group: 1,
                network: "192.0.2.10/32".parse().unwrap(),
                port: 0,
                proto: Proto::Any,
                ban: "100001".into(),
                trunk_group: None,
            }],
            ..RuleSet::default()
        };
        let metrics = Metrics::new();
        let settings = CoreSettings {
            limits: Limits::default(),
            deny_action: DenyAction::Reject,
            deny_reason_in_reply: false,
            retry_after_secs: 30,
        };
        let acl = Arc::new(Acl::new(
            Snapshot::build(Arc::new(rules.clone()), 1).unwrap(),
        ));
        (Core::new(settings, acl, metrics.clone(), None), metrics)
    }

    fn inbound(source: &str) -> Inbound {
        Inbound {
            source: source.parse().unwrap(),
            local: EDGE.parse().unwrap(),
            transport: Proto::Udp,
            side: Side::Listener,
            conn: None,
        }
    }

    fn request(method: &str, via: &str) -> Bytes {
        Bytes::from(format!(
            "{method} sip:198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKx\r\n\
             From: <sip:pbx@example.com>;tag=1\r\nTo: <sip:198.51.100.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn status(reply: &Send) -> u16 {
        Message::parse(reply.bytes.clone())
            .expect("reply parses")
            .status()
            .expect("a response")
    }

    #[test]
    fn known_source_options_answered_at_the_sent_by_port() {
        let (core, _) = core();
        let replies = core.on_datagram(
            Instant::now(),
            request("OPTIONS", "192.0.2.10:5070"),
            &inbound(PBX),
        );
        assert_eq!(replies.len(), 1);
        assert_eq!(status(&replies[0]), 200);
        // No rport: back to the source IP at the sent-by port (RFC 3261 18.2.2).
        assert_eq!(replies[0].to, "192.0.2.10:5070".parse().unwrap());
    }

    #[test]
    fn unknown_source_gets_403_and_its_ack_nothing() {
        let (core, _) = core();
        let replies = core.on_datagram(
            Instant::now(),
            request("INVITE", "192.0.2.11;rport"),
            &inbound("192.0.2.11:5060"),
        );
        assert_eq!(replies.iter().map(status).collect::<Vec<_>>(), vec![403]);
        assert!(core
            .on_datagram(
                Instant::now(),
                request("ACK", "192.0.2.11"),
                &inbound("192.0.2.11:5060")
            )
            .is_empty());
    }

    #[test]
    fn allowed_invite_gets_100_then_503() {
        let (core, _) = core();
        let replies = core.on_datagram(
            Instant::now(),
            request("INVITE", "192.0.2.10;rport"),
            &inbound(PBX),
        );
        assert_eq!(
            replies.iter().map(status).collect::<Vec<_>>(),
            vec![100, 503]
        );
        assert!(
            replies.iter().all(|r| r.to == PBX.parse().unwrap()),
            "rport: back to the source port"
        );
    }

    #[test]
    fn keepalives_responses_and_garbage_get_nothing() {
        let (core, metrics) = core();
        for datagram in [&b"\r\n\r\n"[..], b"\r\n", b"\x16\x03\x01garbage", b""] {
            assert!(core
                .on_datagram(
                    Instant::now(),
                    Bytes::copy_from_slice(datagram),
                    &inbound(PBX)
                )
                .is_empty());
        }
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n\
                        To: <sip:c@d>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert!(core
            .on_datagram(Instant::now(), Bytes::from(response), &inbound(PBX))
            .is_empty());
        let text = metrics.render();
        for (reason, count) in [("keepalive", 2), ("garbage", 2), ("stray_response", 1)] {
            let line = format!("{SIP_DROPPED_TOTAL}{{reason=\"{reason}\"}} {count}");
            assert!(text.contains(&line), "missing {line}");
        }
    }
}
