//! Properties of the framing and of the error lines, for arbitrary input: however a stream is cut
//! into reads, the decoder yields the same frames; it never holds more than `max_line` bytes; no
//! input makes it (or the request parser) panic; and error lines never carry raw control bytes or
//! long echoes.

use jam::codec::{Decoder, Frame, Remainder, TelnetCommand, telnet};
use jam::protocol::{ErrorReply, MAX_ECHO_CHARS, Request};
use proptest::prelude::*;
use proptest::sample::Index;

/// A frame, owned, so frames from different decoders can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Line(Vec<u8>),
    Telnet(TelnetCommand),
    TooLong,
}

impl From<Frame<'_>> for Owned {
    fn from(frame: Frame<'_>) -> Self {
        match frame {
            Frame::Line(line) => Owned::Line(line.to_vec()),
            Frame::Telnet(command) => Owned::Telnet(command),
            Frame::TooLong => Owned::TooLong,
        }
    }
}

/// Feeds `chunks` to one decoder, in order, and returns every frame and what remained at the end.
/// Checks on the way that each call makes progress and the decoder never buffers more than
/// `max_line` bytes.
fn decode(max_line: usize, chunks: &[&[u8]]) -> Result<(Vec<Owned>, Remainder), TestCaseError> {
    let mut decoder = Decoder::new(max_line);
    let mut frames = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while !input.is_empty() {
            let (used, frame) = decoder.decode(input);
            prop_assert!(used <= input.len());
            prop_assert!(used > 0 || frame.is_some(), "no progress on {input:?}");
            if let Some(frame) = frame {
                frames.push(Owned::from(frame));
            }
            input = &input[used..];
            prop_assert!(
                decoder.buffered() <= max_line,
                "buffered {} > max_line {max_line}",
                decoder.buffered()
            );
        }
    }
    Ok((frames, decoder.finish()))
}

/// Cuts `stream` at the given points (any order, duplicates allowed).
/// Fails unless `bytes` cut at `cuts` decodes exactly as `bytes` in one piece.
fn decodes_like_the_whole(
    max_line: usize,
    bytes: &[u8],
    cuts: &[Index],
) -> Result<(), TestCaseError> {
    let whole = decode(max_line, &[bytes])?;
    let parts = decode(max_line, &split(bytes, cuts))?;
    prop_assert_eq!(parts, whole);
    Ok(())
}

fn split<'a>(stream: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

fn line(bytes: &[u8]) -> Owned {
    Owned::Line(bytes.to_vec())
}

fn negotiate(verb: u8, option: u8) -> Owned {
    Owned::Telnet(TelnetCommand::Negotiate { verb, option })
}

/// One piece of a client's stream, and the frames it must decode to.
fn piece() -> impl Strategy<Value = (Vec<u8>, Vec<Owned>)> {
    let fixed = |bytes: &[u8], frames: Vec<Owned>| Just((bytes.to_vec(), frames));
    // A line of junk: letters, digits, spaces, tabs, NUL and other bytes, but no CR, LF or IAC.
    let junk_byte = prop_oneof![
        b'a'..=b'z',
        b'A'..=b'Z',
        b'0'..=b'9',
        Just(b' '),
        Just(b'\t'),
        Just(0u8),
        0x80u8..=0xfe,
    ];
    let junk = (
        proptest::collection::vec(junk_byte, 1..24),
        prop_oneof![Just(&b"\r\n"[..]), Just(&b"\n"[..]), Just(&b"\r\0"[..])],
    )
        .prop_filter("not QUIT", |(word, _)| {
            !matches!(
                Request::parse(word),
                Request::Command(jam::protocol::Command::Quit)
            )
        })
        .prop_map(|(word, end)| {
            let frames = vec![line(&word)];
            ([&word[..], end].concat(), frames)
        });
    prop_oneof![
        fixed(b"TIME\r\n", vec![line(b"TIME")]),
        fixed(b"time\n", vec![line(b"time")]),
        fixed(b" TiMe \r\0", vec![line(b" TiMe ")]),
        fixed(b"TIME now\r\n", vec![line(b"TIME now")]),
        fixed(b"\r\n", vec![line(b"")]),
        fixed(b" \t\r\n", vec![line(b" \t")]),
        fixed(b"\xff\xfb\x1f", vec![negotiate(telnet::WILL, 0x1f)]),
        fixed(b"\xff\xfd\x03", vec![negotiate(telnet::DO, 0x03)]),
        fixed(b"\xff\xfc\x01", vec![negotiate(telnet::WONT, 0x01)]),
        fixed(b"\xff\xfe\x01", vec![negotiate(telnet::DONT, 0x01)]),
        fixed(b"\xff\xfa\x18\x00xterm\xff\xf0", vec![]),
        fixed(
            b"TI\xff\xf4\xff\xfd\x06",
            vec![
                Owned::Telnet(TelnetCommand::Interrupt),
                negotiate(telnet::DO, telnet::TIMING_MARK)
            ]
        ),
        fixed(
            b"TI\xff\xfd\x06ME\r\n",
            vec![negotiate(telnet::DO, telnet::TIMING_MARK), line(b"TIME")]
        ),
        fixed(b"\xff\xff\r\n", vec![line(b"\xff")]),
        junk,
    ]
}

/// A stream of pieces and the frames it must decode to.
fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<Owned>)> {
    proptest::collection::vec(piece(), 0..40).prop_map(|pieces| {
        let mut bytes = Vec::new();
        let mut frames = Vec::new();
        for (b, f) in pieces {
            bytes.extend_from_slice(&b);
            frames.extend(f);
        }
        (bytes, frames)
    })
}

/// Arbitrary bytes, with line ends and telnet command bytes more frequent than chance.
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(&b"\r\n\0 \tTIME\xff\xf4\xf7\xf8\xfa\xf0\xfb\xfd"[..]),
    ];
    proptest::collection::vec(byte, 0..max)
}

/// Arbitrary bytes without IAC (no telnet commands), line ends more frequent than chance.
fn bytes_without_iac(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![0u8..0xff, prop::sample::select(&b"\r\n\0 \tTIME"[..])];
    proptest::collection::vec(byte, 0..max)
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    proptest::collection::vec(any::<Index>(), 0..16)
}

proptest! {
    // No regression files: each failure found so far is pinned by an explicit test below.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_split_of_a_request_stream_decodes_to_its_frames((bytes, want) in stream(), cuts in cuts()) {
        let (whole, rest) = decode(1024, &[&bytes])?;
        prop_assert_eq!(&whole, &want);
        prop_assert_eq!(rest, Remainder::Nothing);
        let (parts, rest) = decode(1024, &split(&bytes, &cuts))?;
        prop_assert_eq!(&parts, &want);
        prop_assert_eq!(rest, Remainder::Nothing);
    }

    #[test]
    fn a_request_stream_fed_one_byte_at_a_time_decodes_to_its_frames((bytes, want) in stream()) {
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        let (frames, rest) = decode(1024, &chunks)?;
        prop_assert_eq!(frames, want);
        prop_assert_eq!(rest, Remainder::Nothing);
    }

    #[test]
    fn any_split_of_arbitrary_bytes_decodes_like_the_whole(
        bytes in bytes(512),
        cuts in cuts(),
    ) {
        // No line can reach the length cap here.
        decodes_like_the_whole(1024, &bytes, &cuts)?;
    }

    #[test]
    fn any_split_of_bytes_without_telnet_commands_decodes_like_the_whole_near_max_line(
        bytes in bytes_without_iac(512),
        cuts in cuts(),
        max_line in 0usize..64,
    ) {
        decodes_like_the_whole(max_line, &bytes, &cuts)?;
    }

    #[test]
    fn any_split_of_arbitrary_bytes_decodes_like_the_whole_near_max_line(
        bytes in bytes(512),
        cuts in cuts(),
        max_line in 0usize..64,
    ) {
        decodes_like_the_whole(max_line, &bytes, &cuts)?;
    }

    #[test]
    fn any_split_of_a_request_stream_decodes_like_the_whole_near_max_line(
        (bytes, _) in stream(),
        cuts in cuts(),
        max_line in 0usize..24,
    ) {
        decodes_like_the_whole(max_line, &bytes, &cuts)?;
    }

    #[test]
    fn the_decoder_never_buffers_more_than_max_line(
        chunks in proptest::collection::vec(bytes(200), 0..10),
        max_line in 0usize..300,
    ) {
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        // `decode` checks `buffered() <= max_line` after every call.
        let (frames, _) = decode(max_line, &chunks)?;
        // Nothing decodes after a too-long line.
        if let Some(i) = frames.iter().position(|f| *f == Owned::TooLong) {
            prop_assert_eq!(i, frames.len() - 1);
        }
    }

    #[test]
    fn a_line_is_never_longer_than_max_line(
        bytes in bytes(300),
        max_line in 0usize..64,
    ) {
        let (frames, _) = decode(max_line, &[&bytes])?;
        for frame in frames {
            if let Owned::Line(line) = frame {
                prop_assert!(line.len() <= max_line, "{} > {max_line}", line.len());
            }
        }
    }

    #[test]
    fn request_parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Request::Unknown(word) = Request::parse(&line) {
            prop_assert!(!word.is_empty());
            prop_assert!(!word.contains(&b' ') && !word.contains(&b'\t'));
        }
    }

    #[test]
    fn unknown_command_lines_have_no_control_bytes_and_short_echoes(
        word in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        check_unknown_command_line(&word)?;
    }

    #[test]
    fn unknown_command_lines_for_parsed_words_are_safe(
        line in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        if let Request::Unknown(word) = Request::parse(&line) {
            check_unknown_command_line(word)?;
        }
    }

    #[test]
    fn a_short_printable_word_is_echoed_as_is(word in "[!#-\\[\\]-~]{1,32}") {
        // Printable ASCII but `"` and `\`, at most 32 characters: echoed unchanged.
        let got = ErrorReply::UnknownCommand(word.as_bytes()).to_bytes();
        let want = format!("ERR unknown command \"{word}\" (try TIME or QUIT)\r\n");
        prop_assert_eq!(String::from_utf8_lossy(&got), want);
    }
}

/// `ERR unknown command "<echo>" (try TIME or QUIT)` CR LF, where the line holds no control
/// character but its final CR LF and the echo is at most 32 characters (ending `...` when cut).
fn check_unknown_command_line(word: &[u8]) -> Result<(), TestCaseError> {
    let bytes = ErrorReply::UnknownCommand(word).to_bytes();
    let text = std::str::from_utf8(&bytes);
    prop_assert!(text.is_ok(), "not UTF-8: {bytes:?}");
    let text = text.unwrap_or_default();
    let body = text.strip_suffix("\r\n");
    prop_assert!(body.is_some(), "no CR LF at the end: {text:?}");
    let body = body.unwrap_or_default();
    prop_assert!(
        !body.chars().any(char::is_control),
        "control character in {body:?}"
    );
    let echo = body
        .strip_prefix("ERR unknown command \"")
        .and_then(|rest| rest.strip_suffix("\" (try TIME or QUIT)"));
    prop_assert!(echo.is_some(), "not an unknown-command line: {body:?}");
    let echo = echo.unwrap_or_default();
    let chars = echo.chars().count();
    prop_assert!(chars <= MAX_ECHO_CHARS, "echo of {chars} chars: {echo:?}");
    // Every character takes at most 4 bytes, so a longer word has more than 32 characters.
    if word.len() > 4 * MAX_ECHO_CHARS {
        prop_assert!(echo.ends_with("..."), "cut without `...`: {echo:?}");
    }
    Ok(())
}

#[test]
fn a_telnet_interrupt_split_from_its_iac_decodes_like_the_whole() {
    let stream: &[u8] = b"TI\xff\xf4\xff\xfd\x06";
    let whole = decode(2, &[stream]).expect("decodes");
    let parts = decode(2, &[&stream[..3], &stream[3..]]).expect("decodes");
    assert_eq!(
        whole.0,
        [
            Owned::Telnet(TelnetCommand::Interrupt),
            negotiate(telnet::DO, telnet::TIMING_MARK)
        ]
    );
    assert_eq!(parts, whole);
}
