//! The standard time services (RFC 868 Time, RFC 867 Daytime) next to the jam protocol: exact
//! answers on an injected clock, the real `rdate` and `nc` against the real binary, and the
//! limits and shutdown they share with jam sessions. Also the clock-health line at start-up.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use jam::clock::zone_by_name;
use jam::service::Service;
use jam::{LocalClock, ManualClock, Server, ServerConfig};
use jiff::Timestamp;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// An in-process server with a jam listener, an RFC 868 listener and a daytime listener, on a
/// manual clock in `zone`.
struct Services {
    jam: std::net::SocketAddr,
    time: std::net::SocketAddr,
    daytime: std::net::SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<jam::Stats>,
}

async fn services(config: ServerConfig, zone: &str, now: &str) -> Services {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (jam, time, daytime) = (bind(), bind(), bind());
    let addrs = (
        jam.local_addr().expect("addr"),
        time.local_addr().expect("addr"),
        daytime.local_addr().expect("addr"),
    );
    let clock = LocalClock::new(
        Arc::new(ManualClock::new(at(now))),
        zone_by_name(zone).expect("zone"),
    );
    let server = Server::new(vec![jam], config, clock)
        .with_listener(time, Service::Time)
        .with_listener(daytime, Service::Daytime);
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(server.run(shutdown.clone()));
    Services {
        jam: addrs.0,
        time: addrs.1,
        daytime: addrs.2,
        shutdown,
        handle,
    }
}

/// Connects, sends nothing, and reads until the server closes.
async fn answer(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut stream = connect(addr).await;
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the server closes after answering")
        .expect("read");
    all
}

#[tokio::test]
async fn rfc868_sends_four_bytes_of_seconds_since_1900_then_closes() {
    let s = services(ServerConfig::default(), "UTC", "2026-11-22T12:00:00Z").await;
    let expected = (at("2026-11-22T12:00:00Z").as_second() + 2_208_988_800) as u32;
    assert_eq!(answer(s.time).await, expected.to_be_bytes());
}

#[tokio::test]
async fn rfc868_is_utc_whatever_the_zone() {
    let s = services(
        ServerConfig::default(),
        "Asia/Jakarta",
        "1970-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(answer(s.time).await, 2_208_988_800u32.to_be_bytes());
}

#[tokio::test]
async fn daytime_sends_one_line_in_the_servers_zone_then_closes() {
    let s = services(
        ServerConfig::default(),
        "Asia/Jakarta",
        "2026-11-22T12:45:01Z",
    )
    .await;
    assert_eq!(
        answer(s.daytime).await,
        b"Sunday, 22 November 2026 19:45:01 +07:00 (Asia/Jakarta)\r\n"
    );
}

#[tokio::test]
async fn a_client_that_sends_bytes_still_gets_its_answer_intact() {
    // Unread client bytes at close would make the kernel send a reset that can destroy the
    // answer in flight; the server closes gracefully and lingers instead.
    let s = services(ServerConfig::default(), "UTC", "2026-11-22T12:00:00Z").await;
    let mut stream = connect(s.daytime).await;
    send(&mut stream, &vec![b'x'; 10_000]).await;
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("closed")
        .expect("no reset");
    assert_eq!(all, b"Sunday, 22 November 2026 12:00:00 +00:00 (UTC)\r\n");
}

#[tokio::test]
async fn the_standard_services_count_against_the_connection_limit() {
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let s = services(config, "UTC", "2026-11-22T12:00:00Z").await;
    let mut held = connect(s.jam).await;
    send(&mut held, b"TIME\r\n").await;
    assert_eq!(read_line(&mut held).await, b"JAM 12:00:00\r\n");
    // Full: an RFC 868 client gets a plain close, never text it would read as a time.
    assert_eq!(answer(s.time).await, b"");
    drop(held);
    let mut answered = Vec::new();
    for _ in 0..100 {
        answered = answer(s.time).await;
        if !answered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        answered.len(),
        4,
        "served again once the jam session closed"
    );
}

#[tokio::test]
async fn after_shutdown_the_standard_services_refuse_connections() {
    let s = services(ServerConfig::default(), "UTC", "2026-11-22T12:00:00Z").await;
    assert_eq!(answer(s.time).await.len(), 4);
    s.shutdown.cancel();
    tokio::time::timeout(WAIT, s.handle)
        .await
        .expect("stops")
        .expect("server task");
    for addr in [s.time, s.daytime] {
        assert!(TcpStream::connect(addr).await.is_err(), "{addr} still open");
    }
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run")
}

#[test]
fn the_real_rdate_reads_the_system_time_from_jamd() {
    if !require_tool("rdate", "rdate") {
        return;
    }
    let jamd = Jamd::spawn(&["--rfc868", "127.0.0.1:0"]);
    let line = jamd.wait_for_log("rfc868-time service listening on");
    let addr: std::net::SocketAddr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let out = run(Command::new("timeout")
        .args([
            "10",
            "rdate",
            "-p",
            "-o",
            &addr.port().to_string(),
            "127.0.0.1",
        ])
        .env("TZ", "UTC"));
    let now = Timestamp::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rdate failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `rdate -p` prints ctime(3) style: `Sun Nov 22 12:36:07 UTC 2026` (with TZ=UTC).
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let [_, month, day, time, "UTC", year] = fields[fields.len().saturating_sub(6)..] else {
        panic!("unexpected rdate output {stdout:?}");
    };
    let printed: Timestamp = jiff::civil::DateTime::strptime(
        "%b %d %H:%M:%S %Y",
        format!("{month} {day} {time} {year}"),
    )
    .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
    .map(|z| z.timestamp())
    .unwrap_or_else(|e| panic!("cannot parse {stdout:?}: {e}"));
    let off = (now - printed).get_seconds().abs();
    // Both sides truncate to whole seconds; one second of slack covers a boundary in between.
    assert!(off <= 1, "rdate printed {printed}, system clock {now}");
}

#[test]
fn nc_reads_the_daytime_line_from_jamd() {
    if !require_tool("nc", "netcat-openbsd") {
        return;
    }
    let jamd = Jamd::spawn(&["--daytime", "127.0.0.1:0", "--utc"]);
    let line = jamd.wait_for_log("rfc867-daytime service listening on");
    let port = line
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let before = Timestamp::now();
    let out = run(Command::new("timeout").args(["10", "nc", "127.0.0.1", port]));
    let after = Timestamp::now();
    assert!(out.status.success(), "nc exits when the server closes");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.ends_with(" +00:00 (UTC)\r\n"), "{text:?}");
    assert_eq!(text.matches("\r\n").count(), 1, "one line: {text:?}");
    let stamp = text.trim_end().trim_end_matches(" (UTC)");
    let printed = jiff::Zoned::strptime("%A, %d %B %Y %H:%M:%S %:z", stamp)
        .unwrap_or_else(|e| panic!("cannot parse {text:?}: {e}"))
        .timestamp();
    let low = before - jiff::SignedDuration::from_secs(1);
    assert!(
        low <= printed && printed <= after,
        "{printed} not in {before}..{after}"
    );
}

#[test]
fn jamd_logs_the_clock_synchronisation_state_at_start_up() {
    let jamd = Jamd::spawn(&[]);
    let line = jamd.wait_for_log("system clock is");
    // Which one depends on this machine; each must say what it found, at the right level.
    let synchronised = line.contains("system clock is synchronised (");
    let inaccurate = line.contains("system clock is synchronised but");
    let unsynchronised = line.contains("system clock is not synchronised");
    assert!(
        (synchronised && line.contains("INFO"))
            || ((inaccurate || unsynchronised) && line.contains("WARN")),
        "{line}"
    );
    assert!(line.contains("maximum error"), "{line}");
}
