//! The time in the replies, over real TCP, on a clock the test moves: time zones, DST changes,
//! the exact second boundary, and clock steps.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use jam::clock::zone_by_name;
use jam::{LocalClock, ManualClock, ServerConfig};
use jiff::{SignedDuration, Timestamp};
use tokio::net::TcpStream;

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A server with `config` reading a manual clock (starting at `start`) in time zone `zone`.
async fn server_in(
    zone: &str,
    start: &str,
    config: ServerConfig,
) -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at(start)));
    let local = LocalClock::new(clock.clone(), zone_by_name(zone).expect("zone"));
    (TestServer::with_clock(config, local).await, clock)
}

/// Sends `TIME` and returns the reply line as text.
async fn time(client: &mut TcpStream) -> String {
    send(client, b"TIME\r\n").await;
    String::from_utf8(read_line(client).await).expect("ascii reply")
}

#[tokio::test]
async fn dst_spring_forward_skips_from_01_59_59_to_03_00_00() {
    let (server, clock) = server_in(
        "America/New_York",
        "2025-03-09T06:59:59Z",
        ServerConfig::default(),
    )
    .await;
    let mut client = server.connect().await;
    assert_eq!(time(&mut client).await, "JAM 01:59:59\r\n");
    clock.set(at("2025-03-09T07:00:00Z"));
    assert_eq!(time(&mut client).await, "JAM 03:00:00\r\n");
}

#[tokio::test]
async fn dst_fall_back_repeats_the_hour_from_01_00_00() {
    let (server, clock) = server_in(
        "America/New_York",
        "2025-11-02T05:59:59Z",
        ServerConfig::default(),
    )
    .await;
    let mut client = server.connect().await;
    assert_eq!(time(&mut client).await, "JAM 01:59:59\r\n");
    clock.set(at("2025-11-02T06:00:00Z"));
    assert_eq!(time(&mut client).await, "JAM 01:00:00\r\n");
    clock.set(at("2025-11-02T06:59:59Z"));
    assert_eq!(time(&mut client).await, "JAM 01:59:59\r\n");
    clock.set(at("2025-11-02T07:00:00Z"));
    assert_eq!(time(&mut client).await, "JAM 02:00:00\r\n");
}

#[tokio::test]
async fn asia_jakarta_is_utc_plus_7() {
    let (server, clock) = server_in(
        "Asia/Jakarta",
        "2026-05-01T10:00:00Z",
        ServerConfig::default(),
    )
    .await;
    let mut client = server.connect().await;
    assert_eq!(time(&mut client).await, "JAM 17:00:00\r\n");
    clock.set(at("2026-05-01T20:30:05Z"));
    assert_eq!(time(&mut client).await, "JAM 03:30:05\r\n");
}

#[tokio::test]
async fn the_reply_flips_exactly_at_the_second_boundary_under_pipelining() {
    let (server, clock) = server_in(
        "UTC",
        "2026-05-01T12:00:00.999999999Z",
        ServerConfig::default(),
    )
    .await;
    let mut client = server.connect().await;
    send(&mut client, &b"TIME\r\n".repeat(5)).await;
    let replies = read_exact(&mut client, 5 * 14).await;
    assert_eq!(
        String::from_utf8_lossy(&replies),
        "JAM 12:00:00\r\n".repeat(5)
    );
    clock.advance(SignedDuration::from_nanos(1));
    send(&mut client, &b"TIME\r\n".repeat(3)).await;
    let replies = read_exact(&mut client, 3 * 14).await;
    assert_eq!(
        String::from_utf8_lossy(&replies),
        "JAM 12:00:01\r\n".repeat(3)
    );
}

#[tokio::test]
async fn a_backward_clock_step_is_reflected_at_once_and_the_session_goes_on() {
    let (server, clock) = server_in("UTC", "2026-07-01T12:00:00Z", ServerConfig::default()).await;
    let mut client = server.connect().await;
    assert_eq!(time(&mut client).await, "JAM 12:00:00\r\n");
    clock.advance(SignedDuration::from_hours(-1));
    assert_eq!(time(&mut client).await, "JAM 11:00:00\r\n");
    assert_eq!(time(&mut client).await, "JAM 11:00:00\r\n");
}

#[tokio::test]
async fn a_forward_clock_step_does_not_close_a_session_for_idleness() {
    let config = ServerConfig {
        idle_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let (server, clock) = server_in("UTC", "2026-07-01T12:00:00Z", config).await;
    let mut client = server.connect().await;
    assert_eq!(time(&mut client).await, "JAM 12:00:00\r\n");
    clock.advance(SignedDuration::from_hours(2));
    assert_eq!(time(&mut client).await, "JAM 14:00:00\r\n");
}

#[tokio::test]
async fn the_idle_timeout_still_fires_on_time_after_a_backward_clock_step() {
    // Deadlines run on the monotonic clock: stepping the wall clock back an hour must not give a
    // silent client an extra hour.
    let idle = Duration::from_millis(300);
    let config = ServerConfig {
        idle_timeout: idle,
        ..ServerConfig::default()
    };
    let (server, clock) = server_in("UTC", "2026-07-01T12:00:00Z", config).await;
    let mut client = server.connect().await;
    let start = tokio::time::Instant::now();
    assert_eq!(time(&mut client).await, "JAM 12:00:00\r\n");
    clock.advance(SignedDuration::from_hours(-1));
    assert_eq!(
        String::from_utf8_lossy(&read_to_eof(&mut client).await),
        "ERR idle timeout\r\n"
    );
    assert!(start.elapsed() >= idle);
}
