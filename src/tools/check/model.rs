//! The words `jam check` speaks in, without I/O: case ids, levels, statuses, what a case needs and
//! when it runs, why it was skipped, how it ended, and the run's settings. Every other module of
//! the checker builds on these; this one builds on none of them but the display helpers.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::display;
use crate::client::{ClientError, Target};

/// How much a case matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The assignment's own clauses, and TCP being a byte stream.
    Must,
    /// What real clients (nc, telnet, scripts) need from a server.
    Should,
    /// An observation; never fails.
    Info,
}

impl Level {
    /// `must`, `should` or `info`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Info => "info",
        }
    }
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The server did what the case asks (for info cases: the observation was made).
    Pass,
    /// The server did something else.
    Fail,
    /// The server did not answer in time.
    Timeout,
    /// The case did not judge: not selected, or an earlier, different bug is in the way.
    Skip,
}

impl Status {
    /// `pass`, `fail`, `timeout` or `skip`: the words of `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Timeout => "timeout",
            Status::Skip => "skip",
        }
    }
}

/// A case's id. The ids are an interface (`--only`, `--json`, JUnit): keep them stable. An enum,
/// so that a mistyped id does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaseId {
    /// `connect`
    Connect,
    /// `time-format`
    TimeFormat,
    /// `repeat`
    Repeat,
    /// `quit`
    Quit,
    /// `concurrent`
    Concurrent,
    /// `split-line`
    SplitLine,
    /// `pipelined`
    Pipelined,
    /// `time-correct`
    TimeCorrect,
    /// `many-clients`
    ManyClients,
    /// `unknown-command`
    UnknownCommand,
    /// `lf-only`
    LfOnly,
    /// `bad-bytes`
    BadBytes,
    /// `zone`
    Zone,
    /// `date`
    Date,
    /// `latency`
    Latency,
    /// `after-quit`
    AfterQuit,
}

impl CaseId {
    /// Every id, in the order the cases are reported.
    pub(crate) const ALL: [CaseId; 16] = [
        CaseId::Connect,
        CaseId::TimeFormat,
        CaseId::Repeat,
        CaseId::Quit,
        CaseId::Concurrent,
        CaseId::SplitLine,
        CaseId::Pipelined,
        CaseId::TimeCorrect,
        CaseId::ManyClients,
        CaseId::UnknownCommand,
        CaseId::LfOnly,
        CaseId::BadBytes,
        CaseId::Zone,
        CaseId::Date,
        CaseId::Latency,
        CaseId::AfterQuit,
    ];

    /// The id as written on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseId::Connect => "connect",
            CaseId::TimeFormat => "time-format",
            CaseId::Repeat => "repeat",
            CaseId::Quit => "quit",
            CaseId::Concurrent => "concurrent",
            CaseId::SplitLine => "split-line",
            CaseId::Pipelined => "pipelined",
            CaseId::TimeCorrect => "time-correct",
            CaseId::ManyClients => "many-clients",
            CaseId::UnknownCommand => "unknown-command",
            CaseId::LfOnly => "lf-only",
            CaseId::BadBytes => "bad-bytes",
            CaseId::Zone => "zone",
            CaseId::Date => "date",
            CaseId::Latency => "latency",
            CaseId::AfterQuit => "after-quit",
        }
    }

    /// The id of `text`, if it names a case.
    pub fn parse(text: &str) -> Option<CaseId> {
        CaseId::ALL.into_iter().find(|id| id.as_str() == text)
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The clause of the assignment a case checks, in the course's words and in English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clause {
    /// The clause as the course sheet numbers it (`1.c.i`), or where the rule comes from.
    pub source: &'static str,
    /// The course's own words (Indonesian), when the assignment states it.
    pub original: Option<&'static str>,
    /// In English.
    pub english: &'static str,
}

/// What a case needs from the cases before it; when it is missing, the case is skipped with the
/// reason, since the bug in the way is another case's to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A server that accepts connections (`connect` passed, and it has not stopped accepting).
    Connection,
    /// Any line in answer to `TIME` (a time or not): enough to see concurrency.
    AnyReply,
    /// A time in answer to `TIME`, exact or a variant.
    TimeReply,
    /// No line sent before any request (the real client it uses cannot pass one over).
    NoGreeting,
    /// That case passed (a session that ends after one reply cannot show the rest).
    Passed(CaseId),
    /// Runs after that case, whatever its result (its result sharpens this one's explanation).
    After(CaseId),
    /// That case ran and made its observation (info cases).
    Observed(CaseId),
}

/// When a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// First, alone: picks the address every other case uses.
    First,
    /// Next, one at a time, in catalogue order: what they find decides how the rest run.
    Lead,
    /// After the lead, in waves ordered by their needs, each case on fresh connections. A wave
    /// runs at once when `concurrent` has shown that the server can take it; otherwise one case
    /// at a time, so that a server that serves one client at a time does not fail a case because
    /// of the one before.
    Sequence,
    /// As [`Schedule::Sequence`], but first in its wave, so that the budget never starves it.
    Beside,
    /// After every other case, alone: it opens many connections at once, which would slow the
    /// others on a server with a small listen backlog.
    Last,
    /// At the end, from what the other cases observed; sends nothing.
    Report,
}

/// Settings of a check run.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Longest wait for one reply (or for a close, or a connection).
    pub timeout: Duration,
    /// Largest clock difference `time-correct` accepts, in seconds.
    pub max_offset: f64,
    /// Clients of `many-clients`.
    pub clients: usize,
    /// Should-level cases must pass too.
    pub strict: bool,
    /// The cases to run (others are reported as skipped).
    pub selected: Vec<CaseId>,
    /// Targets checked at once.
    pub jobs: usize,
}

impl CheckConfig {
    /// The defaults of `jam check`, with every case selected.
    pub fn new() -> Self {
        CheckConfig {
            timeout: Duration::from_secs(1),
            max_offset: 1.0,
            clients: 100,
            strict: false,
            selected: CaseId::ALL.to_vec(),
            jobs: 8,
        }
    }

    /// Whether `--only`/`--skip` left case `id` in.
    pub(crate) fn is_selected(&self, id: CaseId) -> bool {
        self.selected.contains(&id)
    }

    /// The most time one target may take, whatever the server does: five waits for a reply that
    /// does not come, and 3 s for the fixed pauses, the clock measurement and `many-clients`.
    pub(crate) fn budget(&self) -> Duration {
        self.timeout * 5 + Duration::from_secs(3)
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A server to check, as named on the command line or in `--targets`.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// `HOST[:PORT]` as given.
    pub target: String,
    /// A name for the summary (a student's), if given.
    pub name: Option<String>,
}

impl TargetSpec {
    /// Parses a `--targets` file: one `HOST:PORT [NAME]` per line; blank lines and `#` comments
    /// are ignored.
    pub fn parse_list(text: &str) -> Result<Vec<TargetSpec>, ClientError> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (target, name) = match line.split_once(char::is_whitespace) {
                Some((t, name)) => (t, Some(name.trim().to_string())),
                None => (line, None),
            };
            Target::parse(target)
                .map_err(|e| ClientError::Usage(format!("targets file, line {}: {e}", n + 1)))?;
            out.push(TargetSpec {
                target: target.to_string(),
                name,
            });
        }
        Ok(out)
    }
}

/// What the first `TIME` got, in kinds that decide which other cases can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A time, exact or a variant.
    Time,
    /// Nothing within the timeout; the connection stayed open.
    Nothing,
    /// The server closed the connection without a reply.
    Closed,
    /// The connection was reset.
    Reset,
    /// More than [`READ_CAP`](super::probe::READ_CAP) bytes without a line end.
    Flood,
    /// The request came back unchanged.
    Echo,
    /// An HTTP response.
    Http,
    /// Another protocol's banner (SSH, FTP, SMTP, POP3, IMAP, VNC).
    Banner(&'static str),
    /// A line that is not a time: the request was not recognised (an error line, usually).
    Unrecognised,
}

impl ReplyKind {
    /// A few words for a skip reason: `an echo of the request`.
    pub fn short(&self) -> String {
        match self {
            ReplyKind::Time => "a time".into(),
            ReplyKind::Nothing => "nothing".into(),
            ReplyKind::Closed => "a close".into(),
            ReplyKind::Reset => "a reset".into(),
            ReplyKind::Flood => "a flood of bytes".into(),
            ReplyKind::Echo => "an echo of the request".into(),
            ReplyKind::Http => "an HTTP response".into(),
            ReplyKind::Banner(who) => format!("the banner of {who}"),
            ReplyKind::Unrecognised => "a line that is not a time".into(),
        }
    }

    /// Whether the server answered with a line at all (enough to see concurrency).
    pub(crate) fn is_line(&self) -> bool {
        !matches!(
            self,
            ReplyKind::Nothing | ReplyKind::Closed | ReplyKind::Reset | ReplyKind::Flood
        )
    }
}

/// Why a case did not judge. Typed, so that a report, the tally and the tests never compare
/// strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `--only`/`--skip` left it out.
    NotSelected,
    /// The server could not be reached at all (`connect` says why).
    Unreachable,
    /// `TIME` got no time in `time-format`, which names the cause.
    NoTimeReply(ReplyKind),
    /// `TIME` got nothing at all in `time-format`.
    NoReply,
    /// The server sends a line before any request, which the real client this case uses cannot
    /// pass over.
    Greeting,
    /// That case failed, and this one cannot be seen without what it checks.
    Blocked(CaseId),
    /// The server stopped accepting connections during that case (`connect` says so).
    ServerGone(CaseId),
    /// The target's time budget ran out before the case could run.
    OutOfTime(Duration),
    /// An info case whose source case did not run or observe anything.
    NotObserved(CaseId),
    /// This machine could not open the connections the case needs (the checker's limit, not the
    /// server's fault).
    LocalShortage(String),
}

impl SkipReason {
    /// A stable word for `--json`.
    pub fn key(&self) -> &'static str {
        match self {
            SkipReason::NotSelected => "not-selected",
            SkipReason::Unreachable => "unreachable",
            SkipReason::NoTimeReply(_) => "no-time-reply",
            SkipReason::NoReply => "no-reply",
            SkipReason::Greeting => "greeting",
            SkipReason::Blocked(_) => "blocked",
            SkipReason::ServerGone(_) => "server-gone",
            SkipReason::OutOfTime(_) => "out-of-time",
            SkipReason::NotObserved(_) => "not-observed",
            SkipReason::LocalShortage(_) => "local-shortage",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotSelected => f.write_str("not selected"),
            SkipReason::Unreachable => f.write_str("skipped: no connection"),
            SkipReason::NoTimeReply(kind) => write!(
                f,
                "skipped: TIME got no time in time-format ({}), which says why",
                kind.short()
            ),
            SkipReason::NoReply => f.write_str("skipped: TIME got no reply in time-format"),
            SkipReason::Greeting => f.write_str(
                "skipped: the server sends a line before any request (see time-format), which \
                 this case's clock measurement cannot pass over",
            ),
            SkipReason::Blocked(id) => write!(
                f,
                "skipped: needs what {id} checks, which failed (a session that ends early cannot \
                 show this)"
            ),
            SkipReason::ServerGone(id) => write!(
                f,
                "skipped: the server stopped accepting connections during {id} (see connect)"
            ),
            SkipReason::OutOfTime(budget) => write!(
                f,
                "skipped: the {} budget for one server ran out before this case (the cases \
                 before waited for replies that did not come)",
                display::human(*budget)
            ),
            SkipReason::NotObserved(id) => write!(f, "needs {id}, which observed nothing"),
            SkipReason::LocalShortage(e) => write!(
                f,
                "not judged: this machine could not open the connections ({e}); use fewer \
                 --clients or -j"
            ),
        }
    }
}

/// How a case ended, as its run function returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; what was seen, briefly.
    Pass(String),
    /// Failed; what was sent, what came back, the likely cause and the fix.
    Fail(String),
    /// Timed out; what was waited for, and the likely cause.
    Timeout(String),
    /// Did not judge, and why.
    Skip(SkipReason),
}

/// What a report needs to know of a case: its id, level and title. The server's cases and the
/// client's both are; every report format is written once for both.
pub trait Graded: 'static {
    /// The stable id (`time-format`).
    fn name(&self) -> &'static str;
    /// How much it matters.
    fn level(&self) -> Level;
    /// What passes, in one line.
    fn title(&self) -> &'static str;
}

/// `--help`'s list of cases: id, level and what passes, one line each.
pub fn case_list<C: Graded>(cases: &[C]) -> String {
    let mut text = String::from("Cases (id, level, what passes):\n");
    for case in cases {
        text.push_str(&format!(
            "  {:<16} {:<6} {}\n",
            case.name(),
            case.level().name(),
            case.title()
        ));
    }
    text
}

/// One case's result.
#[derive(Debug)]
pub struct CaseResult<C: 'static> {
    /// The case.
    pub case: &'static C,
    /// How it ended.
    pub status: Status,
    /// For a failure: what was sent, what came back, the likely cause and fix. For a pass: what
    /// was seen, briefly. For a skip: the reason in words.
    pub detail: String,
    /// For a skip: the reason.
    pub skip: Option<SkipReason>,
    /// Every event on the wire, with times.
    pub transcript: Vec<String>,
    /// How long the case took.
    pub elapsed: Duration,
}

impl<C> Clone for CaseResult<C> {
    fn clone(&self) -> Self {
        CaseResult {
            case: self.case,
            status: self.status,
            detail: self.detail.clone(),
            skip: self.skip.clone(),
            transcript: self.transcript.clone(),
            elapsed: self.elapsed,
        }
    }
}

impl<C> CaseResult<C> {
    /// The one place a result is built: status, detail and skip reason always agree.
    pub fn new(
        case: &'static C,
        outcome: Outcome,
        transcript: Vec<String>,
        elapsed: Duration,
    ) -> Self {
        let (status, detail, skip) = match outcome {
            Outcome::Pass(detail) => (Status::Pass, detail, None),
            Outcome::Fail(detail) => (Status::Fail, detail, None),
            Outcome::Timeout(detail) => (Status::Timeout, detail, None),
            Outcome::Skip(reason) => (Status::Skip, reason.to_string(), Some(reason)),
        };
        CaseResult {
            case,
            status,
            detail,
            skip,
            transcript,
            elapsed,
        }
    }

    /// A skip that sent nothing.
    pub fn skipped(case: &'static C, reason: SkipReason) -> Self {
        CaseResult::new(case, Outcome::Skip(reason), Vec::new(), Duration::ZERO)
    }

    /// `--only`/`--skip` left this case out.
    pub fn not_selected(&self) -> bool {
        self.skip == Some(SkipReason::NotSelected)
    }
}

/// The result of checking one server (or one client).
#[derive(Debug)]
pub struct TargetReport<C: 'static> {
    /// The server as given.
    pub spec: TargetSpec,
    /// The address connected to, once resolved.
    pub address: Option<SocketAddr>,
    /// Every case of the catalogue, in order.
    pub cases: Vec<CaseResult<C>>,
    /// Why the server could not be checked at all (no name resolution, refused…).
    pub error: Option<ClientError>,
    /// Should-level cases count toward the verdict.
    pub strict: bool,
    /// How long the whole check took.
    pub elapsed: Duration,
}

/// Passed and total counts of one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that ran or should have run (selected ones).
    pub total: usize,
}

impl<C: Graded> TargetReport<C> {
    /// Passed/total of the selected cases of `level`. A case skipped because another bug is in the
    /// way counts as not passed: it was not shown to work.
    pub fn tally(&self, level: Level) -> Tally {
        let mut tally = Tally::default();
        for r in self.cases.iter().filter(|r| r.case.level() == level) {
            if r.not_selected() {
                continue;
            }
            tally.total += 1;
            if r.status == Status::Pass {
                tally.passed += 1;
            }
        }
        tally
    }

    /// The server passes: reachable, every must case passed (and with `strict` every should case).
    pub fn passed(&self) -> bool {
        let full = |t: Tally| t.passed == t.total;
        self.error.is_none()
            && self.tally(Level::Must).total + self.tally(Level::Should).total > 0
            && full(self.tally(Level::Must))
            && (!self.strict || full(self.tally(Level::Should)))
    }

    /// Ids of the cases that failed or timed out.
    pub fn failures(&self) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|r| matches!(r.status, Status::Fail | Status::Timeout))
            .map(|r| r.case.name())
            .collect()
    }

    /// The name to show: the given name, else the target.
    pub fn label(&self) -> &str {
        self.spec.name.as_deref().unwrap_or(&self.spec.target)
    }
}
