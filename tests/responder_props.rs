//! Properties of the whole reply path (framing + protocol + clock), without sockets: however a
//! client's bytes are cut into reads, and however small the output cap, the replies are the same.

use std::sync::Arc;

use jam::LocalClock;
use jam::clock::{ManualClock, zone_by_name};
use jam::responder::{CloseReason, Responder};
use proptest::prelude::*;
use tracing::Span;

fn clock() -> LocalClock {
    let at = "2026-03-04T05:06:07Z".parse().expect("timestamp");
    LocalClock::new(
        Arc::new(ManualClock::new(at)),
        zone_by_name("UTC").expect("zone"),
    )
}

/// Feeds `input` in reads cut at `cuts`, with output cap `cap`, as a session does: unused input
/// is offered again after the output is taken away. Returns all replies and how it ended.
fn replies(
    input: &[u8],
    cuts: &[usize],
    cap: usize,
    max_line: usize,
) -> (Vec<u8>, Option<CloseReason>) {
    let clock = clock();
    let mut responder = Responder::new(max_line, Span::none());
    let mut all = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(0);
    bounds.push(input.len());
    bounds.sort_unstable();
    for read in bounds.windows(2) {
        let mut pending = &input[read[0]..read[1]];
        while !pending.is_empty() {
            let mut out = Vec::new();
            let batch = responder.respond(pending, &mut out, &clock, cap);
            all.extend_from_slice(&out);
            if batch.end.is_some() {
                return (all, batch.end);
            }
            pending = &pending[batch.used..];
        }
    }
    responder.finish(&mut all);
    (all, None)
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"TIME\r\n".to_vec()),
        Just(b"time\n".to_vec()),
        Just(b" TiMe \t\r\0".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"TIME now\r\n".to_vec()),
        Just(b"TIMEX\r\n".to_vec()),
        Just(b"\xff\xfd\x06".to_vec()),
        Just(b"TI\xff\xf4ME\r\n".to_vec()),
        Just(b"\xc3\x28\r\n".to_vec()),
        Just(b"QUIT\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_split_and_any_output_cap_give_the_replies_of_the_whole_stream(
        requests in proptest::collection::vec(request(), 0..24),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        cap in 1usize..200,
    ) {
        let input = requests.concat();
        let whole = replies(&input, &[], usize::MAX, 1024);
        let split = replies(&input, &cuts, cap, 1024);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn near_the_line_cap_splits_do_not_change_the_outcome(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        max_line in 1usize..32,
    ) {
        let whole = replies(&bytes, &[], usize::MAX, max_line);
        let split = replies(&bytes, &cuts, usize::MAX, max_line);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn every_reply_line_is_a_jam_line_an_err_line_or_a_telnet_refusal(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (out, _) = replies(&bytes, &[], usize::MAX, 64);
        let mut rest = &out[..];
        while !rest.is_empty() {
            if rest[0] == 0xff {
                prop_assert!(rest.len() >= 3 && (rest[1] == 0xfc || rest[1] == 0xfe));
                rest = &rest[3..];
                continue;
            }
            let end = rest.windows(2).position(|w| w == b"\r\n");
            prop_assert!(end.is_some(), "unterminated {:?}", String::from_utf8_lossy(rest));
            let line = &rest[..end.unwrap_or(0)];
            prop_assert!(line == b"JAM 05:06:07" || line.starts_with(b"ERR "), "{:?}", String::from_utf8_lossy(line));
            prop_assert!(!line.iter().any(|&b| b < 0x20 || b == 0x7f), "control byte in {:?}", line);
            rest = &rest[end.unwrap_or(0) + 2..];
        }
    }
}
