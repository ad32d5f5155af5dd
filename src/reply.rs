//! Server replies as a client reads them, without I/O: the exact form and the common variants.
//!
//! The exact time reply is `JAM hh:mm:ss` CR LF. Time servers written for the course often answer
//! differently, and every `jam` command should still understand them while saying how they differ:
//!
//! | variant | example (line end shown as `\r\n` / `\n`) |
//! |---|---|
//! | a date before the time | `JAM 30-11-2026 02:15:05\r\n`, `JAM 30 11 2026 …`, `JAM 2026-11-30 …`, `JAM 30/11/2026 …`, `JAM 09 05 25 …` |
//! | no `JAM ` prefix | `02:15:05\r\n`, `30 11 2026 02:22:34\r\n` |
//! | LF only | `JAM 02:15:05\n` |
//! | no line end | `JAM 02:15:05` and then nothing (the client saw the connection close or go quiet) |
//! | not zero-padded | `JAM 2:15:5\r\n` |
//!
//! [`Reply::parse`] is the one parser every command uses; strict callers (benchmarks, `--strict`,
//! `jam check`'s `time-format`) accept only [`TimeReply::is_exact`] replies.

use std::fmt;

use crate::clock::TimeOfDay;

/// How a reply line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// CR LF, as the protocol asks.
    CrLf,
    /// LF without CR.
    Lf,
    /// No LF at all: the bytes stopped (the server closed, or sent nothing more).
    Missing,
}

impl LineEnd {
    /// Splits a raw line into its text and its line end. `raw` is a line as read: everything up to
    /// and including the first LF, or the bytes left when no LF came.
    pub fn split(raw: &[u8]) -> (&[u8], LineEnd) {
        match raw {
            [text @ .., b'\r', b'\n'] => (text, LineEnd::CrLf),
            [text @ .., b'\n'] => (text, LineEnd::Lf),
            text => (text, LineEnd::Missing),
        }
    }
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
    /// The `JAM ` prefix was there.
    pub prefix: bool,
    /// Every field of the time had two digits.
    pub padded: bool,
    /// How the line ended.
    pub line_end: LineEnd,
}

impl TimeReply {
    /// The reply is exactly `JAM hh:mm:ss` CR LF.
    pub fn is_exact(&self) -> bool {
        self.date.is_none() && self.prefix && self.padded && self.line_end == LineEnd::CrLf
    }

    /// Each way the reply differs from the exact form, in words (empty when exact).
    pub fn differences(&self) -> Vec<Difference> {
        let mut out = Vec::new();
        if let Some(date) = self.date {
            out.push(Difference::Date(date));
        }
        if !self.prefix {
            out.push(Difference::NoPrefix);
        }
        if !self.padded {
            out.push(Difference::NotPadded);
        }
        match self.line_end {
            LineEnd::CrLf => {}
            LineEnd::Lf => out.push(Difference::LfOnly),
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
    /// A field of the time has one digit.
    NotPadded,
    /// The line ends in LF without CR.
    LfOnly,
    /// The line has no line end at all.
    NoLineEnd,
}

impl Difference {
    /// How a server's author fixes it, as a short imperative.
    pub fn fix(&self) -> &'static str {
        match self {
            Difference::Date(_) => {
                "send the time alone: format it with strftime(\"%H:%M:%S\"), without the date"
            }
            Difference::NoPrefix => "start the reply with \"JAM \"",
            Difference::NotPadded => "pad hours, minutes and seconds to two digits (%H:%M:%S)",
            Difference::LfOnly => "end each reply with \"\\r\\n\" (CR LF), not \"\\n\"",
            Difference::NoLineEnd => "end each reply with \"\\r\\n\" (CR LF)",
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Date(date) => write!(f, "a date before the time ({})", date.pattern()),
            Difference::NoPrefix => f.write_str("no \"JAM \" prefix"),
            Difference::NotPadded => f.write_str("not zero-padded"),
            Difference::LfOnly => f.write_str("LF only, not CR LF"),
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
    pub fn exact_time(&self) -> Option<TimeOfDay> {
        match self {
            Reply::Time(t) if t.is_exact() => Some(t.time),
            _ => None,
        }
    }
}

fn parse_time(text: &[u8], line_end: LineEnd) -> Option<TimeReply> {
    let (prefix, body) = match text.strip_prefix(b"JAM ") {
        Some(body) => (true, body),
        None => (false, text),
    };
    // The time is the last space-separated field; a date, if any, is everything before it.
    let (date, time) = match body.iter().rposition(|&b| b == b' ') {
        Some(i) => (Some(parse_date(&body[..i])?), &body[i + 1..]),
        None => (None, body),
    };
    let (time, padded) = parse_clock(time)?;
    Some(TimeReply {
        time,
        date,
        prefix,
        padded,
        line_end,
    })
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
            "JAM 12:00:00 \r\n",
            "JAM 32-11-2026 12:00:00\r\n",
            "JAM 30-13-2026 12:00:00\r\n",
            "JAM 30-11-226 12:00:00\r\n",
            "JAM 30-11/2026 12:00:00\r\n",
            "JAM 30_11_2026 12:00:00\r\n",
            "JAM 30-11 12:00:00\r\n",
            "JAM 30-11-2026-1 12:00:00\r\n",
            "JAM 2026-30-11 12:00:00\r\n",
            "jam 12:00:00\r\n",
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
    fn a_raw_line_is_split_at_its_line_end() {
        assert_eq!(LineEnd::split(b"A\r\n"), (&b"A"[..], LineEnd::CrLf));
        assert_eq!(LineEnd::split(b"A\n"), (&b"A"[..], LineEnd::Lf));
        assert_eq!(LineEnd::split(b"A\r"), (&b"A\r"[..], LineEnd::Missing));
        assert_eq!(LineEnd::split(b"\n"), (&b""[..], LineEnd::Lf));
    }
}
