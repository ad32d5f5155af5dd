//! Logs that machines can read: the real `jamd`'s text logs parse as logfmt and its JSON logs as
//! JSON with typed fields, over a session that closes connections for many reasons; every close
//! reason and service in the logs is the word the metrics use; a fatal error obeys
//! `--log-format` too.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{Jamd, WAIT};
use jam::CloseReason;
use serde_json::Value;

/// A logfmt line (after the timestamp and level) as key → value; the message is under "msg".
/// A minimal parser written from the logfmt convention: `key=value`, a value quoted with `"` when
/// it holds spaces, `\"` and `\\` escapes inside quotes.
fn logfmt(line: &str) -> Result<BTreeMap<String, String>, String> {
    let mut fields = BTreeMap::new();
    // "2026-…Z  INFO message words key=value …": the message runs until the first key=.
    let mut rest = line.trim_start();
    for _ in 0..2 {
        rest = rest
            .split_once(' ')
            .map(|(_, r)| r.trim_start())
            .ok_or("no level")?;
    }
    // Span prefixes (`conn{id=1 peer=…}:`) end with ": ".
    if let Some((_, after)) = rest.split_once("}: ") {
        rest = after;
    }
    // The message ends before the first ` key=value`: a lower-case snake_case key, then a value
    // (a message may hold `DynamicUser=,`).
    let is_key_at = |i: usize| {
        let word = &rest[i..];
        let Some(eq) = word.find('=') else {
            return false;
        };
        eq > 0
            && word[..eq]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !matches!(word[eq + 1..].chars().next(), None | Some(' ' | ','))
    };
    let first_key = rest
        .match_indices(' ')
        .map(|(i, _)| i + 1)
        .find(|&i| is_key_at(i))
        .unwrap_or(rest.len());
    fields.insert("msg".to_string(), rest[..first_key].trim().to_string());
    let mut chars = rest[first_key..].chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(_) = chars.peek() else { break };
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() || key.contains(' ') {
            return Err(format!("bad key {key:?} in {line:?}"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or("dangling escape")?),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quote in {line:?}")),
                }
            }
            if !matches!(chars.peek(), None | Some(' ')) {
                return Err(format!("text after a quoted value in {line:?}"));
            }
        } else {
            for c in chars.by_ref() {
                if c == ' ' {
                    break;
                }
                if c == '"' || c == '=' {
                    return Err(format!("unquoted {c:?} in {key}'s value in {line:?}"));
                }
                value.push(c);
            }
        }
        fields.insert(key, value);
    }
    Ok(fields)
}

/// Runs a session against `jamd` that closes connections for several reasons: quit, the client
/// closing, a line too long, an HTTP request, the line timeout, an RFC 868 answer, shutdown.
fn exercise(jamd: &Jamd, rfc868: std::net::SocketAddr) {
    let talk = |bytes: &[u8], close: bool| {
        let mut s = TcpStream::connect(jamd.addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(bytes).expect("send");
        if close {
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        }
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    };
    talk(b"TIME\r\nhe llo\r\nQUIT\r\n", false);
    talk(b"TIME\r\n", true);
    talk(&[b'A'; 40], false);
    talk(b"GET / HTTP/1.1\r\n", false);
    talk(b"TI", false);
    // Silent until the idle timeout.
    talk(b"", false);
    // A reset: SO_LINGER 0 turns the close into an RST.
    let reset = socket2::Socket::from(TcpStream::connect(jamd.addr).expect("connect"));
    reset.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    let mut reset = TcpStream::from(reset);
    reset.write_all(b"TIME\r\n").expect("send");
    std::thread::sleep(Duration::from_millis(50));
    drop(reset);
    let mut t = TcpStream::connect(rfc868).expect("rfc868");
    let _ = t.read_to_end(&mut Vec::new());
    // One left open for shutdown to close.
    let _open = TcpStream::connect(jamd.addr).expect("connect");
    std::thread::sleep(Duration::from_millis(200));
    jamd.signal("TERM");
    jamd.wait_for_log("jamd stopped");
}

fn args(format: &str) -> Vec<String> {
    [
        "--log-format",
        format,
        "--log-level",
        "debug",
        "--max-line",
        "16",
        "--line-timeout",
        "300ms",
        "--idle-timeout",
        "400ms",
        "--rfc868",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec()
}

fn rfc868_addr(log: &[String]) -> std::net::SocketAddr {
    log.iter()
        .find_map(|l| {
            l.split("service listening on ")
                .nth(1)?
                .split(['"', ' ', ','])
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no RFC 868 listener in {log:?}"))
}

#[test]
fn text_logs_are_logfmt_and_their_words_are_the_metric_labels() {
    let args = args("text");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let jamd = Jamd::spawn(&args);
    jamd.wait_for_log("service listening on");
    exercise(&jamd, rfc868_addr(&jamd.log()));
    let mut reasons = Vec::new();
    for line in jamd.log() {
        let fields = logfmt(&line).unwrap_or_else(|e| panic!("{e}"));
        if let Some(reason) = fields.get("reason") {
            reasons.push(reason.clone());
        }
        if let Some(service) = fields.get("service") {
            assert!(
                jam::service::Service::LABELS.contains(&service.as_str()),
                "{line}"
            );
        }
    }
    for reason in &reasons {
        assert!(
            CloseReason::LABELS.contains(&reason.as_str()),
            "{reason:?} is not a metric label"
        );
    }
    for expected in [
        "quit",
        "client_closed",
        "line_too_long",
        "http_request",
        "line_timeout",
        "idle_timeout",
        "reset",
        "shutdown",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} missing from {reasons:?}"
        );
    }
}

#[test]
fn json_logs_have_typed_fields_and_the_metric_labels() {
    let args = args("json");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let jamd = Jamd::spawn(&args);
    jamd.wait_for_log("service listening on");
    exercise(&jamd, rfc868_addr(&jamd.log()));
    let mut reasons = Vec::new();
    let mut requests = Vec::new();
    for line in jamd.log() {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["conn", "requests", "duration_ms", "port", "max_line"] {
            if let Some(field) = v.get(key) {
                assert!(field.is_u64(), "{key} is not a number: {line}");
            }
        }
        if let Some(reason) = v.get("reason") {
            reasons.push(reason.as_str().expect("a string").to_string());
        }
        if let Some(request) = v.get("request") {
            requests.push(
                request
                    .as_str()
                    .expect("text, not a list of bytes")
                    .to_string(),
            );
        }
    }
    for reason in &reasons {
        assert!(CloseReason::LABELS.contains(&reason.as_str()), "{reason:?}");
    }
    assert!(
        jamd.log()
            .iter()
            .any(|l| l.contains("\"service\":\"rfc868\"")),
        "the RFC 868 answer is logged with the metric's service word"
    );
    assert!(requests.contains(&"TIME".to_string()), "{requests:?}");
    assert!(requests.contains(&"he".to_string()), "{requests:?}");
}

#[test]
fn a_fatal_error_obeys_the_log_format() {
    let out = Command::new(env!("CARGO_BIN_EXE_jamd"))
        .args(["--log-format", "json", "--listen", "127.0.0.1"])
        .output()
        .expect("jamd");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["level"], "ERROR");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("expected HOST:PORT"),
        "{v}"
    );
}

#[test]
fn the_logfmt_parser_refuses_what_breaks_logfmt() {
    assert!(
        logfmt("2026-12-03T00:00:00Z  INFO connection closed reason=client closed x=1").is_err()
    );
    let ok = logfmt("2026-12-03T00:00:00Z  INFO connection closed reason=\"client closed\" n=1")
        .expect("valid");
    assert_eq!(ok["reason"], "client closed");
    assert_eq!(ok["msg"], "connection closed");
}
