//! The files in `deploy/` against the real binaries: the container and Kubernetes health checks
//! run `jam` with the arguments written there, and systemd accepts the unit files.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;

use common::{Jamd, require_tool};

const JAM: &str = env!("CARGO_BIN_EXE_jam");
const JAMD: &str = env!("CARGO_BIN_EXE_jamd");

/// The address the health checks ask inside the container or pod.
const CHECKED: &str = "127.0.0.1:45000";

fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every health-check command in `deploy/`: the JSON arrays after `CMD` in the Containerfile's
/// HEALTHCHECK and after `command:` in the Kubernetes manifest's probes.
fn health_checks() -> Vec<(String, Vec<String>)> {
    let mut checks = Vec::new();
    for (file, marker) in [
        ("Containerfile", "CMD "),
        ("k8s/deployment.yaml", "command: "),
    ] {
        for line in deploy_file(file).lines() {
            if let Some(array) = line.trim().strip_prefix(marker) {
                let argv: Vec<String> =
                    serde_json::from_str(array).unwrap_or_else(|e| panic!("{file}: {array}: {e}"));
                checks.push((file.to_string(), argv));
            }
        }
    }
    checks
}

/// Runs a health check with `jam` from this build, asking `addr` instead of [`CHECKED`].
fn run_check(argv: &[String], addr: SocketAddr) -> std::process::Output {
    assert_eq!(argv[0], "jam", "{argv:?}");
    assert!(
        argv.iter().any(|a| a == CHECKED),
        "{argv:?} does not ask {CHECKED}"
    );
    let args = argv[1..].iter().map(|a| {
        if a == CHECKED {
            addr.to_string()
        } else {
            a.clone()
        }
    });
    Command::new(JAM).args(args).output().expect("run jam")
}

#[test]
fn health_checks_pass_against_jamd_and_fail_without_it() {
    let checks = health_checks();
    // One HEALTHCHECK, a readiness and a liveness probe.
    assert_eq!(checks.len(), 3, "{checks:?}");
    let jamd = Jamd::spawn(&[]);
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    for (file, argv) in &checks {
        let output = run_check(argv, jamd.addr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{file}: {argv:?}: {stdout}");
        assert!(stdout.starts_with("JAM "), "{file}: {stdout}");

        // Nothing listens on `closed` any more: connection refused, exit code 3.
        let output = run_check(argv, closed);
        assert_eq!(output.status.code(), Some(3), "{file}: {argv:?}");
    }
}

#[test]
fn systemd_accepts_the_unit_files() {
    if !require_tool("systemd-analyze", "systemd") {
        return;
    }
    // The units as installed, but starting this build's jamd (verify checks that it exists).
    let dir = std::env::temp_dir().join(format!("jamd-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The package installs jamd as /usr/bin/jamd (Cargo.toml, [package.metadata.deb]).
    let service = deploy_file("jamd.service")
        .replace("ExecStart=/usr/bin/jamd", &format!("ExecStart={JAMD}"));
    assert!(
        service.contains(&format!("ExecStart={JAMD}")),
        "no ExecStart"
    );
    std::fs::write(dir.join("jamd.service"), service).expect("write");
    std::fs::write(dir.join("jamd.socket"), deploy_file("jamd.socket")).expect("write");

    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("jamd.socket"))
        .arg(dir.join("jamd.service"))
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}
