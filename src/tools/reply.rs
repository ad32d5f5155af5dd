//! Server replies as a client reads them, without I/O: the exact form and the common variants.
//!
//! The exact time reply is `JAM hh:mm:ss` CR LF. Time servers written for the course often answer
//! differently, and every `jam` command should still understand them while saying how they differ:
//!
//! | variant | example (line end shown as `\r\n` / `\n`) |
//! |---|---|
//! | a date before the time | `JAM 30-11-2026 02:15:05\r\n`, `JAM 30 11 2026 …`, `JAM 2026-11-30 …`, `JAM 30/11/2026 …`, `JAM 09 05 25 …` |
//! | no `JAM ` prefix | `02:15:05\r\n`, `30 11 2026 02:22:34\r\n` |
//! | another prefix | `TIME 02:15:05\r\n`, `Waktu: 02:15:05\r\n` |
//! | something after the seconds | `JAM 02:15:05 \r\n`, `JAM 02:15:05 WIB\r\n` |
//! | LF only | `JAM 02:15:05\n` |
//! | LF then CR | `JAM 02:15:05\n\r` |
//! | no line end | `JAM 02:15:05` and then nothing (the client saw the connection close or go quiet) |
//! | not zero-padded | `JAM 2:15:5\r\n` |
//!
//! [`Reply::parse`] is the one parser every command uses; strict callers (benchmarks, `--strict`,
//! `jam check`'s `time-format`) accept only [`TimeReply::is_exact`] replies.

use std::fmt::{self, Write as _};

use crate::clock::TimeOfDay;

/// How a reply line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// CR LF, as the protocol asks.
    CrLf,
    /// LF without CR.
    Lf,
    /// LF then CR: the two bytes in the wrong order (see [`line_len`]).
    LfCr,
    /// No LF at all: the bytes stopped (the server closed, or sent nothing more).
    Missing,
}

impl LineEnd {
    /// Splits a raw line into its text and its line end. `raw` is a line as read: everything up to
    /// and including the first LF, or the bytes left when no LF came.
    pub fn split(raw: &[u8]) -> (&[u8], LineEnd) {
        match raw {
            [text @ .., b'\r', b'\n'] => (text, LineEnd::CrLf),
            [text @ .., b'\n', b'\r'] => (text, LineEnd::LfCr),
            [text @ .., b'\n'] => (text, LineEnd::Lf),
            text => (text, LineEnd::Missing),
        }
    }
}

/// The length of the first reply line in `buf`, its line end included, or `None` while no LF has
/// come. A CR right after an LF that has no CR before it is taken into that line: a server that
/// writes `\n\r` would otherwise start every later line with a stray CR. Readers must call this
/// with all the bytes they hold, so the CR is seen when it came in the same segment.
pub(crate) fn line_len(buf: &[u8]) -> Option<usize> {
    let lf = memchr::memchr(b'\n', buf)?;
    let after_cr = lf > 0 && buf[lf - 1] == b'\r';
    Some(if !after_cr && buf.get(lf + 1) == Some(&b'\r') {
        lf + 2
    } else {
        lf + 1
    })
}

/// A short run of bytes kept inline, so that a [`TimeReply`] stays `Copy`: a prefix other than
/// `JAM `, or what follows the seconds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Word {
    bytes: [u8; Word::MAX],
    len: u8,
}

impl Word {
    /// Longest word kept.
    pub const MAX: usize = 15;

    fn new(bytes: &[u8]) -> Option<Word> {
        if bytes.is_empty() || bytes.len() > Word::MAX {
            return None;
        }
        let mut word = Word {
            bytes: [0; Word::MAX],
            len: bytes.len() as u8,
        };
        word.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(word)
    }

    /// The bytes as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// How a time reply begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `JAM `, as the protocol asks.
    Jam,
    /// Nothing: the reply starts with the date or the time.
    Missing,
    /// Another word, e.g. `TIME` (a server that prefixes its answer with the request's name).
    Other(Word),
}

/// Bytes as a string literal a student can read: `\r`, `\n`, `\t`, `\"`, `\\` and `\xNN` for
/// other control bytes and invalid UTF-8; cut after 120 characters with `...`. Every client tool
/// shows a server's bytes with this one function.
pub(crate) fn show(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02X}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:X}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    if out.chars().count() > MAX {
        out = out.chars().take(MAX - 3).collect();
        out.push_str("...");
    }
    out
}

/// The order of a date's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrder {
    /// Day, month, year (`30-11-2026`, `30 11 26`).
    DayMonthYear,
    /// Year, month, day (`2026-11-30`).
    YearMonthDay,
}

/// A date found before the time, as the server wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    /// Field order.
    pub order: DateOrder,
    /// The separator between the fields: `-`, `/`, `.` or a space.
    pub separator: u8,
    /// The year as written (two digits when [`Date::short_year`]).
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month, 1–31.
    pub day: u8,
    /// The year was written with two digits.
    pub short_year: bool,
}

impl Date {
    /// The date's pattern, e.g. `dd-mm-YYYY`, `YYYY-mm-dd`, `dd mm yy`.
    pub fn pattern(&self) -> String {
        let year = if self.short_year { "yy" } else { "YYYY" };
        let sep = char::from(self.separator);
        match self.order {
            DateOrder::DayMonthYear => format!("dd{sep}mm{sep}{year}"),
            DateOrder::YearMonthDay => format!("{year}{sep}mm{sep}dd"),
        }
    }
}

/// A time reply, exact or a variant, with what makes it differ from `JAM hh:mm:ss` CR LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeReply {
    /// The time of day reported.
    pub time: TimeOfDay,
    /// A date before the time, if any.
    pub date: Option<Date>,
    /// How the reply begins.
    pub prefix: Prefix,
    /// Every field of the time had two digits.
    pub padded: bool,
    /// Bytes between the seconds and the line end (a space, a zone name), if any.
    pub trailing: Option<Word>,
    /// How the line ended.
    pub line_end: LineEnd,
}

impl TimeReply {
    /// The reply is exactly `JAM hh:mm:ss` CR LF.
    pub fn is_exact(&self) -> bool {
        self.date.is_none()
            && self.prefix == Prefix::Jam
            && self.padded
            && self.trailing.is_none()
            && self.line_end == LineEnd::CrLf
    }

    /// Each way the reply differs from the exact form, in words (empty when exact).
    pub fn differences(&self) -> Vec<Difference> {
        let mut out = Vec::new();
        if let Some(date) = self.date {
            out.push(Difference::Date(date));
        }
        match self.prefix {
            Prefix::Jam => {}
            Prefix::Missing => out.push(Difference::NoPrefix),
            Prefix::Other(word) => out.push(Difference::OtherPrefix(word)),
        }
        if !self.padded {
            out.push(Difference::NotPadded);
        }
        if let Some(word) = self.trailing {
            out.push(Difference::Trailing(word));
        }
        match self.line_end {
            LineEnd::CrLf => {}
            LineEnd::Lf => out.push(Difference::LfOnly),
            LineEnd::LfCr => out.push(Difference::LfCr),
            LineEnd::Missing => out.push(Difference::NoLineEnd),
        }
        out
    }

    /// The differences as one phrase: `a date before the time (dd-mm-YYYY), LF only`.
    pub fn describe_differences(&self) -> String {
        let parts: Vec<String> = self.differences().iter().map(|d| d.to_string()).collect();
        parts.join(", ")
    }
}

/// One way a time reply differs from the exact form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// A date comes before the time.
    Date(Date),
    /// The line does not start with `JAM `.
    NoPrefix,
    /// The line starts with another word (`TIME 12:00:00`).
    OtherPrefix(Word),
    /// A field of the time has one digit.
    NotPadded,
    /// Bytes come between the seconds and the line end.
    Trailing(Word),
    /// The line ends in LF without CR.
    LfOnly,
    /// The line ends in LF then CR.
    LfCr,
    /// The line has no line end at all.
    NoLineEnd,
}

impl Difference {
    /// How a server's author fixes it, as a short imperative.
    pub(crate) fn fix(&self) -> &'static str {
        match self {
            Difference::Date(_) => {
                "send the time alone: format it with strftime(\"%H:%M:%S\"), without the date"
            }
            Difference::NoPrefix => "start the reply with \"JAM \"",
            Difference::OtherPrefix(_) => {
                "start the reply with \"JAM \" (the word the assignment names), not another word"
            }
            Difference::NotPadded => "pad hours, minutes and seconds to two digits (%H:%M:%S)",
            Difference::Trailing(_) => {
                "send nothing between the seconds and the line end: f\"JAM {now:%H:%M:%S}\\r\\n\""
            }
            Difference::LfOnly => "end each reply with \"\\r\\n\" (CR LF), not \"\\n\"",
            Difference::LfCr => {
                "end each reply with \"\\r\\n\": CR (13) first, then LF (10), not \"\\n\\r\""
            }
            Difference::NoLineEnd => "end each reply with \"\\r\\n\" (CR LF)",
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Date(date) => write!(f, "a date before the time ({})", date.pattern()),
            Difference::NoPrefix => f.write_str("no \"JAM \" prefix"),
            Difference::OtherPrefix(word) => write!(
                f,
                "\"{}\" instead of the \"JAM \" prefix",
                String::from_utf8_lossy(word.as_bytes())
            ),
            Difference::NotPadded => f.write_str("not zero-padded"),
            Difference::Trailing(word) => {
                write!(f, "\"{}\" after the seconds", show(word.as_bytes()))
            }
            Difference::LfOnly => f.write_str("LF only, not CR LF"),
            Difference::LfCr => f.write_str("LF CR, not CR LF"),
            Difference::NoLineEnd => f.write_str("no line end"),
        }
    }
}

/// A reply line as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A time: `JAM hh:mm:ss` or one of the variants.
    Time(TimeReply),
    /// `ERR <message>` (any line end).
    Error(&'a str),
    /// Anything else (line end removed).
    Invalid(&'a [u8]),
}

impl<'a> Reply<'a> {
    /// Classifies one raw reply line: the bytes up to and including its LF, or the bytes left when
    /// no LF came (see [`LineEnd::split`]).
    pub fn parse(raw: &'a [u8]) -> Reply<'a> {
        let (text, line_end) = LineEnd::split(raw);
        if let Some(reply) = parse_time(text, line_end) {
            return Reply::Time(reply);
        }
        match text.strip_prefix(b"ERR ").map(std::str::from_utf8) {
            Some(Ok(message)) => Reply::Error(message),
            _ => Reply::Invalid(text),
        }
    }

    /// The time, if this is an exact `JAM hh:mm:ss` CR LF reply.
    #[cfg(test)]
    fn exact_time(&self) -> Option<TimeOfDay> {
        match self {
            Reply::Time(t) if t.is_exact() => Some(t.time),
            _ => None,
        }
    }
}

fn parse_time(text: &[u8], line_end: LineEnd) -> Option<TimeReply> {
    let (text, trailing) = split_trailing(text);
    let (prefix, body) = match text.strip_prefix(b"JAM ") {
        Some(body) => (Prefix::Jam, body),
        None => (Prefix::Missing, text),
    };
    // The time is the last space-separated field; before it, a date, another prefix word, or
    // another prefix word and then a date.
    let (date, prefix, time) = match body.iter().rposition(|&b| b == b' ') {
        None => (None, prefix, body),
        Some(i) => {
            let (before, time) = (&body[..i], &body[i + 1..]);
            match parse_date(before) {
                Some(date) => (Some(date), prefix, time),
                None if prefix == Prefix::Jam => return None,
                None => match before.iter().rposition(|&b| b == b' ') {
                    Some(j) if parse_date(&before[j + 1..]).is_some() => (
                        parse_date(&before[j + 1..]),
                        other_prefix(&before[..j])?,
                        time,
                    ),
                    _ => (None, other_prefix(before)?, time),
                },
            }
        }
    };
    let (time, padded) = parse_clock(time)?;
    Some(TimeReply {
        time,
        date,
        prefix,
        padded,
        trailing,
        line_end,
    })
}

/// Splits off what follows the seconds: blanks and control bytes (a space before CR LF, a NUL
/// from C), or a space and a short word of letters (a zone name, `PM`).
fn split_trailing(text: &[u8]) -> (&[u8], Option<Word>) {
    let blank = |b: &u8| b.is_ascii_whitespace() || b.is_ascii_control();
    let mut end = text.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1);
    if let Some(space) = text[..end].iter().rposition(|&b| b == b' ') {
        let word = &text[space + 1..end];
        if (1..=5).contains(&word.len()) && word.iter().all(u8::is_ascii_alphabetic) {
            end = space;
        }
    }
    let tail = &text[end..];
    (&text[..end], Word::new(&tail[..tail.len().min(Word::MAX)]))
}

/// A prefix other than `JAM `: printable ASCII without digits (`TIME`, `Waktu:`, `jam`), at most
/// [`Word::MAX`] bytes.
fn other_prefix(text: &[u8]) -> Option<Prefix> {
    let printable = |b: &u8| b.is_ascii_graphic() || *b == b' ';
    if text.iter().all(|b| printable(b) && !b.is_ascii_digit()) && text.first() != Some(&b' ') {
        Word::new(text).map(Prefix::Other)
    } else {
        None
    }
}

/// `h:m:s` with one or two digits per field; whether all had two.
fn parse_clock(text: &[u8]) -> Option<(TimeOfDay, bool)> {
    let mut fields = text.split(|&b| b == b':');
    let (h, m, s) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    let padded = [h, m, s].iter().all(|f| f.len() == 2);
    let time = TimeOfDay::new(number(h, 2)?, number(m, 2)?, number(s, 2)?)?;
    Some((time, padded))
}

/// One to `max_digits` ASCII digits as a number.
fn number(digits: &[u8], max_digits: usize) -> Option<u8> {
    if digits.is_empty() || digits.len() > max_digits || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + (d - b'0')))
}

/// Three numeric fields with one separator: day month year (two- or four-digit year) or
/// year month day (four-digit year).
fn parse_date(text: &[u8]) -> Option<Date> {
    let separator = *text.iter().find(|b| !b.is_ascii_digit())?;
    if !matches!(separator, b'-' | b'/' | b'.' | b' ') {
        return None;
    }
    let mut fields = text.split(|&b| b == separator);
    let (a, b, c) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    let year = |y: &[u8]| -> Option<(u16, bool)> {
        if (y.len() != 2 && y.len() != 4) || !y.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = y.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        Some((value, y.len() == 2))
    };
    let (order, (year, short_year), month, day) = if a.len() == 4 {
        (
            DateOrder::YearMonthDay,
            year(a)?,
            number(b, 2)?,
            number(c, 2)?,
        )
    } else {
        (
            DateOrder::DayMonthYear,
            year(c)?,
            number(b, 2)?,
            number(a, 2)?,
        )
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(Date {
        order,
        separator,
        year,
        month,
        day,
        short_year,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u8, m: u8, s: u8) -> TimeOfDay {
        TimeOfDay::new(h, m, s).expect("valid time")
    }

    fn time_reply(raw: &str) -> TimeReply {
        match Reply::parse(raw.as_bytes()) {
            Reply::Time(reply) => reply,
            other => panic!("{raw:?} should be a time reply, got {other:?}"),
        }
    }

    #[test]
    fn the_exact_form_is_jam_hh_mm_ss_cr_lf() {
        let reply = time_reply("JAM 08:05:09\r\n");
        assert_eq!(reply.time, t(8, 5, 9));
        assert!(reply.is_exact());
        assert!(reply.differences().is_empty());
        assert_eq!(
            Reply::parse(b"JAM 23:59:59\r\n").exact_time(),
            Some(t(23, 59, 59))
        );
    }

    #[test]
    fn the_course_reference_with_a_date_is_a_variant_that_names_the_date_form() {
        let reply = time_reply("JAM 30-11-2026 02:15:05\r\n");
        assert_eq!(reply.time, t(2, 15, 5));
        assert!(!reply.is_exact());
        let date = reply.date.expect("a date");
        assert_eq!((date.day, date.month, date.year), (30, 11, 2026));
        assert_eq!(
            reply.describe_differences(),
            "a date before the time (dd-mm-YYYY)"
        );
        assert_eq!(
            Reply::parse(b"JAM 30-11-2026 02:15:05\r\n").exact_time(),
            None
        );
    }

    #[test]
    fn every_common_date_form_is_recognised() {
        for (raw, pattern, time) in [
            ("JAM 30 11 2026 02:22:32\r\n", "dd mm YYYY", t(2, 22, 32)),
            ("JAM 2026-11-30 02:22:32\r\n", "YYYY-mm-dd", t(2, 22, 32)),
            ("JAM 30/11/2026 02:22:32\r\n", "dd/mm/YYYY", t(2, 22, 32)),
            ("JAM 09 05 25 16:37:26\r\n", "dd mm yy", t(16, 37, 26)),
            ("JAM 30.11.2026 00:00:00\r\n", "dd.mm.YYYY", t(0, 0, 0)),
            ("JAM 1-2-26 00:00:01\r\n", "dd-mm-yy", t(0, 0, 1)),
        ] {
            let reply = time_reply(raw);
            assert_eq!(reply.time, time, "{raw:?}");
            assert_eq!(
                reply.date.map(|d| d.pattern()),
                Some(pattern.into()),
                "{raw:?}"
            );
            assert!(!reply.is_exact(), "{raw:?}");
        }
        let short = time_reply("JAM 09 05 25 16:37:26\r\n")
            .date
            .expect("a date");
        assert_eq!(
            (short.day, short.month, short.year, short.short_year),
            (9, 5, 25, true)
        );
    }

    #[test]
    fn a_missing_prefix_an_lf_only_end_and_no_padding_are_each_named() {
        let reply = time_reply("30 11 2026 02:22:34\r\n");
        assert_eq!(
            reply.differences(),
            vec![
                Difference::Date(reply.date.expect("a date")),
                Difference::NoPrefix
            ]
        );
        assert_eq!(
            time_reply("02:22:34\r\n").differences(),
            vec![Difference::NoPrefix]
        );
        assert_eq!(
            time_reply("JAM 02:22:34\n").differences(),
            vec![Difference::LfOnly]
        );
        assert_eq!(
            time_reply("JAM 02:22:34").differences(),
            vec![Difference::NoLineEnd]
        );
        assert_eq!(
            time_reply("JAM 2:2:34\r\n").differences(),
            vec![Difference::NotPadded]
        );
        assert_eq!(
            time_reply("JAM 30-11-2026 2:15:05\n").describe_differences(),
            "a date before the time (dd-mm-YYYY), not zero-padded, LF only, not CR LF"
        );
    }

    #[test]
    fn another_prefix_word_is_named_and_is_not_an_echo() {
        let reply = time_reply("TIME 13:26:23\r\n");
        assert_eq!(reply.time, t(13, 26, 23));
        let word = Word::new(b"TIME").expect("a word");
        assert_eq!(reply.prefix, Prefix::Other(word));
        assert_eq!(reply.differences(), vec![Difference::OtherPrefix(word)]);
        assert_eq!(
            reply.describe_differences(),
            "\"TIME\" instead of the \"JAM \" prefix"
        );
        let waktu = time_reply("Waktu sekarang 01:02:03\r\n");
        assert_eq!(
            waktu.prefix,
            Prefix::Other(Word::new(b"Waktu sekarang").expect("a word"))
        );
        let dated = time_reply("TIME 30-11-2026 01:02:03\r\n");
        assert_eq!(dated.prefix, Prefix::Other(word));
        assert_eq!(dated.date.map(|d| d.day), Some(30));
        assert_eq!(
            time_reply("jam 01:02:03\r\n").prefix,
            Prefix::Other(Word::new(b"jam").expect("a word"))
        );
        assert_eq!(time_reply("01:02:03\r\n").prefix, Prefix::Missing);
        assert_eq!(time_reply("JAM 01:02:03\r\n").prefix, Prefix::Jam);
    }

    #[test]
    fn a_word_debugs_as_its_text() {
        let word = Word::new(b"TIME").expect("a word");
        assert_eq!(format!("{word:?}"), "\"TIME\"");
        assert_eq!(Word::new(b""), None);
        assert_eq!(Word::new(&[b'x'; Word::MAX + 1]), None);
        assert_eq!(
            Word::new(&[b'x'; Word::MAX]).map(|w| w.as_bytes().len()),
            Some(Word::MAX)
        );
    }

    #[test]
    fn bytes_after_the_seconds_are_named_with_their_escaped_text() {
        for (raw, tail, shown) in [
            ("JAM 13:26:23 \r\n", " ", "\" \" after the seconds"),
            ("JAM 13:26:23\t\r\n", "\t", "\"\\t\" after the seconds"),
            (
                "JAM 13:26:23\x00\r\n",
                "\x00",
                "\"\\x00\" after the seconds",
            ),
            ("JAM 13:26:23 WIB\r\n", " WIB", "\" WIB\" after the seconds"),
            ("JAM 13:26:23 PM \n", " PM ", "\" PM \" after the seconds"),
            ("JAM 13:26:23\r\r\n", "\r", "\"\\r\" after the seconds"),
        ] {
            let reply = time_reply(raw);
            assert_eq!(reply.time, t(13, 26, 23), "{raw:?}");
            let word = Word::new(tail.as_bytes()).expect("a word");
            assert_eq!(reply.trailing, Some(word), "{raw:?}");
            assert_eq!(Difference::Trailing(word).to_string(), shown, "{raw:?}");
            assert!(!reply.is_exact(), "{raw:?}");
        }
        let long = time_reply("JAM 13:26:23                    \r\n");
        assert_eq!(
            long.trailing.map(|w| w.as_bytes().len()),
            Some(Word::MAX),
            "a long tail is kept up to Word::MAX bytes"
        );
        assert_eq!(time_reply("JAM 13:26:23\r\n").trailing, None);
    }

    #[test]
    fn lf_then_cr_is_its_own_line_end_and_a_reader_takes_the_cr_into_the_line() {
        let reply = time_reply("JAM 13:26:23\n\r");
        assert_eq!(reply.line_end, LineEnd::LfCr);
        assert_eq!(reply.differences(), vec![Difference::LfCr]);
        assert_eq!(reply.describe_differences(), "LF CR, not CR LF");
        assert_eq!(line_len(b"JAM 13:26:23\n\rJAM"), Some(14));
        assert_eq!(line_len(b"JAM 13:26:23\r\n\rX"), Some(14));
        assert_eq!(line_len(b"JAM 13:26:23\nJAM"), Some(13));
        assert_eq!(line_len(b"\n\r"), Some(2));
        assert_eq!(line_len(b"\r\n\r"), Some(2));
        assert_eq!(line_len(b"JAM 13:26:23\r"), None);
        assert_eq!(line_len(b""), None);
    }

    #[test]
    fn each_difference_comes_with_the_fix_a_student_needs() {
        let date = time_reply("JAM 30-11-2026 02:15:05\r\n")
            .date
            .expect("a date");
        for (difference, remedy) in [
            (Difference::Date(date), "%H:%M:%S"),
            (Difference::NoPrefix, "\"JAM \""),
            (Difference::NotPadded, "two digits"),
            (Difference::LfOnly, "\\r\\n"),
            (Difference::NoLineEnd, "\\r\\n"),
            (Difference::LfCr, "CR (13) first"),
            (
                Difference::OtherPrefix(Word::new(b"TIME").expect("a word")),
                "\"JAM \"",
            ),
            (
                Difference::Trailing(Word::new(b" ").expect("a word")),
                "nothing between the seconds",
            ),
        ] {
            assert!(
                difference.fix().contains(remedy),
                "{difference}: {}",
                difference.fix()
            );
        }
    }

    #[test]
    fn error_lines_are_errors_with_any_line_end() {
        assert_eq!(
            Reply::parse(b"ERR idle timeout\r\n"),
            Reply::Error("idle timeout")
        );
        assert_eq!(
            Reply::parse(b"ERR server busy\n"),
            Reply::Error("server busy")
        );
    }

    #[test]
    fn lines_that_only_look_like_times_are_invalid() {
        for raw in [
            "JAM 24:00:00\r\n",
            "JAM 12:60:00\r\n",
            "JAM 12:00:60\r\n",
            "JAM 12:00\r\n",
            "JAM 12:00:00:00\r\n",
            "JAM 123:00:00\r\n",
            "JAM 009:00:00\r\n",
            "JAM :00:00\r\n",
            "JAM 12::00\r\n",
            "JAM 1-2- 00:00:01\r\n",
            "JAM 12:00:0a\r\n",
            "JAM  12:00:00\r\n",
            "JAM NOW 12:00:00\r\n",
            "JAM 12:00:00 Asia/Jakarta\r\n",
            "JAM 12:00:00 WIBWIB\r\n",
            "JAM 12:00:00 W1B\r\n",
            "Jam 5 12:00:00\r\n",
            " 12:00:00\r\n",
            "TIME 30-11 12:00:00\r\n",
            "A VERY LONG PREFIX WORD 12:00:00\r\n",
            "JAM 32-11-2026 12:00:00\r\n",
            "JAM 30-13-2026 12:00:00\r\n",
            "JAM 30-11-226 12:00:00\r\n",
            "JAM 30-11/2026 12:00:00\r\n",
            "JAM 30_11_2026 12:00:00\r\n",
            "JAM 30-11 12:00:00\r\n",
            "JAM 30-11-2026-1 12:00:00\r\n",
            "JAM 2026-30-11 12:00:00\r\n",
            "JAM12:00:00\r\n",
            "WARNING: Invalid Command!\r\n",
            "\r\n",
            "",
        ] {
            let (text, _) = LineEnd::split(raw.as_bytes());
            assert_eq!(
                Reply::parse(raw.as_bytes()),
                Reply::Invalid(text),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn every_exact_server_reply_parses_back_to_its_time() {
        for h in 0..24 {
            for m in 0..60 {
                for s in 0..60 {
                    let time = t(h, m, s);
                    let raw = crate::protocol::time_reply(time);
                    assert_eq!(Reply::parse(&raw).exact_time(), Some(time));
                }
            }
        }
    }

    #[test]
    fn bytes_are_shown_as_a_readable_literal() {
        assert_eq!(show(b"TIME\r\n"), "TIME\\r\\n");
        assert_eq!(show(b"a\"b\\\t"), "a\\\"b\\\\\\t");
        assert_eq!(show(b"\xc3\x28\x00\x1b"), "\\xC3(\\x00\\x1B");
        assert_eq!(show("Jäm\u{85}".as_bytes()), "Jäm\\u{85}");
        let long = show(&[b'x'; 500]);
        assert_eq!(long.chars().count(), 120);
        assert!(long.ends_with("..."));
        assert_eq!(
            show(&[b'x'; 120]),
            "x".repeat(120),
            "120 characters are not cut"
        );
        let long_invalid = show(&[0xff; 100]);
        assert_eq!(long_invalid.chars().count(), 120);
    }

    #[test]
    fn a_raw_line_is_split_at_its_line_end() {
        assert_eq!(LineEnd::split(b"A\r\n"), (&b"A"[..], LineEnd::CrLf));
        assert_eq!(LineEnd::split(b"A\n"), (&b"A"[..], LineEnd::Lf));
        assert_eq!(LineEnd::split(b"A\r"), (&b"A\r"[..], LineEnd::Missing));
        assert_eq!(LineEnd::split(b"\n"), (&b""[..], LineEnd::Lf));
        assert_eq!(LineEnd::split(b"A\n\r"), (&b"A"[..], LineEnd::LfCr));
    }
}
