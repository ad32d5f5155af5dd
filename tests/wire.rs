//! The protocol over real TCP: exact bytes in, exact bytes out.

mod common;

use common::*;

#[tokio::test]
async fn time_is_answered_with_a_14_byte_jam_line() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
}

#[tokio::test]
async fn quit_closes_after_earlier_replies() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    send(&mut client, b"TIME\r\nQUIT\r\nTIME\r\n").await;
    let all = read_to_eof(&mut client).await;
    assert_eq!(all.len(), 14, "{:?}", String::from_utf8_lossy(&all));
    assert_time_reply(&all);
}
