//! The PostgreSQL ACL source against a real server (127.0.0.1:5432, `WARP_EDGE_TEST_PG`
//! overrides it): each test creates its own database, applies the shipped migrations, and
//! drops it at the end. The edge runs in-process on loopback as in `front_door.rs`; changes
//! are committed in PostgreSQL and observed as the edge's answers to OPTIONS.
//!
//! Nothing asserts on time: waits poll until a condition holds (10 s limit, failure only).

mod support;

use support::{
    closed_port, eventually, eventually_answers, host, Request, TcpRelay, TempDir, TestDb,
    TestEdge, TestPbx,
};
use warp_edge::telemetry::names::{ACL_RELOADS_TOTAL, ACL_SOURCE_CONNECTED, ACL_SOURCE_ENTRIES};

const BAN: &str = "300003";

/// An edge whose only ACL source is `url` (the trunks file's demo customer is not used).
async fn edge_on(url: &str) -> TestEdge {
    TestEdge::builder()
        .acl("sources = [\"postgres\"]")
        .config(&TestDb::section(url))
        .start()
        .await
}

/// A database with one active customer and one trunk group; returns it and the group's id.
async fn customer_db() -> (TestDb, i64) {
    let db = TestDb::migrated().await;
    db.customer(BAN, "active").await;
    let trunk = db.trunk_group(BAN, "main").await;
    (db, trunk)
}

fn pg_connected(up: bool) -> impl Fn(&support::Scrape) -> bool {
    move |m| {
        m.text().lines().any(|l| {
            l.starts_with(ACL_SOURCE_CONNECTED)
                && l.contains("source=\"postgres\"")
                && l.ends_with(if up { " 1" } else { " 0" })
        })
    }
}

// === schema ===

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_on_an_empty_database_and_again_as_a_no_op() {
    let db = TestDb::empty().await;
    let migrate = |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warp-edge"))
            .args(["db", "migrate", "--database-url", &url])
            .output()
            .expect("run warp-edge")
    };
    for round in 0..2 {
        let out = migrate(db.url.clone());
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tables = db
        .column(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'accounts' ORDER BY 1",
        )
        .await;
    let tables: Vec<String> = tables.into_iter().flatten().collect();
    assert_eq!(
        tables,
        [
            "customer_dedicated_ips",
            "customers",
            "trunk_groups",
            "trunk_ips"
        ]
    );
    assert_eq!(
        db.value("SELECT count(*)::text FROM _sqlx_migrations")
            .await,
        warp_edge::acl::sources::postgres::MIGRATOR
            .iter()
            .count()
            .to_string(),
        "each migration applied once"
    );
    // Every table notifies on insert, update and delete: the small tables per statement with
    // their name (migration 1), the big ones with the changed rows' ids (migration 2).
    let notifying = |trigger: &str| {
        format!(
            "SELECT string_agg(DISTINCT event_object_table || ' ' || event_manipulation, ',' \
               ORDER BY event_object_table || ' ' || event_manipulation) \
             FROM information_schema.triggers \
             WHERE trigger_schema = 'accounts' AND trigger_name LIKE '{trigger}'"
        )
    };
    assert_eq!(
        db.value(&notifying("warp_edge_notify")).await,
        "customers DELETE,customers INSERT,customers UPDATE,\
         trunk_groups DELETE,trunk_groups INSERT,trunk_groups UPDATE"
    );
    assert_eq!(
        db.value(&notifying("warp_edge_notify\\_%")).await,
        "customer_dedicated_ips DELETE,customer_dedicated_ips INSERT,customer_dedicated_ips UPDATE,\
         trunk_ips DELETE,trunk_ips INSERT,trunk_ips UPDATE"
    );
    // A bad URL is a usage error (64); an unreachable server is not.
    let out = migrate("mysql://root@127.0.0.1/x".to_owned());
    assert_eq!(out.status.code(), Some(64));
    let out = migrate(db.url_via(closed_port()));
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn constraints_refuse_bad_rows() {
    let (db, trunk) = customer_db().await;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for bad in [
        format!("INSERT INTO accounts.trunk_ips (trunk_group_id, ip, port) VALUES ({trunk}, '10.0.0.1', 70000)"),
        format!("INSERT INTO accounts.trunk_ips (trunk_group_id, ip, proto) VALUES ({trunk}, '10.0.0.1', 'sctp')"),
        "INSERT INTO accounts.trunk_ips (trunk_group_id, ip) VALUES (999999, '10.0.0.1')".to_owned(),
        "INSERT INTO accounts.customers (ban, name, status) VALUES ('x', 'x', 'gone')".to_owned(),
        "INSERT INTO accounts.trunk_groups (customer_ban, name, auth_type) VALUES ('300003', 'y', 'PIN')".to_owned(),
        "INSERT INTO accounts.customer_dedicated_ips (customer_ban, ip) VALUES ('300003', '10.0.0.0/24')".to_owned(),
    ] {
        assert!(
            sqlx::query(&bad).execute(&mut conn).await.is_err(),
            "accepted: {bad}"
        );
    }
    db.execute(&format!(
        "INSERT INTO accounts.trunk_ips (trunk_group_id, ip) VALUES ({trunk}, '10.0.0.1')"
    ))
    .await;
    let duplicate =
        format!("INSERT INTO accounts.trunk_ips (trunk_group_id, ip) VALUES ({trunk}, '10.0.0.1')");
    assert!(sqlx::query(&duplicate).execute(&mut conn).await.is_err());
    db.execute("INSERT INTO accounts.customer_dedicated_ips (customer_ban, ip) VALUES ('300003', '10.9.0.1')")
        .await;
    let taken = "INSERT INTO accounts.customer_dedicated_ips (customer_ban, ip) VALUES ('300003', '10.9.0.1')";
    assert!(sqlx::query(taken).execute(&mut conn).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_functions_pick_the_longest_enabled_match() {
    let (db, trunk) = customer_db().await;
    db.customer("400004", "suspended").await;
    let other = db.trunk_group("400004", "other").await;
    db.trunk_ip(trunk, "10.1.0.0/16").await;
    db.trunk_ip(other, "10.1.2.0/24").await;
    let host_id = db.trunk_ip(trunk, "10.1.2.3").await;
    db.execute(&format!(
        "UPDATE accounts.trunk_ips SET enabled = false WHERE id = '{host_id}'"
    ))
    .await;
    let disabled_group = db.trunk_group(BAN, "disabled").await;
    db.trunk_ip(disabled_group, "10.1.2.4/32").await;
    db.execute(&format!(
        "UPDATE accounts.trunk_groups SET enabled = false WHERE id = {disabled_group}"
    ))
    .await;

    let by_source = |ip: &str| {
        format!("SELECT customer_ban || ' ' || customer_status || ' ' || matched::text FROM accounts.get_customer_by_source_ip('{ip}')")
    };
    // The /24 beats the /16; the disabled /32s are ignored.
    assert_eq!(
        db.value(&by_source("10.1.2.3")).await,
        "400004 suspended 10.1.2.0/24"
    );
    assert_eq!(
        db.value(&by_source("10.1.2.4")).await,
        "400004 suspended 10.1.2.0/24"
    );
    assert_eq!(
        db.value(&by_source("10.1.9.9")).await,
        "300003 active 10.1.0.0/16"
    );
    assert!(db.column(&by_source("10.2.0.1")).await.is_empty());
    assert!(db.column(&by_source("2001:db8::1")).await.is_empty());

    db.execute("INSERT INTO accounts.customer_dedicated_ips (customer_ban, ip, resource_name) VALUES ('300003', '198.51.100.7', 'eip-1')")
        .await;
    db.execute("INSERT INTO accounts.customer_dedicated_ips (customer_ban, ip, enabled) VALUES ('400004', '198.51.100.8', false)")
        .await;
    let by_dest = |ip: &str| {
        format!("SELECT customer_ban || ' ' || resource_name FROM accounts.get_customer_by_dest_ip('{ip}')")
    };
    assert_eq!(db.value(&by_dest("198.51.100.7")).await, "300003 eip-1");
    assert!(db.column(&by_dest("198.51.100.8")).await.is_empty());
    assert!(db.column(&by_dest("198.51.100.9")).await.is_empty());
}

// === deltas ===

/// Listens on the edge's channel and on a fence channel of its own: after a change, the fence
/// notification arrives behind every notification the change sent (PostgreSQL delivers them
/// in commit order), so the change's payloads are known exactly.
struct Notices {
    listener: sqlx::postgres::PgListener,
    fences: u64,
}

impl Notices {
    async fn new(db: &TestDb) -> Notices {
        let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
        listener
            .listen_all(["warp_edge_acl", "test_fence"])
            .await
            .unwrap();
        Notices {
            listener,
            fences: 0,
        }
    }

    /// Runs `sql` and returns the change its notifications ask for.
    async fn after(&mut self, db: &TestDb, sql: &str) -> (postgres::Change, Vec<String>) {
        db.execute(sql).await;
        self.fences += 1;
        db.execute(&format!("NOTIFY test_fence, '{}'", self.fences))
            .await;
        let mut change = postgres::Change::default();
        let mut payloads = Vec::new();
        loop {
            let notice = self.listener.recv().await.unwrap();
            if notice.channel() == "test_fence" {
                assert_eq!(notice.payload(), self.fences.to_string());
                return (change, payloads);
            }
            change.note(notice.payload());
            payloads.push(notice.payload().to_owned());
        }
    }
}

use warp_edge::acl::sources::postgres;

#[tokio::test(flavor = "multi_thread")]
async fn deltas_converge_on_what_a_full_load_reads() {
    use sqlx::Connection;
    let (db, trunk) = customer_db().await;
    db.customer("400004", "active").await;
    db.trunk_ip(trunk, "10.0.0.1").await;
    db.execute(
        "INSERT INTO accounts.customer_dedicated_ips (customer_ban, ip) VALUES ('300003', '10.9.0.1')",
    )
    .await;
    let mut notices = Notices::new(&db).await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut mirror = None;
    postgres::refresh(&mut conn, 1, &mut mirror, &postgres::Change::full())
        .await
        .unwrap();

    let one = |ip: &str| format!("(SELECT id FROM accounts.trunk_ips WHERE ip = '{ip}')");
    // (the change, whether it must be a delta)
    let steps: Vec<(String, bool)> = vec![
        (format!("INSERT INTO accounts.trunk_ips (trunk_group_id, ip, port) VALUES \
                  ({trunk}, '10.0.0.2', 0), ({trunk}, '10.0.1.0/24', 5060), ({trunk}, '2001:db8::/64', 0)"), true),
        (format!("UPDATE accounts.trunk_ips SET ip = '10.0.0.3' WHERE id = {}", one("10.0.0.2")), true),
        (format!("UPDATE accounts.trunk_ips SET enabled = false WHERE id = {}", one("10.0.0.1")), true),
        (format!("UPDATE accounts.trunk_ips SET enabled = true, description = 'pbx 1' WHERE id = {}", one("10.0.0.1")), true),
        (format!("DELETE FROM accounts.trunk_ips WHERE id = {}", one("10.0.0.3")), true),
        (format!("UPDATE accounts.trunk_ips SET id = gen_random_uuid() WHERE id = {}", one("10.0.1.0/24")), true),
        // A new trunk group and its first IP in one transaction.
        ("BEGIN; \
          INSERT INTO accounts.trunk_groups (id, customer_ban, name) VALUES (900, '400004', 'new'); \
          INSERT INTO accounts.trunk_ips (trunk_group_id, ip) VALUES (900, '10.4.0.1'); \
          COMMIT;".to_owned(), true),
        // The group moves to another customer: its IPs' BAN changes with no trunk_ips row touched.
        ("UPDATE accounts.trunk_groups SET customer_ban = '300003' WHERE id = 900".to_owned(), true),
        ("UPDATE accounts.customers SET status = 'suspended' WHERE ban = '400004'".to_owned(), true),
        ("INSERT INTO accounts.customer_dedicated_ips (customer_ban, ip, resource_name) \
          VALUES ('400004', '10.9.0.2', 'eip')".to_owned(), true),
        ("UPDATE accounts.customer_dedicated_ips SET customer_ban = '400004' WHERE ip = '10.9.0.1'".to_owned(), true),
        ("DELETE FROM accounts.customer_dedicated_ips WHERE ip = '10.9.0.2'".to_owned(), true),
        // Deleting a group cascades to its IPs.
        ("DELETE FROM accounts.trunk_groups WHERE id = 900".to_owned(), true),
        // More than 100 rows in one statement, and TRUNCATE: everything is read again.
        (format!("INSERT INTO accounts.trunk_ips (trunk_group_id, ip) \
                  SELECT {trunk}, '11.0.0.0'::inet + n FROM generate_series(1, 150) AS n"), false),
        ("TRUNCATE accounts.customer_dedicated_ips".to_owned(), false),
        ("DELETE FROM accounts.trunk_ips WHERE ip << '11.0.0.0/8' AND ip < '11.0.0.50'".to_owned(), true),
    ];
    for (sql, delta) in &steps {
        let (change, payloads) = notices.after(&db, sql).await;
        assert!(!payloads.is_empty(), "{sql}: notified nothing");
        assert_eq!(!change.is_full(), *delta, "{sql}: {payloads:?}");
        postgres::refresh(&mut conn, 1, &mut mirror, &change)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let fresh = postgres::load(&mut conn, 1).await.unwrap();
        let applied = mirror.as_ref().unwrap().rules();
        assert_eq!(applied, &fresh, "{sql}: {payloads:?}");
    }
    let rules = mirror.as_ref().unwrap().rules();
    assert_eq!(
        rules.entries.len(),
        3 + 101,
        "10.0.0.1, the /24, the /64, 11.0.0.50-150"
    );
    assert!(rules.dedicated_ips.is_empty());

    // A delta the database refuses changes nothing (the source then reloads everything).
    let before = mirror.as_ref().unwrap().rules().clone();
    let mut bad = postgres::Change::default();
    bad.note("trunk_ips:not-a-uuid");
    assert!(postgres::refresh(&mut conn, 1, &mut mirror, &bad)
        .await
        .is_err());
    assert_eq!(mirror.as_ref().unwrap().rules(), &before);
}

// === the edge follows the database ===

#[tokio::test(flavor = "multi_thread")]
async fn trunk_ip_inserted_is_allowed_and_deleted_is_refused_again() {
    let (db, trunk) = customer_db().await;
    let edge = edge_on(&db.url).await;
    let mut pbx = TestPbx::udp(host(21), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 403);
    // The trunks file's demo PBX is not a source here.
    let mut demo = TestPbx::udp(host(10), edge.udp()).await;
    assert_eq!(demo.request(&Request::options()).await.code, 403);

    let id = db.trunk_ip(trunk, "127.0.0.21").await;
    eventually_answers("the inserted trunk IP is allowed", &mut pbx, 200).await;

    db.execute(&format!("DELETE FROM accounts.trunk_ips WHERE id = '{id}'"))
        .await;
    eventually_answers("the deleted trunk IP is refused", &mut pbx, 403).await;

    // A CIDR range, then disabling it.
    let range = db.trunk_ip(trunk, "127.0.0.16/28").await;
    eventually_answers("the range is allowed", &mut pbx, 200).await;
    db.execute(&format!(
        "UPDATE accounts.trunk_ips SET enabled = false WHERE id = '{range}'"
    ))
    .await;
    eventually_answers("the disabled range is refused", &mut pbx, 403).await;

    let metrics = edge.metrics().await;
    assert!(
        metrics.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "postgres"), ("outcome", "success")]
        ) >= 5,
        "the start and one per change at least"
    );
    assert!(pg_connected(true)(&metrics), "{}", metrics.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_customer_gets_403_and_reactivated_is_allowed() {
    let (db, trunk) = customer_db().await;
    db.trunk_ip(trunk, "127.0.0.22").await;
    let edge = edge_on(&db.url).await;
    let mut pbx = TestPbx::udp(host(22), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);

    db.execute(&format!(
        "UPDATE accounts.customers SET status = 'suspended' WHERE ban = '{BAN}'"
    ))
    .await;
    eventually_answers("the suspended customer is refused", &mut pbx, 403).await;
    let mut invite_pbx = TestPbx::udp(host(22), edge.udp()).await;
    assert_eq!(invite_pbx.request(&Request::invite()).await.code, 403);

    db.execute(&format!(
        "UPDATE accounts.customers SET status = 'active' WHERE ban = '{BAN}'"
    ))
    .await;
    eventually_answers("the reactivated customer is allowed", &mut pbx, 200).await;

    // A disabled trunk group refuses its IPs as well.
    db.execute(&format!(
        "UPDATE accounts.trunk_groups SET enabled = false WHERE id = {trunk}"
    ))
    .await;
    eventually_answers("the disabled trunk group is refused", &mut pbx, 403).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_database_keeps_the_snapshot_then_catches_up() {
    let (db, trunk) = customer_db().await;
    db.trunk_ip(trunk, "127.0.0.23").await;
    let relay = TcpRelay::start(support::pg_socket()).await;
    let edge = edge_on(&db.url_via(relay.address)).await;
    let mut pbx = TestPbx::udp(host(23), edge.udp()).await;
    let mut newcomer = TestPbx::udp(host(24), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);

    relay.cut();
    eventually("the source reports itself down", || async {
        let m = edge.metrics().await;
        pg_connected(false)(&m).then_some(())
    })
    .await;
    // The last snapshot stays in force, and the edge still counts as ready.
    assert_eq!(pbx.request(&Request::options()).await.code, 200);
    assert_eq!(edge.admin_get("/readyz").await.0, 200);
    // Changes made meanwhile...
    db.trunk_ip(trunk, "127.0.0.24").await;
    eventually("reconnection attempts fail while it is down", || async {
        let m = edge.metrics().await;
        (m.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "postgres"), ("outcome", "failure")],
        ) >= 2)
            .then_some(())
    })
    .await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);

    // ...are caught up once it is back.
    relay.restore();
    eventually_answers("the change made while down applies", &mut newcomer, 200).await;
    let metrics = edge.metrics().await;
    assert!(pg_connected(true)(&metrics), "{}", metrics.text());
    assert_eq!(pbx.request(&Request::options()).await.code, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_backend_reconnects_and_catches_up() {
    let (db, trunk) = customer_db().await;
    db.trunk_ip(trunk, "127.0.0.25").await;
    let edge = edge_on(&db.url).await;
    let mut pbx = TestPbx::udp(host(25), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);
    let successes = |m: &support::Scrape| {
        m.counter(
            ACL_RELOADS_TOTAL,
            &[("source", "postgres"), ("outcome", "success")],
        )
    };
    let before = successes(&edge.metrics().await);

    // Kill the edge's session and, in the same transaction, remove the PBX: the NOTIFY is
    // sent to a session that no longer exists, so only the reload on reconnect can see it.
    db.execute(&format!(
        "BEGIN; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
           WHERE datname = '{}' AND application_name = '{}'; \
         DELETE FROM accounts.trunk_ips WHERE trunk_group_id = {trunk}; \
         COMMIT;",
        db.name,
        warp_edge::acl::sources::postgres::APPLICATION_NAME
    ))
    .await;
    eventually_answers(
        "the change made at the disconnection applies",
        &mut pbx,
        403,
    )
    .await;
    let metrics = edge.metrics().await;
    assert!(successes(&metrics) > before);
    assert!(pg_connected(true)(&metrics), "{}", metrics.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_starts_from_the_last_known_good_file_when_postgres_is_unreachable() {
    let (db, trunk) = customer_db().await;
    db.trunk_ip(trunk, "127.0.0.26").await;
    let state = TempDir::new("lkg");
    let lkg = state.path().join("acl-lkg.json");
    let lkg_line = format!("last_known_good = \"{}\"", lkg.display());
    {
        let edge = TestEdge::builder()
            .acl("sources = [\"postgres\"]")
            .acl(&lkg_line)
            .config(&TestDb::section(&db.url))
            .start()
            .await;
        let mut pbx = TestPbx::udp(host(26), edge.udp()).await;
        assert_eq!(pbx.request(&Request::options()).await.code, 200);
        eventually("the last-known-good file is written", || async {
            lkg.exists().then_some(())
        })
        .await;
    }

    // The database is gone for the next edge: nothing listens on its port.
    let edge = TestEdge::builder()
        .acl("sources = [\"postgres\"]")
        .acl(&lkg_line)
        .acl("startup_wait_ms = 2000")
        .config(&TestDb::section(&db.url_via(closed_port())))
        .start()
        .await;
    let mut pbx = TestPbx::udp(host(26), edge.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 200);
    let mut stranger = TestPbx::udp(host(27), edge.udp()).await;
    assert_eq!(stranger.request(&Request::options()).await.code, 403);
    assert_eq!(edge.admin_get("/readyz").await.0, 200);
    let metrics = edge.metrics().await;
    assert!(pg_connected(false)(&metrics), "{}", metrics.text());
    assert_eq!(
        metrics.counter(ACL_SOURCE_ENTRIES, &[("source", "postgres")]),
        1
    );

    // Without the file the same edge has nothing to serve and says so.
    let bare = TestEdge::builder()
        .acl("sources = [\"postgres\"]")
        .acl("startup_wait_ms = 2000")
        .config(&TestDb::section(&db.url_via(closed_port())))
        .start()
        .await;
    assert_eq!(bare.admin_get("/readyz").await.0, 503);
    let mut pbx = TestPbx::udp(host(26), bare.udp()).await;
    assert_eq!(pbx.request(&Request::options()).await.code, 403);
}
