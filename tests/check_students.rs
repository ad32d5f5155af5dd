//! `jam check` on time servers written the way students of the course write them
//! (tests/fixtures/servers/, one file per pattern, several bugs at once where students have them):
//! every case's status, and the words of the cause in each case that does not pass, in one table.
//! A server with one bug fails exactly that bug's case; a case that an earlier, different bug keeps
//! from judging is skipped with its reason, never failed.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Fixture, require_tool};
use serde_json::Value;

/// One row: the fixture, the zone both run in, and every must/should case that does not pass,
/// with its status and words its detail must contain. Cases not listed must pass.
struct Row {
    file: &'static str,
    tz: Tz,
    not_passed: &'static [(&'static str, &'static str, &'static [&'static str])],
}

/// The zone server and checker run in: one machine, one zone.
#[derive(Clone, Copy)]
enum Tz {
    /// The machine's own.
    Machine,
    /// UTC+7 (Asia/Jakarta, as a POSIX string, so no tzdata is needed).
    Jakarta,
    /// A fixed zone in which it is now between 13:00 and 22:59, so that a 12-hour clock shows.
    Afternoon,
}

impl Tz {
    fn value(self) -> Option<String> {
        match self {
            Tz::Machine => None,
            Tz::Jakarta => Some("WIB-7".into()),
            Tz::Afternoon => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("after 1970")
                    .as_secs();
                let utc_hour = (now / 3600 % 24) as i64;
                // Local hour 15: offset 15 - utc_hour, kept within -9..=14.
                let mut offset = 15 - utc_hour;
                if offset < -9 {
                    offset += 24;
                }
                // POSIX: the sign is west-positive.
                Some(format!("AFT{:+}", -offset))
            }
        }
    }
}

const ONE_RECV: &str = "treats each recv() as one request";

/// The table: what each student-style server must be graded.
const ROWS: &[Row] = &[
    Row {
        file: "asyncio_good",
        tz: Tz::Machine,
        not_passed: &[],
    },
    Row {
        file: "slow_split_reply",
        tz: Tz::Machine,
        not_passed: &[],
    },
    Row {
        file: "reference",
        tz: Tz::Machine,
        not_passed: &[
            (
                "time-format",
                "fail",
                &["a date before the time (dd-mm-YYYY)"],
            ),
            ("split-line", "timeout", &[ONE_RECV, "ignored both"]),
            ("pipelined", "fail", &[ONE_RECV, "got 1 line"]),
            (
                "many-clients",
                "fail",
                &["listen backlog is probably small"],
            ),
            ("unknown-command", "timeout", &["answer an unknown command"]),
            (
                "bad-bytes",
                "timeout",
                &["UnicodeDecodeError", "the_clients"],
            ),
        ],
    },
    Row {
        file: "one_recv",
        tz: Tz::Machine,
        not_passed: &[
            ("split-line", "fail", &[ONE_RECV, "got 2 lines"]),
            ("pipelined", "fail", &[ONE_RECV]),
            (
                "many-clients",
                "fail",
                &["listen backlog is probably small"],
            ),
            ("bad-bytes", "fail", &["UnicodeDecodeError"]),
        ],
    },
    Row {
        file: "one_recv_bare_error",
        tz: Tz::Machine,
        not_passed: &[
            ("split-line", "fail", &[ONE_RECV, "\"ERRORERROR\""]),
            ("pipelined", "fail", &[ONE_RECV]),
            (
                "many-clients",
                "fail",
                &["listen backlog is probably small"],
            ),
            (
                "unknown-command",
                "fail",
                &["with no line end", "ERRORJAM "],
            ),
            ("bad-bytes", "fail", &["UnicodeDecodeError"]),
        ],
    },
    Row {
        file: "greeting",
        tz: Tz::Machine,
        not_passed: &[
            (
                "time-format",
                "fail",
                &["before any request", "Selamat datang"],
            ),
            ("time-correct", "skip", &["a line before any request"]),
        ],
    },
    Row {
        file: "lowercase",
        tz: Tz::Machine,
        not_passed: &[
            (
                "time-format",
                "fail",
                &["compares the request with \"time\"", "ERR unknown command"],
            ),
            ("repeat", "skip", &["got no time in time-format"]),
            ("split-line", "skip", &["got no time in time-format"]),
            ("pipelined", "skip", &["got no time in time-format"]),
            ("time-correct", "skip", &["got no time in time-format"]),
            ("many-clients", "skip", &["got no time in time-format"]),
            ("unknown-command", "skip", &["got no time in time-format"]),
            ("lf-only", "skip", &["got no time in time-format"]),
            ("bad-bytes", "skip", &["got no time in time-format"]),
        ],
    },
    Row {
        file: "trailing_space",
        tz: Tz::Machine,
        not_passed: &[("time-format", "fail", &["\" \" after the seconds"])],
    },
    Row {
        file: "lf_cr",
        tz: Tz::Machine,
        not_passed: &[("time-format", "fail", &["LF CR, not CR LF"])],
    },
    Row {
        file: "time_prefix",
        tz: Tz::Machine,
        not_passed: &[(
            "time-format",
            "fail",
            &["\"TIME\" instead of the \"JAM \" prefix"],
        )],
    },
    Row {
        file: "http_server",
        tz: Tz::Machine,
        not_passed: &[
            (
                "time-format",
                "fail",
                &["an HTTP server answers on this port"],
            ),
            ("repeat", "skip", &["an HTTP response"]),
            ("split-line", "skip", &["an HTTP response"]),
            ("pipelined", "skip", &["an HTTP response"]),
            ("time-correct", "skip", &["an HTTP response"]),
            ("many-clients", "skip", &["an HTTP response"]),
            ("unknown-command", "skip", &["an HTTP response"]),
            ("lf-only", "skip", &["an HTTP response"]),
            ("bad-bytes", "skip", &["an HTTP response"]),
        ],
    },
    Row {
        file: "ssh_like",
        tz: Tz::Machine,
        not_passed: &[
            ("time-format", "fail", &["the banner of an SSH server"]),
            ("repeat", "skip", &["SSH server"]),
            ("split-line", "skip", &["SSH server"]),
            ("pipelined", "skip", &["SSH server"]),
            ("time-correct", "skip", &["SSH server"]),
            ("many-clients", "skip", &["SSH server"]),
            ("unknown-command", "skip", &["SSH server"]),
            ("lf-only", "skip", &["SSH server"]),
            ("bad-bytes", "skip", &["SSH server"]),
        ],
    },
    Row {
        file: "exits_after_first",
        tz: Tz::Machine,
        not_passed: &[
            (
                "connect",
                "fail",
                &["stopped accepting", "exited or crashed"],
            ),
            ("time-format", "skip", &["stopped accepting"]),
            ("repeat", "skip", &["stopped accepting"]),
            ("quit", "skip", &["stopped accepting"]),
            ("concurrent", "skip", &["stopped accepting"]),
            ("split-line", "skip", &["stopped accepting"]),
            ("pipelined", "skip", &["stopped accepting"]),
            ("time-correct", "skip", &["stopped accepting"]),
            ("many-clients", "skip", &["stopped accepting"]),
            ("unknown-command", "skip", &["stopped accepting"]),
            ("lf-only", "skip", &["stopped accepting"]),
            ("bad-bytes", "skip", &["stopped accepting"]),
        ],
    },
    Row {
        file: "utf8_leak",
        tz: Tz::Machine,
        not_passed: &[(
            "bad-bytes",
            "timeout",
            &[
                "UnicodeDecodeError",
                "connection stayed open",
                "the_clients",
            ],
        )],
    },
    Row {
        file: "twelve_hour",
        tz: Tz::Afternoon,
        not_passed: &[("time-correct", "fail", &["%I", "12 hours"])],
    },
    Row {
        file: "utc",
        tz: Tz::Jakarta,
        not_passed: &[(
            "time-correct",
            "fail",
            &["reports UTC", "utcnow()", "UTC+07:00"],
        )],
    },
    Row {
        file: "asyncio_good",
        tz: Tz::Jakarta,
        not_passed: &[],
    },
    Row {
        file: "buffer_until_crlf",
        tz: Tz::Machine,
        not_passed: &[
            (
                "pipelined",
                "fail",
                &["takes the whole buffer as one request"],
            ),
            ("lf-only", "timeout", &["waits for a CR"]),
        ],
    },
    Row {
        file: "close_after_reply",
        tz: Tz::Machine,
        not_passed: &[
            ("repeat", "fail", &["one request per connection"]),
            ("split-line", "fail", &[ONE_RECV]),
            ("pipelined", "skip", &["needs what repeat checks"]),
            ("time-correct", "skip", &["needs what repeat checks"]),
            ("unknown-command", "skip", &["needs what repeat checks"]),
            ("bad-bytes", "skip", &["needs what repeat checks"]),
        ],
    },
    Row {
        file: "clock_once",
        tz: Tz::Machine,
        not_passed: &[("time-correct", "fail", &["not once per connection"])],
    },
    Row {
        file: "echo",
        tz: Tz::Machine,
        not_passed: &[
            ("time-format", "fail", &["echo example"]),
            ("repeat", "skip", &["an echo of the request"]),
            ("quit", "fail", &["still open"]),
            ("split-line", "skip", &["an echo of the request"]),
            ("pipelined", "skip", &["an echo of the request"]),
            ("time-correct", "skip", &["an echo of the request"]),
            ("many-clients", "skip", &["an echo of the request"]),
            ("unknown-command", "skip", &["an echo of the request"]),
            ("lf-only", "skip", &["an echo of the request"]),
            ("bad-bytes", "skip", &["an echo of the request"]),
        ],
    },
    Row {
        file: "typical_date_spaces",
        tz: Tz::Machine,
        not_passed: &[
            (
                "time-format",
                "fail",
                &["a date before the time (dd mm YYYY)"],
            ),
            ("split-line", "fail", &[ONE_RECV]),
            ("pipelined", "fail", &[ONE_RECV]),
            (
                "many-clients",
                "fail",
                &["listen backlog is probably small"],
            ),
            ("bad-bytes", "fail", &["UnicodeDecodeError"]),
        ],
    },
    Row {
        file: "typical_lf_only",
        tz: Tz::Machine,
        not_passed: &[
            ("time-format", "fail", &["LF only, not CR LF"]),
            ("split-line", "timeout", &[ONE_RECV]),
            ("pipelined", "timeout", &[ONE_RECV]),
            ("unknown-command", "timeout", &["answer an unknown command"]),
            ("bad-bytes", "timeout", &["UnicodeDecodeError"]),
        ],
    },
];

/// Grades one row; returns what differs from the table, if anything, and how long it took.
fn grade(row: &Row) -> (Vec<String>, Duration) {
    let tz = row.tz.value();
    let fixture = Fixture::start(row.file, tz.as_deref().map(|tz| ("TZ", tz)));
    let mut command = Command::new(env!("CARGO_BIN_EXE_jam"));
    command
        .args(["check", "--json", &format!("127.0.0.1:{}", fixture.port)])
        .stdin(Stdio::null());
    if let Some(tz) = &tz {
        command.env("TZ", tz);
    }
    let started = Instant::now();
    let output = command.output().expect("run jam check");
    let took = started.elapsed();
    let json: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    let cases: BTreeMap<String, Value> = json["targets"][0]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| (c["id"].as_str().expect("id").to_string(), c.clone()))
        .collect();
    let mut wrong = Vec::new();
    for (id, case) in &cases {
        if case["level"] == "info" {
            continue;
        }
        let status = case["status"].as_str().expect("status");
        let detail = case["detail"].as_str().expect("detail");
        match row.not_passed.iter().find(|(i, _, _)| i == id) {
            None if status != "pass" => wrong.push(format!("{id}: {status}, not pass: {detail}")),
            None => {}
            Some((_, want, words)) => {
                if status != *want {
                    wrong.push(format!("{id}: {status}, not {want}: {detail}"));
                }
                for word in *words {
                    if !detail.contains(word) {
                        wrong.push(format!("{id}: no {word:?} in {detail:?}"));
                    }
                }
                // The typed reason agrees with the status.
                if (status == "skip") != case["skip_reason"].is_string() {
                    wrong.push(format!("{id}: skip_reason {}", case["skip_reason"]));
                }
            }
        }
    }
    let must_fail = row.not_passed.iter().any(|(id, _, _)| {
        jam::check::CaseId::parse(id).expect("an id").case().level == jam::check::Level::Must
    });
    let code = output.status.code().expect("exit code");
    if code != i32::from(must_fail) {
        wrong.push(format!("exit code {code}, not {}", i32::from(must_fail)));
    }
    (wrong, took)
}

#[test]
fn every_student_style_server_is_graded_exactly_with_the_right_cause() {
    if !require_tool("python3", "python3") {
        return;
    }
    // Three at a time: each server is its own process, and the grades must not depend on the
    // others (the machine has two cores).
    let next = Mutex::new(0);
    let report = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut next = next.lock().expect("lock");
                        *next += 1;
                        *next - 1
                    };
                    let Some(row) = ROWS.get(i) else { return };
                    let (wrong, took) = grade(row);
                    report.lock().expect("lock").push((row.file, wrong, took));
                }
            });
        }
    });
    let report = report.into_inner().expect("lock");
    let mut failures = String::new();
    for (file, wrong, took) in &report {
        eprintln!("{file:<24} {:>5.1} s  {}", took.as_secs_f64(), wrong.len());
        for w in wrong {
            failures.push_str(&format!("{file}: {w}\n"));
        }
        // A bound, not a speed target: every server is graded in bounded time.
        if *took > Duration::from_secs(15) {
            failures.push_str(&format!("{file}: took {took:?}\n"));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}
