//! Interop with SIPp, the reference client: an unknown caller's INVITEs get 403 and a known
//! trunk's OPTIONS get 200, over UDP and TCP, against an edge started in-process on port 0.
//!
//! SIPp (Debian package `sip-tester`) is installed by `.ci/run`. Where it is missing outside
//! CI the tests say so and pass; in CI (`CI` set) a missing SIPp fails them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use warp_edge::config::Config;

const TRUNKS: &str = r#"
[[customers]]
ban = "100001"
name = "Interop PBX"

[[trunk_groups]]
id = 1
ban = "100001"
name = "pbx"

[[trunk_ips]]
trunk_group = 1
cidr = "127.0.0.10/32"
"#;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

fn sipp_available() -> bool {
    let found = Command::new("sipp").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "SIPp is required in CI (apt-get install sip-tester)"
        );
        eprintln!("sipp not installed: skipping the interop check (apt-get install sip-tester)");
    }
    found
}

/// A temp dir holding the edge's config, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("warp-edge-interop-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_edge(dir: &TempDir) -> warp_edge::edge::Edge {
    let edge_toml = r#"
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
"#;
    let config_path = dir.0.join("warp-edge.toml");
    std::fs::write(&config_path, edge_toml).expect("write config");
    std::fs::write(dir.0.join("trunks.toml"), TRUNKS).expect("write trunks");
    let (config, trunks) = Config::load_all(&config_path).expect("valid config");
    warp_edge::edge::start(&config, trunks)
        .await
        .expect("edge starts")
}

/// Runs one SIPp scenario to completion; true when every call succeeded.
async fn sipp(
    edge: SocketAddr,
    scenario_file: &str,
    local_ip: &str,
    transport: &str,
    calls: u32,
) -> bool {
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg(edge.to_string())
        .args(["-sf"])
        .arg(scenario(scenario_file))
        .args(["-i", local_ip, "-bind_local", "-t", transport])
        .args(["-m", &calls.to_string(), "-r", "50", "-l", "10"])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-recv_timeout",
            "5000",
            "-nostdin",
        ])
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    let output = cmd.output().await.expect("sipp runs");
    if !output.status.success() {
        eprintln!(
            "sipp {scenario_file} from {local_ip} over {transport} failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    output.status.success()
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_unknown_caller_invites_get_403() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new("deny");
    let edge = start_edge(&dir).await;
    assert!(
        sipp(edge.udp[0], "deny_invite.xml", "127.0.0.11", "u1", 20).await,
        "UDP"
    );
    assert!(
        sipp(edge.tcp[0], "deny_invite.xml", "127.0.0.11", "t1", 20).await,
        "TCP"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sipp_known_trunk_options_get_200() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new("options");
    let edge = start_edge(&dir).await;
    assert!(
        sipp(edge.udp[0], "options_ok.xml", "127.0.0.10", "u1", 20).await,
        "UDP"
    );
    assert!(
        sipp(edge.tcp[0], "options_ok.xml", "127.0.0.10", "t1", 20).await,
        "TCP"
    );
    // The control: the same OPTIONS from an unknown caller must not pass.
    assert!(
        !sipp(edge.udp[0], "options_ok.xml", "127.0.0.11", "u1", 1).await,
        "unknown caller got 200"
    );
}
