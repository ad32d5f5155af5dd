//! Idle sessions are parked outside the runtime and come back when their client speaks.

mod common;

use std::time::Duration;

use common::*;
use jam::ServerConfig;

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_quiet_connection_is_parked_and_answered_when_it_speaks() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    wait_until("the new connection is parked", || {
        server.stats.get().parked == 1
    })
    .await;
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
    assert_eq!(server.stats.get().active, 1);
}

#[tokio::test]
async fn a_session_parks_again_after_answering_and_keeps_its_place_in_line() {
    let server = TestServer::start(ServerConfig {
        park_after: Duration::from_millis(50),
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.connect().await;
    for _ in 0..3 {
        wait_until("the session is parked", || server.stats.get().parked == 1).await;
        // A request split around the park: the first half wakes the session, which stays
        // awake (a partial line is never parked) until the line is complete.
        send(&mut client, b"TI").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(server.stats.get().parked, 0, "a partial line is not parked");
        send(&mut client, b"ME\r\n").await;
        assert_time_reply(&read_line(&mut client).await);
    }
}

#[tokio::test]
async fn a_parked_session_gets_its_idle_timeout() {
    let server = TestServer::start(ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.connect().await;
    wait_until("the connection is parked", || {
        server.stats.get().parked == 1
    })
    .await;
    assert_eq!(read_to_eof(&mut client).await, b"ERR idle timeout\r\n");
    wait_until("the session is gone", || server.stats.get().active == 0).await;
}

#[tokio::test]
async fn a_parked_client_that_closes_is_cleaned_up() {
    let server = TestServer::default().await;
    let client = server.connect().await;
    wait_until("the connection is parked", || {
        server.stats.get().parked == 1
    })
    .await;
    drop(client);
    wait_until("the session is gone", || server.stats.get().active == 0).await;
    assert_eq!(server.stats.get().parked, 0);
}

#[tokio::test]
async fn parked_sessions_close_at_once_on_shutdown() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    wait_until("the connection is parked", || {
        server.stats.get().parked == 1
    })
    .await;
    server.begin_shutdown();
    assert_eq!(read_to_eof(&mut client).await, b"");
    let stats = server.stop().await;
    assert_eq!(stats.active, 0);
}

#[tokio::test]
async fn park_after_zero_never_parks() {
    let server = TestServer::start(ServerConfig {
        park_after: Duration::ZERO,
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.stats.get().parked, 0);
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
}
