//! The generic runner: the shape of a case and of its result; runs a catalogue of cases (given to
//! it, so that it depends on no case) against one address in the order their [`Schedule`]s ask,
//! skips a case whose [`Need`]s are not met (with the typed reason), keeps the observations the
//! cases share, and holds every target to its time budget.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::display::human;
use super::model::{
    self, CaseId, CheckConfig, Clause, Graded, Level, Need, Outcome, ReplyKind, Schedule,
    SkipReason, Status,
};
use super::probe::{ConnectError, Probe, Transcript};
use crate::client::ClientError;
use crate::reply::TimeReply;

/// A case's run function's future.
pub(crate) type CaseFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// How a case runs.
#[derive(Clone, Copy)]
pub(crate) enum Run {
    /// It drives connections.
    Probe(for<'a> fn(&'a Ctx, &'a Transcript) -> CaseFuture<'a>),
    /// It reports what the others observed.
    Report(fn(&Observations) -> Outcome),
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
    pub(crate) clause: Clause,
    /// What it needs from the cases before it.
    pub needs: &'static [Need],
    /// When it runs.
    pub(crate) schedule: Schedule,
    /// How it runs.
    pub(crate) run: Run,
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

impl Graded for Case {
    fn name(&self) -> &'static str {
        self.id.as_str()
    }

    fn level(&self) -> Level {
        self.level
    }

    fn title(&self) -> &'static str {
        self.title
    }
}

/// A server case's result.
pub type CaseResult = model::CaseResult<Case>;

/// The result of checking one server.
pub type TargetReport = model::TargetReport<Case>;

/// What the cases learn about the server, for the cases after them and the info cases.
#[derive(Debug, Default, Clone)]
pub(crate) struct Observations {
    /// The first `TIME`'s answer, classified (set by `time-format`).
    pub first_kind: Option<ReplyKind>,
    /// The first time reply, exact or not.
    pub first: Option<TimeReply>,
    /// Lines the server sends on every connection before any request (a greeting), counted in
    /// line ends; `Some(0)` for a greeting without a line end.
    pub greeting_lines: Option<usize>,
    /// Round-trip times of answered TIMEs.
    pub rtts: Vec<Duration>,
    /// What came after QUIT, and how the connection ended.
    pub after_quit: Option<String>,
    /// The server's zone offset from UTC, in seconds, as `time-correct` saw it.
    pub zone_offset: Option<i32>,
    /// `concurrent` showed that the server serves two clients at once.
    pub concurrent: bool,
    /// The case during which the server stopped accepting connections.
    pub gone: Option<CaseId>,
    /// The cases that passed: what `Need::Passed` reads.
    pub passed: Vec<CaseId>,
}

/// What a case's run function gets: where to connect, the settings, the shared observations.
pub(crate) struct Ctx {
    catalogue: &'static [Case],
    addrs: Vec<SocketAddr>,
    addr: OnceLock<SocketAddr>,
    /// The run's settings.
    pub config: CheckConfig,
    obs: Mutex<Observations>,
    /// The first connection's error, when it failed.
    error: Mutex<Option<ClientError>>,
    started: Instant,
    /// Time added to the budget for a server that is slow to answer.
    extra: Mutex<Duration>,
}

impl Ctx {
    /// The addresses `connect` tries.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The address every case after `connect` uses.
    pub fn addr(&self) -> SocketAddr {
        self.addr.get().copied().unwrap_or(self.addrs[0])
    }

    /// Records the address `connect` reached.
    pub fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// Records why the first connection failed.
    pub fn set_error(&self, error: ClientError) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(error);
        }
    }

    /// The deadline for one reply from now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.config.timeout
    }

    /// Reads or updates the observations.
    pub fn observe<T>(&self, f: impl FnOnce(&mut Observations) -> T) -> T {
        let mut obs = self.obs.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut obs)
    }

    /// A server that takes `rtt` to answer one request gets ten such round trips more: every case
    /// waits for its replies, and a slow but correct server must still be graded whole.
    pub fn slow_server(&self, rtt: Duration) {
        if let Ok(mut extra) = self.extra.lock() {
            *extra = (*extra).max(rtt * 10);
        }
    }

    /// The budget so far: the configured one plus the slow-server allowance.
    fn budget(&self) -> Duration {
        self.config.budget() + self.extra.lock().map_or(Duration::ZERO, |e| *e)
    }

    fn budget_end(&self) -> Instant {
        self.started + self.budget()
    }

    /// Notes that the server refused a connection during case `during`.
    fn gone(&self, during: CaseId) -> Outcome {
        self.observe(|o| {
            o.gone.get_or_insert(during);
        });
        Outcome::Skip(SkipReason::ServerGone(during))
    }

    /// Whether the server still accepts connections; when it does not, the case is skipped and
    /// `connect` will say so. For a connection that broke without a reply.
    pub async fn still_accepting(&self, t: &Transcript) -> Result<(), Outcome> {
        match Probe::connect(self.addr(), "", t, self.deadline()).await {
            Err(ConnectError::Refused) => Err(self.gone(t.case())),
            _ => Ok(()),
        }
    }

    /// Connects as `who` for a case after `connect`, and passes over the greeting the server sends
    /// on every connection, if it does. A refusal means the server stopped accepting: the case
    /// is skipped and `connect` will say so.
    pub async fn connect(&self, who: &'static str, t: &Transcript) -> Result<Probe, Outcome> {
        let mut probe = match Probe::connect(self.addr(), who, t, self.deadline()).await {
            Ok(probe) => probe,
            Err(ConnectError::Refused) => return Err(self.gone(t.case())),
            Err(ConnectError::Timeout) => {
                return Err(Outcome::Fail(format!(
                    "client {who} got no connection within {}, although the first connection \
                     worked: the server's accept queue is full (a small listen backlog while it \
                     serves someone else?)",
                    human(self.config.timeout)
                )));
            }
            Err(ConnectError::Other(e)) => {
                return Err(Outcome::Fail(format!("client {who} cannot connect: {e}")));
            }
        };
        if let Some(lines) = self.observe(|o| o.greeting_lines) {
            pass_greeting(&mut probe, lines, self.deadline(), t, who).await;
        }
        Ok(probe)
    }
}

/// Reads and drops a greeting: `lines` line ends, or for a greeting without one, what comes in a
/// short while.
async fn pass_greeting(
    probe: &mut Probe,
    lines: usize,
    deadline: Instant,
    t: &Transcript,
    who: &'static str,
) {
    if lines == 0 {
        let _ = probe.collect_until(Instant::now() + GREETING_WAIT).await;
    } else {
        for _ in 0..lines {
            let _ = probe.line(deadline).await;
        }
    }
    t.note(who, "(the greeting, passed over)");
}

/// How long `time-format` listens before it asks anything, to see a greeting; and how long a
/// later connection waits to pass over a greeting that has no line end.
pub(crate) const GREETING_WAIT: Duration = Duration::from_millis(100);

/// The gap between the starts of cases that run at once: a burst of connection requests would
/// overflow a listen(1) backlog and cost a case a 1 s SYN retry.
const STAGGER: Duration = Duration::from_millis(15);

/// Runs the catalogue against the first address of `addrs` that accepts a connection. Returns
/// that address, every case's result in catalogue order, and the error that made the server
/// unreachable, if it was.
pub async fn run_cases(
    catalogue: &'static [Case],
    addrs: &[SocketAddr],
    config: &CheckConfig,
) -> (Option<SocketAddr>, Vec<CaseResult>, Option<ClientError>) {
    let ctx = Arc::new(Ctx {
        catalogue,
        addrs: addrs.to_vec(),
        addr: OnceLock::new(),
        config: config.clone(),
        obs: Mutex::new(Observations::default()),
        error: Mutex::new(None),
        started: Instant::now(),
        extra: Mutex::new(Duration::ZERO),
    });
    let mut results: Vec<Option<CaseResult>> = vec![None; catalogue.len()];
    let ids = |schedule: Schedule| -> Vec<CaseId> {
        catalogue
            .iter()
            .filter(|c| c.schedule == schedule)
            .map(|c| c.id)
            .collect()
    };

    for id in ids(Schedule::First) {
        results[id as usize] = Some(run_one(&ctx, id).await);
    }
    let reached = results[CaseId::Connect as usize]
        .as_ref()
        .is_some_and(|r| r.status == Status::Pass);
    if !reached {
        let error = ctx.error.lock().ok().and_then(|mut e| e.take());
        return (
            None,
            fill(catalogue, results, config, SkipReason::Unreachable),
            error,
        );
    }
    for id in ids(Schedule::Lead) {
        results[id as usize] = Some(run_one(&ctx, id).await);
    }
    // The rest: a case runs after the cases it needs. Once the server has shown that it serves
    // two clients at once, each case starts as soon as those are done, beside the others;
    // otherwise they run one after another, in waves.
    let at_once = ctx.observe(|o| o.concurrent);
    let mut rest = ids(Schedule::Beside);
    rest.extend(ids(Schedule::Sequence));
    let waves = waves(catalogue, &rest);
    if at_once {
        let done: Done = Arc::new((Mutex::new(Vec::new()), tokio::sync::Notify::new()));
        let mut running = tokio::task::JoinSet::new();
        let mut task_case = Vec::new();
        for (i, id) in waves.into_iter().flatten().enumerate() {
            let (ctx, done) = (ctx.clone(), done.clone());
            let deps: Vec<CaseId> = catalogue[id as usize]
                .needs
                .iter()
                .filter_map(|need| match need {
                    Need::Passed(dep) | Need::After(dep) if rest.contains(dep) => Some(*dep),
                    _ => None,
                })
                .collect();
            let handle = running.spawn(async move {
                tokio::time::sleep(STAGGER * i as u32).await;
                loop {
                    let woken = done.1.notified();
                    let finished = done.0.lock().map(|d| d.clone()).unwrap_or_default();
                    if deps.iter().all(|dep| finished.contains(dep)) {
                        break;
                    }
                    woken.await;
                }
                // Marks the case done even if it panics, so no case waits for it for ever.
                let _finish = Finished(id, done.clone());
                (id, run_one(&ctx, id).await)
            });
            task_case.push((handle.id(), id));
        }
        while let Some(finished) = running.join_next_with_id().await {
            match finished {
                Ok((_, (id, result))) => results[id as usize] = Some(result),
                Err(e) => {
                    if let Some(&(_, id)) = task_case.iter().find(|(task, _)| *task == e.id()) {
                        results[id as usize] = Some(CaseResult::new(
                            &catalogue[id as usize],
                            Outcome::Fail(
                                "jam failed while running this case (a bug in jam: please \
                                 report it); the server is not to blame"
                                    .into(),
                            ),
                            Vec::new(),
                            Duration::ZERO,
                        ));
                    }
                }
            }
        }
    } else {
        for id in waves.into_iter().flatten() {
            results[id as usize] = Some(run_one(&ctx, id).await);
        }
    }
    for id in ids(Schedule::Last).into_iter().chain(ids(Schedule::Report)) {
        results[id as usize] = Some(run_one(&ctx, id).await);
    }

    // A server that stopped accepting fails `connect`, whose clause it broke; the cases it left
    // undone were skipped with that reason.
    if let Some(during) = ctx.observe(|o| o.gone)
        && let Some(connect) = results[CaseId::Connect as usize].as_mut()
    {
        let detail = format!(
            "the first connection was accepted, but during {during} the server refused \
             connections: it stopped accepting (the program exited or crashed?). Look for a \
             traceback in the server's terminal; a server must keep accepting clients until it \
             is stopped (while True: conn, addr = sock.accept())"
        );
        *connect = CaseResult::new(
            connect.case,
            Outcome::Fail(detail),
            connect.transcript.clone(),
            connect.elapsed,
        );
    }
    (
        Some(ctx.addr()),
        fill(catalogue, results, config, SkipReason::Unreachable),
        None,
    )
}

/// The cases that have finished, and the wake-up for the cases waiting on them.
type Done = Arc<(Mutex<Vec<CaseId>>, tokio::sync::Notify)>;

/// Marks a case finished when dropped: after its result, or when its task panics.
struct Finished(CaseId, Done);

impl Drop for Finished {
    fn drop(&mut self) {
        let (finished, wake) = &*self.1;
        if let Ok(mut finished) = finished.lock() {
            finished.push(self.0);
        }
        wake.notify_waiters();
    }
}

/// Splits `ids` into waves: a case's wave comes after the waves of the cases in `ids` it needs
/// or runs after. `Beside` cases lead their wave; otherwise catalogue order.
fn waves(catalogue: &[Case], ids: &[CaseId]) -> Vec<Vec<CaseId>> {
    let case = |id: CaseId| &catalogue[id as usize];
    let mut wave_of: Vec<(CaseId, usize)> = Vec::new();
    let mut sorted = ids.to_vec();
    sorted.sort();
    for &id in &sorted {
        let wave = case(id)
            .needs
            .iter()
            .filter_map(|need| match need {
                Need::Passed(dep) | Need::After(dep) => {
                    wave_of.iter().find(|(d, _)| d == dep).map(|(_, w)| w + 1)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        wave_of.push((id, wave));
    }
    let count = wave_of.iter().map(|(_, w)| w + 1).max().unwrap_or(0);
    (0..count)
        .map(|w| {
            let mut wave: Vec<CaseId> = ids
                .iter()
                .copied()
                .filter(|id| wave_of.iter().any(|(d, x)| d == id && *x == w))
                .collect();
            wave.sort_by_key(|id| (case(*id).schedule != Schedule::Beside, *id));
            wave
        })
        .collect()
}

/// Runs one case if it is selected, its needs are met and the budget allows.
async fn run_one(ctx: &Ctx, id: CaseId) -> CaseResult {
    let case = &ctx.catalogue[id as usize];
    if !ctx.config.is_selected(id) {
        return CaseResult::skipped(case, SkipReason::NotSelected);
    }
    if let Some(reason) = unmet(case.needs, &ctx.observe(|o| o.clone()), &ctx.config) {
        return CaseResult::skipped(case, reason);
    }
    let result = match case.run {
        Run::Report(report) => {
            let outcome = ctx.observe(|o| report(o));
            CaseResult::new(case, outcome, Vec::new(), Duration::ZERO)
        }
        Run::Probe(run) => {
            if Instant::now() >= ctx.budget_end() {
                return CaseResult::skipped(case, SkipReason::OutOfTime(ctx.budget()));
            }
            let t = Transcript::for_case(id);
            let mut running = run(ctx, &t);
            let outcome = loop {
                // The budget may grow while the case runs (time-format measures the server): the
                // same run then goes on waiting.
                let end = ctx.budget_end();
                match timeout_at(end, &mut running).await {
                    Ok(outcome) => break outcome,
                    Err(_) if ctx.budget_end() > end => continue,
                    Err(_) => {
                        break Outcome::Timeout(format!(
                            "stopped: the {} budget for one server ran out while this case waited",
                            human(ctx.budget())
                        ));
                    }
                }
            };
            CaseResult::new(case, outcome, t.lines(), t.elapsed())
        }
    };
    if result.status == Status::Pass {
        ctx.observe(|o| o.passed.push(id));
    }
    result
}

/// The first need of a case that the observations do not meet, as the reason to skip it.
fn unmet(needs: &[Need], obs: &Observations, config: &CheckConfig) -> Option<SkipReason> {
    for need in needs {
        let missing = match need {
            Need::Connection => obs.gone.map(SkipReason::ServerGone),
            Need::AnyReply => match obs.first_kind {
                Some(kind) if !kind.is_line() => Some(SkipReason::NoReply),
                _ => None,
            },
            Need::TimeReply => match obs.first_kind {
                Some(ReplyKind::Time) | None => None,
                Some(kind) if !kind.is_line() => Some(SkipReason::NoReply),
                Some(kind) => Some(SkipReason::NoTimeReply(kind)),
            },
            Need::NoGreeting => obs.greeting_lines.map(|_| SkipReason::Greeting),
            // A case left out by --only cannot block another.
            Need::Passed(id) => (config.is_selected(*id) && !obs.passed.contains(id))
                .then_some(SkipReason::Blocked(*id)),
            Need::After(_) | Need::Observed(_) => None,
        };
        if missing.is_some() {
            return missing;
        }
    }
    None
}

/// Every case of `catalogue` skipped for `why` (or as not selected): a target that could not be
/// checked at all.
pub fn skip_all(
    catalogue: &'static [Case],
    config: &CheckConfig,
    why: SkipReason,
) -> Vec<CaseResult> {
    fill(catalogue, vec![None; catalogue.len()], config, why)
}

/// Every case without a result, skipped for `why` (or as not selected).
fn fill(
    catalogue: &'static [Case],
    results: Vec<Option<CaseResult>>,
    config: &CheckConfig,
    why: SkipReason,
) -> Vec<CaseResult> {
    results
        .into_iter()
        .zip(catalogue.iter())
        .map(|(r, case)| {
            r.unwrap_or_else(|| {
                let reason = if config.is_selected(case.id) {
                    why.clone()
                } else {
                    SkipReason::NotSelected
                };
                CaseResult::skipped(case, reason)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_run_in_waves_after_what_they_need() {
        let catalogue = &crate::check::CATALOGUE;
        let rest: Vec<CaseId> = catalogue
            .iter()
            .filter(|c| matches!(c.schedule, Schedule::Sequence | Schedule::Beside))
            .map(|c| c.id)
            .collect();
        let waves = waves(catalogue, &rest);
        let wave = |id| waves.iter().position(|w| w.contains(&id)).expect("placed");
        assert!(wave(CaseId::Pipelined) > wave(CaseId::Repeat));
        assert!(wave(CaseId::Pipelined) > wave(CaseId::SplitLine));
        assert!(wave(CaseId::TimeCorrect) > wave(CaseId::Repeat));
        assert_eq!(wave(CaseId::Quit), 0);
        assert_eq!(waves.iter().map(Vec::len).sum::<usize>(), rest.len());
        let second = &waves[wave(CaseId::TimeCorrect)];
        assert_eq!(
            second[0],
            CaseId::TimeCorrect,
            "a Beside case leads its wave"
        );
    }
}
