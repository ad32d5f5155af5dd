//! Graceful shutdown of an in-process server: refuse new connections, close idle sessions at
//! once, answer what clients already sent, and give up on the rest after the grace period.

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use jam::ServerConfig;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn after_shutdown_begins_new_connections_are_refused() {
    let server = TestServer::default().await;
    let mut before = server.connect().await;
    send(&mut before, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut before).await);

    server.begin_shutdown();
    // The listener closes as soon as the accept loop sees the signal. A connection caught in that
    // instant is never served: it is reset, without a reply.
    let start = Instant::now();
    loop {
        match TcpStream::connect(server.addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            // Caught in the listener's closing: reset.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            Ok(mut late) => {
                let _ = late.write_all(b"TIME\r\n").await;
                assert_eq!(
                    read_to_close(&mut late).await,
                    b"",
                    "a late client was served"
                );
            }
        }
        assert!(start.elapsed() < WAIT, "the listener is still open");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_idle_session_is_closed_at_once_without_an_error_line() {
    let grace = Duration::from_secs(5);
    let config = ServerConfig {
        shutdown_grace: grace,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut client = server.connect().await;
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);

    let start = Instant::now();
    server.begin_shutdown();
    assert_eq!(read_to_eof(&mut client).await, b"");
    assert!(
        start.elapsed() < grace,
        "closed only after {:?}",
        start.elapsed()
    );
}

/// Sends 1000 pipelined `TIME`s, waits for the first reply (so all of them are in the server's
/// socket), begins shutdown, and expects exactly 1000 replies, then a clean close.
async fn pipelined_requests_are_all_answered_before_the_close(config: ServerConfig) {
    const N: usize = 1000;
    let server = TestServer::start(config).await;
    let mut client = server.connect().await;
    send(&mut client, &b"TIME\r\n".repeat(N)).await;
    let first = read_exact(&mut client, 14).await;
    assert_time_reply(&first);

    server.begin_shutdown();
    let rest = read_to_eof(&mut client).await;
    assert_eq!(rest.len(), (N - 1) * 14, "replies after the first");
    for reply in rest.chunks(14) {
        assert_time_reply(reply);
    }
}

#[tokio::test]
async fn pipelined_requests_sent_before_shutdown_are_all_answered() {
    pipelined_requests_are_all_answered_before_the_close(ServerConfig::default()).await;
}

#[tokio::test]
async fn pipelined_requests_held_behind_the_output_cap_are_all_answered() {
    // With a 1 KiB output cap most of the 1000 requests wait as held input when shutdown begins.
    pipelined_requests_are_all_answered_before_the_close(ServerConfig {
        max_output: 1024,
        ..ServerConfig::default()
    })
    .await;
}

#[tokio::test]
async fn requests_waiting_behind_backed_up_replies_are_all_answered() {
    // 20,000 two-byte requests (40 KB, well within the server's receive window) whose error
    // replies come to 900 KB: far more than the kernel buffers between the server and a client
    // with a small segment size and receive buffer hold. When shutdown begins, the server has
    // answered only part of them and the rest wait in its socket; every one must be answered.
    const N: usize = 20_000;
    let reply: &[u8] = b"ERR unknown command \"x\" (try TIME or QUIT)\r\n";
    let server = TestServer::default().await;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_tcp_mss(536).expect("TCP_MAXSEG");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("non-blocking");
    let mut client = TcpStream::from_std(socket.into()).expect("tokio stream");

    send(&mut client, &b"x\n".repeat(N)).await;
    assert_eq!(read_exact(&mut client, reply.len()).await, reply);
    server.begin_shutdown();
    let rest = read_to_eof(&mut client).await;
    assert_eq!(rest.len(), (N - 1) * reply.len(), "replies after the first");
    assert!(rest.chunks(reply.len()).all(|r| r == reply));
}

#[tokio::test]
async fn stop_returns_after_the_grace_period_even_if_a_client_never_reads() {
    let grace = Duration::from_millis(500);
    let config = ServerConfig {
        shutdown_grace: grace,
        // Without the grace period, the stuck session would hold shutdown for a minute.
        write_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let (_reader, mut writer) = server.connect().await.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let progress = written.clone();
    let hog = tokio::spawn(async move {
        let requests = b"TIME\r\n".repeat(64 * 1024 / 6);
        while writer.write_all(&requests).await.is_ok() {
            progress.fetch_add(requests.len() as u64, Ordering::SeqCst);
        }
    });
    // Wait until the hog's writes block: its replies are backed up and the server stopped reading.
    let mut last = written.load(Ordering::SeqCst);
    let mut since = Instant::now();
    let start = Instant::now();
    loop {
        assert!(!hog.is_finished(), "the hog's writes failed");
        assert!(start.elapsed() < WAIT, "the hog's writes never blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = written.load(Ordering::SeqCst);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(100) {
            break;
        }
    }

    let start = Instant::now();
    let stats = tokio::time::timeout(WAIT, server.stop())
        .await
        .expect("stop returns");
    let took = start.elapsed();
    assert!(
        took >= grace,
        "stop returned after {took:?}, before the grace period"
    );
    assert_eq!(
        stats.active, 0,
        "the hog's session was closed when the grace period ended"
    );
    hog.abort();
}
