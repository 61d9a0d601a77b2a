//! The front door's decisions: ACL first, then request validation as RFC 3261 16.3 lays it
//! out, then what the edge answers itself.
//!
//! Order, and why: the ACL decision needs only addresses, so it comes first: an unknown
//! source learns nothing about our parser and a flood of junk costs one trie lookup. A denied
//! request gets 403 (or nothing, if configured), whatever its shape; an allowed one is
//! validated (400 naming the fault, 505, 416, 420, 483) before anything else.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

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

/// Where a message came from and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub source: SocketAddr,
    /// The local address it arrived on (the dedicated-IP customers are recognised by it).
    pub local: SocketAddr,
    pub transport: Proto,
}

/// One message to send. On streams `to` is informational: replies go back on the connection
/// the request came in on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub to: SocketAddr,
    pub code: u16,
    pub bytes: Bytes,
}

pub type Replies = SmallVec<[Reply; 2]>;

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
}

impl Core {
    pub fn new(settings: CoreSettings, acl: Arc<Acl>, metrics: Arc<Metrics>) -> Core {
        let retry_after = settings.retry_after_secs.to_string();
        Core {
            settings,
            retry_after,
            acl,
            metrics,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    /// A datagram: scanned here, with datagram framing.
    pub fn on_datagram(&self, bytes: Bytes, inbound: &Inbound) -> Replies {
        if !bytes.is_empty() && bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
            // A CRLF keep-alive over UDP: nothing to answer, and not a parse error.
            self.metrics.dropped(DropReason::Keepalive);
            return Replies::new();
        }
        match RawMessage::scan(bytes, Framing::Datagram, &self.settings.limits) {
            Ok(raw) => self.on_message(raw, inbound),
            Err(error) => {
                self.metrics.parse_error(error);
                self.metrics.dropped(DropReason::Garbage);
                tracing::debug!(peer.addr = %inbound.source, error = %error, "dropped unparseable datagram");
                Replies::new()
            }
        }
    }

    /// A scanned message (a datagram, or a frame cut from a stream).
    pub fn on_message(&self, raw: RawMessage, inbound: &Inbound) -> Replies {
        let Some(method) = raw.method() else {
            self.on_response(raw, inbound);
            return Replies::new();
        };
        self.metrics.request_received(method, inbound.transport);
        let snapshot = self.acl.load();
        let request = AclRequest {
            source: inbound.source,
            local: inbound.local.ip(),
            transport: inbound.transport,
        };
        match snapshot.decide(&request) {
            Decision::Deny { reason, customer } => {
                self.metrics.denied(reason, customer);
                tracing::debug!(peer.addr = %inbound.source, acl.reason = reason.as_str(), "denied");
                if method == Method::Ack {
                    self.metrics.dropped(DropReason::AbsorbedAck);
                    return Replies::new();
                }
                if self.settings.deny_action == DenyAction::Drop {
                    self.metrics.dropped(DropReason::Denied);
                    return Replies::new();
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
                self.on_allowed(raw, method, inbound)
            }
        }
    }

    fn on_response(&self, raw: RawMessage, inbound: &Inbound) {
        match Message::validate(raw) {
            Ok(_) => self.metrics.dropped(DropReason::StrayResponse),
            Err(rejected) => {
                self.metrics.parse_error(rejected.error);
                self.metrics.dropped(DropReason::MalformedResponse);
            }
        }
        tracing::trace!(peer.addr = %inbound.source, "dropped response without transaction");
    }

    /// An allowed request: validate (RFC 3261 16.3), then answer what the edge answers itself.
    fn on_allowed(&self, raw: RawMessage, method: Method, inbound: &Inbound) -> Replies {
        let msg = match Message::validate(raw) {
            Ok(msg) => msg,
            Err(rejected) => {
                self.metrics.parse_error(rejected.error);
                if method == Method::Ack {
                    self.metrics.dropped(DropReason::AbsorbedAck);
                    return Replies::new();
                }
                let (code, reason) = match rejected.error {
                    ParseError::VersionNotSupported => (505, None),
                    error => (400, Some(error.to_string())),
                };
                tracing::debug!(peer.addr = %inbound.source, error = %rejected.error, "malformed request");
                return self.reply_one(&rejected.raw, inbound, code, reason.as_deref(), &[]);
            }
        };
        if method == Method::Ack {
            // No transactions yet: every ACK is for one of our own final responses.
            self.metrics.dropped(DropReason::AbsorbedAck);
            return Replies::new();
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
        let to_edge = uri.is_some_and(|u| u.user().is_none()) || msg.max_forwards() == Some(0);
        if method == Method::Options && to_edge {
            return self.reply_one(
                &msg,
                inbound,
                200,
                None,
                &[("Allow", ALLOW), ("Accept", ACCEPT)],
            );
        }
        if msg.max_forwards() == Some(0) {
            return self.reply_one(&msg, inbound, 483, None, &[]);
        }
        match method {
            Method::Register => self.reply_one(&msg, inbound, 405, None, &[("Allow", ALLOW)]),
            // No transactions exist yet, so there is nothing to cancel.
            Method::Cancel => self.reply_one(&msg, inbound, 481, None, &[]),
            Method::Invite => {
                // Until forwarding lands: 100 at once, then a clear temporary refusal.
                let mut replies = self.reply_one(&msg, inbound, 100, None, &[]);
                replies.extend(self.reply_one(
                    &msg,
                    inbound,
                    503,
                    None,
                    &[("Retry-After", self.retry_after.as_bytes())],
                ));
                replies
            }
            _ if msg.to().tag().is_some() => self.reply_one(&msg, inbound, 481, None, &[]),
            _ => self.reply_one(
                &msg,
                inbound,
                503,
                None,
                &[("Retry-After", self.retry_after.as_bytes())],
            ),
        }
    }

    fn reply_one(
        &self,
        request: &RawMessage,
        inbound: &Inbound,
        code: u16,
        reason: Option<&str>,
        headers: &[(&str, &[u8])],
    ) -> Replies {
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
        self.metrics.response_sent(code);
        let mut replies = Replies::new();
        replies.push(Reply {
            to: reply_address(request, inbound),
            code,
            bytes: builder.build(),
        });
        replies
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
fn reply_address(request: &RawMessage, inbound: &Inbound) -> SocketAddr {
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
                origin: "test".to_owned(),
                group: 1,
                network: "192.0.2.10/32".parse().unwrap(),
                port: 0,
                proto: Proto::Any,
                ban: "100001".to_owned(),
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
        let acl = Arc::new(Acl::new(Snapshot::build(&rules, 1).unwrap()));
        (Core::new(settings, acl, metrics.clone()), metrics)
    }

    fn inbound(source: &str) -> Inbound {
        Inbound {
            source: source.parse().unwrap(),
            local: EDGE.parse().unwrap(),
            transport: Proto::Udp,
        }
    }

    fn request(method: &str, via: &str) -> Bytes {
        Bytes::from(format!(
            "{method} sip:198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKx\r\n\
             From: <sip:pbx@example.com>;tag=1\r\nTo: <sip:198.51.100.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn status(reply: &Reply) -> u16 {
        Message::parse(reply.bytes.clone())
            .expect("reply parses")
            .status()
            .expect("a response")
    }

    #[test]
    fn known_source_options_answered_at_the_sent_by_port() {
        let (core, _) = core();
        let replies = core.on_datagram(request("OPTIONS", "192.0.2.10:5070"), &inbound(PBX));
        assert_eq!(replies.len(), 1);
        assert_eq!(status(&replies[0]), 200);
        // No rport: back to the source IP at the sent-by port (RFC 3261 18.2.2).
        assert_eq!(replies[0].to, "192.0.2.10:5070".parse().unwrap());
    }

    #[test]
    fn unknown_source_gets_403_and_its_ack_nothing() {
        let (core, _) = core();
        let replies = core.on_datagram(
            request("INVITE", "192.0.2.11;rport"),
            &inbound("192.0.2.11:5060"),
        );
        assert_eq!(replies.iter().map(status).collect::<Vec<_>>(), vec![403]);
        assert!(core
            .on_datagram(request("ACK", "192.0.2.11"), &inbound("192.0.2.11:5060"))
            .is_empty());
    }

    #[test]
    fn allowed_invite_gets_100_then_503() {
        let (core, _) = core();
        let replies = core.on_datagram(request("INVITE", "192.0.2.10;rport"), &inbound(PBX));
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
                .on_datagram(Bytes::copy_from_slice(datagram), &inbound(PBX))
                .is_empty());
        }
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n\
                        To: <sip:c@d>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert!(core
            .on_datagram(Bytes::from(response), &inbound(PBX))
            .is_empty());
        let text = metrics.render();
        for (reason, count) in [("keepalive", 2), ("garbage", 2), ("stray_response", 1)] {
            let line = format!("{SIP_DROPPED_TOTAL}{{reason=\"{reason}\"}} {count}");
            assert!(text.contains(&line), "missing {line}");
        }
    }
}
