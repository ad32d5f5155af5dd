//! What a listener speaks: the jam protocol, or one of the standard time services that answer as
//! soon as a client connects and then close (RFC 868 Time, RFC 867 Daytime).
//!
//! The standard services share everything else with jam sessions: the connection limit, the
//! logs, the write timeout, the lingering close and shutdown.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The protocol spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The jam line protocol (`TIME` → `JAM hh:mm:ss`).
    Jam,
    /// RFC 868 Time: four bytes, seconds since 1900-01-01 00:00 UTC, big-endian, then close.
    Time,
    /// RFC 867 Daytime: one human-readable line with the date and time, then close.
    Daytime,
}

impl Service {
    /// Every service's name in metrics and logs, in declaration order.
    pub const LABELS: [&'static str; 3] = ["jam", "rfc868", "daytime"];

    /// The service's name in metrics (`service` label) and logs (`service` field): one word.
    pub fn label(self) -> &'static str {
        Self::LABELS[self as usize]
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Jam => "jam",
            Service::Time => "rfc868-time",
            Service::Daytime => "rfc867-daytime",
        })
    }
}

/// Seconds from RFC 868's epoch, 1900-01-01 00:00 UTC, to the Unix epoch.
const SECONDS_1900_TO_1970: i64 = 2_208_988_800;

/// The RFC 868 answer for `now`: seconds since 1900 as 32 bits, big-endian.
///
/// 32 bits run out on 2036-02-07 06:28:16 UTC. Like NTP, the count then wraps to 0 (the next
/// "era"), so the answer is the time modulo 2^32 s (about 136 years). A client that assumes the
/// first era reads a wrapped value as 1900; the remedy, as in NTP, is to read small values as the
/// next era.
pub(crate) fn rfc868_answer(now: Timestamp) -> [u8; 4] {
    let since_1900 = now.as_second() + SECONDS_1900_TO_1970;
    let wrapped = since_1900.rem_euclid(1 << 32);
    u32::try_from(wrapped).unwrap_or(0).to_be_bytes()
}

/// The RFC 867 answer for `now` in `zone`: one line ending in CR LF, such as
/// `Sunday, 22 November 2026 19:45:01 +07:00 (Asia/Jakarta)`.
///
/// RFC 867 leaves the format free; this one is unambiguous for people (weekday, day, month name,
/// four-digit year, 24-hour time) and carries the UTC offset, so scripts can parse it too.
pub(crate) fn daytime_answer(now: Timestamp, zone: &TimeZone) -> String {
    let zoned = now.to_zoned(zone.clone());
    format!(
        "{} ({})\r\n",
        zoned.strftime("%A, %-d %B %Y %H:%M:%S %:z"),
        crate::clock::zone_name(zone)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn rfc868_counts_seconds_from_1900_big_endian() {
        assert_eq!(
            rfc868_answer(at("1970-01-01T00:00:00Z")),
            2_208_988_800u32.to_be_bytes()
        );
        // RFC 868's own examples: 1976-01-01 is 2,398,291,200.
        assert_eq!(
            rfc868_answer(at("1976-01-01T00:00:00Z")),
            2_398_291_200u32.to_be_bytes()
        );
    }

    #[test]
    fn rfc868_wraps_at_the_2036_era_boundary() {
        assert_eq!(
            rfc868_answer(at("2036-02-07T06:28:15Z")),
            u32::MAX.to_be_bytes()
        );
        assert_eq!(rfc868_answer(at("2036-02-07T06:28:16Z")), [0, 0, 0, 0]);
        assert_eq!(
            rfc868_answer(at("2036-02-07T06:28:17Z")),
            1u32.to_be_bytes()
        );
    }

    #[test]
    fn daytime_is_one_readable_line_with_offset_and_zone() {
        let zone = TimeZone::get("Asia/Jakarta").expect("zone");
        assert_eq!(
            daytime_answer(at("2026-11-22T12:45:01Z"), &zone),
            "Sunday, 22 November 2026 19:45:01 +07:00 (Asia/Jakarta)\r\n"
        );
        assert_eq!(
            daytime_answer(at("2026-03-05T08:05:09Z"), &TimeZone::UTC),
            "Thursday, 5 March 2026 08:05:09 +00:00 (UTC)\r\n"
        );
    }
}
