//! Framing: turns a byte stream, cut into reads at arbitrary points, into request lines.
//!
//! - A line ends in CR LF, LF alone (`nc`) or CR NUL (telnet's bare CR). A CR followed by
//!   anything else is part of the line. A CR at the end of a read waits for the next byte.
//! - Telnet commands (IAC, byte 255, and what follows it) are removed from the stream and reported
//!   as [`Frame::Telnet`]; IAC IAC is a literal 255 byte. Interrupt Process and Erase Line discard the
//!   line typed so far, Erase Character removes its last byte.
//! - A line may hold at most `max_line` bytes, counting every byte received for it except its line
//!   end (telnet commands inside it included). Past that the decoder returns [`Frame::TooLong`] at
//!   once, without waiting for the line end; it never holds more than `max_line` bytes.
//!
//! A line that arrives whole within one read is returned as a slice of that read, without copying;
//! only a line split across reads is copied into the decoder.

use memchr::memchr3;

/// Telnet "interpret as command".
pub const IAC: u8 = 255;
/// Telnet option verbs and commands (RFC 854).
pub mod telnet {
    /// End of subnegotiation.
    pub const SE: u8 = 240;
    /// Erase character.
    pub const EC: u8 = 247;
    /// Erase line.
    pub const EL: u8 = 248;
    /// Interrupt process (Ctrl-C).
    pub const IP: u8 = 244;
    /// Abort output.
    pub const AO: u8 = 245;
    /// End of file (RFC 1184), sent for Ctrl-D by some clients.
    pub const EOF: u8 = 236;
    /// Subnegotiation begin.
    pub const SB: u8 = 250;
    /// The sender wants to enable an option on its side.
    pub const WILL: u8 = 251;
    /// The sender refuses or disables an option on its side.
    pub const WONT: u8 = 252;
    /// The sender asks the receiver to enable an option.
    pub const DO: u8 = 253;
    /// The sender asks the receiver to disable an option.
    pub const DONT: u8 = 254;
    /// The timing-mark option (RFC 860), sent by telnet after Ctrl-C.
    pub const TIMING_MARK: u8 = 6;
}

/// One unit decoded from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its line end and with telnet commands removed.
    Line(&'a [u8]),
    /// A telnet command that the session may have to answer.
    Telnet(TelnetCommand),
    /// The current line exceeded `max_line` bytes. The decoder is finished; close the session.
    TooLong,
}

/// A telnet command found in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelnetCommand {
    /// Option negotiation: `verb` is WILL, WONT, DO or DONT.
    Negotiate {
        /// WILL, WONT, DO or DONT.
        verb: u8,
        /// The option code.
        option: u8,
    },
    /// Interrupt Process (Ctrl-C); the partial line was discarded.
    Interrupt,
    /// Abort Output.
    AbortOutput,
    /// End of file (Ctrl-D).
    EndOfFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ordinary line bytes.
    Data,
    /// A CR was seen; the next byte decides whether it ends the line.
    Cr,
    /// An IAC was seen.
    Iac,
    /// IAC and an option verb were seen; the option byte comes next.
    Option(u8),
    /// Inside a subnegotiation (IAC SB … IAC SE), whose bytes are discarded.
    Sub,
    /// An IAC inside a subnegotiation.
    SubIac,
    /// A line was too long; nothing more is decoded.
    Failed,
}

/// What is left of a line when the input ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remainder {
    /// Nothing, or only blanks and telnet commands.
    Nothing,
    /// Part of a request without its line end.
    PartialLine,
}

/// Incremental line decoder with a length cap; see the module documentation.
#[derive(Debug)]
pub struct Decoder {
    max_line: usize,
    /// The current line's content received in earlier reads (or interrupted by telnet commands).
    line: Vec<u8>,
    /// Bytes received for the current line so far, for the length cap.
    received: usize,
    state: State,
    /// Whether the CR that put us in `State::Cr` came in an earlier read.
    cr_carried: bool,
    /// `line` holds a line already returned, to be cleared on the next call.
    returned: bool,
}

impl Decoder {
    /// A decoder for lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Decoder {
            max_line,
            line: Vec::new(),
            received: 0,
            state: State::Data,
            cr_carried: false,
            returned: false,
        }
    }

    /// The maximum line length this decoder enforces.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Whether part of a line (or of a telnet command) has been received but not completed.
    pub(crate) fn in_line(&self) -> bool {
        (!self.line.is_empty() && !self.returned)
            || !matches!(self.state, State::Data | State::Failed)
    }

    /// Whether the decoder is between lines with nothing pending (no partial line, CR or telnet
    /// command), so that a complete line at the start of the next input decodes on its own.
    pub(crate) fn at_line_start(&self) -> bool {
        self.state == State::Data && self.received == 0 && (self.returned || self.line.is_empty())
    }

    /// Bytes of line content held between reads (at most `max_line`).
    pub fn buffered(&self) -> usize {
        if self.returned { 0 } else { self.line.len() }
    }

    /// Decodes the next frame from `input`. Returns how many bytes of `input` were consumed and
    /// the frame, if one completed. Call again with the rest of the input until it is consumed;
    /// `(input.len(), None)` means everything was taken in and more input is needed.
    pub fn decode<'a>(&'a mut self, input: &'a [u8]) -> (usize, Option<Frame<'a>>) {
        if self.returned {
            self.returned = false;
            self.line.clear();
            self.shrink_line();
        }
        // `seg` is where the current run of line content inside `input` starts: content is
        // copied into `self.line` only when a run is interrupted (telnet command, end of read).
        let mut seg = 0;
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Failed => return (input.len(), None),
                State::Data => {
                    let rest = &input[pos..];
                    let Some(k) = memchr3(b'\n', b'\r', IAC, rest) else {
                        self.received += rest.len();
                        break;
                    };
                    self.received += k;
                    let at = pos + k;
                    if self.received > self.max_line {
                        return self.fail(input.len());
                    }
                    match input[at] {
                        b'\n' => return self.complete(input, seg, at, at + 1),
                        b'\r' => {
                            self.state = State::Cr;
                            self.cr_carried = false;
                            pos = at + 1;
                        }
                        _ => {
                            self.save(&input[seg..at]);
                            self.received += 1;
                            self.state = State::Iac;
                            pos = at + 1;
                            seg = pos;
                        }
                    }
                }
                State::Cr => match input[pos] {
                    b'\n' | b'\0' => {
                        let cr_at = if self.cr_carried { pos } else { pos - 1 };
                        return self.complete(input, seg, cr_at, pos + 1);
                    }
                    _ => {
                        // The CR was data after all.
                        if self.cr_carried {
                            self.line.push(b'\r');
                        }
                        self.received += 1;
                        self.state = State::Data;
                    }
                },
                State::Iac => {
                    let byte = input[pos];
                    pos += 1;
                    seg = pos;
                    self.received += 1;
                    self.state = State::Data;
                    match byte {
                        IAC => self.line.push(IAC),
                        telnet::WILL | telnet::WONT | telnet::DO | telnet::DONT => {
                            self.state = State::Option(byte);
                        }
                        telnet::SB => self.state = State::Sub,
                        telnet::IP | telnet::EL => {
                            self.discard_line();
                            if byte == telnet::IP {
                                return (pos, Some(Frame::Telnet(TelnetCommand::Interrupt)));
                            }
                        }
                        telnet::EC => {
                            self.line.pop();
                        }
                        telnet::AO => {
                            self.command_done();
                            return (pos, Some(Frame::Telnet(TelnetCommand::AbortOutput)));
                        }
                        telnet::EOF => {
                            self.command_done();
                            return (pos, Some(Frame::Telnet(TelnetCommand::EndOfFile)));
                        }
                        _ => {}
                    }
                    if self.state == State::Data {
                        self.command_done();
                    }
                }
                State::Option(verb) => {
                    let option = input[pos];
                    pos += 1;
                    self.received += 1;
                    self.state = State::Data;
                    self.command_done();
                    return (
                        pos,
                        Some(Frame::Telnet(TelnetCommand::Negotiate { verb, option })),
                    );
                }
                State::Sub | State::SubIac => {
                    let byte = input[pos];
                    pos += 1;
                    seg = pos;
                    self.received += 1;
                    if self.received > self.max_line {
                        return self.fail(input.len());
                    }
                    self.state = match (self.state, byte) {
                        (State::Sub, IAC) => State::SubIac,
                        (State::Sub, _) | (State::SubIac, IAC) => State::Sub,
                        _ => {
                            self.command_done();
                            State::Data
                        }
                    };
                }
            }
        }
        // The read ended inside a line: keep its content for the next read.
        let end = if self.state == State::Cr && !self.cr_carried {
            self.cr_carried = true;
            input.len() - 1
        } else {
            input.len()
        };
        if seg < end {
            self.save(&input[seg..end]);
        }
        // Inside a telnet command the check waits for the command to end, as it does when the
        // command arrives whole, so where a read ends never changes the outcome.
        let in_command = matches!(self.state, State::Iac | State::Option(_));
        if !in_command && self.received > self.max_line {
            return self.fail(input.len());
        }
        (input.len(), None)
    }

    /// What remains when the input ends (the client closed its side).
    pub fn finish(&self) -> Remainder {
        let pending = if self.returned {
            &[][..]
        } else {
            &self.line[..]
        };
        let cr = self.state == State::Cr;
        if cr || pending.iter().any(|&b| b != b' ' && b != b'\t') {
            Remainder::PartialLine
        } else {
            Remainder::Nothing
        }
    }

    /// Gives back the buffer a long line made grow, so a session between lines holds little memory.
    fn shrink_line(&mut self) {
        if self.line.capacity() > 64 {
            self.line = Vec::new();
        }
    }

    fn save(&mut self, bytes: &[u8]) {
        self.line.extend_from_slice(bytes);
    }

    /// A telnet command ended; if no content is pending, it does not count toward a line.
    fn command_done(&mut self) {
        if self.line.is_empty() {
            self.received = 0;
        }
    }

    fn discard_line(&mut self) {
        self.line.clear();
        self.received = 0;
    }

    fn fail(&mut self, consumed: usize) -> (usize, Option<Frame<'static>>) {
        self.state = State::Failed;
        self.line = Vec::new();
        (consumed, Some(Frame::TooLong))
    }

    /// Completes a line whose content runs from `seg` to `content_end` in `input` (after anything
    /// saved from earlier reads); `next` is the first byte after the line end.
    fn complete<'a>(
        &'a mut self,
        input: &'a [u8],
        seg: usize,
        content_end: usize,
        next: usize,
    ) -> (usize, Option<Frame<'a>>) {
        self.state = State::Data;
        self.received = 0;
        let content = &input[seg.min(content_end)..content_end];
        if self.line.is_empty() {
            return (next, Some(Frame::Line(content)));
        }
        self.line.extend_from_slice(content);
        self.returned = true;
        (next, Some(Frame::Line(&self.line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one after the other and collects every frame, owned.
    fn frames(max_line: usize, chunks: &[&[u8]]) -> Vec<Owned> {
        let mut decoder = Decoder::new(max_line);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while !input.is_empty() {
                let (used, frame) = decoder.decode(input);
                if let Some(frame) = frame {
                    out.push(Owned::from(frame));
                }
                input = &input[used..];
            }
        }
        out
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Line(Vec<u8>),
        Telnet(TelnetCommand),
        TooLong,
    }

    impl From<Frame<'_>> for Owned {
        fn from(f: Frame<'_>) -> Self {
            match f {
                Frame::Line(l) => Owned::Line(l.to_vec()),
                Frame::Telnet(t) => Owned::Telnet(t),
                Frame::TooLong => Owned::TooLong,
            }
        }
    }

    fn line(s: &str) -> Owned {
        Owned::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn accepts_crlf_lf_and_cr_nul() {
        assert_eq!(
            frames(1024, &[b"TIME\r\nTIME\nTIME\r\0"]),
            vec![line("TIME"), line("TIME"), line("TIME")]
        );
    }

    #[test]
    fn crlf_split_across_reads_is_one_line() {
        assert_eq!(frames(1024, &[b"TIME\r", b"\n"]), vec![line("TIME")]);
        assert_eq!(frames(1024, &[b"TIME\r", b"\0"]), vec![line("TIME")]);
        assert_eq!(
            frames(1024, &[b"TI", b"ME", b"\r", b"\n"]),
            vec![line("TIME")]
        );
    }

    #[test]
    fn one_byte_per_read() {
        let chunks: Vec<&[u8]> = b"TIME\r\nQUIT\r\n".chunks(1).collect();
        assert_eq!(frames(1024, &chunks), vec![line("TIME"), line("QUIT")]);
    }

    #[test]
    fn a_cr_followed_by_other_bytes_is_data() {
        assert_eq!(frames(1024, &[b"TI\rME\n"]), vec![line("TI\rME")]);
        assert_eq!(frames(1024, &[b"TI\r", b"ME\n"]), vec![line("TI\rME")]);
        assert_eq!(frames(1024, &[b"\r\r\n"]), vec![line("\r")]);
    }

    #[test]
    fn telnet_negotiation_is_removed_and_reported() {
        let got = frames(1024, &[b"\xff\xfb\x1f\xff\xfd\x03TIME\r\n"]);
        assert_eq!(
            got,
            vec![
                Owned::Telnet(TelnetCommand::Negotiate {
                    verb: telnet::WILL,
                    option: 0x1f
                }),
                Owned::Telnet(TelnetCommand::Negotiate {
                    verb: telnet::DO,
                    option: 3
                }),
                line("TIME"),
            ]
        );
    }

    #[test]
    fn telnet_commands_split_across_reads() {
        let got = frames(1024, &[b"TI\xff", b"\xfd", b"\x06ME\r\n"]);
        assert_eq!(
            got,
            vec![
                Owned::Telnet(TelnetCommand::Negotiate {
                    verb: telnet::DO,
                    option: telnet::TIMING_MARK
                }),
                line("TIME"),
            ]
        );
    }

    #[test]
    fn ctrl_c_discards_the_partial_line() {
        let got = frames(1024, &[b"TI\xff\xf4\xff\xfd\x06TIME\r\n"]);
        assert_eq!(
            got,
            vec![
                Owned::Telnet(TelnetCommand::Interrupt),
                Owned::Telnet(TelnetCommand::Negotiate {
                    verb: telnet::DO,
                    option: telnet::TIMING_MARK
                }),
                line("TIME"),
            ]
        );
    }

    #[test]
    fn iac_iac_is_a_literal_255() {
        assert_eq!(
            frames(1024, &[b"\xff\xff\r\n"]),
            vec![Owned::Line(vec![255])]
        );
    }

    #[test]
    fn subnegotiation_is_discarded() {
        assert_eq!(
            frames(1024, &[b"\xff\xfa\x18\x00xterm\xff\xf0TIME\n"]),
            vec![line("TIME")]
        );
    }

    #[test]
    fn erase_character_and_erase_line() {
        assert_eq!(frames(1024, &[b"TIMX\xff\xf7E\n"]), vec![line("TIME")]);
        assert_eq!(frames(1024, &[b"junk\xff\xf8TIME\n"]), vec![line("TIME")]);
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_accepted() {
        let mut exact = vec![b'x'; 16];
        exact.extend_from_slice(b"\r\n");
        assert_eq!(frames(16, &[&exact]), vec![Owned::Line(vec![b'x'; 16])]);
        let mut split = vec![b'x'; 16];
        split.push(b'\r');
        assert_eq!(
            frames(16, &[&split, b"\n"]),
            vec![Owned::Line(vec![b'x'; 16])]
        );
    }

    #[test]
    fn one_byte_over_is_too_long_without_waiting_for_the_line_end() {
        assert_eq!(frames(16, &[&[b'x'; 17]]), vec![Owned::TooLong]);
        assert_eq!(frames(16, &[&[b'x'; 10], &[b'x'; 7]]), vec![Owned::TooLong]);
        let mut with_end = vec![b'x'; 17];
        with_end.extend_from_slice(b"\r\n");
        assert_eq!(frames(16, &[&with_end]), vec![Owned::TooLong]);
    }

    #[test]
    fn lines_before_an_overlong_one_are_still_returned() {
        let mut input = b"TIME\r\n".to_vec();
        input.extend_from_slice(&[b'y'; 40]);
        assert_eq!(frames(16, &[&input]), vec![line("TIME"), Owned::TooLong]);
    }

    #[test]
    fn endless_subnegotiation_hits_the_cap() {
        let mut input = b"\xff\xfa\x18".to_vec();
        input.extend_from_slice(&[b'z'; 100]);
        assert_eq!(frames(16, &[&input]), vec![Owned::TooLong]);
    }

    /// Telnet No Operation: a command the decoder removes without reporting it.
    const NOP: u8 = 241;

    #[test]
    fn abort_output_and_end_of_file_are_reported() {
        assert_eq!(
            frames(1024, &[&[IAC, telnet::AO, IAC, telnet::EOF]]),
            vec![
                Owned::Telnet(TelnetCommand::AbortOutput),
                Owned::Telnet(TelnetCommand::EndOfFile),
            ]
        );
    }

    #[test]
    fn telnet_commands_inside_a_line_count_toward_the_cap() {
        /// `TI`, `command` `n` times, `ME` CR LF.
        fn time_around(command: &[u8], n: usize) -> Vec<u8> {
            [&b"TI"[..], &command.repeat(n), b"ME\r\n"].concat()
        }
        // 2 + 400 × 2 + 2 = 804 bytes received for the line; 2 + 600 × 2 + 2 = 1,204.
        let nop = [IAC, NOP];
        assert_eq!(frames(1024, &[&time_around(&nop, 400)]), vec![line("TIME")]);
        assert_eq!(
            frames(1024, &[&time_around(&nop, 600)]),
            vec![Owned::TooLong]
        );
        // 2 + 4 × 3 + 2 = 16 bytes, the cap; one more negotiation makes 19.
        let will_echo = [IAC, telnet::WILL, 1];
        let at_cap = frames(16, &[&time_around(&will_echo, 4)]);
        assert_eq!(at_cap.last(), Some(&line("TIME")));
        let over = frames(16, &[&time_around(&will_echo, 5)]);
        assert_eq!(over.last(), Some(&Owned::TooLong));
    }

    #[test]
    fn a_subnegotiation_of_exactly_max_bytes_is_accepted() {
        // IAC SB, 12 bytes, IAC SE: 16 bytes.
        let mut input = [IAC, telnet::SB].to_vec();
        input.extend_from_slice(&[b'z'; 12]);
        input.extend_from_slice(&[IAC, telnet::SE]);
        input.extend_from_slice(b"TIME\r\n");
        assert_eq!(frames(16, &[&input]), vec![line("TIME")]);
    }

    #[test]
    fn telnet_commands_between_lines_do_not_count_toward_the_next() {
        let mut input = [IAC, NOP].repeat(20);
        input.extend_from_slice(b"TIME\r\n");
        assert_eq!(frames(16, &[&input]), vec![line("TIME")]);
    }

    #[test]
    fn telnet_negotiation_alone_is_not_a_partial_line() {
        let mut d = Decoder::new(1024);
        let input = b"\xff\xfb\x1f";
        let (used, frame) = d.decode(input);
        assert_eq!(used, 3);
        assert!(frame.is_some());
        assert!(!d.in_line());
        assert_eq!(d.finish(), Remainder::Nothing);
    }

    #[test]
    fn remainder_at_end_of_input() {
        let mut d = Decoder::new(1024);
        assert_eq!(d.decode(b"TIME"), (4, None));
        assert!(d.in_line());
        assert_eq!(d.finish(), Remainder::PartialLine);

        let mut blank = Decoder::new(1024);
        assert_eq!(blank.decode(b"  \t"), (3, None));
        assert_eq!(blank.finish(), Remainder::Nothing);

        let mut cr = Decoder::new(1024);
        assert_eq!(cr.decode(b"TIME\r"), (5, None));
        assert_eq!(cr.finish(), Remainder::PartialLine);
    }

    #[test]
    fn buffered_is_the_partial_line_held_between_reads() {
        let mut d = Decoder::new(1024);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.decode(b"TI"), (2, None));
        assert_eq!(d.buffered(), 2);
        assert_eq!(d.decode(b"ME\r\n"), (4, Some(Frame::Line(b"TIME"))));
        assert_eq!(d.buffered(), 0, "a returned line is no longer held");
    }

    #[test]
    fn never_holds_more_than_max_line() {
        let mut d = Decoder::new(1024);
        let chunk = [b'a'; 100];
        for _ in 0..10 {
            let _ = d.decode(&chunk);
            assert!(d.buffered() <= 1024);
        }
        assert_eq!(d.decode(&chunk).1, Some(Frame::TooLong));
        assert_eq!(d.buffered(), 0);
    }
}
