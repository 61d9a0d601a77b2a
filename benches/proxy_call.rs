//! A whole call through the proxy core, without sockets: INVITE from the PBX (100 Trying and
//! the forwarded INVITE out), the vendor's 180 and 200 relayed, the PBX's ACK and BYE routed
//! by the Record-Route token, the vendor's 200 for the BYE relayed, then the timers that end
//! the transactions. This is the user-space work per call; the kernel's share (syscalls,
//! wakeups) is measured by the load harness (`benches/harness/`).
//!
//! The vendor's responses are built from what the edge forwarded (its Via, Record-Route),
//! so their construction is part of each iteration; under callgrind
//! `--toggle-collect='*Core::on_datagram*' --toggle-collect='*Core::on_timer*'` counts only
//! the proxy. With `WARP_EDGE_BENCH_LOOP=call:<n>` the binary runs n calls in a plain loop.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use warp_edge::acl::rules::{Customer, CustomerStatus, Proto, TrunkGroup};
use warp_edge::acl::{Acl, AclEntry, RuleSet, Snapshot};
use warp_edge::config::{DenyAction, ProbeConfig};
use warp_edge::proxy::dialog::DialogKeys;
use warp_edge::proxy::transaction::Timers;
use warp_edge::proxy::{
    Core, CoreSettings, ForwardSettings, Forwarder, Inbound, ListenerFace, Send, Side,
};
use warp_edge::route::{GatewaySpec, HealthPolicy, RouteSpec, RouteTable, Routing};
use warp_edge::sip::{Limits, Message};
use warp_edge::telemetry::Metrics;

const PBX: &str = "192.0.2.10:5060";
const EDGE: &str = "198.51.100.1:5060";
const EGRESS: &str = "198.51.100.9:5060";
const VENDOR: &str = "203.0.113.20:5080";

fn core() -> Core {
    let rules = RuleSet {
        customers: vec![Customer {
            ban: "100001".to_owned(),
            name: "bench".to_owned(),
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
            origin: "bench".into(),
            group: 1,
            network: "192.0.2.10/32".parse().unwrap(),
            port: 0,
            proto: Proto::Any,
            ban: "100001".into(),
            trunk_group: Some(1),
        }],
        ..RuleSet::default()
    };
    let vendor: SocketAddr = VENDOR.parse().unwrap();
    let routes = Arc::new(RouteTable::new(&Routing {
        gateways: vec![GatewaySpec {
            name: "v".to_owned(),
            host: vendor.ip().to_string(),
            port: vendor.port(),
            transport: Proto::Udp,
            weight: 1,
            priority: 0,
            strip: 0,
            prefix: String::new(),
            probe: false,
        }],
        routes: vec![RouteSpec {
            name: "r".to_owned(),
            gateways: vec!["v".to_owned()],
            max_attempts: None,
        }],
    }));
    let metrics = Metrics::new();
    let settings = ForwardSettings {
        listeners: vec![ListenerFace {
            transport: Proto::Udp,
            bound: EDGE.parse().unwrap(),
            advertise: "198.51.100.1".to_owned(),
        }],
        egress: vec![EGRESS.parse().unwrap()],
        keys: DialogKeys::new(b"bench-dialog-key-0123456789", None).unwrap(),
        max_transactions: 1_000_000,
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
    let forwarder = Forwarder::new(settings, routes, metrics.clone());
    let acl = Arc::new(Acl::new(
        Snapshot::build(Arc::new(rules.clone()), 1).unwrap(),
    ));
    let core_settings = CoreSettings {
        limits: Limits::default(),
        deny_action: DenyAction::Reject,
        deny_reason_in_reply: false,
        retry_after_secs: 30,
    };
    Core::new(core_settings, acl, metrics, Some(forwarder))
}

fn inbound(side: Side) -> Inbound {
    let (source, local) = match side {
        Side::Listener => (PBX, EDGE),
        Side::Egress(_) => (VENDOR, EGRESS),
    };
    Inbound {
        source: source.parse().unwrap(),
        local: local.parse().unwrap(),
        transport: Proto::Udp,
        side,
        conn: None,
    }
}

/// The PBX's INVITE for call `n`: a carrier-style INVITE with SDP.
fn invite(n: u64) -> Bytes {
    let sdp = "v=0\r\no=pbx 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n\
               t=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
               a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";
    Bytes::from(format!(
        "INVITE sip:+12025550100@198.51.100.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-pbx-{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Caller\" <sip:+13125550199@192.0.2.10>;tag=f{n}\r\n\
         To: <sip:+12025550100@198.51.100.1>\r\nCall-ID: bench-{n}@192.0.2.10\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:+13125550199@192.0.2.10:5060>\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
}

/// The vendor's response to `forwarded`: its Via and Record-Route copied, a To-tag added.
fn vendor_response(forwarded: &Send, status: &str) -> Bytes {
    let text = String::from_utf8_lossy(&forwarded.bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in head.lines().skip(1) {
        let name = line.split(':').next().unwrap_or_default();
        match name {
            "Via" | "Record-Route" | "From" | "Call-ID" | "CSeq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "To" if !line.contains("tag=") => {
                out.push_str(line);
                out.push_str(";tag=vendor\r\n");
            }
            "To" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Contact: <sip:gw@203.0.113.20:5080>\r\nContent-Length: 0\r\n\r\n");
    Bytes::from(out)
}

/// An in-dialog request from the PBX along the route set the 200 carried.
fn pbx_request(method: &str, cseq: u32, n: u64, routes: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:gw@203.0.113.20:5080 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{method}-{n};rport\r\n\
         Route: {routes}\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:+13125550199@192.0.2.10>;tag=f{n}\r\n\
         To: <sip:+12025550100@198.51.100.1>;tag=vendor\r\nCall-ID: bench-{n}@192.0.2.10\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// One call, start to end; returns how many messages the edge sent.
fn call(core: &Core, n: u64, now: Instant) -> usize {
    let pbx = inbound(Side::Listener);
    let vendor = inbound(Side::Egress(0));
    let mut sent = 0;
    let out = core.on_datagram(now, invite(n), &pbx);
    sent += out.len();
    let forwarded = &out[1];
    sent += core
        .on_datagram(now, vendor_response(forwarded, "180 Ringing"), &vendor)
        .len();
    let ok = core.on_datagram(now, vendor_response(forwarded, "200 OK"), &vendor);
    sent += ok.len();
    let answered = Message::parse(ok[0].bytes.clone()).expect("the relayed 200 parses");
    let mut record_routes: Vec<String> = answered
        .record_routes()
        .map(|r| String::from_utf8_lossy(r.expect("Record-Route").as_bytes()).into_owned())
        .collect();
    record_routes.reverse();
    let routes = record_routes.join(", ");
    sent += core
        .on_datagram(now, pbx_request("ACK", 1, n, &routes), &pbx)
        .len();
    let bye = core.on_datagram(now, pbx_request("BYE", 2, n, &routes), &pbx);
    sent += bye.len();
    sent += core
        .on_datagram(now, vendor_response(&bye[0], "200 OK"), &vendor)
        .len();
    sent
}

fn check(core: &Core) {
    let now = Instant::now();
    assert_eq!(
        call(core, 0, now),
        7,
        "100, INVITE, 180, 200, ACK, BYE, 200"
    );
    core.on_timer(now + Duration::from_secs(3600));
    assert_eq!(core.forwarder().unwrap().live_transactions(), 0);
}

fn bench(c: &mut Criterion) {
    let core = core();
    check(&core);
    let start = Instant::now();
    let mut n = 1;
    c.bench_function("proxy/full_call", |b| {
        b.iter(|| {
            n += 1;
            let sent = call(&core, black_box(n), start);
            // Timers are cleared every 1000 calls, as the timer tick would.
            if n % 1000 == 0 {
                core.on_timer(start + Duration::from_secs(3600));
            }
            sent
        })
    });
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("WARP_EDGE_BENCH_LOOP") {
        let n: u64 = spec
            .strip_prefix("call:")
            .and_then(|n| n.parse().ok())
            .expect("WARP_EDGE_BENCH_LOOP=call:<calls>");
        let core = core();
        check(&core);
        let now = Instant::now();
        for i in 1..=n {
            black_box(call(&core, i, now));
            if i % 1000 == 0 {
                core.on_timer(now + Duration::from_secs(3600));
            }
        }
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
