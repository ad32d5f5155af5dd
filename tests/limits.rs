//! Every limit in `ServerConfig`, checked over real TCP: line length, connection count, idle and
//! line deadlines, and the output cap with its write timeout.

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use jam::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::Instant;

const LINE_TOO_LONG_1024: &[u8] = b"ERR line too long (max 1024 bytes)\r\n";

/// Reads until EOF or a reset, whichever comes first; returns the bytes and how it ended.
async fn read_until_closed(reader: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, io::Result<()>) {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("server closes in time");
    (all, end)
}

/// Polls `condition` until it holds (fails the test after [`WAIT`]).
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes `chunk` over and over (at most `limit` bytes in all), counting the bytes the socket
/// accepted in `written`, until a write fails or the limit is reached.
fn spawn_writer(
    mut writer: OwnedWriteHalf,
    chunk: Vec<u8>,
    limit: u64,
    written: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<io::Result<OwnedWriteHalf>> {
    tokio::spawn(async move {
        while written.load(Ordering::SeqCst) < limit {
            writer.write_all(&chunk).await?;
            written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        Ok(writer)
    })
}

/// Waits until the writer has made no progress for `quiet` while still running: its writes are
/// blocked because the server stopped reading. Fails if the writer ends first.
async fn wait_until_stalled(
    written: &AtomicU64,
    writer: &tokio::task::JoinHandle<io::Result<OwnedWriteHalf>>,
    quiet: Duration,
) -> u64 {
    let start = Instant::now();
    let mut last = written.load(Ordering::SeqCst);
    let mut since = Instant::now();
    loop {
        assert!(
            !writer.is_finished(),
            "the writer ended before its writes ever blocked ({last} bytes written)"
        );
        assert!(start.elapsed() < WAIT, "the writer never stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = written.load(Ordering::SeqCst);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
    }
}

// --- max_line ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_line_of_exactly_max_line_bytes_is_accepted() {
    let server = TestServer::default().await;
    assert_eq!(ServerConfig::default().max_line, 1024);
    let mut client = server.connect().await;
    let mut line = b"TIME".to_vec();
    line.extend_from_slice(&[b' '; 1020]);
    assert_eq!(line.len(), 1024);
    line.extend_from_slice(b"\r\n");
    send(&mut client, &line).await;
    assert_time_reply(&read_line(&mut client).await);
}

#[tokio::test]
async fn a_line_one_byte_over_max_line_is_refused_without_waiting_for_its_end() {
    let server = TestServer::default().await;
    let mut client = server.connect().await;
    let mut line = b"TIME".to_vec();
    line.extend_from_slice(&[b' '; 1021]);
    assert_eq!(line.len(), 1025);
    // No line end is ever sent: the error must come from the length alone.
    send(&mut client, &line).await;
    assert_bytes(&read_to_eof(&mut client).await, LINE_TOO_LONG_1024);
}

#[tokio::test]
async fn ten_mebibytes_without_a_newline_get_one_error_and_the_server_stays_up() {
    let server = TestServer::default().await;
    let (mut reader, writer) = server.connect().await.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let flood = spawn_writer(writer, vec![b'x'; 64 * 1024], 10 << 20, written.clone());
    let (got, _end) = read_until_closed(&mut reader).await;
    assert_bytes(&got, LINE_TOO_LONG_1024);
    // The flood ends: either all 10 MiB went out or the server's close made a write fail.
    let _ = tokio::time::timeout(WAIT, flood).await.expect("flood ends");
    drop(reader);

    let mut other = server.connect().await;
    send(&mut other, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut other).await);
}

#[tokio::test]
async fn a_configured_max_line_is_honoured() {
    let config = ServerConfig {
        max_line: 16,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;

    let mut fits = server.connect().await;
    send(&mut fits, b"TIME            \r\n").await; // 16 bytes before the line end
    assert_time_reply(&read_line(&mut fits).await);

    let mut over = server.connect().await;
    send(&mut over, b"TIME             ").await; // 17 bytes, no line end
    assert_bytes(
        &read_to_eof(&mut over).await,
        b"ERR line too long (max 16 bytes)\r\n",
    );
}

#[tokio::test]
async fn a_telnet_interrupt_split_from_its_iac_near_max_line_is_handled_as_if_unsplit() {
    let clock = Arc::new(jam::ManualClock::new(
        "2026-01-01T08:05:09Z".parse().expect("timestamp"),
    ));
    let local = jam::LocalClock::new(clock, jiff::tz::TimeZone::UTC);
    let server = TestServer::with_clock(ServerConfig::default(), local).await;
    let mut head = vec![b'x'; 1024];
    head.push(0xff); // IAC
    let tail: &[u8] = b"\xf4\xff\xfd\x06TIME\r\nQUIT\r\n"; // IP, DO TIMING-MARK, TIME, QUIT

    let mut whole = server.connect().await;
    send(&mut whole, &[&head[..], tail].concat()).await;
    let want = read_to_close(&mut whole).await;

    let mut split = server.connect().await;
    send(&mut split, &head).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut split, tail).await;
    let got = read_to_close(&mut split).await;
    assert_bytes(&got, &want);
}

// --- max_connections ---------------------------------------------------------------------------

#[tokio::test]
async fn connections_past_max_connections_get_server_busy_until_one_closes() {
    let config = ServerConfig {
        max_connections: 3,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut client = server.connect().await;
        send(&mut client, b"TIME\r\n").await;
        assert_time_reply(&read_line(&mut client).await);
        sessions.push(client);
    }

    let mut fourth = server.connect().await;
    assert_bytes(&read_to_eof(&mut fourth).await, b"ERR server busy\r\n");
    let stats = server.stats.get();
    assert_eq!((stats.active, stats.accepted, stats.rejected), (3, 3, 1));

    let mut first = sessions.remove(0);
    send(&mut first, b"QUIT\r\n").await;
    assert_bytes(&read_to_eof(&mut first).await, b"");
    drop(first);
    wait_until("the closed session frees its slot", || {
        server.stats.get().active == 2
    })
    .await;

    let mut fifth = server.connect().await;
    send(&mut fifth, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut fifth).await);
    let stats = server.stats.get();
    assert_eq!((stats.active, stats.accepted, stats.rejected), (3, 4, 1));
}

// --- idle_timeout ------------------------------------------------------------------------------

fn with_idle(idle: Duration) -> ServerConfig {
    ServerConfig {
        idle_timeout: idle,
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let server = TestServer::start(with_idle(idle)).await;
    // The server's idle clock starts at accept, which may come before `connect` returns here:
    // the test's clock starts first, so a close before the timeout is always caught.
    let start = Instant::now();
    let mut client = server.connect().await;
    assert_served_promptly(server.addr).await;
    assert_bytes(&read_to_eof(&mut client).await, b"ERR idle timeout\r\n");
    assert!(
        start.elapsed() >= idle,
        "closed after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_client_sending_requests_is_not_closed_for_idleness() {
    let server = TestServer::start(with_idle(Duration::from_millis(300))).await;
    let mut client = server.connect().await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        send(&mut client, b"TIME\r\n").await;
        assert_time_reply(&read_line(&mut client).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
}

#[tokio::test]
async fn idle_timeout_zero_never_closes_a_silent_client() {
    let server = TestServer::start(with_idle(Duration::ZERO)).await;
    let mut client = server.connect().await;
    let mut byte = [0u8; 1];
    let silence = tokio::time::timeout(Duration::from_secs(1), client.read(&mut byte)).await;
    assert!(
        silence.is_err(),
        "the server sent or closed: {silence:?} {byte:?}"
    );
    send(&mut client, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut client).await);
}

// --- line_timeout ------------------------------------------------------------------------------

#[tokio::test]
async fn a_line_dripping_in_is_closed_after_the_line_timeout() {
    let line_timeout = Duration::from_millis(300);
    let config = ServerConfig {
        line_timeout,
        idle_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut reader, mut writer) = server.connect().await.into_split();
    let start = Instant::now();
    // One byte every 100 ms, never a line end, for longer than the idle timeout.
    let drip = tokio::spawn(async move {
        for byte in b"TIME".iter().cycle().take(60) {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_served_promptly(server.addr).await;
    let (got, end) = read_until_closed(&mut reader).await;
    let elapsed = start.elapsed();
    drip.abort();
    // How many bytes dripped in before the timeout depends on timing; the rest is exact.
    let said = String::from_utf8(got).expect("UTF-8");
    let held: usize = said
        .strip_prefix("ERR line timeout: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!((1..=10).contains(&held), "{said:?}");
    assert!(
        said.ends_with(" and no CR LF in 300ms; end each request with CR LF (try TIME)\r\n"),
        "{said:?}"
    );
    assert!(end.is_ok(), "clean close expected: {end:?}");
    assert!(elapsed >= line_timeout, "closed after {elapsed:?}");
}

#[tokio::test]
async fn the_course_echo_clients_text_without_a_line_end_is_told_what_is_missing() {
    // The course's first client sends its text with sendall() and no line end, then waits.
    let server = TestServer::start(ServerConfig {
        line_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"INI ADALAH DATA YANG DIKIRIM ABCDEFGHIJKLMNOP")
        .await
        .expect("send");
    let (got, end) = read_until_closed(&mut stream).await;
    assert_bytes(
        &got,
        b"ERR line timeout: 45 bytes and no CR LF in 300ms; end each request with CR LF (try TIME)\r\n",
    );
    assert!(end.is_ok(), "clean close expected: {end:?}");
}

// --- max_output and write_timeout --------------------------------------------------------------

/// A client that writes requests and never reads: the server stops reading from it once its replies
/// back up past `max_output` (the client's writes block), closes it `write_timeout` after its
/// output stopped moving (the blocked write fails), and serves other clients meanwhile.
async fn a_client_that_never_reads_is_throttled_then_closed(max_output: usize) {
    let write_timeout = Duration::from_millis(500);
    let config = ServerConfig {
        max_output,
        write_timeout,
        ..ServerConfig::default()
    };
    // The idle and line timeouts stay at minutes: only the write timeout can close in time.
    assert!(config.idle_timeout > WAIT && config.line_timeout > WAIT);
    let server = TestServer::start(config).await;
    let start = Instant::now();
    let (mut reader, writer) = server.connect().await.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let requests = b"TIME\r\n".repeat(64 * 1024 / 6);
    let hog = spawn_writer(writer, requests, 1 << 30, written.clone());

    // The server stops reading once replies back up, so the hog's writes block.
    let stalled_at = wait_until_stalled(&written, &hog, Duration::from_millis(100)).await;

    // Meanwhile another client is served.
    let mut other = server.connect().await;
    send(&mut other, b"TIME\r\n").await;
    assert_time_reply(&read_line(&mut other).await);

    // After the write timeout the server gives up on the hog: its blocked write fails.
    let result = tokio::time::timeout(WAIT, hog)
        .await
        .expect("the hog's connection is closed within the bound (write timeout 500 ms)")
        .expect("writer task");
    assert!(
        result.is_err(),
        "every write completed; the server never stopped reading"
    );
    assert!(start.elapsed() >= write_timeout);
    let total = written.load(Ordering::SeqCst);
    assert!(total >= stalled_at);

    // Draining what did arrive ends in a reset or EOF, after JAM lines only (the last one
    // perhaps cut), and not every request was answered.
    let (got, _end) = read_until_closed(&mut reader).await;
    assert!((got.len() as u64) < total / 6 * 14);
    for reply in got.chunks(14) {
        assert!(
            reply.starts_with(&b"JAM "[..reply.len().min(4)]),
            "{reply:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_throttled_then_closed_and_others_are_served() {
    a_client_that_never_reads_is_throttled_then_closed(ServerConfig::default().max_output).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_after_the_write_timeout_with_a_4_kib_output_cap() {
    a_client_that_never_reads_is_throttled_then_closed(4 * 1024).await;
}
