//! Every text of `jam check` that shows bytes, durations or zones is built here, so that a reply,
//! a pause and a zone read the same in every case, report and format.

use std::fmt::Write as _;
use std::time::Duration;

pub(crate) use crate::reply::show;

/// A list of raw lines shown as escaped strings: `"JAM 01:02:03\r\n", "x\n"`.
pub fn show_lines(lines: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{}\"", show(line));
    }
    out
}

/// A duration for people: `0.4 ms`, `150 ms`, `1 s`, `4.5 s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        let s = d.as_secs_f64();
        if (s - s.round()).abs() < 0.05 {
            format!("{s:.0} s")
        } else {
            format!("{s:.1} s")
        }
    }
}

/// A UTC offset in seconds as `UTC+07:00`.
pub fn zone_text(seconds: i32) -> String {
    format!(
        "UTC{}{:02}:{:02}",
        if seconds < 0 { '-' } else { '+' },
        seconds.abs() / 3600,
        seconds.abs() % 3600 / 60
    )
}

/// `1 line` or `3 lines`.
pub fn lines_word(n: usize) -> String {
    format!("{n} line{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally_at_every_scale() {
        assert_eq!(human(Duration::from_micros(400)), "0.4 ms");
        assert_eq!(human(Duration::from_millis(150)), "150 ms");
        assert_eq!(human(Duration::from_millis(1000)), "1 s");
        assert_eq!(human(Duration::from_millis(4500)), "4.5 s");
    }

    #[test]
    fn zones_are_signed_hours_and_minutes() {
        assert_eq!(zone_text(7 * 3600), "UTC+07:00");
        assert_eq!(zone_text(-(3 * 3600 + 1800)), "UTC-03:30");
        assert_eq!(zone_text(0), "UTC+00:00");
    }

    #[test]
    fn lines_are_listed_escaped() {
        assert_eq!(
            show_lines(&[b"JAM 01:02:03\r\n".to_vec(), b"x\n".to_vec()]),
            "\"JAM 01:02:03\\r\\n\", \"x\\n\""
        );
        assert_eq!(lines_word(1), "1 line");
        assert_eq!(lines_word(2), "2 lines");
    }
}
