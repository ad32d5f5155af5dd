//! `jam check`: grades a time server against the assignment, case by case, the way h2spec grades
//! an HTTP/2 server: each case is a value ([`Case`]) tied to a clause of the assignment, with a
//! level (must, should, info), what it needs from the cases before it, how it is scheduled and the
//! function that runs it. A case ends as pass, fail, timeout or skip, with what was sent, what came
//! back and the likely fix.
//!
//! A case judges its own clause and nothing else: when an earlier, different bug is in the way (no
//! time reply at all, a server that stopped accepting), it is skipped with a typed
//! [`SkipReason`], never failed.
//!
//! The modules form a tree: [`display`] (how bytes, durations and zones read) under `model` (the
//! words: ids, levels, statuses, needs, skip reasons, settings) under [`probe`] (bounded,
//! transcript-keeping connections) and [`diagnose`] (what an answer means, pure) under `runner`
//! (the generic runner: the shape of a case, the shared observations, scheduling, the budget)
//! under `cases` (the run functions) under `catalogue` (every case as a value); [`report`] and
//! this file sit on top.

mod cases;
mod catalogue;
pub mod client;
mod diagnose;
mod display;
pub mod grade;
pub mod live;
mod model;
pub mod page;
mod probe;
pub mod report;
mod runner;

use std::sync::Arc;
use std::time::Duration;

pub use catalogue::{CATALOGUE, cases_help, cases_markdown};
pub use model::{
    CaseId, CheckConfig, Graded, Level, Need, Outcome, ReplyKind, SkipReason, Status, Tally,
    TargetSpec, case_list,
};
pub use runner::{Case, CaseResult, TargetReport};

use crate::client::{ClientError, Target};

/// Checks every target, at most `config.jobs` at once, in the order given.
pub async fn run_all(specs: Vec<TargetSpec>, config: &CheckConfig) -> Vec<TargetReport> {
    let config = Arc::new(config.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(config.jobs.max(1)));
    let mut tasks = Vec::new();
    for spec in specs {
        let (config, permits, copy) = (config.clone(), permits.clone(), spec.clone());
        let task = tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            check_target(spec, &config).await
        });
        tasks.push((task, copy));
    }
    let mut reports = Vec::new();
    for (task, spec) in tasks {
        match task.await {
            Ok(report) => reports.push(report),
            // A bug in jam must not drop a server from the class table (and let the run pass).
            Err(e) => reports.push(TargetReport {
                cases: runner::skip_all(&CATALOGUE, &config, SkipReason::Unreachable),
                spec,
                address: None,
                error: Some(ClientError::Usage(format!(
                    "jam failed while checking this server (a bug in jam: please report it): {e}"
                ))),
                strict: config.strict,
                elapsed: Duration::ZERO,
            }),
        }
    }
    reports
}

/// A finished `jam check` run, as every report format reads it.
pub fn server_run<'a>(
    reports: &'a [TargetReport],
    strict: bool,
    points: &'a grade::Points,
) -> report::Run<'a, Case> {
    report::Run {
        tool: "jam check",
        catalogue: &CATALOGUE,
        reports,
        strict,
        points,
    }
}

/// Checks one server.
async fn check_target(spec: TargetSpec, config: &CheckConfig) -> TargetReport {
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
        Ok(addrs) => runner::run_cases(&CATALOGUE, &addrs, config).await,
        Err(e) => (
            None,
            runner::skip_all(&CATALOGUE, config, SkipReason::Unreachable),
            Some(e),
        ),
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
pub fn exit_code<C: Graded>(reports: &[model::TargetReport<C>]) -> u8 {
    match reports {
        [one] => match &one.error {
            Some(e) => e.exit_code(),
            None if one.passed() => 0,
            None => 1,
        },
        all if !all.is_empty() && all.iter().all(model::TargetReport::passed) => 0,
        _ => 1,
    }
}
