//! A connection's one deadline rule set, pure: from when things last happened and the limits, the
//! list of armed rules with the instant each fires. Arming (the earliest of the list) and firing
//! (those of the list that have passed) both read this list, so they cannot disagree, and each rule
//! is tested here by moving an explicit clock, without sockets or sleeps.

use std::time::{Duration, Instant};

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

/// The limits the rules apply; a zero timeout is off.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `--idle-timeout`.
    pub(super) idle: Duration,
    /// `--line-timeout` (also the PROXY header's, when on).
    pub(super) line: Duration,
    /// `--write-timeout`.
    pub(super) write: Duration,
}

/// Where a connection is, as far as its timers care.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stage {
    /// Waiting for the PROXY header.
    Header,
    /// A jam session.
    Serving {
        /// The last complete request (or the start of the session).
        last_request: Instant,
        /// A line was started and not finished.
        line_started: Option<Instant>,
        /// Counts not yet handed over, since the last hand-over.
        uncounted_since: Option<Instant>,
        /// Draining, and reads have found the queue empty since.
        quiet_since: Option<Instant>,
    },
    /// On the close path; lingering until an instant once the sending side is shut.
    Closing {
        /// The end of the linger.
        linger_until: Option<Instant>,
    },
}

/// When things last happened on one connection: everything the rules read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clocks {
    /// When the connection was accepted.
    pub(super) opened: Instant,
    /// Output waits, and the last progress writing it (or when it began to wait).
    pub(super) write_waiting: Option<Instant>,
    /// Where the connection is.
    pub(super) stage: Stage,
}

/// How long a PROXY header may take.
pub(super) fn header_limit(line_timeout: Duration) -> Duration {
    match line_timeout {
        Duration::ZERO => PROXY_HEADER_TIMEOUT,
        limit => limit,
    }
}

/// When a receive queue found empty at `quiet_since` has been quiet long enough for a draining
/// session to end: the drain rule, which the read that finds the queue still empty applies too.
pub(super) fn drain_end(quiet_since: Instant) -> Instant {
    quiet_since + DRAIN_QUIET
}

/// The earlier of two optional instants.
#[inline(always)]
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The instant `limit` after `start`, unless the limit is off (zero).
#[inline(always)]
fn after(start: Instant, limit: Duration) -> Option<Instant> {
    (!limit.is_zero()).then(|| start + limit)
}

impl Clocks {
    /// Every rule with the instant it fires (`None`: not armed), in the order they are acted on.
    /// Inlined: the event loop asks for [`Clocks::next`] after every event, and inlined, the
    /// list folds into a few comparisons instead of being built and walked.
    #[inline(always)]
    pub(super) fn rules(&self, limits: &Limits) -> [(Rule, Option<Instant>); 5] {
        let write = (
            Rule::Write,
            self.write_waiting.and_then(|at| after(at, limits.write)),
        );
        match self.stage {
            Stage::Header => [
                write,
                (Rule::Header, Some(self.opened + header_limit(limits.line))),
                (Rule::Count, None),
                (Rule::Line, None),
                (Rule::Idle, None),
            ],
            Stage::Serving {
                last_request,
                line_started,
                uncounted_since,
                quiet_since,
            } => [
                write,
                (Rule::Count, uncounted_since.map(|at| at + COUNT_EVERY)),
                (
                    Rule::Line,
                    line_started.and_then(|at| after(at, limits.line)),
                ),
                (Rule::Idle, after(last_request, limits.idle)),
                (Rule::Drain, quiet_since.map(drain_end)),
            ],
            Stage::Closing { linger_until } => [
                write,
                (Rule::Linger, linger_until),
                (Rule::Count, None),
                (Rule::Line, None),
                (Rule::Idle, None),
            ],
        }
    }

    /// The earliest instant a rule fires: what the event loop arms.
    #[inline(always)]
    pub(super) fn next(&self, limits: &Limits) -> Option<Instant> {
        // A fold over the fixed-size list by reference: it unrolls into plain comparisons.
        self.rules(limits)
            .iter()
            .fold(None, |next, &(_, at)| earliest(next, at))
    }

    /// The rules that have fired by `now`, in the order to act on them.
    pub(super) fn due(&self, limits: &Limits, now: Instant) -> impl Iterator<Item = Rule> {
        self.rules(limits)
            .into_iter()
            .filter(move |(_, at)| at.is_some_and(|at| at <= now))
            .map(|(rule, _)| rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        idle: Duration::from_secs(300),
        line: Duration::from_secs(30),
        write: Duration::from_secs(30),
    };

    fn serving(t0: Instant) -> Clocks {
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
    fn around(clocks: &Clocks, limits: &Limits, at: Instant) -> (Vec<Rule>, Vec<Rule>) {
        let before = clocks.due(limits, at - Duration::from_millis(1)).collect();
        (before, clocks.due(limits, at).collect())
    }

    #[test]
    fn idle_fires_an_idle_timeout_after_the_last_complete_request() {
        let t0 = Instant::now();
        let clocks = serving(t0);
        assert_eq!(clocks.next(&LIMITS), Some(t0 + LIMITS.idle));
        let (before, at) = around(&clocks, &LIMITS, t0 + LIMITS.idle);
        assert_eq!((before, at), (vec![], vec![Rule::Idle]));
        let off = Limits {
            idle: Duration::ZERO,
            ..LIMITS
        };
        assert_eq!(clocks.next(&off), None, "0 is off");
        assert_eq!(
            clocks.due(&off, t0 + Duration::from_secs(86_400)).count(),
            0
        );
    }

    #[test]
    fn line_fires_a_line_timeout_after_a_line_was_started_and_goes_before_idle() {
        let t0 = Instant::now();
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
            Some(started + LIMITS.line).min(Some(t0 + LIMITS.idle))
        );
        let (before, at) = around(&clocks, &LIMITS, started + LIMITS.line);
        assert_eq!(before, vec![Rule::Idle], "the idle timeout came first");
        assert_eq!(
            at,
            vec![Rule::Line, Rule::Idle],
            "a line timeout is acted on first"
        );
        let off = Limits {
            line: Duration::ZERO,
            ..LIMITS
        };
        assert!(
            !clocks
                .due(&off, started + Duration::from_secs(3600))
                .any(|r| r == Rule::Line)
        );
    }

    #[test]
    fn write_fires_when_waiting_output_made_no_progress_in_any_stage() {
        let t0 = Instant::now();
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
            let (before, at) = around(&clocks, &LIMITS, progress + LIMITS.write);
            assert!(!before.contains(&Rule::Write), "{stage:?}");
            assert_eq!(at.first(), Some(&Rule::Write), "{stage:?}: acted on first");
        }
        let nothing_waits = serving(t0);
        assert!(
            !nothing_waits
                .due(&LIMITS, t0 + LIMITS.write)
                .any(|r| r == Rule::Write)
        );
    }

    #[test]
    fn header_fires_after_the_line_timeout_or_thirty_seconds_when_that_is_off() {
        let t0 = Instant::now();
        let clocks = Clocks {
            opened: t0,
            write_waiting: None,
            stage: Stage::Header,
        };
        let (before, at) = around(&clocks, &LIMITS, t0 + LIMITS.line);
        assert_eq!((before, at), (vec![], vec![Rule::Header]));
        let off = Limits {
            line: Duration::ZERO,
            ..LIMITS
        };
        assert_eq!(clocks.next(&off), Some(t0 + PROXY_HEADER_TIMEOUT));
        assert_eq!(header_limit(Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn count_fires_a_second_after_counts_began_to_wait() {
        let t0 = Instant::now();
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
        let t0 = Instant::now();
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
        let t0 = Instant::now();
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
            !clocks
                .due(&LIMITS, t0 + LIMITS.idle)
                .any(|r| r == Rule::Idle),
            "no idle timeout while closing"
        );
    }

    #[test]
    fn the_next_deadline_is_the_earliest_armed_rule() {
        let t0 = Instant::now();
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
}
