//! The port trap: a port in the ephemeral range that a closed connection holds (TIME_WAIT) while
//! nothing listens on it. The real `jamd` explains it, retries every second and binds once the
//! port is free; a port another server listens on fails at once. Linux only (the TIME_WAIT is
//! made with real sockets and ended early with `ss -K`; the diagnosis reads `/proc`).

#![cfg(target_os = "linux")]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::Duration;

use common::{StderrLines, WAIT, eventually, jamd_command, require_tool, send_signal, spawn_piped};
use socket2::{Domain, Socket, Type};

/// A closed connection's port: its client side closed first, so 127.0.0.1:`port` is in
/// TIME_WAIT, from a socket without SO_REUSEADDR (as a browser's or pip's). `peer` is the port
/// of the other side, whose listener is closed again.
struct TimeWait {
    port: u16,
    peer: SocketAddr,
}

impl TimeWait {
    fn new() -> TimeWait {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = listener.local_addr().expect("addr");
        // The kernel picks the client's port from the ephemeral range, as for any outgoing
        // connection.
        let client = TcpStream::connect(peer).expect("connect");
        let port = client.local_addr().expect("addr").port();
        let (server, _) = listener.accept().expect("accept");
        drop(client);
        drop(server);
        drop(listener);
        eventually(
            || format!("127.0.0.1:{port} in TIME_WAIT"),
            || in_time_wait(port).then_some(()),
        );
        TimeWait { port, peer }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Ends the TIME_WAIT early and says whether it is gone. First `ss -K`, which destroys the
    /// socket (root, and a kernel with INET_DIAG_DESTROY); else "TIME-WAIT assassination" (RFC
    /// 1337): a SYN from the old peer's address draws an ACK that the new socket answers with a
    /// reset, which ends the TIME_WAIT where net.ipv4.tcp_rfc1337 = 0 (Linux's default). That
    /// works most times, not always, so it is tried a few times.
    fn end(&self) -> bool {
        if require_tool("ss", "iproute2") {
            let _ = Command::new("ss")
                .args(["-K", "-tn", "state", "time-wait", "sport", "="])
                .arg(format!(":{}", self.port))
                .output();
        }
        let target = SocketAddr::from(([127, 0, 0, 1], self.port));
        for attempt in 1..=5 {
            if !in_time_wait(self.port) {
                return true;
            }
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket
                .bind(&self.peer.into())
                .expect("bind the old peer's port");
            // The reset goes out at once; the connect itself fails, which is expected.
            let _ = socket.connect_timeout(&target.into(), Duration::from_millis(200));
            drop(socket);
            // The TIME_WAIT answers at most one stray segment per 500 ms.
            std::thread::sleep(Duration::from_millis(300 * attempt));
        }
        !in_time_wait(self.port)
    }
}

/// Whether a socket on local port `port` is in TIME_WAIT (state 06 in /proc/net/tcp).
fn in_time_wait(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "06"
    })
}

/// `jamd` with `args`, its stderr collected; killed on drop.
struct Started {
    child: Child,
    log: StderrLines,
}

impl Started {
    fn new(args: &[&str]) -> Started {
        let mut child = spawn_piped(jamd_command().args(args));
        let log = StderrLines::capture(&mut child, |_| {});
        Started { child, log }
    }

    /// Waits for jamd to exit and for the last of its log to be read.
    fn wait_exit(&mut self) -> Option<i32> {
        let status = eventually(
            || format!("jamd to exit; log: {:?}", self.log.all()),
            || self.child.try_wait().expect("try_wait"),
        );
        self.log.to_end();
        status.code()
    }

    fn lines_with(&self, needle: &str) -> usize {
        self.log.all().iter().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ask_time(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(b"TIME\r\nQUIT\r\n").expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    reply
}

#[test]
fn a_port_held_by_a_closed_connection_is_explained_retried_and_bound_once_free() {
    let held = TimeWait::new();
    let addr = held.addr();
    let mut jamd = Started::new(&["--listen", &addr]);
    let warning = jamd.log.wait_for(&format!("cannot listen on {addr} yet"));
    for words in [
        "no server listens there",
        "ephemeral port range",
        "TIME_WAIT",
        &format!("sysctl -w net.ipv4.ip_local_reserved_ports={}", held.port),
        "/usr/lib/sysctl.d/50-jamd.conf",
        "retrying every second for up to 90s",
    ] {
        assert!(warning.contains(words), "{words:?} missing: {warning}");
    }
    // It keeps retrying, silently: still running, one warning after more than one attempt.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(jamd.child.try_wait().expect("try_wait").is_none());
    assert!(in_time_wait(held.port));
    assert_eq!(jamd.lines_with("cannot listen"), 1, "{:?}", jamd.log.all());

    if !held.end() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "cannot end the TIME_WAIT on {addr} early: run as root (ss -K)"
        );
        eprintln!("SKIPPED the end: cannot end the TIME_WAIT early (ss -K needs root)");
        return;
    }
    jamd.log.wait_for(&format!("jamd listening on {addr}"));
    assert!(ask_time(&addr).starts_with("JAM "));
    assert_eq!(jamd.lines_with("cannot listen"), 1, "{:?}", jamd.log.all());
}

#[test]
fn while_one_port_is_waited_for_no_other_port_takes_connections() {
    // The metrics port is held by a real TIME_WAIT; the jam port is free. Until both are bound,
    // neither listens: a client (or a load balancer's TCP check) is refused, not left waiting.
    let held = TimeWait::new();
    let free = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let listen = free.to_string();
    let mut jamd = Started::new(&["--listen", &listen, "--metrics", &held.addr()]);
    jamd.log
        .wait_for(&format!("cannot listen on {} yet", held.addr()));
    let refused = TcpStream::connect_timeout(&free, Duration::from_secs(1))
        .expect_err("the jam port must not take connections while the metrics port is waited for");
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );
    if !held.end() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "cannot end the TIME_WAIT early: run as root (ss -K)");
        eprintln!("SKIPPED the end: cannot end the TIME_WAIT early (ss -K needs root)");
        return;
    }
    jamd.log.wait_for(&format!("jamd listening on {listen}"));
    assert!(ask_time(&listen).starts_with("JAM "));
    assert!(jamd.child.try_wait().expect("try_wait").is_none());
}

#[test]
fn bind_wait_0_fails_at_once_saying_each_thing_once() {
    let held = TimeWait::new();
    let addr = held.addr();
    let mut jamd = Started::new(&["--listen", &addr, "--bind-wait", "0"]);
    assert_eq!(jamd.wait_exit(), Some(1));
    let log = jamd.log.all();
    let error = log
        .iter()
        .find(|l| l.starts_with("jamd: error: "))
        .unwrap_or_else(|| panic!("no error line: {log:?}"));
    assert!(
        error.starts_with(&format!(
            "jamd: error: cannot listen on {addr}: the port is in use, but no server listens there"
        )),
        "{error}"
    );
    assert!(error.contains("--bind-wait 0"), "{error}");
    assert_eq!(error.matches("TIME_WAIT").count(), 1, "{error}");
    assert_eq!(error.matches(&addr).count(), 1, "{error}");
}

#[test]
fn a_signal_while_waiting_for_the_port_exits_at_once() {
    let held = TimeWait::new();
    let addr = held.addr();
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let mut jamd = Started::new(&["--listen", &addr]);
        jamd.log.wait_for("retrying every second");
        send_signal(&jamd.child, signal);
        assert_eq!(jamd.wait_exit(), Some(code), "{:?}", jamd.log.all());
        jamd.log.wait_for("while waiting for a port");
    }
}

#[test]
fn a_port_another_server_listens_on_fails_at_once() {
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = other.local_addr().expect("addr").port();
    // An explicit address, and the default dual-stack [::] listener on the same port.
    for (args, addr) in [
        (
            vec!["--listen".to_string(), format!("127.0.0.1:{port}")],
            format!("127.0.0.1:{port}"),
        ),
        (
            vec!["--port".to_string(), port.to_string()],
            format!("[::]:{port}"),
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut jamd = Started::new(&args);
        assert_eq!(jamd.wait_exit(), Some(1), "{:?}", jamd.log.all());
        let error = jamd.log.wait_for("jamd: error:");
        assert!(
            error.contains(&format!("cannot listen on {addr}"))
                && error.contains("in use")
                && error.contains("another server is listening there"),
            "{error}"
        );
        assert_eq!(jamd.lines_with("retrying"), 0);
    }
}

#[test]
fn a_fixed_port_in_the_ephemeral_range_is_warned_about_and_port_0_is_not() {
    let (low, high) = jam::ports::ephemeral_range().expect("ephemeral range");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    assert!((low..=high).contains(&port));
    let addr = format!("127.0.0.1:{port}");
    let jamd = Started::new(&["--listen", &addr]);
    jamd.log.wait_for(&format!("jamd listening on {addr}"));
    let warning = jamd.log.wait_for("held by a closed outgoing connection");
    assert!(
        warning.contains(&format!("ip_local_reserved_ports={port}")),
        "{warning}"
    );

    let any_port = common::Jamd::spawn(&[]);
    assert!(
        !any_port
            .log()
            .iter()
            .any(|l| l.contains("ip_local_reserved_ports")),
        "{:?}",
        any_port.log()
    );
}
