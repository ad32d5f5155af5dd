//! `jam check-client`: grades the other half of the assignment, the student's client. jam becomes
//! the server the client expects, runs the client once per scenario (its own deadline, stdin
//! closed, output captured, its whole process group ended afterwards) and judges each case from
//! what the client sent, printed and did. Each run answers with its own recognisable time, not
//! the clock's, so a case can tell whether the client printed what it was sent.
//!
//! The cases are values, as `jam check`'s are, and their results go through the same reports.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::display::{human, show};
use super::model::{CaseResult, Graded, Level, Outcome, SkipReason, TargetReport, TargetSpec};
use crate::client::ClientError;

/// A client case's id, as `--json` and JUnit name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCaseId {
    /// `connects`
    Connects,
    /// `request-format`
    RequestFormat,
    /// `prints-reply`
    PrintsReply,
    /// `split-reply`
    SplitReply,
    /// `slow-reply`
    SlowReply,
    /// `threads`
    Threads,
    /// `quit`
    Quit,
    /// `exits`
    Exits,
    /// `server-gone`
    ServerGone,
    /// `variants`
    Variants,
}

/// One case of the client catalogue.
#[derive(Debug)]
pub struct ClientCase {
    /// Stable id.
    pub id: ClientCaseId,
    /// The id as written.
    pub name: &'static str,
    /// How much it matters.
    pub level: Level,
    /// What passes, in one line.
    pub title: &'static str,
}

impl Graded for ClientCase {
    fn name(&self) -> &'static str {
        self.name
    }
    fn level(&self) -> Level {
        self.level
    }
    fn title(&self) -> &'static str {
        self.title
    }
}

const fn case(
    id: ClientCaseId,
    name: &'static str,
    level: Level,
    title: &'static str,
) -> ClientCase {
    ClientCase {
        id,
        name,
        level,
        title,
    }
}

/// Every client case, in report order. `CLIENT_CATALOGUE[id as usize].id == id`.
pub static CLIENT_CATALOGUE: [ClientCase; 10] = [
    case(
        ClientCaseId::Connects,
        "connects",
        Level::Must,
        "the client connects to the server's port",
    ),
    case(
        ClientCaseId::RequestFormat,
        "request-format",
        Level::Must,
        "what it sends for a time is exactly TIME CR LF",
    ),
    case(
        ClientCaseId::PrintsReply,
        "prints-reply",
        Level::Must,
        "it prints the time it was sent",
    ),
    case(
        ClientCaseId::SplitReply,
        "split-reply",
        Level::Must,
        "a reply in 3 segments 100 ms apart is still printed whole",
    ),
    case(
        ClientCaseId::SlowReply,
        "slow-reply",
        Level::Should,
        "a reply that comes after 1.5 s is waited for and printed",
    ),
    case(
        ClientCaseId::Threads,
        "threads",
        Level::Must,
        "a client of several connections has them open at the same time",
    ),
    case(
        ClientCaseId::Quit,
        "quit",
        Level::Should,
        "each connection sends QUIT CR LF before it closes",
    ),
    case(
        ClientCaseId::Exits,
        "exits",
        Level::Must,
        "it exits by itself, status 0, once it has its replies",
    ),
    case(
        ClientCaseId::ServerGone,
        "server-gone",
        Level::Should,
        "with nothing listening it ends with a message and a non-zero status",
    ),
    case(
        ClientCaseId::Variants,
        "variants",
        Level::Info,
        "how it copes with a reply with a date, or with LF only",
    ),
];

/// `threads` for a client of one connection: an observation, not a requirement.
static THREADS_INFO: ClientCase = case(
    ClientCaseId::Threads,
    "threads",
    Level::Info,
    "a client of several connections has them open at the same time",
);

impl ClientCaseId {
    fn case(self) -> &'static ClientCase {
        &CLIENT_CATALOGUE[self as usize]
    }
}

/// Settings of a `jam check-client` run.
#[derive(Debug, Clone)]
pub struct ClientCheckConfig {
    /// Where the fake server listens (the first is the one the client is told about).
    pub listen: Vec<SocketAddr>,
    /// The longest one run of the client may take.
    pub run_timeout: Duration,
    /// Should-level cases must pass too.
    pub strict: bool,
}

impl ClientCheckConfig {
    /// The defaults: port 45000 on 127.0.0.1 and ::1, as the course's clients dial.
    pub fn new() -> Self {
        ClientCheckConfig {
            listen: vec![
                SocketAddr::from(([127, 0, 0, 1], crate::config::DEFAULT_PORT)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, crate::config::DEFAULT_PORT)),
            ],
            run_timeout: Duration::from_secs(4),
            strict: false,
        }
    }
}

impl Default for ClientCheckConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// How the fake server answers `TIME` in one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// `JAM hh:mm:ss` CR LF in one write.
    Whole,
    /// The same in three writes 100 ms apart.
    Split,
    /// The same after 1.5 s.
    Slow,
    /// `JAM dd-mm-YYYY hh:mm:ss` CR LF, as the course's reference answers.
    Dated,
    /// `JAM hh:mm:ss` LF.
    LfOnly,
}

/// One run of the client: how the server answers, with which time, or no server at all.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    answer: Option<Answer>,
    time: &'static str,
}

const NORMAL: Scenario = Scenario {
    answer: Some(Answer::Whole),
    time: "11:11:11",
};
const SPLIT: Scenario = Scenario {
    answer: Some(Answer::Split),
    time: "12:34:56",
};
const SLOW: Scenario = Scenario {
    answer: Some(Answer::Slow),
    time: "07:08:09",
};
const DATED: Scenario = Scenario {
    answer: Some(Answer::Dated),
    time: "21:43:05",
};
const LF_ONLY: Scenario = Scenario {
    answer: Some(Answer::LfOnly),
    time: "13:57:24",
};
const GONE: Scenario = Scenario {
    answer: None,
    time: "",
};

/// The pause between the segments of a split reply.
const SPLIT_GAP: Duration = Duration::from_millis(100);
/// How long a slow reply waits.
const SLOW_DELAY: Duration = Duration::from_millis(1500);
/// Most bytes kept of a client's stdout or stderr, and of what one connection sent.
const KEEP: usize = 64 * 1024;

/// What one connection to the fake server did.
#[derive(Debug, Clone, Default)]
struct Conn {
    /// Every byte it sent (up to [`KEEP`]).
    sent: Vec<u8>,
    /// The requests it sent, each as received (line end included).
    requests: Vec<Vec<u8>>,
    /// It sent QUIT.
    quit: bool,
    /// Opened, and closed (by either side), since the run began.
    opened: Duration,
    closed: Option<Duration>,
}

/// What one run showed.
#[derive(Debug, Default)]
struct Run {
    conns: Vec<Conn>,
    stdout: String,
    stderr: String,
    /// The exit status, or `None` when the run's deadline killed it.
    status: Option<i32>,
    took: Duration,
    /// The command could not be started.
    spawn_error: Option<String>,
}

impl Run {
    /// Connections that asked for something other than QUIT (a connection of its own for QUIT
    /// is `quit`'s business, not a thread).
    fn asking(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter().filter(|c| {
            c.requests
                .iter()
                .any(|r| !r.eq_ignore_ascii_case(b"QUIT\r\n"))
        })
    }

    fn peak(&self) -> usize {
        let mut events: Vec<(Duration, i32)> = Vec::new();
        for c in self.asking() {
            events.push((c.opened, 1));
            events.push((c.closed.unwrap_or(self.took), -1));
        }
        // At equal times a close counts before an open: touching is not overlapping.
        events.sort_by_key(|&(t, d)| (t, d));
        let (mut now, mut peak) = (0i32, 0i32);
        for (_, d) in events {
            now += d;
            peak = peak.max(now);
        }
        peak as usize
    }

    fn printed(&self, time: &str) -> bool {
        self.stdout.contains(time)
    }

    /// The last lines of stderr, for a failure's detail.
    fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = &lines[lines.len().saturating_sub(2)..];
        tail.join(" / ")
    }
}

/// Binds the fake server's listeners: every address of `listen` that can be bound (an IPv6
/// address where IPv6 is missing is left out); a port in use is an error naming the fix.
async fn bind(listen: &[SocketAddr]) -> Result<Vec<TcpListener>, ClientError> {
    let mut listeners = Vec::new();
    for &addr in listen {
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let holder = match who_listens(addr.port()) {
                    Some(who) => format!(" (by {who})"),
                    None => format!(
                        " (another server listens there: `ss -ltnp 'sport = :{}'` shows which)",
                        addr.port()
                    ),
                };
                return Err(ClientError::Usage(format!(
                    "cannot listen on {addr}: the port is in use{holder}. Stop that server, or \
                     pass another port with --listen 127.0.0.1:PORT and run your client with it \
                     ({{port}} in the command is replaced by the port)"
                )));
            }
            Err(_) if addr.is_ipv6() => {}
            Err(e) => {
                return Err(ClientError::Io {
                    context: format!("cannot listen on {addr}"),
                    source: e,
                });
            }
        }
    }
    if listeners.is_empty() {
        return Err(ClientError::Usage("no address to listen on".into()));
    }
    Ok(listeners)
}

/// The program listening on `port`, as `ss` names it (`"jamd",pid=1234`), when `ss` is there and
/// may say.
fn who_listens(port: u16) -> Option<String> {
    let out = Command::new("ss")
        .args(["-ltnpH", &format!("sport = :{port}")])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let users = text.split("users:((").nth(1)?;
    let who = users.split("))").next()?;
    let who: String = who.split(",fd=").next()?.chars().take(80).collect();
    (!who.is_empty()).then_some(who)
}

/// Serves one connection as `scenario` asks, recording it in `log[index]`.
async fn serve(
    mut stream: TcpStream,
    scenario: Scenario,
    log: Arc<Mutex<Vec<Conn>>>,
    index: usize,
    start: Instant,
) {
    let record = |f: &mut dyn FnMut(&mut Conn)| {
        if let Ok(mut log) = log.lock()
            && let Some(c) = log.get_mut(index)
        {
            f(c);
        }
    };
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // A request with no line end at all is answered after a short silence, so that the
        // other cases can judge around it (request-format names it).
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) if pending.is_empty() => continue,
            Err(_) => 0,
        };
        record(&mut |c| {
            let room = KEEP.saturating_sub(c.sent.len());
            c.sent.extend_from_slice(&buf[..n.min(room)]);
        });
        pending.extend_from_slice(&buf[..n]);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        while let Some(end) = memchr::memchr(b'\n', &pending) {
            lines.push(pending.drain(..=end).collect());
        }
        if n == 0 {
            lines.push(std::mem::take(&mut pending));
        }
        for line in lines {
            let word = String::from_utf8_lossy(&line).trim().to_ascii_uppercase();
            if word.is_empty() {
                continue;
            }
            record(&mut |c| c.requests.push(line.clone()));
            if word == "QUIT" {
                record(&mut |c| c.quit = true);
                let _ = stream.shutdown().await;
                return close(&log, index, start);
            }
            let reply = match (word.as_str(), scenario.answer) {
                ("TIME", Some(answer)) => answer,
                _ => {
                    let _ = stream.write_all(b"ERR unknown command\r\n").await;
                    continue;
                }
            };
            let time = scenario.time;
            let ok = match reply {
                Answer::Whole => stream.write_all(format!("JAM {time}\r\n").as_bytes()).await,
                Answer::Dated => {
                    let text = format!("JAM 03-12-2026 {time}\r\n");
                    stream.write_all(text.as_bytes()).await
                }
                Answer::LfOnly => stream.write_all(format!("JAM {time}\n").as_bytes()).await,
                Answer::Slow => {
                    tokio::time::sleep(SLOW_DELAY).await;
                    stream.write_all(format!("JAM {time}\r\n").as_bytes()).await
                }
                Answer::Split => {
                    let whole = format!("JAM {time}\r\n");
                    let (a, rest) = whole.split_at(5);
                    let (b, c) = rest.split_at(5);
                    let mut result = Ok(());
                    for (i, part) in [a, b, c].into_iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(SPLIT_GAP).await;
                        }
                        result = stream.write_all(part.as_bytes()).await;
                        if result.is_err() {
                            break;
                        }
                    }
                    result
                }
            };
            if ok.is_err() {
                break;
            }
        }
    }
    close(&log, index, start);
}

fn close(log: &Arc<Mutex<Vec<Conn>>>, index: usize, start: Instant) {
    if let Ok(mut log) = log.lock()
        && let Some(c) = log.get_mut(index)
    {
        c.closed.get_or_insert(start.elapsed());
    }
}

/// Runs `command` once against a fake server on `listeners` (none: nothing listens) answering
/// as `scenario` asks, within `deadline`; ends the client's whole process group afterwards.
async fn run_once(
    command: &[String],
    port: u16,
    listeners: &[Arc<TcpListener>],
    scenario: Scenario,
    deadline: Duration,
) -> Run {
    let log: Arc<Mutex<Vec<Conn>>> = Arc::default();
    let start = Instant::now();
    let mut acceptors = Vec::new();
    for listener in listeners {
        let (listener, log) = (listener.clone(), log.clone());
        acceptors.push(tokio::spawn(async move {
            let mut served = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let Ok(mut log) = log.lock() else { break };
                    log.push(Conn {
                        opened: start.elapsed(),
                        ..Conn::default()
                    });
                    log.len() - 1
                };
                served.push(tokio::spawn(serve(
                    stream,
                    scenario,
                    log.clone(),
                    index,
                    start,
                )));
            }
            for s in served {
                s.abort();
            }
        }));
    }
    let mut run = Run::default();
    let args: Vec<String> = command
        .iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    let mut child = {
        use std::os::unix::process::CommandExt as _;
        match Command::new(&args[0])
            .args(&args[1..])
            .env("JAM_CHECK_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                for a in acceptors {
                    a.abort();
                }
                run.spawn_error = Some(format!("cannot run {:?}: {e}", args[0]));
                return run;
            }
        }
    };
    let capture = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(KEEP as u64).read_to_end(&mut out);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    use std::io::Read as _;
    let stdout = capture(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = capture(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let ends = start + deadline;
    run.status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status.code().unwrap_or(-1)),
            Ok(None) if Instant::now() >= ends => break None,
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => break None,
        }
    };
    run.took = start.elapsed();
    // The whole group: a client that forks or starts threads leaves nothing behind.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    run.stdout = stdout.join().unwrap_or_default();
    run.stderr = stderr.join().unwrap_or_default();
    // Connections still open were closed by the kill.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for a in acceptors {
        a.abort();
    }
    run.conns = log.lock().map(|l| l.clone()).unwrap_or_default();
    let took = run.took;
    for c in &mut run.conns {
        c.closed.get_or_insert(took);
    }
    run
}

/// Checks the client `command` as every scenario asks; the report has one result per case of
/// [`CLIENT_CATALOGUE`].
pub async fn check_client(
    command: &[String],
    config: &ClientCheckConfig,
) -> Result<TargetReport<ClientCase>, ClientError> {
    if command.is_empty() {
        return Err(ClientError::Usage(
            "give the client's command after --, e.g. jam check-client -- python3 client.py".into(),
        ));
    }
    let started = Instant::now();
    let listeners: Vec<Arc<TcpListener>> = bind(&config.listen)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    let first = listeners[0].local_addr().map_err(|e| ClientError::Io {
        context: "cannot read the listening address".into(),
        source: e,
    })?;
    let port = first.port();
    let deadline = config.run_timeout;
    let normal = run_once(command, port, &listeners, NORMAL, deadline).await;
    if let Some(e) = &normal.spawn_error {
        return Err(ClientError::Usage(e.clone()));
    }
    let split = run_once(command, port, &listeners, SPLIT, deadline).await;
    let slow = run_once(command, port, &listeners, SLOW, deadline + SLOW_DELAY).await;
    let dated = run_once(command, port, &listeners, DATED, deadline).await;
    let lf_only = run_once(command, port, &listeners, LF_ONLY, deadline).await;
    drop(listeners);
    let gone = run_once(command, port, &[], GONE, deadline).await;

    let mut cases = Vec::new();
    let result = |id: ClientCaseId, outcome: Outcome, run: Option<&Run>| {
        let case = match (id, run) {
            (ClientCaseId::Threads, Some(run)) if run.asking().count() <= 1 => &THREADS_INFO,
            _ => id.case(),
        };
        CaseResult::new(
            case,
            outcome,
            run.map(transcript).unwrap_or_default(),
            run.map_or(Duration::ZERO, |r| r.took),
        )
    };
    let connected = !normal.conns.is_empty();
    cases.push(result(
        ClientCaseId::Connects,
        connects(&normal, first),
        Some(&normal),
    ));
    let blocked = |outcome: Outcome| {
        if connected {
            outcome
        } else {
            Outcome::Skip(SkipReason::Unreachable)
        }
    };
    cases.push(result(
        ClientCaseId::RequestFormat,
        blocked(request_format(&normal)),
        Some(&normal),
    ));
    cases.push(result(
        ClientCaseId::PrintsReply,
        blocked(prints(&normal, NORMAL.time, "")),
        Some(&normal),
    ));
    cases.push(result(
        ClientCaseId::SplitReply,
        blocked(split_reply(&split)),
        Some(&split),
    ));
    cases.push(result(
        ClientCaseId::SlowReply,
        blocked(prints(
            &slow,
            SLOW.time,
            " (the reply came after 1.5 s: does the client set a timeout shorter than that, or \
             give up when the first recv() returns nothing yet?)",
        )),
        Some(&slow),
    ));
    cases.push(result(
        ClientCaseId::Threads,
        blocked(threads(&normal)),
        Some(&normal),
    ));
    cases.push(result(
        ClientCaseId::Quit,
        blocked(quit(&normal)),
        Some(&normal),
    ));
    cases.push(result(
        ClientCaseId::Exits,
        exits(&normal, deadline),
        Some(&normal),
    ));
    cases.push(result(
        ClientCaseId::ServerGone,
        server_gone(&gone),
        Some(&gone),
    ));
    cases.push(result(
        ClientCaseId::Variants,
        blocked(variants(&dated, &lf_only)),
        Some(&dated),
    ));
    Ok(TargetReport {
        spec: TargetSpec {
            target: command.join(" "),
            name: None,
        },
        address: Some(first),
        cases,
        error: None,
        strict: config.strict,
        elapsed: started.elapsed(),
    })
}

/// A run as transcript lines: each connection's requests, then the exit and the output.
fn transcript(run: &Run) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, c) in run.conns.iter().enumerate() {
        let mut line = format!(
            "{:8.1} ms  connection {} opened; sent \"{}\"",
            c.opened.as_secs_f64() * 1e3,
            i + 1,
            show(&c.sent)
        );
        if let Some(closed) = c.closed {
            let _ = write!(line, "; closed at {:.1} ms", closed.as_secs_f64() * 1e3);
        }
        lines.push(line);
    }
    lines.push(match run.status {
        Some(code) => format!("exited with status {code} after {}", human(run.took)),
        None => format!("still running after {}: killed", human(run.took)),
    });
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        if !text.is_empty() {
            lines.push(format!("{name}: \"{}\"", show(text.as_bytes())));
        }
    }
    lines
}

fn connects(run: &Run, addr: SocketAddr) -> Outcome {
    if run.conns.is_empty() {
        let said = match run.stderr_tail() {
            tail if tail.is_empty() => String::new(),
            tail => format!(" It said: {tail}"),
        };
        return Outcome::Fail(format!(
            "the client never connected to {addr}: does it connect to 127.0.0.1 port {} (the \
             server's port)?{said}",
            addr.port()
        ));
    }
    Outcome::Pass(format!(
        "{} connection{}",
        run.conns.len(),
        if run.conns.len() == 1 { "" } else { "s" }
    ))
}

/// The first request of every connection, judged: exactly `TIME` CR LF.
fn request_format(run: &Run) -> Outcome {
    for (i, c) in run.conns.iter().enumerate() {
        let Some(first) = c.requests.first() else {
            continue;
        };
        let sent = &c.sent[..];
        if first.as_slice() == b"QUIT\r\n" {
            continue;
        }
        let which = if run.conns.len() > 1 {
            format!("connection {} ", i + 1)
        } else {
            String::new()
        };
        let fix = match first.as_slice() {
            b"TIME\r\n" if sent.starts_with(b"TIME\r\n\r\n") => Some(
                "an extra blank line after the request (\"TIME\\r\\n\\r\\n\"): send exactly \
                 \"TIME\\r\\n\", one CR LF",
            ),
            b"TIME\r\n" => None,
            b"TIME\n" => Some("LF only: end the request with \"\\r\\n\" (CR LF), not \"\\n\""),
            b"TIME" => Some(
                "no line end at all: a server that reads lines waits for ever; send \
                 \"TIME\\r\\n\"",
            ),
            l if l.eq_ignore_ascii_case(b"TIME\r\n") => {
                Some("not in capitals: the request is \"TIME\\r\\n\"")
            }
            _ => Some("not the request the assignment names: send \"TIME\\r\\n\""),
        };
        if let Some(fix) = fix {
            return Outcome::Fail(format!(
                "{which}sent \"{}\": {fix}",
                show(&sent[..sent.len().min(first.len() + 2)])
            ));
        }
    }
    if run.conns.iter().all(|c| c.requests.is_empty()) {
        return Outcome::Fail("the client connected but sent no request".into());
    }
    Outcome::Pass("\"TIME\\r\\n\"".into())
}

fn prints(run: &Run, time: &str, hint: &str) -> Outcome {
    if run.printed(time) {
        return Outcome::Pass(format!("printed {time}"));
    }
    let printed = if run.stdout.trim().is_empty() {
        "printed nothing".to_string()
    } else {
        format!("printed \"{}\"", show(run.stdout.trim().as_bytes()))
    };
    Outcome::Fail(format!(
        "the server sent \"JAM {time}\\r\\n\"; the client {printed}{hint}"
    ))
}

fn split_reply(run: &Run) -> Outcome {
    let time = SPLIT.time;
    if run.printed(time) {
        return Outcome::Pass(format!("printed {time} although it came in 3 pieces"));
    }
    let piece = run.stdout.contains("JAM 1") || run.stdout.contains("JAM");
    let printed = show(run.stdout.trim().as_bytes());
    Outcome::Fail(if piece {
        format!(
            "the server sent \"JAM {time}\\r\\n\" in 3 pieces 100 ms apart (\"JAM 1\", \
             \"2:34:\", \"56\\r\\n\"); the client printed \"{printed}\": it takes one recv() as \
             the whole reply. Read until the line ends: keep calling recv() and adding to a \
             buffer until it holds \"\\n\""
        )
    } else {
        format!(
            "the server sent \"JAM {time}\\r\\n\" in 3 pieces 100 ms apart; the client printed \
             \"{printed}\". TCP may deliver a reply in pieces: read until \"\\n\""
        )
    })
}

fn threads(run: &Run) -> Outcome {
    let (n, peak) = (run.asking().count(), run.peak());
    if n <= 1 {
        return Outcome::Pass("one connection".into());
    }
    if peak > 1 {
        Outcome::Pass(format!("{n} connections, at most {peak} open at once"))
    } else {
        Outcome::Fail(format!(
            "{n} connections, but never two open at once: the threads ran one after another \
             (is each thread joined right after it starts? start them all, then join them all)"
        ))
    }
}

fn quit(run: &Run) -> Outcome {
    let asked: Vec<&Conn> = run.asking().collect();
    let only_quit = run.conns.iter().any(|c| {
        !c.requests.is_empty()
            && c.requests
                .iter()
                .all(|r| r.eq_ignore_ascii_case(b"QUIT\r\n"))
    });
    let without = asked.iter().filter(|c| !c.quit).count();
    if without == 0 && !asked.is_empty() {
        return Outcome::Pass("every connection sent QUIT before closing".into());
    }
    if only_quit {
        return Outcome::Fail(
            "the client sends QUIT on a new connection of its own, and closes the one that asked \
             the time without it: send \"QUIT\\r\\n\" on the connection that asked, then close it"
                .into(),
        );
    }
    Outcome::Fail(format!(
        "{without} of {} connection{} closed without sending \"QUIT\\r\\n\": send it before \
         closing, so the server ends the session cleanly",
        asked.len(),
        if asked.len() == 1 { "" } else { "s" }
    ))
}

fn exits(run: &Run, deadline: Duration) -> Outcome {
    match run.status {
        Some(0) => Outcome::Pass(format!("exited with status 0 after {}", human(run.took))),
        Some(code) => Outcome::Fail(format!(
            "exited with status {code}{}",
            match run.stderr_tail() {
                t if t.is_empty() => String::new(),
                t => format!(": {t}"),
            }
        )),
        None => Outcome::Fail(format!(
            "still running {} after it started, with its replies long in: end the program once \
             it has them (join the threads, then return; no loop waiting for input)",
            human(deadline)
        )),
    }
}

fn server_gone(run: &Run) -> Outcome {
    let said = !run.stderr.trim().is_empty() || !run.stdout.trim().is_empty();
    match run.status {
        Some(0) => Outcome::Fail(
            "with nothing listening, the client exited with status 0, as if it had worked: \
             exit non-zero (sys.exit(1)) when it cannot connect"
                .into(),
        ),
        Some(code) if said => Outcome::Pass(format!(
            "ended with status {code} and said why: {}",
            run.stderr_tail()
        )),
        Some(code) => Outcome::Fail(format!(
            "ended with status {code} but said nothing: print why (the server cannot be \
             reached) before exiting"
        )),
        None => Outcome::Fail(format!(
            "with nothing listening, the client was still running after {}: it retries for \
             ever or blocks; give up with a message after a few tries",
            human(run.took)
        )),
    }
}

fn variants(dated: &Run, lf_only: &Run) -> Outcome {
    let say = |run: &Run, time: &str| {
        if run.printed(time) {
            "printed the time"
        } else {
            "did not print the time"
        }
    };
    Outcome::Pass(format!(
        "with a date (\"JAM 03-12-2026 {}\\r\\n\") it {}; with LF only it {}",
        DATED.time,
        say(dated, DATED.time),
        say(lf_only, LF_ONLY.time)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_case_sits_at_its_ids_index() {
        for (i, case) in CLIENT_CATALOGUE.iter().enumerate() {
            assert_eq!(case.id as usize, i, "{}", case.name);
        }
    }

    fn conn(sent: &[u8], requests: &[&[u8]], quit: bool, open: u64, close: u64) -> Conn {
        Conn {
            sent: sent.to_vec(),
            requests: requests.iter().map(|r| r.to_vec()).collect(),
            quit,
            opened: Duration::from_millis(open),
            closed: Some(Duration::from_millis(close)),
        }
    }

    #[test]
    fn each_request_variant_is_named() {
        for (sent, requests, words) in [
            (&b"TIME\n"[..], &[&b"TIME\n"[..]][..], "LF only"),
            (b"TIME\r\n\r\n", &[b"TIME\r\n", b"\r\n"], "extra blank line"),
            (b"time\r\n", &[b"time\r\n"], "not in capitals"),
            (b"TIME", &[b"TIME"], "no line end"),
            (b"HELLO\r\n", &[b"HELLO\r\n"], "not the request"),
        ] {
            let run = Run {
                conns: vec![conn(sent, requests, true, 0, 5)],
                ..Run::default()
            };
            match request_format(&run) {
                Outcome::Fail(text) => assert!(text.contains(words), "{text}"),
                other => panic!("{sent:?}: {other:?}"),
            }
        }
        let good = Run {
            conns: vec![conn(
                b"TIME\r\nQUIT\r\n",
                &[b"TIME\r\n", b"QUIT\r\n"],
                true,
                0,
                5,
            )],
            ..Run::default()
        };
        assert!(matches!(request_format(&good), Outcome::Pass(_)));
    }

    #[test]
    fn the_peak_counts_connections_open_at_the_same_time() {
        let t = &[&b"TIME\r\n"[..]][..];
        let serial = Run {
            conns: vec![conn(b"", t, true, 0, 5), conn(b"", t, true, 5, 9)],
            ..Run::default()
        };
        assert_eq!(serial.peak(), 1);
        let parallel = Run {
            conns: vec![conn(b"", t, true, 0, 5), conn(b"", t, true, 1, 9)],
            ..Run::default()
        };
        assert_eq!(parallel.peak(), 2);
        // A connection of its own for QUIT is not a thread.
        let quit_apart = Run {
            conns: vec![
                conn(b"", t, false, 0, 5),
                conn(b"", &[b"QUIT\r\n"], true, 1, 9),
            ],
            ..Run::default()
        };
        assert_eq!(quit_apart.asking().count(), 1);
        assert_eq!(quit_apart.peak(), 1);
    }

    #[test]
    fn quit_on_a_new_connection_is_named() {
        let run = Run {
            conns: vec![
                conn(b"TIME\r\n", &[b"TIME\r\n"], false, 0, 5),
                conn(b"QUIT\r\n", &[b"QUIT\r\n"], true, 6, 9),
            ],
            ..Run::default()
        };
        match quit(&run) {
            Outcome::Fail(text) => assert!(text.contains("on a new connection"), "{text}"),
            other => panic!("{other:?}"),
        }
    }
}
