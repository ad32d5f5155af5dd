//! `jam check`: grades a time server against the assignment, case by case, the way h2spec grades
//! an HTTP/2 server: each case is tied to a clause, has a level (must, should, info) and ends as
//! pass, fail, timeout or skip, with what was sent, what came back and the likely fix.
//!
//! A target's cases run one after another on fresh connections (a server that serves one client at
//! a time must not fail a case because of the one before), except `time-correct`, which runs
//! alongside the rest once `concurrent` has shown that the server can take it. Every wait has a
//! deadline and a target has a hard time budget, so any server is graded in bounded time.

mod cases;
pub mod probe;
pub mod report;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{ClientError, Target};
use crate::reply::TimeReply;

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
    /// The case did not run (not selected, or what it needs is missing).
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

/// One case of the catalogue. The ids are an interface: keep them stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Case {
    /// Stable id, e.g. `time-format`.
    pub id: &'static str,
    /// How much it matters.
    pub level: Level,
    /// What is checked, in one line.
    pub title: &'static str,
    /// It needs the server to answer `TIME` (skipped when `time-format` got no reply at all).
    pub needs_reply: bool,
}

const fn case(id: &'static str, level: Level, title: &'static str, needs_reply: bool) -> Case {
    Case {
        id,
        level,
        title,
        needs_reply,
    }
}

/// Every case, in the order they run and are reported.
pub const CATALOGUE: &[Case] = &[
    case(
        "connect",
        Level::Must,
        "a TCP connection is accepted",
        false,
    ),
    case(
        "time-format",
        Level::Must,
        "TIME CR LF gets exactly JAM hh:mm:ss CR LF (24 h, zero-padded)",
        false,
    ),
    case(
        "repeat",
        Level::Must,
        "three TIMEs on one connection get three replies",
        true,
    ),
    case(
        "quit",
        Level::Must,
        "after QUIT CR LF the server closes the connection",
        false,
    ),
    case(
        "concurrent",
        Level::Must,
        "while client A holds a connection with half a line sent, client B's TIME is answered",
        true,
    ),
    case(
        "split-line",
        Level::Must,
        "TI, a pause, ME CR LF gets exactly one reply, a time",
        true,
    ),
    case(
        "pipelined",
        Level::Must,
        "three TIME CR LF in one write get three replies",
        true,
    ),
    case(
        "time-correct",
        Level::Should,
        "the time agrees with this machine's clock (zone difference removed)",
        true,
    ),
    case(
        "many-clients",
        Level::Should,
        "clients connecting at once are each answered",
        true,
    ),
    case(
        "unknown-command",
        Level::Should,
        "an unknown line gets a reply that is not a time, and the session goes on",
        true,
    ),
    case(
        "lf-only",
        Level::Should,
        "TIME LF (what nc sends) is answered",
        true,
    ),
    case(
        "bad-bytes",
        Level::Should,
        "a line of invalid UTF-8 and control bytes does not end the session",
        true,
    ),
    case(
        "zone",
        Level::Info,
        "the zone difference between the server's time and this machine's UTC",
        true,
    ),
    case(
        "date",
        Level::Info,
        "whether the reply includes a date",
        true,
    ),
    case("latency", Level::Info, "how long replies take", true),
    case(
        "after-quit",
        Level::Info,
        "what the server sends after QUIT",
        false,
    ),
];

/// Looks a case up by id.
pub fn find(id: &str) -> Option<&'static Case> {
    CATALOGUE.iter().find(|c| c.id == id)
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
    pub selected: Vec<&'static str>,
    /// Targets checked at once.
    pub jobs: usize,
}

impl CheckConfig {
    /// Most clients `--clients` allows: each is a socket of this process.
    pub const MAX_CLIENTS: usize = 1000;

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
        for id in only.iter().chain(skip) {
            if find(id).is_none() {
                let known: Vec<&str> = CATALOGUE.iter().map(|c| c.id).collect();
                return Err(ClientError::Usage(format!(
                    "unknown case {id:?}; the cases are: {}",
                    known.join(", ")
                )));
            }
        }
        if skip.iter().any(|s| s == "connect") {
            return Err(ClientError::Usage(
                "connect cannot be skipped: every other case needs a connection".into(),
            ));
        }
        // connect always runs: every other case needs it.
        self.selected = CATALOGUE
            .iter()
            .map(|c| c.id)
            .filter(|id| *id == "connect" || only.is_empty() || only.iter().any(|o| o == id))
            .filter(|id| !skip.iter().any(|s| s == id))
            .collect();
        let graded = |id: &&str| find(id).is_some_and(|c| c.level != Level::Info);
        let chosen = only.is_empty() || only.iter().any(|o| o == "connect");
        if !chosen
            && !self
                .selected
                .iter()
                .filter(|id| **id != "connect")
                .any(graded)
        {
            return Err(ClientError::Usage(
                "--only and --skip leave no must or should case to run (info cases only report \
                 what the others observed)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn is_selected(&self, id: &str) -> bool {
        self.selected.contains(&id)
    }

    /// The most time one target may take, whatever the server does.
    pub fn budget(&self) -> Duration {
        self.timeout * 6 + MANY_CLIENTS_WAIT + Duration::from_secs(2)
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// How long `many-clients` waits for all answers: past Linux's SYN retries at 1 s and 3 s, which a
/// small listen backlog causes.
const MANY_CLIENTS_WAIT: Duration = Duration::from_millis(4500);

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

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: &'static Case,
    /// How it ended.
    pub status: Status,
    /// For a failure: what was sent, what came back, the likely cause and fix. For a pass: what
    /// was seen, briefly.
    pub detail: String,
    /// Every event on the wire, with times.
    pub transcript: Vec<String>,
    /// How long the case took.
    pub elapsed: Duration,
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
    /// Passed/total of the selected cases of `level`. A must case skipped because the server gave
    /// no reply counts as not passed.
    pub fn tally(&self, level: Level) -> Tally {
        let mut tally = Tally::default();
        for r in self.cases.iter().filter(|r| r.case.level == level) {
            if r.status == Status::Skip && r.detail == NOT_SELECTED {
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

    /// Ids of the must and should cases that failed or timed out.
    pub fn failures(&self) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|r| matches!(r.status, Status::Fail | Status::Timeout))
            .map(|r| r.case.id)
            .collect()
    }

    /// The name to show: the given name, else the target.
    pub fn label(&self) -> &str {
        self.spec.name.as_deref().unwrap_or(&self.spec.target)
    }
}

/// The detail of a case that `--only`/`--skip` left out.
pub const NOT_SELECTED: &str = "not selected";

/// What the cases learn about the server, for the cases after them and the info cases.
#[derive(Debug, Default, Clone)]
struct Observations {
    /// `time-format` ran and got nothing at all.
    no_reply: bool,
    /// The first time reply, exact or not.
    first: Option<TimeReply>,
    /// Round-trip times of answered TIMEs.
    rtts: Vec<Duration>,
    /// What came after QUIT, and how the connection ended.
    after_quit: Option<String>,
    /// The server's zone offset from UTC, in seconds, as `time-correct` saw it.
    zone_offset: Option<i32>,
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
    let mut report = TargetReport {
        spec: spec.clone(),
        address: None,
        cases: Vec::new(),
        error: None,
        strict: config.strict,
    };
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
    let addrs = match resolved {
        Ok(addrs) => addrs,
        Err(e) => {
            report.cases = skip_all(config, "the host name did not resolve");
            report.error = Some(e);
            return report;
        }
    };
    let (address, cases, error) = cases::run(&addrs, config).await;
    report.address = address;
    report.cases = cases;
    report.error = error;
    report
}

fn skip_all(config: &CheckConfig, why: &str) -> Vec<CaseResult> {
    CATALOGUE
        .iter()
        .map(|case| CaseResult {
            case,
            status: Status::Skip,
            detail: if config.is_selected(case.id) {
                why.to_string()
            } else {
                NOT_SELECTED.to_string()
            },
            transcript: Vec::new(),
            elapsed: Duration::ZERO,
        })
        .collect()
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
