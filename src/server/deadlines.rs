//! A connection's one deadline rule set, pure: from when things last happened and the limits, the
//! list of armed rules with the instant each fires. Arming (the earliest of the list) and firing
//! (those of the list that have passed) both read this list, so they cannot disagree, and each rule
//! is tested here by moving an explicit clock, without sockets or sleeps.

use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

/// An instant on an event loop's monotonic clock: nanoseconds since the server's [`Epoch`].
///
/// The rules run after every event, and `Instant` arithmetic checks for overflow and normalises
/// nanoseconds on every add and subtract (about 140 instructions per request in the rules when
/// they read `Instant`s); a tick is one integer, so adding and comparing are single instructions.
/// It relies on a server not running for 584 years (u64 nanoseconds); past that, it saturates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(u64);

impl Tick {
    /// Later than any instant: a rule that is not armed fires then, that is, never.
    pub(crate) const NEVER: Tick = Tick(u64::MAX);

    /// `nanos` nanoseconds after the epoch (tests give explicit instants this way).
    #[cfg(test)]
    pub(crate) const fn from_nanos(nanos: u64) -> Tick {
        Tick(nanos)
    }
}

impl Add<Duration> for Tick {
    type Output = Tick;

    #[inline(always)]
    fn add(self, d: Duration) -> Tick {
        Tick(self.0.saturating_add(nanos(d)))
    }
}

impl Sub<Duration> for Tick {
    type Output = Tick;

    #[inline(always)]
    fn sub(self, d: Duration) -> Tick {
        Tick(self.0.saturating_sub(nanos(d)))
    }
}

impl Sub for Tick {
    type Output = Duration;

    /// The time from `earlier` to `self` (zero if `earlier` is later).
    #[inline(always)]
    fn sub(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Span> for Tick {
    type Output = Tick;

    #[inline(always)]
    fn add(self, span: Span) -> Tick {
        Tick(self.0.saturating_add(span.0))
    }
}

#[inline(always)]
const fn nanos(d: Duration) -> u64 {
    let n = d.as_nanos();
    if n > u64::MAX as u128 {
        u64::MAX
    } else {
        n as u64
    }
}

/// A limit as the rules add it to a tick: nanoseconds, with a limit that is off as the largest
/// value, so that adding it saturates to [`Tick::NEVER`]. Every rule is then one add and the
/// earliest one a minimum, with no branch for "is this limit on".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span(u64);

impl Span {
    /// A limit where zero means off (the command line's timeouts).
    pub(super) const fn limit(d: Duration) -> Span {
        match nanos(d) {
            0 => Span(u64::MAX),
            n => Span(n),
        }
    }

    /// A fixed period, never off.
    const fn fixed(d: Duration) -> Span {
        Span(nanos(d))
    }
}

/// The instant ticks count from (the server's start), reading the system's clock where the loop
/// meets it: once per turn, and to size its wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    /// Ticks counted from now.
    pub(crate) fn now() -> Epoch {
        Epoch(Instant::now())
    }

    /// `at` as a tick (instants before the epoch are tick 0).
    pub(crate) fn tick(&self, at: Instant) -> Tick {
        Tick(nanos(at.saturating_duration_since(self.0)))
    }

    /// The current tick.
    pub(crate) fn now_tick(&self) -> Tick {
        self.tick(Instant::now())
    }
}

/// How long a PROXY header may take when the line timeout is off.
pub(super) const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a busy session hands its counts to the metrics (also on close): per-request
/// counting stays in the session, so the shared counters cost nothing per request.
pub(super) const COUNT_EVERY: Duration = Duration::from_secs(1);

/// While the server drains, how long a session's receive queue must stay empty before its
/// requests count as all arrived. One empty read alone does not say it: bytes the client wrote
/// before the shutdown may still sit in its own send buffer, waiting for the window that read
/// just opened.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

const COUNT_SPAN: Span = Span::fixed(COUNT_EVERY);

/// A timeout rule, in the order a connection acts on those that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// Output waited a whole write timeout without progress: close at once (nothing more can be
    /// sent).
    Write,
    /// The PROXY header did not come in time.
    Header,
    /// Time to hand the session's counts to the metrics.
    Count,
    /// A started line was not finished within the line timeout.
    Line,
    /// No complete request within the idle timeout (a blank line is none).
    Idle,
    /// Draining: the receive queue has been empty long enough; the next read decides.
    Drain,
    /// The close path's linger is over.
    Linger,
}

/// The limits the rules apply, made once from the timeouts (a zero timeout is off).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `--idle-timeout`.
    idle: Span,
    /// `--line-timeout`.
    line: Span,
    /// `--write-timeout`.
    write: Span,
    /// The PROXY header's: the line timeout, or [`PROXY_HEADER_TIMEOUT`] when that is off.
    header: Span,
}

impl Limits {
    /// The limits for these timeouts.
    pub(super) const fn new(idle: Duration, line: Duration, write: Duration) -> Limits {
        Limits {
            idle: Span::limit(idle),
            line: Span::limit(line),
            write: Span::limit(write),
            header: Span::fixed(header_limit(line)),
        }
    }
}

/// Where a connection is, as far as its timers care.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stage {
    /// Waiting for the PROXY header.
    Header,
    /// A jam session.
    Serving {
        /// The last complete request (or the start of the session).
        last_request: Tick,
        /// A line was started and not finished.
        line_started: Option<Tick>,
        /// Counts not yet handed over, since the last hand-over.
        uncounted_since: Option<Tick>,
        /// Draining, and reads have found the queue empty since.
        quiet_since: Option<Tick>,
    },
    /// On the close path; lingering until an instant once the sending side is shut.
    Closing {
        /// The end of the linger.
        linger_until: Option<Tick>,
    },
}

/// When things last happened on one connection: everything the rules read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clocks {
    /// When the connection was accepted.
    pub(super) opened: Tick,
    /// Output waits, and the last progress writing it (or when it began to wait).
    pub(super) write_waiting: Option<Tick>,
    /// Where the connection is.
    pub(super) stage: Stage,
}

/// How long a PROXY header may take.
pub(super) const fn header_limit(line_timeout: Duration) -> Duration {
    if line_timeout.is_zero() {
        PROXY_HEADER_TIMEOUT
    } else {
        line_timeout
    }
}

/// When a receive queue found empty at `quiet_since` has been quiet long enough for a draining
/// session to end: the drain rule, which the read that finds the queue still empty applies too.
pub(super) fn drain_end(quiet_since: Tick) -> Tick {
    quiet_since + DRAIN_QUIET
}

/// When an optional instant plus `span` comes ([`Tick::NEVER`] for none).
#[inline(always)]
fn after(start: Option<Tick>, span: Span) -> Tick {
    match start {
        Some(at) => at + span,
        None => Tick::NEVER,
    }
}

impl Clocks {
    /// Every rule with the instant it fires ([`Tick::NEVER`]: not armed), in the order they are
    /// acted on. Inlined: the event loop asks for [`Clocks::next`] after every event, and
    /// inlined, the list folds into a few adds and minimums instead of being built and walked.
    #[inline(always)]
    pub(super) fn rules(&self, limits: &Limits) -> [(Rule, Tick); 5] {
        let write = (Rule::Write, after(self.write_waiting, limits.write));
        let unused = |rule| (rule, Tick::NEVER);
        match self.stage {
            Stage::Header => [
                write,
                (Rule::Header, self.opened + limits.header),
                unused(Rule::Count),
                unused(Rule::Line),
                unused(Rule::Idle),
            ],
            Stage::Serving {
                last_request,
                line_started,
                uncounted_since,
                quiet_since,
            } => [
                write,
                (Rule::Count, after(uncounted_since, COUNT_SPAN)),
                (Rule::Line, after(line_started, limits.line)),
                (Rule::Idle, last_request + limits.idle),
                (Rule::Drain, quiet_since.map_or(Tick::NEVER, drain_end)),
            ],
            Stage::Closing { linger_until } => [
                write,
                (Rule::Linger, linger_until.unwrap_or(Tick::NEVER)),
                unused(Rule::Count),
                unused(Rule::Line),
                unused(Rule::Idle),
            ],
        }
    }

    /// The earliest instant a rule fires: what the event loop arms.
    #[inline(always)]
    pub(super) fn next(&self, limits: &Limits) -> Option<Tick> {
        // A fold over the fixed-size list by reference: it unrolls into plain minimums.
        let at = self
            .rules(limits)
            .iter()
            .fold(Tick::NEVER, |next, &(_, at)| next.min(at));
        (at != Tick::NEVER).then_some(at)
    }

    /// The rules that have fired by `now`, in the order to act on them.
    pub(super) fn due(&self, limits: &Limits, now: Tick) -> impl Iterator<Item = Rule> {
        self.rules(limits)
            .into_iter()
            .filter(move |&(_, at)| at <= now && at != Tick::NEVER)
            .map(|(rule, _)| rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Tick = Tick::from_nanos(1_000_000_000);

    const IDLE: Duration = Duration::from_secs(300);
    const LINE: Duration = Duration::from_secs(30);
    const WRITE: Duration = Duration::from_secs(30);
    const LIMITS: Limits = Limits::new(IDLE, LINE, WRITE);

    fn serving(t0: Tick) -> Clocks {
        Clocks {
            opened: t0,
            write_waiting: None,
            stage: Stage::Serving {
                last_request: t0,
                line_started: None,
                uncounted_since: None,
                quiet_since: None,
            },
        }
    }

    /// Moves a clock to just before and to `at`: the rules due at each.
    fn around(clocks: &Clocks, limits: &Limits, at: Tick) -> (Vec<Rule>, Vec<Rule>) {
        let before = clocks.due(limits, at - Duration::from_millis(1)).collect();
        (before, clocks.due(limits, at).collect())
    }

    #[test]
    fn idle_fires_an_idle_timeout_after_the_last_complete_request() {
        let t0 = T0;
        let clocks = serving(t0);
        assert_eq!(clocks.next(&LIMITS), Some(t0 + IDLE));
        let (before, at) = around(&clocks, &LIMITS, t0 + IDLE);
        assert_eq!((before, at), (vec![], vec![Rule::Idle]));
        let off = Limits::new(Duration::ZERO, LINE, WRITE);
        assert_eq!(clocks.next(&off), None, "0 is off");
        assert_eq!(
            clocks.due(&off, t0 + Duration::from_secs(86_400)).count(),
            0
        );
    }

    #[test]
    fn line_fires_a_line_timeout_after_a_line_was_started_and_goes_before_idle() {
        let t0 = T0;
        let started = t0 + Duration::from_secs(280);
        let mut clocks = serving(t0);
        clocks.stage = Stage::Serving {
            last_request: t0,
            line_started: Some(started),
            uncounted_since: None,
            quiet_since: None,
        };
        assert_eq!(
            clocks.next(&LIMITS),
            Some(started + LINE).min(Some(t0 + IDLE))
        );
        let (before, at) = around(&clocks, &LIMITS, started + LINE);
        assert_eq!(before, vec![Rule::Idle], "the idle timeout came first");
        assert_eq!(
            at,
            vec![Rule::Line, Rule::Idle],
            "a line timeout is acted on first"
        );
        let off = Limits::new(IDLE, Duration::ZERO, WRITE);
        assert!(
            !clocks
                .due(&off, started + Duration::from_secs(3600))
                .any(|r| r == Rule::Line)
        );
    }

    #[test]
    fn write_fires_when_waiting_output_made_no_progress_in_any_stage() {
        let t0 = T0;
        let progress = t0 + Duration::from_secs(5);
        for stage in [
            Stage::Header,
            serving(t0).stage,
            Stage::Closing { linger_until: None },
        ] {
            let clocks = Clocks {
                opened: t0,
                write_waiting: Some(progress),
                stage,
            };
            let (before, at) = around(&clocks, &LIMITS, progress + WRITE);
            assert!(!before.contains(&Rule::Write), "{stage:?}");
            assert_eq!(at.first(), Some(&Rule::Write), "{stage:?}: acted on first");
        }
        let nothing_waits = serving(t0);
        assert!(
            !nothing_waits
                .due(&LIMITS, t0 + WRITE)
                .any(|r| r == Rule::Write)
        );
    }

    #[test]
    fn header_fires_after_the_line_timeout_or_thirty_seconds_when_that_is_off() {
        let t0 = T0;
        let clocks = Clocks {
            opened: t0,
            write_waiting: None,
            stage: Stage::Header,
        };
        let (before, at) = around(&clocks, &LIMITS, t0 + LINE);
        assert_eq!((before, at), (vec![], vec![Rule::Header]));
        let off = Limits::new(IDLE, Duration::ZERO, WRITE);
        assert_eq!(clocks.next(&off), Some(t0 + PROXY_HEADER_TIMEOUT));
        assert_eq!(header_limit(Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn count_fires_a_second_after_counts_began_to_wait() {
        let t0 = T0;
        let since = t0 + Duration::from_millis(1500);
        let clocks = Clocks {
            stage: Stage::Serving {
                last_request: t0,
                line_started: None,
                uncounted_since: Some(since),
                quiet_since: None,
            },
            ..serving(t0)
        };
        assert_eq!(clocks.next(&LIMITS), Some(since + COUNT_EVERY));
        let (before, at) = around(&clocks, &LIMITS, since + COUNT_EVERY);
        assert_eq!((before, at), (vec![], vec![Rule::Count]));
    }

    #[test]
    fn drain_fires_once_the_queue_stayed_empty_while_draining() {
        let t0 = T0;
        let quiet = t0 + Duration::from_secs(2);
        let clocks = Clocks {
            stage: Stage::Serving {
                last_request: t0,
                line_started: None,
                uncounted_since: None,
                quiet_since: Some(quiet),
            },
            ..serving(t0)
        };
        assert_eq!(clocks.next(&LIMITS), Some(quiet + DRAIN_QUIET));
        let (before, at) = around(&clocks, &LIMITS, quiet + DRAIN_QUIET);
        assert_eq!((before, at), (vec![], vec![Rule::Drain]));
    }

    #[test]
    fn linger_fires_at_its_end_and_only_on_the_close_path() {
        let t0 = T0;
        let until = t0 + Duration::from_secs(2);
        let clocks = Clocks {
            opened: t0,
            write_waiting: None,
            stage: Stage::Closing {
                linger_until: Some(until),
            },
        };
        assert_eq!(clocks.next(&LIMITS), Some(until));
        let (before, at) = around(&clocks, &LIMITS, until);
        assert_eq!((before, at), (vec![], vec![Rule::Linger]));
        let not_yet = Clocks {
            stage: Stage::Closing { linger_until: None },
            ..clocks
        };
        assert_eq!(
            not_yet.next(&LIMITS),
            None,
            "nothing to wait for until shut down"
        );
        assert!(
            !clocks.due(&LIMITS, t0 + IDLE).any(|r| r == Rule::Idle),
            "no idle timeout while closing"
        );
    }

    #[test]
    fn the_next_deadline_is_the_earliest_armed_rule() {
        let t0 = T0;
        let clocks = Clocks {
            opened: t0,
            write_waiting: Some(t0 + Duration::from_secs(1)),
            stage: Stage::Serving {
                last_request: t0,
                line_started: Some(t0 + Duration::from_secs(2)),
                uncounted_since: Some(t0 + Duration::from_secs(40)),
                quiet_since: None,
            },
        };
        // write 31 s, line 32 s, count 41 s, idle 300 s.
        assert_eq!(clocks.next(&LIMITS), Some(t0 + Duration::from_secs(31)));
        let all: Vec<Rule> = clocks.due(&LIMITS, t0 + Duration::from_secs(300)).collect();
        assert_eq!(all, vec![Rule::Write, Rule::Count, Rule::Line, Rule::Idle]);
    }

    #[test]
    fn a_limit_that_is_off_never_fires_however_late_it_starts() {
        // 18,446,744,074 s: just past what u64 nanoseconds hold (not Duration::MAX, whose
        // nanoseconds wrap to exactly u64::MAX).
        let past_u64 = Duration::from_secs(u64::MAX / 1_000_000_000 + 1);
        assert_eq!(T0 + past_u64, Tick::NEVER, "saturates");
        let late = Tick::from_nanos(u64::MAX - 5);
        assert_eq!(late + Span::limit(Duration::ZERO), Tick::NEVER);
        assert_eq!(
            late + Span::limit(Duration::from_secs(1)),
            Tick::NEVER,
            "saturates"
        );
        assert_eq!(
            T0 + Span::limit(Duration::from_secs(1)),
            T0 + Duration::from_secs(1)
        );
        let clocks = serving(Tick::from_nanos(u64::MAX - 5));
        let off = Limits::new(Duration::ZERO, LINE, WRITE);
        assert_eq!(clocks.next(&off), None);
        assert_eq!(clocks.due(&off, Tick::from_nanos(u64::MAX - 1)).count(), 0);
    }

    #[test]
    fn ticks_subtract_to_durations_and_never_below_zero() {
        let later = T0 + Duration::from_millis(1500);
        assert_eq!(later - T0, Duration::from_millis(1500));
        assert_eq!(T0 - later, Duration::ZERO);
        assert_eq!(
            later - Duration::from_millis(500),
            T0 + Duration::from_secs(1)
        );
    }
}
