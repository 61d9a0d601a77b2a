//! Proves the hot path allocates nothing: parsing a received message, reading the typed views
//! a proxy needs, and writing it out with the forwarding edits into a buffer that already has
//! room. A counting global allocator (this test binary only) counts the allocations made by
//! the measuring thread; measurements are serialised because the counter is shared.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::TryFrom;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use warp_edge::sip::{Edit, Message, Method, Rport};

// === counting allocator ===

/// Allocations (alloc, alloc_zeroed, realloc) made by an armed thread.
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time, so two tests never share the counter.
static MEASURING: Mutex<()> = Mutex::new(());

thread_local! {
    /// Only the thread being measured counts; the test harness's own threads do not.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

struct CountingAllocator;

impl CountingAllocator {
    fn count(&self) {
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only an atomic and a
// const-initialised thread-local without a destructor, neither of which allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the number of allocations it made.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let _serial = MEASURING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ALLOCATIONS.store(0, Ordering::SeqCst);
    ARMED.with(|armed| armed.set(true));
    let result = f();
    ARMED.with(|armed| armed.set(false));
    (result, ALLOCATIONS.load(Ordering::SeqCst))
}

// === fixtures (the same messages as benches/sip_message.rs) ===

mod fixtures;
use fixtures::{BYE, FORWARDING_EDITS, INVITE, OK_200};

/// A received datagram: heap-backed, made before counting starts.
fn received(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn parsed(text: &str) -> Message {
    Message::parse(received(text)).expect("fixture parses")
}

// === tests ===

#[test]
fn parsing_allocates_nothing() {
    assert!((700..=800).contains(&INVITE.len()), "{}", INVITE.len());
    for (name, text) in [("INVITE", INVITE), ("200 OK", OK_200), ("BYE", BYE)] {
        let bytes = received(text);
        let (msg, count) = allocations(|| Message::parse(bytes));
        assert!(msg.is_ok(), "{name}: {msg:?}");
        assert_eq!(count, 0, "parsing the {name} allocated");
    }
}

#[test]
fn parsing_a_shared_buffer_allocates_nothing() {
    // A clone of an already shared `Bytes` is a reference count, not a copy.
    let bytes = received(INVITE);
    let shared = bytes.clone();
    let (msg, count) = allocations(|| Message::parse(shared.clone()));
    assert!(msg.is_ok());
    assert_eq!(count, 0);
    drop(bytes);
}

#[test]
fn typed_views_allocate_nothing() {
    let invite = parsed(INVITE);
    let ok = parsed(OK_200);
    let bye = parsed(BYE);
    let ((), count) = allocations(|| {
        let via = invite.top_via();
        assert_eq!(via.host(), b"203.0.113.45");
        assert_eq!(via.port(), Some(5060));
        assert_eq!(via.ip(), Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 45))));
        assert_eq!(via.branch(), Some(&b"z9hG4bK3f9c2d1e8b"[..]));
        assert!(via.is_rfc3261_branch());
        assert_eq!(via.rport(), Rport::Requested);

        let cseq = invite.cseq();
        assert_eq!((cseq.seq, cseq.method), (102, Method::Invite));

        let from = invite.from();
        assert_eq!(from.display_name(), Some(&b"\"ACME\""[..]));
        assert_eq!(from.tag(), Some(&b"as7d9f2c1e"[..]));
        assert_eq!(from.uri().user(), Some(&b"+14155550123"[..]));
        let to = invite.to();
        assert_eq!(to.tag(), None);
        assert_eq!(to.uri().host(), b"198.51.100.20");

        let uri = invite.request_uri().expect("a request has a Request-URI");
        assert_eq!(uri.user(), Some(&b"+15551234567"[..]));
        assert_eq!(uri.ip(), Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20))));

        assert_eq!(invite.call_id(), b"4f3c2a1b9e8d@203.0.113.45");
        assert_eq!(invite.max_forwards(), Some(70));
        for route in invite.routes() {
            let route = route.expect("well-formed Route");
            assert!(route.is_loose_route());
            assert_eq!(route.uri().host(), b"edge1.warp.example");
        }
        assert_eq!(invite.contacts().count(), 1);

        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.to().tag(), Some(&b"7c1e9a2b"[..]));
        assert_eq!(ok.top_via().received(), Some(&b"203.0.113.45"[..]));
        assert_eq!(ok.record_routes().count(), 1);

        assert_eq!(bye.cseq().method, Method::Bye);
        assert_eq!(bye.routes().count(), 1);
    });
    assert_eq!(count, 0, "typed views allocated");
}

#[test]
fn writing_with_forwarding_edits_into_reserved_buffer_allocates_nothing() {
    let invite = parsed(INVITE);
    let mut out = BytesMut::with_capacity(4096);
    let (result, count) = allocations(|| {
        for _ in 0..3 {
            out.clear();
            invite
                .write(black_box(&FORWARDING_EDITS), &mut out)
                .expect("edits apply");
        }
    });
    assert_eq!(result, ());
    assert_eq!(
        count, 0,
        "write-out with the four forwarding edits allocated"
    );
    let forwarded = Message::parse(out.freeze()).expect("forwarded INVITE parses");
    assert_eq!(forwarded.top_via().host(), b"192.0.2.10");
    assert_eq!(forwarded.max_forwards(), Some(69));
}

#[test]
fn via_received_allocates_nothing() {
    // The source address is formatted straight into the output buffer.
    let invite = parsed(INVITE);
    let mut out = BytesMut::with_capacity(4096);
    for source in ["198.51.100.7:40000", "[2001:db8::7]:40000"] {
        let source = source.parse().expect("socket address");
        out.clear();
        let (result, count) = allocations(|| invite.write(&[Edit::ViaReceived(source)], &mut out));
        assert!(result.is_ok());
        assert_eq!(count, 0, "ViaReceived({source}) allocated");
    }
}

#[test]
fn a_long_header_list_allocates_at_most_once() {
    // Beyond the inline header index the index moves to the heap once, not per header.
    let long = INVITE.replace("Supported: timer\r\n", &"X-Pad: 1\r\n".repeat(16));
    let bytes = received(&long);
    let (msg, count) = allocations(|| Message::parse(bytes));
    assert_eq!(msg.expect("parses").headers().len(), 28);
    assert!(count <= 1, "{count} allocations for 28 headers");
}

#[test]
fn writing_into_an_empty_buffer_allocates_once() {
    // `write` reserves the whole output up front rather than growing it header by header.
    let invite = parsed(INVITE);
    let mut out = BytesMut::new();
    let (result, count) = allocations(|| invite.write(&FORWARDING_EDITS, &mut out));
    assert!(result.is_ok());
    assert_eq!(count, 1);
}

#[test]
fn rsip_allocates_per_header() {
    // For contrast: rsip 0.4 copies each header into an owned String (and the Request-URI
    // into several), so one parse allocates at least once per header line.
    let (msg, count) = allocations(|| rsip::SipMessage::try_from(INVITE.as_bytes()));
    let msg = msg.expect("rsip parses the INVITE");
    let header_lines = 13;
    assert!(
        count > header_lines,
        "rsip allocated {count} times for {header_lines} headers"
    );
    drop(msg);
}

/// One ACL decision per request, on the hot path: allowed, refused and unknown callers, by
/// source IP (IPv4, IPv6, IPv4-mapped) and by dedicated ingress IP.
#[test]
fn acl_decisions_allocate_nothing() {
    use warp_edge::acl::{
        AclEntry, AclRequest, Customer, CustomerStatus, DedicatedIp, Proto, RuleSet, Snapshot,
    };

    let entry = |cidr: &str, ban: &str| AclEntry {
        origin: cidr.into(),
        group: 1,
        network: cidr.parse().expect("cidr"),
        port: 0,
        proto: Proto::Any,
        ban: ban.into(),
        trunk_group: None,
    };
    let rules = RuleSet {
        customers: vec![
            Customer {
                ban: "1".to_owned(),
                name: "active".to_owned(),
                status: CustomerStatus::Active,
            },
            Customer {
                ban: "2".to_owned(),
                name: "suspended".to_owned(),
                status: CustomerStatus::Suspended,
            },
        ],
        trunk_groups: vec![],
        entries: vec![
            entry("192.0.2.0/24", "1"),
            entry("192.0.2.7/32", "2"),
            entry("2001:db8::/32", "1"),
        ],
        dedicated_ips: vec![DedicatedIp {
            origin: "d".to_owned(),
            ip: "198.51.100.9".parse().unwrap(),
            ban: "1".to_owned(),
        }],
    };
    let snapshot = Snapshot::build(std::sync::Arc::new(rules), 1).expect("builds");
    let requests: Vec<AclRequest> = [
        ("192.0.2.10:5060", "198.51.100.1"),
        ("192.0.2.7:5060", "198.51.100.1"),
        ("203.0.113.5:5060", "198.51.100.1"),
        ("203.0.113.5:5060", "198.51.100.9"),
        ("[2001:db8::5]:5060", "198.51.100.1"),
        ("[::ffff:192.0.2.10]:5060", "198.51.100.1"),
    ]
    .iter()
    .map(|(source, local)| AclRequest {
        source: source.parse().unwrap(),
        local: local.parse().unwrap(),
        transport: Proto::Udp,
    })
    .collect();
    let (allowed, count) = allocations(|| {
        requests
            .iter()
            .filter(|r| snapshot.decide(r).is_allow())
            .count()
    });
    assert_eq!(allowed, 4);
    assert_eq!(count, 0, "decide allocated");
}
