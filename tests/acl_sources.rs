//! The sources together: `acl sync` from PostgreSQL into Redis (and edges on either agree),
//! the union of the trunks file and PostgreSQL, PostgreSQL as primary with Redis as fallback,
//! `/readyz` while nothing is loaded, configuration errors, and continuous traffic while a
//! 100k-entry table reloads 100 times.
//!
//! Real PostgreSQL and Redis on loopback, a database and a key prefix per test. Nothing
//! asserts on time.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::{
    eventually, eventually_answers, host, redis_url, Request, TcpRelay, TestDb, TestEdge, TestPbx,
    TestRedis, Trunks, CUSTOMER_PBX,
};
use warp_edge::config::EXIT_CONFIG;
use warp_edge::telemetry::names::ACL_RELOADS_TOTAL;

fn warp_edge(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warp-edge"))
        .args(args)
        .output()
        .expect("run warp-edge")
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_sync_copies_postgres_into_redis_and_edges_on_either_agree() {
    let db = TestDb::migrated().await;
    db.customer("110011", "active").await;
    db.customer("220022", "suspended").await;
    let main = db.trunk_group("110011", "main").await;
    let other = db.trunk_group("220022", "main").await;
    let host_id = db.trunk_ip(main, "127.0.0.51").await;
    db.trunk_ip(main, "127.0.0.56/30").await;
    db.trunk_ip(other, "127.0.0.52").await;
    let off = db.trunk_ip(main, "127.0.0.53").await;
    db.execute(&format!(
        "UPDATE accounts.trunk_ips SET enabled = false WHERE id = '{off}'"
    ))
    .await;
    db.execute(&format!(
        "UPDATE accounts.trunk_ips SET port = 5070, proto = 'udp' WHERE id = '{host_id}'"
    ))
    .await;

    let redis = TestRedis::new();
    // A platform row PostgreSQL no longer has, and a Kamailio row another writer owns.
    redis
        .hset(
            "address:entry:00000000-0000-0000-0000-000000000000",
            &[("grp", "1"), ("ip_addr", "127.0.0.54"), ("tag", "110011")],
        )
        .await;
    redis
        .hset(
            "address:entry::77",
            &[
                ("grp", "1"),
                ("ip_addr", "127.0.0.55"),
                ("mask", "0"),
                ("tag", "330033"),
            ],
        )
        .await;

    let out = warp_edge(&[
        "acl",
        "sync",
        "--database-url",
        &db.url,
        "--redis-url",
        &redis_url(),
        "--prefix",
        &redis.prefix,
        "--channel",
        &redis.channel,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("2 entries written, 1 stale entries deleted"),
        "{said}"
    );

    let keys = redis.keys().await;
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys.contains(&"address:entry::77".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"version:entry::address".to_owned()),
        "{keys:?}"
    );
    let row = redis.hgetall(&format!("address:entry:{host_id}")).await;
    let field = |name: &str| row.get(name).map(String::as_str);
    assert_eq!(field("ip_addr"), Some("127.0.0.51"));
    assert_eq!(field("mask"), Some("32"));
    assert_eq!(field("port"), Some("5070"));
    assert_eq!(field("proto"), Some("udp"));
    assert_eq!(field("tag"), Some("110011"));
    assert_eq!(field("grp"), Some("1"));

    let on_pg = TestEdge::builder()
        .acl("sources = [\"postgres\"]")
        .config(&TestDb::section(&db.url))
        .start()
        .await;
    let on_redis = TestEdge::builder()
        .acl("sources = [\"redis\"]")
        .config(&redis.section(&redis_url()))
        .start()
        .await;
    // Every caller gets the same answer from both edges (the Kamailio row aside, which only
    // Redis has).
    for (last, port) in [
        (51, 5070),
        (51, 5071),
        (52, 0),
        (53, 0),
        (54, 0),
        (57, 0),
        (59, 0),
        (60, 0),
    ] {
        let mut codes = Vec::new();
        for edge in [&on_pg, &on_redis] {
            let local = std::net::SocketAddr::new(host(last), port);
            let mut pbx = TestPbx::udp_bound(local, edge.udp()).await;
            codes.push(pbx.request(&Request::options()).await.code);
        }
        assert_eq!(codes[0], codes[1], "127.0.0.{last}:{port}: {codes:?}");
        let expected = if matches!((last, port), (51, 5070) | (57, 0) | (59, 0)) {
            200
        } else {
            403
        };
        assert_eq!(codes[0], expected, "127.0.0.{last}:{port}");
    }
    let mut kamailio = TestPbx::udp(host(55), on_redis.udp()).await;
    assert_eq!(kamailio.request(&Request::options()).await.code, 200);

    // The sync's publish reaches a running edge: remove a row, sync again.
    db.execute(&format!(
        "DELETE FROM accounts.trunk_ips WHERE id = '{host_id}'"
    ))
    .await;
    let out = warp_edge(&[
        "acl",
        "sync",
        "--database-url",
        &db.url,
        "--redis-url",
        &redis_url(),
        "--prefix",
        &redis.prefix,
        "--channel",
        &redis.channel,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = std::net::SocketAddr::new(host(51), 5070);
    let mut pbx = TestPbx::udp_bound(local, on_redis.udp()).await;
    eventually_answers("the synced deletion reaches the redis edge", &mut pbx, 403).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn union_serves_the_trunks_file_and_postgres_together() {
    let db = TestDb::migrated().await;
    db.customer("120012", "active").await;
    // Trunk group ids are shared between sources: keep clear of the file's group 1.
    db.execute(
        "INSERT INTO accounts.trunk_groups (id, customer_ban, name) VALUES (5001, '120012', 'pg')",
    )
    .await;
    db.trunk_ip(5001, "127.0.0.61").await;
    let edge = TestEdge::builder()
        .trunks(Trunks::demo())
        .config(&TestDb::section(&db.url))
        .start()
        .await;
    let mut from_file = TestPbx::udp(CUSTOMER_PBX, edge.udp()).await;
    let mut from_pg = TestPbx::udp(host(61), edge.udp()).await;
    assert_eq!(from_file.request(&Request::options()).await.code, 200);
    assert_eq!(from_pg.request(&Request::options()).await.code, 200);

    // A file edit still applies, and PostgreSQL's rules stay.
    edge.replace_trunks(Trunks::demo().trunk_ip(1, "127.0.0.62").text());
    let mut second = TestPbx::udp(host(62), edge.udp()).await;
    eventually_answers("the file's new entry", &mut second, 200).await;
    assert_eq!(from_pg.request(&Request::options()).await.code, 200);
    // A broken file keeps its last good rules.
    edge.replace_trunks("[[trunk_ips]]\ncidr = \"127.0.0.300\"\n");
    eventually("the broken file is refused", || async {
        let m = edge.metrics().await;
        (m.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "file"), ("outcome", "failure")],
        ) >= 1)
            .then_some(())
    })
    .await;
    assert_eq!(second.request(&Request::options()).await.code, 200);
    assert_eq!(from_pg.request(&Request::options()).await.code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_postgres_falls_back_to_redis_while_it_is_down() {
    let db = TestDb::migrated().await;
    db.customer("130013", "active").await;
    let trunk = db.trunk_group("130013", "main").await;
    db.trunk_ip(trunk, "127.0.0.63").await;
    let redis = TestRedis::new();
    for (id, ip) in [("1", "127.0.0.63"), ("2", "127.0.0.64")] {
        redis
            .hset(
                &format!("address:entry::{id}"),
                &[
                    ("grp", "1"),
                    ("ip_addr", ip),
                    ("mask", "0"),
                    ("tag", "130013"),
                ],
            )
            .await;
    }
    let relay = TcpRelay::start(support::pg_socket()).await;
    let edge = TestEdge::builder()
        .acl("sources = [\"postgres\", \"redis\"]")
        .acl("combine = \"primary\"")
        .acl("primary = \"postgres\"")
        .config(&TestDb::section(&db.url_via(relay.address)))
        .config(&redis.section(&redis_url()))
        .start()
        .await;
    let mut both = TestPbx::udp(host(63), edge.udp()).await;
    let mut redis_only = TestPbx::udp(host(64), edge.udp()).await;
    assert_eq!(both.request(&Request::options()).await.code, 200);
    assert_eq!(
        redis_only.request(&Request::options()).await.code,
        403,
        "PostgreSQL is healthy: its rules alone apply"
    );

    relay.cut();
    eventually_answers(
        "Redis's rules apply while PostgreSQL is down",
        &mut redis_only,
        200,
    )
    .await;
    assert_eq!(both.request(&Request::options()).await.code, 200);

    relay.restore();
    eventually_answers("PostgreSQL's rules apply again", &mut redis_only, 403).await;
    assert_eq!(both.request(&Request::options()).await.code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_waits_for_a_snapshot() {
    let db = TestDb::migrated().await;
    db.customer("140014", "active").await;
    let trunk = db.trunk_group("140014", "main").await;
    db.trunk_ip(trunk, "127.0.0.65").await;
    let relay = TcpRelay::start(support::pg_socket()).await;
    relay.cut();
    let edge = TestEdge::builder()
        .acl("sources = [\"postgres\"]")
        .acl("startup_wait_ms = 0")
        .config(&TestDb::section(&db.url_via(relay.address)))
        .start()
        .await;
    assert_eq!(edge.admin_get("/readyz").await.0, 503);
    assert_eq!(edge.admin_get("/healthz").await.0, 200);
    let mut pbx = TestPbx::udp(host(65), edge.udp()).await;
    assert_eq!(
        pbx.request(&Request::options()).await.code,
        403,
        "nothing loaded: nothing allowed"
    );

    relay.restore();
    eventually("ready once PostgreSQL answers", || async {
        (edge.admin_get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);
}

#[test]
fn source_config_errors_name_the_key_and_exit_64() {
    let dir = support::TempDir::new("sources-config");
    dir.write("trunks.toml", Trunks::demo().text());
    let base = "[[listeners]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n\n[acl]\ntrunks_file = \"trunks.toml\"\n";
    let cases = [
        (
            format!("{base}\n[acl.postgres]\nurl = \"mysql://edge:s3cret@db/x\"\n"),
            "acl.postgres.url",
        ),
        (format!("{base}sources = [\"redis\"]\n"), "acl.sources[0]"),
        (format!("{base}primary = \"file\"\n"), "acl.primary"),
        (
            format!("{base}\n[acl.redis]\nurl = \"redis://127.0.0.1/\"\nscan_count = 1\n"),
            "acl.redis.scan_count",
        ),
        (
            format!("{base}\n[acl.postgres]\nurl = \"postgres://x@y/z\"\nlisten = true\n"),
            "acl.postgres",
        ),
    ];
    for (text, key) in cases {
        let file = dir.write("warp-edge.toml", &text);
        let out = warp_edge(&["check", "--config", &file.display().to_string()]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{key}: {said}");
        assert!(said.contains(key), "{said} should name {key}");
        assert!(!said.contains("s3cret"), "a password leaked: {said}");
    }
}

/// Continuous traffic while a 100k-entry table reloads 100 times: every request gets its
/// answer, and the allowed caller is never refused. Each round inserts or deletes a sentinel
/// trunk IP and waits until the edge enforces it. Half the rounds are deltas (the row
/// re-read); the other half also send a bare `trunk_ips` notification in the same
/// transaction, so they are full loads of the table. Every round builds and swaps a whole
/// snapshot.
/// `WARP_EDGE_RELOAD_ENTRIES` and `WARP_EDGE_RELOAD_ROUNDS` shrink it for a quick run.
#[tokio::test(flavor = "multi_thread")]
async fn no_request_unanswered_during_100_reloads_of_a_100k_table() {
    let entries: u32 = std::env::var("WARP_EDGE_RELOAD_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rounds: u32 = std::env::var("WARP_EDGE_RELOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let db = TestDb::migrated().await;
    db.customer("150015", "active").await;
    let trunk = db.trunk_group("150015", "bulk").await;
    // 10.0.0.0 upwards, one host each, plus the steady caller.
    db.execute(&format!(
        "INSERT INTO accounts.trunk_ips (trunk_group_id, ip) \
         SELECT {trunk}, '10.0.0.0'::inet + n FROM generate_series(1, {entries}) AS n"
    ))
    .await;
    db.trunk_ip(trunk, "127.0.0.66").await;
    let edge = TestEdge::builder()
        .acl("sources = [\"postgres\"]")
        .config(&TestDb::section(&db.url))
        .start()
        .await;
    let udp = edge.udp();

    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let traffic = tokio::spawn(async move {
        let mut pbx = TestPbx::udp(host(66), udp).await;
        let (mut sent, mut allowed) = (0u64, 0u64);
        while !stop2.load(Ordering::Acquire) {
            sent += 1;
            // `request` fails the test if no answer comes.
            if pbx.request(&Request::options()).await.code == 200 {
                allowed += 1;
            }
        }
        (sent, allowed)
    });

    let mut sentinel = TestPbx::udp(host(67), udp).await;
    let sentinel_id = "00000000-0000-4000-8000-000000000067";
    for round in 0..rounds {
        let full = if (round / 2) % 2 == 1 {
            "NOTIFY warp_edge_acl, 'trunk_ips';"
        } else {
            ""
        };
        let (change, code) = if round % 2 == 0 {
            let insert = format!(
                "INSERT INTO accounts.trunk_ips (id, trunk_group_id, ip) \
                 VALUES ('{sentinel_id}', {trunk}, '127.0.0.67');"
            );
            (insert, 200)
        } else {
            let delete = format!("DELETE FROM accounts.trunk_ips WHERE id = '{sentinel_id}';");
            (delete, 403)
        };
        db.execute(&format!("BEGIN; {change} {full} COMMIT;")).await;
        eventually_answers(&format!("round {round}: {change}"), &mut sentinel, code).await;
    }
    stop.store(true, Ordering::Release);
    let (sent, allowed) = traffic.await.expect("the traffic task ran to its end");
    assert!(sent > 0);
    assert_eq!(
        allowed, sent,
        "every request answered, and the steady caller never refused"
    );
    let metrics = edge.metrics().await;
    assert!(
        metrics.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "postgres"), ("outcome", "success")]
        ) > u64::from(rounds)
    );
    assert_eq!(
        metrics.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "postgres"), ("outcome", "failure")]
        ),
        0
    );
}
