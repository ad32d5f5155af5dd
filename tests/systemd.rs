//! `jamd` under systemd's protocols, with real tools and sockets: socket activation through
//! `systemd-socket-activate` (which binds, then execs jamd with `LISTEN_FDS` on the first
//! connection), and `Type=notify` readiness through a notification socket the test binds.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{
    Jamd, StderrLines, WAIT, assert_time_reply, clear_jamd_env, eventually, require_tool,
    send_signal,
};

const JAMD: &str = env!("CARGO_BIN_EXE_jamd");

/// A notification socket like systemd's: jamd sends its `READY=1`/`STOPPING=1` datagrams here.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let path = std::env::temp_dir().join(format!("jamd-{}-{name}.notify", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
        socket.set_read_timeout(Some(WAIT)).expect("read timeout");
        NotifySocket { socket, path }
    }

    /// The next message, as its `KEY=value` lines.
    fn recv(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification within the wait");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A process whose stderr lines are collected as they come.
struct Logged {
    child: Child,
    log: StderrLines,
}

impl Logged {
    fn spawn(mut command: Command) -> Logged {
        clear_jamd_env(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let log = StderrLines::capture(&mut child, |_| {});
        Logged { child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.all()
    }

    /// Waits until a stderr line contains `needle`; returns it.
    fn wait_for(&self, needle: &str) -> String {
        self.log.wait_for(needle)
    }

    fn signal(&self, signal: &str) {
        send_signal(&self.child, signal);
    }

    /// Waits for the process to exit; returns its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        eventually(
            || format!("the process to exit: {:?}", self.log.all()),
            || self.child.try_wait().expect("try_wait").map(|s| s.code()),
        )
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address whose port was free a moment ago (bound to port 0, then closed).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// `systemd-socket-activate` listening on `addr`, ready to exec `jamd args` on the first
/// connection. Returns once it is listening.
fn socket_activate(addr: SocketAddr, args: &[&str], notify: Option<&NotifySocket>) -> Logged {
    let mut command = Command::new("systemd-socket-activate");
    command.args(["-l", &addr.to_string()]);
    if let Some(notify) = notify {
        // -E passes a variable on to jamd; systemd-socket-activate keeps no other environment.
        command
            .arg("-E")
            .arg(format!("NOTIFY_SOCKET={}", notify.path.display()));
    }
    command.arg(JAMD).args(args);
    let activator = Logged::spawn(command);
    activator.wait_for(&format!("Listening on {addr}"));
    activator
}

fn ask_time(addr: SocketAddr) {
    let mut client = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("read timeout");
    client.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    client.read_exact(&mut reply).expect("a reply");
    assert_time_reply(&reply);
}

#[test]
fn socket_activated_jamd_serves_the_passed_socket_and_notifies_systemd() {
    if !require_tool("systemd-socket-activate", "systemd") {
        return;
    }
    let notify = NotifySocket::bind("activated");
    let addr = free_addr();
    let mut jamd = socket_activate(addr, &["--utc"], Some(&notify));

    // The first connection starts jamd, which accepts it from the queue of the passed socket.
    ask_time(addr);
    jamd.wait_for("socket activation: serving the listening sockets passed by systemd");
    // The start-up line keeps its form, with the passed socket's address.
    let line = jamd.wait_for("jamd listening on ");
    assert!(
        line.contains(&format!("jamd listening on {addr} ")),
        "{line}"
    );
    let ready = notify.recv();
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on {addr}")),
        "{ready:?}"
    );
    ask_time(addr);

    jamd.signal("TERM");
    let stopping = notify.recv();
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    assert_eq!(jamd.wait_exit(), Some(0), "{:?}", jamd.log());
}

#[test]
fn listen_together_with_socket_activation_is_an_error() {
    if !require_tool("systemd-socket-activate", "systemd") {
        return;
    }
    let addr = free_addr();
    let mut jamd = socket_activate(addr, &["--listen", "127.0.0.1:0"], None);

    // The connection that starts jamd is closed unanswered when jamd exits.
    let mut client = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("read timeout");
    client.write_all(b"TIME\r\n").expect("send");
    assert_eq!(jamd.wait_exit(), Some(1), "{:?}", jamd.log());
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let error = jamd.wait_for("jamd: error:");
    assert!(
        error.contains(
            "--listen (or JAMD_LISTEN) cannot be combined with systemd socket activation"
        ),
        "{error}"
    );
}

#[test]
fn notify_ready_once_listening_and_stopping_on_sigterm() {
    let notify = NotifySocket::bind("direct");
    let mut command = Command::new(JAMD);
    command.env("NOTIFY_SOCKET", &notify.path);
    let mut jamd = Jamd::spawn_with(command, &["--utc"]);

    let ready = notify.recv();
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on {}", jamd.addr)),
        "{ready:?}"
    );
    // Ready means served: a client connecting now is answered.
    ask_time(jamd.addr);
    assert!(
        !jamd.log().iter().any(|l| l.contains("socket activation")),
        "{:?}",
        jamd.log()
    );

    jamd.signal("TERM");
    let stopping = notify.recv();
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    assert_eq!(jamd.wait_exit(WAIT).0, Some(0));
}
