//! The cases: each drives fresh connections, judges what came back, and explains a failure the
//! way a teacher would: what was sent, what came back, the likely cause and the fix.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};

use super::probe::{ConnectError, Got, Probe, Transcript, show, show_lines};
use super::{
    CATALOGUE, CaseResult, CheckConfig, MANY_CLIENTS_WAIT, NOT_SELECTED, Observations, Status,
};
use crate::client::{Client, ClientError, estimate_offset};
use crate::reply::{Reply, TimeReply};

/// The fix for a server that reads each `recv()` as one request.
const ONE_RECV_ONE_REQUEST: &str = "Your server treats each recv() as one request; TCP may split \
    a line or deliver several at once: keep a buffer and cut lines at LF";

/// How long a case waits for lines beyond those it expects, to see extra ones.
const SETTLE: Duration = Duration::from_millis(250);

/// The pause inside `TI` … `ME` of `split-line` (the assignment says at least 100 ms).
const SPLIT_PAUSE: Duration = Duration::from_millis(150);

/// A line no text protocol should choke on: invalid UTF-8 (C3 28, a lone 80), NUL, BEL, ESC.
/// No 0xFF (a telnet command) and no Ctrl-D (a QUIT to jamd).
const BAD_LINE: &[u8] = b"\xc3\x28\x80\x00\x07\x1b\r\n";

/// Bisection steps of `time-correct`: after the first second boundary the offset is known to
/// tens of milliseconds, plenty for a one-second verdict.
const OFFSET_ROUNDS: usize = 2;

/// What a case function returns: its status and the detail.
type Verdict = (Status, String);

struct Ctx<'a> {
    addr: SocketAddr,
    config: &'a CheckConfig,
}

impl Ctx<'_> {
    /// The deadline for one reply from now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.config.timeout
    }

    fn wait(&self) -> String {
        human(self.config.timeout)
    }

    async fn connect(&self, who: &'static str, t: &Transcript) -> Result<Probe, Verdict> {
        Probe::connect(self.addr, who, t, self.deadline())
            .await
            .map_err(|e| {
                let why = match e {
                    ConnectError::Refused => "the connection was refused".to_string(),
                    ConnectError::Timeout => format!("no connection within {}", self.wait()),
                    ConnectError::Other(e) => format!("cannot connect: {e}"),
                };
                (
                    Status::Fail,
                    format!("{why}, although the first connection worked"),
                )
            })
    }
}

/// Runs the catalogue against the first address of `addrs` that accepts a connection. Returns
/// that address, every case's result in catalogue order, and the error that made the server
/// unreachable, if it was.
pub(super) async fn run(
    addrs: &[SocketAddr],
    config: &CheckConfig,
) -> (Option<SocketAddr>, Vec<CaseResult>, Option<ClientError>) {
    let budget_end = Instant::now() + config.budget();
    let mut results: Vec<Option<CaseResult>> = vec![None; CATALOGUE.len()];
    let mut obs = Observations::default();

    // connect: also picks the address the other cases use.
    let t = Transcript::new();
    let mut address = None;
    let mut error = None;
    for &addr in addrs {
        match Probe::connect(addr, "A", &t, Instant::now() + config.timeout).await {
            Ok(_) => {
                address = Some(addr);
                break;
            }
            Err(ConnectError::Refused) => error = Some(ClientError::Refused(addr)),
            Err(ConnectError::Timeout) => {
                error = Some(ClientError::Timeout {
                    what: "connecting",
                    after: config.timeout,
                })
            }
            Err(ConnectError::Other(e)) => {
                error = Some(ClientError::Io {
                    context: format!("cannot connect to {addr}"),
                    source: e,
                })
            }
        }
    }
    let connect_verdict = match (address, &error) {
        (Some(addr), _) => (
            Status::Pass,
            format!("connected to {addr} in {}", human(t.elapsed())),
        ),
        (None, Some(ClientError::Timeout { .. })) => (
            Status::Timeout,
            format!(
                "no answer to the connection request within {}: is the host up, and does a \
                 firewall let port {} through?",
                human(config.timeout),
                addrs[0].port()
            ),
        ),
        (None, Some(ClientError::Refused(addr))) => (
            Status::Fail,
            format!(
                "connection refused at {addr}: nothing listens there. Is your server running, and \
                 does it listen on port {} (bind(('0.0.0.0', {})))?",
                addr.port(),
                addr.port()
            ),
        ),
        (None, Some(e)) => (Status::Fail, e.to_string()),
        (None, None) => (Status::Fail, "no address to connect to".into()),
    };
    let connected = connect_verdict.0 == Status::Pass;
    results[0] = Some(CaseResult {
        case: &CATALOGUE[0],
        status: connect_verdict.0,
        detail: connect_verdict.1,
        transcript: t.lines(),
        elapsed: t.elapsed(),
    });
    let Some(addr) = address.filter(|_| connected) else {
        fill_skipped(&mut results, config, "skipped: no connection");
        return (None, finish(results), error);
    };
    let ctx = Ctx { addr, config };

    // time-correct runs alongside the others once `concurrent` passed, else after them.
    let (go, ready) = oneshot::channel::<()>();
    let offset_index = index_of("time-correct");
    let sequential = async {
        let mut go = Some(go);
        for (i, case) in CATALOGUE.iter().enumerate() {
            if results[i].is_some() || i == offset_index || case.level == super::Level::Info {
                continue;
            }
            let result = if !config.is_selected(case.id) {
                skipped(i, NOT_SELECTED)
            } else if case.needs_reply && obs.no_reply {
                skipped(i, "skipped: TIME got no reply in time-format")
            } else {
                let t = Transcript::new();
                let verdict =
                    match timeout_at(budget_end, run_case(case.id, &ctx, &mut obs, &t)).await {
                        Ok(verdict) => verdict,
                        Err(_) => out_of_budget(config),
                    };
                CaseResult {
                    case,
                    status: verdict.0,
                    detail: verdict.1,
                    transcript: t.lines(),
                    elapsed: t.elapsed(),
                }
            };
            if case.id == "concurrent"
                && result.status == Status::Pass
                && let Some(go) = go.take()
            {
                let _ = go.send(());
            }
            results[i] = Some(result);
        }
        if let Some(go) = go.take() {
            let _ = go.send(());
        }
        obs
    };
    let offset = async {
        let _ = ready.await;
        let case = &CATALOGUE[offset_index];
        if !config.is_selected(case.id) {
            return (skipped(offset_index, NOT_SELECTED), None);
        }
        let t = Transcript::new();
        let (verdict, zone) = match timeout_at(budget_end, time_correct(&ctx, &t)).await {
            Ok(v) => v,
            Err(_) => (out_of_budget(config), None),
        };
        let result = CaseResult {
            case,
            status: verdict.0,
            detail: verdict.1,
            transcript: t.lines(),
            elapsed: t.elapsed(),
        };
        (result, zone)
    };
    let (mut obs, (offset_result, zone)) = tokio::join!(sequential, offset);
    // A server with no reply at all gets time-correct skipped like the other cases.
    results[offset_index] = Some(if obs.no_reply && offset_result.status != Status::Skip {
        skipped(offset_index, "skipped: TIME got no reply in time-format")
    } else {
        offset_result
    });
    obs.zone_offset = zone;
    for (i, case) in CATALOGUE.iter().enumerate() {
        if case.level == super::Level::Info {
            results[i] = Some(if config.is_selected(case.id) {
                info_case(case.id, &obs)
            } else {
                skipped(i, NOT_SELECTED)
            });
        }
    }
    (Some(addr), finish(results), None)
}

fn index_of(id: &str) -> usize {
    CATALOGUE.iter().position(|c| c.id == id).unwrap_or(0)
}

fn skipped(i: usize, why: &str) -> CaseResult {
    CaseResult {
        case: &CATALOGUE[i],
        status: Status::Skip,
        detail: why.to_string(),
        transcript: Vec::new(),
        elapsed: Duration::ZERO,
    }
}

fn fill_skipped(results: &mut [Option<CaseResult>], config: &CheckConfig, why: &str) {
    for (i, slot) in results.iter_mut().enumerate() {
        if slot.is_none() {
            let why = if config.is_selected(CATALOGUE[i].id) {
                why
            } else {
                NOT_SELECTED
            };
            *slot = Some(skipped(i, why));
        }
    }
}

fn finish(results: Vec<Option<CaseResult>>) -> Vec<CaseResult> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| skipped(i, "skipped")))
        .collect()
}

fn out_of_budget(config: &CheckConfig) -> Verdict {
    (
        Status::Timeout,
        format!(
            "stopped: the {} budget for one server ran out (the cases before waited for replies \
             that did not come)",
            human(config.budget())
        ),
    )
}

async fn run_case(id: &str, ctx: &Ctx<'_>, obs: &mut Observations, t: &Transcript) -> Verdict {
    let verdict = match id {
        "time-format" => time_format(ctx, obs, t).await,
        "repeat" => repeat(ctx, obs, t).await,
        "quit" => quit(ctx, obs, t).await,
        "concurrent" => concurrent(ctx, t).await,
        "split-line" => split_line(ctx, t).await,
        "pipelined" => pipelined(ctx, t).await,
        "many-clients" => many_clients(ctx, t).await,
        "unknown-command" => unknown_command(ctx, t).await,
        "lf-only" => lf_only(ctx, t).await,
        "bad-bytes" => bad_bytes(ctx, t).await,
        _ => Err((Status::Skip, "not a case that runs on its own".into())),
    };
    verdict.unwrap_or_else(|v| v)
}

/// A case's result, or its verdict early (`?` on a failed step).
type Step<T> = Result<T, Verdict>;

/// Sends `bytes` and waits for one line; a time reply (exact or a variant) passes.
async fn ask_time(
    ctx: &Ctx<'_>,
    probe: &mut Probe,
    bytes: &[u8],
    what: &str,
) -> Step<(TimeReply, Duration)> {
    let sent = Instant::now();
    probe
        .send(bytes, ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let got = probe.line(ctx.deadline()).await;
    let rtt = sent.elapsed();
    match got {
        Got::Line(line) => match Reply::parse(&line) {
            Reply::Time(reply) => Ok((reply, rtt)),
            _ => Err((
                Status::Fail,
                format!(
                    "{what}: sent \"{}\", got \"{}\", which is not a time",
                    show(bytes),
                    show(&line)
                ),
            )),
        },
        other => Err(no_line(
            ctx,
            other,
            &format!("{what}: sent \"{}\"", show(bytes)),
        )),
    }
}

/// Sends `bytes` and waits for a time, passing over other lines (answers to what came before).
async fn time_after(ctx: &Ctx<'_>, probe: &mut Probe, bytes: &[u8]) -> Step<()> {
    probe
        .send(bytes, ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let deadline = ctx.deadline();
    loop {
        match probe.line(deadline).await {
            Got::Line(line) if matches!(Reply::parse(&line), Reply::Time(_)) => return Ok(()),
            Got::Line(_) => {}
            end => {
                return Err(no_line(ctx, end, &format!("sent \"{}\"", show(bytes))));
            }
        }
    }
}

/// The verdict for a wait that ended without a line.
fn no_line(ctx: &Ctx<'_>, got: Got, context: &str) -> Verdict {
    match got {
        Got::Timeout => (
            Status::Timeout,
            format!("{context} and got no reply within {}", ctx.wait()),
        ),
        Got::Closed => (
            Status::Fail,
            format!("{context} and the server closed the connection without a reply"),
        ),
        Got::Reset(e) => (
            Status::Fail,
            format!("{context} and the connection broke: {e}"),
        ),
        Got::Flood => (
            Status::Fail,
            format!(
                "{context} and the server sent more than {} bytes without a line end",
                super::probe::READ_CAP
            ),
        ),
        Got::Line(_) => (Status::Fail, format!("{context}: unexpected line")),
    }
}

async fn time_format(ctx: &Ctx<'_>, obs: &mut Observations, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    let sent = Instant::now();
    a.send(b"TIME\r\n", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let got = a.line(ctx.deadline()).await;
    let after = human(sent.elapsed());
    let line = match got {
        Got::Line(line) => line,
        Got::Timeout => {
            obs.no_reply = true;
            return Ok((
                Status::Timeout,
                format!(
                    "sent \"TIME\\r\\n\" and got nothing within {}. Does your server wait for \
                     more data, or compare the request with \"TIME\" before removing \"\\r\\n\"? \
                     Strip the line end first: line.strip() == \"TIME\"",
                    ctx.wait()
                ),
            ));
        }
        other => {
            obs.no_reply = true;
            return Ok(no_line(ctx, other, "sent \"TIME\\r\\n\""));
        }
    };
    obs.rtts.push(sent.elapsed());
    let verdict = match Reply::parse(&line) {
        Reply::Time(reply) => {
            obs.first = Some(reply);
            if reply.is_exact() {
                (
                    Status::Pass,
                    format!("got \"{}\" after {after}", show(&line)),
                )
            } else {
                let fixes: Vec<&str> = reply.differences().iter().map(|d| d.fix()).collect();
                (
                    Status::Fail,
                    format!(
                        "sent \"TIME\\r\\n\", got \"{}\" after {after}: {}. The assignment asks \
                         for exactly \"JAM hh:mm:ss\\r\\n\": {}",
                        show(&line),
                        reply.describe_differences(),
                        fixes.join("; ")
                    ),
                )
            }
        }
        _ => {
            let looks_like_time = line.starts_with(b"JAM ")
                || line
                    .windows(3)
                    .any(|w| w[0].is_ascii_digit() && w[1] == b':' && w[2].is_ascii_digit());
            let hint = if line.starts_with(b"TIME") {
                "your server echoes what it receives instead of answering it"
            } else if looks_like_time {
                "the time is not in the form hh:mm:ss (24-hour, two digits each, nothing after \
                 the seconds): format it with strftime(\"%H:%M:%S\")"
            } else {
                "does your server compare the request with \"TIME\" while \"\\r\\n\" is still \
                 attached? Strip the line end first: line.strip() == \"TIME\""
            };
            (
                Status::Fail,
                format!(
                    "sent \"TIME\\r\\n\", got \"{}\" after {after}, which is not a time: {hint}",
                    show(&line)
                ),
            )
        }
    };
    Ok(verdict)
}

async fn repeat(ctx: &Ctx<'_>, obs: &mut Observations, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    for n in 1..=3 {
        let what = ["first", "second", "third"][n - 1];
        match ask_time(ctx, &mut a, b"TIME\r\n", &format!("the {what} TIME")).await {
            Ok((_, rtt)) => obs.rtts.push(rtt),
            Err((status, detail)) if n > 1 && detail.contains("closed the connection") => {
                return Ok((
                    status,
                    format!(
                        "{detail}: your server closes the connection after one reply. Serve \
                         requests in a loop (while True: data = conn.recv(…)) until QUIT or \
                         until the client closes"
                    ),
                ));
            }
            Err((status, detail)) if n > 1 => {
                return Ok((
                    status,
                    format!(
                        "{detail}: your server seems to answer only one request per connection; serve requests in a loop until QUIT"
                    ),
                ));
            }
            Err(verdict) => return Ok(verdict),
        }
    }
    Ok((Status::Pass, "three replies on one connection".into()))
}

async fn quit(ctx: &Ctx<'_>, obs: &mut Observations, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    a.send(b"QUIT\r\n", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let sent = Instant::now();
    let (before, end) = a.until_closed(ctx.deadline()).await;
    let said = if before.is_empty() {
        "nothing".to_string()
    } else {
        format!("\"{}\"", show(&before))
    };
    let after = human(sent.elapsed());
    Ok(match end {
        Got::Closed => {
            obs.after_quit = Some(format!("sent {said}, then closed the connection ({after})"));
            (Status::Pass, format!("closed {after} after QUIT"))
        }
        Got::Reset(e) => {
            obs.after_quit = Some(format!("sent {said}, then reset the connection"));
            (
                Status::Pass,
                format!("the connection was reset {after} after QUIT ({e}), not closed cleanly"),
            )
        }
        Got::Flood => (
            Status::Fail,
            format!(
                "after QUIT the server sent more than {} bytes",
                super::probe::READ_CAP
            ),
        ),
        _ => {
            obs.after_quit = Some(format!("sent {said} and kept the connection open"));
            (
                Status::Fail,
                format!(
                    "sent \"QUIT\\r\\n\"; the connection was still open {} later (the server sent \
                     {said}). When the line is QUIT, close the socket (conn.close()) and end \
                     that client's loop",
                    ctx.wait()
                ),
            )
        }
    })
}

async fn concurrent(ctx: &Ctx<'_>, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    a.send(b"TI", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let one_at_a_time = "your server serves one client at a time. Handle each accepted \
        connection in its own thread (threading.Thread(target=handle, args=(conn,)).start()) so \
        that accept() runs again at once";
    let mut b = match Probe::connect(ctx.addr, "B", t, ctx.deadline()).await {
        Ok(b) => b,
        Err(_) => {
            return Ok((
                Status::Fail,
                format!(
                    "while client A held a connection with \"TI\" sent, client B could not \
                     connect within {}: {one_at_a_time}",
                    ctx.wait()
                ),
            ));
        }
    };
    let started = Instant::now();
    let verdict = match ask_time(ctx, &mut b, b"TIME\r\n", "client B").await {
        Ok(_) => {
            let b_took = human(started.elapsed());
            // A must still be served: a server that dropped A to serve B is not concurrent.
            // A ends its half line and asks (the half line may get an error of its own first).
            match time_after(ctx, &mut a, b"\r\nTIME\r\n").await {
                Ok(()) => (
                    Status::Pass,
                    format!(
                        "client B was answered in {b_took} while client A held a half line; then A was answered too"
                    ),
                ),
                Err((status, detail)) => (
                    status,
                    format!(
                        "client B was answered in {b_took}, but then client A, which had held \"TI\", {detail}. \
                         A server must keep serving a connection while it serves others (a thread \
                         per connection)"
                    ),
                ),
            }
        }
        Err((Status::Timeout, _)) => (
            Status::Fail,
            format!(
                "while client A held a connection with half a line sent (\"TI\"), client B sent \
                 \"TIME\\r\\n\" and got no reply within {}: {one_at_a_time}",
                ctx.wait()
            ),
        ),
        Err(verdict) => verdict,
    };
    drop(a);
    Ok(verdict)
}

async fn split_line(ctx: &Ctx<'_>, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    a.send(b"TI", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    a.pause(SPLIT_PAUSE).await;
    a.send(b"ME\r\n", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let (lines, end) = a.lines(1, SETTLE, ctx.deadline()).await;
    let sent = format!(
        "sent \"TI\", paused {} ms, sent \"ME\\r\\n\"",
        SPLIT_PAUSE.as_millis()
    );
    let is_time = |l: &Vec<u8>| matches!(Reply::parse(l), Reply::Time(_));
    Ok(match (lines.as_slice(), end) {
        ([one], None) if is_time(one) => (Status::Pass, format!("one reply: \"{}\"", show(one))),
        ([], Some(end)) => no_line(ctx, end, &sent),
        _ => (
            Status::Fail,
            format!(
                "{sent}; expected one time, got {} line{}: {}. {ONE_RECV_ONE_REQUEST}",
                lines.len(),
                if lines.len() == 1 { "" } else { "s" },
                show_lines(&lines)
            ),
        ),
    })
}

async fn pipelined(ctx: &Ctx<'_>, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    a.send(b"TIME\r\nTIME\r\nTIME\r\n", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let (lines, end) = a.lines(3, SETTLE, ctx.deadline()).await;
    let times = lines
        .iter()
        .filter(|l| matches!(Reply::parse(l), Reply::Time(_)))
        .count();
    let sent = "sent \"TIME\\r\\nTIME\\r\\nTIME\\r\\n\" in one write";
    Ok(match (lines.len(), times, end) {
        (3, 3, None) => (Status::Pass, "three replies".into()),
        (0, _, Some(end)) => no_line(ctx, end, sent),
        (n, _, _) => (
            Status::Fail,
            format!(
                "{sent}; expected three times, got {n} line{}{}. {ONE_RECV_ONE_REQUEST}",
                if n == 1 { "" } else { "s" },
                if n == 0 {
                    String::new()
                } else {
                    format!(": {}", show_lines(&lines))
                }
            ),
        ),
    })
}

async fn unknown_command(ctx: &Ctx<'_>, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    a.send(b"HELLO\r\n", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let reply = match a.line(ctx.deadline()).await {
        Got::Line(line) => line,
        Got::Timeout => {
            return Ok((
                Status::Timeout,
                format!(
                    "sent \"HELLO\\r\\n\" and got no reply within {}: answer an unknown command \
                     with an error line, e.g. \"ERR unknown command\\r\\n\"",
                    ctx.wait()
                ),
            ));
        }
        Got::Closed => {
            return Ok((
                Status::Fail,
                "sent \"HELLO\\r\\n\" and the server closed the connection: answer an unknown \
                 command with an error line and keep the session going"
                    .into(),
            ));
        }
        other => return Ok(no_line(ctx, other, "sent \"HELLO\\r\\n\"")),
    };
    if matches!(Reply::parse(&reply), Reply::Time(_)) {
        return Ok((
            Status::Fail,
            format!(
                "sent \"HELLO\\r\\n\", got \"{}\": a time for an unknown command. Check that the \
                 line is TIME before answering with the time",
                show(&reply)
            ),
        ));
    }
    match ask_time(ctx, &mut a, b"TIME\r\n", "then").await {
        Ok(_) => Ok((
            Status::Pass,
            format!("\"HELLO\" got \"{}\", then TIME was answered", show(&reply)),
        )),
        Err((status, detail)) => Ok((
            status,
            format!(
                "\"HELLO\" got \"{}\"; {detail}: after an unknown command the session must go on",
                show(&reply)
            ),
        )),
    }
}

async fn lf_only(ctx: &Ctx<'_>, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    Ok(
        match ask_time(ctx, &mut a, b"TIME\n", "nc's line end").await {
            Ok(_) => (Status::Pass, "\"TIME\\n\" was answered".into()),
            Err((status, detail)) => (
                status,
                format!(
                    "{detail}. nc and many scripts end lines with LF alone: accept \"TIME\\n\" too \
                 (strip the line end with line.strip() or cut lines at LF and drop a CR before it)"
                ),
            ),
        },
    )
}

async fn bad_bytes(ctx: &Ctx<'_>, t: &Transcript) -> Step<Verdict> {
    let mut a = ctx.connect("A", t).await?;
    a.send(BAD_LINE, ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    let crashed = "your server ended the session on a line that is not valid UTF-8: \
        data.decode() raises UnicodeDecodeError. Decode with errors=\"replace\" (or compare \
        bytes) and answer such a line with an error";
    // Whatever the server says to the bad line, it may say within a moment.
    let (_, end) = a.lines(usize::MAX, SETTLE, Instant::now() + SETTLE).await;
    match end {
        Some(Got::Closed) | Some(Got::Reset(_)) => {
            return Ok((
                Status::Fail,
                format!("sent \"{}\": {crashed}", show(BAD_LINE)),
            ));
        }
        Some(Got::Flood) => return Ok(no_line(ctx, Got::Flood, "sent a bad line")),
        _ => {}
    }
    a.send(b"TIME\r\n", ctx.deadline())
        .await
        .map_err(|e| (Status::Fail, e))?;
    // The answer to the bad line may come late (a slow server, a slow network): lines that are
    // not a time are passed over until the time comes.
    let deadline = ctx.deadline();
    let mut others = Vec::new();
    loop {
        match a.line(deadline).await {
            Got::Line(line) if matches!(Reply::parse(&line), Reply::Time(_)) => {
                return Ok((
                    Status::Pass,
                    "the session went on: TIME was answered".into(),
                ));
            }
            Got::Line(line) => others.push(line),
            Got::Closed | Got::Reset(_) => {
                return Ok((
                    Status::Fail,
                    format!(
                        "sent \"{}\", then \"TIME\\r\\n\", and the server closed the connection: {crashed}",
                        show(BAD_LINE)
                    ),
                ));
            }
            end => {
                let got = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (only {})", show_lines(&others))
                };
                return Ok(no_line(
                    ctx,
                    end,
                    &format!(
                        "sent \"{}\", then \"TIME\\r\\n\"{got}; after a bad line the session must go on, and TIME",
                        show(BAD_LINE)
                    ),
                ));
            }
        }
    }
}

async fn many_clients(ctx: &Ctx<'_>, t: &Transcript) -> Step<Verdict> {
    let n = ctx.config.clients;
    let start = Instant::now();
    let deadline = start + MANY_CLIENTS_WAIT;
    t.note(
        "",
        format!("{n} clients connect at once, each sends \"TIME\\r\\n\""),
    );
    let mut tasks = tokio::task::JoinSet::new();
    let addr = ctx.addr;
    let quiet = Transcript::new();
    for _ in 0..n {
        let quiet = quiet.clone();
        tasks.spawn(async move {
            let began = Instant::now();
            let mut probe = match Probe::connect(addr, "", &quiet, deadline).await {
                Ok(p) => p,
                Err(ConnectError::Other(e)) if is_local_shortage(&e) => {
                    return Crowd::Local(e.to_string());
                }
                Err(_) => return Crowd::NotConnected,
            };
            if probe.send(b"TIME\r\n", deadline).await.is_err() {
                return Crowd::Unanswered(began.elapsed(), None);
            }
            let got = probe.line(deadline).await;
            // The whole exchange: a dropped handshake ACK shows in the reply, not in connect().
            let took = began.elapsed();
            match got {
                Got::Line(l) if matches!(Reply::parse(&l), Reply::Time(_)) => {
                    let _ = probe.send(b"QUIT\r\n", deadline).await;
                    Crowd::Answered(took)
                }
                Got::Line(l) => Crowd::Unanswered(took, Some(l)),
                _ => Crowd::Unanswered(took, None),
            }
        });
    }
    let (mut answered, mut connected, mut retried) = (0, 0, 0);
    let mut other: Option<(Vec<u8>, usize)> = None;
    let mut local = None;
    while let Some(result) = tasks.join_next().await {
        let took = match result {
            Ok(Crowd::Answered(took)) => {
                answered += 1;
                took
            }
            Ok(Crowd::Unanswered(took, line)) => {
                if let Some(line) = line {
                    let entry = other.get_or_insert((line, 0));
                    entry.1 += 1;
                }
                took
            }
            Ok(Crowd::Local(e)) => {
                local = Some(e);
                continue;
            }
            Ok(Crowd::NotConnected) | Err(_) => continue,
        };
        connected += 1;
        // Linux retries a dropped SYN (or handshake ACK) after 1 s: a client that waited that
        // long most likely met a full accept queue.
        retried += usize::from(took >= Duration::from_millis(900));
    }
    let took = human(start.elapsed());
    t.note(
        "",
        format!(
            "{answered} answered, {connected} connected, {retried} waited 1 s or more, in {took}"
        ),
    );
    if let Some(e) = local {
        return Ok((
            Status::Skip,
            format!(
                "not judged: this machine could not open {n} connections ({e}); use fewer --clients or -j"
            ),
        ));
    }
    let backlog = "the listen backlog is probably small (listen(1) or listen(5)): when the accept \
        queue is full, Linux drops new connection requests and clients retry after 1 s and 3 s. \
        Call listen(128) (or socket.SOMAXCONN)";
    Ok(if answered == n && retried == 0 {
        (Status::Pass, format!("all {n} clients answered in {took}"))
    } else if answered == n {
        (
            Status::Pass,
            format!(
                "all {n} clients answered in {took}, but {retried} waited 1 s or more: {backlog}"
            ),
        )
    } else {
        let cause = match &other {
            Some((line, count)) => format!("{count} got \"{}\" instead of a time", show(line)),
            None if retried > 0 || connected < n => backlog.to_string(),
            None => "the server may serve one client at a time, or too slowly".to_string(),
        };
        (
            Status::Fail,
            format!(
                "{answered} of {n} clients connecting at once were answered within {} \
                 ({connected} connected, {retried} waited 1 s or more): {cause}",
                human(MANY_CLIENTS_WAIT)
            ),
        )
    })
}

/// How one of `many-clients`' clients fared.
enum Crowd {
    /// A time came back after this long.
    Answered(Duration),
    /// Connected, but no time came (this line instead, if any).
    Unanswered(Duration, Option<Vec<u8>>),
    /// Never connected.
    NotConnected,
    /// This machine ran out of sockets or ports: the checker's problem, not the server's.
    Local(String),
}

/// Errors that mean the checker's own machine is short of descriptors or ports.
fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL | libc::ENOBUFS)
    )
}

async fn time_correct(ctx: &Ctx<'_>, t: &Transcript) -> (Verdict, Option<i32>) {
    t.note(
        "A",
        "measuring the clock offset (jam offset's method, cut short)",
    );
    let mut client = match Client::connect_addr(ctx.addr, ctx.config.timeout).await {
        Ok(c) => c,
        Err(e) => return ((Status::Fail, format!("cannot connect: {e}")), None),
    };
    let estimate = match estimate_offset(&mut client, OFFSET_ROUNDS).await {
        Ok(e) => e,
        Err(ClientError::Timeout { .. }) => {
            return (
                (
                    Status::Timeout,
                    format!(
                        "a TIME got no reply within {} while measuring the offset",
                        ctx.wait()
                    ),
                ),
                None,
            );
        }
        Err(ClientError::InvalidReply(why)) if why.contains("contradict") => {
            return (
                (
                    Status::Fail,
                    "the reported time does not move on with the clock (replies a second apart \
                     contradict each other): compute the time for each request, not once when \
                     the server starts"
                        .into(),
                ),
                None,
            );
        }
        Err(e) => {
            return (
                (Status::Fail, format!("cannot measure the offset: {e}")),
                None,
            );
        }
    };
    let _ = client.quit().await;
    t.note(
        "A",
        format!(
            "{} requests, smallest round trip {:.3} ms",
            estimate.samples,
            estimate.min_rtt * 1e3
        ),
    );
    let offset = format!("{:+.3} s ± {:.3} s", estimate.offset, estimate.uncertainty);
    let zone = zone_text(estimate.zone_offset);
    let verdict = if estimate.offset.abs() <= ctx.config.max_offset {
        (
            Status::Pass,
            format!("offset {offset} (server minus this machine; the server reports {zone})"),
        )
    } else {
        let side = if estimate.offset > 0.0 {
            "ahead of"
        } else {
            "behind"
        };
        (
            Status::Fail,
            format!(
                "the server's clock is {:.1} s {side} this machine's ({offset}, more than the \
                 {} s allowed; the zone difference, {zone}, is already removed): is the server \
                 machine's clock synchronised (NTP), and does the server report the time it reads, \
                 unchanged?",
                estimate.offset.abs(),
                ctx.config.max_offset
            ),
        )
    };
    (verdict, Some(estimate.zone_offset))
}

fn info_case(id: &str, obs: &Observations) -> CaseResult {
    let i = index_of(id);
    let (status, detail) = match id {
        "zone" => match obs.zone_offset {
            Some(zone) => {
                let local = jiff::Zoned::now().offset().seconds();
                let note = if local == zone {
                    "the same as this machine's local time".to_string()
                } else {
                    format!(
                        "this machine's local time is {}: the server's clock may be right in \
                         another zone",
                        zone_text(local)
                    )
                };
                (
                    Status::Pass,
                    format!("the server reports {}; {note}", zone_text(zone)),
                )
            }
            None => (Status::Skip, "needs time-correct".to_string()),
        },
        "date" => match &obs.first {
            Some(reply) => match reply.date {
                Some(date) => (
                    Status::Pass,
                    format!(
                        "the reply includes a date ({}: day {}, month {}, year {})",
                        date.pattern(),
                        date.day,
                        date.month,
                        date.year
                    ),
                ),
                None => (Status::Pass, "no date in the reply".to_string()),
            },
            None => (
                Status::Skip,
                "needs a time reply from time-format".to_string(),
            ),
        },
        "latency" => {
            let mut rtts = obs.rtts.clone();
            rtts.sort_unstable();
            match (rtts.get(rtts.len() / 2), rtts.last()) {
                (Some(median), Some(max)) => (
                    Status::Pass,
                    format!(
                        "median {}, slowest {} over {} replies",
                        human(*median),
                        human(*max),
                        rtts.len()
                    ),
                ),
                _ => (Status::Skip, "no reply was timed".to_string()),
            }
        }
        "after-quit" => match &obs.after_quit {
            Some(text) => (Status::Pass, text.clone()),
            None => (Status::Skip, "needs the quit case".to_string()),
        },
        _ => (Status::Skip, "unknown info case".to_string()),
    };
    CaseResult {
        case: &CATALOGUE[i],
        status,
        detail,
        transcript: Vec::new(),
        elapsed: Duration::ZERO,
    }
}

/// `UTC+07:00`.
fn zone_text(seconds: i32) -> String {
    format!(
        "UTC{}{:02}:{:02}",
        if seconds < 0 { '-' } else { '+' },
        seconds.abs() / 3600,
        seconds.abs() % 3600 / 60
    )
}

/// A duration for people: `0.4 ms`, `150 ms`, `1 s`, `4.5 s`.
pub(super) fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        let s = d.as_secs_f64();
        if (s - s.round()).abs() < 0.05 {
            format!("{s:.0} s")
        } else {
            format!("{s:.1} s")
        }
    }
}
