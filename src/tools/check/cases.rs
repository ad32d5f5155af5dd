//! The cases' run functions: each drives fresh connections, judges what came back against its own
//! clause only, and explains a failure the way a teacher would: what was sent, what came back,
//! the likely cause and the fix. The catalogue ties each to its id, level and needs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use super::diagnose::{self, Variant, ZoneFinding, classify, explain_no_time, explain_time};
use super::display::{human, lines_word, show, show_lines, zone_text};
use super::model::{CaseId, Outcome, ReplyKind, SkipReason};
use super::probe::{ConnectError, Got, Probe, READ_CAP, Transcript};
use super::runner::{CaseFuture, Ctx, GREETING_WAIT, Observations, Run};
use crate::client::{Client, ClientError, estimate_offset};
use crate::reply::{LineEnd, Reply, TimeReply};

/// Ties a run function to the catalogue's function-pointer type.
macro_rules! probe_case {
    ($name:ident, $run:ident) => {
        pub(super) const $name: Run = Run::Probe({
            fn boxed<'a>(ctx: &'a Ctx, t: &'a Transcript) -> CaseFuture<'a> {
                Box::pin($run(ctx, t))
            }
            boxed
        });
    };
}

probe_case!(CONNECT, connect);
probe_case!(TIME_FORMAT, time_format);
probe_case!(REPEAT, repeat);
probe_case!(QUIT, quit);
probe_case!(CONCURRENT, concurrent);
probe_case!(SPLIT_LINE, split_line);
probe_case!(PIPELINED, pipelined);
probe_case!(TIME_CORRECT, time_correct);
probe_case!(MANY_CLIENTS, many_clients);
probe_case!(UNKNOWN_COMMAND, unknown_command);
probe_case!(LF_ONLY, lf_only);
probe_case!(BAD_BYTES, bad_bytes);
pub(super) const ZONE: Run = Run::Report(zone);
pub(super) const DATE: Run = Run::Report(date);
pub(super) const LATENCY: Run = Run::Report(latency);
pub(super) const AFTER_QUIT: Run = Run::Report(after_quit);

/// How long a case waits for lines beyond those it expects, to see extra ones.
const SETTLE: Duration = Duration::from_millis(250);

/// The pause inside `TI` … `ME` of `split-line` (the assignment says at least 100 ms).
const SPLIT_PAUSE: Duration = Duration::from_millis(150);

/// The pause between client A's completing CR LF and its `TIME` in `concurrent`: a server that
/// reads one `recv()` per request must see them as two requests, as a person typing would send.
const CONCURRENT_SETTLE: Duration = Duration::from_millis(100);

/// How long `many-clients` waits for every answer: past Linux's first SYN retry at 1 s, so that a
/// connection still unanswered then is the evidence of a full accept queue (a small backlog).
const MANY_CLIENTS_WAIT: Duration = Duration::from_millis(1500);

/// A line no text protocol should choke on: invalid UTF-8 (C3 28, a lone 80), NUL, BEL, ESC.
/// No 0xFF (a telnet command) and no Ctrl-D (a QUIT to jamd).
const BAD_LINE: &[u8] = b"\xc3\x28\x80\x00\x07\x1b\r\n";

/// Bisection steps of `time-correct`: after the first second boundary the offset is known to
/// tens of milliseconds, plenty for a one-second verdict; one step more guards against a sample
/// that a slow round trip blurred.
const OFFSET_ROUNDS: usize = 1;

/// The fix for a server that reads each `recv()` as one request.
const ONE_RECV_ONE_REQUEST: &str = "Your server treats each recv() as one request; TCP may split \
    a line or deliver several at once: keep a buffer and cut lines at LF";

/// The fix for a server that buffers until a read ends in CR LF, then takes it all as one request.
const BUFFER_AS_ONE_REQUEST: &str = "Your server collects data until it ends in \"\\r\\n\" and \
    then takes the whole buffer as one request; several lines can arrive in one read: cut the \
    buffer at each LF (while \"\\n\" in buffer: line, buffer = buffer.split(\"\\n\", 1))";

/// A time reply: the whole line, or one glued behind other bytes that had no line end of their
/// own (`ERRORJAM 13:26:23\r\n`).
fn time_in(line: &[u8]) -> Option<TimeReply> {
    if let Reply::Time(reply) = Reply::parse(line) {
        return Some(reply);
    }
    let at = line.windows(4).rposition(|w| w == b"JAM ")?;
    match Reply::parse(&line[at..]) {
        Reply::Time(reply) => Some(reply),
        _ => None,
    }
}

fn is_time(line: &[u8]) -> bool {
    time_in(line).is_some()
}

/// The outcome of a wait that ended without a line.
fn no_line(ctx: &Ctx, got: Got, context: &str) -> Outcome {
    match got {
        Got::Timeout => Outcome::Timeout(format!(
            "{context} and got no reply within {}",
            human(ctx.config.timeout)
        )),
        Got::Closed => Outcome::Fail(format!(
            "{context} and the server closed the connection without a reply"
        )),
        Got::Reset(e) => Outcome::Fail(format!("{context} and the connection broke: {e}")),
        Got::Flood => Outcome::Fail(format!(
            "{context} and the server sent more than {READ_CAP} bytes without a line end"
        )),
        Got::Line(line) => Outcome::Fail(format!("{context}: unexpected \"{}\"", show(&line))),
    }
}

/// Sends `bytes`; a failed send ends the case.
async fn send(ctx: &Ctx, probe: &mut Probe, bytes: &[u8]) -> Result<(), Outcome> {
    probe
        .send(bytes, ctx.deadline())
        .await
        .map_err(Outcome::Fail)
}

/// Runs a case body written with `?` on steps that end it early.
async fn judged(body: impl Future<Output = Result<Outcome, Outcome>>) -> Outcome {
    body.await.unwrap_or_else(|early| early)
}

async fn connect(ctx: &Ctx, t: &Transcript) -> Outcome {
    let timeout = ctx.config.timeout;
    let mut last = None;
    for &addr in ctx.addrs() {
        match Probe::connect(addr, "A", t, ctx.deadline()).await {
            Ok(_) => {
                ctx.set_addr(addr);
                return Outcome::Pass(format!("connected to {addr} in {}", human(t.elapsed())));
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        return Outcome::Fail("no address to connect to".into());
    };
    let (outcome, error) = match e {
        ConnectError::Refused => (
            Outcome::Fail(format!(
                "connection refused at {addr}: nothing listens there. Is your server running, and \
                 does it listen on port {port} (bind(('0.0.0.0', {port})))?",
                port = addr.port()
            )),
            ClientError::Refused(addr),
        ),
        ConnectError::Timeout => (
            Outcome::Timeout(format!(
                "no answer to the connection request within {}: is the host up, and does a \
                 firewall let port {} through?",
                human(timeout),
                addr.port()
            )),
            ClientError::Timeout {
                what: "connecting",
                after: timeout,
            },
        ),
        ConnectError::Other(e) => {
            let error = ClientError::Io {
                context: format!("cannot connect to {addr}"),
                source: e,
            };
            (Outcome::Fail(error.to_string()), error)
        }
    };
    ctx.set_error(error);
    outcome
}

async fn time_format(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        // What a server says before it is asked anything is a greeting (or another protocol's
        // banner): listen a moment first.
        let greeting = a.collect_until(Instant::now() + GREETING_WAIT).await;
        let sent = Instant::now();
        if let Err(broken) = send(ctx, &mut a, b"TIME\r\n").await {
            ctx.still_accepting(t).await?;
            return Err(broken);
        }
        let answer = a.line(ctx.deadline()).await;
        let rtt = sent.elapsed();
        let kind = classify(&greeting, &answer, b"TIME\r\n");
        if matches!(kind, ReplyKind::Closed | ReplyKind::Reset) {
            ctx.still_accepting(t).await?;
        }
        if kind.is_line() {
            ctx.slow_server(rtt);
        }
        ctx.observe(|o| {
            o.first_kind = Some(kind);
            if !greeting.is_empty() && diagnose::banner(&greeting).is_none() {
                o.greeting_lines = Some(greeting.iter().filter(|&&b| b == b'\n').count());
            }
        });
        let line = match &answer {
            Got::Line(line) => Some(line.as_slice()),
            _ => None,
        };
        if kind == ReplyKind::Time
            && let Some(line) = line
            && let Reply::Time(reply) = Reply::parse(line)
        {
            ctx.observe(|o| {
                o.first = Some(reply);
                o.rtts.push(rtt);
            });
            return Ok(match explain_time(&reply, line, &greeting) {
                None => Outcome::Pass(format!("got \"{}\" after {}", show(line), human(rtt))),
                Some(cause) => Outcome::Fail(cause),
            });
        }
        // Not a time: find which form of the request the server does recognise, if any.
        let recognised = if matches!(kind, ReplyKind::Unrecognised | ReplyKind::Nothing) {
            drop(a);
            recognised_variant(ctx, t).await
        } else {
            None
        };
        let text = explain_no_time(kind, line, &greeting, recognised, ctx.config.timeout);
        Ok(if kind == ReplyKind::Nothing && recognised.is_none() {
            Outcome::Timeout(text)
        } else {
            Outcome::Fail(text)
        })
    })
    .await
}

/// The first [`Variant`] of the request that the server answers with a time, each tried on a
/// fresh connection.
async fn recognised_variant(ctx: &Ctx, t: &Transcript) -> Option<Variant> {
    for variant in Variant::ALL {
        let Ok(mut probe) = ctx.connect("V", t).await else {
            return None;
        };
        if probe.send(variant.bytes(), ctx.deadline()).await.is_err() {
            continue;
        }
        if let Got::Line(line) = probe.line(ctx.deadline()).await
            && is_time(&line)
        {
            return Some(variant);
        }
    }
    None
}

async fn repeat(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        for n in 1..=3 {
            let nth = ["first", "second", "third"][n - 1];
            let sent = Instant::now();
            send(ctx, &mut a, b"TIME\r\n").await?;
            match a.line(ctx.deadline()).await {
                Got::Line(line) if is_time(&line) => {
                    ctx.observe(|o| o.rtts.push(sent.elapsed()));
                }
                Got::Line(line) => {
                    return Ok(Outcome::Fail(format!(
                        "the {nth} TIME on one connection got \"{}\", which is not a time",
                        show(&line)
                    )));
                }
                Got::Closed | Got::Reset(_) if n > 1 => {
                    return Ok(Outcome::Fail(format!(
                        "the server closed the connection after {}: it answers one request per \
                         connection. Serve requests in a loop (while True: data = conn.recv(…)) \
                         until QUIT or until the client closes",
                        lines_word(n - 1)
                            .replace("line", "reply")
                            .replace("replys", "replies")
                    )));
                }
                Got::Timeout if n > 1 => {
                    return Ok(Outcome::Timeout(format!(
                        "the {nth} TIME on one connection got no reply within {}, after the first \
                         was answered: serve requests in a loop until QUIT",
                        human(ctx.config.timeout)
                    )));
                }
                end => return Ok(no_line(ctx, end, &format!("sent the {nth} TIME"))),
            }
        }
        Ok(Outcome::Pass("three replies on one connection".into()))
    })
    .await
}

async fn quit(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        send(ctx, &mut a, b"QUIT\r\n").await?;
        let sent = Instant::now();
        let (before, end) = a.until_closed(ctx.deadline()).await;
        let said = if before.is_empty() {
            "nothing".to_string()
        } else {
            format!("\"{}\"", show(&before))
        };
        let after = human(sent.elapsed());
        let (observed, outcome) = match end {
            Got::Closed => (
                Some(format!("sent {said}, then closed the connection ({after})")),
                Outcome::Pass(format!("closed {after} after QUIT")),
            ),
            Got::Reset(e) => (
                Some(format!("sent {said}, then reset the connection")),
                Outcome::Pass(format!(
                    "the connection was reset {after} after QUIT ({e}), not closed cleanly"
                )),
            ),
            Got::Flood => (
                None,
                Outcome::Fail(format!(
                    "after QUIT the server sent more than {READ_CAP} bytes"
                )),
            ),
            _ => (
                Some(format!("sent {said} and kept the connection open")),
                Outcome::Fail(format!(
                    "sent \"QUIT\\r\\n\"; the connection was still open {} later (the server sent \
                     {said}). When the line is QUIT, close the socket (conn.close()) and end that \
                     client's loop",
                    human(ctx.config.timeout)
                )),
            ),
        };
        ctx.observe(|o| o.after_quit = observed);
        Ok(outcome)
    })
    .await
}

async fn concurrent(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        // Client A holds half a line. A server that answers the half line and closes A (one
        // request per connection, `repeat`'s business) frees its thread at once and shows
        // nothing: then A connects again and sends nothing at all.
        match while_a_holds(ctx, t, b"TI").await? {
            Held::Shown(outcome) => Ok(outcome),
            Held::Freed => {
                t.note(
                    "",
                    "A was answered and closed before B's answer: again, and A sends nothing",
                );
                match while_a_holds(ctx, t, b"").await? {
                    Held::Shown(outcome) => Ok(outcome),
                    Held::Freed => Ok(Outcome::Skip(SkipReason::Blocked(CaseId::Repeat))),
                }
            }
        }
    })
    .await
}

/// How one attempt of `concurrent` ended.
enum Held {
    /// The verdict.
    Shown(Outcome),
    /// The server answered client A and closed it before B connected: A held nothing.
    Freed,
}

/// One attempt of `concurrent`: A connects and sends `half`; while A holds it, B asks the time.
async fn while_a_holds(ctx: &Ctx, t: &Transcript, half: &[u8]) -> Result<Held, Outcome> {
    let mut a = ctx.connect("A", t).await?;
    // Bytes after this instant answer A's half line (a greeting came before it).
    let asked = Instant::now();
    let holding = if half.is_empty() {
        "an idle connection".to_string()
    } else {
        send(ctx, &mut a, half).await?;
        format!("a connection with \"{}\" sent", show(half))
    };
    let one_at_a_time = "your server serves one client at a time. Handle each accepted \
        connection in its own thread (threading.Thread(target=handle, args=(conn,)).start()) so \
        that accept() runs again at once";
    let mut b = match ctx.connect("B", t).await {
        Ok(b) => b,
        Err(Outcome::Fail(_) | Outcome::Timeout(_)) => {
            return Ok(Held::Shown(Outcome::Fail(format!(
                "while client A held {holding}, client B could not connect within {}: \
                 {one_at_a_time}",
                human(ctx.config.timeout)
            ))));
        }
        Err(skip) => return Err(skip),
    };
    let started = Instant::now();
    send(ctx, &mut b, b"TIME\r\n").await?;
    match b.line(ctx.deadline()).await {
        Got::Line(_) => {}
        Got::Timeout => {
            return Ok(Held::Shown(Outcome::Fail(format!(
                "while client A held {holding}, client B sent \"TIME\\r\\n\" and got no reply \
                 within {}: {one_at_a_time}",
                human(ctx.config.timeout)
            ))));
        }
        end => {
            return Ok(Held::Shown(no_line(
                ctx,
                end,
                "client B sent \"TIME\\r\\n\"",
            )));
        }
    }
    let answered = b.last_data_at().unwrap_or_else(Instant::now);
    let b_took = human(answered.saturating_duration_since(started));
    // A server that answered A and closed it freed its thread: this attempt shows nothing. One
    // that dropped A, unanswered, to serve B is not concurrent.
    if let Some(closed) = a.closed_at()
        && closed <= answered
    {
        // Answered and closed (one request per connection): A held nothing; try again with an
        // A that sends nothing. With an A that sent nothing, a close is a drop.
        if !half.is_empty() && a.data_between(asked, closed) {
            return Ok(Held::Freed);
        }
        return Ok(Held::Shown(Outcome::Fail(format!(
            "client B was answered only after the server closed client A's connection ({} \
             before), which held {holding}, without a word: {one_at_a_time}, and drops a quiet \
             one to take the next",
            human(answered.saturating_duration_since(closed))
        ))));
    }
    ctx.observe(|o| o.concurrent = true);
    // Concurrency is shown. For the transcript, A completes its half line and asks, as two
    // writes: what it gets back is other cases' business.
    if !half.is_empty() {
        let _ = a.send(b"\r\n", ctx.deadline()).await;
        a.pause(CONCURRENT_SETTLE).await;
    }
    let _ = a.send(b"TIME\r\n", ctx.deadline()).await;
    let deadline = ctx.deadline();
    let mut got = Vec::new();
    let a_said = loop {
        match a.line(deadline).await {
            Got::Line(line) if is_time(&line) => break "then A was answered too".to_string(),
            Got::Line(line) => got.push(line),
            _ if got.is_empty() => break "A got nothing more".to_string(),
            _ => break format!("A got {} and no time", show_lines(&got)),
        }
    };
    Ok(Held::Shown(Outcome::Pass(format!(
        "client B was answered in {b_took} while client A held {holding}; {a_said}"
    ))))
}

async fn split_line(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        send(ctx, &mut a, b"TI").await?;
        a.pause(SPLIT_PAUSE).await;
        send(ctx, &mut a, b"ME\r\n").await?;
        let (lines, end) = a.lines(1, SETTLE, ctx.config.timeout).await;
        let sent = format!(
            "sent \"TI\", paused {} ms, sent \"ME\\r\\n\"",
            SPLIT_PAUSE.as_millis()
        );
        Ok(match (lines.as_slice(), end) {
            ([one], None) if is_time(one) => Outcome::Pass(format!("one reply: \"{}\"", show(one))),
            // Closing after the reply is repeat's business, not this case's.
            ([one], Some(Got::Closed | Got::Reset(_))) if is_time(one) => Outcome::Pass(format!(
                "one reply: \"{}\" (then the server closed the connection)",
                show(one)
            )),
            ([], Some(Got::Timeout)) => Outcome::Timeout(format!(
                "{sent} and got no reply within {}, though TIME sent in one piece is answered: \
                 neither piece alone is a request it knows, and it ignored both. \
                 {ONE_RECV_ONE_REQUEST}",
                human(ctx.config.timeout)
            )),
            ([], Some(end)) => no_line(ctx, end, &sent),
            _ => Outcome::Fail(format!(
                "{sent}; expected one time, got {}: {}. {ONE_RECV_ONE_REQUEST}",
                lines_word(lines.len()),
                show_lines(&lines)
            )),
        })
    })
    .await
}

async fn pipelined(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        send(ctx, &mut a, b"TIME\r\nTIME\r\nTIME\r\n").await?;
        let (lines, end) = a.lines(3, SETTLE, ctx.config.timeout).await;
        let times = lines.iter().filter(|l| is_time(l)).count();
        let sent = "sent \"TIME\\r\\nTIME\\r\\nTIME\\r\\n\" in one write";
        // A server that joins a split line but not separate lines buffers until CR LF.
        let cause = if ctx.observe(|o| o.passed.contains(&CaseId::SplitLine)) {
            BUFFER_AS_ONE_REQUEST
        } else {
            ONE_RECV_ONE_REQUEST
        };
        Ok(match (lines.len(), times, end) {
            (3, 3, None) => Outcome::Pass("three replies".into()),
            (0, _, Some(Got::Timeout)) => Outcome::Timeout(format!(
                "{sent} and got no reply within {}, though one TIME is answered: the three \
                 lines together are not a request it knows, and it ignored them. {cause}",
                human(ctx.config.timeout)
            )),
            (0, _, Some(end)) => no_line(ctx, end, sent),
            (n, _, _) => Outcome::Fail(format!(
                "{sent}; expected three times, got {}{}. {cause}",
                lines_word(n),
                if n == 0 {
                    String::new()
                } else {
                    format!(": {}", show_lines(&lines))
                }
            )),
        })
    })
    .await
}

async fn unknown_command(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        send(ctx, &mut a, b"HELLO\r\n").await?;
        let reply = match a.line(ctx.deadline()).await {
            Got::Line(line) => line,
            Got::Timeout => {
                return Ok(Outcome::Timeout(format!(
                    "sent \"HELLO\\r\\n\" and got no reply within {}: answer an unknown command \
                     with an error line, e.g. \"ERR unknown command\\r\\n\"",
                    human(ctx.config.timeout)
                )));
            }
            Got::Closed => {
                return Ok(Outcome::Fail(
                    "sent \"HELLO\\r\\n\" and the server closed the connection: answer an \
                     unknown command with an error line and keep the session going"
                        .into(),
                ));
            }
            other => return Ok(no_line(ctx, other, "sent \"HELLO\\r\\n\"")),
        };
        if is_time(&reply) {
            return Ok(Outcome::Fail(format!(
                "sent \"HELLO\\r\\n\", got \"{}\": a time for an unknown command. Check that the \
                 line is TIME before answering with the time",
                show(&reply)
            )));
        }
        let unended = LineEnd::split(&reply).1 == LineEnd::Missing;
        send(ctx, &mut a, b"TIME\r\n").await?;
        let deadline = ctx.deadline();
        loop {
            match a.line(deadline).await {
                Got::Line(line) if is_time(&line) && unended => {
                    return Ok(Outcome::Fail(format!(
                        "sent \"HELLO\\r\\n\" and got \"{}\" with no line end: a client that \
                         reads lines waits for the rest, and the next reply runs into it \
                         (\"{}{}\"). End the error line with \"\\r\\n\"",
                        show(&reply),
                        show(&reply),
                        show(&line)
                    )));
                }
                Got::Line(line) if is_time(&line) => {
                    return Ok(Outcome::Pass(format!(
                        "\"HELLO\" got \"{}\", then TIME was answered",
                        show(&reply)
                    )));
                }
                Got::Line(_) => {}
                end => {
                    let outcome = no_line(ctx, end, "then sent \"TIME\\r\\n\"");
                    return Ok(match outcome {
                        Outcome::Timeout(d) => Outcome::Timeout(format!(
                            "\"HELLO\" got \"{}\"; {d}: after an unknown command the session must \
                             go on",
                            show(&reply)
                        )),
                        Outcome::Fail(d) => Outcome::Fail(format!(
                            "\"HELLO\" got \"{}\"; {d}: after an unknown command the session must \
                             go on",
                            show(&reply)
                        )),
                        other => other,
                    });
                }
            }
        }
    })
    .await
}

async fn lf_only(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        send(ctx, &mut a, b"TIME\n").await?;
        let fix = "nc and many scripts end lines with LF alone: accept \"TIME\\n\" too (cut lines \
            at LF and drop a CR before it, or line.strip())";
        Ok(match a.line(ctx.deadline()).await {
            Got::Line(line) if is_time(&line) => Outcome::Pass("\"TIME\\n\" was answered".into()),
            Got::Line(line) => Outcome::Fail(format!(
                "sent \"TIME\\n\", got \"{}\", which is not a time. {fix}",
                show(&line)
            )),
            Got::Timeout => Outcome::Timeout(format!(
                "sent \"TIME\\n\" and got no reply within {}: the server waits for a CR that does \
                 not come. {fix}",
                human(ctx.config.timeout)
            )),
            end => no_line(ctx, end, &format!("sent \"TIME\\n\". {fix}; it")),
        })
    })
    .await
}

async fn bad_bytes(ctx: &Ctx, t: &Transcript) -> Outcome {
    judged(async {
        let mut a = ctx.connect("A", t).await?;
        send(ctx, &mut a, BAD_LINE).await?;
        let decode = "data.decode() raises UnicodeDecodeError on bytes that are not UTF-8. Decode \
            with errors=\"replace\" (or compare bytes) and answer such a line with an error";
        let crashed = format!(
            "sent \"{}\": your server ended the session: {decode}",
            show(BAD_LINE)
        );
        // Whatever the server says to the bad line, it may say within a moment.
        let (_, end) = a.lines(usize::MAX, SETTLE, SETTLE).await;
        match end {
            Some(Got::Closed) | Some(Got::Reset(_)) => return Ok(Outcome::Fail(crashed)),
            Some(Got::Flood) => return Ok(no_line(ctx, Got::Flood, "sent a bad line")),
            _ => {}
        }
        send(ctx, &mut a, b"TIME\r\n").await?;
        // The answer to the bad line may come late: lines that are not a time are passed over.
        let deadline = ctx.deadline();
        let mut others = Vec::new();
        loop {
            match a.line(deadline).await {
                Got::Line(line) if is_time(&line) => {
                    return Ok(Outcome::Pass(
                        "the session went on: TIME was answered".into(),
                    ));
                }
                Got::Line(line) => others.push(line),
                Got::Closed | Got::Reset(_) => return Ok(Outcome::Fail(crashed)),
                Got::Timeout if others.is_empty() => {
                    return Ok(Outcome::Timeout(format!(
                        "sent \"{}\", then \"TIME\\r\\n\": nothing came back within {}, and the \
                         connection stayed open. The client's thread probably died on \
                         UnicodeDecodeError, and the socket was never closed because the server \
                         still holds it (the_clients keeps every client). {decode}; close the \
                         connection in a finally: block",
                        show(BAD_LINE),
                        human(ctx.config.timeout)
                    )));
                }
                end => {
                    return Ok(no_line(
                        ctx,
                        end,
                        &format!(
                            "sent \"{}\", then \"TIME\\r\\n\" (got only {}); after a bad line the \
                             session must go on, and TIME",
                            show(BAD_LINE),
                            show_lines(&others)
                        ),
                    ));
                }
            }
        }
    })
    .await
}

/// How one of `many-clients`' clients fared.
enum Crowd {
    /// A time came back after this long.
    Answered(Duration),
    /// Connected, but no time came (this line instead, if any).
    Unanswered(Duration, Option<Vec<u8>>),
    /// Not connected within the window.
    NotConnected,
    /// Refused: the server no longer listens.
    Refused,
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

async fn many_clients(ctx: &Ctx, t: &Transcript) -> Outcome {
    let n = ctx.config.clients;
    let start = Instant::now();
    // A server that is slow to answer one client gets its round trip twice more.
    let window =
        MANY_CLIENTS_WAIT + ctx.observe(|o| o.rtts.first().copied()).unwrap_or_default() * 2;
    let deadline = start + window;
    t.note(
        "",
        format!("{n} clients connect at once, each sends \"TIME\\r\\n\""),
    );
    let mut tasks = tokio::task::JoinSet::new();
    let addr = ctx.addr();
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
                Err(ConnectError::Refused) => return Crowd::Refused,
                Err(_) => return Crowd::NotConnected,
            };
            if probe.send(b"TIME\r\n", deadline).await.is_err() {
                return Crowd::Unanswered(began.elapsed(), None);
            }
            // Lines before the time (a greeting) are passed over.
            let mut other = None;
            loop {
                match probe.line(deadline).await {
                    Got::Line(l) if is_time(&l) => {
                        let took = began.elapsed();
                        let _ = probe.send(b"QUIT\r\n", deadline).await;
                        return Crowd::Answered(took);
                    }
                    Got::Line(l) => other = Some(l),
                    _ => return Crowd::Unanswered(began.elapsed(), other),
                }
            }
        });
    }
    let (mut answered, mut connected, mut retried, mut refused) = (0, 0, 0, 0);
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
                    other.get_or_insert((line, 0)).1 += 1;
                }
                took
            }
            Ok(Crowd::Local(e)) => {
                local = Some(e);
                continue;
            }
            Ok(Crowd::Refused) => {
                refused += 1;
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
            "{answered} answered, {connected} connected, {retried} waited 1 s or more, {refused} \
             refused, in {took}"
        ),
    );
    if let Some(e) = local {
        return Outcome::Skip(SkipReason::LocalShortage(format!("{n} connections: {e}")));
    }
    if refused > 0 {
        ctx.observe(|o| {
            o.gone.get_or_insert(CaseId::ManyClients);
        });
        return Outcome::Skip(SkipReason::ServerGone(CaseId::ManyClients));
    }
    let unanswered = n - answered;
    let backlog = "the listen backlog is probably small (listen(1) or listen(5)): when the accept \
        queue is full, Linux drops new connection requests and clients retry after 1 s and 3 s. \
        Call listen(128) (or socket.SOMAXCONN)";
    if unanswered == 0 && retried == 0 {
        Outcome::Pass(format!("all {n} clients answered in {took}"))
    } else if unanswered == 0 {
        Outcome::Pass(format!(
            "all {n} clients answered in {took}, but {retried} waited 1 s or more: {backlog}"
        ))
    } else {
        let cause = match &other {
            Some((line, count)) => format!("{count} got \"{}\" instead of a time", show(line)),
            None if retried > 0 || connected < n => backlog.to_string(),
            None => "the server may serve one client at a time, or too slowly".to_string(),
        };
        Outcome::Fail(format!(
            "{answered} of {n} clients connecting at once were answered within {} ({connected} \
             connected, {retried} waited 1 s or more): {cause}",
            human(window)
        ))
    }
}

/// Whether `ip` is this machine: loopback, or an address a socket here can bind (binding a
/// foreign address fails with EADDRNOTAVAIL). Then checker and server read one clock in one zone.
fn is_this_machine(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// This machine's UTC offset now, in seconds.
fn local_zone() -> i32 {
    jiff::Zoned::now().offset().seconds()
}

async fn time_correct(ctx: &Ctx, t: &Transcript) -> Outcome {
    t.note(
        "A",
        "measuring the clock offset (jam offset's method, cut short)",
    );
    let mut client = match Client::connect_addr(ctx.addr(), ctx.config.timeout).await {
        Ok(c) => c,
        Err(ClientError::Refused(_)) => {
            ctx.observe(|o| {
                o.gone.get_or_insert(CaseId::TimeCorrect);
            });
            return Outcome::Skip(SkipReason::ServerGone(CaseId::TimeCorrect));
        }
        Err(e) => return Outcome::Fail(format!("cannot connect: {e}")),
    };
    let estimate = match estimate_offset(&mut client, OFFSET_ROUNDS).await {
        Ok(e) => e,
        Err(ClientError::Timeout { .. }) => {
            return Outcome::Timeout(format!(
                "a TIME got no reply within {} while measuring the offset, on one connection with \
                 a request every 20 ms",
                human(ctx.config.timeout)
            ));
        }
        Err(ClientError::InvalidReply(why)) if why.contains("contradict") => {
            return Outcome::Fail(
                "the reported time does not move on with the clock (replies a second apart \
                 contradict each other): read the clock for each request (datetime.now() where \
                 you answer TIME), not once per connection or when the server starts"
                    .into(),
            );
        }
        Err(e) => return Outcome::Fail(format!("cannot measure the offset: {e}")),
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
    ctx.observe(|o| o.zone_offset = Some(estimate.zone_offset));
    let local = local_zone();
    let same = is_this_machine(ctx.addr().ip());
    let finding = diagnose::judge_zone(estimate.zone_offset, local, same);
    let offset = format!("{:+.3} s ± {:.3} s", estimate.offset, estimate.uncertainty);
    let zone = zone_text(estimate.zone_offset);
    if let Some(cause) = finding.cause(local) {
        return Outcome::Fail(format!("{cause} (the seconds agree: offset {offset})"));
    }
    if estimate.offset.abs() <= ctx.config.max_offset {
        let note = match finding {
            ZoneFinding::Elsewhere(_) => {
                " (another machine: its zone may differ from this one's, so the zone is removed)"
            }
            _ => "",
        };
        return Outcome::Pass(format!(
            "offset {offset} (server minus this machine; the server reports {zone}){note}"
        ));
    }
    let side = if estimate.offset > 0.0 {
        "ahead of"
    } else {
        "behind"
    };
    Outcome::Fail(format!(
        "the server's clock is {:.1} s {side} this machine's ({offset}, more than the {} s allowed; \
         the server reports {zone}): is the server machine's clock synchronised (NTP), and does \
         the server report the time it reads, unchanged?",
        estimate.offset.abs(),
        ctx.config.max_offset
    ))
}

fn zone(obs: &Observations) -> Outcome {
    let Some(zone) = obs.zone_offset else {
        return Outcome::Skip(SkipReason::NotObserved(CaseId::TimeCorrect));
    };
    let local = local_zone();
    let note = if local == zone {
        "the same as this machine's local time".to_string()
    } else {
        format!("this machine's local time is {}", zone_text(local))
    };
    Outcome::Pass(format!("the server reports {}; {note}", zone_text(zone)))
}

fn date(obs: &Observations) -> Outcome {
    match obs.first.map(|r| r.date) {
        Some(Some(date)) => Outcome::Pass(format!(
            "the reply includes a date ({}: day {}, month {}, year {})",
            date.pattern(),
            date.day,
            date.month,
            date.year
        )),
        Some(None) => Outcome::Pass("no date in the reply".to_string()),
        None => Outcome::Skip(SkipReason::NotObserved(CaseId::TimeFormat)),
    }
}

fn latency(obs: &Observations) -> Outcome {
    let mut rtts = obs.rtts.clone();
    rtts.sort_unstable();
    match (rtts.get(rtts.len() / 2), rtts.last()) {
        (Some(median), Some(max)) => Outcome::Pass(format!(
            "median {}, slowest {} over {} replies",
            human(*median),
            human(*max),
            rtts.len()
        )),
        _ => Outcome::Skip(SkipReason::NotObserved(CaseId::Repeat)),
    }
}

fn after_quit(obs: &Observations) -> Outcome {
    match &obs.after_quit {
        Some(text) => Outcome::Pass(text.clone()),
        None => Outcome::Skip(SkipReason::NotObserved(CaseId::Quit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_glued_behind_an_unended_line_is_still_a_time() {
        assert!(is_time(b"JAM 13:26:23\r\n"));
        assert!(is_time(b"ERRORJAM 13:26:23\r\n"));
        assert!(is_time(b"ERRORERRORJAM 13:26:23\r\n"));
        assert!(!is_time(b"ERROR\r\n"));
        assert!(!is_time(b"JAM later\r\n"));
    }

    #[test]
    fn loopback_and_this_machines_addresses_are_this_machine() {
        assert!(is_this_machine("127.0.0.1".parse().expect("ip")));
        assert!(is_this_machine("::1".parse().expect("ip")));
        assert!(!is_this_machine("192.0.2.1".parse().expect("ip")));
    }
}
