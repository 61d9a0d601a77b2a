//! ACL store sources (issue 5), against the real PostgreSQL and Redis on loopback. Not a
//! criterion bench: each case drives real stores and prints medians and p99. Run one case:
//!
//! ```sh
//! cargo bench --bench acl_sources -- latency [changes=100] [table=10000]
//! cargo bench --bench acl_sources -- redis-latency [changes=100] [table=10000]
//! cargo bench --bench acl_sources -- reload  [entries=100000] [runs=20]
//! cargo bench --bench acl_sources -- cpu     [requests=100000] [rounds=3] [entries=100000] [rate=0]
//! ```
//!
//! - `latency`: COMMIT in PostgreSQL to the rule enforced by a running edge (in-process, its
//!   snapshot polled every 100 µs from a thread of its own), over alternating inserts and
//!   deletes of one trunk IP in a table of `table` entries.
//! - `redis-latency`: the same through Redis: a platform row written (HSET) or deleted (DEL),
//!   seen through keyspace notifications, in a key space of `table` rows.
//! - `reload`: a full reload of `entries` trunk IPs from PostgreSQL and from Redis, split
//!   into load (query or SCAN + HMGET, decoding), build (`Snapshot::build`) and swap
//!   (`publish`: store plus gauges); and the last-known-good file's write and read.
//! - `cpu`: the release binary `warp-edge run` on a 100k-entry PostgreSQL table answering
//!   OPTIONS from 4 concurrent UDP callers, with and without continuous reloads, in
//!   alternating rounds. Reloads: one trunk IP toggled `rate` times a second, or with `rate=0`
//!   as fast as the edge applies it (each change waits until it is enforced). CPU comes from
//!   `/proc/<pid>/task/*/stat`: the `warp-edge-acl` thread (store I/O, builds) apart from the
//!   threads that serve calls; the ACL thread's CPU per change is printed too.
//!
//! Uses `WARP_EDGE_TEST_PG` / `WARP_EDGE_TEST_REDIS` like the tests. Results: BENCHMARKS.md.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection, Row};
use warp_edge::acl::reload::publish;
use warp_edge::acl::sources::{lkg, postgres, redis as redis_source};
use warp_edge::acl::{Acl, AclRequest, Proto, RuleSet, Snapshot};
use warp_edge::config::{Config, SourceKind};
use warp_edge::telemetry::Metrics;

fn pg_server() -> String {
    std::env::var("WARP_EDGE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn redis_url() -> String {
    std::env::var("WARP_EDGE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A database of the bench's own, migrated, dropped by [`BenchDb::drop_now`].
struct BenchDb {
    name: String,
    url: String,
    conn: PgConnection,
}

impl BenchDb {
    async fn new() -> BenchDb {
        let name = format!("warp_edge_bench_{}", std::process::id());
        let mut admin = PgConnection::connect(&format!("{}/postgres", pg_server()))
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute(&*format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .expect("drop");
        admin
            .execute(&*format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create");
        let url = format!("{}/{name}", pg_server());
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        postgres::MIGRATOR.run(&mut conn).await.expect("migrate");
        conn.execute(
            "INSERT INTO accounts.customers (ban, name) VALUES ('100001', 'bench'); \
             INSERT INTO accounts.trunk_groups (id, customer_ban, name) VALUES (1, '100001', 'bulk')",
        )
        .await
        .expect("customer");
        BenchDb { name, url, conn }
    }

    /// `entries` trunk IPs: 10.0.0.0 upwards, every 3rd a /28, every 7th UDP-only.
    async fn fill(&mut self, entries: u32) {
        self.conn
            .execute(&*format!(
                "INSERT INTO accounts.trunk_ips (trunk_group_id, ip, proto) \
                 SELECT 1, CASE WHEN n % 3 = 0 THEN set_masklen('10.0.0.0'::inet + n * 16, 28) \
                                ELSE '11.0.0.0'::inet + n END, \
                        CASE WHEN n % 7 = 0 THEN 'udp' ELSE 'any' END \
                 FROM generate_series(1, {entries}) AS n"
            ))
            .await
            .expect("fill");
    }

    async fn execute(&mut self, sql: &str) -> String {
        let row = sqlx::query(sql)
            .fetch_optional(&mut self.conn)
            .await
            .expect(sql);
        row.map(|r| r.try_get::<String, _>(0).unwrap_or_default())
            .unwrap_or_default()
    }

    async fn drop_now(self) {
        drop(self.conn);
        let mut admin = PgConnection::connect(&format!("{}/postgres", pg_server()))
            .await
            .expect("connect");
        let _ = admin
            .execute(&*format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// (median, p99, max) of `values`.
fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), values[values.len() - 1])
}

fn print_stats(what: &str, unit: &str, values: Vec<f64>) {
    let n = values.len();
    let (median, p99, max) = stats(values);
    println!("{what:<40} n={n:<4} median {median:>9.2} {unit}  p99 {p99:>9.2} {unit}  max {max:>9.2} {unit}");
}

fn arg(position: usize, default: u64) -> u64 {
    std::env::args()
        .filter(|a| !a.starts_with("--"))
        .nth(position)
        .and_then(|a| a.split('=').next_back().and_then(|v| v.parse().ok()))
        .unwrap_or(default)
}

/// Writes a config running only the PostgreSQL source, in a fresh temp dir.
/// The edge's config with PostgreSQL at `url` as its only ACL source.
fn postgres_source(url: &str) -> String {
    format!(
        "sources = [\"postgres\"]\nstartup_wait_ms = 60000\n\n\
         [acl.postgres]\nurl = \"{url}\"\nreload_interval_ms = 3600000\n"
    )
}

fn write_config(source: &str, udp: SocketAddr) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warp-edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("trunks.toml"), "").expect("trunks");
    let config = dir.join("warp-edge.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\ntransport = \"udp\"\naddress = \"{udp}\"\n\n\
             [admin]\naddress = \"127.0.0.1:0\"\n\n\
             [acl]\ntrunks_file = \"trunks.toml\"\n{source}\n\
             [log]\nlevel = \"warn\"\n"
        ),
    )
    .expect("config");
    config
}

// === latency ===

/// 127.0.0.99, the address the latency cases add and remove.
const LATENCY_REQUEST: AclRequest = AclRequest {
    source: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99)), 5060),
    local: IpAddr::V4(Ipv4Addr::LOCALHOST),
    transport: Proto::Udp,
};

/// Milliseconds from `written` until the edge's snapshot allows `request` (or refuses it),
/// polled every 100 µs from a thread of its own.
async fn enforced(acl: &Arc<Acl>, request: AclRequest, want: bool, written: Instant) -> f64 {
    let acl = acl.clone();
    let waited = tokio::task::spawn_blocking(move || loop {
        if acl.load().decide(&request).is_allow() == want {
            return written.elapsed();
        }
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "never enforced"
        );
        std::thread::sleep(Duration::from_micros(100));
    })
    .await
    .expect("poller");
    waited.as_secs_f64() * 1e3
}

async fn latency(changes: u64, table: u64) {
    let mut db = BenchDb::new().await;
    db.fill(table as u32).await;
    let config = write_config(&postgres_source(&db.url), "127.0.0.1:0".parse().unwrap());
    let (config, trunks) = Config::load_all(&config).expect("config");
    let edge = warp_edge::edge::start(&config, trunks).await.expect("edge");
    let acl = edge.acl.clone();
    let request = LATENCY_REQUEST;
    let mut samples = Vec::new();
    let mut present: Option<String> = None;
    for _ in 0..changes {
        let want = present.is_none();
        match present.take() {
            None => {
                present = Some(
                    db.execute(
                        "INSERT INTO accounts.trunk_ips (trunk_group_id, ip) \
                         VALUES (1, '127.0.0.99') RETURNING id::text",
                    )
                    .await,
                );
            }
            Some(id) => {
                db.execute(&format!("DELETE FROM accounts.trunk_ips WHERE id = '{id}'"))
                    .await;
            }
        }
        // The statement has returned: it is committed (autocommit).
        samples.push(enforced(&acl, request, want, Instant::now()).await);
    }
    println!("COMMIT -> enforced, table of {table} entries, {changes} changes:");
    print_stats("commit_to_enforced", "ms", samples);
    drop(edge);
    db.drop_now().await;
}

// === reload ===

/// The phases of full reloads, in milliseconds.
#[derive(Default)]
struct Phases {
    load: Vec<f64>,
    build: Vec<f64>,
    swap: Vec<f64>,
    total: Vec<f64>,
    free: Vec<f64>,
    /// As in the edge: the snapshot a swap replaced is kept until the next swap, then freed.
    replaced: Option<Arc<Snapshot>>,
}

impl Phases {
    /// Builds and swaps `rules`, loaded since `started`, as the edge does.
    fn apply(&mut self, started: Instant, rules: RuleSet, acl: &Acl, metrics: &Metrics) {
        let loaded = Instant::now();
        let snapshot = Snapshot::build(Arc::new(rules), 1).expect("build");
        let built = Instant::now();
        let old = publish(acl, metrics, snapshot);
        let swapped = Instant::now();
        drop(self.replaced.replace(old));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.free.push(ms(swapped.elapsed()));
        self.load.push(ms(loaded - started));
        self.build.push(ms(built - loaded));
        self.swap.push(ms(swapped - built));
        self.total.push(ms(swapped - started));
    }

    fn print(self, title: &str, load: &str) {
        println!("{title}");
        print_stats(load, "ms", self.load);
        print_stats("build", "ms", self.build);
        print_stats("swap (publish)", "ms", self.swap);
        print_stats("load + build + swap", "ms", self.total);
        print_stats("free the snapshot swapped out before", "ms", self.free);
    }
}

async fn reload(entries: u64, runs: u64) {
    let metrics = Metrics::new();
    let acl = Acl::default();
    let mut db = BenchDb::new().await;
    db.fill(entries as u32).await;
    let mut phases = Phases::default();
    for _ in 0..runs {
        let started = Instant::now();
        let rules = postgres::load(&mut db.conn, 1).await.expect("load");
        assert_eq!(rules.entries.len() as u64, entries);
        phases.apply(started, rules, &acl, &metrics);
    }
    phases.print(
        &format!("PostgreSQL full reload of {entries} trunk IPs, {runs} runs:"),
        "postgres load (one REPEATABLE READ tx)",
    );
    // What each change also costs with `acl.last_known_good` set, and a start-up read.
    let rules = postgres::load(&mut db.conn, 1).await.expect("load");
    assert_eq!(rules.entries.len() as u64, entries);
    let file =
        std::env::temp_dir().join(format!("warp-edge-bench-lkg-{}.json", std::process::id()));
    let (mut write, mut read) = (vec![], vec![]);
    for _ in 0..runs {
        let t0 = Instant::now();
        lkg::write(&file, 1, &[(SourceKind::Postgres, &rules)]).expect("write");
        let t1 = Instant::now();
        let back = lkg::read(&file).expect("read").expect("file");
        let t2 = Instant::now();
        assert_eq!(back.sources.len(), 1);
        write.push((t1 - t0).as_secs_f64() * 1e3);
        read.push((t2 - t1).as_secs_f64() * 1e3);
    }
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&file);
    println!("last-known-good file of {entries} entries ({size} bytes):");
    print_stats("write (JSON, fsync, rename)", "ms", write);
    print_stats("read (start-up)", "ms", read);
    db.drop_now().await;

    // The same rows in Redis, in the platform's format.
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let prefix = format!("bench{}:", std::process::id());
    fill_redis(&mut conn, &prefix, entries).await;
    let mut phases = Phases::default();
    for _ in 0..runs {
        let started = Instant::now();
        let rules = redis_source::load(&mut conn, &prefix, 1000)
            .await
            .expect("load");
        assert_eq!(rules.entries.len() as u64, entries);
        phases.apply(started, rules, &acl, &metrics);
    }
    phases.print(
        &format!("Redis full reload of {entries} address rows, {runs} runs:"),
        "redis load (SCAN + pipelined HMGET)",
    );
    clear_redis(&mut conn, &prefix).await;
}

/// `entries` platform-format address rows under `prefix`, shaped like [`BenchDb::fill`]'s.
async fn fill_redis(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, entries: u64) {
    for chunk in (1..=entries).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for n in chunk {
            let (ip, mask) = if n % 3 == 0 {
                (
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (*n as u32) * 16),
                    28,
                )
            } else {
                (
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(11, 0, 0, 0)) + *n as u32),
                    0,
                )
            };
            pipe.cmd("HSET")
                .arg(format!("{prefix}address:entry:{n:08}"))
                .arg(&[
                    ("grp", "1".to_owned()),
                    ("ip_addr", ip.to_string()),
                    ("mask", mask.to_string()),
                    ("port", "0".to_owned()),
                    ("proto", if n % 7 == 0 { "udp" } else { "any" }.to_owned()),
                    ("tag", "100001".to_owned()),
                ])
                .ignore();
        }
        pipe.query_async::<()>(conn).await.expect("HSET");
    }
}

/// Deletes every key under `prefix`.
async fn clear_redis(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(conn)
                .await
                .expect("DEL");
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
}

/// Keyspace notifications to enforced: an edge on Redis alone (keyspace notifications on),
/// a table of `table` rows, one row written and deleted alternately.
async fn redis_latency(changes: u64, table: u64) {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let prefix = format!("benchlat{}:", std::process::id());
    fill_redis(&mut conn, &prefix, table).await;
    let source = format!(
        "sources = [\"redis\"]\nstartup_wait_ms = 60000\n\n\
         [acl.redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n\
         keyspace_notifications = true\nreload_interval_ms = 3600000\n",
        redis_url()
    );
    let config = write_config(&source, "127.0.0.1:0".parse().unwrap());
    let (config, trunks) = Config::load_all(&config).expect("config");
    let edge = warp_edge::edge::start(&config, trunks).await.expect("edge");
    let key = format!("{prefix}address:entry:latency");
    let mut samples = Vec::new();
    for change in 0..changes {
        let want = change % 2 == 0;
        if want {
            redis::cmd("HSET")
                .arg(&key)
                .arg(&[
                    ("grp", "1"),
                    ("ip_addr", "127.0.0.99"),
                    ("mask", "0"),
                    ("port", "0"),
                    ("proto", "any"),
                    ("tag", "100001"),
                ])
                .query_async::<()>(&mut conn)
                .await
                .expect("HSET");
        } else {
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut conn)
                .await
                .expect("DEL");
        }
        samples.push(enforced(&edge.acl, LATENCY_REQUEST, want, Instant::now()).await);
    }
    println!("Redis write -> enforced, keyspace notifications, table of {table} rows, {changes} changes:");
    print_stats("write_to_enforced", "ms", samples);
    drop(edge);
    clear_redis(&mut conn, &prefix).await;
}

// === cpu ===

/// CPU seconds of the process's threads: (ACL thread, every other thread).
fn thread_cpu(pid: u32) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let (mut acl, mut rest) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let Some(after) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = after.split(' ').collect();
        let cpu: f64 = fields
            .get(11)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
        if comm.trim() == "warp-edge-acl" {
            acl += cpu / ticks;
        } else {
            rest += cpu / ticks;
        }
    }
    (acl, rest)
}

fn options(local: SocketAddr, serial: u64) -> Vec<u8> {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{serial:x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:bench@{ip}>;tag=b{serial:x}\r\n\
         To: <sip:127.0.0.1>\r\n\
         Call-ID: {serial:x}@{ip}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        ip = local.ip()
    )
    .into_bytes()
}

/// One UDP caller: `count` OPTIONS, each waiting for its answer (resent after 1 s of
/// silence, as a UAC retransmits); returns how many were 200 and how many were resent.
async fn caller(ip: Ipv4Addr, edge: SocketAddr, count: u64, base: u64) -> (u64, u64) {
    let socket = tokio::net::UdpSocket::bind((ip, 0)).await.expect("bind");
    let local = socket.local_addr().expect("addr");
    let (mut ok, mut resent) = (0, 0);
    let mut buf = vec![0u8; 4096];
    for i in 0..count {
        let request = options(local, base + i);
        for attempt in 0.. {
            assert!(attempt < 10, "no answer after 10 tries");
            socket.send_to(&request, edge).await.expect("send");
            match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    if buf[..n].starts_with(b"SIP/2.0 200") {
                        ok += 1;
                    }
                    break;
                }
                _ => resent += 1,
            }
        }
    }
    (ok, resent)
}

/// One OPTIONS from `ip`: true when answered 200 within a second.
async fn allowed(ip: Ipv4Addr, edge: SocketAddr) -> bool {
    let Ok(socket) = tokio::net::UdpSocket::bind((ip, 0)).await else {
        return false;
    };
    let Ok(local) = socket.local_addr() else {
        return false;
    };
    if socket.send_to(&options(local, 0), edge).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"SIP/2.0 200")
    )
}

async fn cpu(requests: u64, rounds: u64, entries: u64, rate: u64) {
    let mut db = BenchDb::new().await;
    db.fill(entries as u32).await;
    db.execute("INSERT INTO accounts.trunk_ips (trunk_group_id, ip) VALUES (1, '127.0.0.70/31')")
        .await;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let edge_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = write_config(&postgres_source(&db.url), edge_addr);
    let log = config.with_file_name("edge.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_warp-edge"))
        .args(["run", "--config", &config.display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("edge log"))
        .spawn()
        .expect("start warp-edge");
    let pid = child.id();
    // Kill the edge even if the bench panics.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reap(child);
    // Ready when the steady caller is allowed.
    let started = Instant::now();
    while !allowed(Ipv4Addr::new(127, 0, 0, 70), edge_addr).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "edge never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = Arc::new(tokio::sync::Mutex::new(db));
    let mut results: Vec<(bool, f64, f64, f64)> = Vec::new();
    let serial = Arc::new(AtomicU64::new(1));
    for round in 0..rounds * 2 {
        let reloading = round % 2 == 1;
        let stop = Arc::new(AtomicBool::new(false));
        let reloads = Arc::new(AtomicU64::new(0));
        let reloader = reloading.then(|| {
            let (db, stop, reloads) = (db.clone(), stop.clone(), reloads.clone());
            tokio::spawn(async move {
                let mut present: Option<String> = None;
                while !stop.load(Ordering::Acquire) {
                    let want = present.is_none();
                    let mut guard = db.lock().await;
                    match present.take() {
                        None => {
                            present = Some(
                                guard
                                    .execute(
                                        "INSERT INTO accounts.trunk_ips (trunk_group_id, ip) \
                                         VALUES (1, '127.0.0.72') RETURNING id::text",
                                    )
                                    .await,
                            )
                        }
                        Some(id) => {
                            guard
                                .execute(&format!(
                                    "DELETE FROM accounts.trunk_ips WHERE id = '{id}'"
                                ))
                                .await;
                        }
                    }
                    drop(guard);
                    if rate > 0 {
                        tokio::time::sleep(Duration::from_secs_f64(1.0 / rate as f64)).await;
                    } else {
                        while !stop.load(Ordering::Acquire)
                            && allowed(Ipv4Addr::new(127, 0, 0, 72), edge_addr).await != want
                        {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    reloads.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(id) = present {
                    db.lock()
                        .await
                        .execute(&format!("DELETE FROM accounts.trunk_ips WHERE id = '{id}'"))
                        .await;
                }
            })
        });
        if reloading {
            // Let the first reload start before measuring.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let before = thread_cpu(pid);
        let reloads_before = reloads.load(Ordering::Relaxed);
        let began = Instant::now();
        let per = requests / 4;
        let mut callers = Vec::new();
        for c in 0..4u8 {
            let ip = Ipv4Addr::new(127, 0, 0, 70 + c % 2);
            let base = serial.fetch_add(per, Ordering::Relaxed);
            callers.push(tokio::spawn(caller(ip, edge_addr, per, base)));
        }
        let (mut ok, mut resent) = (0, 0);
        for c in callers {
            let (o, r) = c.await.expect("caller");
            ok += o;
            resent += r;
        }
        let after = thread_cpu(pid);
        let seconds = began.elapsed().as_secs_f64();
        let changes = reloads.load(Ordering::Relaxed) - reloads_before;
        stop.store(true, Ordering::Release);
        if let Some(task) = reloader {
            task.await.expect("reloader");
            // Let the last reload finish outside the next measurement.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        assert_eq!(ok, per * 4, "every request answered 200");
        let calls = (per * 4) as f64;
        let serving = (after.1 - before.1) / calls * 1e6;
        let total = (after.1 + after.0 - before.1 - before.0) / calls * 1e6;
        let per_change = (after.0 - before.0) * 1e3 / changes.max(1) as f64;
        println!(
            "round {round}: {:.0} requests/s for {seconds:.1} s, {} changes, {resent} resent; serving threads {serving:.2} µs/request, whole process {total:.2} µs/request{}",
            calls / seconds,
            if reloading { changes.to_string() } else { "no".to_owned() },
            if reloading { format!(", ACL thread {per_change:.1} ms/change") } else { String::new() }
        );
        results.push((reloading, serving, total, per_change));
    }
    drop(child);
    for reloading in [false, true] {
        let pick = |f: fn(&(bool, f64, f64, f64)) -> f64| {
            results
                .iter()
                .filter(|r| r.0 == reloading)
                .map(f)
                .collect::<Vec<_>>()
        };
        let label = if reloading {
            "with reloads"
        } else {
            "without reloads"
        };
        print_stats(
            &format!("{label}: serving threads"),
            "µs/req",
            pick(|r| r.1),
        );
        print_stats(&format!("{label}: whole process"), "µs/req", pick(|r| r.2));
        if reloading {
            print_stats("ACL thread per change", "ms", pick(|r| r.3));
        }
    }
    if let Ok(db) = Arc::try_unwrap(db) {
        db.into_inner().drop_now().await;
    }
}

fn main() {
    let case = std::env::args()
        .filter(|a| !a.starts_with("--"))
        .nth(1)
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        match case.as_str() {
            "latency" => latency(arg(2, 100), arg(3, 10_000)).await,
            "redis-latency" => redis_latency(arg(2, 100), arg(3, 10_000)).await,
            "reload" => reload(arg(2, 100_000), arg(3, 20)).await,
            "cpu" => cpu(arg(2, 100_000), arg(3, 3), arg(4, 100_000), arg(5, 0)).await,
            _ => println!("usage: cargo bench --bench acl_sources -- latency|redis-latency|reload|cpu [args] (see the file's docs)"),
        }
    });
}
