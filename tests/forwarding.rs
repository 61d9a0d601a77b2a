//! Forwarding end to end (issue 4): a real edge in-process on loopback between a scripted
//! customer PBX and scripted vendors (`support::peer::SipPeer`), asserting what reaches each
//! of them on the wire. The last test runs the real binary to see SIGTERM drain.
//!
//! Addresses: the PBX is 127.0.0.10 (UDP and TCP), an unknown caller 127.0.0.11, vendors
//! 127.0.0.20-29 on port 0 (the bound port is written into the trunks file's gateways), the
//! edge listens on 127.0.0.1 and sends to vendors from the egress pool 127.0.1.1-3 (port 0;
//! `Edge::egress` has the bound addresses). The edge that runs as a binary uses 127.0.2.1.
//!
//! Waits only detect failure (5 s receive timeouts); nothing asserts on elapsed time. Tests
//! that need the edge's timers shorten them in `[proxy]` (`t1_ms`, `timer_b_ms`).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::peer::{uri_of, Dialog, Message, Received, SipPeer, SipUri, Transport, Via};
use support::{
    eventually, free_port, host, TempDir, TestEdge, TestEdgeBuilder, Trunks, CUSTOMER_PBX,
    UNKNOWN_CALLER,
};

/// The Record-Route token key every edge in these tests shares.
const DIALOG_KEY: &str = "forwarding-test-key-0123456789abcdef";
/// The number the PBX dials.
const CALLEE: &str = "sip:+15551234567@carrier.example";
const CALLEE_USER: &str = "+15551234567";
/// How many egress addresses the pool has.
const EGRESS_POOL: u8 = 3;

/// `127.0.1.<n>`: an egress address.
fn egress_ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, n))
}

/// The egress addresses the edge bound. The only use of `Edge::egress`, which arrives with
/// the forwarding code.
fn egress(edge: &TestEdge) -> Vec<SocketAddr> {
    edge.edge.egress.clone()
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

// === building the bench ===

/// Vendor `n` (0-9) on 127.0.0.(20+n), any port.
async fn vendor(n: u8, transport: Transport) -> SipPeer {
    let local = SocketAddr::new(host(20 + n), 0);
    let peer = match transport {
        Transport::Udp => SipPeer::udp(local).await,
        Transport::Tcp => SipPeer::tcp_listen(local).await,
    };
    peer.named(&format!("vendor{n}"))
}

/// The customer PBX on 127.0.0.10, reaching the edge over `transport`.
async fn pbx(edge: &TestEdge, transport: Transport) -> SipPeer {
    let peer = match transport {
        Transport::Udp => SipPeer::udp(SocketAddr::new(CUSTOMER_PBX, 0)).await,
        Transport::Tcp => SipPeer::tcp_connect(CUSTOMER_PBX, edge.tcp()).await,
    };
    peer.named("pbx")
}

/// The demo customer, one gateway per vendor (tried in the order given) in the route `demo`.
fn trunks_for(vendors: &[&SipPeer]) -> Trunks {
    let names: Vec<String> = (0..vendors.len()).map(|i| format!("vendor-{i}")).collect();
    let mut trunks = Trunks::demo();
    for (i, vendor) in vendors.iter().enumerate() {
        trunks = trunks.gateway(
            &names[i],
            vendor.local(),
            transport_name(vendor.transport()),
            i as u32,
        );
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    trunks.route("demo", &names)
}

/// An edge forwarding the demo customer's calls to `vendors` from the three-address pool.
fn forwarding_edge(vendors: &[&SipPeer]) -> TestEdgeBuilder {
    let pool = (1..=EGRESS_POOL)
        .map(|n| format!("\"{}:0\"", egress_ip(n)))
        .collect::<Vec<_>>()
        .join(", ");
    TestEdge::builder()
        .trunks(trunks_for(vendors))
        .proxy(&format!("egress = [{pool}]"))
        .proxy(&format!("dialog_key = \"{DIALOG_KEY}\""))
        .proxy("default_route = \"demo\"")
}

/// The listener the PBX talks to.
fn ingress(edge: &TestEdge, pbx: &SipPeer) -> SocketAddr {
    match pbx.transport() {
        Transport::Udp => edge.udp(),
        Transport::Tcp => edge.tcp(),
    }
}

fn route_addr(route: &str) -> SocketAddr {
    SipUri::parse(uri_of(route))
        .and_then(|u| u.socket_addr())
        .unwrap_or_else(|| panic!("route without an IP: {route}"))
}

fn route_transport(route: &str) -> Transport {
    SipUri::parse(uri_of(route))
        .unwrap_or_else(|| panic!("route URI: {route}"))
        .transport()
}

// === what each side must see ===

/// An INVITE on its way: as the PBX sent it, as the vendor got it, and the egress it left by.
struct Offer {
    invite: Message,
    at_vendor: Received,
    egress: SocketAddr,
}

/// The PBX sends `invite`; its first answer is the edge's 100; the vendor gets it forwarded.
async fn offer_invite(
    edge: &TestEdge,
    pbx: &mut SipPeer,
    vendor: &mut SipPeer,
    invite: Message,
) -> Offer {
    pbx.send_to(ingress(edge, pbx), &invite).await;
    let trying = pbx.recv_status(100).await;
    assert_relayed(edge, pbx, &trying, &invite);
    assert_eq!(trying.to_tag(), None, "the edge's 100 has no To tag");
    let at_vendor = vendor.recv_request("INVITE").await;
    let egress = assert_forwarded_invite(edge, pbx, vendor, &invite, &at_vendor);
    Offer {
        invite,
        at_vendor,
        egress,
    }
}

/// A new call from the PBX to [`CALLEE`].
async fn offer(edge: &TestEdge, pbx: &mut SipPeer, vendor: &mut SipPeer) -> Offer {
    let invite = pbx.invite(CALLEE, ingress(edge, pbx));
    offer_invite(edge, pbx, vendor, invite).await
}

/// The forwarded INVITE: the edge's Via on top from an egress address, Max-Forwards one less,
/// the Request-URI rewritten to the gateway, two Record-Route faces with `lr` and a token;
/// the rest as the PBX sent it. Returns the egress address.
fn assert_forwarded_invite(
    edge: &TestEdge,
    pbx: &SipPeer,
    vendor: &SipPeer,
    invite: &Message,
    at_vendor: &Received,
) -> SocketAddr {
    let pool = egress(edge);
    let vias = at_vendor.vias();
    assert_eq!(
        vias.len(),
        2,
        "the edge's Via over the PBX's:\n{at_vendor:?}"
    );
    let top = Via::parse(vias[0]).expect("the edge's Via");
    assert_eq!(top.transport, vendor.transport().via_token(), "{top:?}");
    let egress = top
        .sent_by_addr()
        .unwrap_or_else(|| panic!("Via sent-by is not ip:port: {top:?}"));
    assert!(
        pool.contains(&egress),
        "Via {egress} not in the pool {pool:?}"
    );
    let branch = top.branch.clone().unwrap_or_default();
    assert!(branch.starts_with("z9hG4bK"), "{top:?}");
    assert_ne!(Some(branch), invite.branch(), "the edge's own branch");
    assert!(top.param("rport").is_some(), "{top:?}");
    match vendor.transport() {
        Transport::Udp => assert_eq!(at_vendor.from, egress, "sent from the egress socket"),
        Transport::Tcp => assert_eq!(at_vendor.from.ip(), egress.ip(), "from the egress IP"),
    }
    let customer = Via::parse(vias[1]).expect("the PBX's Via");
    assert_eq!(customer.branch, invite.branch());
    assert_eq!(Some(customer.sent_by), invite.top_via().map(|v| v.sent_by));

    assert_eq!(
        at_vendor.max_forwards(),
        invite.max_forwards().map(|m| m - 1),
        "Max-Forwards decremented"
    );
    let target = SipUri::parse(at_vendor.uri()).expect("Request-URI");
    assert_eq!(target.user.as_deref(), Some(CALLEE_USER));
    assert_eq!(target.socket_addr(), Some(vendor.local()), "the gateway");

    let rr = at_vendor.record_routes();
    assert_eq!(rr.len(), 2, "egress face over ingress face: {rr:?}");
    for face in &rr {
        let uri = SipUri::parse(uri_of(face)).expect("Record-Route URI");
        assert!(uri.is_loose(), "{face}");
        assert!(!uri.param("wt").unwrap_or_default().is_empty(), "{face}");
    }
    assert_eq!(route_addr(rr[0]), egress, "top face is the egress");
    assert_eq!(route_transport(rr[0]), vendor.transport(), "{}", rr[0]);
    assert_eq!(route_addr(rr[1]), ingress(edge, pbx), "then the ingress");
    assert_eq!(route_transport(rr[1]), pbx.transport(), "{}", rr[1]);
    assert!(invite.record_routes().is_empty());

    for name in ["Call-ID", "From", "To", "CSeq", "Contact"] {
        assert_eq!(
            at_vendor.header(name),
            invite.header(name),
            "{name} unchanged"
        );
    }
    assert_eq!(at_vendor.body, invite.body, "body unchanged");
    egress
}

/// A response at the PBX: only the PBX's own Via left, from the listener it used.
fn assert_relayed(edge: &TestEdge, pbx: &SipPeer, response: &Received, request: &Message) {
    let vias = response.vias();
    assert_eq!(vias.len(), 1, "the edge's Via is gone:\n{response:?}");
    let via = Via::parse(vias[0]).expect("Via");
    assert_eq!(via.branch, request.branch());
    assert_eq!(Some(via.sent_by), request.top_via().map(|v| v.sent_by));
    assert_eq!(response.call_id(), request.call_id());
    if pbx.transport() == Transport::Udp {
        assert_eq!(
            response.from,
            ingress(edge, pbx),
            "answered from the listener"
        );
    }
}

/// Messages passed over while waiting, which may only be the edge's retransmissions of the
/// forwarded INVITE (its Timer A with a short T1).
fn assert_retransmissions(passed: &[Received], of: &Received) {
    for message in passed {
        assert_eq!(message.method(), Some("INVITE"), "unexpected:\n{message:?}");
        assert_eq!(message.branch(), of.branch(), "unexpected:\n{message:?}");
    }
}

/// The next `method` request at the vendor, allowing only retransmissions of `invite` before it.
async fn vendor_request(vendor: &mut SipPeer, method: &str, invite: &Received) -> Received {
    let (request, passed) = vendor.wait_request(method).await;
    assert_retransmissions(&passed, invite);
    request
}

/// The vendor rings and answers, the PBX ACKs along the route set. Returns the PBX's and the
/// vendor's dialog.
async fn answer(
    edge: &TestEdge,
    pbx: &mut SipPeer,
    vendor: &mut SipPeer,
    offer: &Offer,
) -> (Dialog, Dialog) {
    let at_vendor = &offer.at_vendor;
    vendor
        .reply(at_vendor, &vendor.response_to(at_vendor, 180))
        .await;
    let ringing = pbx.recv_status(180).await;
    assert_relayed(edge, pbx, &ringing, &offer.invite);

    let ok = vendor.answer_with_sdp(at_vendor);
    vendor.reply(at_vendor, &ok).await;
    let answered = pbx.recv_status(200).await;
    assert_relayed(edge, pbx, &answered, &offer.invite);
    let rr = at_vendor.record_routes();
    assert_eq!(answered.record_routes(), rr, "Record-Route relayed as is");
    assert_eq!(answered.contact_uri(), Some(vendor.contact_uri().as_str()));
    assert_eq!(answered.body, ok.body);

    let (ack, uac) = pbx.ack_for_2xx(&offer.invite, &answered);
    assert_eq!(ack.routes(), [rr[1], rr[0]], "ingress face first");
    assert_eq!(ack.uri(), vendor.contact_uri());
    assert_eq!(uac.next_hop(), ingress(edge, pbx));
    pbx.send_in(&uac, &ack).await;

    let ack_at_vendor = vendor_request(vendor, "ACK", at_vendor).await;
    assert_in_dialog_at_vendor(edge, vendor, &ack_at_vendor, &ack, offer.egress);

    let uas = vendor.dialog_uas(at_vendor, &ok);
    assert_eq!(
        uas.route_set, rr,
        "the vendor's route set: egress face first"
    );
    assert_eq!(uas.next_hop(), offer.egress);
    (uac, uas)
}

/// An in-dialog request from the PBX as the vendor gets it: both Route entries consumed,
/// the Request-URI the vendor's Contact, from the call's egress.
fn assert_in_dialog_at_vendor(
    edge: &TestEdge,
    vendor: &SipPeer,
    at_vendor: &Received,
    sent: &Message,
    egress_used: SocketAddr,
) {
    assert_eq!(at_vendor.uri(), vendor.contact_uri(), "{at_vendor:?}");
    assert!(
        at_vendor.routes().is_empty(),
        "Route consumed:\n{at_vendor:?}"
    );
    assert_eq!(at_vendor.call_id(), sent.call_id());
    assert_eq!(at_vendor.cseq(), sent.cseq());
    let vias = at_vendor.vias();
    assert_eq!(vias.len(), 2, "{at_vendor:?}");
    let top = Via::parse(vias[0]).expect("the edge's Via");
    assert!(
        top.branch
            .as_deref()
            .unwrap_or_default()
            .starts_with("z9hG4bK"),
        "{top:?}"
    );
    let pool = egress(edge);
    let source = top.sent_by_addr().expect("ip:port");
    assert!(pool.contains(&source), "{source} not in {pool:?}");
    assert_eq!(source, egress_used, "the dialog keeps its egress");
    assert_eq!(at_vendor.max_forwards(), sent.max_forwards().map(|m| m - 1));
}

/// The PBX hangs up; the vendor says 200.
async fn customer_hangs_up(
    edge: &TestEdge,
    pbx: &mut SipPeer,
    vendor: &mut SipPeer,
    uac: &mut Dialog,
    egress_used: SocketAddr,
) {
    let bye = pbx.bye(uac);
    pbx.send_in(uac, &bye).await;
    let at_vendor = vendor.recv_request("BYE").await;
    assert_in_dialog_at_vendor(edge, vendor, &at_vendor, &bye, egress_used);
    vendor
        .reply(&at_vendor, &vendor.response_to(&at_vendor, 200))
        .await;
    let done = pbx.recv_status(200).await;
    assert_eq!(done.cseq(), bye.cseq());
    assert_relayed(edge, pbx, &done, &bye);
}

/// The vendor hangs up through the egress face; the PBX says 200.
async fn vendor_hangs_up(
    edge: &TestEdge,
    pbx: &mut SipPeer,
    vendor: &mut SipPeer,
    uas: &mut Dialog,
) {
    let bye = vendor.bye(uas);
    assert_eq!(
        bye.routes(),
        uas.route_set,
        "egress face, then ingress face"
    );
    assert_eq!(bye.uri(), pbx.contact_uri());
    vendor.send_in(uas, &bye).await;
    let at_pbx = pbx.recv_request("BYE").await;
    assert_eq!(
        at_pbx.uri(),
        pbx.contact_uri(),
        "Request-URI = the PBX's Contact"
    );
    assert!(at_pbx.routes().is_empty(), "Route consumed:\n{at_pbx:?}");
    assert_eq!(at_pbx.vias().len(), 2, "the edge's Via over the vendor's");
    assert!(at_pbx.branch().unwrap_or_default().starts_with("z9hG4bK"));
    if pbx.transport() == Transport::Udp {
        assert_eq!(at_pbx.from, ingress(edge, pbx), "from the ingress face");
    }
    assert_eq!(at_pbx.max_forwards(), Some(69));
    pbx.reply(&at_pbx, &pbx.response_to(&at_pbx, 200)).await;
    let done = vendor.recv_status(200).await;
    // Only the vendor's own Via is left (the edge may have filled its rport).
    assert_eq!(done.vias().len(), 1, "{done:?}");
    assert_eq!(done.branch(), bye.branch());
    assert_eq!(done.cseq(), bye.cseq());
}

/// The vendor refuses with `code`; the edge ACKs it itself (hop by hop, the INVITE's branch).
async fn vendor_refuses(vendor: &mut SipPeer, offer_at_vendor: &Received, code: u16) -> Message {
    let refusal = vendor.response_to(offer_at_vendor, code);
    vendor.reply(offer_at_vendor, &refusal).await;
    let ack = vendor_request(vendor, "ACK", offer_at_vendor).await;
    assert_eq!(
        ack.branch(),
        offer_at_vendor.branch(),
        "the INVITE's transaction"
    );
    assert_eq!(ack.uri(), offer_at_vendor.uri());
    assert_eq!(ack.to_tag(), refusal.to_tag());
    assert_eq!(ack.cseq(), (offer_at_vendor.cseq().0, "ACK".to_owned()));
    assert_eq!(ack.from, offer_at_vendor.from);
    refusal
}

// === full calls ===

async fn full_call(customer: Transport, carrier: Transport, vendor_ends: bool) {
    let mut vendor = vendor(0, carrier).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut pbx = pbx(&edge, customer).await;

    let offer = offer(&edge, &mut pbx, &mut vendor).await;
    let (mut uac, mut uas) = answer(&edge, &mut pbx, &mut vendor, &offer).await;
    if vendor_ends {
        vendor_hangs_up(&edge, &mut pbx, &mut vendor, &mut uas).await;
    } else {
        customer_hangs_up(&edge, &mut pbx, &mut vendor, &mut uac, offer.egress).await;
    }
    pbx.expect_silence().await;
    vendor.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_call_over_udp_customer_hangs_up() {
    full_call(Transport::Udp, Transport::Udp, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_call_over_udp_vendor_hangs_up() {
    full_call(Transport::Udp, Transport::Udp, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_customer_to_udp_vendor_both_hang_ups() {
    full_call(Transport::Tcp, Transport::Udp, false).await;
    full_call(Transport::Tcp, Transport::Udp, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_customer_to_tcp_vendor_both_hang_ups() {
    full_call(Transport::Udp, Transport::Tcp, false).await;
    full_call(Transport::Udp, Transport::Tcp, true).await;
}

// === CANCEL ===

#[tokio::test(flavor = "multi_thread")]
async fn cancel_before_answer_relays_487_and_absorbs_the_customer_ack() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let offer = offer(&edge, &mut pbx, &mut vendor).await;
    let at_vendor = &offer.at_vendor;
    vendor
        .reply(at_vendor, &vendor.response_to(at_vendor, 180))
        .await;
    pbx.recv_status(180).await;

    let cancel = pbx.cancel_for(&offer.invite);
    pbx.send(&cancel).await;
    let cancel_ok = pbx.recv_status(200).await;
    assert_eq!(cancel_ok.cseq(), (1, "CANCEL".to_owned()));
    assert_relayed(&edge, &pbx, &cancel_ok, &cancel);

    let cancel_at_vendor = vendor.recv_request("CANCEL").await;
    assert_eq!(cancel_at_vendor.branch(), at_vendor.branch(), "same branch");
    assert_eq!(cancel_at_vendor.vias().len(), 1, "only the edge's Via");
    assert_eq!(cancel_at_vendor.uri(), at_vendor.uri());
    assert_eq!(cancel_at_vendor.cseq(), (1, "CANCEL".to_owned()));
    assert_eq!(cancel_at_vendor.from, at_vendor.from);
    vendor
        .reply(
            &cancel_at_vendor,
            &vendor.response_to(&cancel_at_vendor, 200),
        )
        .await;
    let terminated = vendor_refuses(&mut vendor, at_vendor, 487).await;

    let relayed = pbx.recv_status(487).await;
    assert_relayed(&edge, &pbx, &relayed, &offer.invite);
    assert_eq!(relayed.to_tag(), terminated.to_tag());
    pbx.send(&pbx.ack_for_non2xx(&offer.invite, &relayed)).await;

    // The customer's ACK stops at the edge, and the edge stops sending the 487.
    vendor.expect_silence().await;
    pbx.expect_silence().await;
}

// === failover ===

#[tokio::test(flavor = "multi_thread")]
async fn vendor_503_fails_over_and_the_call_completes_on_the_second_vendor() {
    let mut first = vendor(0, Transport::Udp).await;
    let mut second = vendor(1, Transport::Udp).await;
    let edge = forwarding_edge(&[&first, &second]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;

    let tried = offer(&edge, &mut pbx, &mut first).await;
    vendor_refuses(&mut first, &tried.at_vendor, 503).await;

    let at_second = second.recv_request("INVITE").await;
    let egress_used = assert_forwarded_invite(&edge, &pbx, &second, &tried.invite, &at_second);
    assert_ne!(
        at_second.branch(),
        tried.at_vendor.branch(),
        "a new client transaction"
    );
    assert_eq!(
        egress_used, tried.egress,
        "the Call-ID picks the egress, not the attempt"
    );
    let retry = Offer {
        invite: tried.invite.clone(),
        at_vendor: at_second,
        egress: egress_used,
    };
    // The PBX never sees the 503: its next answer is the second vendor's 180.
    let (mut uac, _) = answer(&edge, &mut pbx, &mut second, &retry).await;
    customer_hangs_up(&edge, &mut pbx, &mut second, &mut uac, egress_used).await;
    first.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_vendor_fails_over_after_timer_b() {
    let mut first = vendor(0, Transport::Udp).await;
    let mut second = vendor(1, Transport::Udp).await;
    let edge = forwarding_edge(&[&first, &second])
        .proxy("t1_ms = 50")
        .proxy("timer_b_ms = 1600")
        .start()
        .await;
    let mut pbx = pbx(&edge, Transport::Udp).await;

    let tried = offer(&edge, &mut pbx, &mut first).await;
    // The first vendor stays silent; after Timer B the second one gets the call.
    let at_second = second.recv_request("INVITE").await;
    let egress_used = assert_forwarded_invite(&edge, &pbx, &second, &tried.invite, &at_second);
    let retry = Offer {
        invite: tried.invite.clone(),
        at_vendor: at_second,
        egress: egress_used,
    };
    let (mut uac, _) = answer(&edge, &mut pbx, &mut second, &retry).await;
    customer_hangs_up(&edge, &mut pbx, &mut second, &mut uac, egress_used).await;

    // The first vendor saw the INVITE and its Timer A retransmissions, nothing else.
    let seen = first.drain();
    assert!(!seen.is_empty(), "retransmitted over UDP until Timer B");
    assert_retransmissions(&seen, &tried.at_vendor);
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_486_is_relayed_without_failover() {
    let mut first = vendor(0, Transport::Udp).await;
    let mut second = vendor(1, Transport::Udp).await;
    let edge = forwarding_edge(&[&first, &second]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;

    let tried = offer(&edge, &mut pbx, &mut first).await;
    let busy = vendor_refuses(&mut first, &tried.at_vendor, 486).await;
    let relayed = pbx.recv_status(486).await;
    assert_relayed(&edge, &pbx, &relayed, &tried.invite);
    assert_eq!(relayed.to_tag(), busy.to_tag());
    pbx.send(&pbx.ack_for_non2xx(&tried.invite, &relayed)).await;

    second.expect_silence().await;
    first.expect_silence().await;
}

/// Each vendor in turn refuses with its code; returns what the PBX gets.
async fn all_refuse(codes: &[u16]) -> u16 {
    let mut vendors = Vec::new();
    for n in 0..codes.len() {
        vendors.push(vendor(n as u8, Transport::Udp).await);
    }
    let refs: Vec<&SipPeer> = vendors.iter().collect();
    let edge = forwarding_edge(&refs).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;

    let invite = pbx.invite(CALLEE, edge.udp());
    pbx.send(&invite).await;
    pbx.recv_status(100).await;
    for (vendor, &code) in vendors.iter_mut().zip(codes) {
        let at_vendor = vendor.recv_request("INVITE").await;
        assert_forwarded_invite(&edge, &pbx, vendor, &invite, &at_vendor);
        vendor_refuses(vendor, &at_vendor, code).await;
    }
    let best = pbx.recv_response().await;
    assert_relayed(&edge, &pbx, &best, &invite);
    pbx.send(&pbx.ack_for_non2xx(&invite, &best)).await;
    for vendor in &mut vendors {
        vendor.expect_silence().await;
    }
    best.status()
}

#[tokio::test(flavor = "multi_thread")]
async fn all_gateways_failing_relays_the_best_response() {
    assert_eq!(all_refuse(&[503, 404]).await, 404, "4xx over 5xx");
    assert_eq!(all_refuse(&[503, 600]).await, 600, "6xx over 5xx");
    assert_eq!(all_refuse(&[408, 503]).await, 408, "the best, not the last");
}

// === retransmissions ===

#[tokio::test(flavor = "multi_thread")]
async fn udp_invite_retransmission_is_absorbed() {
    let mut vendor = vendor(0, Transport::Udp).await;
    // A long T1 keeps the edge's own Timer A quiet, so every INVITE the vendor sees
    // would be a forwarded retransmission.
    let edge = forwarding_edge(&[&vendor])
        .proxy("t1_ms = 2000")
        .proxy("t2_ms = 4000")
        .start()
        .await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let offer = offer(&edge, &mut pbx, &mut vendor).await;

    pbx.send(&offer.invite).await;
    let again = pbx.recv_status(100).await;
    assert_relayed(&edge, &pbx, &again, &offer.invite);

    let at_vendor = &offer.at_vendor;
    vendor
        .reply(at_vendor, &vendor.response_to(at_vendor, 180))
        .await;
    let ringing = pbx.recv_status(180).await;
    pbx.send(&offer.invite).await;
    let ringing_again = pbx.recv_status(180).await;
    assert_eq!(ringing_again.to_tag(), ringing.to_tag());

    vendor
        .reply(at_vendor, &vendor.response_to(at_vendor, 200))
        .await;
    let answered = pbx.recv_status(200).await;
    let (ack, uac) = pbx.ack_for_2xx(&offer.invite, &answered);
    pbx.send_in(&uac, &ack).await;
    // recv_request fails on anything else first: exactly one INVITE reached the vendor.
    vendor.recv_request("ACK").await;
    vendor.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_2xx_retransmission_is_forwarded_to_the_customer() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let offer = offer(&edge, &mut pbx, &mut vendor).await;

    let ok = vendor.response_to(&offer.at_vendor, 200);
    vendor.reply(&offer.at_vendor, &ok).await;
    let first = pbx.recv_status(200).await;
    vendor.reply(&offer.at_vendor, &ok).await;
    let second = pbx.recv_status(200).await;
    assert_eq!(
        second.raw(),
        first.raw(),
        "the retransmission relayed like the first"
    );
    assert_relayed(&edge, &pbx, &second, &offer.invite);

    let (ack, mut uac) = pbx.ack_for_2xx(&offer.invite, &first);
    pbx.send_in(&uac, &ack).await;
    vendor.recv_request("ACK").await;
    customer_hangs_up(&edge, &mut pbx, &mut vendor, &mut uac, offer.egress).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_100_is_never_relayed() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    // The PBX's first answer is the edge's own 100, before the vendor says anything.
    let offer = offer(&edge, &mut pbx, &mut vendor).await;

    vendor
        .reply(&offer.at_vendor, &vendor.response_to(&offer.at_vendor, 100))
        .await;
    // recv_status fails on a relayed 100 arriving first.
    let (mut uac, _) = answer(&edge, &mut pbx, &mut vendor, &offer).await;
    customer_hangs_up(&edge, &mut pbx, &mut vendor, &mut uac, offer.egress).await;
    pbx.expect_silence().await;
}

// === the egress pool ===

/// One call with `call_id` refused with 486 by the vendor: the egress it left by.
async fn egress_for(
    edge: &TestEdge,
    pbx: &mut SipPeer,
    vendor: &mut SipPeer,
    call_id: &str,
) -> SocketAddr {
    let uri = format!("sip:{CALLEE_USER}@{}", edge.udp());
    let invite = pbx.invite_with(&uri, CALLEE, call_id);
    let offer = offer_invite(edge, pbx, vendor, invite).await;
    vendor_refuses(vendor, &offer.at_vendor, 486).await;
    let busy = pbx.recv_status(486).await;
    pbx.send(&pbx.ack_for_non2xx(&offer.invite, &busy)).await;
    offer.egress
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_is_picked_by_call_id_hash_and_stays_stable() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let pool = egress(&edge);
    assert_eq!(pool.len(), usize::from(EGRESS_POOL));
    for (n, address) in pool.iter().enumerate() {
        assert_eq!(
            address.ip(),
            egress_ip(n as u8 + 1),
            "bound in config order"
        );
        assert_ne!(address.port(), 0, "the bound port, not 0");
    }

    let mut used = Vec::new();
    for n in 0..12 {
        let call_id = format!("egress-hash-{n}-{}@pbx.test", std::process::id());
        let first = egress_for(&edge, &mut pbx, &mut vendor, &call_id).await;
        let again = egress_for(&edge, &mut pbx, &mut vendor, &call_id).await;
        assert_eq!(again, first, "{call_id} left by another egress");
        used.push(first);
    }
    used.sort();
    used.dedup();
    // Twelve Call-IDs all hashing to one of three addresses: about 1 in 180,000.
    assert!(used.len() > 1, "every call left by {used:?}");
    vendor.expect_silence().await;
}

// === dialog tokens ===

#[tokio::test(flavor = "multi_thread")]
async fn forged_route_token_and_missing_route_get_403() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let offer = offer(&edge, &mut pbx, &mut vendor).await;
    let (mut uac, _) = answer(&edge, &mut pbx, &mut vendor, &offer).await;

    let bye = pbx.bye(&mut uac);
    let forged_routes: Vec<String> = bye
        .routes()
        .iter()
        .map(|r| r.replace("wt=", "wt=forged"))
        .collect();
    let forged_refs: Vec<&str> = forged_routes.iter().map(String::as_str).collect();
    let forged = bye.with_all("Route", &forged_refs);
    pbx.send_in(&uac, &forged).await;
    let refused = pbx.recv_status(403).await;
    assert_eq!(refused.cseq(), bye.cseq());
    assert_relayed(&edge, &pbx, &refused, &bye);

    let unrouted = bye.without("Route");
    pbx.send_in(&uac, &unrouted).await;
    let refused = pbx.recv_status(403).await;
    assert_eq!(refused.cseq(), bye.cseq());

    // The dialog still works with its real route set, and the vendor saw nothing before.
    customer_hangs_up(&edge, &mut pbx, &mut vendor, &mut uac, offer.egress).await;
    vendor.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_edge_with_the_same_key_routes_the_dialog() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let first = forwarding_edge(&[&vendor]).start().await;
    let second = forwarding_edge(&[&vendor]).start().await;
    assert_ne!(first.udp(), second.udp());
    let mut pbx = pbx(&first, Transport::Udp).await;
    let offer = offer(&first, &mut pbx, &mut vendor).await;
    let (mut uac, _) = answer(&first, &mut pbx, &mut vendor, &offer).await;

    // The first replica goes away; the BYE, Route still naming it, goes to the second.
    drop(first);
    let bye = pbx.bye(&mut uac);
    pbx.send_to(second.udp(), &bye).await;
    let at_vendor = vendor.recv_request("BYE").await;
    assert_eq!(at_vendor.uri(), vendor.contact_uri());
    assert!(at_vendor.routes().is_empty(), "{at_vendor:?}");
    let pool = egress(&second);
    assert!(
        pool.contains(&at_vendor.from),
        "{} not in the second edge's pool {pool:?}",
        at_vendor.from
    );
    vendor
        .reply(&at_vendor, &vendor.response_to(&at_vendor, 200))
        .await;
    let done = pbx.recv_status(200).await;
    assert_eq!(done.from, second.udp());
    assert_eq!(done.vias().len(), 1);
}

// === Max-Forwards ===

#[tokio::test(flavor = "multi_thread")]
async fn max_forwards_zero_gets_483_and_one_is_forwarded_as_zero() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut pbx = pbx(&edge, Transport::Udp).await;

    let spent = pbx
        .invite(CALLEE, edge.udp())
        .with_header("Max-Forwards", "0");
    pbx.send(&spent).await;
    let (too_many, passed) = pbx.wait_status(483).await;
    assert!(
        passed.iter().all(|r| r.code() == Some(100)),
        "only a 100 may come first: {passed:?}"
    );
    assert_eq!(too_many.call_id(), spent.call_id());
    pbx.send(&pbx.ack_for_non2xx(&spent, &too_many)).await;

    let last_hop = pbx
        .invite(CALLEE, edge.udp())
        .with_header("Max-Forwards", "1");
    let offer = offer_invite(&edge, &mut pbx, &mut vendor, last_hop).await;
    assert_eq!(offer.at_vendor.max_forwards(), Some(0));
    vendor_refuses(&mut vendor, &offer.at_vendor, 486).await;
    let busy = pbx.recv_status(486).await;
    pbx.send(&pbx.ack_for_non2xx(&offer.invite, &busy)).await;
    vendor.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_caller_is_refused_and_nothing_is_forwarded() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let edge = forwarding_edge(&[&vendor]).start().await;
    let mut caller = SipPeer::udp(SocketAddr::new(UNKNOWN_CALLER, 0)).await;
    let invite = caller.invite(CALLEE, edge.udp());
    caller.send(&invite).await;
    let refused = caller.recv_status(403).await;
    caller.send(&caller.ack_for_non2xx(&invite, &refused)).await;
    vendor.expect_silence().await;
    caller.expect_silence().await;
}

// === SIGTERM drain, with the real binary ===

/// The binary's process, killed if the test ends early.
struct Running {
    child: Child,
    log: std::path::PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Running {
    /// Polls `/readyz` until it says 200; fails at once if the process exits first (a
    /// config it refuses, say) and after [`support::POLL_LIMIT`] otherwise.
    async fn wait_ready(&mut self, admin: SocketAddr) {
        let deadline = tokio::time::Instant::now() + support::POLL_LIMIT;
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait for warp-edge") {
                panic!("warp-edge exited with {exit} before ready:\n{}", self.log());
            }
            if readyz(admin).await == Some(200) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "warp-edge not ready after {:?}:\n{}",
                support::POLL_LIMIT,
                self.log()
            );
            tokio::time::sleep(support::POLL_STEP).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `/readyz` status, or `None` while nothing answers.
async fn readyz(admin: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_refuses_new_calls_drains_the_ringing_one_and_exits_0() {
    const DRAIN_SECS: u64 = 3;
    let binary_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
    let listener = SocketAddr::new(binary_ip, free_port(binary_ip));
    let admin = SocketAddr::new(binary_ip, free_port(binary_ip));

    let mut vendor = vendor(9, Transport::Udp).await;
    let builder = forwarding_edge(&[&vendor])
        .udp(listener)
        .tcp(listener)
        .proxy(&format!("drain_secs = {DRAIN_SECS}"));
    let default_admin = "[admin]\naddress = \"127.0.0.1:0\"";
    let config = builder.config_text();
    assert!(config.contains(default_admin), "{config}");
    let config = config.replace(default_admin, &format!("[admin]\naddress = \"{admin}\""));
    let dir = TempDir::new("drain");
    dir.write("trunks.toml", builder.trunks_text());
    let file = dir.write("warp-edge.toml", &config);
    let log = dir.write("warp-edge.log", "");
    let output = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_warp-edge"))
        .args(["run", "--config"])
        .arg(&file)
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(output.try_clone().expect("log file")))
        .stderr(Stdio::from(output))
        .spawn()
        .expect("spawn warp-edge run");
    let mut running = Running { child, log };
    running.wait_ready(admin).await;

    // A call rings.
    let mut pbx = SipPeer::udp(SocketAddr::new(CUSTOMER_PBX, 0))
        .await
        .named("pbx");
    let invite = pbx.invite(CALLEE, listener);
    pbx.send(&invite).await;
    pbx.recv_status(100).await;
    let at_vendor = vendor.recv_request("INVITE").await;
    vendor
        .reply(&at_vendor, &vendor.response_to(&at_vendor, 180))
        .await;
    pbx.recv_status(180).await;

    let pid = running.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
    // Draining shows as not ready; the process must still be there.
    eventually("the binary reports draining on /readyz", || async {
        (readyz(admin).await != Some(200)).then_some(())
    })
    .await;
    assert!(
        matches!(running.child.try_wait(), Ok(None)),
        "exited at once instead of draining:\n{}",
        running.log()
    );

    // A new call is refused with 503 and Retry-After; the vendor never sees it.
    let refused_invite = pbx.invite(CALLEE, listener);
    pbx.send(&refused_invite).await;
    let (refused, passed) = pbx.wait_status(503).await;
    assert!(
        passed
            .iter()
            .all(|r| r.code() == Some(100) && r.call_id() == refused_invite.call_id()),
        "only a 100 for the new call may come first: {passed:?}"
    );
    assert_eq!(refused.call_id(), refused_invite.call_id());
    assert!(refused.header("Retry-After").is_some(), "{refused:?}");
    pbx.send(&pbx.ack_for_non2xx(&refused_invite, &refused))
        .await;

    // The ringing call still completes: 200, ACK, BYE, 200.
    let ok = vendor.response_to(&at_vendor, 200);
    vendor.reply(&at_vendor, &ok).await;
    let answered = pbx.recv_status(200).await;
    assert_eq!(answered.call_id(), invite.call_id());
    let (ack, mut uac) = pbx.ack_for_2xx(&invite, &answered);
    pbx.send_in(&uac, &ack).await;
    vendor.recv_request("ACK").await;
    let bye = pbx.bye(&mut uac);
    pbx.send_in(&uac, &bye).await;
    let bye_at_vendor = vendor.recv_request("BYE").await;
    vendor
        .reply(&bye_at_vendor, &vendor.response_to(&bye_at_vendor, 200))
        .await;
    assert_eq!(pbx.recv_status(200).await.cseq(), bye.cseq());

    // It exits 0 by the end of the drain (a bounded wait, not a measurement).
    let limit = Duration::from_secs(DRAIN_SECS + 7);
    let deadline = std::time::Instant::now() + limit;
    let exit = loop {
        if let Some(exit) = running.child.try_wait().expect("wait for warp-edge") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running {limit:?} after SIGTERM:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0), "{}", running.log());
}

// === gateway health, TCP connect failure, number rewriting, metrics ===

use warp_edge::telemetry::names::{
    CALLS_TOTAL, DIALOG_REQUESTS_TOTAL, EGRESS_CALLS_TOTAL, GATEWAY_ATTEMPTS_TOTAL,
    GATEWAY_FAILOVERS_TOTAL, GATEWAY_PROBES_TOTAL, GATEWAY_RESPONSES_TOTAL, GATEWAY_UP,
};

/// An edge with one egress address (127.0.1.1) routing the demo customer by `trunks`.
async fn single_egress_edge(trunks: Trunks, extra: &[&str]) -> TestEdge {
    let mut builder = TestEdge::builder()
        .trunks(trunks)
        .proxy("egress = [\"127.0.1.1:0\"]")
        .proxy(&format!("dialog_key = \"{DIALOG_KEY}\""))
        .proxy("default_route = \"demo\"");
    for line in extra {
        builder = match line.strip_prefix("probe.") {
            Some(probe) => builder.proxy_probe(probe),
            None => builder.proxy(line),
        };
    }
    builder.start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_connect_failure_fails_over_and_counts_against_the_gateway() {
    // Gateway 0 is TCP on a port nobody listens on; gateway 1 is a real UDP vendor.
    let closed = SocketAddr::new(host(22), free_port(host(22)));
    let mut second = vendor(1, Transport::Udp).await;
    let trunks = Trunks::demo()
        .gateway("dead-tcp", closed, "tcp", 0)
        .gateway("vendor-1", second.local(), "udp", 1)
        .route("demo", &["dead-tcp", "vendor-1"]);
    let edge = single_egress_edge(trunks, &[]).await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let invite = pbx.invite(CALLEE, ingress(&edge, &pbx));
    pbx.send_to(ingress(&edge, &pbx), &invite).await;
    pbx.recv_status(100).await;
    let at_second = second.recv_request("INVITE").await;
    let retry = Offer {
        egress: assert_forwarded_invite(&edge, &pbx, &second, &invite, &at_second),
        invite,
        at_vendor: at_second,
    };
    let (mut uac, _) = answer(&edge, &mut pbx, &mut second, &retry).await;
    customer_hangs_up(&edge, &mut pbx, &mut second, &mut uac, retry.egress).await;

    let scrape = edge.metrics().await;
    let gw = |name: &'static str| [("gateway", name)];
    assert_eq!(scrape.counter(GATEWAY_ATTEMPTS_TOTAL, &gw("dead-tcp")), 1);
    assert_eq!(scrape.counter(GATEWAY_FAILOVERS_TOTAL, &gw("dead-tcp")), 1);
    assert_eq!(
        scrape.counter(
            GATEWAY_RESPONSES_TOTAL,
            &[("gateway", "dead-tcp"), ("code", "408")]
        ),
        1,
        "a failed connect counts as a 408"
    );
    assert_eq!(scrape.counter(GATEWAY_ATTEMPTS_TOTAL, &gw("vendor-1")), 1);
    assert_eq!(
        scrape.counter(
            GATEWAY_RESPONSES_TOTAL,
            &[("gateway", "vendor-1"), ("code", "200")]
        ),
        1
    );
    let calls = |outcome: &'static str| {
        scrape.counter(
            CALLS_TOTAL,
            &[("customer", support::DEMO_BAN), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (calls("attempted"), calls("answered"), calls("failed")),
        (1, 1, 0)
    );
    assert_eq!(
        scrape.counter(DIALOG_REQUESTS_TOTAL, &[("direction", "customer")]),
        2,
        "the ACK and the BYE"
    );
    let egress_label = egress(&edge)[0].to_string();
    assert_eq!(
        scrape.counter(EGRESS_CALLS_TOTAL, &[("egress", egress_label.as_str())]),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probing_marks_a_silent_gateway_down_and_calls_skip_it() {
    let mut silent = vendor(0, Transport::Udp).await;
    let mut healthy = vendor(1, Transport::Udp).await;
    let trunks = Trunks::demo()
        .gateway_with(
            "silent",
            silent.local(),
            "udp",
            "priority = 0\nprobe = true",
        )
        .gateway_with(
            "healthy",
            healthy.local(),
            "udp",
            "priority = 1\nprobe = true",
        )
        .route("demo", &["silent", "healthy"]);
    let edge = single_egress_edge(
        trunks,
        &[
            "probe.interval_ms = 100",
            "probe.timeout_ms = 100",
            "probe.down_after = 2",
        ],
    )
    .await;
    // The healthy vendor answers every probe, and refuses the call with 486 so the PBX can
    // tell who got it; the silent one never answers anything.
    let responder = tokio::spawn(async move {
        loop {
            let request = healthy.recv().await;
            match request.method() {
                Some("OPTIONS") => {
                    healthy
                        .reply(&request, &healthy.response_to(&request, 200))
                        .await;
                }
                Some("INVITE") => {
                    healthy
                        .reply(&request, &healthy.response_to(&request, 486))
                        .await;
                    return healthy;
                }
                _ => {}
            }
        }
    });
    eventually("the silent gateway is marked down", || async {
        let scrape = edge.metrics().await;
        (scrape.counter(GATEWAY_UP, &[("gateway", "silent")]) == 0
            && scrape.counter(
                GATEWAY_PROBES_TOTAL,
                &[("gateway", "healthy"), ("outcome", "up")],
            ) > 0)
            .then_some(())
    })
    .await;
    let scrape = edge.metrics().await;
    assert_eq!(scrape.counter(GATEWAY_UP, &[("gateway", "healthy")]), 1);
    assert!(
        scrape.counter(
            GATEWAY_PROBES_TOTAL,
            &[("gateway", "silent"), ("outcome", "down")]
        ) >= 2
    );

    // A call now skips the down gateway and goes straight to the healthy one.
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let invite = pbx.invite(CALLEE, ingress(&edge, &pbx));
    pbx.send_to(ingress(&edge, &pbx), &invite).await;
    pbx.recv_status(100).await;
    pbx.recv_status(486).await;
    support::within("the healthy vendor's task", responder)
        .await
        .expect("responder");
    assert!(
        silent.drain().iter().all(|r| r.method() == Some("OPTIONS")),
        "the down gateway got probes only, never the INVITE"
    );
    assert_eq!(
        edge.metrics()
            .await
            .counter(GATEWAY_ATTEMPTS_TOTAL, &[("gateway", "silent")]),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_strip_and_prefix_rewrite_the_number() {
    let mut vendor = vendor(0, Transport::Udp).await;
    let trunks = Trunks::demo()
        .gateway_with(
            "rewriting",
            vendor.local(),
            "udp",
            "strip = 2\nprefix = \"00\"",
        )
        .route("demo", &["rewriting"]);
    let edge = single_egress_edge(trunks, &[]).await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let invite = pbx.invite(CALLEE, ingress(&edge, &pbx));
    pbx.send_to(ingress(&edge, &pbx), &invite).await;
    pbx.recv_status(100).await;
    let at_vendor = vendor.recv_request("INVITE").await;
    let target = SipUri::parse(at_vendor.uri()).expect("Request-URI");
    assert_eq!(
        target.user.as_deref(),
        Some("005551234567"),
        "+1 stripped, 00 added"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_named_by_dns_is_resolved() {
    // `localhost` resolves to 127.0.0.1 (IPv4 is preferred when a name has both families).
    let mut vendor = SipPeer::udp(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .named("vendor-dns");
    let trunks = Trunks::demo()
        .gateway_by_name("by-name", "localhost", vendor.local().port())
        .route("demo", &["by-name"]);
    let edge = single_egress_edge(trunks, &[]).await;
    let mut pbx = pbx(&edge, Transport::Udp).await;
    let invite = pbx.invite(CALLEE, ingress(&edge, &pbx));
    pbx.send_to(ingress(&edge, &pbx), &invite).await;
    pbx.recv_status(100).await;
    let at_vendor = vendor.recv_request("INVITE").await;
    let target = SipUri::parse(at_vendor.uri()).expect("Request-URI");
    assert_eq!(
        target.host, "localhost",
        "the Request-URI names the gateway as configured"
    );
}
