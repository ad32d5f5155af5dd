//! Idle connections: a quiet connection costs only its place in its event loop, keeps its
//! deadlines, is answered as soon as it speaks, and closes at once on shutdown.

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
async fn a_quiet_connection_is_answered_when_it_speaks() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    wait_until("the connection is counted", || {
        server.stats.get().active == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
    assert_eq!(server.stats.get().active, 1);
}

#[tokio::test]
async fn a_line_split_by_long_pauses_is_answered_once_complete() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    for _ in 0..3 {
        send(&mut client, b"TI").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&mut client, b"ME\r\n").await;
        assert_time_reply(&read_line(&mut client).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_quiet_connection_gets_its_idle_timeout() {
    let server = TestServer::start(ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.connect().await;
    assert_eq!(read_to_eof(&mut client).await, b"ERR idle timeout\r\n");
    wait_until("the session is gone", || server.stats.get().active == 0).await;
}

#[tokio::test]
async fn a_quiet_client_that_closes_is_cleaned_up() {
    let server = TestServer::default().await;
    let client = server.connect().await;
    wait_until("the connection is counted", || {
        server.stats.get().active == 1
    })
    .await;
    drop(client);
    wait_until("the session is gone", || server.stats.get().active == 0).await;
}

#[tokio::test]
async fn quiet_sessions_close_at_once_on_shutdown() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    wait_until("the connection is counted", || {
        server.stats.get().active == 1
    })
    .await;
    server.begin_shutdown();
    assert_eq!(read_to_eof(&mut client).await, b"");
    let stats = server.stop().await;
    assert_eq!(stats.active, 0);
}
