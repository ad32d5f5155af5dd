//! Hostile clients against the real `jamd` binary. Each test checks what happens to the bad
//! client and that a good client on the side is still answered.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A good client: connects, asks the time, and returns the reply and how long it took.
fn good_client(addr: SocketAddr) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    stream.read_exact(&mut reply).expect("reply");
    (reply.to_vec(), start.elapsed())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_hundred_megabyte_line_gets_one_error_and_memory_stays_flat() {
    let jamd = Jamd::spawn(&[]);
    let before = rss_kib(jamd.child.id());
    let stream = TcpStream::connect(jamd.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut reader = stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'A'; 1 << 20];
        let mut sent = 0usize;
        let mut stream = stream;
        while sent < 100 << 20 {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let mut received = Vec::new();
    let _ = reader.read_to_end(&mut received);
    assert_eq!(received, b"ERR line too long (max 1024 bytes)\r\n");
    let sent = writer.join().expect("writer");
    assert!(sent < 100 << 20, "the server kept reading all {sent} bytes");
    let (reply, _) = good_client(jamd.addr);
    assert_time_reply(&reply);
    let growth = rss_kib(jamd.child.id()).saturating_sub(before);
    assert!(growth < 4096, "RSS grew by {growth} KiB");
}

#[test]
fn a_storm_of_resets_leaves_the_server_answering_and_its_log_clean() {
    let jamd = Jamd::spawn(&[]);
    for _ in 0..500 {
        let mut stream = TcpStream::connect(jamd.addr).expect("connect");
        // Pipelined requests, then a reset (SO_LINGER 0) before reading anything.
        let _ = stream.write_all(&b"TIME\r\n".repeat(100));
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(stream);
    }
    let (reply, took) = good_client(jamd.addr);
    assert_time_reply(&reply);
    assert!(
        took < Duration::from_secs(1),
        "a good client waited {took:?}"
    );
    jamd.wait_for_log("reason=reset");
    let log = jamd.log();
    assert!(!log.iter().any(|l| l.contains("ERROR")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");
}

#[test]
fn random_binary_garbage_gets_only_error_lines_and_the_session_survives() {
    let jamd = Jamd::spawn(&[]);
    let mut stream = TcpStream::connect(jamd.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    // A fixed pseudo-random stream without 0xFF (telnet IAC) and line ends only where we put them.
    let mut x: u32 = 0x9e37_79b9;
    let mut garbage = Vec::new();
    for i in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = (x % 255) as u8;
        garbage.push(if b == b'\n' || b == b'\r' { b'x' } else { b });
        if i % 100 == 99 {
            garbage.extend_from_slice(b"\r\n");
        }
    }
    garbage.extend_from_slice(b"TIME\r\nQUIT\r\n");
    stream.write_all(&garbage).expect("send");
    let (reply, took) = good_client(jamd.addr);
    assert_time_reply(&reply);
    assert!(
        took < Duration::from_secs(1),
        "a good client waited {took:?}"
    );
    let mut received = Vec::new();
    stream.read_to_end(&mut received).expect("clean close");
    let text = String::from_utf8(received).expect("replies are UTF-8");
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 201, "one reply per line, then the TIME");
    assert!(
        lines[..200].iter().all(|l| l.starts_with("ERR ")),
        "{lines:?}"
    );
    assert!(lines[200].starts_with("JAM "), "{}", lines[200]);
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\r' && c != '\n')
    );
}

fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_slow_drip_is_cut_off_by_the_line_timeout_while_others_are_served() {
    let jamd = Jamd::spawn(&["--line-timeout", "300ms"]);
    let mut drip = TcpStream::connect(jamd.addr).expect("connect");
    drip.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut writer = drip.try_clone().expect("clone");
    let start = Instant::now();
    let dripper = std::thread::spawn(move || {
        for byte in b"TIME".iter().cycle().take(40) {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (reply, took) = good_client(jamd.addr);
    assert_time_reply(&reply);
    assert!(
        took < Duration::from_secs(1),
        "a good client waited {took:?}"
    );
    let said = String::from_utf8(read_all(&mut drip)).expect("UTF-8");
    assert!(
        said.starts_with("ERR line timeout: ")
            && said.ends_with(" and no CR LF in 300ms; end each request with CR LF (try TIME)\r\n"),
        "{said:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "bytes kept the line alive"
    );
    let _ = dripper.join();
}

#[test]
fn a_silent_connection_is_closed_by_the_idle_timeout_while_others_are_served() {
    let jamd = Jamd::spawn(&["--idle-timeout", "300ms"]);
    let mut silent = TcpStream::connect(jamd.addr).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let (reply, took) = good_client(jamd.addr);
    assert_time_reply(&reply);
    assert!(
        took < Duration::from_secs(1),
        "a good client waited {took:?}"
    );
    assert_eq!(read_all(&mut silent), b"ERR idle timeout\r\n");
}

/// Sends `line` every 100 ms for 1.5 s (five idle timeouts of 300 ms) on a fresh connection;
/// what the server sent meanwhile, and whether it closed.
fn keep_sending(jamd: &Jamd, line: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(jamd.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let mut got = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        if stream.write_all(line).is_err() {
            return (got, true);
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

#[test]
fn idle_means_no_complete_request_so_blank_lines_do_not_hold_a_slot() {
    let jamd = Jamd::spawn(&["--idle-timeout", "300ms"]);
    let (got, closed) = keep_sending(&jamd, b"\r\n");
    assert!(closed, "blank lines kept the session open");
    assert_eq!(got, b"ERR idle timeout\r\n");
    let (got, closed) = keep_sending(&jamd, &[255, 253, 1]); // IAC DO ECHO
    assert!(closed, "telnet negotiation kept the session open");
    assert!(got.ends_with(b"ERR idle timeout\r\n"), "{got:?}");
    let (got, closed) = keep_sending(&jamd, b"TIME\r\n");
    assert!(
        !closed,
        "requests every 100 ms keep a session with a 300 ms idle timeout open"
    );
    assert!(
        got.len() >= 14 * 10 && !got.windows(3).any(|w| w == b"ERR"),
        "{got:?}"
    );
}

#[test]
fn a_client_that_never_reads_is_throttled_and_closed_while_others_are_served() {
    let jamd = Jamd::spawn(&["--max-output", "4KiB", "--write-timeout", "500ms"]);
    let before = rss_kib(jamd.child.id());
    let mut hog = TcpStream::connect(jamd.addr).expect("connect");
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // Write requests and never read: the server stops reading once its replies back up, so our
    // writes soon block; after the write timeout the server closes the connection.
    let chunk = b"TIME\r\n".repeat(10_000);
    let start = Instant::now();
    let mut written = 0usize;
    let closed = loop {
        match hog.write(&chunk) {
            Ok(n) => written += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break true,
        }
        if start.elapsed() > WAIT {
            break false;
        }
        let (reply, took) = good_client(jamd.addr);
        assert_time_reply(&reply);
        assert!(
            took < Duration::from_secs(1),
            "a good client waited {took:?}"
        );
    };
    assert!(
        closed,
        "the server never closed a client that does not read ({written} bytes written)"
    );
    let growth = rss_kib(jamd.child.id()).saturating_sub(before);
    assert!(growth < 4096, "RSS grew by {growth} KiB");
}

#[test]
fn a_flood_of_pipelined_requests_is_answered_in_full_without_stalling() {
    // Clients write far faster than the server answers, so the server's receive window fills
    // again and again; while it is full, no new data (and no readiness event) arrives until the
    // server reads. A server that loses track of data already in its buffer stalls here. The
    // stall is a race, so several clients at once give it many chances.
    const CLIENTS: usize = 6;
    const REQUESTS: usize = 200_000;
    let jamd = Jamd::spawn(&[]);
    let addr = jamd.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || flood(addr, REQUESTS)))
        .collect();
    for (client, result) in clients.into_iter().enumerate() {
        let (replies, result) = result.join().expect("client");
        assert!(
            result.is_ok(),
            "client {client} stalled after {replies} of {REQUESTS} replies: {result:?}"
        );
        assert_eq!(replies, REQUESTS, "client {client}");
    }
    let (reply, _) = good_client(jamd.addr);
    assert_time_reply(&reply);
}

/// Pipelines `requests` TIME requests and a QUIT as fast as the socket takes them, reading
/// replies on the side; returns how many valid replies arrived and how reading ended.
fn flood(addr: SocketAddr, requests: usize) -> (usize, std::io::Result<usize>) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut reader = stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        let chunk = b"TIME\r\n".repeat(requests / 10);
        for _ in 0..10 {
            stream.write_all(&chunk).expect("send");
        }
        stream.write_all(b"QUIT\r\n").expect("send QUIT");
    });
    let mut received = Vec::new();
    let result = reader.read_to_end(&mut received);
    writer.join().expect("writer");
    let valid = received
        .chunks(14)
        .take_while(|r| r.starts_with(b"JAM ") && r.ends_with(b"\r\n"))
        .count();
    (valid, result)
}

#[test]
fn bytes_sent_after_quit_are_read_and_discarded_until_the_linger_time_ends() {
    // The close path lingers (2 s): late bytes are read, so they cannot turn the close into a
    // reset that would destroy the replies in flight, and the connection is let go at the end.
    let jamd = Jamd::spawn(&[]);
    let mut late = TcpStream::connect(jamd.addr).expect("connect");
    late.set_read_timeout(Some(WAIT)).expect("timeout");
    let quit = Instant::now();
    late.write_all(b"TIME\r\nQUIT\r\n").expect("send");
    late.write_all(&[b'x'; 4096]).expect("late bytes");
    let all = read_all(&mut late);
    assert_time_reply(&all);
    assert_eq!(all.len(), 14, "the reply, then the end of the stream");
    late.write_all(&[b'y'; 4096])
        .expect("the server still reads after its end of file");
    let closed = jamd.wait_for_log("reason=quit");
    assert!(
        quit.elapsed() >= Duration::from_millis(1900),
        "let go after {:?}, before the linger time: {closed}",
        quit.elapsed()
    );
    let (reply, _) = good_client(jamd.addr);
    assert_time_reply(&reply);
}
