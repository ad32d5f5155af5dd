//! Real clients against the real `jamd`: OpenBSD `nc` (Debian netcat-openbsd) and `telnet`
//! (Debian telnet), the latter also in a pseudo-terminal under tmux, where Ctrl-C makes it send
//! telnet commands and wait for the server's answer before showing output again.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Jamd, WAIT, assert_time_reply, require_tool};

/// How a shell pipeline that ran to completion ended.
struct Finished {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `script` with `sh -c`; fails the test if it has not finished after [`WAIT`].
fn sh(script: &str) -> Finished {
    let child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hung pipeline can be killed whole.
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => {
            let output = output.expect("wait for sh");
            Finished {
                code: output.status.code(),
                stdout: output.stdout,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("still running after {WAIT:?}: {script}");
        }
    }
}

/// `printf FORMAT | CLIENT 127.0.0.1 PORT`: the request bytes as a shell `printf` format.
fn piped(printf_format: &str, client: &str, addr: SocketAddr) -> String {
    format!(
        "printf '{printf_format}' | {client} {} {}",
        addr.ip(),
        addr.port()
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `line`, without surrounding whitespace, is `JAM hh:mm:ss`.
fn is_jam_line(line: &str) -> bool {
    let line = line.trim();
    let Some(time) = line.strip_prefix("JAM ") else {
        return false;
    };
    time.len() == 8
        && time.char_indices().all(|(i, c)| {
            if i == 2 || i == 5 {
                c == ':'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// The server still answers a fresh client.
fn assert_still_serving(jamd: &mut Jamd) {
    assert!(
        jamd.child.try_wait().expect("try_wait").is_none(),
        "jamd exited: {:#?}",
        jamd.log()
    );
    let mut client = TcpStream::connect_timeout(&jamd.addr, WAIT).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("read timeout");
    client.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    client.read_exact(&mut reply).expect("a TIME reply");
    assert_time_reply(&reply);
}

// ---------------------------------------------------------------------------------------------
// nc
// ---------------------------------------------------------------------------------------------

#[test]
fn nc_time_with_bare_lf_gets_one_jam_line() {
    if !require_tool("nc", "netcat-openbsd") {
        return;
    }
    let jamd = Jamd::spawn(&[]);
    let run = sh(&piped("TIME\\n", "nc -N", jamd.addr));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_time_reply(&run.stdout);
}

#[test]
fn nc_time_without_line_end_gets_an_error() {
    if !require_tool("nc", "netcat-openbsd") {
        return;
    }
    let jamd = Jamd::spawn(&[]);
    let run = sh(&piped("TIME", "nc -N", jamd.addr));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(text(&run.stdout), "ERR request must end with CR LF\r\n");
}

#[test]
fn nc_exits_by_itself_after_quit() {
    if !require_tool("nc", "netcat-openbsd") {
        return;
    }
    let jamd = Jamd::spawn(&[]);
    // Without -N, nc keeps its side open after stdin ends: only the server's close ends it
    // (`sh` fails the test if nc is still running after the wait).
    let run = sh(&piped("TIME\\r\\nQUIT\\r\\n", "nc", jamd.addr));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_time_reply(&run.stdout);
}

// ---------------------------------------------------------------------------------------------
// telnet
// ---------------------------------------------------------------------------------------------

#[test]
fn telnet_with_piped_input_gets_a_jam_line_and_is_closed_by_quit() {
    if !require_tool("telnet", "telnet") {
        return;
    }
    let jamd = Jamd::spawn(&[]);
    // telnet sends each CR as CR NUL, so the server gets `TIME\r\0\r\n`.
    let run = sh(&format!(
        "(printf 'TIME\\r\\n'; sleep 1; printf 'QUIT\\r\\n') | telnet {} {}",
        jamd.addr.ip(),
        jamd.addr.port()
    ));
    let stdout = text(&run.stdout);
    assert!(
        stdout.lines().any(is_jam_line),
        "stdout: {stdout:?}, stderr: {:?}",
        run.stderr
    );
    assert!(
        format!("{stdout}{}", run.stderr).contains("Connection closed by foreign host"),
        "stdout: {stdout:?}, stderr: {:?}",
        run.stderr
    );
}

/// A tmux server of its own (`tmux -L NAME`) running one program in a detached pseudo-terminal;
/// killed when dropped, whether the test passed or not.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(program: &str) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "jam-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux { socket };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "jam",
            "-x",
            "120",
            "-y",
            "30",
            program,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "jam"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "jam"])
    }

    /// Waits until the screen satisfies `condition`; returns that screen.
    fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn jam_lines(screen: &str) -> usize {
    screen.lines().filter(|l| is_jam_line(l)).count()
}

/// Ctrl-C in telnet sends IAC IP IAC DO TIMING-MARK (`FF F4 FF FD 06`) and then discards all
/// output until the server answers the DO TIMING-MARK. The server refuses it (IAC WONT
/// TIMING-MARK), so later replies are shown again.
#[test]
fn telnet_shows_answers_after_ctrl_c() {
    if !require_tool("telnet", "telnet") || !require_tool("tmux", "tmux") {
        return;
    }
    let mut jamd = Jamd::spawn(&[]);
    let tmux = Tmux::start(&format!("telnet {} {}", jamd.addr.ip(), jamd.addr.port()));
    tmux.wait_for("telnet to connect", |s| s.contains("Escape character is"));

    tmux.send_keys(&["TIME", "Enter"]);
    tmux.wait_for("the first JAM line", |s| jam_lines(s) == 1);

    tmux.send_keys(&["C-c"]);
    tmux.wait_for("telnet to echo ^C", |s| s.contains("^C"));

    tmux.send_keys(&["TIME", "Enter"]);
    tmux.wait_for("a second JAM line after Ctrl-C", |s| jam_lines(s) == 2);

    // The telnet session is still open, and the server still serves others.
    assert!(
        !jamd.log().iter().any(|l| l.contains("connection closed")),
        "{:#?}",
        jamd.log()
    );
    assert_still_serving(&mut jamd);
}
