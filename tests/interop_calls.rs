//! Calls through the edge between SIPp peers (issue 4): a SIPp PBX on 127.0.0.10 places calls
//! through an in-process edge to SIPp vendors on 127.0.0.2x, with the scenarios in
//! `tests/interop/` that follow the dialog route set (`rrs="true"`, `[routes]`,
//! `[next_url]`, `[last_Record-Route:]`). Every call must succeed on both SIPp sides.
//!
//! SIPp is installed by `.ci/run`; outside CI a missing SIPp skips these tests with a note.
//! Nothing here measures time: SIPp's own `-timeout` only turns a hang into a failure.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use warp_edge::config::Config;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

fn sipp_available() -> bool {
    let found = std::process::Command::new("sipp")
        .arg("-v")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "SIPp is required in CI (apt-get install sip-tester)"
        );
        eprintln!("sipp not installed: skipping (apt-get install sip-tester)");
    }
    found
}

/// A port free for UDP and TCP on `ip`.
fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind UDP");
        let port = udp.local_addr().expect("UDP address").port();
        if std::net::TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for UDP and TCP on {ip}");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "warp-edge-interop-calls-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An edge whose demo customer (127.0.0.10) routes to `gateways` (`(address, transport)`,
/// tried in order), sending from the egress address `egress`.
async fn start_edge(
    dir: &TempDir,
    gateways: &[(SocketAddr, &str)],
    egress: &str,
) -> warp_edge::edge::Edge {
    let edge_toml = format!(
        r#"
[[listeners]]
transport = "udp"
address = "127.0.0.1:0"

[[listeners]]
transport = "tcp"
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[acl]
trunks_file = "trunks.toml"

[proxy]
egress = ["{egress}:0"]
dialog_key = "interop-calls-key-0123456789abcdef"

[log]
level = "warn"
"#
    );
    let mut trunks = String::from(
        r#"
[[customers]]
ban = "100001"
name = "Interop PBX"

[[trunk_groups]]
id = 1
ban = "100001"
name = "pbx"
route = "vendors"

[[trunk_ips]]
trunk_group = 1
cidr = "127.0.0.10/32"
"#,
    );
    let mut names = Vec::new();
    for (i, (address, transport)) in gateways.iter().enumerate() {
        trunks.push_str(&format!(
            "\n[[gateways]]\nname = \"vendor-{i}\"\nhost = \"{}\"\nport = {}\ntransport = \"{transport}\"\npriority = {i}\n",
            address.ip(),
            address.port()
        ));
        names.push(format!("\"vendor-{i}\""));
    }
    trunks.push_str(&format!(
        "\n[[routes]]\nname = \"vendors\"\ngateways = [{}]\n",
        names.join(", ")
    ));
    let config_path = dir.0.join("warp-edge.toml");
    std::fs::write(&config_path, edge_toml).expect("write config");
    std::fs::write(dir.0.join("trunks.toml"), trunks).expect("write trunks");
    let (config, trunks) = Config::load_all(&config_path).expect("valid config");
    warp_edge::edge::start(&config, trunks)
        .await
        .expect("edge starts")
}

/// A SIPp command with the flags that keep a run honest: a hard overall timeout, errors on
/// timeout, large socket buffers.
fn sipp(
    dir: &TempDir,
    scenario_file: &str,
    local: &str,
    transport: &str,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg("-sf")
        .arg(scenario(scenario_file))
        .args(["-i", local, "-bind_local", "-t", transport])
        .args(["-timeout", "120s", "-timeout_error", "-nostdin"])
        .args(["-buff_size", "4194304", "-max_socket", "1000"])
        .current_dir(&dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Waits for a SIPp process; true when it exited 0 (every call succeeded).
async fn succeeded(what: &str, child: tokio::process::Child) -> bool {
    let output = child.wait_with_output().await.expect("sipp runs");
    if !output.status.success() {
        eprintln!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}

/// `calls` calls at `rate` per second from the SIPp PBX through the edge to one SIPp vendor.
async fn calls_through(tag: &str, transport: &str, vendor_ip: &str, calls: u32, rate: u32) {
    let dir = TempDir::new(tag);
    let vendor_ip: IpAddr = vendor_ip.parse().unwrap();
    let vendor = SocketAddr::new(vendor_ip, free_port(vendor_ip));
    let sipp_transport = if transport == "tcp" { "t1" } else { "u1" };
    let edge = start_edge(&dir, &[(vendor, transport)], "127.0.1.1").await;
    let ingress = if transport == "tcp" {
        edge.tcp[0]
    } else {
        edge.udp[0]
    };

    let vendor_side = sipp(
        &dir,
        "vendor_answer.xml",
        &vendor.ip().to_string(),
        sipp_transport,
    )
    .args(["-p", &vendor.port().to_string(), "-m", &calls.to_string()])
    .spawn()
    .expect("start the SIPp vendor");
    let pbx_side = sipp(&dir, "pbx_call.xml", "127.0.0.10", sipp_transport)
        .arg(ingress.to_string())
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-l", "1000"])
        .spawn()
        .expect("start the SIPp PBX");
    let pbx_ok = succeeded("SIPp PBX", pbx_side).await;
    let vendor_ok = succeeded("SIPp vendor", vendor_side).await;
    assert!(
        pbx_ok && vendor_ok,
        "{calls} calls over {transport}: see SIPp output above"
    );

    let text = edge.metrics.render();
    let answered =
        format!("warp_edge_calls_total{{customer=\"100001\",outcome=\"answered\"}} {calls}");
    assert!(
        text.contains(&answered),
        "expected {answered} in the metrics"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_2000_calls_at_200_cps_over_udp() {
    if !sipp_available() {
        return;
    }
    calls_through("udp", "udp", "127.0.0.20", 2000, 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_2000_calls_at_200_cps_over_tcp() {
    if !sipp_available() {
        return;
    }
    calls_through("tcp", "tcp", "127.0.0.24", 2000, 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_first_vendor_503_second_completes() {
    if !sipp_available() {
        return;
    }
    const CALLS: u32 = 100;
    let dir = TempDir::new("failover");
    let refusing_ip: IpAddr = "127.0.0.22".parse().unwrap();
    let answering_ip: IpAddr = "127.0.0.23".parse().unwrap();
    let refusing = SocketAddr::new(refusing_ip, free_port(refusing_ip));
    let answering = SocketAddr::new(answering_ip, free_port(answering_ip));
    let edge = start_edge(&dir, &[(refusing, "udp"), (answering, "udp")], "127.0.1.2").await;

    let first = sipp(&dir, "vendor_503.xml", "127.0.0.22", "u1")
        .args(["-p", &refusing.port().to_string(), "-m", &CALLS.to_string()])
        .spawn()
        .expect("start the refusing vendor");
    let second = sipp(&dir, "vendor_answer.xml", "127.0.0.23", "u1")
        .args([
            "-p",
            &answering.port().to_string(),
            "-m",
            &CALLS.to_string(),
        ])
        .spawn()
        .expect("start the answering vendor");
    let pbx = sipp(&dir, "pbx_call.xml", "127.0.0.10", "u1")
        .arg(edge.udp[0].to_string())
        .args(["-m", &CALLS.to_string(), "-r", "50"])
        .spawn()
        .expect("start the SIPp PBX");
    let pbx_ok = succeeded("SIPp PBX", pbx).await;
    // vendor_503.xml ends each call on the edge's own ACK for the 503 (hop by hop).
    let first_ok = succeeded("SIPp vendor answering 503", first).await;
    let second_ok = succeeded("SIPp vendor answering 200", second).await;
    assert!(pbx_ok && first_ok && second_ok, "see SIPp output above");
    let text = edge.metrics.render();
    for line in [
        format!("warp_edge_gateway_failovers_total{{gateway=\"vendor-0\"}} {CALLS}"),
        format!("warp_edge_gateway_responses_total{{gateway=\"vendor-1\",code=\"200\"}} {CALLS}"),
    ] {
        assert!(text.contains(&line), "expected {line} in the metrics");
    }
}
