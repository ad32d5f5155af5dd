//! Where the time comes from: a [`Clock`] trait (the system clock, or a test clock), and the
//! [`LocalClock`] that turns it into the local time of day for a time zone, computed once per second
//! and shared by every connection.

use std::cell::Cell;
use std::sync::Arc;
#[cfg(any(test, feature = "test-util"))]
use std::sync::atomic::AtomicI64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Re-exported: the clock API speaks jiff's instants, durations and zones.
pub use jiff::tz::TimeZone;
pub use jiff::{SignedDuration, Timestamp};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock instant.
    fn now(&self) -> Timestamp;

    /// Whether this clock runs with the system's monotonic clock (apart from steps), so that a
    /// reading's second lasts as long on the monotonic clock as what is left of it
    /// ([`ReplyClock`] relies on this; a clock moved by hand is not steady).
    fn steady(&self) -> bool {
        false
    }
}

/// The operating system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn steady(&self) -> bool {
        true
    }
}

/// A clock that only moves when told to: for tests of second boundaries, DST and clock steps. A
/// test double, so only in the library's own tests and with the `test-util` feature.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicI64,
}

#[cfg(any(test, feature = "test-util"))]
impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock {
            nanos: AtomicI64::new(to_nanos(at)),
        }
    }

    /// Moves the clock to `at` (forwards or backwards, like an NTP step).
    pub fn set(&self, at: Timestamp) {
        self.nanos.store(to_nanos(at), Ordering::SeqCst);
    }

    /// Moves the clock by `by`.
    pub fn advance(&self, by: SignedDuration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-util"))]
fn to_nanos(at: Timestamp) -> i64 {
    i64::try_from(at.as_nanosecond()).unwrap_or(i64::MAX)
}

#[cfg(any(test, feature = "test-util"))]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanosecond(i128::from(self.nanos.load(Ordering::SeqCst)))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// The system clock shifted by a fixed offset: a server whose clock is deliberately wrong.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: SignedDuration,
}

impl OffsetClock {
    /// The system clock plus `offset`.
    pub fn new(offset: SignedDuration) -> Self {
        OffsetClock { offset }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
            .saturating_add(self.offset)
            .unwrap_or(Timestamp::MAX)
    }

    fn steady(&self) -> bool {
        true
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn steady(&self) -> bool {
        (**self).steady()
    }
}

/// A time of day, hours 0–23, minutes and seconds 0–59.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    hour: u8,
    minute: u8,
    second: u8,
}

impl TimeOfDay {
    /// A time of day, or `None` if a field is out of range.
    pub fn new(hour: u8, minute: u8, second: u8) -> Option<Self> {
        (hour < 24 && minute < 60 && second < 60).then_some(TimeOfDay {
            hour,
            minute,
            second,
        })
    }

    /// The time as the eight bytes `hh:mm:ss`.
    pub fn hh_mm_ss(self) -> [u8; 8] {
        let two = |n: u8| [b'0' + n / 10, b'0' + n % 10];
        let [h1, h0] = two(self.hour);
        let [m1, m0] = two(self.minute);
        let [s1, s0] = two(self.second);
        [h1, h0, b':', m1, m0, b':', s1, s0]
    }

    /// Hours, 0–23.
    pub fn hour(self) -> u8 {
        self.hour
    }

    /// Minutes, 0–59.
    pub fn minute(self) -> u8 {
        self.minute
    }

    /// Seconds, 0–59.
    pub fn second(self) -> u8 {
        self.second
    }

    /// Packs the time into 17 bits (seconds since midnight) for the cache word.
    fn pack(self) -> u64 {
        u64::from(self.hour) * 3600 + u64::from(self.minute) * 60 + u64::from(self.second)
    }

    fn unpack(bits: u64) -> Self {
        // Only values made by `pack` reach here, so each field is in range.
        TimeOfDay {
            hour: (bits / 3600) as u8,
            minute: (bits / 60 % 60) as u8,
            second: (bits % 60) as u8,
        }
    }
}

const TIME_BITS: u32 = 17;
/// The cache word before the first read: its key, all ones, is no second jiff can represent.
const EMPTY: u64 = u64::MAX;

/// A clock read in a time zone: the local time of day at the clock's current second.
///
/// Converting an instant to local time means a time-zone lookup; the answer only changes once a
/// second, so it is cached in one atomic word, keyed by the Unix second it belongs to. Every
/// reader compares the second and reuses the cached answer; the first reader of a new second
/// computes and publishes it. Because the key is the exact Unix second, the cached value flips
/// at the second boundary and follows DST changes and clock steps at once.
pub struct LocalClock {
    clock: Arc<dyn Clock>,
    zone: TimeZone,
    cache: AtomicU64,
}

impl std::fmt::Debug for LocalClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClock")
            .field("zone", &zone_name(&self.zone))
            .finish_non_exhaustive()
    }
}

impl LocalClock {
    /// Reads `clock` in time zone `zone`.
    pub fn new(clock: Arc<dyn Clock>, zone: TimeZone) -> Self {
        LocalClock {
            clock,
            zone,
            cache: AtomicU64::new(EMPTY),
        }
    }

    /// The system clock in the system's local time zone.
    pub fn system() -> Self {
        LocalClock::new(Arc::new(SystemClock), TimeZone::system())
    }

    /// The time zone in use.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The instant now, from the underlying clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The local time of day now: one read of the underlying clock.
    pub fn time_of_day(&self) -> TimeOfDay {
        self.time_of_day_at(self.clock.now())
    }

    /// The local time of day at `now`.
    fn time_of_day_at(&self, now: Timestamp) -> TimeOfDay {
        // Instants before 1970 skip the cache. jiff's instants end in the year 9999, under 2^38
        // seconds, so every other second fits in the cache word above the time.
        let Ok(key) = u64::try_from(now.as_second()) else {
            return self.convert(now);
        };
        if let Some(time) = self.cached(key) {
            return time;
        }
        let time = self.convert(now);
        self.remember(key, time);
        time
    }

    /// The cached time of day, if the cache holds second `key`'s.
    fn cached(&self, key: u64) -> Option<TimeOfDay> {
        let word = self.cache.load(Ordering::Relaxed);
        (word >> TIME_BITS == key).then(|| TimeOfDay::unpack(word & ((1 << TIME_BITS) - 1)))
    }

    /// Caches `time` as the time of day of second `key`.
    fn remember(&self, key: u64, time: TimeOfDay) {
        self.cache
            .store(key << TIME_BITS | time.pack(), Ordering::Relaxed);
    }

    fn convert(&self, now: Timestamp) -> TimeOfDay {
        let civil = self.zone.to_datetime(now);
        TimeOfDay {
            hour: civil.hour() as u8,
            minute: civil.minute() as u8,
            second: civil.second() as u8,
        }
    }
}

/// Where a reply's time of day comes from: a clock read on each call, or one reading kept.
pub trait TimeOfDaySource {
    /// The local time of day now.
    fn time_of_day(&self) -> TimeOfDay;
}

impl TimeOfDaySource for LocalClock {
    fn time_of_day(&self) -> TimeOfDay {
        LocalClock::time_of_day(self)
    }
}

/// A reading of the time of day kept until its second ends, for one thread's replies.
///
/// Reading the system clock and converting it costs about 150 instructions, as much as the rest of
/// a request at depth 1; asking the monotonic clock whether the second read last is over costs
/// about 35. It relies on the clock being [`Clock::steady`]: the wall clock and the monotonic
/// clock advance together (NTP's slewing moves both), so a second read with `x` ns left ends `x`
/// ns later on the monotonic clock. A step of the system clock shows in replies once the second
/// it was read in is over, within a second. A clock that is not steady is read on every call.
pub struct ReplyClock<'a> {
    clock: &'a LocalClock,
    kept: &'a Cell<Option<(TimeOfDay, Instant)>>,
}

impl<'a> ReplyClock<'a> {
    /// Reads `clock`, keeping the reading in `kept` (one per thread, empty at first).
    pub fn new(clock: &'a LocalClock, kept: &'a Cell<Option<(TimeOfDay, Instant)>>) -> Self {
        ReplyClock { clock, kept }
    }
}

impl TimeOfDaySource for ReplyClock<'_> {
    #[inline]
    fn time_of_day(&self) -> TimeOfDay {
        // Read before the wall clock, so the second is taken to end no later than it does.
        let mono = Instant::now();
        if let Some((time, until)) = self.kept.get()
            && mono < until
        {
            return time;
        }
        let now = self.clock.now();
        let time = self.clock.time_of_day_at(now);
        // What is left of the second read (none before 1970, where subsec is negative).
        let left = u64::try_from(now.subsec_nanosecond())
            .ok()
            .filter(|_| self.clock.clock.steady())
            .map(|into| 1_000_000_000 - into);
        self.kept
            .set(left.map(|left| (time, mono + Duration::from_nanos(left))));
        time
    }
}

/// A human-readable name for a time zone: its IANA name when known.
pub fn zone_name(zone: &TimeZone) -> String {
    match zone.iana_name() {
        Some(name) => name.to_string(),
        None => format!("{zone:?}"),
    }
}

/// Errors choosing a time zone.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The name is not in the time-zone database.
    #[error("unknown time zone {name:?} (use an IANA name such as Asia/Jakarta or Europe/Paris)")]
    Unknown {
        /// The name that was asked for.
        name: String,
        /// Why the lookup failed.
        #[source]
        source: jiff::Error,
    },
}

/// Looks up an IANA time zone by name (`Asia/Jakarta`, `UTC`).
pub fn zone_by_name(name: &str) -> Result<TimeZone, ZoneError> {
    TimeZone::get(name).map_err(|source| ZoneError::Unknown {
        name: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    fn local(clock: &Arc<ManualClock>, zone: &str) -> LocalClock {
        LocalClock::new(clock.clone(), zone_by_name(zone).expect("zone exists"))
    }

    fn text(t: TimeOfDay) -> String {
        String::from_utf8(t.hh_mm_ss().to_vec()).expect("ascii")
    }

    #[test]
    fn formats_zero_padded_24_hour_time() {
        let clock = Arc::new(ManualClock::new(at("2026-01-01T08:05:09Z")));
        assert_eq!(text(local(&clock, "UTC").time_of_day()), "08:05:09");
        clock.set(at("2026-01-01T23:59:59.999Z"));
        assert_eq!(text(local(&clock, "UTC").time_of_day()), "23:59:59");
    }

    #[test]
    fn a_time_of_day_gives_back_its_hour_minute_and_second() {
        let t = TimeOfDay::new(23, 59, 7).expect("valid");
        assert_eq!((t.hour(), t.minute(), t.second()), (23, 59, 7));
        assert_eq!(TimeOfDay::new(24, 0, 0), None);
        assert_eq!(TimeOfDay::new(0, 60, 0), None);
        assert_eq!(TimeOfDay::new(0, 0, 60), None);
    }

    #[test]
    fn cached_value_flips_exactly_at_the_second_boundary() {
        let clock = Arc::new(ManualClock::new(at("2026-05-01T10:00:00.999999999Z")));
        let jakarta = local(&clock, "Asia/Jakarta");
        assert_eq!(text(jakarta.time_of_day()), "17:00:00");
        assert_eq!(text(jakarta.time_of_day()), "17:00:00");
        clock.advance(SignedDuration::from_nanos(1));
        assert_eq!(text(jakarta.time_of_day()), "17:00:01");
    }

    #[test]
    fn follows_dst_spring_forward_and_fall_back() {
        let clock = Arc::new(ManualClock::new(at("2025-03-09T06:59:59Z")));
        let ny = local(&clock, "America/New_York");
        assert_eq!(text(ny.time_of_day()), "01:59:59");
        clock.set(at("2025-03-09T07:00:00Z"));
        assert_eq!(text(ny.time_of_day()), "03:00:00");
        clock.set(at("2025-11-02T05:59:59Z"));
        assert_eq!(text(ny.time_of_day()), "01:59:59");
        clock.set(at("2025-11-02T06:00:00Z"));
        assert_eq!(text(ny.time_of_day()), "01:00:00");
        clock.set(at("2025-11-02T06:59:59Z"));
        assert_eq!(text(ny.time_of_day()), "01:59:59");
    }

    #[test]
    fn follows_a_backward_clock_step() {
        let clock = Arc::new(ManualClock::new(at("2026-07-01T12:00:00Z")));
        let utc = local(&clock, "UTC");
        assert_eq!(text(utc.time_of_day()), "12:00:00");
        clock.advance(SignedDuration::from_hours(-1));
        assert_eq!(text(utc.time_of_day()), "11:00:00");
    }

    #[test]
    fn times_before_1970_are_still_correct() {
        let clock = Arc::new(ManualClock::new(at("1969-07-20T20:17:40Z")));
        assert_eq!(text(local(&clock, "UTC").time_of_day()), "20:17:40");
    }

    /// Whether `a` and `b` are within five seconds of each other.
    fn close(a: Timestamp, b: Timestamp) -> bool {
        a.duration_since(b).abs() < SignedDuration::from_secs(5)
    }

    #[test]
    fn the_system_clock_reads_the_operating_systems_time() {
        let os = Timestamp::try_from(std::time::SystemTime::now()).expect("after 1970");
        assert!(close(SystemClock.now(), os));
        assert!(close(LocalClock::system().now(), os));
    }

    #[test]
    fn an_offset_clock_is_the_system_clock_plus_its_offset() {
        let offset = SignedDuration::from_hours(3);
        let shifted = OffsetClock::new(offset).now();
        let expected = SystemClock.now().checked_add(offset).expect("in range");
        assert!(close(shifted, expected), "{shifted} vs {expected}");
    }

    #[test]
    fn a_local_clock_gives_its_zone_and_the_instant_of_its_clock() {
        let clock = Arc::new(ManualClock::new(at("2026-05-01T10:00:00Z")));
        let jakarta = local(&clock, "Asia/Jakarta");
        assert_eq!(zone_name(jakarta.zone()), "Asia/Jakarta");
        assert_eq!(jakarta.now(), at("2026-05-01T10:00:00Z"));
    }

    #[test]
    fn unknown_zone_is_a_clear_error() {
        let err = zone_by_name("Mars/Olympus_Mons").expect_err("no such zone");
        assert!(
            err.to_string()
                .contains("unknown time zone \"Mars/Olympus_Mons\"")
        );
    }

    /// A clock moved by hand that claims to run with the monotonic clock.
    struct Steady(Arc<ManualClock>);

    impl Clock for Steady {
        fn now(&self) -> Timestamp {
            self.0.now()
        }

        fn steady(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_reply_clock_keeps_a_steady_clocks_second_until_it_ends_on_the_monotonic_clock() {
        let manual = Arc::new(ManualClock::new(at("2026-01-01T08:05:09Z")));
        let clock = LocalClock::new(
            Arc::new(Steady(manual.clone())),
            zone_by_name("UTC").expect("zone"),
        );
        let kept = Cell::new(None);
        let reply = ReplyClock::new(&clock, &kept);
        let nine = TimeOfDay::new(8, 5, 9).expect("time");
        assert_eq!(reply.time_of_day(), nine);
        // A step: not seen while the monotonic second lasts (a whole second, from .000).
        manual.set(at("2026-01-01T10:00:00Z"));
        assert_eq!(reply.time_of_day(), nine, "kept");
        // Read one nanosecond before its end, a second is over at the next call.
        manual.set(at("2026-01-01T08:05:09.999999999Z"));
        kept.set(None);
        assert_eq!(reply.time_of_day(), nine);
        manual.set(at("2026-01-01T08:05:10Z"));
        assert_eq!(reply.time_of_day(), TimeOfDay::new(8, 5, 10).expect("time"));
    }

    #[test]
    fn a_reply_clock_reads_a_clock_moved_by_hand_every_time() {
        let manual = Arc::new(ManualClock::new(at("2026-01-01T08:05:09Z")));
        let clock = local(&manual, "UTC");
        let kept = Cell::new(None);
        let reply = ReplyClock::new(&clock, &kept);
        assert_eq!(reply.time_of_day(), TimeOfDay::new(8, 5, 9).expect("time"));
        manual.set(at("2026-01-01T08:05:10Z"));
        assert_eq!(reply.time_of_day(), TimeOfDay::new(8, 5, 10).expect("time"));
        assert_eq!(kept.get(), None, "nothing kept");
    }
}
