//! What `jam check` prints: a table for people, one JSON document for programs, JUnit XML for CI
//! systems and autograders.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::display::human;
use super::grade::{Points, case_points, number, score};
use super::model::{CaseResult, Graded, Level, Status, TargetReport};

/// Terminal colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colours only when `color` (stdout is a terminal).
    pub fn new(color: bool) -> Self {
        Style { color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn status(&self, status: Status, level: Level) -> String {
        let word = format!("{:<7}", status.name());
        match (status, level) {
            (Status::Pass, _) => self.paint("32", &word),
            (Status::Fail | Status::Timeout, Level::Must) => self.paint("1;31", &word),
            (Status::Fail | Status::Timeout, _) => self.paint("33", &word),
            (Status::Skip, _) => self.paint("2", &word),
        }
    }
}

fn tally_text<C: Graded>(report: &TargetReport<C>, level: Level) -> String {
    let t = report.tally(level);
    format!("{}/{}", t.passed, t.total)
}

fn verdict<C: Graded>(report: &TargetReport<C>) -> &'static str {
    if report.passed() { "PASS" } else { "FAIL" }
}

/// One server's results as a table, with the detail of each case that did not pass (of every case
/// with `verbose`, and its transcript).
pub fn text<C: Graded>(
    tool: &str,
    report: &TargetReport<C>,
    verbose: bool,
    style: Style,
) -> String {
    let mut out = String::new();
    let address = report
        .address
        .map(|a| format!(" ({a})"))
        .unwrap_or_default();
    let name = match &report.spec.name {
        Some(name) => format!("{name}: {}", report.spec.target),
        None => report.spec.target.clone(),
    };
    let _ = writeln!(out, "{tool} {name}{address}");
    if let Some(e) = &report.error {
        // Nothing could be checked: say why once, not once per skipped case.
        let why = report
            .cases
            .iter()
            .find(|r| r.case.name() == "connect" && r.status != Status::Skip)
            .map_or_else(|| e.to_string(), |r| r.detail.clone());
        let _ = writeln!(out, "{}", wrap(&format!("error: {why}"), 2, 100));
        let _ = writeln!(
            out,
            "  {}: not checked, every case skipped",
            style.paint("1;31", "FAIL")
        );
        return out;
    }
    for r in &report.cases {
        if r.not_selected() && !verbose {
            continue;
        }
        let _ = writeln!(
            out,
            "  {} {:<6} {:<16} {}",
            style.status(r.status, r.case.level()),
            r.case.level().name(),
            r.case.name(),
            r.case.title()
        );
        let show_detail = verbose
            || matches!(r.status, Status::Fail | Status::Timeout)
            || r.case.level() == Level::Info
            || (r.status == Status::Skip && !r.not_selected());
        if show_detail && !r.detail.is_empty() {
            let _ = writeln!(out, "{}", wrap(&r.detail, 28, 100));
        }
        if verbose {
            for line in &r.transcript {
                let _ = writeln!(out, "{:28}{line}", "");
            }
        }
    }
    let strict = if report.strict { " (--strict)" } else { "" };
    let result = match verdict(report) {
        "PASS" => style.paint("1;32", "PASS"),
        _ => style.paint("1;31", "FAIL"),
    };
    let _ = writeln!(
        out,
        "  {result}{strict}: must {}, should {}",
        tally_text(report, Level::Must),
        tally_text(report, Level::Should),
    );
    out
}

/// Indents `text` by `indent` columns and wraps it at `width`.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            let _ = writeln!(out, "{:indent$}{line}", "");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = write!(out, "{:indent$}{line}", "");
    out
}

/// One row per server: name, must and should passed/total, the score (when `--points` was
/// given), the run time, the failures.
pub fn summary_table<C: Graded>(run: &Run<'_, C>, style: Style) -> String {
    let reports = run.reports;
    let mut out = String::new();
    let name_width = reports
        .iter()
        .map(|r| r.label().chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let score_of = |r: &TargetReport<C>| match run.points.given {
        true => format!("{:>9} ", score(r, run.points).to_string()),
        false => String::new(),
    };
    let score_head = if run.points.given {
        format!("{:>9} ", "score")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{:<name_width$}  {:<6} {:<7} {:<7} {score_head}{:>6}  failures",
        "server", "result", "must", "should", "time"
    );
    for r in reports {
        let failures = match &r.error {
            Some(e) => e.to_string(),
            None => r.failures().join(", "),
        };
        let result = format!("{:<6}", verdict(r));
        let result = if r.passed() {
            style.paint("32", &result)
        } else {
            style.paint("31", &result)
        };
        let _ = writeln!(
            out,
            "{:<name_width$}  {result} {:<7} {:<7} {}{:>6}  {failures}",
            r.label(),
            tally_text(r, Level::Must),
            tally_text(r, Level::Should),
            score_of(r),
            human(r.elapsed),
        );
    }
    let passed = reports.iter().filter(|r| r.passed()).count();
    let _ = writeln!(out, "{passed} of {} servers passed", reports.len());
    out
}

/// A finished run, as every format reads it: one model feeding text, JSON, JUnit, CSV,
/// Gradescope and the HTML board, so that the formats never disagree.
pub struct Run<'a, C: 'static> {
    /// The command (`jam check`).
    pub tool: &'static str,
    /// Every case the tool has, in order.
    pub catalogue: &'static [C],
    /// One report per target, in the order given.
    pub reports: &'a [TargetReport<C>],
    /// Should-level cases count toward the verdict.
    pub strict: bool,
    /// What a passed case earns.
    pub points: &'a Points,
}

impl<C: Graded> Run<'_, C> {
    /// How many targets passed case `id`, of those that ran it (not selected, or a target that
    /// could not be checked, does not count).
    fn pass_rate(&self, id: &str) -> (usize, usize) {
        let mut rate = (0, 0);
        for r in self.reports.iter().filter(|r| r.error.is_none()) {
            if let Some(c) = r
                .cases
                .iter()
                .find(|c| c.case.name() == id && !c.not_selected())
            {
                rate.1 += 1;
                if c.status == Status::Pass {
                    rate.0 += 1;
                }
            }
        }
        rate
    }
}

fn target_json<C: Graded>(report: &TargetReport<C>, points: &Points) -> Value {
    let cases: Vec<Value> = report
        .cases
        .iter()
        .map(|r| {
            json!({
                "id": r.case.name(),
                "level": r.case.level().name(),
                "status": r.status.name(),
                "skip_reason": r.skip.as_ref().map(|s| s.key()),
                "title": r.case.title(),
                "detail": r.detail,
                "duration_ms": r.elapsed.as_secs_f64() * 1e3,
                "transcript": r.transcript,
            })
        })
        .collect();
    let tally = |level| {
        let t = report.tally(level);
        json!({"passed": t.passed, "total": t.total})
    };
    let score = score(report, points);
    json!({
        "target": report.spec.target,
        "name": report.spec.name,
        "address": report.address.map(|a| a.to_string()),
        "passed": report.passed(),
        "duration_ms": report.elapsed.as_secs_f64() * 1e3,
        "error": report.error.as_ref().map(ToString::to_string),
        "cases": cases,
        "summary": {
            "must": tally(Level::Must),
            "should": tally(Level::Should),
            "info": tally(Level::Info),
            "failures": report.failures(),
            "score": {"earned": score.earned, "max": score.max},
        },
    })
}

/// The whole run as one JSON document.
pub fn json<C: Graded>(run: &Run<'_, C>) -> Value {
    let reports = run.reports;
    let passed = reports.iter().filter(|r| r.passed()).count();
    let catalogue: Vec<Value> = run
        .catalogue
        .iter()
        .map(|c| {
            let (passed, checked) = run.pass_rate(c.name());
            json!({"id": c.name(), "level": c.level().name(), "title": c.title(), "passed": passed, "checked": checked})
        })
        .collect();
    json!({
        "tool": run.tool,
        "version": env!("CARGO_PKG_VERSION"),
        "strict": run.strict,
        "points": run.points.spec(),
        "catalogue": catalogue,
        "targets": reports.iter().map(|r| target_json(r, run.points)).collect::<Vec<_>>(),
        "summary": {
            "targets": reports.len(),
            "passed": passed,
            "failed": reports.len() - passed,
        },
    })
}

/// The result word of a target: `pass`, `fail`, or `error` when it could not be checked.
fn result_word<C: Graded>(report: &TargetReport<C>) -> &'static str {
    match (&report.error, report.passed()) {
        (Some(_), _) => "error",
        (None, true) => "pass",
        (None, false) => "fail",
    }
}

/// One row per target for a spreadsheet: name, target, address, result, every case's status (by
/// id), must and should passed and total, score, maximum and run time in seconds.
pub fn csv<C: Graded>(run: &Run<'_, C>) -> Result<String, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = vec!["name", "target", "address", "result"];
    header.extend(run.catalogue.iter().map(Graded::name));
    header.extend([
        "must_passed",
        "must_total",
        "should_passed",
        "should_total",
        "score",
        "max_score",
        "seconds",
    ]);
    out.write_record(&header)?;
    for r in run.reports {
        let (must, should) = (r.tally(Level::Must), r.tally(Level::Should));
        let score = score(r, run.points);
        let mut row: Vec<String> = vec![
            r.label().to_string(),
            r.spec.target.clone(),
            r.address.map(|a| a.to_string()).unwrap_or_default(),
            result_word(r).to_string(),
        ];
        for case in run.catalogue {
            let status = r.cases.iter().find(|c| c.case.name() == case.name());
            row.push(status.map_or("", |c| c.status.name()).to_string());
        }
        row.extend([
            must.passed.to_string(),
            must.total.to_string(),
            should.passed.to_string(),
            should.total.to_string(),
            number(score.earned),
            number(score.max),
            format!("{:.3}", r.elapsed.as_secs_f64()),
        ]);
        out.write_record(&row)?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Gradescope's autograder `results.json`: a test per case (per target and case when there are
/// several targets) with its score, maximum and output. Cases left out by `--only`/`--skip` are
/// left out here too.
pub fn gradescope<C: Graded>(run: &Run<'_, C>) -> Value {
    let several = run.reports.len() > 1;
    let mut tests = Vec::new();
    let mut total = 0.0;
    let mut seconds = 0.0;
    for r in run.reports {
        seconds += r.elapsed.as_secs_f64();
        for c in &r.cases {
            let Some((earned, worth)) = case_points(c, run.points) else {
                continue;
            };
            total += earned;
            let name = match several {
                true => format!(
                    "{}: {} ({})",
                    r.label(),
                    c.case.name(),
                    c.case.level().name()
                ),
                false => format!("{} ({})", c.case.name(), c.case.level().name()),
            };
            let mut output = format!("{}: {}\n{}", c.status.name(), c.case.title(), c.detail);
            if let Some(e) = &r.error {
                output = format!("not checked: {e}");
            } else if !c.transcript.is_empty() {
                output.push_str("\n\n");
                output.push_str(&c.transcript.join("\n"));
            }
            tests.push(json!({
                "name": name,
                "score": earned,
                "max_score": worth,
                "status": if c.status == Status::Pass { "passed" } else { "failed" },
                "output": output,
                "tags": [c.case.level().name()],
                "visibility": "visible",
            }));
        }
    }
    let passed = run.reports.iter().filter(|r| r.passed()).count();
    let mut doc = json!({
        "execution_time": seconds.ceil() as u64,
        "output": format!(
            "{} {}: {passed} of {} servers passed; points {}",
            run.tool,
            env!("CARGO_PKG_VERSION"),
            run.reports.len(),
            run.points.spec()
        ),
        "visibility": "visible",
        "stdout_visibility": "visible",
        "tests": tests,
    });
    if !several {
        doc["score"] = json!(total);
    }
    doc
}

/// How one case shows in JUnit XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JunitKind {
    /// A passed test case (and a should-level failure without `--strict`, which does not count:
    /// its detail goes to `<system-out>`, marked as not counted).
    Passed,
    /// `<failure>`: a counted `fail`.
    Failure,
    /// `<error>`: a counted `timeout`, kept apart from failures.
    Error,
    /// `<skipped>`.
    Skipped,
}

/// The JUnit mapping: a result counts as a failure or error exactly when it counts against the
/// verdict (must always; should with `--strict`; info never).
fn junit_kind<C: Graded>(report: &TargetReport<C>, c: &CaseResult<C>) -> JunitKind {
    let counted = match c.case.level() {
        Level::Must => true,
        Level::Should => report.strict,
        Level::Info => false,
    };
    match c.status {
        Status::Pass => JunitKind::Passed,
        Status::Skip => JunitKind::Skipped,
        Status::Fail if counted => JunitKind::Failure,
        Status::Timeout if counted => JunitKind::Error,
        Status::Fail | Status::Timeout => JunitKind::Passed,
    }
}

/// The whole run as JUnit XML: a test suite per server, a test case per catalogue case. A failure
/// that counts against the verdict is a `<failure>` (`fail`) or an `<error>` (`timeout`, so the
/// two stay apart); a should-level one without `--strict` does not count, so it is a passed test
/// case whose `<system-out>` starts with `not counted without --strict`; `skip` is `<skipped>`.
/// So a server that passes has no failures in its JUnit either.
pub fn junit<C: Graded>(run: &Run<'_, C>) -> String {
    let (tool, reports) = (run.tool, run.reports);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let count = |r: &TargetReport<C>, k: JunitKind| {
        r.cases.iter().filter(|c| junit_kind(r, c) == k).count()
    };
    let total = |k: JunitKind| reports.iter().map(|r| count(r, k)).sum::<usize>();
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
        xml(tool),
        reports.iter().map(|r| r.cases.len()).sum::<usize>(),
        total(JunitKind::Failure),
        total(JunitKind::Error),
        total(JunitKind::Skipped)
    );
    for r in reports {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml(r.label()),
            r.cases.len(),
            count(r, JunitKind::Failure),
            count(r, JunitKind::Error),
            count(r, JunitKind::Skipped),
            r.elapsed.as_secs_f64()
        );
        for c in &r.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"jam-check.{}\" name=\"{}\" time=\"{:.3}\"",
                c.case.level().name(),
                c.case.name(),
                c.elapsed.as_secs_f64()
            );
            let body = format!("{}\n{}", c.detail, c.transcript.join("\n"));
            match junit_kind(r, c) {
                JunitKind::Passed => {
                    let body = if c.status == Status::Pass {
                        body
                    } else {
                        format!("not counted without --strict: {}: {body}", c.status.name())
                    };
                    let _ = writeln!(
                        out,
                        ">\n      <system-out>{}</system-out>\n    </testcase>",
                        xml(&body)
                    );
                }
                kind @ (JunitKind::Failure | JunitKind::Error) => {
                    let element = if kind == JunitKind::Failure {
                        "failure"
                    } else {
                        "error"
                    };
                    let _ = writeln!(
                        out,
                        ">\n      <{element} type=\"{}\" message=\"{}\">{}</{element}>\n    </testcase>",
                        c.status.name(),
                        xml(&c.detail),
                        xml(&body)
                    );
                }
                JunitKind::Skipped => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(&c.detail)
                    );
                }
            }
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    <system-err>{}</system-err>", xml(&e.to_string()));
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text escaped for XML content and attributes; characters XML 1.0 cannot hold at all (most
/// control characters) become `\xNN`. Hand-written: five entities and one range do not justify
/// an XML crate.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// How long a run took, for the closing line.
pub fn took(d: std::time::Duration) -> String {
    human(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(xml("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(xml("x\u{0}y\u{1b}\n"), "x\\x00y\\x1B\n");
    }

    #[test]
    fn long_details_wrap_under_an_indent() {
        let wrapped = wrap("one two three four", 4, 14);
        assert_eq!(wrapped, "    one two\n    three four");
    }
}
