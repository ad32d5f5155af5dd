//! Shutdown answers requests that are still unread in the server's socket buffer.

mod common;

use common::*;
use jam::ServerConfig;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_requests_still_waiting_in_the_socket_buffer() {
    // A tiny output cap makes the server stop reading as soon as a few replies wait.
    let server = TestServer::start(ServerConfig {
        max_output: 4096,
        ..ServerConfig::default()
    })
    .await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.set_send_buffer_size(64 * 1024).expect("sndbuf");
    let mut client = socket.connect(server.addr).await.expect("connect");

    // Write requests without reading replies until the kernel will take no more: the server has
    // stopped reading, and what it has not read waits in its socket buffer.
    let chunk = b"TIME\r\n".repeat(1000);
    let mut written = 0usize;
    loop {
        let ready =
            tokio::time::timeout(std::time::Duration::from_millis(500), client.writable()).await;
        if ready.is_err() {
            break;
        }
        // Continue exactly where the last (possibly partial) write stopped.
        match client.try_write(&chunk[written % chunk.len()..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write failed: {e}"),
        }
        assert!(written < 200 << 20, "the server never pushed back");
    }
    let sent = written / 6;
    assert!(sent > 10_000, "only {sent} requests before backpressure");

    server.begin_shutdown();

    let mut replies = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut replies))
        .await
        .expect("server finishes in time")
        .expect("clean close, not a reset");
    let tail = &replies[replies.len().saturating_sub(80)..];
    assert_eq!(
        replies.len() % 14,
        0,
        "only whole replies; tail {:?}, written {written}",
        String::from_utf8_lossy(tail)
    );
    let answered = replies.len() / 14;
    assert_eq!(
        answered, sent,
        "every complete request sent before shutdown is answered"
    );
    for reply in replies.chunks(14).step_by(997) {
        assert_time_reply(reply);
    }
    server.stop().await;
}
