//! Why rsip 0.4 must not carry wire traffic, recorded reproducibly. Each test pins down what
//! rsip actually does with input that SIP peers legitimately send (RFC 3261 allows all of
//! it), next to warp_edge parsing the same bytes and writing them back byte for byte.
//!
//! rsip stays a dev-dependency for the comparison bench and for these tests. If an rsip
//! upgrade makes one of these tests fail, rsip got better: update the test and BENCHMARKS.md.

use std::convert::TryFrom;
use std::net::{IpAddr, Ipv6Addr};

use bytes::{Bytes, BytesMut};
use rsip::prelude::*;
use warp_edge::sip::Message;

/// A minimal, canonically written INVITE that both parsers accept and write back unchanged;
/// each test changes one thing in it.
const BASE: &str = concat!(
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n",
    "Max-Forwards: 70\r\n",
    "To: Bob <sip:bob@biloxi.example.com>\r\n",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n",
    "CSeq: 314159 INVITE\r\n",
    "Content-Length: 0\r\n",
    "\r\n",
);

/// `BASE` with `from` replaced by `to`, which must occur in it.
fn variant(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

fn rsip_parse(text: &str) -> Result<rsip::SipMessage, rsip::Error> {
    rsip::SipMessage::try_from(text.as_bytes())
}

/// Parses with warp_edge and checks that writing with no edits gives back exactly `text`.
fn warp_round_trip(text: &str) -> Message {
    let msg = Message::parse(Bytes::copy_from_slice(text.as_bytes()))
        .unwrap_or_else(|e| panic!("warp_edge rejected {text:?}: {e}"));
    let mut out = BytesMut::new();
    msg.write(&[], &mut out).expect("no edits");
    assert_eq!(
        String::from_utf8_lossy(&out),
        text,
        "warp_edge must write the message back byte for byte"
    );
    msg
}

#[test]
fn control_both_parsers_accept_canonical_input() {
    // Without this, the tests below could pass because rsip rejects everything.
    let msg = rsip_parse(BASE).expect("rsip parses canonical input");
    assert_eq!(msg.to_string(), BASE);
    assert!(msg.via_header().is_ok());
    assert!(msg.call_id_header().is_ok());
    warp_round_trip(BASE);
}

#[test]
fn compact_header_forms() {
    // RFC 3261 7.3.3: `v` is Via, `i` is Call-ID, `f` From, `t` To, `l` Content-Length.
    let text = BASE
        .replacen("Via:", "v:", 1)
        .replacen("Call-ID:", "i:", 1)
        .replacen("From:", "f:", 1)
        .replacen("To:", "t:", 1)
        .replacen("Content-Length:", "l:", 1);

    // rsip parses the message but files the compact headers under `Header::Other`, so its
    // typed lookups report them missing: a proxy on rsip would find no Via to answer to.
    let msg = rsip_parse(&text).expect("rsip tokenizes the message");
    assert_eq!(
        msg.via_header(),
        Err(rsip::Error::MissingHeader("Via".into()))
    );
    assert_eq!(
        msg.call_id_header(),
        Err(rsip::Error::MissingHeader("CallID".into()))
    );
    assert!(msg.from_header().is_err());
    assert!(msg.to_header().is_err());
    assert!(msg.headers().iter().any(|h| matches!(
        h,
        rsip::Header::Other(name, value) if name == "v" && value.starts_with("SIP/2.0/UDP")
    )));
    // Its write-out happens to be unchanged here: `Other` keeps the name as written.
    assert_eq!(msg.to_string(), text);

    let msg = warp_round_trip(&text);
    assert_eq!(msg.top_via().host(), b"192.0.2.1");
    assert_eq!(msg.top_via().branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(msg.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(msg.from().tag(), Some(&b"1928301774"[..]));
    assert_eq!(msg.to().uri().host(), b"biloxi.example.com");
    assert_eq!(msg.content_length(), Some(0));
}

#[test]
fn folded_header_line() {
    // RFC 3261 7.3.1: a header value may continue on a line starting with white space.
    let folded_to = variant(
        "To: Bob <sip:bob@biloxi.example.com>\r\n",
        "To: Bob\r\n <sip:bob@biloxi.example.com>\r\n",
    );
    let folded_via = variant("192.0.2.1:5060;branch=", "192.0.2.1:5060\r\n\t;branch=");
    for text in [&folded_to, &folded_via] {
        // rsip rejects the whole message: its header tokenizer stops at the first CRLF.
        assert!(
            matches!(rsip_parse(text), Err(rsip::Error::TokenizeError(_))),
            "rsip on {text:?}: {:?}",
            rsip_parse(text)
        );
    }

    let msg = warp_round_trip(&folded_to);
    assert_eq!(msg.to().uri().host(), b"biloxi.example.com");
    assert_eq!(msg.to().display_name(), Some(&b"Bob"[..]));
    let msg = warp_round_trip(&folded_via);
    assert_eq!(msg.top_via().port(), Some(5060));
    assert_eq!(msg.top_via().branch(), Some(&b"z9hG4bK776asdhds"[..]));
}

#[test]
fn ipv6_request_uri() {
    let v6: Ipv6Addr = "2001:db8::10".parse().expect("IPv6 literal");
    for (uri, port) in [
        ("sip:[2001:db8::10]:5070", Some(5070)),
        ("sip:[2001:db8::10]", None),
        ("sip:bob@[2001:db8::10]:5070", Some(5070)),
    ] {
        let text = variant("sip:bob@biloxi.example.com SIP", &format!("{uri} SIP"));
        // rsip splits host and port at a colon inside the brackets and fails on the port.
        match rsip_parse(&text) {
            Err(rsip::Error::ParseError(reason)) => {
                assert_eq!(reason, "invalid digit found in string", "{uri}")
            }
            other => panic!("rsip on {uri}: {other:?}"),
        }

        let msg = warp_round_trip(&text);
        let parsed = msg.request_uri().expect("a request has a Request-URI");
        assert_eq!(parsed.host(), b"[2001:db8::10]", "{uri}");
        assert_eq!(parsed.ip(), Some(IpAddr::V6(v6)), "{uri}");
        assert_eq!(parsed.port(), port, "{uri}");
    }
}

#[test]
fn ipv6_via_sent_by() {
    let text = variant("192.0.2.1:5060;", "[2001:db8::1]:5060;");
    // rsip keeps the message but cannot type its Via, so it cannot route a response back.
    let msg = rsip_parse(&text).expect("rsip tokenizes the message");
    let via = msg.via_header().expect("Via is present");
    assert_eq!(
        via.typed(),
        Err(rsip::Error::ParseError(
            "invalid digit found in string".into()
        ))
    );

    let msg = warp_round_trip(&text);
    assert_eq!(msg.top_via().host(), b"[2001:db8::1]");
    assert_eq!(
        msg.top_via().ip(),
        Some(IpAddr::V6("2001:db8::1".parse().expect("IPv6 literal")))
    );
    assert_eq!(msg.top_via().port(), Some(5060));
}

#[test]
fn white_space_and_name_case_are_rewritten() {
    // Each input is legal (RFC 3261 7.3.1 and 25.1: white space around HCOLON, names are
    // case-insensitive). rsip parses it, but its write-out is the canonical form, not the
    // bytes it received, so a proxy on rsip would rewrite every header it forwards.
    for (from, to, rewritten) in [
        ("Via: SIP", "Via:  SIP", "Via: SIP"),
        ("Via: SIP", "Via:\tSIP", "Via: SIP"),
        ("CSeq: 314159", "CSeq:314159", "CSeq: 314159"),
        ("Call-ID:", "call-id:", "Call-ID:"),
    ] {
        let text = variant(from, to);
        let msg = rsip_parse(&text).unwrap_or_else(|e| panic!("rsip on {to:?}: {e:?}"));
        let written = msg.to_string();
        assert_ne!(written, text, "{to:?}");
        assert_eq!(written, BASE, "rsip writes {to:?} as {rewritten:?}");
        assert!(written.contains(rewritten));

        warp_round_trip(&text);
    }
}

#[test]
fn white_space_before_the_colon() {
    // HCOLON = *( SP / HTAB ) ":" SWS: `CSeq : 1 INVITE` is a legal header line.
    let text = variant("CSeq:", "CSeq :");
    assert!(
        matches!(rsip_parse(&text), Err(rsip::Error::TokenizeError(_))),
        "{:?}",
        rsip_parse(&text)
    );

    let msg = warp_round_trip(&text);
    assert_eq!(msg.cseq().seq, 314159);
}
