//! Every configuration file shipped in `config/` and `deploy/` parses and validates, and the
//! quick-start config says what README promises: loopback listeners on 5060, metrics on
//! 127.0.0.1:9090, one active demo customer whose trunk allows 127.0.0.10/32.

use std::net::SocketAddr;
use std::path::Path;

use warp_edge::acl::{AclRequest, Decision, Proto, Snapshot};
use warp_edge::config::{Config, ListenerTransport};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_shipped_edge_config_loads_with_its_trunks_file() {
    let mut seen = 0;
    for dir in ["config", "deploy"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("dir exists") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "warp-edge.toml") {
                let (config, trunks) = Config::load_all(&path).unwrap_or_else(|e| panic!("{e}"));
                Snapshot::build(trunks.rules.clone(), config.acl.group)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 2, "config/ and deploy/ each ship a warp-edge.toml");
}

#[test]
fn quick_start_config_is_what_readme_says() {
    let (config, trunks) = Config::load_all(&root().join("config/warp-edge.toml")).expect("loads");
    let addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    assert!(config
        .listeners
        .iter()
        .any(|l| l.transport == ListenerTransport::Udp && l.address == addr));
    assert!(config
        .listeners
        .iter()
        .any(|l| l.transport == ListenerTransport::Tcp && l.address == addr));
    assert_eq!(config.admin, "127.0.0.1:9090".parse().unwrap());
    let snapshot = Snapshot::build(trunks.rules.clone(), config.acl.group).expect("builds");
    let decide = |source: &str| {
        let request = AclRequest {
            source: source.parse().unwrap(),
            local: "127.0.0.1".parse().unwrap(),
            transport: Proto::Udp,
        };
        matches!(
            snapshot.decide(&request),
            Decision::Allow {
                customer: "100001",
                ..
            }
        )
    };
    assert!(decide("127.0.0.10:5060"));
    assert!(!decide("127.0.0.11:5060"));
    assert!(!decide("127.0.0.9:5060"));
    assert_eq!(trunks.rules.customers.len(), 1);
}
