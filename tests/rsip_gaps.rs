use rsip::prelude::*;
use std::convert::TryFrom;

fn show(label: &str, text: &str) {
    println!("==== {label}");
    match rsip::SipMessage::try_from(text.as_bytes()) {
        Err(e) => println!("ERR {e:?}"),
        Ok(m) => {
            println!("headers: {:?}", m.headers());
            println!("via_header: {:?}", m.via_header());
            if let Ok(v) = m.via_header() { println!("via typed: {:?}", v.typed()); }
            println!("call_id_header: {:?}", m.call_id_header());
            println!("cseq_header: {:?}", m.cseq_header().map(|c| c.typed()));
            if let rsip::SipMessage::Request(r) = &m { println!("uri: {:?}", r.uri); }
            let out = m.to_string();
            println!("roundtrip equal: {}", out == text);
            println!("out: {out:?}");
        }
    }
    match warp_edge::sip::Message::parse(bytes::Bytes::copy_from_slice(text.as_bytes())) {
        Err(e) => println!("WARP ERR {e:?}"),
        Ok(m) => {
            let mut out = bytes::BytesMut::new();
            m.write(&[], &mut out).unwrap();
            println!("warp ok; via host {:?} call-id {:?} uri host? roundtrip {}", String::from_utf8_lossy(m.top_via().host()), String::from_utf8_lossy(m.call_id()), &out[..] == text.as_bytes());
        }
    }
}

const BASE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\nMax-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n";

#[test]
fn explore() {
    show("base", BASE);
    show("compact", &BASE.replace("Via:", "v:").replace("Call-ID:", "i:").replace("To:", "t:").replace("From:", "f:").replace("Content-Length:", "l:"));
    show("folded", &BASE.replace("Subject", "x").replace("To: Bob <sip:bob@biloxi.example.com>", "To: Bob\r\n <sip:bob@biloxi.example.com>"));
    show("folded via", &BASE.replace("Via: SIP/2.0/UDP 192.0.2.1:5060;branch", "Via: SIP/2.0/UDP 192.0.2.1:5060\r\n ;branch"));
    show("ipv6", &BASE.replace("sip:bob@biloxi.example.com SIP", "sip:[2001:db8::10]:5070 SIP"));
    show("ipv6 user", &BASE.replace("sip:bob@biloxi.example.com SIP", "sip:bob@[2001:db8::10]:5070 SIP"));
    show("two spaces", &BASE.replace("Via: SIP", "Via:  SIP"));
    show("cseq nospace", &BASE.replace("CSeq: 314159", "CSeq:314159"));
    show("tab", &BASE.replace("Via: SIP", "Via:\tSIP"));
    show("lowercase name", &BASE.replace("Call-ID:", "call-id:"));
    show("space before colon", &BASE.replace("CSeq:", "CSeq :"));
}
#[test]
fn explore2() {
    let inv = std::fs::read_to_string("/tmp/invite.txt").unwrap();
    show("invite", &inv);
    let ok = std::fs::read_to_string("/tmp/ok.txt").unwrap();
    show("ok", &ok);
    show("ipv6 noport", &BASE.replace("sip:bob@biloxi.example.com SIP", "sip:[2001:db8::10] SIP"));
    show("ipv6 via", &BASE.replace("192.0.2.1:5060;", "[2001:db8::1]:5060;"));
    show("ipv6 via noport", &BASE.replace("192.0.2.1:5060;", "[2001:db8::1];"));
    show("LF only", &BASE.replace("\r\n", "\n"));
    show("lower via", &BASE.replace("Via:", "via:"));
}
