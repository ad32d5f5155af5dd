//! Concurrency: the real `jamd` holds thousands of connections open at once and answers every one.
//! The 19,000-connection run is a soak: `cargo test --test scale -- --ignored`.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_connections_are_all_answered() {
    all_answered_while_held_open(10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 19,000 connections; run with --ignored"]
async fn nineteen_thousand_concurrent_connections_are_all_answered() {
    all_answered_while_held_open(19_000).await;
}

async fn all_answered_while_held_open(connections: usize) {
    let jamd = Jamd::spawn(&[]);
    let port = jamd.addr.port();
    // Connect from eight source addresses so ephemeral ports never run short, and each stays
    // well under the default per-address limit (a quarter of the connection limit).
    let mut streams = Vec::with_capacity(connections);
    for i in 0..connections {
        let socket = TcpSocket::new_v4().expect("socket");
        let source = std::net::SocketAddr::from(([127, 0, 0, 1 + (i % 8) as u8], 0));
        socket.bind(source).expect("bind source");
        let stream = tokio::time::timeout(WAIT, socket.connect(([127, 0, 0, 1], port).into()))
            .await
            .expect("connect in time")
            .expect("connect");
        streams.push(stream);
    }
    // Every connection is open now; each asks the time while all the others stay connected.
    let mut tasks = tokio::task::JoinSet::new();
    for mut stream in streams {
        tasks.spawn(async move {
            stream.write_all(b"TIME\r\n").await.expect("send");
            let mut reply = [0u8; 14];
            tokio::time::timeout(WAIT, stream.read_exact(&mut reply))
                .await
                .expect("reply in time")
                .expect("reply");
            (reply, stream)
        });
    }
    let mut answered = 0;
    let mut held = Vec::with_capacity(connections);
    while let Some(result) = tasks.join_next().await {
        let (reply, stream) = result.expect("task");
        assert_time_reply(&reply);
        answered += 1;
        held.push(stream);
    }
    assert_eq!(answered, connections);
    assert_eq!(
        held.len(),
        connections,
        "all connections still open while answered"
    );
    // With all of them open, a newcomer is still served.
    let mut newcomer = connect(jamd.addr).await;
    send(&mut newcomer, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut newcomer).await);
}
