//! What a server's answers mean, without I/O: the kind of answer the first `TIME` got, the cause
//! behind it and its fix in one sentence, and what a zone difference means when checker and
//! server share one clock. The cases gather the bytes; this module decides what they say, so each
//! rule is a unit test.

use super::display::{human, show, zone_text};
use super::model::ReplyKind;
use super::probe::{Got, READ_CAP};
use crate::reply::{Reply, TimeReply};
use std::time::Duration;

/// The program a banner line belongs to, if it is another protocol's greeting.
pub fn banner(line: &[u8]) -> Option<&'static str> {
    let starts = |p: &[u8]| line.starts_with(p);
    if starts(b"SSH-") {
        Some("an SSH server")
    } else if starts(b"220 ") || starts(b"220-") {
        Some("an FTP or SMTP server")
    } else if starts(b"+OK") {
        Some("a POP3 server")
    } else if starts(b"* OK") {
        Some("an IMAP server")
    } else if starts(b"RFB ") {
        Some("a VNC server")
    } else if starts(b"HTTP/") {
        Some("an HTTP server")
    } else {
        None
    }
}

/// Classifies the answer to the first request `sent`, given the bytes that came before it was
/// sent (a greeting, possibly empty).
pub fn classify(greeting: &[u8], answer: &Got, sent: &[u8]) -> ReplyKind {
    if let Some(who) = banner(greeting) {
        return if who == "an HTTP server" {
            ReplyKind::Http
        } else {
            ReplyKind::Banner(who)
        };
    }
    let line = match answer {
        Got::Line(line) => line,
        Got::Timeout => return ReplyKind::Nothing,
        Got::Closed => return ReplyKind::Closed,
        Got::Reset(_) => return ReplyKind::Reset,
        Got::Flood => return ReplyKind::Flood,
    };
    if matches!(Reply::parse(line), Reply::Time(_)) {
        return ReplyKind::Time;
    }
    let lower = line.to_ascii_lowercase();
    // Python's http.server answers a one-word request as HTTP/0.9: an HTML page, no status line.
    if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
        return ReplyKind::Http;
    }
    match banner(line) {
        Some("an HTTP server") => return ReplyKind::Http,
        Some(who) => return ReplyKind::Banner(who),
        None => {}
    }
    if line.as_slice() == sent || sent.starts_with(line) {
        return ReplyKind::Echo;
    }
    ReplyKind::Unrecognised
}

/// A form of the request sent on a fresh connection when `TIME` CR LF got no time, to find what
/// the server does recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `time` CR LF: the server compares with lower case.
    Lowercase,
    /// `TIME` and no line end: the server compares with the line end still attached.
    NoLineEnd,
    /// `TIME` LF: the server removes the LF but not the CR.
    LfOnly,
}

impl Variant {
    /// Every variant, in the order they are tried: those a line-reading server answers at once
    /// first, the one it waits on last.
    pub const ALL: [Variant; 3] = [Variant::Lowercase, Variant::LfOnly, Variant::NoLineEnd];

    /// The bytes sent.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Variant::Lowercase => b"time\r\n",
            Variant::NoLineEnd => b"TIME",
            Variant::LfOnly => b"TIME\n",
        }
    }

    /// What a server that answers this variant (and not `TIME` CR LF) does, and the fix.
    fn cause(self) -> &'static str {
        match self {
            Variant::Lowercase => {
                "it answers \"time\\r\\n\" in lower case: it compares the request with \"time\". \
                 The request is TIME in capitals: compare with \"TIME\""
            }
            Variant::NoLineEnd => {
                "it answers \"TIME\" sent without a line end: it compares the request with \
                 \"TIME\" while \"\\r\\n\" is still attached. Strip the line end first: \
                 data.decode().strip() == \"TIME\""
            }
            Variant::LfOnly => {
                "it answers \"TIME\\n\": it removes the LF but keeps the CR (\"TIME\\r\" is not \
                 \"TIME\"). Remove both: line.strip() or line.rstrip(\"\\r\\n\")"
            }
        }
    }
}

/// The cause and fix, in a sentence or two, for a first answer that is not a time. `recognised`
/// is the first [`Variant`] the server answered with a time, if any; `wait` the reply timeout.
pub fn explain_no_time(
    kind: ReplyKind,
    line: Option<&[u8]>,
    greeting: &[u8],
    recognised: Option<Variant>,
    wait: Duration,
) -> String {
    let got = line.map_or(String::new(), |l| format!("\"{}\"", show(l)));
    let sent = "sent \"TIME\\r\\n\"";
    if let Some(variant) = recognised {
        let before = match kind {
            ReplyKind::Nothing => format!("{sent} and got nothing within {}", human(wait)),
            _ if got.is_empty() => format!("{sent} and got no reply"),
            _ => format!("{sent} and got {got}, which is not a time"),
        };
        return format!("{before}; {}", variant.cause());
    }
    match kind {
        ReplyKind::Time => format!("{sent} and got a time {got}"),
        ReplyKind::Nothing => format!(
            "{sent} and got nothing within {}, nor for \"TIME\", \"TIME\\n\" or \"time\\r\\n\": \
             the server may wait for more data, or ignore a request it does not recognise. Print \
             repr(data) in your server to see what it receives, and answer every line",
            human(wait)
        ),
        ReplyKind::Closed => format!(
            "{sent} and the server closed the connection without a reply: the client's thread \
             probably ended on an exception (look for a traceback in the server's terminal)"
        ),
        ReplyKind::Reset => format!(
            "{sent} and the connection was reset without a reply: the server probably crashed \
             handling it (look for a traceback in the server's terminal)"
        ),
        ReplyKind::Flood => {
            format!("{sent} and the server sent more than {READ_CAP} bytes without a line end")
        }
        ReplyKind::Echo => format!(
            "{sent} and got {got} back: the server sends back what it receives — the course's \
             echo example (sendall(data)) is still in place. Answer TIME with the time: \
             conn.sendall(f\"JAM {{now:%H:%M:%S}}\\r\\n\".encode())"
        ),
        ReplyKind::Http => format!(
            "{sent} and got {}: an HTTP server answers on this port, not a time server. Is your \
             server running, on this port? Stop the other program or check another port",
            if got.is_empty() {
                format!("\"{}\"", show(greeting))
            } else {
                got
            }
        ),
        ReplyKind::Banner(who) => format!(
            "the server greets with \"{}\", the banner of {who}: another program listens on this \
             port, not your time server. Check the port your server binds",
            show(greeting)
        ),
        ReplyKind::Unrecognised => format!(
            "{sent} and got {got}, which is not a time: the server did not recognise the request, \
             nor \"TIME\", \"TIME\\n\" or \"time\\r\\n\". Print repr(data) in your server to see \
             what it receives, and compare after removing the line end: \
             data.decode().strip() == \"TIME\""
        ),
    }
}

/// The cause and fix for a first answer that is a time but not exactly `JAM hh:mm:ss` CR LF, or
/// that came after a greeting; `None` when it is exact and came alone.
pub fn explain_time(reply: &TimeReply, line: &[u8], greeting: &[u8]) -> Option<String> {
    let mut causes = Vec::new();
    if !greeting.is_empty() {
        causes.push(format!(
            "the server sends \"{}\" as soon as a client connects, before any request: a client \
             that sends TIME and reads one line gets that instead of the time. Send nothing until \
             a request comes",
            show(greeting)
        ));
    }
    if !reply.is_exact() {
        let fixes: Vec<&str> = reply.differences().iter().map(|d| d.fix()).collect();
        causes.push(format!(
            "sent \"TIME\\r\\n\", got \"{}\": {}. The assignment asks for exactly \
             \"JAM hh:mm:ss\\r\\n\": {}",
            show(line),
            reply.describe_differences(),
            fixes.join("; ")
        ));
    }
    if causes.is_empty() {
        None
    } else {
        Some(causes.join(". Also, "))
    }
}

/// What a zone difference between the server's time and this machine's local time means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneFinding {
    /// The server reports this machine's local time.
    Agrees,
    /// Exactly 12 hours off on the same machine: the hour is formatted with `%I`.
    TwelveHour,
    /// UTC on a machine whose zone is not UTC: `utcnow()` or `gmtime()`.
    Utc,
    /// Another zone on the same machine.
    OtherZone(i32),
    /// A different zone on another machine: it may be that machine's local time.
    Elsewhere(i32),
}

/// Judges the server's zone (`server`, seconds from UTC) against this machine's (`local`);
/// `same_machine` when the server runs on this machine, so both read one clock in one zone.
pub fn judge_zone(server: i32, local: i32, same_machine: bool) -> ZoneFinding {
    const DAY: i32 = 86_400;
    if server == local {
        return ZoneFinding::Agrees;
    }
    if !same_machine {
        return ZoneFinding::Elsewhere(server);
    }
    let diff = (server - local).rem_euclid(DAY);
    if diff == DAY / 2 {
        ZoneFinding::TwelveHour
    } else if server == 0 {
        ZoneFinding::Utc
    } else {
        ZoneFinding::OtherZone(server)
    }
}

impl ZoneFinding {
    /// The cause and fix for a finding that is a bug; `None` for one that is not.
    pub fn cause(&self, local: i32) -> Option<String> {
        match self {
            ZoneFinding::Agrees | ZoneFinding::Elsewhere(_) => None,
            ZoneFinding::TwelveHour => Some(
                "the server's time is 12 hours from this machine's, the machine it runs on: it \
                 formats the hour with %I (a 12-hour clock, 02 for 14). Use %H: \
                 now.strftime(\"%H:%M:%S\")"
                    .into(),
            ),
            ZoneFinding::Utc => Some(format!(
                "the server reports UTC while the machine it runs on is at {}: it uses \
                 datetime.utcnow() or time.gmtime(). Report the local time: \
                 datetime.now().strftime(\"%H:%M:%S\")",
                zone_text(local)
            )),
            ZoneFinding::OtherZone(server) => Some(format!(
                "the server reports the time of {} while the machine it runs on is at {}: it \
                 converts the time to another zone. Report the local time: datetime.now()",
                zone_text(*server),
                zone_text(local)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Got {
        Got::Line(text.as_bytes().to_vec())
    }

    #[test]
    fn each_kind_of_first_answer_is_told_apart() {
        let sent = b"TIME\r\n";
        for (greeting, answer, kind) in [
            ("", line("JAM 13:26:23\r\n"), ReplyKind::Time),
            ("", line("TIME 13:26:23\r\n"), ReplyKind::Time),
            ("Welcome\r\n", line("JAM 13:26:23\r\n"), ReplyKind::Time),
            ("", line("TIME\r\n"), ReplyKind::Echo),
            ("", line("TI"), ReplyKind::Echo),
            ("", line("HTTP/1.0 400 Bad request\r\n"), ReplyKind::Http),
            ("", line("<!DOCTYPE HTML>\n"), ReplyKind::Http),
            ("", line("<html><body>\n"), ReplyKind::Http),
            ("HTTP/1.1 200 OK\r\n", Got::Timeout, ReplyKind::Http),
            (
                "SSH-2.0-OpenSSH_9.2\r\n",
                line("Invalid SSH identification string.\r\n"),
                ReplyKind::Banner("an SSH server"),
            ),
            (
                "",
                line("220 mail ESMTP\r\n"),
                ReplyKind::Banner("an FTP or SMTP server"),
            ),
            (
                "+OK ready\r\n",
                Got::Timeout,
                ReplyKind::Banner("a POP3 server"),
            ),
            (
                "* OK IMAP\r\n",
                Got::Timeout,
                ReplyKind::Banner("an IMAP server"),
            ),
            (
                "RFB 003.008\n",
                Got::Timeout,
                ReplyKind::Banner("a VNC server"),
            ),
            ("", line("ERR unknown command\r\n"), ReplyKind::Unrecognised),
            ("", line("ERROR"), ReplyKind::Unrecognised),
            ("", Got::Timeout, ReplyKind::Nothing),
            ("", Got::Closed, ReplyKind::Closed),
            ("", Got::Reset("reset".into()), ReplyKind::Reset),
            ("", Got::Flood, ReplyKind::Flood),
        ] {
            assert_eq!(
                classify(greeting.as_bytes(), &answer, sent),
                kind,
                "{greeting:?} {answer:?}"
            );
        }
    }

    #[test]
    fn only_answers_that_are_lines_show_that_the_server_answered() {
        assert!(ReplyKind::Unrecognised.is_line());
        assert!(ReplyKind::Echo.is_line());
        assert!(ReplyKind::Time.is_line());
        for kind in [
            ReplyKind::Nothing,
            ReplyKind::Closed,
            ReplyKind::Reset,
            ReplyKind::Flood,
        ] {
            assert!(!kind.is_line(), "{kind:?}");
        }
        assert_eq!(ReplyKind::Echo.short(), "an echo of the request");
        assert_eq!(
            ReplyKind::Banner("an SSH server").short(),
            "the banner of an SSH server"
        );
    }

    #[test]
    fn a_recognised_variant_names_what_the_server_compared() {
        let wait = Duration::from_secs(1);
        let err = Some(&b"ERR unknown command\r\n"[..]);
        let lower = explain_no_time(
            ReplyKind::Unrecognised,
            err,
            b"",
            Some(Variant::Lowercase),
            wait,
        );
        assert!(
            lower.contains("got \"ERR unknown command\\r\\n\""),
            "{lower}"
        );
        assert!(
            lower.contains("compares the request with \"time\""),
            "{lower}"
        );
        let raw = explain_no_time(
            ReplyKind::Nothing,
            None,
            b"",
            Some(Variant::NoLineEnd),
            wait,
        );
        assert!(raw.contains("nothing within 1 s"), "{raw}");
        assert!(raw.contains("still attached"), "{raw}");
        let cr = explain_no_time(
            ReplyKind::Unrecognised,
            err,
            b"",
            Some(Variant::LfOnly),
            wait,
        );
        assert!(cr.contains("keeps the CR"), "{cr}");
        let closed = explain_no_time(ReplyKind::Closed, None, b"", Some(Variant::Lowercase), wait);
        assert!(closed.contains("and got no reply;"), "{closed}");
        assert_eq!(Variant::Lowercase.bytes(), b"time\r\n");
        assert_eq!(Variant::NoLineEnd.bytes(), b"TIME");
        assert_eq!(Variant::LfOnly.bytes(), b"TIME\n");
    }

    #[test]
    fn every_other_answer_gets_its_own_cause() {
        let wait = Duration::from_secs(1);
        for (kind, line, greeting, words) in [
            (
                ReplyKind::Echo,
                Some(&b"TIME\r\n"[..]),
                &b""[..],
                "echo example",
            ),
            (
                ReplyKind::Http,
                Some(&b"HTTP/1.0 400 Bad request\r\n"[..]),
                b"",
                "an HTTP server answers",
            ),
            (
                ReplyKind::Banner("an SSH server"),
                None,
                b"SSH-2.0-x\r\n",
                "the banner of an SSH server",
            ),
            (ReplyKind::Nothing, None, b"", "got nothing within 1 s"),
            (
                ReplyKind::Closed,
                None,
                b"",
                "closed the connection without a reply",
            ),
            (ReplyKind::Reset, None, b"", "was reset"),
            (ReplyKind::Flood, None, b"", "more than 4096 bytes"),
            (
                ReplyKind::Unrecognised,
                Some(&b"ERROR\r\n"[..]),
                b"",
                "did not recognise the request",
            ),
        ] {
            let text = explain_no_time(kind, line, greeting, None, wait);
            assert!(text.contains(words), "{kind:?}: {text}");
            assert!(!text.contains("recv()"), "{kind:?} blames recv(): {text}");
        }
    }

    #[test]
    fn a_time_after_a_greeting_or_with_differences_is_explained_and_an_exact_one_is_not() {
        let exact = b"JAM 13:26:23\r\n";
        let Reply::Time(reply) = Reply::parse(exact) else {
            panic!("a time")
        };
        assert_eq!(explain_time(&reply, exact, b""), None);
        let greeted = explain_time(&reply, exact, b"Welcome\r\n").expect("a cause");
        assert!(greeted.contains("\"Welcome\\r\\n\""), "{greeted}");
        assert!(greeted.contains("before any request"), "{greeted}");
        assert!(!greeted.contains("Also"), "{greeted}");
        let spaced = b"JAM 13:26:23 \r\n";
        let Reply::Time(reply) = Reply::parse(spaced) else {
            panic!("a time")
        };
        let text = explain_time(&reply, spaced, b"").expect("a cause");
        assert!(text.contains("\" \" after the seconds"), "{text}");
        let both = explain_time(&reply, spaced, b"Hi\r\n").expect("a cause");
        assert!(both.contains("Also, sent \"TIME\\r\\n\", got"), "{both}");
    }

    #[test]
    fn a_zone_difference_on_one_machine_is_a_bug_with_a_named_cause() {
        let wib = 7 * 3600;
        assert_eq!(judge_zone(wib, wib, true), ZoneFinding::Agrees);
        assert_eq!(judge_zone(0, wib, true), ZoneFinding::Utc);
        assert_eq!(judge_zone(0, wib, false), ZoneFinding::Elsewhere(0));
        assert_eq!(
            judge_zone(wib - 12 * 3600, wib, true),
            ZoneFinding::TwelveHour
        );
        assert_eq!(
            judge_zone(wib + 12 * 3600, wib, true),
            ZoneFinding::TwelveHour
        );
        assert_eq!(judge_zone(-12 * 3600, 0, true), ZoneFinding::TwelveHour);
        assert_eq!(judge_zone(3600, wib, true), ZoneFinding::OtherZone(3600));
        assert_eq!(judge_zone(3600, wib, false), ZoneFinding::Elsewhere(3600));
        assert!(
            ZoneFinding::TwelveHour
                .cause(wib)
                .expect("a bug")
                .contains("%I")
        );
        assert!(
            ZoneFinding::Utc
                .cause(wib)
                .expect("a bug")
                .contains("utcnow()")
        );
        assert!(
            ZoneFinding::OtherZone(3600)
                .cause(wib)
                .expect("a bug")
                .contains("UTC+01:00")
        );
        assert_eq!(ZoneFinding::Agrees.cause(wib), None);
        assert_eq!(ZoneFinding::Elsewhere(0).cause(wib), None);
    }
}
