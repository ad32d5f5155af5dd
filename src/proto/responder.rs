//! What a session says, without I/O: the bytes a client sent in, the server's reply bytes out.
//!
//! [`Responder`] joins the framing ([`crate::codec`]) and the protocol ([`crate::protocol`]) and
//! answers in order, one clock read per batch. The connection feeds it whatever each read
//! returned; tests, benchmarks and fuzzers feed it bytes directly.

use std::{fmt, io};

use tracing::{Span, debug};

use crate::clock::TimeOfDaySource;
use crate::codec::{Decoder, Frame, IAC, Remainder, TelnetCommand, telnet};
use crate::protocol::{self, COMMANDS, Command, Effect, ErrorKind, ErrorReply, Request};

/// Why a connection ended: the protocol decides some (`QUIT`, a line too long, HTTP), the
/// connection the rest. The one name for a close, in the `connection closed` log line (as text)
/// and in `jamd_connections_closed_total` (as [`CloseReason::label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `QUIT` (or Ctrl-D, or telnet end-of-file).
    Quit,
    /// The client closed its side of the connection.
    ClientClosed,
    /// No complete request within the idle timeout.
    IdleTimeout,
    /// A partial line was not completed within the line timeout.
    LineTimeout,
    /// A line exceeded the maximum length (the error line was written).
    LineTooLong,
    /// The client stopped reading and pending replies made no progress within the write timeout.
    WriteTimeout,
    /// The client sent an HTTP request (the error line was written).
    NotHttp,
    /// The server is shutting down.
    Shutdown,
    /// The connection was reset or broken by the peer.
    Reset,
    /// Another I/O error.
    Error(io::ErrorKind),
    /// An RFC 868 or RFC 867 answer was sent: those services close after answering.
    Answered,
    /// The PROXY protocol header was missing or invalid.
    ProxyHeader,
    /// The client's address (named by a PROXY header) was at its connection limit.
    PerIp,
    /// A bug: handling the connection panicked. The connection is dropped; the others go on.
    Internal,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Error(kind) => write!(f, "i/o error: {kind}"),
            CloseReason::ClientClosed => f.write_str("client closed"),
            CloseReason::Reset => f.write_str("connection reset"),
            CloseReason::Internal => f.write_str("internal error"),
            reason => f.write_str(&reason.label().replace('_', " ")),
        }
    }
}

impl CloseReason {
    /// Every reason's name in metrics, in the order of [`CloseReason::index`].
    pub const LABELS: [&'static str; 14] = [
        "quit",
        "client_closed",
        "idle_timeout",
        "line_timeout",
        "line_too_long",
        "write_timeout",
        "http_request",
        "shutdown",
        "reset",
        "io_error",
        "answered",
        "proxy_header",
        "per_ip",
        "internal_error",
    ];

    /// This reason's place in [`CloseReason::LABELS`] (every I/O error shares one).
    pub fn index(self) -> usize {
        match self {
            CloseReason::Quit => 0,
            CloseReason::ClientClosed => 1,
            CloseReason::IdleTimeout => 2,
            CloseReason::LineTimeout => 3,
            CloseReason::LineTooLong => 4,
            CloseReason::WriteTimeout => 5,
            CloseReason::NotHttp => 6,
            CloseReason::Shutdown => 7,
            CloseReason::Reset => 8,
            CloseReason::Error(_) => 9,
            CloseReason::Answered => 10,
            CloseReason::ProxyHeader => 11,
            CloseReason::PerIp => 12,
            CloseReason::Internal => 13,
        }
    }

    /// The reason's name in metrics.
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The reason a failed read or write gives.
    pub(crate) fn from_error(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => CloseReason::Reset,
            kind => CloseReason::Error(kind),
        }
    }

    /// Whether the server still owes the client its pending output and an orderly close.
    pub(crate) fn closes_gracefully(self) -> bool {
        !matches!(
            self,
            CloseReason::WriteTimeout
                | CloseReason::Reset
                | CloseReason::Error(_)
                | CloseReason::Internal
        )
    }
}

/// What one call to [`Responder::respond`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Bytes of input used; the rest must be offered again once `out` has room.
    pub used: usize,
    /// Whether at least one line was completed (a request, blank or not): the line timer stops.
    pub completed_line: bool,
    /// Whether at least one request (a line that is not blank) was completed: the idle clock
    /// starts again. A blank line or telnet negotiation keeps no one's session alive.
    pub requested: bool,
    /// Set when the session must end after sending `out`.
    pub end: Option<CloseReason>,
}

/// What a responder answered since its tally was last taken (for metrics). The counters are
/// 32 bits to keep a session small: the server takes the tally at least once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests by command (`commands[command as usize]`; telnet end-of-file counts as `QUIT`).
    pub commands: [u32; COMMANDS.len()],
    /// Requests answered with an error line (unknown, extra arguments, HTTP).
    pub other: u32,
    /// Error lines sent, by [`ErrorKind`] (`errors[kind as usize]`).
    pub errors: [u32; ErrorKind::ALL.len()],
}

impl Tally {
    /// Counts an error line sent.
    fn error(&mut self, reply: &ErrorReply<'_>) {
        self.errors[reply.kind() as usize] += 1;
    }
}

/// A session's protocol state: the partial line and the request count.
#[derive(Debug)]
pub struct Responder {
    decoder: Decoder,
    requests: u64,
    tally: Tally,
    span: Span,
}

impl Responder {
    /// A responder for lines of at most `max_line` bytes; per-request debug logs go to `span`.
    pub fn new(max_line: usize, span: Span) -> Self {
        Responder {
            decoder: Decoder::new(max_line),
            requests: 0,
            tally: Tally::default(),
            span,
        }
    }

    /// Requests answered so far (blank lines do not count).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// What was answered since the last call, resetting the tally.
    pub(crate) fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Whether part of a line has been received but not completed.
    pub(crate) fn in_line(&self) -> bool {
        self.decoder.in_line()
    }

    /// Bytes of the unfinished line held between reads (what a line timeout reports).
    pub fn held(&self) -> usize {
        self.decoder.buffered()
    }

    /// Answers the complete requests in `input`, appending replies to `out`. Stops once `out`
    /// holds `max_output` bytes or more (the caller offers the unused input again later) or after a
    /// request that ends the session (the rest of the input is to be ignored).
    pub fn respond(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        clock: &impl TimeOfDaySource,
        max_output: usize,
    ) -> Batch {
        // One clock read per batch: every TIME in it gets the same reply.
        let mut time_reply = None;
        let mut completed_line = false;
        let mut requested = false;
        let mut end = None;
        let span = &self.span;
        let mut rest = input;
        // `TIME` in upper case with CR LF (or LF) at a line start, with nothing pending, is what
        // clients send almost always: it is answered without the general decoder and parser,
        // which would reach the same answer (the property tests compare any split of the input,
        // where this path is taken, with byte-by-byte input, where it is not).
        let fast = self.decoder.max_line() >= 4;
        while !rest.is_empty() && out.len() < max_output && end.is_none() {
            if fast && rest.starts_with(b"TIME") && self.decoder.at_line_start() {
                let line_end = match rest.get(4..6) {
                    Some(b"\r\n") => Some(6),
                    Some([b'\n', _]) => Some(5),
                    None if rest.get(4) == Some(&b'\n') => Some(5),
                    _ => None,
                };
                if let Some(len) = line_end {
                    rest = &rest[len..];
                    completed_line = true;
                    requested = true;
                    self.requests += 1;
                    self.tally.commands[Command::Time as usize] += 1;
                    debug!(parent: span, request = %Request::Command(Command::Time), "request");
                    out.extend_from_slice(
                        time_reply.get_or_insert_with(|| protocol::time_reply(clock.time_of_day())),
                    );
                    continue;
                }
            }
            let (used, frame) = self.decoder.decode(rest);
            rest = &rest[used..];
            let Some(frame) = frame else { continue };
            match frame {
                Frame::Line(line) => {
                    completed_line = true;
                    let request = Request::parse(line);
                    if request == Request::Blank {
                        continue;
                    }
                    requested = true;
                    self.requests += 1;
                    debug!(parent: span, request = %request, "request");
                    let tally = &mut self.tally;
                    match request {
                        Request::Command(command) => {
                            tally.commands[command as usize] += 1;
                            match command.spec().effect {
                                Effect::TimeReply => {
                                    out.extend_from_slice(time_reply.get_or_insert_with(|| {
                                        protocol::time_reply(clock.time_of_day())
                                    }))
                                }
                                Effect::EndSession => end = Some(CloseReason::Quit),
                            }
                        }
                        Request::ExtraArguments(command) => {
                            tally.other += 1;
                            let reply = ErrorReply::ExtraArguments(command);
                            tally.error(&reply);
                            reply.encode(out);
                        }
                        Request::Http => {
                            tally.other += 1;
                            tally.error(&ErrorReply::NotHttp);
                            ErrorReply::NotHttp.encode(out);
                            end = Some(CloseReason::NotHttp);
                        }
                        Request::Unknown(word) => {
                            tally.other += 1;
                            let reply = ErrorReply::UnknownCommand(word);
                            tally.error(&reply);
                            reply.encode(out);
                        }
                        Request::Blank => {}
                    }
                }
                Frame::Telnet(command) => match command {
                    // RFC 854: refuse every option. Refusing DO TIMING-MARK is what a telnet client
                    // waits for after Ctrl-C before it shows output again.
                    TelnetCommand::Negotiate {
                        verb: telnet::DO,
                        option,
                    } => out.extend_from_slice(&[IAC, telnet::WONT, option]),
                    TelnetCommand::Negotiate {
                        verb: telnet::WILL,
                        option,
                    } => out.extend_from_slice(&[IAC, telnet::DONT, option]),
                    TelnetCommand::EndOfFile => {
                        self.tally.commands[Command::Quit as usize] += 1;
                        end = Some(CloseReason::Quit);
                    }
                    TelnetCommand::Negotiate { .. }
                    | TelnetCommand::Interrupt
                    | TelnetCommand::AbortOutput => {}
                },
                Frame::TooLong => {
                    let reply = ErrorReply::LineTooLong {
                        max: self.decoder.max_line(),
                    };
                    self.tally.error(&reply);
                    reply.encode(out);
                    end = Some(CloseReason::LineTooLong);
                }
            }
        }
        Batch {
            used: input.len() - rest.len(),
            completed_line,
            requested,
            end,
        }
    }

    /// The client ended its input: appends `ERR request must end with CR LF` if it stopped in
    /// the middle of a request, and says whether it did.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        let partial = self.decoder.finish() == Remainder::PartialLine;
        if partial {
            self.tally.error(&ErrorReply::MissingLineEnd);
            ErrorReply::MissingLineEnd.encode(out);
        }
        partial
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{LocalClock, ManualClock, zone_by_name};

    fn clock() -> LocalClock {
        let at = "2026-01-01T08:05:09Z".parse().expect("timestamp");
        LocalClock::new(
            Arc::new(ManualClock::new(at)),
            zone_by_name("UTC").expect("zone"),
        )
    }

    fn respond_all(input: &[u8]) -> (Vec<u8>, Option<CloseReason>) {
        let mut r = Responder::new(1024, Span::none());
        let mut out = Vec::new();
        let batch = r.respond(input, &mut out, &clock(), usize::MAX);
        (out, batch.end)
    }

    /// Feeds `reads` to one responder one after the other, as a session does, and returns the
    /// replies.
    fn respond_reads(max_line: usize, reads: &[&[u8]]) -> String {
        let mut r = Responder::new(max_line, Span::none());
        let mut out = Vec::new();
        for read in reads {
            let batch = r.respond(read, &mut out, &clock(), usize::MAX);
            assert_eq!(batch.used, read.len());
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn time_that_continues_a_pending_line_cr_or_telnet_command_is_not_a_request_of_its_own() {
        // A CR not followed by LF or NUL is data: the line is `\rTIME`.
        assert_eq!(
            respond_reads(1024, &[b"\r", b"TIME\r\n"]),
            "ERR unknown command \"\\x0DTIME\" (try TIME or QUIT)\r\n"
        );
        assert_eq!(
            respond_reads(1024, &[b"TI", b"TIME\r\n"]),
            "ERR unknown command \"TITIME\" (try TIME or QUIT)\r\n"
        );
        // IAC `T` is a telnet command (unknown, so ignored): the line is `IME`.
        assert_eq!(
            respond_reads(1024, &[b"\xff", b"TIME\r\n"]),
            "ERR unknown command \"IME\" (try TIME or QUIT)\r\n"
        );
    }

    #[test]
    fn with_a_line_cap_under_four_bytes_time_is_too_long() {
        assert_eq!(
            respond_reads(3, &[b"TIME\r\n"]),
            "ERR line too long (max 3 bytes)\r\n"
        );
    }

    #[test]
    fn each_close_reason_has_one_metric_label_and_one_log_text() {
        let every_reason = [
            (CloseReason::Quit, "quit", "quit"),
            (CloseReason::ClientClosed, "client_closed", "client closed"),
            (CloseReason::IdleTimeout, "idle_timeout", "idle timeout"),
            (CloseReason::LineTimeout, "line_timeout", "line timeout"),
            (CloseReason::LineTooLong, "line_too_long", "line too long"),
            (CloseReason::WriteTimeout, "write_timeout", "write timeout"),
            (CloseReason::NotHttp, "http_request", "http request"),
            (CloseReason::Shutdown, "shutdown", "shutdown"),
            (CloseReason::Reset, "reset", "connection reset"),
            (
                CloseReason::Error(io::ErrorKind::TimedOut),
                "io_error",
                "i/o error: timed out",
            ),
            (CloseReason::Answered, "answered", "answered"),
            (CloseReason::ProxyHeader, "proxy_header", "proxy header"),
            (CloseReason::PerIp, "per_ip", "per ip"),
            (CloseReason::Internal, "internal_error", "internal error"),
        ];
        assert_eq!(every_reason.len(), CloseReason::LABELS.len());
        for (i, (reason, label, text)) in every_reason.into_iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
            assert_eq!(reason.label(), label);
            assert_eq!(reason.to_string(), text);
        }
    }

    #[test]
    fn only_a_broken_connection_skips_the_orderly_close() {
        assert!(CloseReason::Quit.closes_gracefully());
        assert!(CloseReason::IdleTimeout.closes_gracefully());
        assert!(!CloseReason::WriteTimeout.closes_gracefully());
        assert!(!CloseReason::Reset.closes_gracefully());
        assert!(!CloseReason::Error(io::ErrorKind::Other).closes_gracefully());
        assert!(!CloseReason::Internal.closes_gracefully());
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(CloseReason::from_error(&reset), CloseReason::Reset);
        let other = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            CloseReason::from_error(&other),
            CloseReason::Error(io::ErrorKind::TimedOut)
        );
    }

    #[test]
    fn tallies_what_it_answered() {
        let mut r = Responder::new(32, Span::none());
        let mut out = Vec::new();
        r.respond(
            b"TIME\r\ntime\r\nx\r\nTIME 1\r\n\r\nGET / HTTP/1.1\r\n",
            &mut out,
            &clock(),
            usize::MAX,
        );
        let tally = r.take_tally();
        let mut errors = [0; ErrorKind::ALL.len()];
        for kind in [
            ErrorKind::UnknownCommand,
            ErrorKind::ExtraArguments,
            ErrorKind::NotHttp,
        ] {
            errors[kind as usize] = 1;
        }
        assert_eq!(
            tally,
            Tally {
                commands: [2, 0],
                other: 3,
                errors,
            }
        );
        assert_eq!(r.requests(), 5, "a blank line is no request");
        assert_eq!(r.take_tally(), Tally::default(), "taking resets");
        let mut r = Responder::new(8, Span::none());
        r.respond(b"TIME", &mut out, &clock(), usize::MAX);
        r.finish(&mut out);
        r.respond(b"0123456789", &mut out, &clock(), usize::MAX);
        let tally = r.take_tally();
        let mut errors = [0; ErrorKind::ALL.len()];
        errors[ErrorKind::MissingLineEnd as usize] = 1;
        errors[ErrorKind::LineTooLong as usize] = 1;
        assert_eq!(tally.errors, errors);
    }

    #[test]
    fn answers_in_order_and_stops_at_quit() {
        let (out, end) = respond_all(b"TIME\r\nnope\r\n\r\nTIME now\nQUIT\r\nTIME\r\n");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "JAM 08:05:09\r\nERR unknown command \"nope\" (try TIME or QUIT)\r\nERR TIME takes no arguments\r\n"
        );
        assert_eq!(end, Some(CloseReason::Quit));
    }

    #[test]
    fn only_a_request_restarts_the_idle_clock_and_any_line_end_stops_the_line_timer() {
        let batch = |input: &[u8]| {
            let mut r = Responder::new(1024, Span::none());
            r.respond(input, &mut Vec::new(), &clock(), usize::MAX)
        };
        let blank = batch(b"\r\n\n\r\n");
        assert!(
            blank.completed_line && !blank.requested,
            "blank lines: {blank:?}"
        );
        let telnet = batch(&[IAC, telnet::DO, 1, IAC, telnet::WILL, 3]);
        assert!(
            !telnet.completed_line && !telnet.requested,
            "negotiation: {telnet:?}"
        );
        for request in [
            &b"TIME\r\n"[..],
            b"TIME\n",
            b"time\r\n",
            b"nope\r\n",
            b"\r\nTIME 1\r\n",
        ] {
            let b = batch(request);
            assert!(b.completed_line && b.requested, "{request:?}: {b:?}");
        }
        let partial = batch(b"TI");
        assert!(!partial.completed_line && !partial.requested);
    }

    #[test]
    fn in_line_while_a_request_waits_for_its_line_end() {
        let mut r = Responder::new(1024, Span::none());
        let mut out = Vec::new();
        assert!(!r.in_line());
        r.respond(b"TI", &mut out, &clock(), usize::MAX);
        assert!(r.in_line());
        assert_eq!(r.held(), 2, "what a line timeout reports");
        r.respond(b"ME\r\n", &mut out, &clock(), usize::MAX);
        assert!(!r.in_line());
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn telnet_end_of_file_ends_the_session_like_quit() {
        for quit in [&b"QUIT\r\n"[..], b"\xff\xec"] {
            let mut r = Responder::new(1024, Span::none());
            let mut out = Vec::new();
            let input = [b"TIME\r\n", quit, b"TIME\r\n"].concat();
            let batch = r.respond(&input, &mut out, &clock(), usize::MAX);
            assert_eq!(out, b"JAM 08:05:09\r\n");
            assert_eq!(batch.end, Some(CloseReason::Quit));
            assert_eq!(
                r.take_tally().commands[Command::Quit as usize],
                1,
                "{quit:?}"
            );
        }
    }

    #[test]
    fn stops_at_the_output_cap_and_resumes() {
        let mut r = Responder::new(1024, Span::none());
        let input = b"TIME\r\n".repeat(10);
        let mut out = Vec::new();
        let first = r.respond(&input, &mut out, &clock(), 28);
        assert_eq!(first.used, 12);
        assert_eq!(out.len(), 28);
        let second = r.respond(&input[first.used..], &mut out, &clock(), usize::MAX);
        assert_eq!(second.used, 48);
        assert_eq!(out.len(), 140);
        assert_eq!(r.requests(), 10);
    }

    #[test]
    fn refuses_telnet_options() {
        let (out, _) = respond_all(b"\xff\xfd\x06\xff\xfb\x01TIME\r\n");
        assert_eq!(out, b"\xff\xfc\x06\xff\xfe\x01JAM 08:05:09\r\n");
    }

    #[test]
    fn a_partial_request_at_end_of_input_gets_an_error() {
        let mut r = Responder::new(1024, Span::none());
        let mut out = Vec::new();
        r.respond(b"TIME", &mut out, &clock(), usize::MAX);
        assert!(r.finish(&mut out));
        assert_eq!(out, b"ERR request must end with CR LF\r\n");
    }
}
