//! Self-tests of the scripted SIP peer in `tests/support/peer.rs`: its parser on hand-written
//! messages, and two peers talking straight to each other on loopback (127.0.0.10 as the
//! PBX, 127.0.0.20 as the vendor) over UDP and TCP, with a Record-Route pair injected the
//! way a proxy would add it. No edge runs here: these tests prove the peer before the
//! forwarding tests rely on it.

mod support;

use std::net::SocketAddr;

use support::peer::{
    param, split_list, uri_of, Dialog, Message, Side, SipPeer, SipUri, StartLine, Transport, Via,
    BRANCH_COOKIE,
};
use support::{host, CUSTOMER_PBX};

/// What a proxy would put on top: its vendor-facing face, then its customer-facing face.
const RR_EGRESS: &str = "<sip:127.0.1.1:5070;lr;wt=egressToken>";
const RR_INGRESS: &str = "<sip:127.0.0.1:5060;lr;wt=ingressToken>";
const CALLEE: &str = "sip:+15551234567@carrier.example";

fn vendor_ip() -> std::net::IpAddr {
    host(20)
}

fn any_port(ip: std::net::IpAddr) -> SocketAddr {
    SocketAddr::new(ip, 0)
}

// === the parser ===

#[test]
fn parser_reads_compact_forms_folding_lists_and_tags() {
    let text = "INVITE sip:bob@127.0.0.20:5080;transport=tcp SIP/2.0\r\n\
        v: SIP/2.0/UDP 127.0.1.1:5060;branch=z9hG4bK-a;rport, SIP/2.0/TCP 127.0.0.10:5062;branch=z9hG4bK-b\r\n\
        Via: SIP/2.0/UDP 127.0.0.9;branch=z9hG4bK-c\r\n\
        f: \"Alice, PBX\" <sip:alice@127.0.0.10>;tag=abc\r\n\
        t: <sip:bob@example.com>\r\n\
        i: call-1@pbx\r\n\
        CSeq: 7 INVITE\r\n\
        Record-Route: <sip:127.0.1.1;lr;wt=x>,\r\n\
        \x20<sip:127.0.0.1;lr;wt=y>\r\n\
        m: <sip:alice@127.0.0.10:5062;transport=tcp>;expires=60\r\n\
        Max-Forwards: 69\r\n\
        l: 4\r\n\
        \r\n\
        body";
    let message = Message::parse(text.as_bytes()).expect("parses");

    assert_eq!(
        message.start,
        StartLine::Request {
            method: "INVITE".into(),
            uri: "sip:bob@127.0.0.20:5080;transport=tcp".into()
        }
    );
    assert_eq!(message.vias().len(), 3, "two in one field, one more");
    assert_eq!(message.count("Via"), 2, "two Via lines");
    assert_eq!(message.branch().as_deref(), Some("z9hG4bK-a"));
    let second = Via::parse(message.vias()[1]).expect("second Via");
    assert_eq!(second.transport, "TCP");
    assert_eq!(
        second.sent_by_addr(),
        Some("127.0.0.10:5062".parse().unwrap())
    );
    assert_eq!(message.from_tag(), Some("abc"));
    assert_eq!(message.to_tag(), None);
    assert_eq!(message.call_id(), "call-1@pbx");
    assert_eq!(message.cseq(), (7, "INVITE".to_owned()));
    assert_eq!(
        message.record_routes(),
        ["<sip:127.0.1.1;lr;wt=x>", "<sip:127.0.0.1;lr;wt=y>"],
        "folded line joined, list split"
    );
    assert_eq!(
        message.contact_uri(),
        Some("sip:alice@127.0.0.10:5062;transport=tcp")
    );
    assert_eq!(message.max_forwards(), Some(69));
    assert_eq!(message.body, "body");
    assert_eq!(message.header("Content-Length"), Some("4"));
    assert_eq!(message.bytes(), text.as_bytes());
    // The quoted comma in the display name is not a list separator, and From is no list.
    assert_eq!(message.all("From").len(), 1);
    assert_eq!(
        split_list("\"a, b\" <sip:x>, <sip:y,z>"),
        ["\"a, b\" <sip:x>", "<sip:y,z>"]
    );

    let uri = SipUri::parse(uri_of(message.record_routes()[0])).expect("route URI");
    assert!(uri.is_loose());
    assert_eq!(uri.param("wt"), Some("x"));
    assert_eq!(uri.socket_addr(), Some("127.0.1.1:5060".parse().unwrap()));
    let target = SipUri::parse(message.uri()).expect("Request-URI");
    assert_eq!(target.user.as_deref(), Some("bob"));
    assert_eq!(target.transport(), Transport::Tcp);
    assert_eq!(param(";a=1;lr;b=2", "lr"), Some(""));
}

#[test]
fn parser_refuses_what_is_not_a_whole_message() {
    for (what, text) in [
        ("no blank line", "SIP/2.0 200 OK\r\nCall-ID: x\r\n"),
        ("bad status", "SIP/2.0 2000 OK\r\n\r\n"),
        (
            "short body",
            "SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nabc",
        ),
        ("no colon", "OPTIONS sip:x SIP/2.0\r\nVia\r\n\r\n"),
        ("other version", "OPTIONS sip:x SIP/3.0\r\n\r\n"),
    ] {
        assert!(Message::parse(text.as_bytes()).is_err(), "{what}");
    }
    let response = Message::parse(b"SIP/2.0 486 Busy Here\r\nl: 0\r\n\r\n").expect("parses");
    assert_eq!(response.status(), 486);
    assert_eq!(response.reason(), "Busy Here");
}

#[tokio::test]
async fn strict_router_first_becomes_the_request_uri_and_the_target_the_last_route() {
    let dialog = Dialog {
        side: Side::Uac,
        call_id: "c".into(),
        local_tag: "l".into(),
        remote_tag: "r".into(),
        local_party: "<sip:pbx@127.0.0.10>".into(),
        remote_party: "<sip:bob@example.com>".into(),
        route_set: vec![
            "<sip:127.0.0.1:5060;wt=strict>".into(),
            "<sip:127.0.1.1:5070;lr>".into(),
        ],
        remote_target: "sip:bob@127.0.0.20:5080".into(),
        local_cseq: 1,
        invite_cseq: 1,
    };
    let peer = SipPeer::udp(any_port(CUSTOMER_PBX)).await;
    let mut dialog = dialog;
    let bye = peer.bye(&mut dialog);

    assert_eq!(bye.uri(), "sip:127.0.0.1:5060;wt=strict");
    assert_eq!(
        bye.routes(),
        ["<sip:127.0.1.1:5070;lr>", "<sip:bob@127.0.0.20:5080>"]
    );
    assert_eq!(dialog.next_hop(), "127.0.0.1:5060".parse().unwrap());
    assert_eq!(bye.cseq(), (2, "BYE".to_owned()));
    assert_eq!(bye.from_tag(), Some("l"));
    assert_eq!(bye.to_tag(), Some("r"));
}

// === two peers, no edge ===

/// PBX and vendor on the given transport: the vendor listens, the PBX reaches it.
async fn pair(transport: Transport) -> (SipPeer, SipPeer) {
    match transport {
        Transport::Udp => {
            let vendor = SipPeer::udp(any_port(vendor_ip())).await.named("vendor");
            let pbx = SipPeer::udp(any_port(CUSTOMER_PBX)).await.named("pbx");
            (pbx, vendor)
        }
        Transport::Tcp => {
            let vendor = SipPeer::tcp_listen(any_port(vendor_ip()))
                .await
                .named("vendor");
            let pbx = SipPeer::tcp_connect(CUSTOMER_PBX, vendor.local())
                .await
                .named("pbx");
            (pbx, vendor)
        }
    }
}

fn route_uri_addr(route: &str) -> SocketAddr {
    SipUri::parse(uri_of(route))
        .and_then(|u| u.socket_addr())
        .expect("route with an IP")
}

/// INVITE/180/200/ACK with the Record-Route pair; returns both dialogs.
async fn call(pbx: &mut SipPeer, vendor: &mut SipPeer) -> (Dialog, Dialog) {
    let invite = pbx
        .invite(CALLEE, vendor.local())
        .with_all("Record-Route", &[RR_EGRESS, RR_INGRESS]);
    assert_eq!(invite.next_hop(), vendor.local());
    let via = invite.top_via().expect("own Via");
    assert_eq!(via.transport, pbx.transport().via_token());
    assert_eq!(via.sent_by_addr(), Some(pbx.local()));
    assert!(via
        .branch
        .as_deref()
        .unwrap_or_default()
        .starts_with(BRANCH_COOKIE));
    assert_eq!(invite.max_forwards(), Some(70));
    assert_eq!(invite.cseq(), (1, "INVITE".to_owned()));
    assert!(invite.from_tag().is_some());
    assert_eq!(
        invite.header("Content-Length"),
        Some(invite.body.len().to_string().as_str())
    );
    assert!(invite.body.starts_with("v=0\r\n"));
    pbx.send(&invite).await;

    let at_vendor = vendor.recv_request("INVITE").await;
    assert_eq!(
        at_vendor.raw(),
        invite.bytes(),
        "no byte changed on the way"
    );
    assert_eq!(
        at_vendor.from,
        pbx.local(),
        "sent from the peer's own address"
    );

    let trying = vendor.response_to(&at_vendor, 100);
    let ringing = vendor.response_to(&at_vendor, 180);
    let ok = vendor.response_to(&at_vendor, 200);
    assert_eq!(trying.to_tag(), None, "a 100 has no To tag");
    assert!(
        trying.record_routes().is_empty(),
        "no Record-Route on a 100"
    );
    assert!(ringing.to_tag().is_some());
    assert_eq!(ringing.to_tag(), ok.to_tag(), "one tag per dialog");
    for response in [&ringing, &ok] {
        assert_eq!(response.record_routes(), [RR_EGRESS, RR_INGRESS]);
        assert_eq!(response.vias(), at_vendor.vias());
        assert_eq!(response.call_id(), invite.call_id());
        assert_eq!(response.from_tag(), invite.from_tag());
        assert_eq!(response.cseq(), invite.cseq());
        assert_eq!(response.header("Content-Length"), Some("0"));
        assert_eq!(response.contact_uri(), Some(vendor.contact_uri().as_str()));
    }
    for response in [&trying, &ringing, &ok] {
        vendor.reply(&at_vendor, response).await;
    }
    assert_eq!(pbx.recv_status(100).await.from, vendor.local());
    pbx.recv_status(180).await;
    let answered = pbx.recv_status(200).await;

    let (ack, uac) = pbx.ack_for_2xx(&invite, &answered);
    assert_eq!(uac.side, Side::Uac);
    assert_eq!(
        uac.route_set,
        [RR_INGRESS, RR_EGRESS],
        "Record-Route reversed"
    );
    assert_eq!(uac.remote_target, vendor.contact_uri());
    assert_eq!(
        uac.next_hop(),
        route_uri_addr(RR_INGRESS),
        "first stop: the proxy's customer face"
    );
    assert_eq!(
        ack.uri(),
        vendor.contact_uri(),
        "Request-URI = remote target"
    );
    assert_eq!(ack.routes(), [RR_INGRESS, RR_EGRESS]);
    assert_eq!(ack.cseq(), (1, "ACK".to_owned()), "the INVITE's number");
    assert_ne!(
        ack.branch(),
        invite.branch(),
        "a 2xx ACK is a new transaction"
    );
    assert_eq!(ack.to_tag(), answered.to_tag());
    assert_eq!(ack.from_tag(), invite.from_tag());
    assert_eq!(ack.max_forwards(), Some(70));
    // No proxy listens at the Record-Route addresses: deliver straight to the vendor.
    pbx.send_to(vendor.local(), &ack).await;
    let ack_at_vendor = vendor.recv_request("ACK").await;

    let uas = vendor.dialog_uas(&at_vendor, &ok);
    assert_eq!(uas.side, Side::Uas);
    assert_eq!(
        uas.route_set,
        [RR_EGRESS, RR_INGRESS],
        "Record-Route in order"
    );
    assert_eq!(uas.remote_target, pbx.contact_uri());
    assert_eq!(uas.call_id, uac.call_id);
    assert_eq!(uas.local_tag, uac.remote_tag);
    assert_eq!(uas.remote_tag, uac.local_tag);
    assert_eq!(ack_at_vendor.call_id(), uas.call_id);
    (uac, uas)
}

async fn call_and_bye(transport: Transport) {
    let (mut pbx, mut vendor) = pair(transport).await;

    // The caller hangs up.
    let (mut uac, _) = call(&mut pbx, &mut vendor).await;
    let bye = pbx.bye(&mut uac);
    assert_eq!(bye.uri(), vendor.contact_uri());
    assert_eq!(bye.routes(), [RR_INGRESS, RR_EGRESS]);
    assert_eq!(bye.cseq(), (2, "BYE".to_owned()));
    assert_eq!(bye.header("Content-Length"), Some("0"));
    pbx.send_to(vendor.local(), &bye).await;
    let at_vendor = vendor.recv_request("BYE").await;
    assert_eq!(at_vendor.to_tag(), Some(uac.remote_tag.as_str()));
    let ok = vendor.response_to(&at_vendor, 200);
    assert_eq!(
        ok.to_tag(),
        at_vendor.to_tag(),
        "an in-dialog request keeps its To tag"
    );
    assert!(
        ok.record_routes().is_empty(),
        "a BYE carries no Record-Route"
    );
    vendor.reply(&at_vendor, &ok).await;
    let done = pbx.recv_status(200).await;
    assert_eq!(done.cseq(), (2, "BYE".to_owned()));

    // Another call; the callee hangs up.
    let (_, mut uas) = call(&mut pbx, &mut vendor).await;
    let bye = vendor.bye(&mut uas);
    assert_eq!(
        bye.uri(),
        pbx.contact_uri(),
        "Request-URI = the caller's Contact"
    );
    assert_eq!(bye.routes(), [RR_EGRESS, RR_INGRESS]);
    assert_eq!(uas.next_hop(), route_uri_addr(RR_EGRESS));
    assert_eq!(
        bye.cseq(),
        (1, "BYE".to_owned()),
        "the callee's own CSeq space"
    );
    assert_eq!(bye.from_tag(), Some(uas.local_tag.as_str()));
    assert_eq!(bye.to_tag(), Some(uas.remote_tag.as_str()));
    vendor.send_to(pbx.local(), &bye).await;
    let at_pbx = pbx.recv_request("BYE").await;
    assert_eq!(at_pbx.raw(), bye.bytes());
    pbx.reply(&at_pbx, &pbx.response_to(&at_pbx, 200)).await;
    vendor.recv_status(200).await;

    pbx.expect_silence().await;
    vendor.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_call_follows_the_route_set_both_ways() {
    call_and_bye(Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_call_follows_the_route_set_both_ways_on_one_connection() {
    call_and_bye(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_peers_reuse_the_connection_and_open_one_when_none_exists() {
    let (pbx, vendor) = pair(Transport::Tcp).await;
    // The caller connected from its listening address, so the callee's requests to the
    // caller's Contact ride the same connection.
    tokio::task::yield_now().await;
    support::eventually("the accepted connection is registered", || {
        let found = vendor.connections() == [pbx.local()];
        async move { found.then_some(()) }
    })
    .await;
    assert_eq!(pbx.connections(), [vendor.local()]);

    // Two listening peers with no connection: the sender opens one from its own address,
    // and the answer comes back on it.
    let mut a = SipPeer::tcp_listen(any_port(host(21))).await;
    let mut b = SipPeer::tcp_listen(any_port(host(22))).await;
    let invite = a.invite(CALLEE, b.local());
    assert_eq!(
        invite.uri(),
        format!("sip:+15551234567@{};transport=tcp", b.local())
    );
    a.send(&invite).await;
    let at_b = b.recv_request("INVITE").await;
    assert_eq!(at_b.from, a.local());
    b.reply(&at_b, &b.response_to(&at_b, 486)).await;
    let busy = a.recv_status(486).await;
    assert_eq!(busy.from, b.local());
    assert_eq!(a.connections(), [b.local()]);
    assert_eq!(b.connections(), [a.local()]);
}

async fn cancel_flow(transport: Transport) {
    let (mut pbx, mut vendor) = pair(transport).await;
    let invite = pbx
        .invite(CALLEE, vendor.local())
        .with_all("Route", &["<sip:127.0.0.1:5060;lr>"]);
    pbx.send_to(vendor.local(), &invite).await;
    let at_vendor = vendor.recv_request("INVITE").await;
    vendor
        .reply(&at_vendor, &vendor.response_to(&at_vendor, 180))
        .await;
    pbx.recv_status(180).await;

    let cancel = pbx.cancel_for(&invite);
    assert_eq!(cancel.uri(), invite.uri());
    assert_eq!(
        cancel.vias(),
        [invite.vias()[0]],
        "the INVITE's top Via only"
    );
    assert_eq!(cancel.branch(), invite.branch());
    assert_eq!(cancel.cseq(), (1, "CANCEL".to_owned()));
    assert_eq!(cancel.call_id(), invite.call_id());
    assert_eq!(cancel.header("From"), invite.header("From"));
    assert_eq!(cancel.header("To"), invite.header("To"), "no To tag");
    assert_eq!(cancel.routes(), invite.routes());
    assert_eq!(cancel.body, "");
    pbx.send_to(vendor.local(), &cancel).await;

    let cancel_at_vendor = vendor.recv_request("CANCEL").await;
    let cancel_ok = vendor.response_to(&cancel_at_vendor, 200);
    assert_eq!(cancel_ok.cseq(), (1, "CANCEL".to_owned()));
    vendor.reply(&cancel_at_vendor, &cancel_ok).await;
    let terminated = vendor.response_to(&at_vendor, 487);
    assert!(terminated.record_routes().is_empty());
    vendor.reply(&at_vendor, &terminated).await;
    assert_eq!(pbx.recv_status(200).await.cseq_method(), "CANCEL");
    let final_response = pbx.recv_status(487).await;
    assert_eq!(final_response.cseq(), (1, "INVITE".to_owned()));

    let ack = pbx.ack_for_non2xx(&invite, &final_response);
    assert_eq!(ack.uri(), invite.uri());
    assert_eq!(
        ack.branch(),
        invite.branch(),
        "same transaction as the INVITE"
    );
    assert_eq!(ack.vias().len(), 1);
    assert_eq!(ack.cseq(), (1, "ACK".to_owned()));
    assert_eq!(ack.to_tag(), final_response.to_tag());
    assert_eq!(ack.routes(), invite.routes());
    pbx.send_to(vendor.local(), &ack).await;
    let ack_at_vendor = vendor.recv_request("ACK").await;
    assert_eq!(ack_at_vendor.to_tag(), terminated.to_tag());
    vendor.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_cancel_flow_has_the_right_shapes() {
    cancel_flow(Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_cancel_flow_has_the_right_shapes() {
    cancel_flow(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_helpers_return_what_they_passed_over_and_garbage_fails_loudly() {
    let mut vendor = SipPeer::udp(any_port(vendor_ip())).await;
    let pbx = SipPeer::udp(any_port(CUSTOMER_PBX)).await;
    let invite = pbx.invite(CALLEE, vendor.local());
    pbx.send(&invite).await;
    pbx.send(&invite).await;
    pbx.send(&pbx.cancel_for(&invite)).await;
    let (cancel, before) = vendor.wait_request("CANCEL").await;
    assert_eq!(cancel.branch(), invite.branch());
    assert_eq!(before.len(), 2, "both INVITEs handed back");
    assert!(before.iter().all(|r| r.method() == Some("INVITE")));

    pbx.send_to(vendor.local(), b"not sip\r\n\r\n").await;
    let fault = tokio::spawn(async move { vendor.recv().await }).await;
    assert!(fault.is_err(), "an unreadable message fails the test");
}
