//! Concurrency: the real `jamd` holds 10,000 connections open at once and answers every one.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const CONNECTIONS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_connections_are_all_answered() {
    let jamd = Jamd::spawn(&[]);
    let port = jamd.addr.port();
    // Connect from four source addresses so ephemeral ports never run short.
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let socket = TcpSocket::new_v4().expect("socket");
        let source = std::net::SocketAddr::from(([127, 0, 0, 1 + (i % 4) as u8], 0));
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
    let mut held = Vec::with_capacity(CONNECTIONS);
    while let Some(result) = tasks.join_next().await {
        let (reply, stream) = result.expect("task");
        assert_time_reply(&reply);
        answered += 1;
        held.push(stream);
    }
    assert_eq!(answered, CONNECTIONS);
    assert_eq!(
        held.len(),
        CONNECTIONS,
        "all connections still open while answered"
    );
}
