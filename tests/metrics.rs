//! The `--metrics` endpoint of the real binary: scraped over HTTP after known traffic, every
//! counter must show exactly that traffic, and `promtool check metrics` must accept the output.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The address from the `metrics listening on ADDR` log line.
fn metrics_addr(jamd: &Jamd) -> SocketAddr {
    let line = jamd.wait_for_log("metrics listening on ");
    line.split("metrics listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Sends a raw HTTP/1.1 request and returns the status line, headers and body.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut all = String::new();
    stream.read_to_string(&mut all).expect("read");
    let (head, body) = all.split_once("\r\n\r\n").expect("head and body");
    (head.to_string(), body.to_string())
}

fn scrape(addr: SocketAddr) -> String {
    let (head, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// The value of the sample written exactly as `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// Runs one session: sends `input`, ends its side, reads until the server closes.
fn session(addr: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(input).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("read");
    all
}

/// Scrapes until every accepted connection has been counted closed: `jam` and `rfc868`
/// connections were accepted and none is active. (A session is counted as it closes, just after
/// its client saw the close.)
fn settled(addr: SocketAddr, jam: f64, rfc868: f64) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(addr);
        let done = value(&text, "jamd_connections_accepted_total{service=\"jam\"}") == jam
            && value(&text, "jamd_connections_accepted_total{service=\"rfc868\"}") == rfc868
            && value(&text, "jamd_connections_active") == 0.0;
        if done || start.elapsed() > WAIT {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_show_exactly_the_traffic_sent() {
    let jamd = Jamd::spawn(&[
        "--metrics",
        "127.0.0.1:0",
        "--rfc868",
        "127.0.0.1:0",
        "--max-line",
        "16",
    ]);
    let metrics = metrics_addr(&jamd);
    let before = scrape(metrics);
    assert_eq!(value(&before, "jamd_requests_total{command=\"TIME\"}"), 0.0);

    let input = b"TIME\r\nTIME\r\n\r\nfoo\r\nTIME now\r\nQUIT\r\n";
    let replies = session(jamd.addr, input);
    session(jamd.addr, b"TIME");
    session(jamd.addr, b"GET / HTTP/1.1\r\n");
    session(jamd.addr, b"TIME TIME TIME TIME TIME\r\n");
    let line = jamd.wait_for_log("rfc868-time service listening on ");
    let rfc868: SocketAddr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("rfc868 address");
    assert_eq!(session(rfc868, b"").len(), 4);

    let text = settled(metrics, 4.0, 1.0);
    let expect = [
        ("jamd_connections_accepted_total{service=\"jam\"}", 4.0),
        ("jamd_connections_accepted_total{service=\"rfc868\"}", 1.0),
        ("jamd_connections_accepted_total{service=\"daytime\"}", 0.0),
        ("jamd_requests_total{command=\"TIME\"}", 2.0),
        ("jamd_requests_total{command=\"QUIT\"}", 1.0),
        ("jamd_requests_total{command=\"other\"}", 3.0),
        ("jamd_error_replies_total{kind=\"unknown_command\"}", 1.0),
        ("jamd_error_replies_total{kind=\"extra_arguments\"}", 1.0),
        ("jamd_error_replies_total{kind=\"not_http\"}", 1.0),
        ("jamd_error_replies_total{kind=\"missing_line_end\"}", 1.0),
        ("jamd_error_replies_total{kind=\"line_too_long\"}", 1.0),
        ("jamd_connections_closed_total{reason=\"quit\"}", 1.0),
        (
            "jamd_connections_closed_total{reason=\"client_closed\"}",
            1.0,
        ),
        (
            "jamd_connections_closed_total{reason=\"http_request\"}",
            1.0,
        ),
        (
            "jamd_connections_closed_total{reason=\"line_too_long\"}",
            1.0,
        ),
        ("jamd_connections_closed_total{reason=\"answered\"}", 1.0),
        ("jamd_connections_active", 0.0),
    ];
    for (series, want) in expect {
        assert_eq!(value(&text, series), want, "{series} in\n{text}");
    }
    let received = input.len() + 4 + 16 + 26;
    assert_eq!(
        value(&text, "jamd_received_bytes_total"),
        received as f64,
        "{text}"
    );
    // Every byte a client read came from the server: the first session's replies, the other
    // sessions' error lines, and the 4 RFC 868 bytes.
    let sent = value(&text, "jamd_sent_bytes_total");
    assert!(
        sent >= (replies.len() + 4) as f64,
        "{sent} < replies\n{text}"
    );
    assert_eq!(value(&text, "jamd_build_info{version=\"0.1.0\"}"), 1.0);
    assert!(value(&text, "jamd_uptime_seconds") > 0.0);
}

#[test]
fn a_busy_refusal_is_counted_by_reason() {
    let jamd = Jamd::spawn(&["--metrics", "127.0.0.1:0", "--max-connections", "1"]);
    let metrics = metrics_addr(&jamd);
    let mut held = TcpStream::connect(jamd.addr).expect("connect");
    held.set_read_timeout(Some(WAIT)).expect("timeout");
    held.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    held.read_exact(&mut reply).expect("reply");
    assert_eq!(session(jamd.addr, b""), b"ERR server busy\r\n");
    let text = scrape(metrics);
    assert_eq!(
        value(&text, "jamd_connections_refused_total{reason=\"busy\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "jamd_error_replies_total{kind=\"server_busy\"}"),
        1.0
    );
    assert_eq!(value(&text, "jamd_connections_active"), 1.0);
    assert_eq!(value(&text, "jamd_connections_max"), 1.0);
}

#[test]
fn promtool_accepts_the_exposition() {
    if !require_tool("promtool", "prometheus") {
        return;
    }
    let jamd = Jamd::spawn(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&jamd);
    session(jamd.addr, b"TIME\r\nQUIT\r\n");
    let text = scrape(metrics);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_clock_state_is_exported_as_the_log_reports_it() {
    let jamd = Jamd::spawn(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&jamd);
    let logged = jamd.wait_for_log("system clock is");
    let text = scrape(metrics);
    let synchronised = logged.contains("system clock is synchronised");
    assert_eq!(
        value(&text, "jamd_clock_synchronized"),
        f64::from(u8::from(synchronised)),
        "{logged}\n{text}"
    );
    let max_error = value(&text, "jamd_clock_maximum_error_seconds");
    assert!((0.0..=16.0).contains(&max_error), "{text}");
}

#[test]
fn the_endpoint_answers_only_get_metrics() {
    let jamd = Jamd::spawn(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&jamd);
    let (head, _) = http(metrics, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // `/` points a person with a browser to /metrics, as the README says.
    let (head, body) = http(metrics, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "jamd metrics: GET /metrics\n");
    let (head, _) = http(
        metrics,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    // A jam client on the metrics port gets an HTTP error, not a hang.
    let mut stream = TcpStream::connect(metrics).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(b"TIME\r\n\r\n").expect("send");
    let mut all = String::new();
    let _ = stream.read_to_string(&mut all);
    assert!(all.starts_with("HTTP/1.1 4"), "{all:?}");
}

#[test]
fn an_open_session_is_counted_without_waiting_for_its_close() {
    // Sessions hand their counts over every second while busy and when they go quiet (park),
    // so a long-lived connection shows up in the metrics while it is still open.
    let jamd = Jamd::spawn(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&jamd);
    let mut open = TcpStream::connect(jamd.addr).expect("connect");
    open.set_read_timeout(Some(WAIT)).expect("timeout");
    open.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    open.read_exact(&mut reply).expect("reply");
    let start = Instant::now();
    let text = loop {
        let text = scrape(metrics);
        if value(&text, "jamd_requests_total{command=\"TIME\"}") == 1.0 || start.elapsed() > WAIT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        value(&text, "jamd_requests_total{command=\"TIME\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "jamd_connections_active"), 1.0, "still open");
    assert_eq!(value(&text, "jamd_sent_bytes_total"), 14.0, "{text}");
}

#[test]
fn at_most_sixteen_scrapes_are_served_at_once() {
    // Connections that never send a request hold the endpoint's 16 slots; a 17th waits in the
    // listen queue until one of them goes, then is served. The endpoint never takes more.
    let jamd = Jamd::spawn(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&jamd);
    scrape(metrics);
    let mut silent: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(metrics).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = TcpStream::connect(metrics).expect("queued by the kernel");
    waiting
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut first = [0u8; 1];
    let early = waiting.read(&mut first);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served while 16 scrapes were in progress: {early:?}"
    );
    drop(silent.pop());
    waiting.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut all = String::new();
    waiting
        .read_to_string(&mut all)
        .expect("served once a slot is free");
    assert!(all.starts_with("HTTP/1.1 200"), "{all}");
}
