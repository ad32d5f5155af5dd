//! The protocol over real TCP: exact bytes in, exact bytes out.
//!
//! Most tests run the server on a stopped clock at 08:05:09 UTC, so every reply is known to the
//! byte and a whole session can be compared as one transcript: the client sends its requests and
//! `QUIT`, and everything the server sent before its clean close must equal the expected bytes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use jam::{LocalClock, ManualClock, ServerConfig};
use jiff::tz::TimeZone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The reply to `TIME` on the stopped clock of [`server`].
const JAM: &[u8] = b"JAM 08:05:09\r\n";

/// A server with the default limits whose clock is stopped at 08:05:09 UTC.
async fn server() -> TestServer {
    server_at("2026-01-01T08:05:09Z").await
}

/// A server with the default limits whose clock is stopped at `at`, in UTC.
async fn server_at(at: &str) -> TestServer {
    let clock = Arc::new(ManualClock::new(at.parse().expect("timestamp")));
    TestServer::with_clock(
        ServerConfig::default(),
        LocalClock::new(clock, TimeZone::UTC),
    )
    .await
}

/// Sends `input` on a new connection and returns everything the server sent before its clean
/// close (FIN, not reset).
async fn transcript(server: &TestServer, input: &[u8]) -> Vec<u8> {
    let mut client = server.connect().await;
    send(&mut client, input).await;
    read_to_eof(&mut client).await
}

/// Concatenates byte strings.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// --- TIME -------------------------------------------------------------------------------------

#[tokio::test]
async fn time_is_answered_with_a_14_byte_jam_line() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
}

#[tokio::test]
async fn time_reply_is_the_servers_local_time_zero_padded() {
    let server = server().await;
    assert_bytes(
        &transcript(&server, b"TIME\r\nQUIT\r\n").await,
        b"JAM 08:05:09\r\n",
    );
}

#[tokio::test]
async fn time_reply_uses_the_24_hour_clock() {
    let server = server_at("2026-01-01T23:59:59.999Z").await;
    assert_bytes(
        &transcript(&server, b"TIME\r\nQUIT\r\n").await,
        b"JAM 23:59:59\r\n",
    );
}

#[tokio::test]
async fn command_words_are_case_insensitive() {
    let server = server().await;
    let got = transcript(&server, b"time\r\nTiMe\r\ntImE\r\nQUIT\r\n").await;
    assert_bytes(&got, &JAM.repeat(3));
}

#[tokio::test]
async fn spaces_and_tabs_around_the_command_are_ignored() {
    let server = server().await;
    let got = transcript(
        &server,
        b"  TIME\r\nTIME \t \r\n\t time\t\r\n  quit  \r\nTIME\r\n",
    )
    .await;
    assert_bytes(&got, &JAM.repeat(3));
}

// --- line ends ---------------------------------------------------------------------------------

#[tokio::test]
async fn crlf_ends_a_line() {
    let server = server().await;
    assert_bytes(&transcript(&server, b"TIME\r\nQUIT\r\n").await, JAM);
}

#[tokio::test]
async fn lf_alone_ends_a_line() {
    let server = server().await;
    assert_bytes(&transcript(&server, b"TIME\nQUIT\n").await, JAM);
}

#[tokio::test]
async fn cr_nul_ends_a_line() {
    let server = server().await;
    assert_bytes(&transcript(&server, b"TIME\r\0QUIT\r\0").await, JAM);
}

#[tokio::test]
async fn crlf_split_across_writes_is_one_line_end() {
    let server = server().await;
    let mut client = server.connect().await;
    send(&mut client, b"TIME\r").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut client, b"\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut client, b"QUIT\r\n").await;
    assert_bytes(&read_to_eof(&mut client).await, JAM);
}

#[tokio::test]
async fn cr_nul_split_across_writes_is_one_line_end() {
    let server = server().await;
    let mut client = server.connect().await;
    send(&mut client, b"TIME\r").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut client, b"\0QUIT\r\n").await;
    assert_bytes(&read_to_eof(&mut client).await, JAM);
}

#[tokio::test]
async fn a_request_sent_one_byte_per_write_is_answered() {
    let server = server().await;
    let mut client = server.connect().await;
    for byte in b"TIME\r\nTIME\n" {
        send(&mut client, &[*byte]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_bytes(
        &read_exact(&mut client, 2 * JAM.len()).await,
        &JAM.repeat(2),
    );
    send(&mut client, b"QUIT\r\n").await;
    assert_bytes(&read_to_eof(&mut client).await, b"");
}

#[tokio::test]
async fn a_cr_followed_by_other_bytes_is_part_of_the_line() {
    let server = server().await;
    let got = transcript(&server, b"TI\rME\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(
        &got,
        &cat(&[
            b"ERR unknown command \"TI\\x0DME\" (try TIME or QUIT)\r\n",
            JAM,
        ]),
    );
}

// --- telnet ------------------------------------------------------------------------------------

#[tokio::test]
async fn telnet_negotiation_is_refused_and_never_a_command() {
    let server = server().await;
    let got = transcript(
        &server,
        b"\xff\xfb\x1f\xff\xfb\x20\xff\xfd\x03TIME\r\nQUIT\r\n",
    )
    .await;
    // WILL NAWS, WILL TSPEED => DONT each; DO SUPPRESS-GO-AHEAD => WONT; then the one reply.
    assert_bytes(&got, &cat(&[b"\xff\xfe\x1f\xff\xfe\x20\xff\xfc\x03", JAM]));
}

#[tokio::test]
async fn telnet_wont_and_dont_get_no_answer() {
    let server = server().await;
    let got = transcript(&server, b"\xff\xfc\x01\xff\xfe\x01TIME\r\nQUIT\r\n").await;
    assert_bytes(&got, JAM);
}

#[tokio::test]
async fn telnet_interrupt_discards_the_partial_line_and_refuses_timing_mark() {
    let server = server().await;
    let got = transcript(&server, b"TI\xff\xf4\xff\xfd\x06TIME\r\nQUIT\r\n").await;
    assert_bytes(&got, &cat(&[b"\xff\xfc\x06", JAM]));
}

#[tokio::test]
async fn telnet_subnegotiation_is_discarded() {
    let server = server().await;
    let got = transcript(&server, b"\xff\xfa\x18\x00xterm\xff\xf0TIME\r\nQUIT\r\n").await;
    assert_bytes(&got, JAM);
}

#[tokio::test]
async fn iac_iac_is_a_literal_ff_byte_echoed_escaped_and_the_session_goes_on() {
    let server = server().await;
    let got = transcript(&server, b"\xff\xff\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(
        &got,
        &cat(&[b"ERR unknown command \"\\xFF\" (try TIME or QUIT)\r\n", JAM]),
    );
}

// --- QUIT --------------------------------------------------------------------------------------

#[tokio::test]
async fn quit_alone_gets_no_reply_and_a_clean_close() {
    let server = server().await;
    assert_bytes(&transcript(&server, b"QUIT\r\n").await, b"");
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

#[tokio::test]
async fn bytes_after_quit_never_turn_the_close_into_a_reset() {
    let server = server().await;
    for round in 0..200 {
        let mut client = server.connect().await;
        send(&mut client, b"TIME\r\nQUIT\r\nTIME\r\n").await;
        let got = read_to_eof(&mut client).await;
        assert_eq!(
            got,
            JAM,
            "round {round}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[tokio::test]
async fn ctrl_d_alone_on_a_line_quits() {
    let server = server().await;
    assert_bytes(&transcript(&server, b"TIME\r\n\x04\r\nTIME\r\n").await, JAM);
}

// --- blank lines -------------------------------------------------------------------------------

#[tokio::test]
async fn a_blank_line_after_a_request_gets_no_reply() {
    let server = server().await;
    assert_bytes(&transcript(&server, b"TIME\r\n\r\nQUIT\r\n").await, JAM);
}

#[tokio::test]
async fn blank_lines_before_a_request_are_ignored() {
    let server = server().await;
    assert_bytes(&transcript(&server, b"\r\n\r\nTIME\r\nQUIT\r\n").await, JAM);
}

#[tokio::test]
async fn lines_of_only_spaces_and_tabs_are_ignored() {
    let server = server().await;
    assert_bytes(
        &transcript(&server, b"   \r\n\t\n \t \r\0TIME\r\nQUIT\r\n").await,
        JAM,
    );
}

// --- errors ------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_command_gets_an_error_and_the_session_goes_on() {
    let server = server().await;
    let got = transcript(&server, b"HELLO\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(
        &got,
        &cat(&[b"ERR unknown command \"HELLO\" (try TIME or QUIT)\r\n", JAM]),
    );
}

#[tokio::test]
async fn time_with_an_argument_is_an_error_and_the_session_goes_on() {
    let server = server().await;
    let got = transcript(&server, b"TIME now\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(&got, &cat(&[b"ERR TIME takes no arguments\r\n", JAM]));
}

#[tokio::test]
async fn quit_with_an_argument_is_an_error_not_a_quit() {
    let server = server().await;
    let got = transcript(&server, b"QUIT now\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(&got, &cat(&[b"ERR QUIT takes no arguments\r\n", JAM]));
}

#[tokio::test]
async fn a_word_that_starts_with_time_is_an_unknown_command() {
    let server = server().await;
    let got = transcript(&server, b"TIMEX\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(
        &got,
        &cat(&[b"ERR unknown command \"TIMEX\" (try TIME or QUIT)\r\n", JAM]),
    );
}

#[tokio::test]
async fn a_long_unknown_word_is_echoed_cut_to_32_characters() {
    let server = server().await;
    let word = b"A".repeat(100);
    let got = transcript(&server, &cat(&[&word, b"\r\nTIME\r\nQUIT\r\n"])).await;
    let echo = format!("{}...", "A".repeat(29));
    assert_eq!(echo.len(), 32);
    let want = format!("ERR unknown command \"{echo}\" (try TIME or QUIT)\r\n");
    assert_bytes(&got, &cat(&[want.as_bytes(), JAM]));
}

#[tokio::test]
async fn control_bytes_are_echoed_escaped_never_raw() {
    let server = server().await;
    let got = transcript(&server, b"TI\x00ME\r\n\x1b[2J\x07\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(
        &got,
        &cat(&[
            b"ERR unknown command \"TI\\x00ME\" (try TIME or QUIT)\r\n",
            b"ERR unknown command \"\\x1B[2J\\x07\" (try TIME or QUIT)\r\n",
            JAM,
        ]),
    );
}

#[tokio::test]
async fn invalid_utf8_is_echoed_escaped() {
    let server = server().await;
    let got = transcript(&server, b"\xc3(\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(
        &got,
        &cat(&[
            b"ERR unknown command \"\\xC3(\" (try TIME or QUIT)\r\n",
            JAM,
        ]),
    );
}

#[tokio::test]
async fn an_echo_of_many_control_bytes_stays_within_32_characters() {
    let server = server().await;
    let got = transcript(&server, &cat(&[&[1u8; 50], b"\r\nTIME\r\nQUIT\r\n"])).await;
    let echo = format!("{}...", "\\x01".repeat(7));
    let want = format!("ERR unknown command \"{echo}\" (try TIME or QUIT)\r\n");
    assert_bytes(&got, &cat(&[want.as_bytes(), JAM]));
}

#[tokio::test]
async fn an_http_request_gets_one_error_line_then_a_close() {
    let server = server().await;
    let got = transcript(&server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_bytes(
        &got,
        b"ERR this is a jam time server, not HTTP (send TIME or QUIT)\r\n",
    );
}

// --- pipelining --------------------------------------------------------------------------------

#[tokio::test]
async fn ten_thousand_pipelined_requests_get_ten_thousand_replies() {
    const N: usize = 10_000;
    let server = server().await;
    let (mut reader, mut writer) = server.connect().await.into_split();
    let sender = tokio::spawn(async move {
        writer
            .write_all(&b"TIME\r\n".repeat(N))
            .await
            .expect("send");
        writer.write_all(b"QUIT\r\n").await.expect("send QUIT");
        writer
    });
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, reader.read_to_end(&mut got))
        .await
        .expect("replies in time")
        .expect("clean close");
    let _writer = sender.await.expect("sender");
    assert_eq!(got.len(), N * JAM.len());
    assert!(got.chunks(JAM.len()).all(|reply| reply == JAM));
}

#[tokio::test]
async fn mixed_pipelined_requests_are_answered_in_order() {
    let server = server().await;
    let got = transcript(&server, b"TIME\r\njunk\r\nTIME now\r\n\r\nTIME\r\nQUIT\r\n").await;
    assert_bytes(
        &got,
        &cat(&[
            JAM,
            b"ERR unknown command \"junk\" (try TIME or QUIT)\r\n",
            b"ERR TIME takes no arguments\r\n",
            JAM,
        ]),
    );
}

// --- the client closing its side ---------------------------------------------------------------

async fn half_close_transcript(server: &TestServer, input: &[u8]) -> Vec<u8> {
    let mut client = server.connect().await;
    send(&mut client, input).await;
    client.shutdown().await.expect("half-close");
    read_to_eof(&mut client).await
}

#[tokio::test]
async fn a_request_then_half_close_gets_its_reply_then_eof() {
    let server = server().await;
    assert_bytes(&half_close_transcript(&server, b"TIME\r\n").await, JAM);
}

#[tokio::test]
async fn a_request_without_line_end_at_half_close_gets_an_error_then_eof() {
    let server = server().await;
    assert_bytes(
        &half_close_transcript(&server, b"TIME").await,
        b"ERR request must end with CR LF\r\n",
    );
}

#[tokio::test]
async fn a_request_ending_in_a_bare_cr_at_half_close_gets_an_error_then_eof() {
    let server = server().await;
    assert_bytes(
        &half_close_transcript(&server, b"TIME\r\nTIME\r").await,
        &cat(&[JAM, b"ERR request must end with CR LF\r\n"]),
    );
}

#[tokio::test]
async fn blanks_without_line_end_at_half_close_get_nothing() {
    let server = server().await;
    assert_bytes(&half_close_transcript(&server, b"  ").await, b"");
}

// --- many clients ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_clients_are_each_answered() {
    const CLIENTS: usize = 200;
    let server = server().await;
    let addr = server.addr;
    // Every client is served once and stays connected, so all 200 sessions are open at once.
    let opened: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = connect(addr).await;
                send(&mut client, b"TIME\r\n").await;
                assert_bytes(&read_line(&mut client).await, JAM);
                client
            })
        })
        .collect();
    let mut clients: Vec<TcpStream> = Vec::new();
    for task in opened {
        clients.push(task.await.expect("client"));
    }
    assert_eq!(server.stats.get().active, CLIENTS);
    // Then all of them ask again at the same time.
    let finished: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                send(&mut client, b"TIME\r\ntime\r\nQUIT\r\n").await;
                read_to_eof(&mut client).await
            })
        })
        .collect();
    for task in finished {
        assert_bytes(&task.await.expect("client"), &JAM.repeat(2));
    }
}
