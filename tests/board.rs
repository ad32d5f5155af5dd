//! The class board and the gradebook files, on student-style fixture servers: the HTML report and
//! the live board in a real browser (headless Chromium through selenium, tests/browser/board.py),
//! the CSV through a CSV parser, Gradescope's results.json against the fields its schema requires,
//! and the board's HTTP side over a raw socket. Every format is checked against the `--json`
//! document of the same run, so they cannot disagree.

mod common;

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Fixture, require_tool};
use serde_json::Value;

/// A Python that has selenium, with Chromium and its driver; `None` (skipped) outside CI when
/// they are missing. Debian's python3-selenium lives in the system Python, which may not be the
/// first `python3` on PATH.
fn browser_python() -> Option<String> {
    let ok = |python: &str| {
        Command::new(python)
            .args(["-c", "import selenium"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| ok(p))
        .map(str::to_string);
    let found = python.is_some()
        && require_tool("chromium", "chromium")
        && require_tool("chromedriver", "chromium-driver");
    if python.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "selenium is required under CI; install it with: apt-get install -y python3-selenium"
            );
        }
        eprintln!(
            "SKIPPED: selenium not found; install it with: apt-get install -y python3-selenium"
        );
    }
    python.filter(|_| found)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs tests/browser/board.py; fails the test with its words.
fn browser(python: &str, args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/board.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run board.py");
    assert!(
        out.status.success(),
        "board.py {}: {}{}",
        args[0],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

/// Keeps a screenshot: in target/ always, in docs/images/ with JAM_BLESS=1 (for the README).
fn keep_screenshot(shot: &Path, name: &str) {
    assert!(
        std::fs::metadata(shot).is_ok_and(|m| m.len() > 10_000),
        "screenshot {name} taken"
    );
    if std::env::var("JAM_BLESS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images");
        std::fs::create_dir_all(&docs).expect("docs/images");
        std::fs::copy(shot, docs.join(name)).expect("copy the screenshot");
    }
}

fn jam() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jam"))
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number, got {v}"))
}

#[test]
fn the_report_files_of_a_class_agree_with_its_json_and_the_page_works_in_a_browser() {
    if !require_tool("python3", "python3") {
        return;
    }
    let dir = scratch("board-report");
    let servers = [
        "reference",
        "one_recv",
        "greeting",
        "asyncio_good",
        "markup",
    ];
    let fixtures: Vec<Fixture> = servers.iter().map(|f| Fixture::start(f, None)).collect();
    let mut class = String::from("# lab 3\n");
    for (name, f) in servers.iter().zip(&fixtures) {
        class.push_str(&format!("127.0.0.1:{} {name}\n", f.port));
    }
    class.push_str("127.0.0.1:1 absent\n");
    let targets = dir.join("class.txt");
    std::fs::write(&targets, &class).expect("as the format says");
    let (html, csv, gradescope) = (
        dir.join("class.html"),
        dir.join("class.csv"),
        dir.join("results.json"),
    );
    let out = jam()
        .args(["check", "--json", "--points", "must=2,should=1,quit=3"])
        .arg("--targets-file")
        .arg(&targets)
        .arg("--html")
        .arg(&html)
        .arg("--csv")
        .arg(&csv)
        .arg("--gradescope")
        .arg(&gradescope)
        .output()
        .expect("run jam check");
    assert_eq!(out.status.code(), Some(1), "some servers fail");
    let run: Value = serde_json::from_slice(&out.stdout).expect("--json");
    std::fs::write(dir.join("run.json"), &out.stdout).expect("as the format says");
    let run_targets = run["targets"].as_array().expect("targets");
    assert_eq!(run_targets.len(), servers.len() + 1);
    let ids: Vec<&str> = run["catalogue"]
        .as_array()
        .expect("as the format says")
        .iter()
        .map(|c| c["id"].as_str().expect("as the format says"))
        .collect();

    // The CSV: a header and one row per server, read back by a CSV parser.
    let mut reader = csv::Reader::from_path(&csv).expect("CSV");
    let header: Vec<String> = reader
        .headers()
        .expect("as the format says")
        .iter()
        .map(str::to_string)
        .collect();
    let mut want_header = vec!["name", "target", "address", "result"];
    want_header.extend(&ids);
    want_header.extend([
        "must_passed",
        "must_total",
        "should_passed",
        "should_total",
        "score",
        "max_score",
        "seconds",
    ]);
    assert_eq!(header, want_header);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
    assert_eq!(rows.len(), run_targets.len());
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .expect("as the format says")
    };
    for (row, target) in rows.iter().zip(run_targets) {
        assert_eq!(
            &row[0],
            target["name"].as_str().expect("as the format says")
        );
        for case in target["cases"].as_array().expect("as the format says") {
            let id = case["id"].as_str().expect("as the format says");
            assert_eq!(
                &row[column(id)],
                case["status"].as_str().expect("as the format says"),
                "{id}"
            );
        }
        let score = &target["summary"]["score"];
        assert_eq!(
            row[column("score")]
                .parse::<f64>()
                .expect("as the format says"),
            number(&score["earned"])
        );
        assert_eq!(
            row[column("max_score")]
                .parse::<f64>()
                .expect("as the format says"),
            number(&score["max"])
        );
        assert_eq!(
            row[column("must_passed")]
                .parse::<u64>()
                .expect("as the format says"),
            target["summary"]["must"]["passed"]
                .as_u64()
                .expect("as the format says")
        );
        let result = match (
            target["error"].is_null(),
            target["passed"].as_bool().expect("as the format says"),
        ) {
            (false, _) => "error",
            (true, true) => "pass",
            (true, false) => "fail",
        };
        assert_eq!(&row[column("result")], result);
    }
    let absent = rows
        .iter()
        .find(|r| &r[0] == "absent")
        .expect("as the format says");
    assert_eq!(&absent[column("score")], "0");
    // must=2 × 7 must cases, should=1 × 5 should cases and quit=3 (a must case worth 3).
    assert_eq!(&absent[column("max_score")], "20");

    // Gradescope: the fields its schema requires, and the same scores.
    let gs: Value =
        serde_json::from_slice(&std::fs::read(&gradescope).expect("as the format says"))
            .expect("as the format says");
    let tests = gs["tests"].as_array().expect("tests");
    for t in tests {
        assert!(t["name"].is_string() && t["output"].is_string(), "{t}");
        assert!(number(&t["score"]) <= number(&t["max_score"]), "{t}");
        assert!(["passed", "failed"].contains(&t["status"].as_str().expect("as the format says")));
    }
    assert!(gs["execution_time"].is_u64() && gs["output"].is_string());
    for target in run_targets {
        let name = target["name"].as_str().expect("as the format says");
        let earned: f64 = tests
            .iter()
            .filter(|t| {
                t["name"]
                    .as_str()
                    .expect("as the format says")
                    .starts_with(&format!("{name}: "))
            })
            .map(|t| number(&t["score"]))
            .sum();
        assert_eq!(
            earned,
            number(&target["summary"]["score"]["earned"]),
            "{name}"
        );
    }

    if let Some(python) = browser_python() {
        let shot = dir.join("board-report.png");
        browser(
            &python,
            &[
                "report",
                html.to_str().expect("as the format says"),
                dir.join("run.json").to_str().expect("as the format says"),
                shot.to_str().expect("as the format says"),
            ],
        );
        keep_screenshot(&shot, "board-report.png");
    }
}

#[test]
fn a_students_own_run_writes_a_gradescope_file_with_its_total() {
    if !require_tool("python3", "python3") {
        return;
    }
    let dir = scratch("board-one");
    let server = Fixture::start("trailing_space", None);
    let results = dir.join("results.json");
    let out = jam()
        .args([
            "check",
            "--only",
            "connect,time-format,repeat,quit",
            "--gradescope",
        ])
        .arg(&results)
        .arg(format!("127.0.0.1:{}", server.port))
        .output()
        .expect("run jam check");
    assert_eq!(out.status.code(), Some(1), "time-format fails");
    let gs: Value = serde_json::from_slice(&std::fs::read(&results).expect("as the format says"))
        .expect("as the format says");
    let tests = gs["tests"].as_array().expect("as the format says");
    let names: Vec<&str> = tests
        .iter()
        .map(|t| t["name"].as_str().expect("as the format says"))
        .collect();
    assert_eq!(
        names,
        [
            "connect (must)",
            "time-format (must)",
            "repeat (must)",
            "quit (must)"
        ],
        "only the selected cases, named by id and level"
    );
    assert_eq!(number(&gs["score"]), 3.0, "the default: one point a case");
    let format = &tests[1];
    assert_eq!(format["score"], 0.0);
    assert_eq!(format["status"], "failed");
    assert!(
        format["output"]
            .as_str()
            .expect("as the format says")
            .contains("\" \" after the seconds"),
        "the cause is in the output: {format}"
    );
}

#[test]
fn wrong_points_and_report_paths_are_refused_before_the_run() {
    let refused = |args: &[&str], words: &str| {
        let out = jam().args(args).output().expect("run jam");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "said once: {err}");
    };
    refused(
        &["check", "--points", "must=x", "127.0.0.1:1"],
        "--points: points for `must`",
    );
    refused(
        &["check", "--points", "qiut=1", "127.0.0.1:1"],
        "`qiut` is neither",
    );
    refused(
        &["check", "--points", "no-such-file", "127.0.0.1:1"],
        "not a file that can be read",
    );
    refused(
        &["check", "--html", "/no/such/dir/x.html", "127.0.0.1:1"],
        "cannot write the HTML file /no/such/dir/x.html",
    );
    let same = scratch("board-refused").join("same");
    let same = same.to_str().expect("a UTF-8 path");
    refused(
        &["check", "--csv", same, "--gradescope", same, "127.0.0.1:1"],
        &format!("the CSV and Gradescope files are both {same}"),
    );
    assert!(
        !Path::new(same).exists(),
        "nothing written for a refused run"
    );
    let out = jam()
        .args(["check", "--serve", "127.0.0.1:0", "127.0.0.1:1"])
        .output()
        .expect("as the format says");
    assert_eq!(out.status.code(), Some(2), "--serve needs --watch");
    let out = jam()
        .args(["check", "--watch", "1s", "127.0.0.1:1"])
        .output()
        .expect("as the format says");
    assert_eq!(out.status.code(), Some(2), "--watch below 2s");
}

/// One HTTP/1.1 request over a raw socket: the response's head (status line and headers) and body.
fn http(addr: &str, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the board");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("as the format says");
    stream
        .write_all(request.as_bytes())
        .expect("as the format says");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("as the format says");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn the_live_board_turns_a_fixed_servers_row_green_without_a_reload() {
    if !require_tool("python3", "python3") {
        return;
    }
    let dir = scratch("board-live");
    let mode = dir.join("mode");
    std::fs::write(&mode, "buggy\n").expect("as the format says");
    let switchable = Fixture::start(
        "switchable",
        Some((
            "JAM_FIXTURE_MODE",
            mode.to_str().expect("as the format says"),
        )),
    );
    let steady = Fixture::start("asyncio_good", None);
    let targets = dir.join("class.txt");
    std::fs::write(
        &targets,
        format!(
            "127.0.0.1:{} switchable\n127.0.0.1:{} steady\n",
            switchable.port, steady.port
        ),
    )
    .expect("as the format says");
    let mut board = jam()
        .args([
            "check",
            "--watch",
            "2s",
            "--serve",
            "127.0.0.1:0",
            "--history",
            "5",
            "--only",
            "connect,time-format,repeat,quit",
        ])
        .arg("--targets-file")
        .arg(&targets)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the live board");
    let mut lines = BufReader::new(board.stdout.take().expect("as the format says")).lines();
    let first = lines
        .next()
        .expect("a first line")
        .expect("as the format says");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("the board's address: {first}"))
        .to_string();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    // Read-only: only GET and HEAD, and only the page and its document.
    let (head, _) = http(
        &addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("allow: get, head"), "{head}");
    let (head, _) = http(&addr, "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    let (head, body) = http(&addr, "GET /board.json HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        doc["board"]["live"]["interval_s"].as_f64() == Some(2.0),
        "{doc}"
    );

    if let Some(python) = browser_python() {
        let shot = dir.join("board-live.png");
        browser(
            &python,
            &[
                "live",
                &url,
                mode.to_str().expect("as the format says"),
                targets.to_str().expect("as the format says"),
                &format!("127.0.0.1:{} latecomer", steady.port),
                "2",
                shot.to_str().expect("as the format says"),
            ],
        );
        keep_screenshot(&shot, "board-live.png");
    }

    // Ctrl-C ends the board with the last round's table and verdict.
    Command::new("kill")
        .args(["-INT", &board.id().to_string()])
        .status()
        .expect("as the format says");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = board.wait().expect("as the format says");
    let text = rest.join("\n");
    assert!(text.contains("round 1:"), "a line per round: {text}");
    assert!(text.contains("servers passed"), "the closing table: {text}");
    if browser_python().is_some() {
        assert_eq!(
            status.code(),
            Some(0),
            "every server passed the last round: {text}"
        );
    }
}

#[test]
fn a_students_client_run_writes_the_same_report_files() {
    if !require_tool("python3", "python3") {
        return;
    }
    let dir = scratch("board-client");
    let (html, csv, gradescope) = (
        dir.join("client.html"),
        dir.join("client.csv"),
        dir.join("results.json"),
    );
    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/clients/one_recv.py"
    );
    let out = jam()
        .args(["check-client", "--json", "--listen", "127.0.0.1:0"])
        .arg("--html")
        .arg(&html)
        .arg("--csv")
        .arg(&csv)
        .arg("--gradescope")
        .arg(&gradescope)
        .args(["--", "python3", client, "{port}"])
        .stdin(Stdio::null())
        .output()
        .expect("run jam check-client");
    assert_eq!(out.status.code(), Some(1), "split-reply fails");
    let run: Value = serde_json::from_slice(&out.stdout).expect("--json");
    let cases = run["targets"][0]["cases"].as_array().expect("cases");
    let split = cases
        .iter()
        .find(|c| c["id"] == "split-reply")
        .expect("split-reply");
    assert_eq!(split["status"], "fail");

    let mut reader = csv::Reader::from_path(&csv).expect("CSV");
    let header = reader.headers().expect("a header").clone();
    let row = reader
        .records()
        .next()
        .expect("one row")
        .expect("a CSV row");
    let column = |name: &str| header.iter().position(|h| h == name).expect(name);
    assert_eq!(&row[column("split-reply")], "fail");
    assert_eq!(&row[column("result")], "fail");

    let gs: Value =
        serde_json::from_slice(&std::fs::read(&gradescope).expect("written")).expect("JSON");
    let test = gs["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["name"] == "split-reply (must)")
        .expect("split-reply's test");
    assert_eq!(test["score"], 0.0);
    assert!(
        test["output"].as_str().expect("output").contains("recv"),
        "the cause is in the output: {test}"
    );
    let earned: f64 = gs["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| number(&t["score"]))
        .sum();
    assert_eq!(
        number(&gs["score"]),
        earned,
        "one client: the total is given"
    );

    let page = std::fs::read_to_string(&html).expect("written");
    assert!(
        page.contains("\"tool\":\"jam check-client\""),
        "the client's run inside"
    );
    assert!(page.contains("split-reply"));
}
