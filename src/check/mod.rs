//! `jam check`: grades a time server against the assignment, case by case, the way h2spec grades
//! an HTTP/2 server: each case is a value ([`Case`]) tied to a clause of the assignment, with a
//! level (must, should, info), what it needs from the cases before it, how it is scheduled and the
//! function that runs it. A case ends as pass, fail, timeout or skip, with what was sent, what came
//! back and the likely fix.
//!
//! A case judges its own clause and nothing else: when an earlier, different bug is in the way (no
//! time reply at all, a server that stopped accepting), it is skipped with a typed
//! [`SkipReason`], never failed. The runner ([`runner`]) is generic over the catalogue; the cases
//! live in `cases`, the pure diagnosis of what a server answered in [`diagnose`], the bounded,
//! transcript-keeping connections in [`probe`], and every text a person reads is built with
//! [`display`]'s helpers.

mod cases;
pub mod diagnose;
pub mod display;
pub mod probe;
pub mod report;
mod runner;

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{ClientError, Target};

pub use runner::run_cases;

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
        CATALOGUE
            .iter()
            .map(|c| c.id)
            .find(|id| id.as_str() == text)
    }

    /// The case itself.
    pub fn case(self) -> &'static Case {
        &CATALOGUE[self as usize]
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The clause of the assignment a case checks, in the course's words and in English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clause {
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
pub enum Schedule {
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

/// One case of the catalogue.
#[derive(Clone, Copy)]
pub struct Case {
    /// Stable id.
    pub id: CaseId,
    /// How much it matters.
    pub level: Level,
    /// What is checked, in one line.
    pub title: &'static str,
    /// The assignment clause it checks.
    pub clause: Clause,
    /// What it needs from the cases before it.
    pub needs: &'static [Need],
    /// When it runs.
    pub schedule: Schedule,
    /// How it runs.
    pub(crate) run: runner::Run,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("id", &self.id).finish()
    }
}

impl PartialEq for Case {
    fn eq(&self, other: &Case) -> bool {
        self.id == other.id
    }
}

const PORT: Clause = Clause {
    source: "1.a",
    original: Some("Membuka port di port 45000 dengan transport TCP"),
    english: "open port 45000 with TCP transport",
};
const CONCURRENT: Clause = Clause {
    source: "1.b",
    original: Some("Server harus dapat melayani request yang concurrent"),
    english: "the server must be able to serve concurrent requests",
};
const REQUEST: Clause = Clause {
    source: "1.c.i",
    original: Some(
        "Diawali dengan string \"TIME\" dan diakhiri dengan karakter 13 dan karakter 10",
    ),
    english: "a request starts with the string TIME and ends with the characters 13 and 10 (CR LF)",
};
const QUIT: Clause = Clause {
    source: "1.c.ii",
    original: Some(
        "Setiap request dapat diakhiri dengan string \"QUIT\" yang diakhiri dengan karakter 13 dan 10",
    ),
    english: "a session can be ended with the string QUIT, ending with 13 and 10",
};
const REPLY: Clause = Clause {
    source: "1.d",
    original: Some(
        "Dalam bentuk string (UTF-8), diawali dengan \"JAM<spasi><jam>\"; <jam> berisikan info jam \
         dalam format \"hh:mm:ss\" dan diakhiri dengan karakter 13 dan karakter 10",
    ),
    english: "a UTF-8 string starting with \"JAM<space><time>\", the time as hh:mm:ss, ending with 13 \
              and 10",
};
const TIME_VALUE: Clause = Clause {
    source: "1.d.iii",
    original: Some("<jam> berisikan info jam"),
    english: "<time> holds the time (the server's clock, as it reads it)",
};
const TESTING: Clause = Clause {
    source: "testing",
    original: Some("menggunakan netcat ... lalu ketik perintah TIME, command random, dan QUIT"),
    english: "the course tests servers with nc and telnet, typing TIME, a random command and QUIT",
};
const BYTE_STREAM: Clause = Clause {
    source: "TCP",
    original: None,
    english: "TCP is a byte stream: a line may come in pieces, or several lines in one read",
};
const ANY_BYTES: Clause = Clause {
    source: "TCP",
    original: None,
    english: "TCP carries any bytes: a line that is not UTF-8 must not end the session",
};
const OBSERVATION: Clause = Clause {
    source: "-",
    original: None,
    english: "an observation for the report; never fails",
};

/// Every case, in the order they are reported. `CATALOGUE[id as usize].id == id` (a test checks).
pub static CATALOGUE: [Case; 16] = [
    Case {
        id: CaseId::Connect,
        level: Level::Must,
        title: "a TCP connection is accepted",
        clause: PORT,
        needs: &[],
        schedule: Schedule::First,
        run: cases::CONNECT,
    },
    Case {
        id: CaseId::TimeFormat,
        level: Level::Must,
        title: "TIME CR LF gets exactly JAM hh:mm:ss CR LF (24 h, zero-padded)",
        clause: REPLY,
        needs: &[Need::Connection],
        schedule: Schedule::Lead,
        run: cases::TIME_FORMAT,
    },
    Case {
        id: CaseId::Repeat,
        level: Level::Must,
        title: "three TIMEs on one connection get three replies",
        clause: REQUEST,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Sequence,
        run: cases::REPEAT,
    },
    Case {
        id: CaseId::Quit,
        level: Level::Must,
        title: "after QUIT CR LF the server closes the connection",
        clause: QUIT,
        needs: &[Need::Connection],
        schedule: Schedule::Sequence,
        run: cases::QUIT,
    },
    Case {
        id: CaseId::Concurrent,
        level: Level::Must,
        title: "while client A holds a connection with half a line sent, client B's TIME is answered",
        clause: CONCURRENT,
        needs: &[Need::Connection, Need::AnyReply],
        schedule: Schedule::Lead,
        run: cases::CONCURRENT,
    },
    Case {
        id: CaseId::SplitLine,
        level: Level::Must,
        title: "TI, a pause, ME CR LF gets exactly one reply, a time",
        clause: BYTE_STREAM,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Sequence,
        run: cases::SPLIT_LINE,
    },
    Case {
        id: CaseId::Pipelined,
        level: Level::Must,
        title: "three TIME CR LF in one write get three replies",
        clause: BYTE_STREAM,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::Passed(CaseId::Repeat),
            Need::After(CaseId::SplitLine),
        ],
        schedule: Schedule::Sequence,
        run: cases::PIPELINED,
    },
    Case {
        id: CaseId::TimeCorrect,
        level: Level::Should,
        title: "the time is this machine's clock (a zone difference removed only across machines)",
        clause: TIME_VALUE,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::NoGreeting,
            Need::Passed(CaseId::Repeat),
        ],
        schedule: Schedule::Beside,
        run: cases::TIME_CORRECT,
    },
    Case {
        id: CaseId::ManyClients,
        level: Level::Should,
        title: "clients connecting at once are each answered",
        clause: CONCURRENT,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Last,
        run: cases::MANY_CLIENTS,
    },
    Case {
        id: CaseId::UnknownCommand,
        level: Level::Should,
        title: "an unknown line gets an error line (CR LF), and the session goes on",
        clause: TESTING,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::Passed(CaseId::Repeat),
        ],
        schedule: Schedule::Sequence,
        run: cases::UNKNOWN_COMMAND,
    },
    Case {
        id: CaseId::LfOnly,
        level: Level::Should,
        title: "TIME LF (what nc sends) is answered",
        clause: TESTING,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Sequence,
        run: cases::LF_ONLY,
    },
    Case {
        id: CaseId::BadBytes,
        level: Level::Should,
        title: "a line of invalid UTF-8 and control bytes does not end the session",
        clause: ANY_BYTES,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::Passed(CaseId::Repeat),
        ],
        schedule: Schedule::Sequence,
        run: cases::BAD_BYTES,
    },
    Case {
        id: CaseId::Zone,
        level: Level::Info,
        title: "the zone difference between the server's time and this machine's UTC",
        clause: OBSERVATION,
        needs: &[Need::Observed(CaseId::TimeCorrect)],
        schedule: Schedule::Report,
        run: cases::ZONE,
    },
    Case {
        id: CaseId::Date,
        level: Level::Info,
        title: "whether the reply includes a date",
        clause: OBSERVATION,
        needs: &[Need::Observed(CaseId::TimeFormat)],
        schedule: Schedule::Report,
        run: cases::DATE,
    },
    Case {
        id: CaseId::Latency,
        level: Level::Info,
        title: "how long replies take",
        clause: OBSERVATION,
        needs: &[],
        schedule: Schedule::Report,
        run: cases::LATENCY,
    },
    Case {
        id: CaseId::AfterQuit,
        level: Level::Info,
        title: "what the server sends after QUIT",
        clause: OBSERVATION,
        needs: &[Need::Observed(CaseId::Quit)],
        schedule: Schedule::Report,
        run: cases::AFTER_QUIT,
    },
];

/// The README's and the man page's table of cases, from the catalogue (a test keeps the README's
/// copy in sync).
pub fn cases_markdown() -> String {
    let mut out =
        String::from("| id | level | what passes | assignment clause |\n|---|---|---|---|\n");
    for case in &CATALOGUE {
        let clause = match case.clause.original {
            Some(original) => format!(
                "{}: *{}* ({})",
                case.clause.source, original, case.clause.english
            ),
            None => format!("{}: {}", case.clause.source, case.clause.english),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            case.id,
            case.level.name(),
            case.title,
            clause
                .replace('|', "\\|")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        );
    }
    out
}

/// `jam check --help`'s list of cases, from the catalogue.
pub fn cases_help() -> String {
    let mut text = String::from("Cases (id, level, what passes):\n");
    for case in &CATALOGUE {
        let _ = writeln!(
            text,
            "  {:<16} {:<6} {}",
            case.id.as_str(),
            case.level.name(),
            case.title
        );
    }
    text
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
            selected: CATALOGUE.iter().map(|c| c.id).collect(),
            jobs: 8,
        }
    }

    /// Selects cases with `--only` and `--skip` lists; an unknown id or an empty selection is a
    /// usage error (a run of no case must never look like a pass).
    pub fn select(&mut self, only: &[String], skip: &[String]) -> Result<(), ClientError> {
        let parse = |ids: &[String]| -> Result<Vec<CaseId>, ClientError> {
            ids.iter()
                .map(|id| {
                    CaseId::parse(id).ok_or_else(|| {
                        let known: Vec<&str> = CATALOGUE.iter().map(|c| c.id.as_str()).collect();
                        ClientError::Usage(format!(
                            "unknown case {id:?}; the cases are: {}",
                            known.join(", ")
                        ))
                    })
                })
                .collect()
        };
        let (only, skip) = (parse(only)?, parse(skip)?);
        if skip.contains(&CaseId::Connect) {
            return Err(ClientError::Usage(
                "connect cannot be skipped: every other case needs a connection".into(),
            ));
        }
        // connect always runs: every other case needs it.
        self.selected = CATALOGUE
            .iter()
            .map(|c| c.id)
            .filter(|id| *id == CaseId::Connect || only.is_empty() || only.contains(id))
            .filter(|id| !skip.contains(id))
            .collect();
        let chosen = only.is_empty() || only.contains(&CaseId::Connect);
        let graded = self
            .selected
            .iter()
            .any(|id| *id != CaseId::Connect && id.case().level != Level::Info);
        if !chosen && !graded {
            return Err(ClientError::Usage(
                "--only and --skip leave no must or should case to run (info cases only report \
                 what the others observed)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn is_selected(&self, id: CaseId) -> bool {
        self.selected.contains(&id)
    }

    /// The most time one target may take, whatever the server does: five waits for a reply that
    /// does not come, and 3 s for the fixed pauses, the clock measurement and `many-clients`.
    pub fn budget(&self) -> Duration {
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

/// Why a case did not judge. Typed, so that a report, the tally and the tests never compare
/// strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `--only`/`--skip` left it out.
    NotSelected,
    /// The server could not be reached at all (`connect` says why).
    Unreachable,
    /// `TIME` got no time in `time-format`, which names the cause.
    NoTimeReply(diagnose::ReplyKind),
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

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: &'static Case,
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

impl CaseResult {
    /// The one place a result is built: status, detail and skip reason always agree.
    pub fn new(id: CaseId, outcome: Outcome, transcript: Vec<String>, elapsed: Duration) -> Self {
        let (status, detail, skip) = match outcome {
            Outcome::Pass(detail) => (Status::Pass, detail, None),
            Outcome::Fail(detail) => (Status::Fail, detail, None),
            Outcome::Timeout(detail) => (Status::Timeout, detail, None),
            Outcome::Skip(reason) => (Status::Skip, reason.to_string(), Some(reason)),
        };
        CaseResult {
            case: id.case(),
            status,
            detail,
            skip,
            transcript,
            elapsed,
        }
    }

    /// A skip that sent nothing.
    pub fn skipped(id: CaseId, reason: SkipReason) -> Self {
        CaseResult::new(id, Outcome::Skip(reason), Vec::new(), Duration::ZERO)
    }

    /// `--only`/`--skip` left this case out.
    pub fn not_selected(&self) -> bool {
        self.skip == Some(SkipReason::NotSelected)
    }
}

/// The result of checking one server.
#[derive(Debug)]
pub struct TargetReport {
    /// The server as given.
    pub spec: TargetSpec,
    /// The address connected to, once resolved.
    pub address: Option<SocketAddr>,
    /// Every case of the catalogue, in order.
    pub cases: Vec<CaseResult>,
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

impl TargetReport {
    /// Passed/total of the selected cases of `level`. A case skipped because another bug is in the
    /// way counts as not passed: it was not shown to work.
    pub fn tally(&self, level: Level) -> Tally {
        let mut tally = Tally::default();
        for r in self.cases.iter().filter(|r| r.case.level == level) {
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
            .map(|r| r.case.id.as_str())
            .collect()
    }

    /// The name to show: the given name, else the target.
    pub fn label(&self) -> &str {
        self.spec.name.as_deref().unwrap_or(&self.spec.target)
    }
}

/// Checks every target, at most `config.jobs` at once, in the order given.
pub async fn run_all(specs: Vec<TargetSpec>, config: &CheckConfig) -> Vec<TargetReport> {
    let config = Arc::new(config.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(config.jobs.max(1)));
    let mut tasks = Vec::new();
    for spec in specs {
        let config = config.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            check_target(spec, &config).await
        }));
    }
    let mut reports = Vec::new();
    for task in tasks {
        if let Ok(report) = task.await {
            reports.push(report);
        }
    }
    reports
}

/// Checks one server.
pub async fn check_target(spec: TargetSpec, config: &CheckConfig) -> TargetReport {
    let started = tokio::time::Instant::now();
    let resolved = match Target::parse(&spec.target) {
        Ok(target) => {
            let limit = config.timeout.max(Duration::from_secs(2));
            match tokio::time::timeout(limit, target.resolve()).await {
                Ok(resolved) => resolved,
                Err(_) => Err(ClientError::Timeout {
                    what: "resolving the host",
                    after: limit,
                }),
            }
        }
        Err(e) => Err(e),
    };
    let (address, cases, error) = match resolved {
        Ok(addrs) => run_cases(&addrs, config).await,
        Err(e) => {
            let cases = CATALOGUE
                .iter()
                .map(|case| {
                    let reason = if config.is_selected(case.id) {
                        SkipReason::Unreachable
                    } else {
                        SkipReason::NotSelected
                    };
                    CaseResult::skipped(case.id, reason)
                })
                .collect();
            (None, cases, Some(e))
        }
    };
    TargetReport {
        spec,
        address,
        cases,
        error,
        strict: config.strict,
        elapsed: started.elapsed(),
    }
}

/// The process exit code for a run: 0 when every target passed; for one target that could not be
/// reached, the client's usual code (3 refused, 4 no such host, 5 timed out); else 1.
pub fn exit_code(reports: &[TargetReport]) -> u8 {
    match reports {
        [one] => match &one.error {
            Some(e) => e.exit_code(),
            None if one.passed() => 0,
            None => 1,
        },
        all if !all.is_empty() && all.iter().all(TargetReport::passed) => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_case_sits_at_its_ids_index_and_ids_round_trip() {
        for (i, case) in CATALOGUE.iter().enumerate() {
            assert_eq!(case.id as usize, i, "{}", case.id);
            assert_eq!(CaseId::parse(case.id.as_str()), Some(case.id));
        }
        assert_eq!(CaseId::parse("time-fromat"), None);
    }

    #[test]
    fn a_case_needs_only_cases_that_run_before_it() {
        for case in &CATALOGUE {
            for need in case.needs {
                if let Need::Passed(id) | Need::After(id) | Need::Observed(id) = need {
                    let before = id.case().schedule != Schedule::Report
                        && (case.schedule == Schedule::Report || *id < case.id);
                    assert!(before, "{} needs {id}, which runs later", case.id);
                }
            }
        }
    }

    #[test]
    fn the_markdown_table_has_a_row_per_case_with_its_clause() {
        let table = cases_markdown();
        assert_eq!(table.lines().count(), 2 + CATALOGUE.len());
        assert!(table.contains("| `time-format` | must |"));
        assert!(table.contains("diawali dengan \"JAM&lt;spasi&gt;&lt;jam&gt;\""));
    }
}
