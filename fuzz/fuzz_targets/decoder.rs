//! The framing decoder fed an arbitrary byte stream cut at arbitrary points: it never panics,
//! never holds more than the line cap, and decodes the cut stream exactly like the whole one.
#![no_main]

use jam::codec::{Decoder, Frame};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Owned {
    Line(Vec<u8>),
    Other(String),
}

fn frames(data: &[u8], cuts: &[usize], max_line: usize) -> Vec<Owned> {
    let mut decoder = Decoder::new(max_line);
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let mut input = &data[start..end.max(start)];
        start = end.max(start);
        while !input.is_empty() {
            let (used, frame) = decoder.decode(input);
            assert!(used <= input.len());
            match frame {
                Some(Frame::Line(line)) => {
                    assert!(line.len() <= max_line);
                    out.push(Owned::Line(line.to_vec()));
                }
                Some(other) => out.push(Owned::Other(format!("{other:?}"))),
                None => assert_eq!(used, input.len(), "no frame means all input was taken"),
            }
            input = &input[used..];
            assert!(decoder.buffered() <= max_line);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, data)) = data.split_first() else {
        return;
    };
    let max_line = usize::from(head % 64) + 1;
    // Cut points derived from the data itself: every 1 + (byte % 7) bytes.
    let mut cuts = Vec::new();
    let mut at = 0;
    for &b in data {
        at += 1 + usize::from(b % 7);
        if at >= data.len() {
            break;
        }
        cuts.push(at);
    }
    assert_eq!(frames(data, &cuts, max_line), frames(data, &[], max_line));
});
