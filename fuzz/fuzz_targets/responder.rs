//! The whole reply path on arbitrary input: every reply line is `JAM …`, `ERR …` or a telnet
//! refusal; a tiny output cap (input offered again, as a session does) changes nothing; and
//! input fed one byte per read (which never takes the responder's fast path for `TIME`) gets
//! the same replies as the whole input at once.
#![no_main]

use std::sync::Arc;

use jam::LocalClock;
use jam::clock::ManualClock;
use jam::responder::Responder;
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], cap: usize) -> Vec<u8> {
    let clock = LocalClock::new(
        Arc::new(ManualClock::new(jam::clock::Timestamp::UNIX_EPOCH)),
        jam::clock::TimeZone::UTC,
    );
    let mut responder = Responder::new(256, tracing::Span::none());
    let mut all = Vec::new();
    let mut pending = data;
    while !pending.is_empty() {
        let mut out = Vec::new();
        let batch = responder.respond(pending, &mut out, &clock, cap);
        all.extend_from_slice(&out);
        if batch.end.is_some() {
            return all;
        }
        pending = &pending[batch.used..];
    }
    responder.finish(&mut all);
    all
}

/// Feeds `data` one byte per call, as a client sending one byte per packet would.
fn run_bytewise(data: &[u8]) -> Vec<u8> {
    let clock = LocalClock::new(
        Arc::new(ManualClock::new(jam::clock::Timestamp::UNIX_EPOCH)),
        jam::clock::TimeZone::UTC,
    );
    let mut responder = Responder::new(256, tracing::Span::none());
    let mut all = Vec::new();
    for byte in data.chunks(1) {
        if responder.respond(byte, &mut all, &clock, usize::MAX).end.is_some() {
            return all;
        }
    }
    responder.finish(&mut all);
    all
}

fuzz_target!(|data: &[u8]| {
    let whole = run(data, usize::MAX);
    assert_eq!(run(data, 1), whole);
    assert_eq!(run_bytewise(data), whole);
    let mut rest = &whole[..];
    while !rest.is_empty() {
        if rest[0] == 0xff {
            assert!(rest.len() >= 3 && (rest[1] == 0xfc || rest[1] == 0xfe));
            rest = &rest[3..];
            continue;
        }
        let end = rest.windows(2).position(|w| w == b"\r\n").expect("CR LF");
        let line = &rest[..end];
        assert!(
            line == b"JAM 00:00:00" || line.starts_with(b"ERR "),
            "{line:?}"
        );
        rest = &rest[end + 2..];
    }
});
