//! The Redis ACL source against a real server (127.0.0.1:6379, `WARP_EDGE_TEST_REDIS`
//! overrides it): each test writes under a key prefix and publishes on a channel of its own,
//! and deletes its keys at the end. Rows are written exactly as Kamailio's db_redis
//! (`address:entry::<id>`) and the platform's API (`address:entry:<uuid>`, with `proto`) do.
//!
//! Nothing asserts on time: waits poll until a condition holds (10 s limit, failure only).

mod support;

use support::{
    eventually, eventually_answers, host, redis_url, Request, TcpRelay, TestEdge, TestPbx,
    TestRedis,
};
use warp_edge::telemetry::names::{ACL_RELOADS_TOTAL, ACL_SOURCE_CONNECTED, ACL_SOURCE_ENTRIES};

async fn edge_on(redis: &TestRedis, url: &str, extra: &str) -> TestEdge {
    TestEdge::builder()
        .acl("sources = [\"redis\"]")
        .config(&format!("{}{extra}", redis.section(url)))
        .start()
        .await
}

/// A Kamailio db_redis row: host when `mask` is 0.
fn kamailio_row<'a>(
    id: &'a str,
    ip: &'a str,
    mask: &'a str,
    tag: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("id", id),
        ("grp", "1"),
        ("ip_addr", ip),
        ("mask", mask),
        ("port", "0"),
        ("tag", tag),
    ]
}

fn redis_connected(m: &support::Scrape, up: bool) -> bool {
    m.text().lines().any(|l| {
        l.starts_with(ACL_SOURCE_CONNECTED)
            && l.contains("source=\"redis\"")
            && l.ends_with(if up { " 1" } else { " 0" })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn kamailio_rows_added_and_removed_follow_the_pubsub_channel() {
    let redis = TestRedis::new();
    redis
        .hset(
            "address:entry::1",
            &kamailio_row("1", "127.0.0.31", "0", "500005"),
        )
        .await;
    let edge = edge_on(&redis, &redis_url(), "").await;
    let mut known = TestPbx::udp(host(31), edge.udp()).await;
    let mut pbx = TestPbx::udp(host(34), edge.udp()).await;
    assert_eq!(known.request(&Request::options()).await.code, 200);
    assert_eq!(pbx.request(&Request::options()).await.code, 403);

    // A subnet row (mask 30 covers .32 to .35), announced on the channel.
    redis
        .hset(
            "address:entry::2",
            &kamailio_row("2", "127.0.0.32", "30", "500005"),
        )
        .await;
    redis.publish().await;
    eventually_answers("the subnet row is allowed", &mut pbx, 200).await;

    redis.del("address:entry::2").await;
    redis.publish().await;
    eventually_answers("the removed row is refused", &mut pbx, 403).await;
    assert_eq!(known.request(&Request::options()).await.code, 200);

    // Rows of another group are not this edge's.
    let mut other = kamailio_row("3", "127.0.0.34", "0", "500005");
    other[1] = ("grp", "2");
    redis.hset("address:entry::3", &other).await;
    redis.publish().await;
    eventually("the other group's row is loaded", || async {
        let m = edge.metrics().await;
        (m.counter(ACL_SOURCE_ENTRIES, &[("source", "redis")]) == 2).then_some(())
    })
    .await;
    assert_eq!(pbx.request(&Request::options()).await.code, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_rows_with_proto_are_enforced_per_transport() {
    let redis = TestRedis::new();
    let edge = edge_on(&redis, &redis_url(), "").await;
    let mut udp = TestPbx::udp(host(35), edge.udp()).await;
    assert_eq!(udp.request(&Request::options()).await.code, 403);

    redis
        .hset(
            "address:entry:6f1c2a7e-8d0b-4b1e-9a55-3c0f0d1e2f35",
            &[
                ("grp", "1"),
                ("ip_addr", "127.0.0.35"),
                ("mask", "32"),
                ("port", "0"),
                ("proto", "tcp"),
                ("tag", "600006"),
            ],
        )
        .await;
    redis.publish().await;
    eventually("the tcp-only row is loaded", || async {
        let m = edge.metrics().await;
        (m.counter(ACL_SOURCE_ENTRIES, &[("source", "redis")]) == 1).then_some(())
    })
    .await;
    let mut tcp = TestPbx::tcp(host(35), edge.tcp()).await;
    assert_eq!(tcp.request(&Request::options()).await.code, 200);
    let refused = udp.request(&Request::options()).await;
    assert_eq!(refused.code, 403, "{}", refused.text);

    redis
        .hset(
            "address:entry:6f1c2a7e-8d0b-4b1e-9a55-3c0f0d1e2f35",
            &[("proto", "any")],
        )
        .await;
    redis.publish().await;
    eventually_answers("the row now admits udp", &mut udp, 200).await;

    redis
        .del("address:entry:6f1c2a7e-8d0b-4b1e-9a55-3c0f0d1e2f35")
        .await;
    redis.publish().await;
    eventually_answers("the deleted platform row is refused", &mut udp, 403).await;
}

/// Keyspace notifications name keys; the source re-reads just those and merges them. After
/// each kind of write the mirror equals what a full load (SCAN) reads.
#[tokio::test(flavor = "multi_thread")]
async fn keyspace_deltas_converge_on_what_a_full_load_reads() {
    use warp_edge::acl::sources::redis::{load, refresh, Change};
    let redis = TestRedis::new();
    let mut conn = redis.conn().await;
    let keyspace = "__keyspace@0__:";
    let key = |k: &str| format!("{}{k}", redis.prefix);
    redis
        .hset(
            "address:entry::1",
            &kamailio_row("1", "10.0.0.1", "0", "700001"),
        )
        .await;
    let mut mirror = None;
    refresh(&mut conn, &redis.prefix, 100, &mut mirror, &Change::full())
        .await
        .unwrap();
    let platform = |ip: &'static str, proto: &'static str| {
        vec![
            ("grp", "1"),
            ("ip_addr", ip),
            ("mask", "28"),
            ("port", "0"),
            ("proto", proto),
            ("tag", "700002"),
        ]
    };
    // (what is written, the keys it touches)
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("a Kamailio row", vec!["address:entry::2"]),
        ("a platform row", vec!["address:entry:0b9e-uuid"]),
        ("a field changed", vec!["address:entry::1"]),
        ("a row deleted", vec!["address:entry::2"]),
        ("a key that never existed", vec!["address:entry::404"]),
        (
            "two rows at once",
            vec!["address:entry::3", "address:entry:0b9e-uuid"],
        ),
    ];
    for (what, keys) in &steps {
        match *what {
            "a Kamailio row" => {
                redis
                    .hset(keys[0], &kamailio_row("2", "10.0.0.2", "0", "700001"))
                    .await
            }
            "a platform row" => redis.hset(keys[0], &platform("10.1.0.0", "udp")).await,
            "a field changed" => {
                redis
                    .hset(keys[0], &kamailio_row("1", "10.0.0.9", "0", "700001"))
                    .await
            }
            "a row deleted" => redis.del(keys[0]).await,
            "two rows at once" => {
                redis
                    .hset(keys[0], &kamailio_row("3", "10.0.0.3", "0", "700003"))
                    .await;
                redis.hset(keys[1], &platform("10.2.0.0", "tcp")).await;
            }
            _ => {}
        }
        let mut change = Change::default();
        for k in keys {
            change.note(&format!("{keyspace}{}", key(k)), keyspace);
        }
        assert!(!change.is_full(), "{what}");
        refresh(&mut conn, &redis.prefix, 100, &mut mirror, &change)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let fresh = load(&mut conn, &redis.prefix, 100).await.unwrap();
        assert_eq!(mirror.as_ref().unwrap().rules(), &fresh, "{what}");
    }
    assert_eq!(mirror.as_ref().unwrap().rules().entries.len(), 3);

    // A bad row fails the change and leaves the mirror as it was.
    let before = mirror.as_ref().unwrap().rules().clone();
    redis
        .hset(
            "address:entry::5",
            &kamailio_row("5", "not-an-ip", "0", "700001"),
        )
        .await;
    let mut change = Change::default();
    change.note(&format!("{keyspace}{}", key("address:entry::5")), keyspace);
    assert!(refresh(&mut conn, &redis.prefix, 100, &mut mirror, &change)
        .await
        .is_err());
    assert_eq!(mirror.as_ref().unwrap().rules(), &before);
    // A message on the writer's channel asks for everything.
    let mut change = Change::default();
    change.note("warp_edge_acl", keyspace);
    assert!(change.is_full());
}

#[tokio::test(flavor = "multi_thread")]
async fn keyspace_notifications_need_no_publish() {
    let redis = TestRedis::new();
    let edge = edge_on(&redis, &redis_url(), "keyspace_notifications = true\n").await;
    let mut pbx = TestPbx::udp(host(36), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 403);
    redis
        .hset(
            "address:entry::9",
            &kamailio_row("9", "127.0.0.36", "0", "700007"),
        )
        .await;
    eventually_answers(
        "the row written without a publish is allowed",
        &mut pbx,
        200,
    )
    .await;
    redis.del("address:entry::9").await;
    eventually_answers(
        "the row deleted without a publish is refused",
        &mut pbx,
        403,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_row_fails_the_reload_and_the_previous_rules_stay() {
    let redis = TestRedis::new();
    redis
        .hset(
            "address:entry::1",
            &kamailio_row("1", "127.0.0.37", "0", "800008"),
        )
        .await;
    let edge = edge_on(&redis, &redis_url(), "").await;
    let mut pbx = TestPbx::udp(host(37), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);

    // No tag: the caller could not be named, so the whole reload is refused.
    redis
        .hset(
            "address:entry::2",
            &[("grp", "1"), ("ip_addr", "127.0.0.38"), ("mask", "0")],
        )
        .await;
    redis.publish().await;
    let failure = [("source", "redis"), ("outcome", "failure")];
    eventually("the bad row is refused", || async {
        let m = edge.metrics().await;
        (m.counter(ACL_RELOADS_TOTAL, &failure) >= 1).then_some(())
    })
    .await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);
    let mut untagged = TestPbx::udp(host(38), edge.udp()).await;
    assert_eq!(untagged.request(&Request::options()).await.code, 403);

    // Fixing the row applies it.
    redis.hset("address:entry::2", &[("tag", "800008")]).await;
    redis.publish().await;
    eventually_answers("the fixed row is allowed", &mut untagged, 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_redis_keeps_the_snapshot_then_catches_up() {
    let redis = TestRedis::new();
    redis
        .hset(
            "address:entry::1",
            &kamailio_row("1", "127.0.0.39", "0", "900009"),
        )
        .await;
    let relay = TcpRelay::start(support::redis_socket()).await;
    let edge = edge_on(&redis, &format!("redis://{}/", relay.address), "").await;
    let mut pbx = TestPbx::udp(host(39), edge.udp()).await;
    let mut newcomer = TestPbx::udp(host(40), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);

    relay.cut();
    eventually("the source reports itself down", || async {
        redis_connected(&edge.metrics().await, false).then_some(())
    })
    .await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);
    // Written while the edge cannot hear it (the publish goes nowhere).
    redis
        .hset(
            "address:entry::2",
            &kamailio_row("2", "127.0.0.40", "0", "900009"),
        )
        .await;
    redis.publish().await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);

    relay.restore();
    eventually_answers("the row written while down applies", &mut newcomer, 200).await;
    assert!(redis_connected(&edge.metrics().await, true));
}
