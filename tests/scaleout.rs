//! Running several `jamd` behind a load balancer: the PROXY protocol (`--proxy-protocol`), sharing
//! a port (`--reuse-port`), and the real HAProxy in front of two real `jamd` with the shipped
//! `deploy/haproxy.cfg`: failover when a backend dies, the real client address in the logs, and
//! a restarted backend rejoining.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Socket, Type};

/// A port that was free a moment ago (for processes that must be told their port up front).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// Connects from `source` (a loopback address other than 127.0.0.1, so the logs show who it is).
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
    socket.connect_timeout(&to.into(), WAIT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT))?;
    Ok(stream)
}

/// Sends `input`, half-closes, and reads everything until the server closes.
fn exchange(mut stream: TcpStream, input: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(input)?;
    stream.shutdown(Shutdown::Write)?;
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    Ok(all)
}

fn is_time_reply(reply: &[u8]) -> bool {
    reply.len() == 14 && reply.starts_with(b"JAM ") && reply.ends_with(b"\r\n")
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol
// ---------------------------------------------------------------------------------------------

#[test]
fn a_v1_header_names_the_client_in_the_log_and_the_session_goes_on() {
    let jamd = Jamd::spawn(&["--proxy-protocol"]);
    let stream = TcpStream::connect(jamd.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let reply = exchange(
        stream,
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 45000\r\nTIME\r\nQUIT\r\n",
    )
    .expect("exchange");
    assert!(is_time_reply(&reply), "{reply:?}");
    let opened = jamd.wait_for_log("connection opened");
    assert!(opened.contains("peer=192.0.2.7:51000"), "{opened}");
    assert!(opened.contains("via=127.0.0.1:"), "{opened}");
    let closed = jamd.wait_for_log("connection closed");
    assert!(closed.contains("peer=192.0.2.7:51000"), "{closed}");
}

#[test]
fn a_v2_header_sent_one_byte_at_a_time_is_read_whole() {
    let jamd = Jamd::spawn(&["--proxy-protocol"]);
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1]);
    header.extend_from_slice(&51000u16.to_be_bytes());
    header.extend_from_slice(&45000u16.to_be_bytes());
    let mut stream = TcpStream::connect(jamd.addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    for byte in &header {
        stream.write_all(&[*byte]).expect("send");
        std::thread::sleep(Duration::from_millis(2));
    }
    let reply = exchange(stream, b"TIME\r\n").expect("exchange");
    assert!(is_time_reply(&reply), "{reply:?}");
    let opened = jamd.wait_for_log("connection opened");
    assert!(opened.contains("peer=198.51.100.9:51000"), "{opened}");
}

#[test]
fn a_connection_without_a_header_is_closed_unanswered_and_counted() {
    let jamd = Jamd::spawn(&["--proxy-protocol", "--metrics", "127.0.0.1:0"]);
    let stream = TcpStream::connect(jamd.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let reply = exchange(stream, b"TIME\r\n").expect("closed, not hung");
    assert_eq!(reply, b"", "nothing is answered without a header");
    let warning = jamd.wait_for_log("without a valid PROXY protocol header");
    assert!(warning.contains("WARN"), "{warning}");
    // A proper client right after is served.
    let stream = TcpStream::connect(jamd.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let reply = exchange(stream, b"PROXY UNKNOWN\r\nTIME\r\n").expect("exchange");
    assert!(is_time_reply(&reply), "{reply:?}");
    let line = jamd.wait_for_log("metrics listening on ");
    let metrics: SocketAddr = line
        .split("metrics listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("metrics address");
    let mut scrape = TcpStream::connect(metrics).expect("connect");
    scrape.set_read_timeout(Some(WAIT)).expect("timeout");
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    scrape.read_to_string(&mut text).expect("read");
    assert!(
        text.contains("jamd_connections_refused_total{reason=\"proxy_header\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("jamd_connections_closed_total{reason=\"proxy_header\"} 1"),
        "every accepted connection is counted closed for a reason: {text}"
    );
}

#[test]
fn a_client_that_never_sends_its_header_is_closed_after_the_line_timeout() {
    let jamd = Jamd::spawn(&["--proxy-protocol", "--line-timeout", "300ms"]);
    let mut silent = TcpStream::connect(jamd.addr).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    silent.write_all(b"PROXY TCP4 ").expect("send");
    let start = Instant::now();
    let mut all = Vec::new();
    silent.read_to_end(&mut all).expect("closed");
    assert_eq!(all, b"");
    assert!(start.elapsed() < WAIT, "closed by the server, not the test");
}

// ---------------------------------------------------------------------------------------------
// --reuse-port
// ---------------------------------------------------------------------------------------------

#[test]
fn two_processes_share_a_port_with_reuse_port_and_both_serve() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let a = Jamd::spawn(&["--listen", &listen, "--reuse-port"]);
    let b = Jamd::spawn(&["--listen", &listen, "--reuse-port"]);
    let served_by = |jamd: &Jamd| {
        jamd.log()
            .iter()
            .filter(|l| l.contains("connection opened"))
            .count()
    };
    // The kernel hashes connections over the two listeners; with 200 connections both get some
    // unless the spreading is broken (the chance of all 200 landing on one is 2^-199).
    for _ in 0..200 {
        let stream = TcpStream::connect(a.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let reply = exchange(stream, b"TIME\r\n").expect("exchange");
        assert!(is_time_reply(&reply));
    }
    let start = Instant::now();
    while served_by(&a) + served_by(&b) < 200 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(served_by(&a) + served_by(&b), 200);
    assert!(
        served_by(&a) > 0 && served_by(&b) > 0,
        "a served {}, b served {}",
        served_by(&a),
        served_by(&b)
    );
}

#[test]
fn without_reuse_port_a_second_process_on_the_port_fails_clearly() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let _first = Jamd::spawn(&["--listen", &listen]);
    let out = Command::new(env!("CARGO_BIN_EXE_jamd"))
        .args(["--listen", &listen])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {listen}")) && stderr.contains("in use"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------------------------

/// A real HAProxy process running the shipped config with the test's ports; stopped on drop.
struct Haproxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `deploy/haproxy.cfg` with its frontend on `front` and its two servers on `backends`.
fn shipped_config(front: u16, backends: [u16; 2]) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
            .expect("deploy/haproxy.cfg");
    let config = shipped
        .replace("bind :45000", &format!("bind 127.0.0.1:{front}"))
        .replace("127.0.0.1:45001", &format!("127.0.0.1:{}", backends[0]))
        .replace("127.0.0.1:45002", &format!("127.0.0.1:{}", backends[1]));
    for port in ["45000", "45001", "45002"] {
        assert!(
            !config
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains(port)),
            "the test must replace every port of the shipped config"
        );
    }
    config
}

fn start_haproxy(config: &str) -> Haproxy {
    let dir = std::env::temp_dir().join(format!("jam-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("write config");
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn haproxy");
    Haproxy {
        child,
        _dir: TempDir(dir),
    }
}

/// The client used through HAProxy: connects from 127.0.0.9, asks the time once.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

fn ask(front: SocketAddr) -> std::io::Result<Vec<u8>> {
    exchange(connect_from(CLIENT, front)?, b"TIME\r\nQUIT\r\n")
}

/// Asks until an answer comes (HAProxy starting, health checks passing), within [`WAIT`].
fn ask_until_answered(front: SocketAddr) {
    let start = Instant::now();
    loop {
        if ask(front).is_ok_and(|r| is_time_reply(&r)) {
            return;
        }
        assert!(start.elapsed() < WAIT, "HAProxy never answered on {front}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connections from the test's client that `jamd` logged as opened.
fn client_sessions(jamd: &Jamd) -> usize {
    jamd.log()
        .iter()
        .filter(|l| l.contains("connection opened") && l.contains("peer=127.0.0.9:"))
        .count()
}

#[test]
fn haproxy_fails_over_when_a_backend_dies_and_the_restarted_backend_rejoins() {
    if !require_tool("haproxy", "haproxy") {
        return;
    }
    let (front, b1, b2) = (free_port(), free_port(), free_port());
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let (l1, l2) = (listen(b1), listen(b2));
    let mut jamd1 = Jamd::spawn(&["--listen", &l1, "--proxy-protocol"]);
    let jamd2 = Jamd::spawn(&["--listen", &l2, "--proxy-protocol"]);
    let _haproxy = start_haproxy(&shipped_config(front, [b1, b2]));
    let front: SocketAddr = listen(front).parse().expect("addr");
    ask_until_answered(front);

    // Load through HAProxy reaches both backends, and each logs the real client address (the
    // PROXY v2 header), with HAProxy's own address as `via`.
    for _ in 0..40 {
        let reply = ask(front).expect("answered through haproxy");
        assert!(is_time_reply(&reply), "{reply:?}");
    }
    let start = Instant::now();
    while (client_sessions(&jamd1) == 0 || client_sessions(&jamd2) == 0) && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(client_sessions(&jamd1) > 0, "jamd1 got no clients");
    assert!(client_sessions(&jamd2) > 0, "jamd2 got no clients");
    let opened = jamd2.wait_for_log("peer=127.0.0.9:");
    assert!(opened.contains("via=127.0.0.1:"), "{opened}");

    // Kill a backend: every request is still answered (HAProxy retries on the other one until
    // its health check takes the dead one out).
    let _ = jamd1.child.kill();
    let _ = jamd1.child.wait();
    let failover_start = Instant::now();
    let mut answered = 0;
    while failover_start.elapsed() < Duration::from_secs(3) {
        let reply = ask(front).expect("answered during failover");
        assert!(
            is_time_reply(&reply),
            "lost an answer during failover: {reply:?}"
        );
        answered += 1;
    }
    assert!(answered > 0);

    // Restart it on the same port: once its health checks pass it gets clients again.
    jamd1 = Jamd::spawn(&["--listen", &l1, "--proxy-protocol"]);
    let start = Instant::now();
    while client_sessions(&jamd1) == 0 {
        assert!(
            start.elapsed() < WAIT,
            "the restarted backend never got a client"
        );
        let reply = ask(front).expect("answered after restart");
        assert!(is_time_reply(&reply), "{reply:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_partial_line_right_after_the_header_is_cut_off_by_the_line_timeout() {
    // The bytes after a header arrive with it and are handled before the session first waits:
    // their partial line must arm the line timeout (with the idle timeout off, nothing else
    // would ever close this connection).
    let jamd = Jamd::spawn(&[
        "--proxy-protocol",
        "--line-timeout",
        "300ms",
        "--idle-timeout",
        "0",
    ]);
    let mut stream = TcpStream::connect(jamd.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 45000\r\nTI")
        .expect("send");
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("closed by the line timeout");
    assert_eq!(
        all,
        &b"ERR line timeout: 2 bytes and no CR LF in 300ms; end each request with CR LF (try TIME)\r\n"[..]
    );
}
