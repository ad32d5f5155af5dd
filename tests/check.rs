//! `jam check` grading real servers: jamd, and course servers written in Python the way students
//! write them, each with one typical mistake (tests/fixtures/student_server.py). Each must be
//! graded exactly: the right case fails, the others pass, the right exit code with and without
//! `--strict`. And hostile servers are graded in bounded time.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Jamd, require_tool};
use serde_json::Value;

/// A Python course server in one of the fixture's modes, killed when dropped.
struct Student {
    child: Child,
    port: u16,
}

impl Student {
    fn start(mode: &str) -> Option<Student> {
        if !require_tool("python3", "python3") {
            return None;
        }
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/student_server.py"
        );
        let mut child = Command::new("python3")
            .args([script, mode])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fixture server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the fixture prints its port");
        let port = line.trim().parse().expect("a port number");
        Some(Student { child, port })
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Student {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jam(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jam"));
    command.args(args).stdin(Stdio::null());
    command
}

/// A finished `jam check --json` run.
struct Graded {
    code: i32,
    json: Value,
    took: Duration,
}

impl Graded {
    /// The one target's cases: id -> status.
    fn statuses(&self) -> BTreeMap<String, String> {
        self.json["targets"][0]["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().expect("id").to_string(),
                    c["status"].as_str().expect("status").to_string(),
                )
            })
            .collect()
    }

    fn detail(&self, id: &str) -> String {
        self.case(id)["detail"]
            .as_str()
            .expect("detail")
            .to_string()
    }

    fn case(&self, id: &str) -> Value {
        self.json["targets"][0]["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no case {id}"))
    }

    /// Ids of the must and should cases that did not pass.
    fn not_passed(&self) -> Vec<String> {
        self.json["targets"][0]["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .filter(|c| c["level"] != "info" && c["status"] != "pass")
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect()
    }
}

fn finish(output: Output, started: Instant) -> Graded {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {stdout:?}"));
    Graded {
        code: output.status.code().expect("exit code"),
        json,
        took: started.elapsed(),
    }
}

/// Runs `jam check --json` and `jam check --strict --json` at once, each against its own server
/// (a server that serves one client at a time must not see two graders at once).
fn grade_both(target: &str, strict_target: &str) -> (Graded, Graded) {
    let started = Instant::now();
    let plain = jam(&["check", "--json", target])
        .stdout(Stdio::piped())
        .spawn()
        .expect("jam");
    let strict = jam(&["check", "--strict", "--json", strict_target])
        .stdout(Stdio::piped())
        .spawn()
        .expect("jam");
    let plain = finish(plain.wait_with_output().expect("jam"), started);
    let strict = finish(strict.wait_with_output().expect("jam"), started);
    (plain, strict)
}

fn grade(args: &[&str]) -> Graded {
    let started = Instant::now();
    let output = jam(args).output().expect("jam");
    finish(output, started)
}

/// Grades a fixture: exactly `failing` (must and should ids) do not pass, with these exit codes.
fn assert_graded(mode: &str, failing: &[&str], code: i32, strict_code: i32) -> Option<Graded> {
    let student = Student::start(mode)?;
    let twin = Student::start(mode)?;
    let (plain, strict) = grade_both(&student.target(), &twin.target());
    assert_eq!(plain.not_passed(), failing, "{mode}: {:#}", plain.json);
    assert_eq!(
        strict.not_passed(),
        failing,
        "{mode} --strict: {:#}",
        strict.json
    );
    assert_eq!(plain.code, code, "{mode}: exit code");
    assert_eq!(strict.code, strict_code, "{mode} --strict: exit code");
    Some(plain)
}

#[test]
fn jamd_passes_every_case_with_strict_in_under_five_seconds() {
    let jamd = Jamd::spawn(&[]);
    let graded = grade(&["check", "--strict", "--json", &jamd.addr.to_string()]);
    assert_eq!(
        graded.not_passed(),
        Vec::<String>::new(),
        "{:#}",
        graded.json
    );
    assert_eq!(graded.code, 0);
    assert!(
        graded.took < Duration::from_secs(5),
        "took {:?}",
        graded.took
    );
    let statuses = graded.statuses();
    assert_eq!(statuses.len(), 16, "every catalogue case is reported");
    assert!(statuses.values().all(|s| s == "pass"), "{statuses:?}");
    assert_eq!(graded.json["targets"][0]["summary"]["must"]["passed"], 7);
    assert_eq!(graded.json["targets"][0]["summary"]["should"]["passed"], 5);
}

#[test]
fn a_correct_python_server_passes_every_case() {
    assert_graded("good", &[], 0, 0);
}

#[test]
fn a_server_that_reads_each_recv_as_a_request_fails_split_line_and_pipelined() {
    if let Some(g) = assert_graded("one-recv", &["split-line", "pipelined"], 1, 1) {
        for id in ["split-line", "pipelined"] {
            assert!(
                g.detail(id).contains("treats each recv() as one request"),
                "{}",
                g.detail(id)
            );
        }
        assert!(
            g.detail("split-line").contains("got 2 lines"),
            "{}",
            g.detail("split-line")
        );
    }
}

#[test]
fn a_server_that_serves_one_client_at_a_time_fails_concurrent() {
    if let Some(g) = assert_graded("serial", &["concurrent"], 1, 1) {
        assert!(
            g.detail("concurrent")
                .contains("serves one client at a time"),
            "{}",
            g.detail("concurrent")
        );
    }
}

#[test]
fn a_server_that_drops_a_quiet_client_to_serve_the_next_fails_concurrent() {
    // It also fails time-correct, honestly: that case pauses up to a second between requests,
    // and this server drops a client that is quiet for 0.4 s.
    if let Some(g) = assert_graded("serial-drop", &["concurrent", "time-correct"], 1, 1) {
        assert!(
            g.detail("concurrent").contains("client A"),
            "{}",
            g.detail("concurrent")
        );
    }
}

#[test]
fn a_correct_server_that_answers_slowly_passes_every_case() {
    assert_graded("slow", &[], 0, 0);
}

#[test]
fn a_reply_with_a_date_fails_time_format_naming_the_date_form() {
    if let Some(g) = assert_graded("date", &["time-format"], 1, 1) {
        let detail = g.detail("time-format");
        assert!(
            detail.contains("a date before the time (dd-mm-YYYY)"),
            "{detail}"
        );
        assert!(
            g.detail("date").contains("includes a date (dd-mm-YYYY"),
            "{}",
            g.detail("date")
        );
    }
}

#[test]
fn a_reply_without_the_jam_prefix_fails_time_format() {
    if let Some(g) = assert_graded("no-prefix", &["time-format"], 1, 1) {
        assert!(
            g.detail("time-format").contains("no \"JAM \" prefix"),
            "{}",
            g.detail("time-format")
        );
    }
}

#[test]
fn lf_only_replies_fail_time_format() {
    if let Some(g) = assert_graded("lf-replies", &["time-format"], 1, 1) {
        let detail = g.detail("time-format");
        assert!(detail.contains("LF only, not CR LF"), "{detail}");
        assert!(detail.contains("got \"JAM "), "{detail}");
    }
}

#[test]
fn a_server_that_ignores_quit_fails_quit() {
    if let Some(g) = assert_graded("no-close", &["quit"], 1, 1) {
        assert!(
            g.detail("quit").contains("still open"),
            "{}",
            g.detail("quit")
        );
        assert!(
            g.detail("after-quit").contains("kept the connection open"),
            "{}",
            g.detail("after-quit")
        );
    }
}

#[test]
fn a_server_that_dies_on_invalid_utf8_fails_bad_bytes_which_only_strict_requires() {
    if let Some(g) = assert_graded("utf8-crash", &["bad-bytes"], 0, 1) {
        assert!(
            g.detail("bad-bytes").contains("UnicodeDecodeError"),
            "{}",
            g.detail("bad-bytes")
        );
    }
}

#[test]
fn a_clock_five_seconds_ahead_fails_time_correct_which_only_strict_requires() {
    if let Some(g) = assert_graded("clock-off", &["time-correct"], 0, 1) {
        let detail = g.detail("time-correct");
        assert!(detail.contains("ahead of this machine's"), "{detail}");
        let seconds: f64 = detail
            .split("clock is ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no offset in {detail}"));
        assert!((4.0..6.0).contains(&seconds), "{detail}");
    }
}

#[test]
fn comparing_the_raw_bytes_with_time_fails_time_format_with_the_fix() {
    let (Some(student), Some(twin)) =
        (Student::start("raw-compare"), Student::start("raw-compare"))
    else {
        return;
    };
    let (plain, strict) = grade_both(&student.target(), &twin.target());
    assert_eq!(plain.statuses()["time-format"], "fail");
    let detail = plain.detail("time-format");
    assert!(detail.contains("which is not a time"), "{detail}");
    assert!(detail.contains("Strip the line end first"), "{detail}");
    assert_eq!((plain.code, strict.code), (1, 1));
}

#[test]
fn a_small_listen_backlog_is_named_as_the_likely_cause() {
    let Some(student) = Student::start("backlog") else {
        return;
    };
    let g = grade(&[
        "check",
        "--json",
        "--only",
        "connect,many-clients",
        &student.target(),
    ]);
    let detail = g.detail("many-clients");
    assert!(
        detail.contains("listen backlog is probably small"),
        "{detail}"
    );
    assert!(detail.contains("listen(128)"), "{detail}");
}

#[test]
fn a_silent_server_is_graded_in_bounded_time_with_dependent_cases_skipped() {
    let Some(student) = Student::start("silent") else {
        return;
    };
    let g = grade(&["check", "--json", &student.target()]);
    let statuses = g.statuses();
    assert_eq!(statuses["connect"], "pass");
    assert_eq!(statuses["time-format"], "timeout");
    for id in [
        "repeat",
        "concurrent",
        "split-line",
        "pipelined",
        "time-correct",
        "many-clients",
    ] {
        assert_eq!(statuses[id], "skip", "{id}");
        assert!(g.detail(id).contains("got no reply in time-format"), "{id}");
    }
    assert_eq!(g.code, 1);
    assert!(g.took < Duration::from_secs(15), "took {:?}", g.took);
}

#[test]
fn a_flooding_server_is_cut_off_after_a_few_kib() {
    let Some(student) = Student::start("flood") else {
        return;
    };
    let g = grade(&["check", "--json", &student.target()]);
    assert_eq!(g.statuses()["time-format"], "fail");
    assert!(
        g.detail("time-format").contains("more than 4096 bytes"),
        "{}",
        g.detail("time-format")
    );
    assert_eq!(g.code, 1);
    assert!(g.took < Duration::from_secs(15), "took {:?}", g.took);
}

#[test]
fn a_resetting_server_is_a_failure_not_a_hang() {
    let Some(student) = Student::start("reset") else {
        return;
    };
    let g = grade(&["check", "--json", &student.target()]);
    assert_ne!(g.code, 0);
    assert_eq!(g.json["targets"][0]["passed"], false);
    assert!(g.took < Duration::from_secs(15), "took {:?}", g.took);
}

#[test]
fn an_unreachable_server_exits_with_the_clients_refused_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let target = format!("127.0.0.1:{port}");
    let g = grade(&["check", "--json", &target]);
    assert_eq!(g.code, 3);
    assert_eq!(g.statuses()["connect"], "fail");
    assert!(g.detail("connect").contains("nothing listens there"));
    let text = jam(&["check", &target]).output().expect("jam");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(
        stdout.matches("connection refused").count(),
        1,
        "said once: {stdout}"
    );
}

#[test]
fn a_verdict_that_cannot_be_printed_is_not_a_pass() {
    let jamd = Jamd::spawn(&[]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = jam(&["check", "--only", "time-format", &jamd.addr.to_string()])
        .stdout(full)
        .output()
        .expect("jam");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_junit_file_that_cannot_be_written_is_a_usage_error_before_any_case_runs() {
    let out = jam(&["check", "--junit", "/nonexistent-dir/r.xml", "127.0.0.1:9"])
        .output()
        .expect("jam");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the JUnit file"));
}

#[test]
fn unknown_case_ids_and_empty_selections_are_usage_errors() {
    for args in [
        &["check", "--only", "time-fromat", "127.0.0.1:9"][..],
        &["check", "--skip", "nope", "127.0.0.1:9"],
        &["check", "--only", "quit", "--skip", "quit", "127.0.0.1:9"],
        &["check", "--only", "zone,date,latency", "127.0.0.1:9"],
        &["check", "--skip", "connect", "127.0.0.1:9"],
    ] {
        let out = jam(args).output().expect("jam");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("jam check: "), "{stderr}");
    }
}

#[test]
fn only_runs_the_chosen_cases_and_reports_the_rest_as_not_selected() {
    let jamd = Jamd::spawn(&[]);
    let g = grade(&[
        "check",
        "--json",
        "--only",
        "time-format,quit",
        &jamd.addr.to_string(),
    ]);
    let statuses = g.statuses();
    assert_eq!(statuses["time-format"], "pass");
    assert_eq!(statuses["quit"], "pass");
    assert_eq!(statuses["pipelined"], "skip");
    assert_eq!(g.detail("pipelined"), "not selected");
    assert_eq!(
        g.json["targets"][0]["summary"]["must"]["total"], 3,
        "connect always runs"
    );
    assert_eq!(g.code, 0);
}

#[test]
fn a_class_is_checked_at_once_with_one_row_per_server_and_junit() {
    let Some(good) = Student::start("good") else {
        return;
    };
    let Some(serial) = Student::start("serial") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("jam-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("class.txt");
    std::fs::write(
        &list,
        format!(
            "# lab 2\n{} alice\n\n{} bob  # one thread only\n",
            good.target(),
            serial.target()
        ),
    )
    .expect("write the list");
    let junit = dir.join("report.xml");
    let out = jam(&[
        "check",
        "--targets-file",
        list.to_str().expect("path"),
        "--junit",
        junit.to_str().expect("path"),
    ])
    .output()
    .expect("jam");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let alice = stdout
        .lines()
        .find(|l| l.starts_with("alice"))
        .expect("alice's row");
    let bob = stdout
        .lines()
        .find(|l| l.starts_with("bob"))
        .expect("bob's row");
    assert!(alice.contains("PASS") && alice.contains("7/7"), "{alice}");
    assert!(
        bob.contains("FAIL") && bob.contains("6/7") && bob.contains("concurrent"),
        "{bob}"
    );
    assert!(stdout.contains("1 of 2 servers passed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert_eq!(xml.matches("<testsuite ").count(), 2);
    assert_eq!(xml.matches("<testcase ").count(), 32);
    assert!(xml.contains("name=\"bob\""));
    assert!(xml.contains("<failure type=\"fail\""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn summary_prints_only_the_class_table_and_junit_counts_should_cases_only_with_strict() {
    let (Some(good), Some(crash)) = (Student::start("good"), Student::start("utf8-crash")) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("jam-check-summary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("class.txt");
    std::fs::write(
        &list,
        format!("{} alice\n{} carol\n", good.target(), crash.target()),
    )
    .expect("write the list");
    for strict in [false, true] {
        let junit = dir.join(format!("report-{strict}.xml"));
        let mut args = vec![
            "check",
            "--summary",
            "--targets-file",
            list.to_str().expect("path"),
            "--junit",
            junit.to_str().expect("path"),
        ];
        if strict {
            args.push("--strict");
        }
        let out = jam(&args).output().expect("jam");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(i32::from(strict)), "{stdout}");
        assert!(!stdout.contains("time-format"), "no case lines: {stdout}");
        let carol = stdout
            .lines()
            .find(|l| l.starts_with("carol"))
            .expect("carol's row");
        assert!(
            carol.contains("4/5") && carol.contains("bad-bytes"),
            "{carol}"
        );
        let xml = std::fs::read_to_string(&junit).expect("junit written");
        if strict {
            assert!(xml.contains("<failure type=\"fail\""), "{xml}");
        } else {
            // carol passes without --strict: her JUnit must not show a failure either.
            assert!(!xml.contains("<failure"), "{xml}");
            assert!(!xml.contains("<error"), "{xml}");
            assert!(xml.contains("not counted without --strict: fail"), "{xml}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_output_is_one_document_naming_every_case_with_the_four_status_words() {
    let jamd = Jamd::spawn(&[]);
    let other = Jamd::spawn(&[]);
    let out = jam(&[
        "check",
        "--json",
        &jamd.addr.to_string(),
        &other.addr.to_string(),
    ])
    .output()
    .expect("jam");
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["targets"].as_array().expect("targets").len(), 2);
    assert_eq!(v["summary"]["passed"], 2);
    for target in v["targets"].as_array().expect("targets") {
        for case in target["cases"].as_array().expect("cases") {
            let status = case["status"].as_str().expect("status");
            assert!(
                ["pass", "fail", "timeout", "skip"].contains(&status),
                "{case}"
            );
            for key in ["id", "level", "title", "detail"] {
                assert!(case[key].is_string(), "{key} in {case}");
            }
        }
    }
}

#[test]
fn help_lists_every_case() {
    let out = jam(&["check", "--help"]).output().expect("jam");
    let help = String::from_utf8_lossy(&out.stdout);
    for case in &jam::check::CATALOGUE {
        assert!(
            help.contains(case.id.as_str()),
            "{} missing from --help",
            case.id
        );
    }
}

#[test]
fn the_readme_case_table_is_the_catalogue() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let (begin, end) = ("<!-- cases:begin -->\n", "<!-- cases:end -->");
    let start = readme.find(begin).expect("the begin marker") + begin.len();
    let stop = readme.find(end).expect("the end marker");
    let table = jam::check::cases_markdown();
    if std::env::var("JAM_BLESS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{table}{}", &readme[..start], &readme[stop..]);
        std::fs::write(path, updated).expect("write README.md");
        return;
    }
    assert_eq!(
        &readme[start..stop],
        table,
        "the README's case table differs from the catalogue; regenerate it with: \
         JAM_BLESS=1 cargo test --test check the_readme_case_table"
    );
}
