//! The jam protocol without I/O: a request line in, reply bytes out.
//!
//! A request is one line (its line end already removed by [`crate::codec`]). Command words are ASCII
//! case-insensitive and surrounding spaces and tabs are ignored:
//!
//! | request            | reply                                                   |
//! |--------------------|---------------------------------------------------------|
//! | `TIME`             | `JAM hh:mm:ss` CR LF (14 bytes)                          |
//! | `QUIT`, or Ctrl-D  | none; the server closes the session                      |
//! | blank line         | none                                                    |
//! | `TIME now`         | `ERR TIME takes no arguments` CR LF                      |
//! | `GET / HTTP/1.1`   | `ERR this is a jam time server, not HTTP …` CR LF, close |
//! | anything else      | `ERR unknown command "<word>" (try TIME or QUIT)` CR LF  |

use std::fmt::Write as _;

use crate::clock::TimeOfDay;

/// Length in bytes of a `JAM hh:mm:ss\r\n` reply.
const TIME_REPLY_LEN: usize = 14;

/// Longest echo of a client's word inside an error line, in characters.
pub const MAX_ECHO_CHARS: usize = 32;

/// A request decoded from one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// A command of [`COMMANDS`] without arguments (`TIME`, `QUIT` or Ctrl-D).
    Command(Command),
    /// An empty or all-blank line: ignored, no reply.
    Blank,
    /// A known command followed by arguments it does not take.
    ExtraArguments(Command),
    /// An HTTP request line (`GET / HTTP/1.1`): a browser or scanner on the wrong port.
    Http,
    /// Any other command word, as received (it may hold any bytes but space and tab).
    Unknown(&'a [u8]),
}

/// The commands the protocol knows, in the order of [`COMMANDS`] (`COMMANDS[c as usize]` is
/// `c`'s entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `TIME`
    Time,
    /// `QUIT`
    Quit,
}

/// What a command does in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reply with the local time: `JAM hh:mm:ss` CR LF.
    TimeReply,
    /// End the session without a reply: the server closes.
    EndSession,
}

/// One command, all of it in one entry: how it is spelled, what it does, its label in the
/// metrics and its line in help texts. Adding a command is one entry here, one [`Command`]
/// variant, and (for a new kind of reply) one [`Effect`] with its arm in the responder.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// The command.
    pub command: Command,
    /// Its canonical spelling, matched without regard to ASCII case.
    pub name: &'static str,
    /// Other spellings, matched exactly (Ctrl-D, which telnet sends in line mode, for `QUIT`).
    pub aliases: &'static [&'static [u8]],
    /// What it does.
    pub effect: Effect,
    /// The `command` label of `jamd_requests_total`.
    pub label: &'static str,
    /// One line for help texts.
    pub help: &'static str,
}

/// Every command, in [`Command`]'s order.
pub(crate) const COMMANDS: [CommandSpec; 2] = [
    CommandSpec {
        command: Command::Time,
        name: "TIME",
        aliases: &[],
        effect: Effect::TimeReply,
        label: "TIME",
        help: "ask the time: the server answers JAM hh:mm:ss",
    },
    CommandSpec {
        command: Command::Quit,
        name: "QUIT",
        aliases: &[&[CTRL_D]],
        effect: Effect::EndSession,
        label: "QUIT",
        help: "end the session: the server closes the connection",
    },
];

/// A request as the logs show it: the command word, or what was received, escaped (as the error
/// line echoes it), so that a log reader sees text, never a list of byte values.
impl std::fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Command(command) => f.write_str(command.name()),
            Request::Blank => f.write_str("(blank line)"),
            Request::ExtraArguments(command) => write!(f, "{} with arguments", command.name()),
            Request::Http => f.write_str("(HTTP request line)"),
            Request::Unknown(word) => {
                let mut text = String::new();
                escape_word(word, &mut text);
                f.write_str(&text)
            }
        }
    }
}

impl Command {
    /// The command's entry in [`COMMANDS`].
    pub fn spec(self) -> &'static CommandSpec {
        &COMMANDS[self as usize]
    }

    /// The command's canonical spelling.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

/// Every command's name, as a list people read: `TIME or QUIT` (`A, B or C` for three).
pub fn command_names() -> String {
    let mut text = Vec::new();
    push_command_names(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// Appends [`command_names`] to `out` (the error line's hint, without allocating).
fn push_command_names(out: &mut Vec<u8>) {
    for (i, spec) in COMMANDS.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(if i + 1 == COMMANDS.len() {
                b" or "
            } else {
                b", "
            });
        }
        out.extend_from_slice(spec.name.as_bytes());
    }
}

/// Ctrl-D: a telnet user's "end of input", which telnet sends as a byte in line mode.
const CTRL_D: u8 = 0x04;

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_blanks(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_blank(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_blank(*last) {
            break;
        }
        s = rest;
    }
    s
}

impl<'a> Request<'a> {
    /// Parses one request line (without its line end).
    pub fn parse(line: &'a [u8]) -> Request<'a> {
        let line = trim_blanks(line);
        if line.is_empty() {
            return Request::Blank;
        }
        let (word, rest) = match line.iter().position(|&b| is_blank(b)) {
            Some(i) => (&line[..i], trim_blanks(&line[i..])),
            None => (line, &line[line.len()..]),
        };
        let found = COMMANDS.iter().find(|spec| {
            word.eq_ignore_ascii_case(spec.name.as_bytes()) || spec.aliases.contains(&word)
        });
        match found {
            Some(spec) if rest.is_empty() => Request::Command(spec.command),
            Some(spec) => Request::ExtraArguments(spec.command),
            None if is_http_request_line(word, rest) => Request::Http,
            None => Request::Unknown(word),
        }
    }
}

/// `METHOD target HTTP/x`: an upper-case method and a protocol version at the end.
fn is_http_request_line(word: &[u8], rest: &[u8]) -> bool {
    !word.is_empty()
        && word.len() <= 16
        && word.iter().all(u8::is_ascii_uppercase)
        && rest
            .rsplit(|&b| is_blank(b))
            .next()
            .is_some_and(|last| last.starts_with(b"HTTP/"))
}

/// Builds the `JAM hh:mm:ss\r\n` reply for a time of day.
pub fn time_reply(time: TimeOfDay) -> [u8; TIME_REPLY_LEN] {
    let mut reply = *b"JAM 00:00:00\r\n";
    reply[4..12].copy_from_slice(&time.hh_mm_ss());
    reply
}

/// An error line the server sends; each variant is one line of text after `ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply<'a> {
    /// The command word is not `TIME` or `QUIT`; the raw word is echoed, escaped and truncated.
    UnknownCommand(&'a [u8]),
    /// A known command was given arguments.
    ExtraArguments(Command),
    /// An HTTP request arrived; the server closes after this line.
    NotHttp,
    /// A line exceeded the configured maximum length; the server closes after this line.
    LineTooLong {
        /// The configured maximum, in bytes.
        max: usize,
    },
    /// The client ended its input in the middle of a line.
    MissingLineEnd,
    /// No complete request arrived within the idle timeout.
    IdleTimeout,
    /// A partial line did not complete within the line timeout.
    LineTimeout {
        /// Bytes of the line received.
        held: usize,
        /// The line timeout.
        after: std::time::Duration,
    },
    /// The server is at its connection limit.
    ServerBusy,
    /// The client's address has as many connections open as one address may.
    TooManyFromAddress {
        /// The per-address limit.
        max: usize,
    },
}

/// What kind of error line was sent: one value per [`ErrorReply`] variant, without its data.
/// The server counts error lines by kind (the `kind` label of `jamd_error_replies_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // one per ErrorReply variant, documented there
pub enum ErrorKind {
    UnknownCommand,
    ExtraArguments,
    NotHttp,
    LineTooLong,
    MissingLineEnd,
    IdleTimeout,
    LineTimeout,
    ServerBusy,
    PerIp,
}

impl ErrorKind {
    /// Every kind, in declaration order (`ALL[k as usize] == k`).
    pub(crate) const ALL: [ErrorKind; 9] = [
        ErrorKind::UnknownCommand,
        ErrorKind::ExtraArguments,
        ErrorKind::NotHttp,
        ErrorKind::LineTooLong,
        ErrorKind::MissingLineEnd,
        ErrorKind::IdleTimeout,
        ErrorKind::LineTimeout,
        ErrorKind::ServerBusy,
        ErrorKind::PerIp,
    ];

    /// The kind's name in metrics.
    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::UnknownCommand => "unknown_command",
            ErrorKind::ExtraArguments => "extra_arguments",
            ErrorKind::NotHttp => "not_http",
            ErrorKind::LineTooLong => "line_too_long",
            ErrorKind::MissingLineEnd => "missing_line_end",
            ErrorKind::IdleTimeout => "idle_timeout",
            ErrorKind::LineTimeout => "line_timeout",
            ErrorKind::ServerBusy => "server_busy",
            ErrorKind::PerIp => "per_ip",
        }
    }
}

impl ErrorReply<'_> {
    /// Which kind of error line this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ErrorReply::UnknownCommand(_) => ErrorKind::UnknownCommand,
            ErrorReply::ExtraArguments(_) => ErrorKind::ExtraArguments,
            ErrorReply::NotHttp => ErrorKind::NotHttp,
            ErrorReply::LineTooLong { .. } => ErrorKind::LineTooLong,
            ErrorReply::MissingLineEnd => ErrorKind::MissingLineEnd,
            ErrorReply::IdleTimeout => ErrorKind::IdleTimeout,
            ErrorReply::LineTimeout { .. } => ErrorKind::LineTimeout,
            ErrorReply::ServerBusy => ErrorKind::ServerBusy,
            ErrorReply::TooManyFromAddress { .. } => ErrorKind::PerIp,
        }
    }

    /// Appends the full error line, `ERR …\r\n`, to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"ERR ");
        match *self {
            ErrorReply::UnknownCommand(word) => {
                out.extend_from_slice(b"unknown command \"");
                let mut echo = String::new();
                escape_word(word, &mut echo);
                out.extend_from_slice(echo.as_bytes());
                out.extend_from_slice(b"\" (try ");
                push_command_names(out);
                out.push(b')');
            }
            ErrorReply::ExtraArguments(command) => {
                out.extend_from_slice(command.name().as_bytes());
                out.extend_from_slice(b" takes no arguments");
            }
            ErrorReply::NotHttp => {
                out.extend_from_slice(b"this is a jam time server, not HTTP (send TIME or QUIT)");
            }
            ErrorReply::LineTooLong { max } => {
                out.extend_from_slice(format!("line too long (max {max} bytes)").as_bytes());
            }
            ErrorReply::MissingLineEnd => out.extend_from_slice(b"request must end with CR LF"),
            ErrorReply::IdleTimeout => out.extend_from_slice(b"idle timeout"),
            // Names what arrived and what is missing: the course's first client (an echo client)
            // sends text with no line end and would otherwise learn nothing from this line.
            ErrorReply::LineTimeout { held, after } => out.extend_from_slice(
                format!(
                    "line timeout: {held} byte{} and no CR LF in {}; end each request with CR LF \
                     (try TIME)",
                    if held == 1 { "" } else { "s" },
                    crate::config::format_duration(after)
                )
                .as_bytes(),
            ),
            ErrorReply::ServerBusy => out.extend_from_slice(b"server busy"),
            ErrorReply::TooManyFromAddress { max } => out.extend_from_slice(
                format!("too many connections from your address (max {max})").as_bytes(),
            ),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The error line as bytes, `ERR …\r\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Writes `word` in a form that is safe to echo: printable UTF-8 as is, control characters,
/// `"`, `\` and invalid UTF-8 as escapes (`\x00`, `\"`, `\\`, `\xC3`), at most [`MAX_ECHO_CHARS`]
/// characters in all, ending in `...` when cut.
pub(crate) fn escape_word(word: &[u8], out: &mut String) {
    let total: usize = tokens(word).map(|t| t.chars).sum();
    let budget = if total <= MAX_ECHO_CHARS {
        total
    } else {
        MAX_ECHO_CHARS - 3
    };
    let mut used = 0;
    for token in tokens(word) {
        if used + token.chars > budget {
            break;
        }
        used += token.chars;
        token.write(out);
    }
    if total > budget {
        out.push_str("...");
    }
}

/// One unit of an escaped echo: a character or a byte, with its width once escaped.
struct Token {
    kind: TokenKind,
    chars: usize,
}

enum TokenKind {
    Plain(char),
    Escaped(char),
    Byte(u8),
    Unicode(char),
}

impl Token {
    fn write(&self, out: &mut String) {
        match self.kind {
            TokenKind::Plain(c) => out.push(c),
            TokenKind::Escaped(c) => {
                out.push('\\');
                out.push(c);
            }
            TokenKind::Byte(b) => {
                let _ = write!(out, "\\x{b:02X}");
            }
            TokenKind::Unicode(c) => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
        }
    }
}

fn tokens(word: &[u8]) -> impl Iterator<Item = Token> + '_ {
    word.utf8_chunks().flat_map(|chunk| {
        let valid = chunk.valid().chars().map(|c| match c {
            '"' | '\\' => Token {
                kind: TokenKind::Escaped(c),
                chars: 2,
            },
            c if c.is_ascii_control() => Token {
                kind: TokenKind::Byte(c as u8),
                chars: 4,
            },
            c if c.is_control() => Token {
                kind: TokenKind::Unicode(c),
                chars: format!("{:X}", c as u32).len() + 4,
            },
            c => Token {
                kind: TokenKind::Plain(c),
                chars: 1,
            },
        });
        let invalid = chunk.invalid().iter().map(|&b| Token {
            kind: TokenKind::Byte(b),
            chars: 4,
        });
        valid.chain(invalid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_line(reply: ErrorReply<'_>) -> String {
        String::from_utf8(reply.to_bytes()).expect("error lines are UTF-8")
    }

    #[test]
    fn the_command_table_is_in_command_order_and_every_spelling_parses() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(spec.command as usize, i, "{spec:?}");
            assert_eq!(spec.command.spec().name, spec.name);
            assert_eq!(
                Request::parse(spec.name.as_bytes()),
                Request::Command(spec.command)
            );
            let lower = spec.name.to_ascii_lowercase();
            assert_eq!(
                Request::parse(lower.as_bytes()),
                Request::Command(spec.command)
            );
            for alias in spec.aliases {
                assert_eq!(Request::parse(alias), Request::Command(spec.command));
            }
            assert!(!spec.label.is_empty() && !spec.help.is_empty());
        }
        assert_eq!(command_names(), "TIME or QUIT");
        assert_eq!(Command::Time.spec().effect, Effect::TimeReply);
        assert_eq!(Command::Quit.spec().effect, Effect::EndSession);
    }

    #[test]
    fn time_and_quit_are_case_insensitive_and_trimmed() {
        for line in [
            "TIME", "time", "TiMe", "  TIME", "TIME  ", "\tTIME\t", " tImE \t",
        ] {
            assert_eq!(
                Request::parse(line.as_bytes()),
                Request::Command(Command::Time),
                "{line:?}"
            );
        }
        for line in ["QUIT", "quit", " Quit\t"] {
            assert_eq!(
                Request::parse(line.as_bytes()),
                Request::Command(Command::Quit),
                "{line:?}"
            );
        }
    }

    #[test]
    fn blank_lines_are_ignored() {
        for line in ["", " ", "\t\t ", "   "] {
            assert_eq!(Request::parse(line.as_bytes()), Request::Blank, "{line:?}");
        }
    }

    #[test]
    fn a_word_that_starts_with_time_is_not_time() {
        assert_eq!(Request::parse(b"TIMEX"), Request::Unknown(b"TIMEX"));
        assert_eq!(Request::parse(b"TIMES"), Request::Unknown(b"TIMES"));
        assert_eq!(Request::parse(b"TIM"), Request::Unknown(b"TIM"));
    }

    #[test]
    fn arguments_to_time_or_quit_are_an_error() {
        assert_eq!(
            Request::parse(b"TIME now"),
            Request::ExtraArguments(Command::Time)
        );
        assert_eq!(
            Request::parse(b"quit\tplease "),
            Request::ExtraArguments(Command::Quit)
        );
    }

    #[test]
    fn ctrl_d_alone_on_a_line_quits() {
        assert_eq!(Request::parse(b"\x04"), Request::Command(Command::Quit));
        assert_eq!(Request::parse(b"\x04x"), Request::Unknown(b"\x04x"));
    }

    #[test]
    fn http_request_lines_are_recognised() {
        assert_eq!(Request::parse(b"GET / HTTP/1.1"), Request::Http);
        assert_eq!(Request::parse(b"POST /x HTTP/1.0"), Request::Http);
        assert_eq!(Request::parse(b"GET /"), Request::Unknown(b"GET"));
        assert_eq!(Request::parse(b"get / HTTP/1.1"), Request::Unknown(b"get"));
    }

    #[test]
    fn a_request_shows_in_the_logs_as_text() {
        for (request, text) in [
            (Request::Command(Command::Time), "TIME"),
            (Request::Command(Command::Quit), "QUIT"),
            (Request::Blank, "(blank line)"),
            (
                Request::ExtraArguments(Command::Quit),
                "QUIT with arguments",
            ),
            (Request::Http, "(HTTP request line)"),
            (Request::Unknown(b"he\x01llo"), "he\\x01llo"),
        ] {
            assert_eq!(request.to_string(), text);
        }
    }

    #[test]
    fn time_reply_is_fourteen_bytes() {
        let reply = time_reply(TimeOfDay::new(8, 5, 9).expect("valid"));
        assert_eq!(&reply, b"JAM 08:05:09\r\n");
        assert_eq!(reply.len(), TIME_REPLY_LEN);
    }

    #[test]
    fn each_error_line_is_counted_under_its_own_kind() {
        let every_reply = [
            (ErrorReply::UnknownCommand(b"X"), "unknown_command"),
            (ErrorReply::ExtraArguments(Command::Quit), "extra_arguments"),
            (ErrorReply::NotHttp, "not_http"),
            (ErrorReply::LineTooLong { max: 8 }, "line_too_long"),
            (ErrorReply::MissingLineEnd, "missing_line_end"),
            (ErrorReply::IdleTimeout, "idle_timeout"),
            (
                ErrorReply::LineTimeout {
                    held: 1,
                    after: std::time::Duration::from_secs(1),
                },
                "line_timeout",
            ),
            (ErrorReply::ServerBusy, "server_busy"),
            (ErrorReply::TooManyFromAddress { max: 3 }, "per_ip"),
        ];
        assert_eq!(every_reply.len(), ErrorKind::ALL.len());
        for (i, (reply, label)) in every_reply.iter().enumerate() {
            let kind = reply.kind();
            assert_eq!(kind.label(), *label, "{reply:?}");
            assert_eq!(ErrorKind::ALL[kind as usize], kind, "{reply:?}");
            assert_eq!(
                kind as usize, i,
                "{reply:?}: ALL lists kinds in declaration order"
            );
        }
    }

    #[test]
    fn error_lines_match_the_protocol() {
        assert_eq!(
            error_line(ErrorReply::UnknownCommand(b"HELLO")),
            "ERR unknown command \"HELLO\" (try TIME or QUIT)\r\n"
        );
        assert_eq!(
            error_line(ErrorReply::ExtraArguments(Command::Time)),
            "ERR TIME takes no arguments\r\n"
        );
        assert_eq!(
            error_line(ErrorReply::LineTooLong { max: 1024 }),
            "ERR line too long (max 1024 bytes)\r\n"
        );
        assert_eq!(
            error_line(ErrorReply::MissingLineEnd),
            "ERR request must end with CR LF\r\n"
        );
        assert_eq!(error_line(ErrorReply::IdleTimeout), "ERR idle timeout\r\n");
        assert_eq!(
            error_line(ErrorReply::LineTimeout {
                held: 46,
                after: std::time::Duration::from_secs(30)
            }),
            "ERR line timeout: 46 bytes and no CR LF in 30s; end each request with CR LF (try \
             TIME)\r\n"
        );
        assert_eq!(
            error_line(ErrorReply::LineTimeout {
                held: 1,
                after: std::time::Duration::from_millis(300)
            }),
            "ERR line timeout: 1 byte and no CR LF in 300ms; end each request with CR LF (try \
             TIME)\r\n"
        );
        assert_eq!(error_line(ErrorReply::ServerBusy), "ERR server busy\r\n");
        assert_eq!(
            error_line(ErrorReply::TooManyFromAddress { max: 25 }),
            "ERR too many connections from your address (max 25)\r\n"
        );
    }

    fn escaped(word: &[u8]) -> String {
        let mut s = String::new();
        escape_word(word, &mut s);
        s
    }

    #[test]
    fn echo_escapes_control_bytes_and_invalid_utf8() {
        assert_eq!(escaped(b"TI\x00ME"), "TI\\x00ME");
        assert_eq!(escaped(b"\x1b[31m"), "\\x1B[31m");
        assert_eq!(escaped(b"\xC3\x28"), "\\xC3(");
        assert_eq!(escaped(b"\x80"), "\\x80");
        assert_eq!(escaped("jam\u{85}".as_bytes()), "jam\\u{85}");
        assert_eq!(escaped(b"say\"hi\\"), "say\\\"hi\\\\");
        assert_eq!(escaped("waktu".as_bytes()), "waktu");
        assert_eq!(escaped("jämför".as_bytes()), "jämför");
    }

    #[test]
    fn an_escaped_character_counts_its_escape_toward_the_32() {
        // `\u{85}` is six characters: five fit, six are cut to four and `...`.
        let next_line = "\u{85}";
        assert_eq!(escaped(next_line.repeat(5).as_bytes()), "\\u{85}".repeat(5));
        assert_eq!(
            escaped(next_line.repeat(6).as_bytes()),
            format!("{}...", "\\u{85}".repeat(4))
        );
    }

    #[test]
    fn echo_is_truncated_to_32_characters() {
        let exact = "a".repeat(32);
        assert_eq!(escaped(exact.as_bytes()), exact);
        let long = escaped("b".repeat(1000).as_bytes());
        assert_eq!(long.chars().count(), 32);
        assert!(long.ends_with("..."));
        let controls = escaped(&[0u8; 100]);
        assert!(controls.chars().count() <= 32, "{controls}");
        assert!(controls.ends_with("..."));
        assert!(!controls.contains('\0'));
    }
}
