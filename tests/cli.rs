//! The `jamd` binary as an operator meets it: flags and their environment variables, start-up,
//! time zones, binding, logging, signals and running out of descriptors. Every test runs the real
//! binary and talks to it over loopback TCP.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    Jamd, StderrLines, WAIT, assert_time_reply, eventually, jamd_command, send_signal, spawn_piped,
};

const JAMD: &str = env!("CARGO_BIN_EXE_jamd");

/// One `TIME` reply: `JAM hh:mm:ss\r\n`.
const REPLY_LEN: usize = 14;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How a process that ran to completion ended.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `command` to its end; fails the test if it is still running after `limit`.
fn finish(mut command: Command, limit: Duration) -> Finished {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => {
            let output = output.expect("wait for the process");
            Finished {
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} still running after {limit:?}");
        }
    }
}

/// A blocking client connection whose reads give up after [`WAIT`].
fn dial(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads one line including its CR LF.
fn recv_line(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            Ok(_) => panic!(
                "EOF before a full line; got {:?}",
                String::from_utf8_lossy(&line)
            ),
            Err(e) => panic!(
                "no full line ({e}); got {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
    line
}

/// Reads until the server closes cleanly (EOF, not a reset); returns everything received.
fn recv_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("a clean close within the wait");
    all
}

/// Sends `TIME` on a new connection and returns the reply line.
fn ask_time(addr: SocketAddr) -> Vec<u8> {
    let mut client = dial(addr);
    client.write_all(b"TIME\r\n").expect("send");
    let reply = recv_line(&mut client);
    assert_time_reply(&reply);
    reply
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `JAM hh:mm:ss\r\n` for `unix` seconds shifted by `offset` seconds.
fn jam_line_at(unix: u64, offset: i64) -> String {
    let of_day = (unix as i64 + offset).rem_euclid(86_400);
    format!(
        "JAM {:02}:{:02}:{:02}\r\n",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Asserts that the server's `TIME` reply is the system clock's UTC time plus `offset` seconds.
/// The reply must match one of the seconds the request was in flight, so a second boundary
/// crossed during the request cannot make the test flaky.
fn assert_reports_utc_plus(addr: SocketAddr, offset: i64) {
    let before = unix_seconds();
    let reply = text(&ask_time(addr));
    let after = unix_seconds();
    let expected: Vec<String> = (before..=after).map(|t| jam_line_at(t, offset)).collect();
    assert!(
        expected.contains(&reply),
        "reply {reply:?}, expected one of {expected:?} (UTC{offset:+}s)"
    );
}

/// Log lines containing `needle`.
fn log_lines(jamd: &Jamd, needle: &str) -> Vec<String> {
    jamd.log()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

/// A client that never reads and has sent so many pipelined `TIME`s that both directions of the
/// connection are full: the server cannot finish this session until the client reads.
fn stuck_client(addr: SocketAddr) -> TcpStream {
    let mut client = dial(addr);
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    let chunk = b"TIME\r\n".repeat(10_000);
    let mut sent = 0usize;
    loop {
        match client.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return client;
            }
            Err(e) => panic!("writing to the server failed after {sent} bytes: {e}"),
        }
        assert!(sent < 1 << 30, "the server never stopped reading");
    }
}

/// `jamd` started directly (not through the harness), for runs whose start-up line the harness
/// cannot read (`-q` hides it, JSON quotes it). Its port is found through `/proc`.
struct RawJamd {
    child: Child,
    addr: SocketAddr,
    log: StderrLines,
}

impl RawJamd {
    /// Starts `jamd --listen 127.0.0.1:0 ARGS`.
    fn spawn(args: &[&str]) -> RawJamd {
        let mut child = spawn_piped(jamd_command().args(["--listen", "127.0.0.1:0"]).args(args));
        let log = StderrLines::capture(&mut child, |_| {});
        let pid = child.id();
        let port = eventually(|| "jamd to listen".into(), || listening_port(pid));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        RawJamd { child, addr, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.all()
    }

    fn wait_for_log(&self, needle: &str) {
        self.log.wait_for(needle);
    }

    /// Sends SIGTERM and waits for a clean exit, so every log line has been written.
    fn stop(&mut self) {
        send_signal(&self.child, "TERM");
        let code = eventually(
            || "jamd to exit".into(),
            || self.child.try_wait().expect("try_wait").map(|s| s.code()),
        );
        assert_eq!(code, Some(0), "exit code after SIGTERM");
        // The reader thread may still be draining the pipe.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for RawJamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of a TCP socket that process `pid` listens on, from `/proc/<pid>/fd` and
/// `/proc/net/tcp`.
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        if *state != "0A" || !inodes.iter().any(|i| i == inode) {
            return None;
        }
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    })
}

/// CPU time (user + system, all threads) used so far by process `pid`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name start at field 3 (state).
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let per_second: u64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf CLK_TCK")
            .stdout,
    )
    .expect("utf-8")
    .trim()
    .parse()
    .expect("CLK_TCK");
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

fn ipv6_loopback_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------------
// --help and --version
// ---------------------------------------------------------------------------------------------

/// The help text of one option, from its `-x, --flag` line to the next option, with whitespace
/// (including line wrapping) collapsed to single spaces.
fn help_section(help: &str, flag: &str) -> String {
    let is_option_line = |line: &str| {
        let indent = line.len() - line.trim_start().len();
        indent <= 6 && line.trim_start().starts_with('-')
    };
    let names_flag = |line: &str| line.split([',', ' ']).any(|word| word == flag);
    let mut lines = help
        .lines()
        .skip_while(|l| !(is_option_line(l) && names_flag(l)));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("--help does not document {flag}:\n{help}"));
    let rest = lines.take_while(|l| !is_option_line(l));
    std::iter::once(first)
        .chain(rest)
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn help_documents_every_flag_with_its_env_var_and_default() {
    let help = finish(
        {
            let mut c = jamd_command();
            c.arg("--help");
            c
        },
        WAIT,
    );
    assert_eq!(help.code, Some(0), "stderr: {}", help.stderr);
    // (flag, environment variable, start of the documented default)
    let flags: [(&str, Option<&str>, Option<&str>); 15] = [
        ("--listen", Some("JAMD_LISTEN"), Some("[::]:PORT")),
        ("--port", Some("JAMD_PORT"), Some("45000")),
        ("--utc", Some("JAMD_UTC"), None),
        ("--tz", Some("JAMD_TZ"), Some("TZ, then /etc/localtime")),
        ("--max-line", Some("JAMD_MAX_LINE"), Some("1024")),
        (
            "--max-connections",
            Some("JAMD_MAX_CONNECTIONS"),
            Some("the open-file limit"),
        ),
        ("--idle-timeout", Some("JAMD_IDLE_TIMEOUT"), Some("5m")),
        ("--line-timeout", Some("JAMD_LINE_TIMEOUT"), Some("30s")),
        ("--write-timeout", Some("JAMD_WRITE_TIMEOUT"), Some("30s")),
        ("--max-output", Some("JAMD_MAX_OUTPUT"), Some("64KiB")),
        ("--shutdown-grace", Some("JAMD_SHUTDOWN_GRACE"), Some("10s")),
        ("--threads", Some("JAMD_THREADS"), Some("one per CPU")),
        (
            "--log-level",
            Some("JAMD_LOG_LEVEL"),
            Some("RUST_LOG, then info"),
        ),
        ("--log-format", Some("JAMD_LOG_FORMAT"), Some("text")),
        ("--quiet", None, None),
    ];
    for (flag, env, default) in flags {
        let section = help_section(&help.stdout, flag);
        if let Some(env) = env {
            assert!(
                section.contains(&format!("[env: {env}=")),
                "{flag} does not name {env}: {section:?}"
            );
        }
        if let Some(default) = default {
            assert!(
                section.contains(&format!("[default: {default}")),
                "{flag} does not give its default {default:?}: {section:?}"
            );
        }
    }
}

#[test]
fn version_prints_the_version_and_exits_0() {
    let mut command = jamd_command();
    command.arg("--version");
    let version = finish(command, WAIT);
    assert_eq!(version.code, Some(0), "stderr: {}", version.stderr);
    assert_eq!(
        version.stdout,
        format!("jamd {}\n", env!("CARGO_PKG_VERSION"))
    );
}

// ---------------------------------------------------------------------------------------------
// Start-up, time zones, flags from the environment
// ---------------------------------------------------------------------------------------------

#[test]
fn startup_line_names_the_address_the_zone_and_the_limits() {
    let jamd = Jamd::spawn(&[
        "--utc",
        "--max-line",
        "100",
        "--max-connections",
        "7",
        "--idle-timeout",
        "2m",
        "--line-timeout",
        "9s",
        "--write-timeout",
        "11s",
        "--max-output",
        "4KiB",
    ]);
    let line = jamd.wait_for_log("listening on");
    for expected in [
        format!("listening on {}", jamd.addr),
        "zone=UTC".to_string(),
        "max_connections=7".to_string(),
        "max_line=100".to_string(),
        "idle_timeout=2m".to_string(),
        "line_timeout=9s".to_string(),
        "write_timeout=11s".to_string(),
        "max_output=4096".to_string(),
    ] {
        assert!(
            line.contains(&expected),
            "{expected:?} missing from {line:?}"
        );
    }
}

#[test]
fn tz_asia_jakarta_reports_utc_plus_7() {
    let jamd = Jamd::spawn(&["--tz", "Asia/Jakarta"]);
    let line = jamd.wait_for_log("listening on");
    assert!(line.contains("zone=Asia/Jakarta"), "{line}");
    assert_reports_utc_plus(jamd.addr, 7 * 3600);
}

#[test]
fn utc_flag_reports_utc() {
    // A local zone that is surely not UTC, so that --utc has something to override.
    let mut command = Command::new(JAMD);
    command.env("TZ", "Asia/Jakarta");
    let jamd = Jamd::spawn_with(command, &["--utc"]);
    let line = jamd.wait_for_log("listening on");
    assert!(line.contains("zone=UTC"), "{line}");
    assert_reports_utc_plus(jamd.addr, 0);
}

#[test]
fn booleans_from_the_environment_take_what_systemd_and_shells_write() {
    for (value, zone) in [("1", "zone=UTC"), ("yes", "zone=UTC"), ("on", "zone=UTC")] {
        let mut command = Command::new(JAMD);
        command.env("TZ", "Asia/Jakarta").env("JAMD_UTC", value);
        let jamd = Jamd::spawn_with(command, &[]);
        let line = jamd.wait_for_log("listening on");
        assert!(line.contains(zone), "JAMD_UTC={value}: {line}");
        assert_reports_utc_plus(jamd.addr, 0);
    }
    for value in ["0", "no", "off", "false"] {
        let mut command = Command::new(JAMD);
        command.env("TZ", "Asia/Jakarta").env("JAMD_UTC", value);
        let jamd = Jamd::spawn_with(command, &[]);
        assert_reports_utc_plus(jamd.addr, 7 * 3600);
    }
    // A false JAMD_UTC does not conflict with --tz (a systemd drop-in may set it).
    let mut command = Command::new(JAMD);
    command.env("JAMD_UTC", "false");
    let jamd = Jamd::spawn_with(command, &["--tz", "Asia/Jakarta"]);
    assert_reports_utc_plus(jamd.addr, 7 * 3600);
}

#[test]
fn unknown_zone_exits_non_zero_naming_the_zone() {
    let mut command = jamd_command();
    command.args(["--listen", "127.0.0.1:0", "--tz", "Mars/Base"]);
    let run = finish(command, WAIT);
    assert_ne!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.code.is_some(), "killed by a signal");
    assert!(
        run.stderr.contains("unknown time zone") && run.stderr.contains("Mars/Base"),
        "stderr: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("listening on"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn env_var_sets_a_flag() {
    let mut command = Command::new(JAMD);
    command.env("JAMD_MAX_LINE", "16");
    let jamd = Jamd::spawn_with(command, &[]);
    let mut client = dial(jamd.addr);
    client.write_all(&[b'A'; 17]).expect("send");
    client.write_all(b"\r\n").expect("send");
    assert_eq!(
        text(&recv_to_eof(&mut client)),
        "ERR line too long (max 16 bytes)\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------------

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let first = Jamd::spawn(&[]);
    let addr = first.addr.to_string();
    let mut command = jamd_command();
    command.args(["--listen", &addr]);
    let second = finish(command, WAIT);
    assert_eq!(second.code, Some(1), "stderr: {}", second.stderr);
    assert!(
        second
            .stderr
            .to_lowercase()
            .contains("address already in use"),
        "stderr: {}",
        second.stderr
    );
    assert!(second.stderr.contains(&addr), "stderr: {}", second.stderr);
    // The first instance is unaffected.
    ask_time(first.addr);
}

#[test]
fn restart_on_the_same_port_after_a_connection_works() {
    let mut first = Jamd::spawn(&[]);
    let addr = first.addr;
    let mut client = dial(addr);
    client.write_all(b"TIME\r\nQUIT\r\n").expect("send");
    assert_eq!(recv_to_eof(&mut client).len(), REPLY_LEN);
    drop(client);
    // The server closed first, so its side of that connection is now in TIME_WAIT.
    first.wait_for_log("connection closed");
    first.signal("TERM");
    assert_eq!(first.wait_exit(WAIT).0, Some(0));

    let second = Jamd::spawn(&["--listen", &addr.to_string()]);
    assert_eq!(second.addr, addr);
    ask_time(addr);
}

#[test]
fn dual_stack_listener_answers_ipv4_and_ipv6() {
    if !ipv6_loopback_available() {
        eprintln!("SKIPPED: no IPv6 loopback on this host");
        return;
    }
    let jamd = Jamd::spawn(&["--listen", "[::]:0"]);
    let port = jamd.addr.port();
    ask_time(SocketAddr::from(([127, 0, 0, 1], port)));
    ask_time(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
}

#[test]
fn dual_stack_listener_logs_ipv4_peers_as_ipv4() {
    if !ipv6_loopback_available() {
        eprintln!("SKIPPED: no IPv6 loopback on this host");
        return;
    }
    let jamd = Jamd::spawn(&["--listen", "[::]:0"]);
    let client = dial(SocketAddr::from(([127, 0, 0, 1], jamd.addr.port())));
    let local = client.local_addr().expect("local addr");
    let line = jamd.wait_for_log("connection opened");
    assert!(line.contains(&format!("peer={local}")), "{line}");
    assert!(!line.contains("::ffff:"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

#[test]
fn each_connection_logs_opened_and_closed_at_info() {
    let jamd = Jamd::spawn(&[]);
    let mut client = dial(jamd.addr);
    let peer = format!("peer={}", client.local_addr().expect("local addr"));
    client.write_all(b"TIME\r\nTIME\r\n").expect("send");
    recv_line(&mut client);
    recv_line(&mut client);
    client.shutdown(Shutdown::Write).expect("shutdown");
    assert!(recv_to_eof(&mut client).is_empty());

    let opened = jamd.wait_for_log("connection opened");
    assert!(
        opened.contains(" INFO ") && opened.contains(&peer),
        "{opened}"
    );
    let closed = jamd.wait_for_log("connection closed");
    assert!(
        closed.contains(" INFO ") && closed.contains(&peer),
        "{closed}"
    );
    assert!(closed.contains(" requests=2"), "{closed}");
    assert!(closed.contains(" reason=client_closed"), "{closed}");
    let duration = closed
        .split(" duration_ms=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no duration_ms: {closed}"));
    assert!(duration.parse::<u64>().is_ok(), "{closed}");
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let mut jamd = RawJamd::spawn(&["--log-format", "json"]);
    let mut client = dial(jamd.addr);
    let peer = client.local_addr().expect("local addr");
    client.write_all(b"TIME\r\nQUIT\r\n").expect("send");
    assert_eq!(recv_to_eof(&mut client).len(), REPLY_LEN);
    jamd.wait_for_log("connection closed");
    jamd.stop();

    let log = jamd.log();
    assert!(log.len() >= 4, "{log:#?}");
    for line in &log {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
        for key in ["\"timestamp\":", "\"level\":", "\"message\":"] {
            assert!(line.contains(key), "no {key} in {line}");
        }
    }
    let listening = log
        .iter()
        .find(|l| l.contains("listening on"))
        .expect("start-up line");
    assert!(listening.contains("\"level\":\"INFO\""), "{listening}");
    assert!(
        listening.contains(&format!("listening on {}", jamd.addr)),
        "{listening}"
    );
    let opened = log
        .iter()
        .find(|l| l.contains("\"message\":\"connection opened\""))
        .expect("connection opened");
    assert!(opened.contains(&format!("\"peer\":\"{peer}\"")), "{opened}");
}

#[test]
fn quiet_logs_only_warnings_and_errors() {
    let mut jamd = RawJamd::spawn(&["-q", "--max-connections", "1"]);
    let mut served = dial(jamd.addr);
    served.write_all(b"TIME\r\n").expect("send");
    recv_line(&mut served);
    // A second connection is turned away: that warning must still be logged, and it comes after
    // the first connection's (suppressed) info line.
    let mut turned_away = dial(jamd.addr);
    assert_eq!(text(&recv_to_eof(&mut turned_away)), "ERR server busy\r\n");
    jamd.wait_for_log("connection limit reached");
    drop(served);
    jamd.stop();

    let log = jamd.log();
    assert!(log.iter().any(|l| l.contains(" WARN ")), "{log:#?}");
    for line in &log {
        assert!(
            line.contains(" WARN ") || line.contains(" ERROR "),
            "-q let through: {line}"
        );
    }
}

#[test]
fn debug_level_logs_each_request() {
    let jamd = Jamd::spawn(&["--log-level", "debug"]);
    ask_time(jamd.addr);
    let line = jamd.wait_for_log("request=TIME");
    assert!(line.contains(" DEBUG "), "{line}");
}

#[test]
fn info_level_does_not_log_each_request() {
    let jamd = Jamd::spawn(&[]);
    ask_time(jamd.addr);
    // The session's close comes after its requests in the log.
    jamd.wait_for_log("connection closed");
    assert_eq!(log_lines(&jamd, "request="), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Signals and shutdown
// ---------------------------------------------------------------------------------------------

/// With nothing to finish, a signal ends the process well before the (default 10 s) grace period.
fn exits_0_promptly_when_idle(signal: &str) {
    let mut jamd = Jamd::spawn(&[]);
    ask_time(jamd.addr);
    jamd.signal(signal);
    let (code, _) = jamd.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "log: {:#?}", jamd.log());
}

#[test]
fn sigterm_exits_0_promptly_when_idle() {
    exits_0_promptly_when_idle("TERM");
}

#[test]
fn sigint_exits_0_promptly_when_idle() {
    exits_0_promptly_when_idle("INT");
}

#[test]
fn sigterm_answers_every_request_already_sent_then_exits_0() {
    const CLIENTS: usize = 4;
    const REQUESTS: usize = 2000;
    let grace = Duration::from_secs(10);
    let mut jamd = Jamd::spawn(&["--shutdown-grace", "10s"]);
    let batch = b"TIME\r\n".repeat(REQUESTS);
    let clients: Vec<(TcpStream, Vec<u8>)> = (0..CLIENTS)
        .map(|_| {
            let mut client = dial(jamd.addr);
            client.write_all(&batch).expect("send");
            // The first reply proves the server has the batch (in its socket buffer or beyond).
            let first = recv_line(&mut client);
            (client, first)
        })
        .collect();

    let signalled = Instant::now();
    jamd.signal("TERM");
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(mut client, first)| {
            std::thread::spawn(move || {
                let mut all = first;
                all.extend(recv_to_eof(&mut client));
                all
            })
        })
        .collect();
    for reader in readers {
        let all = reader.join().expect("reader");
        assert_eq!(all.len() % REPLY_LEN, 0, "a cut reply");
        assert_eq!(all.len() / REPLY_LEN, REQUESTS, "replies to one client");
        all.chunks(REPLY_LEN).for_each(assert_time_reply);
    }
    let (code, _) = jamd.wait_exit(grace.saturating_sub(signalled.elapsed()));
    assert_eq!(code, Some(0));
    // Every session finished by itself; none was cut off when the grace period ran out.
    assert_eq!(log_lines(&jamd, "grace period over"), Vec::<String>::new());
}

#[test]
fn after_sigterm_new_connections_are_refused() {
    let mut jamd = Jamd::spawn(&["--shutdown-grace", "30s"]);
    // Keeps the server busy in its grace period, so it is still running when we connect.
    let _stuck = stuck_client(jamd.addr);
    jamd.signal("TERM");
    jamd.wait_for_log("stopped accepting");
    let err = TcpStream::connect_timeout(&jamd.addr, WAIT).expect_err("connection refused");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(
        jamd.child.try_wait().expect("try_wait").is_none(),
        "jamd should still be in its grace period"
    );
}

#[test]
fn sigterm_closes_an_idle_connection_at_once() {
    let mut jamd = Jamd::spawn(&[]);
    let mut client = dial(jamd.addr);
    client.write_all(b"TIME\r\n").expect("send");
    recv_line(&mut client);
    // Well inside the 10 s grace period: waiting it out would fail the read.
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    jamd.signal("TERM");
    let mut buf = [0u8; 64];
    match client.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected bytes {:?}", text(&buf[..n])),
        Err(e) => panic!("no EOF after SIGTERM: {e}"),
    }
    assert_eq!(jamd.wait_exit(WAIT).0, Some(0));
}

/// A second signal during the grace period ends the process at once with 128 + the signal.
fn second_signal_exits_at_once(signal: &str, code: i32) {
    let mut jamd = Jamd::spawn(&["--shutdown-grace", "30s"]);
    let _stuck = stuck_client(jamd.addr);
    jamd.signal(signal);
    jamd.wait_for_log("stopped accepting");
    assert!(
        jamd.child.try_wait().expect("try_wait").is_none(),
        "jamd should still be in its grace period"
    );
    jamd.signal(signal);
    let (exit, _) = jamd.wait_exit(Duration::from_secs(5));
    assert_eq!(exit, Some(code), "log: {:#?}", jamd.log());
}

#[test]
fn second_sigterm_exits_at_once_with_143() {
    second_signal_exits_at_once("TERM", 143);
}

#[test]
fn second_sigint_exits_at_once_with_130() {
    second_signal_exits_at_once("INT", 130);
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[test]
fn out_of_descriptors_pauses_accepts_without_spinning_and_recovers() {
    if !common::require_tool("prlimit", "util-linux") {
        return;
    }
    let mut prlimit = Command::new("prlimit");
    prlimit.args(["--nofile=64", "--", JAMD]);
    let mut jamd = Jamd::spawn_with(prlimit, &["--max-connections", "1000"]);
    let pid = jamd.child.id();

    // More connections than descriptors: the kernel completes them all (the backlog is large),
    // the server accepts until it runs out (about 54 with its own ~10 descriptors), and the rest
    // wait in the backlog.
    let mut clients: Vec<TcpStream> = (0..90).map(|_| dial(jamd.addr)).collect();
    jamd.wait_for_log("cannot accept connections");
    let window = Instant::now();

    assert!(
        jamd.child.try_wait().expect("try_wait").is_none(),
        "jamd died: {:#?}",
        jamd.log()
    );
    let cpu_before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(pid) - cpu_before;
    assert!(
        cpu < Duration::from_millis(300),
        "jamd used {cpu:?} of CPU in 1 s while out of descriptors: it spins"
    );

    // Free descriptors (the first 50 were accepted): the server must accept the backlog and then
    // serve a new client.
    clients.drain(..50);
    let mut client = dial(jamd.addr);
    client.write_all(b"TIME\r\n").expect("send");
    assert_time_reply(&recv_line(&mut client));

    let warnings = log_lines(&jamd, "cannot accept connections").len();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} accept warnings in {:?}: not rate-limited",
        window.elapsed()
    );
    assert!(jamd.child.try_wait().expect("try_wait").is_none());
}

#[test]
fn max_connections_flag_turns_extra_clients_away_as_busy() {
    let jamd = Jamd::spawn(&["--max-connections", "2"]);
    let mut admitted: Vec<TcpStream> = (0..2).map(|_| dial(jamd.addr)).collect();
    for client in &mut admitted {
        client.write_all(b"TIME\r\n").expect("send");
        assert_time_reply(&recv_line(client));
    }
    let mut third = dial(jamd.addr);
    assert_eq!(text(&recv_to_eof(&mut third)), "ERR server busy\r\n");
    jamd.wait_for_log("connection limit reached");
}
