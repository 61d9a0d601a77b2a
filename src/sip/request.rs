//! Requests the proxy writes itself: the CANCEL of a forwarded INVITE (RFC 3261 9.1), the
//! hop-by-hop ACK for a non-2xx final (17.1.1.3), and the OPTIONS probe of a gateway. The
//! first two copy their fields from the request as it was forwarded, byte for byte.

use bytes::{BufMut, Bytes, BytesMut};

use super::{HeaderName, Message};

fn copy_fields(out: &mut BytesMut, msg: &Message, names: &[HeaderName]) {
    let raw = msg.raw();
    let buf = raw.bytes().as_ref();
    for &name in names {
        for h in raw.headers_named(name) {
            out.extend_from_slice(h.line.slice(buf));
        }
    }
}

fn start_line(out: &mut BytesMut, method: &[u8], forwarded: &Message) {
    let uri = forwarded
        .request_uri()
        .map(|u| u.as_bytes())
        .unwrap_or_default();
    out.extend_from_slice(method);
    out.put_u8(b' ');
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
}

fn top_via(out: &mut BytesMut, forwarded: &Message) {
    out.extend_from_slice(b"Via: ");
    out.extend_from_slice(forwarded.top_via().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn cseq(out: &mut BytesMut, forwarded: &Message, method: &[u8]) {
    out.extend_from_slice(b"CSeq: ");
    out.extend_from_slice(itoa::Buffer::new().format(forwarded.cseq().seq).as_bytes());
    out.put_u8(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\n");
}

/// The CANCEL for `forwarded` (the INVITE as this proxy sent it): the same Request-URI,
/// top Via (so the same branch), Route, From, To, Call-ID and CSeq number.
pub fn cancel_for(forwarded: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    start_line(&mut out, b"CANCEL", forwarded);
    top_via(&mut out, forwarded);
    copy_fields(
        &mut out,
        forwarded,
        &[
            HeaderName::Route,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ],
    );
    cseq(&mut out, forwarded, b"CANCEL");
    out.extend_from_slice(b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    out.freeze()
}

/// The ACK for a non-2xx final `response` to `forwarded`: as the CANCEL, but To comes from
/// the response (it carries the vendor's tag).
pub fn ack_for(forwarded: &Message, response: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    start_line(&mut out, b"ACK", forwarded);
    top_via(&mut out, forwarded);
    copy_fields(
        &mut out,
        forwarded,
        &[HeaderName::Route, HeaderName::From, HeaderName::CallId],
    );
    copy_fields(&mut out, response, &[HeaderName::To]);
    cseq(&mut out, forwarded, b"ACK");
    out.extend_from_slice(b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    out.freeze()
}

/// An OPTIONS probe to `uri`, with `via` as its only Via value.
pub fn options_probe(uri: &str, via: &[u8], from: &str, call_id: &str, cseq: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(384);
    for piece in [
        b"OPTIONS ".as_slice(),
        uri.as_bytes(),
        b" SIP/2.0\r\nVia: ",
        via,
        b"\r\nFrom: <",
        from.as_bytes(),
        b">;tag=probe\r\nTo: <",
        uri.as_bytes(),
        b">\r\nCall-ID: ",
        call_id.as_bytes(),
        b"\r\nCSeq: ",
        itoa::Buffer::new().format(cseq).as_bytes(),
        b" OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ] {
        out.extend_from_slice(piece);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORWARDED: &str = "INVITE sip:+12025550100@192.0.2.20:5080 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKwe1;rport\r\n\
        Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKpbx\r\n\
        Record-Route: <sip:192.0.2.1;lr;wt=1abc>\r\n\
        Route: <sip:192.0.2.30;lr>\r\n\
        From: \"PBX\" <sip:100@pbx.example>;tag=f1\r\n\
        To: <sip:+12025550100@edge.example>\r\n\
        Call-ID: call-1@pbx\r\n\
        CSeq: 7 INVITE\r\n\
        Max-Forwards: 69\r\n\
        Content-Length: 0\r\n\r\n";

    fn parse(text: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(text.as_bytes())).expect("parses")
    }

    #[test]
    fn cancel_matches_the_forwarded_invite() {
        let invite = parse(FORWARDED);
        let cancel = parse(std::str::from_utf8(&cancel_for(&invite)).unwrap());
        assert_eq!(
            cancel.request_uri().unwrap().as_bytes(),
            b"sip:+12025550100@192.0.2.20:5080"
        );
        assert_eq!(cancel.vias().count(), 1);
        assert_eq!(cancel.top_via().branch(), Some(&b"z9hG4bKwe1"[..]));
        assert_eq!(cancel.cseq().seq, 7);
        assert_eq!(cancel.call_id(), b"call-1@pbx");
        assert_eq!(cancel.routes().count(), 1);
        assert_eq!(cancel.to().tag(), None);
    }

    #[test]
    fn ack_takes_to_from_the_response() {
        let invite = parse(FORWARDED);
        let response = parse(
            "SIP/2.0 503 Service Unavailable\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKwe1;rport=5060\r\n\
             From: \"PBX\" <sip:100@pbx.example>;tag=f1\r\n\
             To: <sip:+12025550100@edge.example>;tag=v9\r\n\
             Call-ID: call-1@pbx\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let ack = parse(std::str::from_utf8(&ack_for(&invite, &response)).unwrap());
        assert_eq!(ack.to().tag(), Some(&b"v9"[..]));
        assert_eq!(ack.from().tag(), Some(&b"f1"[..]));
        assert_eq!(ack.top_via().branch(), Some(&b"z9hG4bKwe1"[..]));
        assert_eq!(ack.cseq().seq, 7);
    }

    #[test]
    fn probe_parses() {
        let probe = options_probe(
            "sip:192.0.2.20:5080",
            b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKwp1",
            "sip:warp-edge@192.0.2.1",
            "probe-1",
            3,
        );
        let msg = parse(std::str::from_utf8(&probe).unwrap());
        assert_eq!(msg.cseq().seq, 3);
        assert_eq!(msg.max_forwards(), Some(70));
    }
}
