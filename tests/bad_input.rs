//! Every bad input gets a clear answer: the real `jamd` and `jam` binaries, run with each bad flag,
//! environment variable or address (and the good form next to it), exit with the documented code,
//! say what is wrong in one line, and leave nothing running or listening.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::WAIT;

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// One row: the binary, its arguments (`{port}` is a free port), extra environment, the exit
/// code, and words its stderr must contain.
struct Row {
    binary: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    code: i32,
    says: &'static [&'static str],
}

const ROWS: &[Row] = &[
    // jamd: log filters are parsed strictly, whatever sets them.
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--log-level", "loud"],
        env: &[],
        code: 2,
        says: &["invalid --log-level \"loud\": \"loud\" is not a level"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}"],
        env: &[("JAMD_LOG_LEVEL", "wrn")],
        code: 2,
        says: &["\"wrn\" is not a level"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}"],
        env: &[("RUST_LOG", "garbage")],
        code: 2,
        says: &["invalid RUST_LOG \"garbage\""],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--log-level", "jam=loud"],
        env: &[],
        code: 2,
        says: &["\"loud\" is not a level"],
    },
    // jamd: booleans from the environment: what systemd and shells write, nothing else; a true
    // one still conflicts with --tz.
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}"],
        env: &[("JAMD_UTC", "banana")],
        code: 2,
        says: &["invalid value 'banana' for '--utc'"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--tz", "Asia/Jakarta"],
        env: &[("JAMD_UTC", "yes")],
        code: 2,
        says: &["--utc (or JAMD_UTC) and --tz (or JAMD_TZ) cannot both be used"],
    },
    // jamd: every setting has a range; 0 means off only for timeouts and the per-address limit.
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--threads", "0"],
        env: &[],
        code: 2,
        says: &["'--threads <N>': must be at least 1"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--threads", "100000"],
        env: &[],
        code: 2,
        says: &["--threads 100000: must be 1 to 1024"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--max-line", "100GiB"],
        env: &[],
        code: 2,
        says: &["--max-line 100GiB: must be 1 to 64KiB bytes"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}"],
        env: &[("JAMD_MAX_LINE", "0")],
        code: 2,
        says: &["--max-line 0: must be 1 to 64KiB bytes"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--max-connections", "0"],
        env: &[],
        code: 2,
        says: &["--max-connections 0: must be 1 to 1000000"],
    },
    Row {
        binary: "jamd",
        args: &[
            "--listen",
            "127.0.0.1:{port}",
            "--max-connections",
            "8",
            "--max-connections-per-ip",
            "9",
        ],
        env: &[],
        code: 2,
        says: &["--max-connections-per-ip 9: must be 0 (off), auto, or at most --max-connections"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--idle-timeout", "1000h"],
        env: &[],
        code: 2,
        says: &["--idle-timeout 1000h: must be 0 (off) to 24h"],
    },
    Row {
        binary: "jamd",
        args: &[
            "--check-config",
            "--listen",
            "127.0.0.1:{port}",
            "--max-output",
            "0",
        ],
        env: &[],
        code: 2,
        says: &["--max-output 0: must be 1 to 16MiB bytes"],
    },
    // jamd: addresses go through the same parser as jam's, and a bad one is a usage error.
    Row {
        binary: "jamd",
        args: &["--listen", "::1:{port}"],
        env: &[],
        code: 2,
        says: &["put an IPv6 address in brackets when a port follows: [::1]:"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1"],
        env: &[],
        code: 2,
        says: &["expected HOST:PORT"],
    },
    Row {
        binary: "jamd",
        args: &[
            "--listen",
            "127.0.0.1:{port}",
            "--metrics",
            "http://127.0.0.1:9145",
        ],
        env: &[],
        code: 2,
        says: &["drop the \"http://\": give HOST:PORT (127.0.0.1:9145)"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:70000"],
        env: &[],
        code: 2,
        says: &["port 70000 is out of range"],
    },
    Row {
        binary: "jamd",
        args: &["--listen", "127.0.0.1:{port}", "--tz", "Mars/Base"],
        env: &[],
        code: 2,
        says: &["unknown time zone \"Mars/Base\""],
    },
    Row {
        binary: "jamd",
        args: &[
            "--listen",
            "127.0.0.1:{port}",
            "--daytime",
            "127.0.0.1:{port}",
        ],
        env: &[],
        code: 2,
        says: &["is given to both --listen and --daytime"],
    },
    Row {
        binary: "jamd",
        args: &["--check-config", "--listen", "nosuch.invalid:{port}"],
        env: &[],
        code: 2,
        says: &["cannot use listen address \"nosuch.invalid:"],
    },
    // jam: addresses, each common mistake with its hint.
    Row {
        binary: "jam",
        args: &["time", "::1:{port}"],
        env: &[],
        code: 2,
        says: &["put an IPv6 address in brackets when a port follows: [::1]:"],
    },
    Row {
        binary: "jam",
        args: &["time", "127.0.0.1:0"],
        env: &[],
        code: 2,
        says: &["port 0 cannot be dialled"],
    },
    Row {
        binary: "jam",
        args: &["time", "127.0.0.1:70000"],
        env: &[],
        code: 2,
        says: &["port 70000 is out of range"],
    },
    Row {
        binary: "jam",
        args: &["time", "http://127.0.0.1:{port}/"],
        env: &[],
        code: 2,
        says: &["drop the \"http://\""],
    },
    Row {
        binary: "jam",
        args: &["time", "fe80::1"],
        env: &[],
        code: 2,
        says: &["fe80::1 is link-local: name the interface"],
    },
    Row {
        binary: "jam",
        args: &["time", "127.0.0.1:5", "7"],
        env: &[],
        code: 2,
        says: &["two ports"],
    },
    Row {
        binary: "jam",
        args: &["time", "-n", "0"],
        env: &[],
        code: 2,
        says: &["'--count <N>': 0 is not in 1.."],
    },
    // The good forms: HOST PORT as nc takes it, and -p, reach the address (refused: nothing
    // listens on the free port), not a usage error.
    Row {
        binary: "jam",
        args: &["time", "127.0.0.1", "{port}"],
        env: &[],
        code: 3,
        says: &["connection refused by 127.0.0.1:"],
    },
    Row {
        binary: "jam",
        args: &["time", "-p", "{port}", "127.0.0.1"],
        env: &[],
        code: 3,
        says: &["connection refused by 127.0.0.1:"],
    },
    Row {
        binary: "jam",
        args: &["time", "-p", "{port}"],
        env: &[],
        code: 3,
        says: &["connection refused by 127.0.0.1:"],
    },
    Row {
        binary: "jam",
        args: &[
            "check",
            "--timeout",
            "18446744073709551615s",
            "127.0.0.1:{port}",
        ],
        env: &[],
        code: 2,
        says: &["'--timeout <DURATION>'"],
    },
];

#[test]
fn each_bad_input_gets_its_exit_code_and_one_clear_line_and_leaves_nothing_behind() {
    let mut failures = Vec::new();
    for row in ROWS {
        let port = free_port();
        let args: Vec<String> = row
            .args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let binary = match row.binary {
            "jamd" => env!("CARGO_BIN_EXE_jamd"),
            _ => env!("CARGO_BIN_EXE_jam"),
        };
        let mut child = Command::new(binary)
            .args(&args)
            .envs(row.env.iter().copied())
            .env_remove(if row.env.iter().any(|(k, _)| *k == "RUST_LOG") {
                "JAMD_LOG_LEVEL"
            } else {
                "RUST_LOG"
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if started.elapsed() > WAIT {
                let _ = child.kill();
                let _ = child.wait();
                failures.push(format!(
                    "{} {args:?}: still running after {WAIT:?}",
                    row.binary
                ));
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let output = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let what = format!("{} {args:?} {:?}", row.binary, row.env);
        if status.code() != Some(row.code) {
            failures.push(format!(
                "{what}: exit {:?}, not {}: {stderr}",
                status.code(),
                row.code
            ));
        }
        for words in row.says {
            if !stderr.contains(words) {
                failures.push(format!("{what}: no {words:?} in {stderr:?}"));
            }
        }
        let lines = stderr.lines().filter(|l| !l.trim().is_empty()).count();
        // clap's own errors add a "For more information" line; the rest say it in one.
        let from_clap = stderr.starts_with("error: ");
        if row.binary == "jam" && row.code == 2 && !from_clap && lines != 1 {
            failures.push(format!("{what}: {lines} lines, not one: {stderr:?}"));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            failures.push(format!("{what}: something listens on {addr} afterwards"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `jam bench`'s counts and durations: zero or nonsense is a usage error, never a run that
/// "succeeds" with 0 req/s; nothing listening is one line and exit 3, not a summary of zeros.
#[test]
fn bench_refuses_zero_counts_and_says_once_that_nothing_listens() {
    let port = free_port().to_string();
    let target = format!("127.0.0.1:{port}");
    for (args, code, says) in [
        (
            vec!["-c", "0"],
            2,
            "'--connections <N>': must be at least 1",
        ),
        (vec!["-P", "0"], 2, "'--pipeline <N>': must be at least 1"),
        (vec!["-n", "0"], 2, "'--requests <N>': 0 is not in 1.."),
        (
            vec!["-z", "0"],
            2,
            "'--duration <DURATION>': must be more than 0",
        ),
        (
            vec!["--threads", "0"],
            2,
            "'--threads <N>': must be at least 1",
        ),
        (
            vec!["--rate", "0"],
            2,
            "--rate 0: must be a number of requests per second above 0",
        ),
        (vec!["--rate", "NaN"], 2, "above 0"),
        (vec![], 3, "connection refused by 127.0.0.1:"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_jam"))
            .arg("bench")
            .args(&args)
            .arg(&target)
            .stdin(Stdio::null())
            .output()
            .expect("jam bench");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: no summary: {:?}",
            output.stdout
        );
    }
}

/// `jamd --check-config` (as `nginx -t`): validates, prints each setting with where it came from,
/// exits 0, and binds nothing.
#[test]
fn check_config_prints_the_settings_and_their_sources_and_binds_nothing() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let output = Command::new(env!("CARGO_BIN_EXE_jamd"))
        .args(["--check-config", "--listen", &listen, "--threads", "2"])
        .env("JAMD_IDLE_TIMEOUT", "1m")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("jamd --check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let line = |flag: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("no {flag} line in {stdout}"))
            .to_string()
    };
    assert!(line("--listen").contains(&listen) && line("--listen").ends_with("(flag)"));
    assert!(
        line("--idle-timeout").contains("1m")
            && line("--idle-timeout").ends_with("(JAMD_IDLE_TIMEOUT)")
    );
    assert!(line("--line-timeout").ends_with("(default)"));
    assert!(line("--tz").ends_with("(not set)"));
    assert!(stdout.contains("effective: max_connections="), "{stdout}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "--check-config bound {addr}"
    );
}
