//! `jamd --user`: started as root, jamd binds (a port below 1024 included), then runs as the user;
//! a switch that cannot happen stops start-up; root without `--user` is warned about once.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use common::{Jamd, WAIT, jamd_command};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips (or, under CI, fails) a test that needs root.
fn require_root() -> bool {
    if !is_root() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("this test needs root, which CI has");
        }
        eprintln!("SKIPPED: needs root");
    }
    is_root()
}

/// `Uid:`/`Gid:` of a process: real, effective, saved, filesystem ids.
fn ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .expect("field")
        .split_whitespace()
        .map(|n| n.parse().expect("an id"))
        .collect()
}

/// A free port below 1024 on 127.0.0.1 (only root can bind it).
fn free_low_port() -> u16 {
    (600..1000)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below 1024")
}

#[test]
fn as_root_with_user_nobody_jamd_runs_as_nobody_and_still_serves_rfc868_on_a_low_port() {
    if !require_root() {
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("the user database")
        .expect("a nobody user");
    let low = free_low_port();
    let rfc868 = format!("127.0.0.1:{low}");
    let jamd = Jamd::spawn(&["--user", "nobody", "--rfc868", &rfc868]);
    jamd.wait_for_log("dropped root privileges");
    let pid = jamd.child.id();
    assert_eq!(ids(pid, "Uid:"), vec![nobody.uid.as_raw(); 4]);
    assert_eq!(ids(pid, "Gid:"), vec![nobody.gid.as_raw(); 4]);
    let groups = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let groups = groups
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .expect("groups");
    assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");

    let mut jam = TcpStream::connect(jamd.addr).expect("connect");
    jam.set_read_timeout(Some(WAIT)).expect("timeout");
    jam.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    jam.read_exact(&mut reply).expect("a reply");
    assert!(reply.starts_with(b"JAM "));

    let addr: SocketAddr = rfc868.parse().expect("address");
    let mut time = TcpStream::connect(addr).expect("connect to the low port");
    time.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut seconds = Vec::new();
    time.read_to_end(&mut seconds).expect("read");
    assert_eq!(seconds.len(), 4, "RFC 868 answers four bytes");
    assert!(!jamd.log().iter().any(|l| l.contains("running as root")));
}

#[test]
fn user_naming_the_current_user_changes_nothing() {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .expect("the user database")
        .expect("this process's user");
    let jamd = Jamd::spawn(&["--user", &me.name]);
    let mut jam = TcpStream::connect(jamd.addr).expect("connect");
    jam.set_read_timeout(Some(WAIT)).expect("timeout");
    jam.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    jam.read_exact(&mut reply).expect("a reply");
    assert!(!jamd.log().iter().any(|l| l.contains("dropped root")));
    assert!(!jamd.log().iter().any(|l| l.contains("running as root")));
}

#[test]
fn a_user_that_does_not_exist_stops_start_up_with_a_clear_error() {
    let out = jamd_command()
        .args(["--listen", "127.0.0.1:0", "--user", "no-such-user-jam"])
        .output()
        .expect("jamd");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--user no-such-user-jam: no such user"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "never serves: {stderr}");
}

#[test]
fn a_group_that_does_not_exist_stops_start_up_with_a_clear_error() {
    let out = jamd_command()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--user",
            "nobody",
            "--group",
            "no-such-group-jam",
        ])
        .output()
        .expect("jamd");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--group no-such-group-jam: no such group"),
        "{stderr}"
    );
}

#[test]
fn root_without_user_is_warned_once_how_to_avoid_it() {
    if !require_root() {
        return;
    }
    let jamd = Jamd::spawn(&[]);
    let warnings: Vec<String> = jamd
        .log()
        .into_iter()
        .filter(|l| l.contains("running as root"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", jamd.log());
    assert!(warnings[0].contains("--user"), "{}", warnings[0]);
}
