//! `jam check-client` on clients written the way students write them
//! (tests/fixtures/clients/, one file per typical bug), on a client that is a shell script
//! around `nc`, and on `jam time` itself: every case's status and the words of each cause, in one
//! table, and nothing left running.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::require_tool;
use serde_json::Value;

/// One row: the client's command (`{fixture}` is tests/fixtures/clients/, `{port}` the port
/// check-client listens on), the cases that do not pass with their status and cause words (the
/// others must pass), and the exit code.
struct Row {
    name: &'static str,
    command: &'static [&'static str],
    not_passed: &'static [(&'static str, &'static str, &'static [&'static str])],
    code: i32,
}

const ROWS: &[Row] = &[
    Row {
        name: "correct",
        command: &["python3", "{fixture}/correct.py", "{port}"],
        not_passed: &[],
        code: 0,
    },
    Row {
        name: "one recv() as the whole reply",
        command: &["python3", "{fixture}/one_recv.py", "{port}"],
        not_passed: &[(
            "split-reply",
            "fail",
            &[
                "takes one recv() as the whole reply",
                "until it holds \"\\n\"",
            ],
        )],
        code: 1,
    },
    Row {
        name: "TIME CR LF CR LF",
        command: &["python3", "{fixture}/double_crlf.py", "{port}"],
        not_passed: &[("request-format", "fail", &["extra blank line"])],
        code: 1,
    },
    Row {
        name: "lower case",
        command: &["python3", "{fixture}/lowercase.py", "{port}"],
        not_passed: &[("request-format", "fail", &["not in capitals"])],
        code: 1,
    },
    Row {
        name: "LF only",
        command: &["python3", "{fixture}/lf_only.py", "{port}"],
        not_passed: &[("request-format", "fail", &["LF only"])],
        code: 1,
    },
    Row {
        name: "no QUIT",
        command: &["python3", "{fixture}/no_quit.py", "{port}"],
        not_passed: &[(
            "quit",
            "fail",
            &["1 of 1 connection closed without sending"],
        )],
        code: 0,
    },
    Row {
        name: "QUIT on a new connection",
        command: &["python3", "{fixture}/quit_new_conn.py", "{port}"],
        not_passed: &[("quit", "fail", &["on a new connection of its own"])],
        code: 0,
    },
    Row {
        name: "never exits",
        command: &["python3", "{fixture}/never_exits.py", "{port}"],
        not_passed: &[("exits", "fail", &["still running", "join the threads"])],
        code: 1,
    },
    Row {
        name: "5 threads, as in the course",
        command: &["python3", "{fixture}/five_threads.py", "{port}"],
        not_passed: &[("server-gone", "fail", &["exited with status 0"])],
        code: 0,
    },
    Row {
        name: "100 threads at once",
        command: &["python3", "{fixture}/hundred_threads.py", "{port}"],
        not_passed: &[("server-gone", "fail", &["exited with status 0"])],
        code: 0,
    },
    Row {
        name: "retries for ever when the server is gone",
        command: &["python3", "{fixture}/hang_on_refused.py", "{port}"],
        not_passed: &[(
            "server-gone",
            "fail",
            &["still running", "retries for ever"],
        )],
        code: 0,
    },
    Row {
        name: "says why it cannot connect",
        command: &["python3", "{fixture}/crash_on_refused.py", "{port}"],
        not_passed: &[],
        code: 0,
    },
    Row {
        name: "jam time",
        command: &["{jam}", "time", "127.0.0.1:{port}"],
        not_passed: &[],
        code: 0,
    },
];

/// Grades `row`; returns what differs from the table.
fn grade(row: &Row) -> Vec<String> {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clients");
    let command: Vec<String> = row
        .command
        .iter()
        .map(|a| {
            a.replace("{fixture}", fixture)
                .replace("{jam}", env!("CARGO_BIN_EXE_jam"))
        })
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args(["check-client", "--json", "--listen", "127.0.0.1:0", "--"])
        .args(&command)
        .stdin(Stdio::null())
        .output()
        .expect("jam check-client");
    let mut wrong = Vec::new();
    let json: Value = match serde_json::from_slice(&output.stdout) {
        Ok(v) => v,
        Err(e) => {
            return vec![format!(
                "no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            )];
        }
    };
    let cases: BTreeMap<String, Value> = json["targets"][0]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| (c["id"].as_str().expect("id").to_string(), c.clone()))
        .collect();
    for (id, case) in &cases {
        let status = case["status"].as_str().expect("status");
        let detail = case["detail"].as_str().expect("detail");
        match row.not_passed.iter().find(|(i, _, _)| i == id) {
            None if status != "pass" => wrong.push(format!("{id}: {status}: {detail}")),
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
            }
        }
    }
    if output.status.code() != Some(row.code) {
        wrong.push(format!("exit {:?}, not {}", output.status.code(), row.code));
    }
    wrong
}

#[test]
fn every_student_style_client_is_graded_exactly_with_the_right_cause() {
    if !require_tool("python3", "python3") {
        return;
    }
    let next = Mutex::new(0);
    let failures = Mutex::new(Vec::new());
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
                    for w in grade(row) {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("{}: {w}", row.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_client_written_with_nc_in_a_shell_script_is_graded() {
    if !require_tool("nc", "netcat-openbsd") {
        return;
    }
    let row = Row {
        name: "nc",
        command: &["sh", "{fixture}/nc_client.sh", "{port}"],
        // nc says nothing when the connection is refused.
        not_passed: &[("server-gone", "fail", &["said nothing"])],
        code: 0,
    };
    let wrong = grade(&row);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_client_that_never_exits_is_killed_with_its_whole_group() {
    if !require_tool("python3", "python3") {
        return;
    }
    // A shell that starts the client in the background and waits: killing only the shell would
    // leave the client running.
    let marker = format!("jam-check-client-{}", std::process::id());
    let script = format!(
        "exec -a {marker} python3 {}/tests/fixtures/clients/never_exits.py \"$1\" & wait",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args([
            "check-client",
            "--json",
            "--runs-timeout",
            "2s",
            "--listen",
            "127.0.0.1:0",
            "--",
            "bash",
            "-c",
            &script,
            "client",
            "{port}",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("jam check-client");
    assert_eq!(output.status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(200));
    let left = Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn a_port_in_use_is_named_with_the_way_around_it() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr");
    let output = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args(["check-client", "--listen", &addr.to_string(), "--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("jam check-client");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the port is in use"), "{stderr}");
    // Who holds it, as ss names the process (this test's own), or how to find out.
    assert!(
        stderr.contains("check_client") || stderr.contains("another server listens there"),
        "{stderr}"
    );
    assert!(stderr.contains("--listen 127.0.0.1:PORT"), "{stderr}");
}
