//! Shared test harness: an in-process server on an ephemeral port, the real `jamd` binary as a
//! child process, and a small byte-exact TCP client. No sleeps-until-ready: the in-process server
//! is bound before it runs, and the binary is ready when it logs its listening address.

#![allow(dead_code, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jam::clock::{LocalClock, SystemClock};
use jam::server::StatsHandle;
use jam::{Server, ServerConfig, Stats};
use jiff::tz::TimeZone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any single wait on the server may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running inside the test's runtime on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: StatsHandle,
    shutdown: CancellationToken,
    handle: JoinHandle<Stats>,
}

impl TestServer {
    /// Starts a server with `config`, the system clock, in UTC.
    pub async fn start(config: ServerConfig) -> TestServer {
        Self::with_clock(
            config,
            LocalClock::new(Arc::new(SystemClock), TimeZone::UTC),
        )
        .await
    }

    /// Starts a server with the default limits.
    pub async fn default() -> TestServer {
        Self::start(ServerConfig::default()).await
    }

    /// Starts a server reading `clock`.
    pub async fn with_clock(config: ServerConfig, clock: LocalClock) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = Server::new(vec![listener], config, clock);
        let stats = server.stats();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server.run(shutdown.clone()));
        TestServer {
            addr,
            stats,
            shutdown,
            handle,
        }
    }

    /// Connects a client.
    pub async fn connect(&self) -> TcpStream {
        connect(self.addr).await
    }

    /// Signals shutdown (as SIGTERM does in the binary) without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down and waits for the server to finish.
    pub async fn stop(self) -> Stats {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT * 3, self.handle)
            .await
            .expect("server stops in time")
            .expect("server task")
    }
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

pub async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("send");
}

/// Reads one line including its CR LF (fails the test on EOF or after [`WAIT`]).
pub async fn read_line(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, async {
        loop {
            let n = stream.read(&mut byte).await.expect("read");
            assert!(
                n == 1,
                "EOF before a full line; got {:?}",
                String::from_utf8_lossy(&line)
            );
            line.push(byte[0]);
            if line.ends_with(b"\r\n") {
                return;
            }
        }
    })
    .await
    .expect("a line in time");
    line
}

/// Reads exactly `n` bytes.
pub async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .expect("read_exact");
    buf
}

/// Reads until the server closes; returns everything received. A reset after data counts as
/// the end too (the data before it is returned).
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("server closes in time");
    all
}

/// Reads until the server closes, requiring a clean FIN (no reset).
pub async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("server closes in time")
        .expect("clean close, not a reset");
    all
}

/// A good client on the side: connects, asks the time, and must be answered within a second (a
/// bound that only a blocked server misses, not a performance target).
pub async fn assert_served_promptly(addr: SocketAddr) {
    let start = Instant::now();
    let mut client = connect(addr).await;
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a good client waited {took:?}"
    );
}

/// Asserts exact bytes, showing both sides as text first (easier to read) and raw on failure.
#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want),
        "raw: {got:?}"
    );
    assert_eq!(got, want);
}

/// Asserts that a TIME reply is `JAM hh:mm:ss\r\n` with valid fields.
pub fn assert_time_reply(reply: &[u8]) {
    assert_eq!(
        reply.len(),
        14,
        "reply {:?}",
        String::from_utf8_lossy(reply)
    );
    assert!(
        reply.starts_with(b"JAM "),
        "reply {:?}",
        String::from_utf8_lossy(reply)
    );
    assert!(reply.ends_with(b"\r\n"));
    let text = std::str::from_utf8(&reply[4..12]).expect("utf-8");
    let fields: Vec<u32> = text
        .split(':')
        .map(|f| f.parse().expect("digits"))
        .collect();
    assert_eq!(fields.len(), 3, "{text}");
    assert!(fields[0] < 24 && fields[1] < 60 && fields[2] < 60, "{text}");
    assert!(text.split(':').all(|f| f.len() == 2), "zero-padded: {text}");
}

/// Polls `check` every 20 ms until it gives a value; fails the test after [`WAIT`], saying
/// `what()` was awaited.
pub fn eventually<T>(what: impl Fn() -> String, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `jamd` command that inherits no `JAMD_*` or `RUST_LOG` variable from the test's environment.
pub fn jamd_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jamd"));
    clear_jamd_env(&mut command);
    command
}

/// Keeps the test's `JAMD_*` and `RUST_LOG` variables away from `command` (and what it runs).
pub fn clear_jamd_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("JAMD_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
}

/// Sends `signal` (`TERM`, `INT`, …) to `child` with `kill`.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A child's stderr lines, collected by a thread as they come.
#[derive(Clone, Default)]
pub struct StderrLines(Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicBool>);

impl StderrLines {
    /// Takes `child`'s piped stderr; `on_line` sees each line as it arrives, before it is stored.
    pub fn capture(child: &mut Child, mut on_line: impl FnMut(&str) + Send + 'static) -> Self {
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = StderrLines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                on_line(&line);
                sink.0.lock().expect("log lock").push(line);
            }
            sink.1.store(true, std::sync::atomic::Ordering::Release);
        });
        lines
    }

    /// Every line, once the child closed its stderr (it exited): a process that has exited may
    /// still have lines in the pipe that the reader thread has not taken yet.
    pub fn to_end(&self) -> Vec<String> {
        eventually(
            || format!("the end of stderr; so far: {:?}", self.all()),
            || {
                self.1
                    .load(std::sync::atomic::Ordering::Acquire)
                    .then_some(())
            },
        );
        self.all()
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("log lock").clone()
    }

    /// Waits until a line contains `needle`; returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        eventually(
            || format!("a log line with {needle:?}: {:?}", self.all()),
            || self.all().into_iter().find(|l| l.contains(needle)),
        )
    }
}

/// The real `jamd` binary, started on 127.0.0.1:0 (plus `args`), ready once it logged its address.
pub struct Jamd {
    pub child: Child,
    pub addr: SocketAddr,
    log: StderrLines,
}

impl Jamd {
    pub fn spawn(args: &[&str]) -> Jamd {
        Self::spawn_with(jamd_command(), args)
    }

    /// Spawns `command` (which must run jamd, perhaps via `prlimit`) with `args`.
    pub fn spawn_with(mut command: Command, args: &[&str]) -> Jamd {
        let has_listen = args
            .iter()
            .any(|a| *a == "--listen" || a.starts_with("--listen="));
        if !has_listen {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        clear_jamd_env(&mut command);
        let mut child = spawn_piped(command.args(args));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut tx = Some(tx);
        let log = StderrLines::capture(&mut child, move |line| {
            if let Some(addr) = listening_addr(line) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("jamd did not report its address; log: {:?}", log.all())
        });
        Jamd { child, addr, log }
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.all()
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.log.wait_for(needle)
    }

    pub fn signal(&self, signal: &str) {
        send_signal(&self.child, signal);
    }

    /// Waits for the process to exit; returns its exit code and how long the wait took.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "jamd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Jamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Extracts the first address from the start-up line `… jamd listening on ADDR[, ADDR]…`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on ").nth(1)?;
    let first = rest.split([',', ' ', '"']).next()?;
    first.parse().ok()
}

/// Spawns `command` with no stdin, no stdout and stderr piped (for [`StderrLines::capture`]).
pub fn spawn_piped(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jamd")
}

/// Whether an external tool exists. Under CI (`CI=true`) a missing tool fails the test; elsewhere
/// the test is skipped with the command that installs it.
pub fn require_tool(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required under CI; install it with: apt-get install -y {package}");
        }
        eprintln!("SKIPPED: {tool} not found; install it with: apt-get install -y {package}");
    }
    found
}

/// A fixture server from tests/fixtures/servers/ (a student-style Python server that prints its
/// port once it listens), killed when dropped.
pub struct Fixture {
    child: Child,
    pub port: u16,
}

impl Fixture {
    /// Starts `tests/fixtures/servers/{file}.py` on an ephemeral port, with `env` set.
    pub fn start(file: &str, env: Option<(&str, &str)>) -> Fixture {
        let script = format!(
            "{}/tests/fixtures/servers/{file}.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some((key, value)) = env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the fixture server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the fixture prints its port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{file}: a port, got {line:?}"));
        Fixture { child, port }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
