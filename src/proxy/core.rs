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
                self.metrics.decision(false, reason.as_str(), customer);
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
                self.metrics.decision(true, via.as_str(), Some(customer));
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
