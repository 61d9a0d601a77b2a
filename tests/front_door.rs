//! The front door end to end: a real edge in-process on loopback (port 0, its own temp dir),
//! real UDP and TCP sockets on different loopback addresses standing for different hosts, the
//! admin endpoint scraped over HTTP, and the binary for `check` and `acl explain`.
//!
//! Addresses: the customer PBX is 127.0.0.10, an unknown caller 127.0.0.11, other callers
//! 127.0.0.12-19; the edge listens on 127.0.0.1 and, for the premium customer, 127.0.0.2.
//! Waits only detect failure (5 s receive timeouts, 10 s polls); nothing asserts on time.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{
    eventually, host, Request, Response, TempDir, TestEdge, TestPbx, Trunks, CUSTOMER_PBX,
    DEDICATED_INGRESS, DEMO_BAN, SHARED_INGRESS, UNKNOWN_CALLER,
};
use warp_edge::config::{Config, ListenerTransport, EXIT_CONFIG};
use warp_edge::proxy::ALLOW;
use warp_edge::telemetry::names::{
    ACL_CUSTOMER_DECISIONS_TOTAL, ACL_DECISIONS_TOTAL, ACL_ENTRIES, ACL_RELOADS_TOTAL,
    SIP_DROPPED_TOTAL, SIP_KEEPALIVE_PONGS_TOTAL, SIP_PARSE_ERRORS_TOTAL,
    SIP_REQUESTS_RECEIVED_TOTAL, SIP_RESPONSES_SENT_TOTAL, TCP_CONNECTIONS_CLOSED_MALFORMED_TOTAL,
    TCP_CONNECTIONS_TOTAL,
};

/// The premium customer that owns the dedicated ingress IP.
const PREMIUM_BAN: &str = "200002";

fn allow_header() -> &'static str {
    std::str::from_utf8(ALLOW).expect("Allow is ASCII")
}

fn assert_status(response: &Response, code: u16) {
    assert_eq!(response.code, code, "got {}", response.text);
}

/// The two `acl_decisions_total` labels.
fn decision<'a>(result: &'a str, reason: &'a str) -> [(&'a str, &'a str); 2] {
    [("result", result), ("reason", reason)]
}

fn customer<'a>(ban: &'a str, result: &'a str) -> [(&'a str, &'a str); 2] {
    [("ban", ban), ("result", result)]
}

// === who may call ===

#[tokio::test(flavor = "multi_thread")]
async fn known_source_options_gets_200_with_allow_and_accept() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;

    let response = pbx.request(&Request::options()).await;

    assert_status(&response, 200);
    assert_eq!(response.reason, "OK");
    assert_eq!(response.header("Allow"), Some(allow_header()));
    assert_eq!(response.header("Accept"), Some("application/sdp"));
    assert!(response.to_tag().is_some(), "{}", response.text);
    assert_eq!(response.header("Content-Length"), Some("0"));
    // The top Via records where the request really came from.
    let via = response.header("Via").expect("Via copied");
    assert!(via.contains("received=127.0.0.10"), "{via}");
    assert!(
        via.contains(&format!("rport={}", pbx.local().port())),
        "{via}"
    );
    assert_eq!(
        response.from,
        edge.udp(),
        "answered from the listener's address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_source_gets_403_for_invite_options_and_register() {
    let edge = TestEdge::builder().start().await;
    let mut caller = TestPbx::udp(UNKNOWN_CALLER, edge.udp()).await;

    for request in [Request::invite(), Request::options(), Request::register()] {
        // The first answer is the 403: no 100 Trying for a caller the edge does not know.
        let response = caller.request(&request).await;
        assert_status(&response, 403);
        assert_eq!(response.reason, "Forbidden", "no detail unless configured");
        assert!(response.to_tag().is_some(), "{}", response.text);
        assert_eq!(response.header("Allow"), None, "a 403 reveals nothing");
    }
    // An ACK is never answered, not even with a 403.
    caller
        .send(&Request::new("ACK", "sip:+15551234567@127.0.0.1"))
        .await;
    // ... and nothing came after the 403s either.
    caller.assert_nothing_pending().await;

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "unknown_source")),
        5,
        "three requests, the ACK and the probe"
    );
    assert_eq!(
        metrics.counter(SIP_RESPONSES_SENT_TOTAL, &[("code", "403")]),
        4
    );
    assert_eq!(
        metrics.counter(SIP_RESPONSES_SENT_TOTAL, &[("code", "100")]),
        0
    );
    assert_eq!(
        metrics.counter(SIP_DROPPED_TOTAL, &[("reason", "absorbed_ack")]),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_action_drop_sends_nothing_and_deny_reason_can_be_shown() {
    let silent = TestEdge::builder()
        .acl("deny_action = \"drop\"")
        .start()
        .await;
    let mut caller = TestPbx::udp(UNKNOWN_CALLER, silent.udp()).await;
    caller.send(&Request::invite()).await;
    // The probe is dropped as well; the PBX on the list proves the edge is answering.
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, silent.udp()).await;
    assert_status(&pbx.request(&Request::options()).await, 200);
    let metrics = silent.metrics().await;
    assert_eq!(
        metrics.counter(SIP_DROPPED_TOTAL, &[("reason", "denied")]),
        1
    );
    assert_eq!(
        metrics.counter(SIP_RESPONSES_SENT_TOTAL, &[("code", "403")]),
        0
    );

    let telling = TestEdge::builder()
        .acl("deny_reason_in_reply = true")
        .start()
        .await;
    let mut caller = TestPbx::udp(UNKNOWN_CALLER, telling.udp()).await;
    let response = caller.request(&Request::options()).await;
    assert_status(&response, 403);
    assert_eq!(response.reason, "Forbidden (unknown_source)");
}

#[tokio::test(flavor = "multi_thread")]
async fn register_from_known_source_gets_405_with_allow() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;

    let response = pbx.request(&Request::register()).await;

    assert_status(&response, 405);
    assert_eq!(response.reason, "Method Not Allowed");
    assert_eq!(response.header("Allow"), Some(allow_header()));
    assert!(!allow_header().contains("REGISTER"));
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_invite_gets_100_then_503_with_retry_after() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;
    let invite = Request::invite();

    let trying = pbx.request(&invite).await;
    let refusal = pbx.recv().await;

    assert_status(&trying, 100);
    assert_eq!(trying.to_tag(), None, "a 100 never carries a To-tag");
    assert_status(&refusal, 503);
    assert_eq!(refusal.call_id(), invite.call_id());
    assert_eq!(refusal.header("Retry-After"), Some("30"));
    assert!(refusal.to_tag().is_some(), "{}", refusal.text);
    assert_eq!(refusal.header("CSeq"), Some("1 INVITE"));
    pbx.assert_nothing_pending().await;

    // A retransmission gets the same To-tag, so the answers stay one dialog's.
    pbx.send(&invite).await;
    let again = [pbx.recv().await, pbx.recv().await];
    assert_eq!(again[1].to_tag(), refusal.to_tag());
}

#[tokio::test(flavor = "multi_thread")]
async fn cidr_entry_admits_every_host_it_covers() {
    let trunks = Trunks::demo().trunk_ip(1, "127.0.0.16/28");
    let edge = TestEdge::with_trunks(trunks).await;

    for inside in [16, 17, 19] {
        let mut pbx = TestPbx::udp(host(inside), edge.udp()).await;
        assert_status(&pbx.request(&Request::options()).await, 200);
    }
    for outside in [12, 15] {
        let mut pbx = TestPbx::udp(host(outside), edge.udp()).await;
        assert_status(&pbx.request(&Request::options()).await, 403);
    }

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("allow", "source_ip")),
        3
    );
    assert_eq!(
        metrics.counter(ACL_CUSTOMER_DECISIONS_TOTAL, &customer(DEMO_BAN, "allow")),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn more_specific_rule_wins_for_a_suspended_customer_inside_an_active_range() {
    // 127.0.0.0/24 belongs to an active customer; 127.0.0.15 to a suspended one.
    let trunks = Trunks::new()
        .customer("500001", "active")
        .customer("500002", "suspended")
        .trunk_group(1, "500001", true)
        .trunk_group(2, "500002", true)
        .trunk_ip(1, "127.0.0.0/24")
        .trunk_ip(2, "127.0.0.15");
    let edge = TestEdge::with_trunks(trunks).await;

    let mut suspended = TestPbx::udp(host(15), edge.udp()).await;
    let mut active = TestPbx::udp(host(16), edge.udp()).await;
    assert_status(&suspended.request(&Request::options()).await, 403);
    assert_status(&active.request(&Request::options()).await, 200);

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "customer_suspended")),
        1
    );
    assert_eq!(
        metrics.counter(ACL_CUSTOMER_DECISIONS_TOTAL, &customer("500001", "allow")),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn more_specific_rule_wins_for_a_disabled_trunk_inside_an_active_range() {
    // The /32 sits on a disabled trunk group of the same customer: no fallback to the /24.
    let trunks = Trunks::new()
        .customer(DEMO_BAN, "active")
        .trunk_group(1, DEMO_BAN, true)
        .trunk_group(2, DEMO_BAN, false)
        .trunk_ip(1, "127.0.0.0/24")
        .trunk_ip(2, "127.0.0.14/32");
    let edge = TestEdge::with_trunks(trunks).await;

    let mut disabled = TestPbx::udp(host(14), edge.udp()).await;
    let mut enabled = TestPbx::udp(host(13), edge.udp()).await;
    assert_status(&disabled.request(&Request::invite()).await, 403);
    disabled.assert_nothing_pending().await;
    assert_status(&enabled.request(&Request::options()).await, 200);

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "trunk_disabled")),
        2,
        "the INVITE and the probe"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn more_specific_rule_wins_for_an_active_host_inside_a_suspended_range() {
    let trunks = Trunks::new()
        .customer("500001", "suspended")
        .customer("500002", "active")
        .trunk_group(1, "500001", true)
        .trunk_group(2, "500002", true)
        .trunk_ip(1, "127.0.0.0/24")
        .trunk_ip(2, "127.0.0.15/32");
    let edge = TestEdge::with_trunks(trunks).await;

    let mut active = TestPbx::udp(host(15), edge.udp()).await;
    let mut suspended = TestPbx::udp(host(16), edge.udp()).await;
    assert_status(&active.request(&Request::options()).await, 200);
    assert_status(&suspended.request(&Request::options()).await, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn port_restricted_entry_admits_only_its_source_port() {
    // Bind the allowed client first: its port goes into the trunks file.
    let mut allowed = TestPbx::udp(host(14), SocketAddr::from(([127, 0, 0, 1], 9))).await;
    let port = allowed.local().port();
    let trunks = Trunks::demo().trunk_ip_with(1, "127.0.0.14", port, "any");
    let edge = TestEdge::with_trunks(trunks).await;
    allowed.retarget(edge.udp());
    let mut other_port = TestPbx::udp(host(14), edge.udp()).await;
    assert_ne!(other_port.local().port(), port);

    assert_status(&allowed.request(&Request::options()).await, 200);
    assert_status(&other_port.request(&Request::options()).await, 403);

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "unknown_source")),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proto_restricted_entry_admits_only_its_transport() {
    let trunks = Trunks::demo().trunk_ip_with(1, "127.0.0.12", 0, "tcp");
    let edge = TestEdge::with_trunks(trunks).await;

    let mut over_tcp = TestPbx::tcp(host(12), edge.tcp()).await;
    let mut over_udp = TestPbx::udp(host(12), edge.udp()).await;
    assert_status(&over_tcp.request(&Request::options()).await, 200);
    assert_status(&over_tcp.request(&Request::invite()).await, 100);
    assert_status(&over_tcp.recv().await, 503);
    assert_status(&over_udp.request(&Request::options()).await, 403);

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(
            ACL_DECISIONS_TOTAL,
            &decision("deny", "transport_not_allowed")
        ),
        1
    );
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("allow", "source_ip")),
        2
    );
    assert_eq!(
        metrics.counter(
            SIP_REQUESTS_RECEIVED_TOTAL,
            &[("method", "OPTIONS"), ("transport", "tcp")]
        ),
        1
    );
}

// === dedicated ingress IPs ===

fn premium_trunks() -> Trunks {
    Trunks::demo()
        .customer(PREMIUM_BAN, "active")
        .dedicated_ip(DEDICATED_INGRESS, PREMIUM_BAN)
}

/// 127.0.0.13 is in no ACL: dialling the dedicated IP makes it the premium customer, dialling
/// the shared one gets 403. Each answer comes from the address that was dialled.
async fn dedicated_ip_identifies_the_customer(edge: TestEdge) {
    let dedicated = edge.udp_at(DEDICATED_INGRESS);
    let shared = edge.udp_at(SHARED_INGRESS);
    let mut caller = TestPbx::udp(host(13), dedicated).await;

    let welcome = caller.request(&Request::options()).await;
    assert_status(&welcome, 200);
    assert_eq!(welcome.from, dedicated, "answered from the dedicated IP");

    caller.send_to(shared, &Request::options()).await;
    let refusal = caller.recv().await;
    assert_status(&refusal, 403);
    assert_eq!(refusal.from, shared, "answered from the shared IP");

    let invite = caller.request(&Request::invite()).await;
    assert_status(&invite, 100);
    assert_eq!(invite.from, dedicated);
    assert_status(&caller.recv().await, 503);

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("allow", "dedicated_ip")),
        2
    );
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "unknown_source")),
        1
    );
    assert_eq!(
        metrics.counter(
            ACL_CUSTOMER_DECISIONS_TOTAL,
            &customer(PREMIUM_BAN, "allow")
        ),
        2
    );
    assert_eq!(
        metrics.counter(ACL_CUSTOMER_DECISIONS_TOTAL, &customer(DEMO_BAN, "allow")),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dedicated_ip_listener_identifies_the_customer() {
    let edge = TestEdge::builder()
        .udp(SocketAddr::new(SHARED_INGRESS, 0))
        .udp(SocketAddr::new(DEDICATED_INGRESS, 0))
        .trunks(premium_trunks())
        .start()
        .await;
    dedicated_ip_identifies_the_customer(edge).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dedicated_ip_on_a_wildcard_listener_identifies_the_customer() {
    // One socket on 0.0.0.0: the destination IP comes from IP_PKTINFO, and the answer is sent
    // from it.
    let edge = TestEdge::builder()
        .udp_advertised(SocketAddr::from(([0, 0, 0, 0], 0)), "127.0.0.1")
        .trunks(premium_trunks())
        .start()
        .await;
    assert!(edge.udp().ip().is_unspecified());
    dedicated_ip_identifies_the_customer(edge).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dedicated_ip_on_a_dual_stack_wildcard_listener_identifies_the_customer() {
    // IPv4 packets on an IPv6 socket: their destination arrives as a v4-mapped address.
    let edge = TestEdge::builder()
        .udp_advertised(SocketAddr::from(([0u16; 8], 0)), "127.0.0.1")
        .trunks(premium_trunks())
        .start()
        .await;
    dedicated_ip_identifies_the_customer(edge).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_customer_is_refused_by_source_and_by_dedicated_ip() {
    let trunks = Trunks::demo()
        .customer("300003", "suspended")
        .trunk_group(3, "300003", true)
        .trunk_ip(3, "127.0.0.12")
        .dedicated_ip(DEDICATED_INGRESS, "300003");
    let edge = TestEdge::builder()
        .udp(SocketAddr::new(SHARED_INGRESS, 0))
        .udp(SocketAddr::new(DEDICATED_INGRESS, 0))
        .trunks(trunks)
        .start()
        .await;

    // Its own trunk, on the shared IP.
    let mut trunk = TestPbx::udp(host(12), edge.udp_at(SHARED_INGRESS)).await;
    assert_status(&trunk.request(&Request::invite()).await, 403);
    trunk.assert_nothing_pending().await;
    // Anyone, on its dedicated IP; even the active customer's PBX.
    let mut via_dedicated = TestPbx::udp(host(13), edge.udp_at(DEDICATED_INGRESS)).await;
    assert_status(&via_dedicated.request(&Request::options()).await, 403);
    let mut demo = TestPbx::udp(CUSTOMER_PBX, edge.udp_at(DEDICATED_INGRESS)).await;
    assert_status(&demo.request(&Request::options()).await, 403);
    // The active customer on the shared IP is unaffected.
    let mut demo = TestPbx::udp(CUSTOMER_PBX, edge.udp_at(SHARED_INGRESS)).await;
    assert_status(&demo.request(&Request::options()).await, 200);

    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "customer_suspended")),
        4
    );
    // A refused customer is still named: its per-customer deny series counts all four.
    assert_eq!(
        metrics.counter(ACL_CUSTOMER_DECISIONS_TOTAL, &customer("300003", "deny")),
        4
    );
}

// === hot reload ===

/// Upper bound of the background sender's requests (it stops earlier when told).
const RELOAD_MAX_REQUESTS: usize = 5000;

#[tokio::test(flavor = "multi_thread")]
async fn trunks_file_edit_applies_while_traffic_runs_and_an_invalid_edit_changes_nothing() {
    let edge = TestEdge::builder().start().await;
    let mut caller = TestPbx::udp(host(12), edge.udp()).await;

    // The caller asks over and over, one request at a time; every request must get exactly
    // one answer, for it (a missing one fails the receive, an extra one shows up as the
    // answer to the next request).
    let codes = Arc::new(Mutex::new(Vec::<u16>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (codes, stop) = (codes.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < RELOAD_MAX_REQUESTS && !stop.load(Ordering::Acquire) {
                let response = caller.request(&Request::options()).await;
                sent += 1;
                codes.lock().unwrap().push(response.code);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            caller.assert_nothing_pending().await;
            (caller, sent)
        })
    };
    let codes_now = || {
        // A request that went unanswered ends the traffic task early: say so, not "timeout".
        assert!(
            !traffic.is_finished(),
            "the caller stopped early: a request went unanswered or the bound was reached"
        );
        codes.lock().unwrap().clone()
    };

    eventually("a few answers before the edit", || async {
        (codes_now().len() >= 5).then_some(())
    })
    .await;
    let added = Trunks::demo().trunk_ip(1, "127.0.0.12");
    edge.replace_trunks(added.text());
    let first_allowed = eventually("the new rule applies", || async {
        codes_now().iter().position(|&code| code == 200)
    })
    .await;
    eventually("more answers after the edit", || async {
        (codes_now().len() >= first_allowed + 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    let (mut caller, sent) = traffic.await.expect("the traffic task ran to its end");

    let codes = codes.lock().unwrap().clone();
    assert_eq!(codes.len(), sent, "every request got its answer");
    assert!(first_allowed >= 5, "403s before the edit: {codes:?}");
    assert!(
        codes[..first_allowed].iter().all(|&code| code == 403),
        "{codes:?}"
    );
    // The snapshot is swapped whole: once allowed, every later request is allowed.
    assert!(
        codes[first_allowed..].iter().all(|&code| code == 200),
        "{codes:?}"
    );

    // An invalid edit is refused; the rules in force stay.
    let broken = Trunks::demo().trunk_ip(1, "127.0.0.300/32");
    edge.replace_trunks(broken.text());
    let failed = [("source", "file"), ("outcome", "failure")];
    let metrics = eventually("the invalid edit is refused", || async {
        let metrics = edge.metrics().await;
        (metrics.counter(ACL_RELOADS_TOTAL, &failed) >= 1).then_some(metrics)
    })
    .await;
    assert_eq!(metrics.counter(ACL_RELOADS_TOTAL, &failed), 1);
    assert_eq!(
        metrics.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "file"), ("outcome", "success")]
        ),
        2,
        "the start and the valid edit"
    );
    assert_eq!(metrics.counter(ACL_ENTRIES, &[("family", "ipv4")]), 2);
    assert_status(&caller.request(&Request::options()).await, 200);
}

// === TCP ===

#[tokio::test(flavor = "multi_thread")]
async fn tcp_request_split_across_writes_is_answered() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;
    let options = Request::options().body("v=0\r\n");
    let bytes = options.render("TCP", pbx.local());

    let cuts = [0, 7, bytes.len() / 2, bytes.len() - 3, bytes.len()];
    for part in cuts.windows(2) {
        pbx.send_raw(&bytes[part[0]..part[1]]).await;
        // Let each piece arrive on its own.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let response = pbx.recv().await;
    assert_status(&response, 200);
    assert_eq!(response.call_id(), options.call_id());
    pbx.assert_nothing_pending().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_two_messages_in_one_write_get_two_answers_in_order() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;
    let first = Request::register();
    let second = Request::options();
    let mut bytes = first.render("TCP", pbx.local());
    bytes.extend(second.render("TCP", pbx.local()));

    pbx.send_raw(&bytes).await;

    let answers = [pbx.recv().await, pbx.recv().await];
    assert_eq!(answers[0].call_id(), first.call_id());
    assert_status(&answers[0], 405);
    assert_eq!(answers[1].call_id(), second.call_id());
    assert_status(&answers[1], 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_double_crlf_ping_gets_one_crlf_pong() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;

    pbx.send_raw(b"\r\n\r\n").await;

    assert_eq!(pbx.read_raw(2).await, b"\r\n");
    // Exactly one CRLF: the next bytes are the probe's answer.
    pbx.assert_nothing_pending().await;
    let metrics = edge.metrics().await;
    assert_eq!(metrics.counter(SIP_KEEPALIVE_PONGS_TOTAL, &[]), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_stream_without_content_length_is_closed_while_others_keep_working() {
    let edge = TestEdge::builder().start().await;
    let mut broken = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;
    let mut healthy = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;
    assert_status(&healthy.request(&Request::options()).await, 200);

    broken
        .send(&Request::options().without("Content-Length"))
        .await;
    let closed = broken.read_until_closed().await;
    assert_eq!(closed.ok(), Some(0), "closed without an answer");

    assert_status(&healthy.request(&Request::invite()).await, 100);
    assert_status(&healthy.recv().await, 503);
    let metrics = edge.metrics().await;
    assert_eq!(
        metrics.counter(TCP_CONNECTIONS_CLOSED_MALFORMED_TOTAL, &[]),
        1
    );
    assert_eq!(
        metrics.counter(SIP_PARSE_ERRORS_TOTAL, &[("kind", "missing_header")]),
        1
    );
    assert_eq!(
        metrics.counter(TCP_CONNECTIONS_TOTAL, &[("outcome", "accepted")]),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_connection_over_the_limit_is_closed_and_counted() {
    let edge = TestEdge::builder()
        .config("[tcp]\nmax_connections = 1\n")
        .start()
        .await;
    let mut first = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;
    // Answered, so the edge holds this connection's permit before the next one arrives.
    assert_status(&first.request(&Request::options()).await, 200);

    let mut extra = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;
    let closed = extra.read_until_closed().await;
    assert!(
        matches!(&closed, Ok(0)) || closed.is_err(),
        "the extra connection was kept: {closed:?}"
    );

    assert_status(&first.request(&Request::options()).await, 200);
    let metrics = edge.metrics().await;
    let connections = |outcome| metrics.counter(TCP_CONNECTIONS_TOTAL, &[("outcome", outcome)]);
    assert_eq!(connections("accepted"), 1);
    assert_eq!(connections("refused_limit"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_edge_closes_its_tcp_connections() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;
    assert_status(&pbx.request(&Request::options()).await, 200);

    drop(edge);

    let closed = pbx.read_until_closed().await;
    assert!(
        matches!(&closed, Ok(0)) || closed.is_err(),
        "the connection outlived its edge: {closed:?}"
    );
}

// === what the edge answers for requests it cannot forward yet ===

#[tokio::test(flavor = "multi_thread")]
async fn cancel_and_in_dialog_requests_get_481_and_other_requests_503() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;

    let cancel = pbx
        .request(&Request::new("CANCEL", "sip:+15551234567@127.0.0.1"))
        .await;
    assert_status(&cancel, 481);
    let bye = Request::new("BYE", "sip:+15551234567@127.0.0.1")
        .header("To", "<sip:+15551234567@127.0.0.1>;tag=callee");
    let in_dialog = pbx.request(&bye).await;
    assert_status(&in_dialog, 481);
    assert_eq!(
        in_dialog.to_tag(),
        Some("callee"),
        "the dialog's tag is kept"
    );
    let message = pbx
        .request(&Request::new("MESSAGE", "sip:+15551234567@127.0.0.1").body("hi"))
        .await;
    assert_status(&message, 503);
    assert_eq!(message.header("Retry-After"), Some("30"));
    pbx.assert_nothing_pending().await;
}

// === what the edge refuses to read ===

#[tokio::test(flavor = "multi_thread")]
async fn malformed_request_gets_400_naming_the_fault() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;
    let cases = [
        (Request::options().header("CSeq", "abc OPTIONS"), "Bad CSeq"),
        (
            Request::options().header("CSeq", "1 INVITE"),
            "CSeq Method Mismatch",
        ),
        (Request::options().without("Call-ID"), "Missing Call-ID"),
        (Request::invite().without("From"), "Missing From"),
        (
            Request::invite().header("Max-Forwards", "seventy"),
            "Bad Max-Forwards",
        ),
        (
            Request::invite()
                .body("v=0\r\n")
                .header("Content-Length", "50"),
            "Content-Length Mismatch",
        ),
    ];

    for (request, reason) in &cases {
        // An INVITE gets its 400 first: no 100 for a request the edge cannot read.
        let response = pbx.request(request).await;
        assert_status(&response, 400);
        assert_eq!(response.reason, *reason, "{}", response.text);
    }
    pbx.assert_nothing_pending().await;

    let metrics = edge.metrics().await;
    let kind = |kind| metrics.counter(SIP_PARSE_ERRORS_TOTAL, &[("kind", kind)]);
    assert_eq!(kind("bad_header"), 2);
    assert_eq!(kind("cseq_method_mismatch"), 1);
    assert_eq!(kind("missing_header"), 2);
    assert_eq!(kind("content_length_mismatch"), 1);
    assert_eq!(
        metrics.counter(SIP_RESPONSES_SENT_TOTAL, &[("code", "400")]),
        6
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_sip_version_gets_505() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;

    for request in [
        Request::options().version("SIP/3.0"),
        Request::invite().version("SIP/3.0"),
    ] {
        let response = pbx.request(&request).await;
        assert_status(&response, 505);
        assert_eq!(response.reason, "Version Not Supported");
    }
    pbx.assert_nothing_pending().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_response_and_garbage_get_no_answer_and_are_counted() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;
    let mut stranger = TestPbx::udp(UNKNOWN_CALLER, edge.udp()).await;
    let local = pbx.local();
    let response = |cseq: &str| {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-stray\r\n\
             From: <sip:edge@example.com>;tag=a\r\nTo: <sip:pbx@example.com>;tag=b\r\n\
             Call-ID: stray@pbx.test\r\n{cseq}Content-Length: 0\r\n\r\n"
        )
    };

    pbx.send_raw(response("").as_bytes()).await;
    pbx.send_raw(response("CSeq: 1 OPTIONS\r\n").as_bytes())
        .await;
    pbx.send_raw(b"GARBAGE\r\n\r\n").await;
    pbx.send_raw(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
        .await;
    // An unknown source's garbage is not a request either: no 403.
    stranger.send_raw(b"GARBAGE\r\n\r\n").await;
    pbx.assert_nothing_pending().await;
    stranger.assert_nothing_pending().await;

    let metrics = edge.metrics().await;
    let dropped = |reason| metrics.counter(SIP_DROPPED_TOTAL, &[("reason", reason)]);
    assert_eq!(dropped("malformed_response"), 1);
    assert_eq!(dropped("stray_response"), 1);
    assert_eq!(dropped("garbage"), 3);
    let kind = |kind| metrics.counter(SIP_PARSE_ERRORS_TOTAL, &[("kind", kind)]);
    assert_eq!(kind("missing_header"), 1, "the response without CSeq");
    assert_eq!(
        kind("bad_start_line"),
        3,
        "GARBAGE twice, and a TLS ClientHello"
    );
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "unknown_source")),
        1,
        "only the stranger's probe reached the ACL"
    );
}

// === what the edge answers itself ===

#[tokio::test(flavor = "multi_thread")]
async fn max_forwards_zero_gets_483_for_invite_and_200_for_options() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;

    let invite = pbx
        .request(&Request::invite().header("Max-Forwards", "0"))
        .await;
    assert_status(&invite, 483);
    assert_eq!(invite.reason, "Too Many Hops");
    pbx.assert_nothing_pending().await;

    // Even with a user part, OPTIONS with Max-Forwards 0 is for the edge (RFC 3261 11).
    let options = Request::new("OPTIONS", "sip:+15551234567@127.0.0.1").header("Max-Forwards", "0");
    let response = pbx.request(&options).await;
    assert_status(&response, 200);
    assert_eq!(response.header("Allow"), Some(allow_header()));
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_require_gets_420_with_unsupported() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;

    let response = pbx
        .request(&Request::invite().header("Proxy-Require", "foo"))
        .await;
    assert_status(&response, 420);
    assert_eq!(response.reason, "Bad Extension");
    assert_eq!(response.header("Unsupported"), Some("foo"));
    pbx.assert_nothing_pending().await;

    let response = pbx
        .request(&Request::options().header("Proxy-Require", "foo, bar"))
        .await;
    assert_status(&response, 420);
    assert_eq!(response.header("Unsupported"), Some("foo, bar"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tel_uri_invite_is_allowed_and_http_uri_gets_416() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;

    let tel = Request::new("INVITE", "tel:+15551234567");
    assert_status(&pbx.request(&tel).await, 100);
    assert_status(&pbx.recv().await, 503);

    let http = Request::new("INVITE", "http://example.com/call");
    let response = pbx.request(&http).await;
    assert_status(&response, 416);
    assert_eq!(response.reason, "Unsupported URI Scheme");
    pbx.assert_nothing_pending().await;
}

// === admin endpoint ===

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_what_the_traffic_caused_and_health_endpoints_answer() {
    let edge = TestEdge::builder().start().await;
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;
    let mut stranger = TestPbx::udp(UNKNOWN_CALLER, edge.udp()).await;
    let mut over_tcp = TestPbx::tcp(CUSTOMER_PBX, edge.tcp()).await;

    assert_status(&pbx.request(&Request::options()).await, 200);
    assert_status(&pbx.request(&Request::invite()).await, 100);
    assert_status(&pbx.recv().await, 503);
    assert_status(&stranger.request(&Request::options()).await, 403);
    assert_status(&over_tcp.request(&Request::options()).await, 200);
    over_tcp.send_raw(b"\r\n\r\n").await;
    assert_eq!(over_tcp.read_raw(2).await, b"\r\n");

    let metrics = edge.metrics().await;
    let requests = |method, transport| {
        metrics.counter(
            SIP_REQUESTS_RECEIVED_TOTAL,
            &[("method", method), ("transport", transport)],
        )
    };
    assert_eq!(requests("OPTIONS", "udp"), 2);
    assert_eq!(requests("INVITE", "udp"), 1);
    assert_eq!(requests("OPTIONS", "tcp"), 1);
    assert_eq!(requests("REGISTER", "udp"), 0);
    let responses = |code| metrics.counter(SIP_RESPONSES_SENT_TOTAL, &[("code", code)]);
    assert_eq!(responses("200"), 2);
    assert_eq!(responses("100"), 1);
    assert_eq!(responses("503"), 1);
    assert_eq!(responses("403"), 1);
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("allow", "source_ip")),
        3
    );
    assert_eq!(
        metrics.counter(ACL_DECISIONS_TOTAL, &decision("deny", "unknown_source")),
        1
    );
    assert_eq!(
        metrics.counter(ACL_CUSTOMER_DECISIONS_TOTAL, &customer(DEMO_BAN, "allow")),
        3
    );
    assert_eq!(
        metrics.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "file"), ("outcome", "success")]
        ),
        1
    );
    assert_eq!(metrics.counter(ACL_ENTRIES, &[("family", "ipv4")]), 1);
    assert_eq!(
        metrics.counter(TCP_CONNECTIONS_TOTAL, &[("outcome", "accepted")]),
        1
    );
    assert_eq!(metrics.counter(SIP_KEEPALIVE_PONGS_TOTAL, &[]), 1);
    assert!(
        metrics
            .text()
            .contains(&format!("# HELP {SIP_REQUESTS_RECEIVED_TOTAL} ")),
        "metrics are described"
    );

    assert_eq!(edge.admin_get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(edge.admin_get("/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(edge.admin_get("/nope").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn edges_in_one_process_keep_separate_counts() {
    let (first, second) = (
        TestEdge::builder().start().await,
        TestEdge::builder().start().await,
    );
    let mut pbx = TestPbx::udp(CUSTOMER_PBX, first.udp()).await;
    assert_status(&pbx.request(&Request::options()).await, 200);

    let requests = [("method", "OPTIONS"), ("transport", "udp")];
    assert_eq!(
        first
            .metrics()
            .await
            .counter(SIP_REQUESTS_RECEIVED_TOTAL, &requests),
        1
    );
    assert_eq!(
        second
            .metrics()
            .await
            .counter(SIP_REQUESTS_RECEIVED_TOTAL, &requests),
        0
    );
}

// === the binary and the shipped config ===

fn shipped_config() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/warp-edge.toml"
    ))
}

fn warp_edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warp-edge"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run warp-edge")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn acl_explain_names_the_rule_for_allowed_and_denied_sources() {
    let config = shipped_config().to_str().expect("UTF-8 path");

    let allowed = warp_edge(&[
        "acl",
        "explain",
        "--config",
        config,
        "--source",
        "127.0.0.10:5060",
    ]);
    let stdout = text(&allowed.stdout);
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    assert_eq!(
        stdout.lines().next(),
        Some("allow: customer 100001, trunk group 1, via source_ip"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule: trunks.toml trunk_ips[0] (demo PBX): 127.0.0.10/32"),
        "{stdout}"
    );

    let denied = warp_edge(&[
        "acl",
        "explain",
        "--config",
        config,
        "--source",
        "127.0.0.11",
        "--transport",
        "tcp",
    ]);
    let stdout = text(&denied.stdout);
    assert!(denied.status.success(), "{}", text(&denied.stderr));
    assert_eq!(
        stdout.lines().next(),
        Some("deny: unknown_source"),
        "{stdout}"
    );
    assert!(stdout.contains("rule: none"), "{stdout}");
    assert!(stdout.contains("over tcp"), "{stdout}");
}

#[test]
fn check_accepts_the_shipped_config() {
    let config = shipped_config().to_str().expect("UTF-8 path");
    let output = warp_edge(&["check", "--config", config]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(stdout.contains("warp-edge.toml: ok"), "{stdout}");
    assert!(stdout.contains("trunks.toml: ok"), "{stdout}");
    assert!(stdout.contains("1 customers"), "{stdout}");
}

#[test]
fn bad_configs_exit_64_naming_the_key() {
    let shipped = std::fs::read_to_string(shipped_config()).expect("shipped config");
    let trunks = std::fs::read_to_string(shipped_config().with_file_name("trunks.toml"))
        .expect("shipped trunks file");
    let cases = [
        (
            "bad listener address",
            shipped.replacen("127.0.0.1:5060", "127.0.0.1:99999", 1),
            trunks.clone(),
            &["listeners[0].address", "127.0.0.1:99999"][..],
        ),
        (
            "unknown key",
            shipped.replace("[acl]\n", "[acl]\ncolour = \"red\"\n"),
            trunks.clone(),
            &["warp-edge.toml", "acl", "colour"][..],
        ),
        (
            "bad CIDR in the trunks file",
            shipped.clone(),
            trunks.replace("127.0.0.10/32", "127.0.0.300/32"),
            &["trunks.toml", "trunk_ips[0].cidr", "127.0.0.300/32"][..],
        ),
    ];
    for (what, config, trunks, named) in cases {
        let dir = TempDir::new("bad-config");
        dir.write("trunks.toml", &trunks);
        let file = dir.write("warp-edge.toml", &config);
        let file = file.to_str().expect("UTF-8 path");
        for command in [
            &["check", "--config", file][..],
            &["acl", "explain", "--config", file, "--source", "127.0.0.10"][..],
        ] {
            let output = warp_edge(command);
            let stderr = text(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(EXIT_CONFIG),
                "{what}, {command:?}: {stderr}"
            );
            for key in named {
                assert!(stderr.contains(key), "{what}: {stderr} should name {key}");
            }
            assert!(output.stdout.is_empty(), "{what}: {}", text(&output.stdout));
        }
    }
}

#[test]
fn run_refuses_a_bad_trunks_file_before_binding() {
    let shipped = std::fs::read_to_string(shipped_config()).expect("shipped config");
    let trunks = std::fs::read_to_string(shipped_config().with_file_name("trunks.toml"))
        .expect("shipped trunks file");
    let dir = TempDir::new("bad-run");
    dir.write(
        "trunks.toml",
        &trunks.replace("127.0.0.10/32", "127.0.0.10/29"),
    );
    // Port 0 everywhere: were the file accepted, the edge would still start, and the bounded
    // wait below would fail the test instead of hanging it.
    let config = shipped
        .replace("127.0.0.1:5060", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    let file = dir.write("warp-edge.toml", &config);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warp-edge"))
        .args(["run", "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn warp-edge run");
    let mut status = None;
    for _ in 0..500 {
        if let Some(exited) = child.try_wait().expect("wait for warp-edge") {
            status = Some(exited);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(status) = status else {
        child.kill().ok();
        child.wait().ok();
        panic!("warp-edge run kept running with an invalid trunks file");
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        pipe.read_to_string(&mut stderr).ok();
    }
    assert_eq!(status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("trunk_ips[0].cidr"), "{stderr}");
    assert!(stderr.contains("did you mean 127.0.0.8/29"), "{stderr}");
}

#[test]
fn shipped_config_and_trunks_file_parse() {
    let (config, trunks) = Config::load_all(shipped_config()).expect("shipped config is valid");

    let listeners: Vec<_> = config
        .listeners
        .iter()
        .map(|l| (l.transport, l.address, l.advertise.as_str()))
        .collect();
    let address: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    assert_eq!(
        listeners,
        [
            (ListenerTransport::Udp, address, "127.0.0.1"),
            (ListenerTransport::Tcp, address, "127.0.0.1"),
        ]
    );
    assert_eq!(
        config.admin,
        "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.acl.trunks_file,
        shipped_config().with_file_name("trunks.toml"),
        "resolved against the config file's directory"
    );
    assert_eq!(config.acl.group, 1);
    assert_eq!(config.retry_after_secs, 30);
    assert_eq!(trunks.rules.customers.len(), 1);
    assert_eq!(trunks.rules.customers[0].ban, DEMO_BAN);
    assert_eq!(trunks.rules.entries.len(), 1);
    assert_eq!(
        trunks.rules.entries[0].network,
        "127.0.0.10/32".parse().unwrap()
    );
    assert_eq!(trunks.disabled_entries, 0);
}
