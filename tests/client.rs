//! The `jam` client binary, run as a process against an in-process server or against fake
//! servers written here (plain TCP listeners on loopback): what it prints, what it sends, and
//! which exit code each kind of failure gives.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{TestServer, WAIT};
use jam::clock::zone_by_name;
use jam::{LocalClock, ManualClock, OffsetClock, Server, ServerConfig, SystemClock};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// How a `jam` run ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Fails the test unless the exit code is `code`, showing both outputs.
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stdout {:?}, stderr {:?}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The single JSON object on stdout.
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON line: {:?}", self.stdout);
        serde_json::from_str(lines[0]).expect("stdout is JSON")
    }
}

type Feed = Box<dyn FnOnce(ChildStdin) + Send>;

/// Runs `jam args…` to completion (blocking); `feed` writes its stdin, else stdin is empty.
/// Fails the test if it runs longer than [`WAIT`].
fn run_blocking(args: Vec<String>, feed: Option<Feed>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args(&args)
        // No history file written into the real home directory by `jam shell`.
        .env_remove("HOME")
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jam");
    let feeder = feed.map(|feed| {
        let stdin = child.stdin.take().expect("stdin");
        std::thread::spawn(move || feed(stdin))
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("jam {args:?} still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(feeder) = feeder {
        feeder.join().expect("stdin feeder");
    }
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `jam args…` with empty stdin, off the async runtime.
async fn jam(args: &[&str]) -> Run {
    let args = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || run_blocking(args, None))
        .await
        .expect("jam runner")
}

/// Runs `jam args…` with `feed` writing its stdin, off the async runtime.
async fn jam_fed(args: &[&str], feed: impl FnOnce(ChildStdin) + Send + 'static) -> Run {
    let args = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || run_blocking(args, Some(Box::new(feed))))
        .await
        .expect("jam runner")
}

/// Stdin that is `bytes` and then end of file.
fn input(bytes: &'static [u8]) -> impl FnOnce(ChildStdin) + Send + 'static {
    move |mut stdin: ChildStdin| {
        let _ = stdin.write_all(bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// A clock stopped at 07:08:09 UTC.
fn stopped_clock() -> LocalClock {
    let at: Timestamp = "2024-03-10T07:08:09.5Z".parse().expect("timestamp");
    LocalClock::new(Arc::new(ManualClock::new(at)), TimeZone::UTC)
}

/// A clock `offset` ahead of the system clock, in `zone`.
fn offset_clock(offset: SignedDuration, zone: TimeZone) -> LocalClock {
    LocalClock::new(Arc::new(OffsetClock::new(offset)), zone)
}

/// A real server on [::1]:0 (the harness binds only IPv4); stops when the guard drops.
struct Ipv6Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Ipv6Server {
    async fn start(clock: LocalClock) -> Ipv6Server {
        let listener = std::net::TcpListener::bind("[::1]:0")
            .expect("bind [::1]:0 (is IPv6 loopback configured?)");
        let addr = listener.local_addr().expect("local addr");
        let server = Server::new(vec![listener], ServerConfig::default(), clock);
        let shutdown = CancellationToken::new();
        tokio::spawn(server.run(shutdown.clone()));
        Ipv6Server { addr, shutdown }
    }
}

impl Drop for Ipv6Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fake server on 127.0.0.1:0: every connection is handed to `serve` on its own thread.
fn fake(serve: impl Fn(StdStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind fake");
    let addr = listener.local_addr().expect("fake addr");
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(WAIT));
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// A fake that answers `reply` to every line it receives (pipelined lines included).
fn fake_answering(reply: &'static [u8]) -> SocketAddr {
    fake(move |mut stream| {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
            if stream.write_all(&reply.repeat(lines)).is_err() {
                return;
            }
        }
    })
}

/// A fake that accepts and never answers, holding the connection until the client closes it.
fn fake_silent() -> SocketAddr {
    fake(|mut stream| {
        let mut buf = [0u8; 512];
        while let Ok(1..) = stream.read(&mut buf) {}
    })
}

/// A fake that reads one request line and closes without replying.
fn fake_hanging_up() -> SocketAddr {
    fake(|mut stream| {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.contains(&b'\n') {
            let Ok(n @ 1..) = stream.read(&mut buf) else {
                return;
            };
            got.extend_from_slice(&buf[..n]);
        }
    })
}

/// A fake jam server that answers `TIME` with `JAM 12:34:56`, closes after `QUIT`, and reports
/// every byte the client sent on that connection.
fn fake_recording() -> (SocketAddr, Receiver<Vec<u8>>) {
    let (tx, rx) = channel();
    let addr = fake(move |mut stream| {
        let mut got = Vec::new();
        let mut answered = 0;
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
            let times = got
                .windows(6)
                .filter(|w| w.eq_ignore_ascii_case(b"TIME\r\n"))
                .count();
            for _ in answered..times {
                let _ = stream.write_all(b"JAM 12:34:56\r\n");
            }
            answered = times;
            if got.ends_with(b"QUIT\r\n") {
                break;
            }
        }
        let _ = tx.send(got);
    });
    (addr, rx)
}

/// A port on 127.0.0.1 where nothing listens (bound, noted, released).
fn refused_addr() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// Whether `line` is `JAM hh:mm:ss` with fields in range.
fn is_jam_line(line: &str) -> bool {
    let Some(time) = line.strip_prefix("JAM ") else {
        return false;
    };
    let fields: Vec<&str> = time.split(':').collect();
    fields.len() == 3
        && fields
            .iter()
            .all(|f| f.len() == 2 && f.bytes().all(|b| b.is_ascii_digit()))
        && fields[0] < "24"
        && fields[1] < "60"
        && fields[2] < "60"
}

// ---------------------------------------------------------------------------------------------
// jam time
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn time_prints_the_servers_time_as_one_jam_line() {
    let server = TestServer::with_clock(ServerConfig::default(), stopped_clock()).await;
    let run = jam(&["time", &server.addr.to_string()]).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "JAM 07:08:09\n");
    assert_eq!(run.stderr, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_reads_the_real_clock_of_a_utc_server() {
    let server = TestServer::default().await;
    let before = Timestamp::now();
    let run = jam(&["time", &server.addr.to_string()]).await;
    let after = Timestamp::now();
    run.expect_code(0);
    let line = run.stdout.strip_suffix('\n').expect("ends with LF");
    assert!(is_jam_line(line), "{:?}", run.stdout);
    // The server read its clock at some instant between `before` and `after`.
    let shown = |t: Timestamp| format!("JAM {}", t.strftime("%H:%M:%S"));
    let mut seconds = vec![shown(after)];
    let mut t = before;
    while t < after {
        seconds.push(shown(t));
        t += SignedDuration::from_secs(1);
    }
    assert!(
        seconds.iter().any(|s| s == line),
        "{line} not among {seconds:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_connects_to_a_bracketed_ipv6_address() {
    let server = Ipv6Server::start(stopped_clock()).await;
    let target = format!("[::1]:{}", server.addr.port());
    let run = jam(&["time", &target]).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "JAM 07:08:09\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_resolves_a_host_name() {
    let server = TestServer::with_clock(ServerConfig::default(), stopped_clock()).await;
    let target = format!("localhost:{}", server.addr.port());
    let run = jam(&["time", &target]).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "JAM 07:08:09\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_count_asks_repeatedly_over_one_connection() {
    let server = TestServer::default().await;
    let addr = server.addr.to_string();
    let run = jam(&["time", &addr, "--count", "3", "--interval", "50ms"]).await;
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{:?}", run.stdout);
    assert!(lines.iter().all(|l| is_jam_line(l)), "{:?}", run.stdout);
    assert_eq!(server.stats.get().accepted, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn time_json_prints_one_object_per_reply() {
    let server = TestServer::with_clock(ServerConfig::default(), stopped_clock()).await;
    let addr = server.addr.to_string();
    let run = jam(&["time", &addr, "--json", "-n", "2", "-i", "10ms"]).await;
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{:?}", run.stdout);
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        assert_eq!(v["reply"], "JAM 07:08:09", "{line}");
        assert_eq!(v["time"], "07:08:09", "{line}");
        assert_eq!(v["server"], addr, "{line}");
        let rtt = v["rtt_ms"].as_f64().expect("rtt_ms is a number");
        assert!(rtt >= 0.0, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn time_sends_quit_before_closing() {
    let (addr, received) = fake_recording();
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "JAM 12:34:56\n");
    let got = received
        .recv_timeout(WAIT)
        .expect("the fake saw the session");
    assert_eq!(String::from_utf8_lossy(&got), "TIME\r\nQUIT\r\n");
}

// ---------------------------------------------------------------------------------------------
// jam time: failures and their exit codes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn bad_address_exits_2() {
    let run = jam(&["time", "host:notaport"]).await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("invalid address \"host:notaport\""),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_exits_3() {
    let addr = refused_addr();
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(3);
    assert!(
        run.stderr
            .contains(&format!("connection refused by {addr}")),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unresolvable_host_exits_4() {
    let run = jam(&["time", "no-such-host.invalid:45000"]).await;
    run.expect_code(4);
    assert!(
        run.stderr
            .contains("cannot resolve \"no-such-host.invalid\""),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out_with_exit_5() {
    let addr = fake_silent();
    let started = Instant::now();
    let run = jam(&["time", &addr.to_string(), "--timeout", "300ms"]).await;
    run.expect_code(5);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        run.stderr.contains("timed out after 300ms"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_jam_reply_exits_6_and_is_shown() {
    let addr = fake_answering(b"+PONG\r\n");
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(6);
    assert!(
        run.stderr.contains("invalid reply from server: \"+PONG\""),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_range_time_exits_6() {
    let addr = fake_answering(b"JAM 25:00:00\r\n");
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(6);
    assert!(
        run.stderr
            .contains("invalid reply from server: \"JAM 25:00:00\""),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_reply_is_escaped_in_the_message() {
    let addr = fake_answering(b"JAM \x1b[2J\"x\"\r\n");
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(6);
    assert!(!run.stderr.contains('\x1b'), "raw ESC in {:?}", run.stderr);
    assert!(
        run.stderr.contains(r#""JAM \x1B[2J\"x\"""#),
        "{:?}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_server_exits_7() {
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    // Hold the only slot, and make sure the server has admitted it.
    let mut held = server.connect().await;
    common::send(&mut held, b"TIME\r\n").await;
    common::assert_time_reply(&common::read_line(&mut held).await);
    let run = jam(&["time", &server.addr.to_string()]).await;
    run.expect_code(7);
    assert!(
        run.stderr.contains("server error: server busy"),
        "{}",
        run.stderr
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_line_exits_7() {
    let addr = fake_answering(b"ERR nope\r\n");
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(7);
    assert!(run.stderr.contains("server error: nope"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_closing_without_a_reply_exits_8() {
    let addr = fake_hanging_up();
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(8);
    assert!(
        run.stderr
            .contains("the server closed the connection before replying"),
        "{}",
        run.stderr
    );
}

/// A fake course server that answers each request line with the real UTC time in `format`
/// (jiff's strftime), like the course's reference `JAM 30-11-2026 02:15:05`.
fn fake_course_server(format: &'static str) -> SocketAddr {
    fake(move |mut stream| {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
                let reply = Timestamp::now()
                    .to_zoned(TimeZone::UTC)
                    .strftime(format)
                    .to_string();
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn time_prints_a_course_variant_and_says_once_how_it_differs() {
    let addr = fake_answering(b"JAM 30-11-2026 02:15:05\r\n");
    let run = jam(&["time", &addr.to_string(), "-n", "2", "-i", "10ms"]).await;
    run.expect_code(0);
    assert_eq!(
        run.stdout,
        "JAM 30-11-2026 02:15:05\nJAM 30-11-2026 02:15:05\n"
    );
    assert_eq!(
        run.stderr,
        format!(
            "jam: note: not the exact reply JAM hh:mm:ss CR LF: a date before the time \
             (dd-mm-YYYY)\n{QUIT_NOTE}\n"
        )
    );
}

/// What `jam time` says of a server (like these fakes) that keeps the connection after QUIT.
const QUIT_NOTE: &str = "jam: note: the server did not close the connection within 300 ms of QUIT \
    (QUIT should end the session); jam closed it";

#[tokio::test(flavor = "multi_thread")]
async fn time_names_every_difference_of_a_reply_without_prefix_and_cr() {
    let addr = fake_answering(b"30 11 2026 02:22:34\n");
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "30 11 2026 02:22:34\n");
    assert!(
        run.stderr.contains(
            "a date before the time (dd mm YYYY), no \"JAM \" prefix, LF only, not CR LF"
        ),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_strict_rejects_a_variant_with_exit_6() {
    let addr = fake_answering(b"JAM 09 05 25 16:37:26\r\n");
    let run = jam(&["time", "--strict", &addr.to_string()]).await;
    run.expect_code(6);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("invalid reply from server: \"JAM 09 05 25 16:37:26\" (a date before the time (dd mm yy)"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_strict_accepts_the_exact_form() {
    let addr = fake_answering(b"JAM 16:37:26\r\n");
    let run = jam(&["time", "--strict", &addr.to_string()]).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "JAM 16:37:26\n");
    // The fake never closes after QUIT: that, and only that, is noted.
    assert_eq!(run.stderr, format!("{QUIT_NOTE}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn time_json_says_whether_the_reply_was_exact() {
    let addr = fake_answering(b"JAM 2026-11-30 16:37:26\r\n");
    let v = jam(&["time", "--json", &addr.to_string()])
        .await
        .expect_code(0)
        .json();
    assert_eq!(v["reply"], "JAM 2026-11-30 16:37:26", "{v}");
    assert_eq!(v["time"], "16:37:26", "{v}");
    assert_eq!(v["exact"], false, "{v}");
    assert_eq!(
        v["differences"][0], "a date before the time (YYYY-mm-dd)",
        "{v}"
    );
    // Microseconds, not a float's last digits.
    let rtt = v["rtt_ms"].as_f64().expect("rtt_ms");
    let text = v["rtt_ms"].to_string();
    assert!(
        text.split('.')
            .nth(1)
            .is_none_or(|decimals| decimals.len() <= 3),
        "{text}"
    );
    assert!(rtt >= 0.0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_takes_a_reply_without_line_end_once_the_server_closes() {
    let addr = fake(|mut stream| {
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"JAM 16:37:26");
    });
    let run = jam(&["time", &addr.to_string()]).await;
    run.expect_code(0);
    assert_eq!(run.stdout, "JAM 16:37:26\n");
    assert!(run.stderr.contains("no line end"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// jam shell
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn shell_runs_piped_commands_and_quits() {
    let server = TestServer::default().await;
    let run = jam_fed(
        &["shell", &server.addr.to_string()],
        input(b"TIME\nbogus\nQUIT\n"),
    )
    .await;
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{:?}", run.stdout);
    assert!(lines[0].starts_with("connected to "), "{:?}", run.stdout);
    assert!(is_jam_line(lines[1]), "{:?}", run.stdout);
    assert_eq!(
        lines[2],
        "error: unknown command \"bogus\" (try TIME or QUIT)"
    );
    assert_eq!(lines[3], "bye");
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_shows_a_variant_as_a_reply_with_a_note() {
    let addr = fake_answering(b"JAM 30/11/2026 02:15:05\r\n");
    let run = jam_fed(&["shell", &addr.to_string()], input(b"TIME\nTIME\n")).await;
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[1..3],
        ["JAM 30/11/2026 02:15:05"; 2],
        "{:?}",
        run.stdout
    );
    assert_eq!(
        run.stderr
            .matches("a date before the time (dd/mm/YYYY)")
            .count(),
        1,
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_ends_cleanly_at_end_of_input_and_says_quit() {
    let (addr, received) = fake_recording();
    let run = jam_fed(&["shell", &addr.to_string()], input(b"TIME\n")).await;
    run.expect_code(0);
    assert!(run.stdout.contains("JAM 12:34:56"), "{:?}", run.stdout);
    let got = received
        .recv_timeout(WAIT)
        .expect("the fake saw the session");
    assert_eq!(String::from_utf8_lossy(&got), "TIME\r\nQUIT\r\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_reports_the_server_closing_the_session() {
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let run = jam_fed(&["shell", &server.addr.to_string()], |mut stdin| {
        std::thread::sleep(Duration::from_millis(500));
        let _ = stdin.write_all(b"TIME\n");
    })
    .await;
    run.expect_code(0);
    // The server's parting line is shown as unasked, not as the answer to TIME; the shell
    // reconnects and answers the command.
    let lines: Vec<&str> = run.stdout.lines().collect();
    let closed = lines
        .iter()
        .position(|l| *l == "the server closed the connection; reconnecting")
        .unwrap_or_else(|| panic!("no reconnect in {:?}", run.stdout));
    assert!(
        run.stdout
            .contains("(unasked, from the server)\nerror: idle timeout\n"),
        "{:?}",
        run.stdout
    );
    assert!(
        lines[closed + 1..].iter().any(|l| is_jam_line(l)),
        "TIME answered after reconnecting: {:?}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_keeps_no_history_of_piped_input() {
    let server = TestServer::default().await;
    let home = std::env::temp_dir().join(format!("jam-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    let addr = server.addr.to_string();
    let home_for_run = home.clone();
    let run = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jam"))
            .args(["shell", &addr])
            .env("HOME", &home_for_run)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("jam shell");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"TIME\nQUIT\n")
            .expect("feed");
        child.wait().expect("wait")
    })
    .await
    .expect("runner");
    assert!(run.success());
    assert!(
        !home.join(".jam_history").exists(),
        "piped input was recorded"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread")]
async fn color_is_always_never_or_auto_off_a_terminal() {
    let server = TestServer::default().await;
    let addr = server.addr.to_string();
    let check = |color: &'static str| {
        let addr = addr.clone();
        async move { jam(&["check", "--only", "time-format", "--color", color, &addr]).await }
    };
    assert!(check("always").await.stdout.contains("\x1b["));
    assert!(!check("never").await.stdout.contains("\x1b["));
    // stdout is a pipe here: auto means no colour.
    assert!(!check("auto").await.stdout.contains("\x1b["));
    let bad = jam(&["check", "--color", "sometimes"]).await;
    bad.expect_code(2);
}

// ---------------------------------------------------------------------------------------------
// jam offset
// ---------------------------------------------------------------------------------------------

/// Runs `jam offset --json` against a server reading `clock`; returns the JSON.
async fn offset_json(clock: LocalClock) -> Value {
    let server = TestServer::with_clock(ServerConfig::default(), clock).await;
    let run = jam(&["offset", &server.addr.to_string(), "--json"]).await;
    run.expect_code(0);
    run.json()
}

/// Asserts that the estimate's interval holds `truth` (with 1 ms slack) and is narrow.
fn assert_offset(v: &Value, truth: f64) {
    let offset = v["offset_s"].as_f64().expect("offset_s");
    let uncertainty = v["uncertainty_s"].as_f64().expect("uncertainty_s");
    assert!(
        (offset - truth).abs() <= uncertainty + 0.001,
        "{offset} ± {uncertainty} does not hold {truth}: {v}"
    );
    assert!(uncertainty < 0.1, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_uses_the_time_part_of_a_reply_with_a_date() {
    let addr = fake_course_server("JAM %d-%m-%Y %H:%M:%S\r\n");
    let run = jam(&["offset", "--json", "-r", "2", &addr.to_string()]).await;
    run.expect_code(0);
    let v = run.json();
    let offset = v["offset_s"].as_f64().expect("offset");
    assert!(offset.abs() < 0.5, "{v}");
    assert_eq!(v["exact"], false, "{v}");
    assert!(
        run.stderr.contains("a date before the time (dd-mm-YYYY)"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_finds_a_server_clock_ahead() {
    let v = offset_json(offset_clock(
        SignedDuration::from_millis(2345),
        TimeZone::UTC,
    ))
    .await;
    assert_offset(&v, 2.345);
    assert_eq!(v["zone_offset_s"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_finds_a_server_clock_behind() {
    let v = offset_json(offset_clock(
        SignedDuration::from_millis(-750),
        TimeZone::UTC,
    ))
    .await;
    assert_offset(&v, -0.750);
    assert_eq!(v["zone_offset_s"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_separates_the_zone_from_the_clock_error() {
    let zone = zone_by_name("Asia/Jakarta").expect("zone");
    let v = offset_json(LocalClock::new(Arc::new(SystemClock), zone)).await;
    assert_eq!(v["zone_offset_s"], 25200, "{v}");
    assert_offset(&v, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_text_shows_offset_and_rtt() {
    let server = TestServer::default().await;
    let run = jam(&["offset", &server.addr.to_string(), "--rounds", "2"]).await;
    run.expect_code(0);
    let line = |prefix: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", run.stdout))
            .to_string()
    };
    assert!(line("server ").contains("UTC+00:00"), "{:?}", run.stdout);
    // offset  +0.0012 s ± 0.0034 s  (server clock minus local clock)
    let offset = line("offset ");
    let words: Vec<&str> = offset.split_whitespace().collect();
    assert!(
        words.len() >= 5 && words[2] == "s" && words[3] == "±",
        "{offset}"
    );
    let value: f64 = words[1].parse().expect("offset value");
    let plus_minus: f64 = words[4].parse().expect("uncertainty");
    assert!(value.abs() <= plus_minus + 0.001, "{offset}");
    // rtt     0.123 ms (smallest of 9 requests)
    let rtt = line("rtt ");
    let words: Vec<&str> = rtt.split_whitespace().collect();
    assert!(words.len() >= 3 && words[2] == "ms", "{rtt}");
    assert!(words[1].parse::<f64>().expect("rtt value") >= 0.0, "{rtt}");
}

// ---------------------------------------------------------------------------------------------
// jam bench
// ---------------------------------------------------------------------------------------------

fn ok(v: &Value) -> u64 {
    v["ok"].as_u64().expect("ok")
}

fn error_count(v: &Value) -> u64 {
    v["error_count"].as_u64().expect("error_count")
}

/// Runs `jam bench ADDR ARGS… --json`, checks its exit code, and returns the JSON summary.
async fn bench_json(addr: &str, args: &[&str], code: i32) -> Value {
    let mut all = vec!["bench", addr];
    all.extend_from_slice(args);
    all.push("--json");
    let run = jam(&all).await;
    run.expect_code(code);
    run.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_closed_loop_answers_every_request() {
    let server = TestServer::default().await;
    let v = bench_json(&server.addr.to_string(), &["-c", "4", "-n", "2000"], 0).await;
    assert_eq!(ok(&v), 2000, "{v}");
    assert_eq!(error_count(&v), 0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_pipelined_answers_every_request() {
    let server = TestServer::default().await;
    let v = bench_json(
        &server.addr.to_string(),
        &["-c", "4", "-P", "8", "-n", "2000"],
        0,
    )
    .await;
    assert_eq!(ok(&v), 2000, "{v}");
    assert_eq!(error_count(&v), 0, "{v}");
    assert_eq!(v["pipeline"], 8, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_duration_runs_for_that_long() {
    let server = TestServer::default().await;
    let v = bench_json(&server.addr.to_string(), &["-c", "4", "-z", "500ms"], 0).await;
    assert!(ok(&v) > 0, "{v}");
    assert_eq!(error_count(&v), 0, "{v}");
    let elapsed = v["elapsed_s"].as_f64().expect("elapsed_s");
    assert!((0.5..3.0).contains(&elapsed), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_open_loop_sends_at_the_rate() {
    let server = TestServer::default().await;
    let v = bench_json(&server.addr.to_string(), &["--rate", "2000", "-z", "1s"], 0).await;
    assert!((1500..=2500).contains(&ok(&v)), "{v}");
    assert_eq!(error_count(&v), 0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_connect_per_request_opens_a_connection_each() {
    let server = TestServer::default().await;
    let v = bench_json(
        &server.addr.to_string(),
        &["--connect-per-request", "-c", "4", "-n", "200"],
        0,
    )
    .await;
    assert_eq!(ok(&v), 200, "{v}");
    assert_eq!(error_count(&v), 0, "{v}");
    // One connection per request, and the one that checks first that the server is there.
    assert_eq!(server.stats.get().accepted, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_other_protocols_with_request_and_expect() {
    let addr = fake_answering(b"+PONG\r\n");
    let v = bench_json(
        &addr.to_string(),
        &[
            "-c",
            "4",
            "-n",
            "1000",
            "--request",
            "PING",
            "--expect",
            "+PONG",
        ],
        0,
    )
    .await;
    assert_eq!(ok(&v), 1000, "{v}");
    assert_eq!(error_count(&v), 0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_request_without_expect_is_a_usage_error() {
    let addr = fake_answering(b"+PONG\r\n");
    let run = jam(&["bench", &addr.to_string(), "--request", "PING", "-n", "10"]).await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("--request needs --expect"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_counts_invalid_replies_as_errors() {
    let addr = fake_answering(b"JAM 99:99:99\r\n");
    let v = bench_json(&addr.to_string(), &["-c", "4", "-n", "100"], 1).await;
    assert_eq!(ok(&v), 0, "{v}");
    assert!(error_count(&v) > 0, "{v}");
    assert_eq!(v["errors"]["invalid reply"], error_count(&v), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_counts_course_variants_as_good_but_not_exact() {
    let addr = fake_answering(b"JAM 30 11 2026 02:22:32\r\n");
    let v = bench_json(&addr.to_string(), &["-c", "2", "-n", "200"], 0).await;
    assert_eq!(ok(&v), 200, "{v}");
    assert_eq!(v["not_exact"], 200, "{v}");
    assert_eq!(error_count(&v), 0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_strict_counts_a_variant_as_an_invalid_reply() {
    let addr = fake_answering(b"JAM 02:22:32\n");
    let v = bench_json(&addr.to_string(), &["-c", "2", "-n", "200", "--strict"], 1).await;
    assert_eq!(ok(&v), 0, "{v}");
    assert_eq!(v["not_exact"], 0, "{v}");
    assert!(error_count(&v) > 0, "{v}");
    assert_eq!(v["errors"]["invalid reply"], error_count(&v), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_summary_reports_replies_that_were_not_exact() {
    let addr = fake_answering(b"JAM 30-11-2026 02:22:32\r\n");
    let run = jam(&["bench", &addr.to_string(), "-c", "1", "-n", "50"]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("not exact   50 good replies were a variant"),
        "{}",
        run.stdout
    );
}

/// A fake that answers the first `good` lines of each connection with a valid reply, the next one
/// with `last` (if any), then reads on without answering until the client closes. With
/// `hang_up`, it closes its side after those replies instead (a FIN, the requests unanswered).
fn fake_answering_then(good: usize, last: Option<&'static [u8]>, hang_up: bool) -> SocketAddr {
    fake(move |mut stream| {
        let mut answered = 0;
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
                let reply: &[u8] = match (answered, last) {
                    (i, _) if i < good => b"JAM 12:34:56\r\n",
                    (i, Some(last)) if i == good => last,
                    _ => b"",
                };
                if stream.write_all(reply).is_err() {
                    return;
                }
                answered += 1;
            }
            if hang_up && answered >= good {
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_pipelined_counts_an_invalid_reply_and_only_the_good_ones_before_it() {
    // 5 good replies per connection, then a wrong one: the connection gives up there.
    let addr = fake_answering_then(5, Some(b"JAM 12:34:5x\r\n"), false);
    let addr = addr.to_string();
    let v = bench_json(&addr, &["-c", "2", "-P", "4", "-n", "1000"], 1).await;
    assert_eq!(ok(&v), 10, "{v}");
    assert_eq!(v["errors"]["invalid reply"], 2, "{v}");
    assert_eq!(error_count(&v), 2, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_counts_requests_outstanding_when_the_server_closes_mid_run() {
    // 10 replies per connection, then the server closes with 4 requests in flight on each.
    let addr = fake_answering_then(10, None, true);
    let addr = addr.to_string();
    let v = bench_json(&addr, &["-c", "2", "-P", "4", "-n", "1000"], 1).await;
    assert_eq!(ok(&v), 20, "{v}");
    assert_eq!(v["errors"]["closed by server"], 8, "{v}");
    assert_eq!(error_count(&v), 8, "{v}");
    assert_eq!(v["connections_opened"], 2, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_counts_requests_never_answered_as_timeouts() {
    let addr = fake_silent();
    let addr = addr.to_string();
    let v = bench_json(
        &addr,
        &["-c", "3", "-P", "2", "-n", "100", "--timeout", "200ms"],
        1,
    )
    .await;
    assert_eq!(ok(&v), 0, "{v}");
    assert_eq!(v["errors"]["timeout"], 6, "{v}");
    assert_eq!(error_count(&v), 6, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_with_nothing_listening_says_so_in_one_line_and_exits_3() {
    let addr = refused_addr();
    let run = jam(&["bench", &addr.to_string(), "-c", "2", "-n", "10", "--json"]).await;
    run.expect_code(3);
    assert_eq!(run.stdout, "", "no summary of zeros");
    assert_eq!(
        run.stderr,
        format!("jam bench: connection refused by {addr} (is jamd running?)\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_text_report_has_throughput_and_latency_percentiles() {
    let server = TestServer::default().await;
    let run = jam(&["bench", &server.addr.to_string(), "-c", "2", "-n", "500"]).await;
    run.expect_code(0);
    let out = &run.stdout;
    let throughput = out
        .lines()
        .find(|l| l.trim_start().starts_with("throughput"))
        .unwrap_or_else(|| panic!("no throughput line: {out:?}"));
    assert!(throughput.contains("req/s"), "{throughput}");
    let latency = out
        .lines()
        .find(|l| l.trim_start().starts_with("latency"))
        .unwrap_or_else(|| panic!("no latency line: {out:?}"));
    let words: Vec<&str> = latency.split_whitespace().collect();
    for label in ["p50", "p90", "p99", "p99.9", "max"] {
        let at = words
            .iter()
            .position(|w| *w == label)
            .unwrap_or_else(|| panic!("no {label} in {latency:?}"));
        let value: f64 = words[at + 1].parse().expect("a number after the label");
        assert!(value >= 0.0 && words[at + 2] == "ms", "{latency}");
    }
    assert!(out.contains("500 ok, 0 errors"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_prints_no_progress_when_stderr_is_not_a_terminal() {
    let server = TestServer::default().await;
    let run = jam(&["bench", &server.addr.to_string(), "-c", "2", "-z", "300ms"]).await;
    run.expect_code(0);
    assert_eq!(run.stderr, "");
    assert!(run.stdout.contains("throughput"), "{:?}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly_without_a_panic() {
    let server = common::TestServer::default().await;
    let addr = server.addr.to_string();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#""$0" time "$1" --count 5 --interval 100ms | head -n 1 >/dev/null; exit "${PIPESTATUS:-0}""#)
            .arg(env!("CARGO_BIN_EXE_jam"))
            .arg(&addr)
            .output()
            .expect("run sh");
        (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
    })
    .await
    .expect("join");
    assert!(status.success(), "{status:?} {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn bench_ctrl_c_ends_the_run_with_a_summary_of_what_was_done() {
    let jamd = common::Jamd::spawn(&[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args([
            "bench",
            &jamd.addr.to_string(),
            "-c",
            "4",
            "-z",
            "60s",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jam");
    // Let it run, then press Ctrl-C (SIGINT) as a user would.
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        assert!(start.elapsed() < WAIT, "jam bench ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert_eq!(code, Some(130), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("a JSON summary");
    assert_eq!(v["interrupted"], true, "{v}");
    assert!(ok(&v) > 0, "{v}");
    assert_eq!(
        error_count(&v),
        0,
        "in-flight requests are awaited, not failed: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn time_does_not_wait_out_the_timeout_for_a_server_that_keeps_the_connection_after_quit() {
    // Answers every line, QUIT included, and never closes: common in the course.
    let addr = fake_answering(b"JAM 12:00:00\r\n");
    let started = Instant::now();
    let run = jam(&["time", &addr.to_string(), "--timeout", "5s"]).await;
    let took = started.elapsed();
    run.expect_code(0);
    assert_eq!(run.stdout, "JAM 12:00:00\n");
    assert!(
        run.stderr
            .contains("did not close the connection within 300 ms of QUIT"),
        "{}",
        run.stderr
    );
    // Not a speed target: the 5 s timeout would be waited out in full before.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_says_nothing_about_quit_when_the_server_closes() {
    let server = TestServer::start(ServerConfig::default()).await;
    let run = jam(&["time", &server.addr.to_string()]).await;
    run.expect_code(0);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}
