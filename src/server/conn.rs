//! One connection from accept to close, driven by its event loop: a small state machine with one
//! close path and one deadline rule set.
//!
//! ```text
//!            accept
//!              │
//!   (--proxy-protocol) Header ──► Serving (jam) ──► Closing ──► closed
//!              │                                      ▲
//!              ├── RFC 868 / 867 answer ───────────────┤
//!              └── refusal (busy, per address) ────────┘
//! ```
//!
//! *Closing* is the one close path: send what is owed (within the write timeout), shut down the
//! sending side, then keep reading and discarding (at most the linger time and
//! [`LINGER_MAX_BYTES`]) so that late client bytes cannot turn the close into a reset that
//! destroys the last replies in flight.

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::{debug, debug_span, error, info, warn};

use super::admission::{self, ActiveSlot};
use super::deadlines::{COUNT_EVERY, Clocks, Rule, Stage, drain_end, header_limit};
use super::shared::{Shared, canonical};
use crate::config::LINGER_MAX_BYTES;
use crate::metrics::{Count, Refusal, RequestKind};
use crate::per_ip::PerIpGuard;
use crate::protocol::{COMMANDS, ErrorKind, ErrorReply};
use crate::proxy::{self, ProxyError};
use crate::responder::{CloseReason, Responder};
use crate::service::{self, Service};

/// Refusals that may linger at once; past that a refusal closes right after its error line.
pub(super) const MAX_LINGERING_REFUSALS: usize = 32;

/// What the event loop lends a connection while it handles an event.
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Arc<Shared>,
    /// The loop's read buffer.
    pub(super) input: &'a mut [u8],
    /// The loop's reply buffer (empty between uses).
    pub(super) output: &'a mut Vec<u8>,
    pub(super) now: Instant,
    /// The server is shutting down: answer what was sent, then close.
    pub(super) draining: bool,
    /// The event said the client closed its side: a short read no longer means the socket is
    /// drained (the end of file raises no further event), so reads go on to the end.
    pub(super) read_closed: bool,
    /// Reads this connection may still make in this turn of the loop.
    pub(super) reads_left: usize,
}

/// Reads one connection may make per turn of its loop (16 × 16 KiB): past that it waits until
/// the loop's other ready connections have had theirs, so a client that floods cannot starve
/// them (memcached's per-event request budget).
pub(super) const READS_PER_TURN: usize = 16;

/// What is logged and counted when a closing connection is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// A jam session: `connection closed` with its request count.
    Session { requests: u64, from_balancer: bool },
    /// An RFC 868 or 867 answer of `bytes` bytes; `sent` once it went out in full.
    Answer {
        service: Service,
        bytes: usize,
        sent: bool,
    },
    /// A refusal (counted when it was refused).
    Nothing,
}

/// Where a connection is in its life.
enum Phase {
    /// Waiting for the PROXY header (with `--proxy-protocol`); the bytes so far.
    Header(Vec<u8>),
    /// A jam session.
    Serving(Session),
    /// The one close path: owed output, then shut down, then linger.
    Closing(Closing),
}

/// A jam session's state between events.
struct Session {
    responder: Responder,
    /// Input read but not yet handled, because the output reached its cap.
    held: Vec<u8>,
    last_request: Instant,
    /// Since when reads have found the receive queue empty (`None` once bytes came after).
    quiet_since: Option<Instant>,
    line_started: Option<Instant>,
    /// Set when a request or event ends the session.
    ending: Option<CloseReason>,
    /// The client closed its side: no lingering needed.
    peer_closed: bool,
    received: u64,
    sent: u64,
    counted_at: Instant,
    /// Requests or bytes not yet handed to the metrics.
    uncounted: bool,
    /// A load balancer's own connection (a PROXY header without a client address, as health
    /// checks send): logged at debug level, since it comes every few hundred milliseconds.
    from_balancer: bool,
}

struct Closing {
    reason: CloseReason,
    report: Report,
    /// The sending side is shut down; now lingering until this instant.
    linger_until: Option<Instant>,
    discarded: usize,
    /// Lingering is allowed (refusals past the cap close at once).
    linger: bool,
    peer_closed: bool,
    /// Counts the refusal among those lingering, released on drop.
    _refusal: Option<RefusalSlot>,
}

/// One connection: its socket, who it is, and where it is in its life.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) id: u64,
    peer: SocketAddr,
    opened: Instant,
    service: Service,
    phase: Phase,
    /// Replies not yet accepted by the socket.
    out: Vec<u8>,
    /// When pending output last made progress (or became pending).
    write_progress: Instant,
    /// The deadline in the loop's heap for this connection, if any.
    pub(super) armed: Option<Instant>,
    /// The connection's place under the connection limit (refusals have none).
    _active: Option<ActiveSlot>,
    per_ip: Option<PerIpGuard>,
}

/// A lingering refusal's place under [`MAX_LINGERING_REFUSALS`].
struct RefusalSlot(Arc<Shared>);

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the loop should do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it; wait for its next event or deadline.
    Wait,
    /// It is finished: remove and drop it (closing the socket).
    Done,
    /// It used its reads for this turn with more waiting: handle it again after the others
    /// (no new edge-triggered event would come for what is already there).
    Yield,
}

impl Conn {
    /// A newly accepted connection that holds a slot under the connection limit.
    pub(super) fn accepted(
        stream: TcpStream,
        peer: SocketAddr,
        service: Service,
        slot: ActiveSlot,
        per_ip: Option<PerIpGuard>,
        ctx: &Ctx<'_>,
    ) -> Conn {
        let shared = ctx.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conn = Conn {
            stream,
            id,
            peer,
            opened: ctx.now,
            service,
            phase: Phase::Header(Vec::new()),
            out: Vec::new(),
            write_progress: ctx.now,
            armed: None,
            _active: Some(slot),
            per_ip,
        };
        if !shared.config.proxy_protocol {
            conn.start(None, false, Vec::new(), ctx);
        }
        conn
    }

    /// A connection turned away: `line` (if any) is sent, then it goes the close path.
    pub(super) fn refused(
        stream: TcpStream,
        peer: SocketAddr,
        line: Option<ErrorReply<'_>>,
        ctx: &Ctx<'_>,
    ) -> Conn {
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            id: 0,
            peer,
            opened: ctx.now,
            service: Service::Jam,
            phase: Phase::Header(Vec::new()),
            out: Vec::new(),
            write_progress: ctx.now,
            armed: None,
            _active: None,
            per_ip: None,
        };
        conn.refuse(line, ctx);
        conn
    }

    /// Turns this connection into a refusal: `line` (if any), then the close path, lingering
    /// only while few refusals do.
    fn refuse(&mut self, line: Option<ErrorReply<'_>>, ctx: &Ctx<'_>) {
        let shared = ctx.shared;
        let refusal = (shared.refusing.fetch_add(1, Ordering::AcqRel) < MAX_LINGERING_REFUSALS)
            .then(|| RefusalSlot(shared.clone()));
        if refusal.is_none() {
            shared.refusing.fetch_sub(1, Ordering::AcqRel);
        }
        self._active = None;
        if let Some(line) = &line {
            shared.metrics.add(Count::Error(line.kind()), 1);
        }
        self.out = line.map(|l| l.to_bytes()).unwrap_or_default();
        self.write_progress = ctx.now;
        self.phase = Phase::Closing(Closing {
            reason: CloseReason::Shutdown,
            report: Report::Nothing,
            linger_until: None,
            discarded: 0,
            linger: refusal.is_some(),
            peer_closed: false,
            _refusal: refusal,
        });
    }

    /// Starts serving once the client is known (after the PROXY header, if one is required).
    fn start(
        &mut self,
        via: Option<SocketAddr>,
        from_balancer: bool,
        initial: Vec<u8>,
        ctx: &Ctx<'_>,
    ) {
        let shared = ctx.shared;
        match self.service {
            Service::Jam => {
                let _ = self.stream.set_nodelay(true);
                match (via, from_balancer) {
                    (Some(via), _) => {
                        info!(conn = self.id, peer = %self.peer, %via, "connection opened")
                    }
                    (None, false) => info!(conn = self.id, peer = %self.peer, "connection opened"),
                    (None, true) => {
                        debug!(conn = self.id, peer = %self.peer, "balancer connection opened")
                    }
                }
                self.phase = Phase::Serving(Session {
                    responder: Responder::new(
                        shared.config.max_line,
                        debug_span!("conn", id = self.id, peer = %self.peer),
                    ),
                    received: initial.len() as u64,
                    held: initial,
                    last_request: self.opened,
                    quiet_since: Some(self.opened),
                    line_started: None,
                    ending: None,
                    peer_closed: false,
                    sent: 0,
                    counted_at: ctx.now,
                    uncounted: false,
                    from_balancer,
                });
            }
            Service::Time | Service::Daytime => {
                let _ = self.stream.set_nodelay(true);
                let now = shared.clock.now();
                self.out = match self.service {
                    Service::Time => service::rfc868_answer(now).to_vec(),
                    _ => service::daytime_answer(now, shared.clock.zone()).into_bytes(),
                };
                self.write_progress = ctx.now;
                self.phase = Phase::Closing(Closing {
                    reason: CloseReason::Answered,
                    report: Report::Answer {
                        service: self.service,
                        bytes: self.out.len(),
                        sent: false,
                    },
                    linger_until: None,
                    discarded: 0,
                    linger: true,
                    peer_closed: false,
                    _refusal: None,
                });
            }
        }
    }

    /// Handling this connection panicked (a bug): it is counted and logged before it is dropped.
    pub(super) fn crashed(&self, ctx: &Ctx<'_>) {
        // A refusal was never counted as accepted, so its close is not counted either.
        if self._active.is_some() {
            ctx.shared
                .metrics
                .add(Count::Closed(CloseReason::Internal), 1);
        }
        error!(
            conn = self.id,
            peer = %self.peer,
            reason = CloseReason::Internal.label(),
            "a bug ended this connection (please report it); the others are served on"
        );
    }

    /// Handles whatever the socket is ready for (or whatever may have become possible).
    pub(super) fn drive(&mut self, ctx: &mut Ctx<'_>) -> Next {
        loop {
            let step = match &mut self.phase {
                Phase::Header(_) => self.read_header(ctx),
                Phase::Serving(_) => self.serve(ctx),
                Phase::Closing(_) => return self.close_step(ctx),
            };
            match step {
                Step::Wait => return Next::Wait,
                Step::Yield => return Next::Yield,
                Step::Again => continue,
                Step::Close(reason) => self.begin_close(reason, ctx),
                Step::Drop => return Next::Done,
            }
        }
    }

    /// When things last happened, as the deadline rules read it.
    #[inline(always)]
    fn clocks(&self, draining: bool) -> Clocks {
        let stage = match &self.phase {
            Phase::Header(_) => Stage::Header,
            Phase::Serving(s) => Stage::Serving {
                last_request: s.last_request,
                line_started: s.line_started,
                uncounted_since: s.uncounted.then_some(s.counted_at),
                quiet_since: s.quiet_since.filter(|_| draining && s.ending.is_none()),
            },
            Phase::Closing(c) => Stage::Closing {
                linger_until: c.linger_until,
            },
        };
        Clocks {
            opened: self.opened,
            write_waiting: (!self.out.is_empty()).then_some(self.write_progress),
            stage,
        }
    }

    /// The earliest deadline this connection waits for (the rules are in `deadlines.rs`).
    #[inline(always)]
    pub(super) fn deadline(&self, ctx: &Ctx<'_>) -> Option<Instant> {
        self.clocks(ctx.draining).next(&ctx.shared.limits)
    }

    /// A deadline passed: act on every rule that is due, in the rules' order.
    pub(super) fn expire(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let limits = ctx.shared.limits;
        let now = ctx.now;
        let clocks = self.clocks(ctx.draining);
        for rule in clocks.due(&limits, now) {
            match rule {
                Rule::Write => {
                    self.begin_close(CloseReason::WriteTimeout, ctx);
                    return self.finish(CloseReason::WriteTimeout, ctx);
                }
                Rule::Header => {
                    self.header_refused(ProxyError::Timeout(header_limit(limits.line)), ctx);
                    return Next::Done;
                }
                Rule::Count => {
                    if let Phase::Serving(s) = &mut self.phase {
                        s.count(ctx);
                    }
                }
                Rule::Line | Rule::Idle => {
                    let Phase::Serving(s) = &mut self.phase else {
                        continue;
                    };
                    if s.ending.is_some() {
                        continue;
                    }
                    let (line, reason) = match rule {
                        Rule::Line => (
                            ErrorReply::LineTimeout {
                                held: s.responder.held(),
                                after: limits.line,
                            },
                            CloseReason::LineTimeout,
                        ),
                        _ => (ErrorReply::IdleTimeout, CloseReason::IdleTimeout),
                    };
                    if self.out.is_empty() {
                        self.write_progress = now;
                    }
                    ctx.shared.metrics.add(Count::Error(line.kind()), 1);
                    line.encode(&mut self.out);
                    s.ending = Some(reason);
                }
                // Judged by the read that `drive` makes below.
                Rule::Drain => {}
                Rule::Linger => {
                    if let Phase::Closing(c) = &self.phase {
                        let reason = c.reason;
                        return self.finish(reason, ctx);
                    }
                }
            }
        }
        self.drive(ctx)
    }

    /// The server began shutting down: a session answers what is there and closes; a connection
    /// still waiting for its PROXY header closes now.
    pub(super) fn begin_drain(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if let Phase::Header(_) = self.phase {
            ctx.shared
                .metrics
                .add(Count::Closed(CloseReason::Shutdown), 1);
            return Next::Done;
        }
        self.drive(ctx)
    }

    /// The grace period is over: the connection is dropped as it is.
    pub(super) fn abandon(&mut self, ctx: &mut Ctx<'_>) {
        let reason = match &self.phase {
            Phase::Serving(s) => s.ending.unwrap_or(CloseReason::Shutdown),
            Phase::Closing(c) => c.reason,
            Phase::Header(_) => {
                ctx.shared
                    .metrics
                    .add(Count::Closed(CloseReason::Shutdown), 1);
                return;
            }
        };
        self.begin_close(reason, ctx);
        let _ = self.finish(reason, ctx);
    }

    fn read_header(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let Phase::Header(buf) = &mut self.phase else {
            return Step::Wait;
        };
        let room = proxy::MAX_HEADER - buf.len();
        let read = (&self.stream).read(&mut ctx.input[..room.max(1)]);
        let error = match read {
            Ok(0) => ProxyError::Closed,
            Ok(n) => {
                buf.extend_from_slice(&ctx.input[..n]);
                match proxy::parse(buf) {
                    Ok(None) => return Step::Again,
                    Ok(Some(header)) => {
                        let rest = buf.split_off(header.len);
                        return self.header_done(header.client, rest, ctx);
                    }
                    Err(e) => e,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Again,
            Err(e) => ProxyError::Io(e.to_string()),
        };
        self.header_refused(error, ctx);
        Step::Drop
    }

    fn header_done(
        &mut self,
        client: Option<SocketAddr>,
        rest: Vec<u8>,
        ctx: &mut Ctx<'_>,
    ) -> Step {
        let Some(client) = client else {
            self.start(None, true, rest, ctx);
            return Step::Again;
        };
        let via = self.peer;
        self.peer = canonical(client);
        // The client behind the balancer counts under the per-address limit, not the balancer.
        match admission::after_header(ctx.shared, self.peer, self.service) {
            Ok(guard) => {
                self.per_ip = guard;
                self.start(Some(via), false, rest, ctx);
                Step::Again
            }
            Err(line) => {
                self.refuse(line, ctx);
                Step::Again
            }
        }
    }

    fn header_refused(&mut self, error: ProxyError, ctx: &Ctx<'_>) {
        let shared = ctx.shared;
        shared.metrics.add_all(&[
            (Count::Refused(Refusal::ProxyHeader), 1),
            (Count::Closed(CloseReason::ProxyHeader), 1),
        ]);
        debug!(conn = self.id, peer = %self.peer, error = %error, "PROXY header refused");
        if let Ok(mut limit) = shared.proxy_warning.lock()
            && let Some(suppressed) = limit.allow(ctx.now)
        {
            warn!(
                peer = %self.peer,
                error = %error,
                suppressed,
                "closing a connection without a valid PROXY protocol header (--proxy-protocol is on: only the load balancer should connect)"
            );
        }
    }

    /// Serves a jam session until it must wait or close.
    fn serve(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let Phase::Serving(s) = &mut self.phase else {
            return Step::Wait;
        };
        let config = &ctx.shared.config;
        if let Some(reason) = s.ending {
            return Step::Close(reason);
        }
        if !self.out.is_empty() {
            match flush(&self.stream, &mut self.out) {
                Ok(0) => {}
                Ok(n) => {
                    s.sent += n as u64;
                    self.write_progress = ctx.now;
                }
                Err(e) => return Step::Close(CloseReason::from_error(&e)),
            }
        }
        if self.out.len() >= config.max_output {
            // Wait until the client reads: TCP pushes back meanwhile.
            return Step::Wait;
        }
        if !s.held.is_empty() {
            let held = std::mem::take(&mut s.held);
            if self.out.is_empty() {
                self.write_progress = ctx.now;
            }
            let used = s.process(&held, &mut self.out, ctx.shared, ctx.now);
            s.hold(&held[used..]);
            return Step::Again;
        }
        if ctx.reads_left == 0 {
            return Step::Yield;
        }
        ctx.reads_left -= 1;
        let read = ReadDrained::read(&self.stream, ctx.input);
        let (n, drained) = match read {
            Ok(ReadDrained::Data { n, drained }) => (n, drained),
            Ok(ReadDrained::Empty) => {
                let since = *s.quiet_since.get_or_insert(ctx.now);
                if ctx.draining && ctx.now >= drain_end(since) {
                    s.ending = Some(CloseReason::Shutdown);
                    return Step::Again;
                }
                return Step::Wait;
            }
            Ok(ReadDrained::Eof) => {
                s.peer_closed = true;
                if self.out.is_empty() {
                    self.write_progress = ctx.now;
                }
                s.responder.finish(&mut self.out);
                s.ending = Some(CloseReason::ClientClosed);
                return Step::Again;
            }
            Err(e) => return Step::Close(CloseReason::from_error(&e)),
        };
        s.received += n as u64;
        s.quiet_since = drained.then_some(ctx.now);
        s.uncounted = true;
        let input = &ctx.input[..n];
        if self.out.is_empty() {
            // The usual case: answer into the loop's buffer and write it at once.
            ctx.output.clear();
            let used = s.process(input, ctx.output, ctx.shared, ctx.now);
            s.hold(&input[used..]);
            match self.stream.write(ctx.output) {
                Ok(w) => {
                    s.sent += w as u64;
                    if w < ctx.output.len() {
                        self.out.extend_from_slice(&ctx.output[w..]);
                        self.write_progress = ctx.now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.out.extend_from_slice(ctx.output);
                    self.write_progress = ctx.now;
                }
                Err(e) => return Step::Close(CloseReason::from_error(&e)),
            }
        } else {
            let used = s.process(input, &mut self.out, ctx.shared, ctx.now);
            s.hold(&input[used..]);
        }
        if ctx.now.duration_since(s.counted_at) >= COUNT_EVERY {
            s.count(ctx);
        }
        if drained
            && !ctx.read_closed
            && s.ending.is_none()
            && s.held.is_empty()
            && self.out.is_empty()
        {
            // Draining, the session ends at a read that finds the queue still empty after
            // the drain time (`deadlines::drain_end`; the deadline brings it).
            return Step::Wait;
        }
        Step::Again
    }

    /// Enters the close path with `reason`.
    fn begin_close(&mut self, reason: CloseReason, ctx: &Ctx<'_>) {
        let (report, peer_closed) = match &mut self.phase {
            Phase::Serving(s) => {
                s.count(ctx);
                let report = Report::Session {
                    requests: s.responder.requests(),
                    from_balancer: s.from_balancer,
                };
                (report, s.peer_closed)
            }
            Phase::Closing(_) => return,
            Phase::Header(_) => (Report::Nothing, false),
        };
        if !reason.closes_gracefully() {
            self.out = Vec::new();
        }
        self.phase = Phase::Closing(Closing {
            reason,
            report,
            linger_until: None,
            discarded: 0,
            linger: reason.closes_gracefully(),
            peer_closed,
            _refusal: None,
        });
    }

    /// One step of the close path.
    fn close_step(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let Phase::Closing(c) = &mut self.phase else {
            return Next::Wait;
        };
        if c.linger_until.is_none() {
            if !c.reason.closes_gracefully() {
                let reason = c.reason;
                return self.finish(reason, ctx);
            }
            match flush(&self.stream, &mut self.out) {
                Ok(n) if n > 0 => self.write_progress = ctx.now,
                Ok(_) => {}
                Err(e) => return self.finish(CloseReason::from_error(&e), ctx),
            }
            if !self.out.is_empty() {
                return Next::Wait;
            }
            if let Report::Answer {
                service,
                bytes,
                sent,
            } = &mut c.report
            {
                *sent = true;
                ctx.shared.metrics.add_all(&[
                    (Count::Closed(CloseReason::Answered), 1),
                    (Count::SentBytes, *bytes as u64),
                ]);
                info!(conn = self.id, peer = %self.peer, service = service.label(), "time sent");
            }
            let shut = self.stream.shutdown(Shutdown::Write).is_ok();
            if !shut || c.peer_closed || !c.linger || ctx.shared.config.linger.is_zero() {
                let reason = c.reason;
                return self.finish(reason, ctx);
            }
            c.linger_until = Some(ctx.now + ctx.shared.config.linger);
        }
        // Lingering: read and discard until the client closes.
        let reason = c.reason;
        loop {
            match (&self.stream).read(ctx.input) {
                Ok(0) => return self.finish(reason, ctx),
                Ok(n) => {
                    c.discarded += n;
                    if c.discarded >= LINGER_MAX_BYTES {
                        return self.finish(reason, ctx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.finish(reason, ctx),
            }
        }
    }

    /// The connection is done, ending for `reason`: what it was is counted and logged once.
    fn finish(&mut self, reason: CloseReason, ctx: &Ctx<'_>) -> Next {
        let Phase::Closing(c) = &self.phase else {
            return Next::Done;
        };
        match c.report {
            Report::Session {
                requests,
                from_balancer,
            } => self.log_closed(requests, from_balancer, reason, ctx),
            Report::Answer {
                service,
                sent: false,
                ..
            } => {
                let reason = match reason {
                    // Unsent without an error of its own: the shutdown grace period ran out.
                    CloseReason::Answered => CloseReason::Shutdown,
                    reason => reason,
                };
                ctx.shared.metrics.add(Count::Closed(reason), 1);
                debug!(conn = self.id, peer = %self.peer, service = service.label(), reason = reason.label(), "answer not sent");
            }
            Report::Answer { .. } | Report::Nothing => {}
        }
        Next::Done
    }

    fn log_closed(&self, requests: u64, from_balancer: bool, reason: CloseReason, ctx: &Ctx<'_>) {
        let shared = ctx.shared;
        shared.metrics.add(Count::Closed(reason), 1);
        let duration_ms = ctx.now.duration_since(self.opened).as_millis() as u64;
        if from_balancer {
            debug!(conn = self.id, peer = %self.peer, requests, duration_ms, reason = reason.label(), "balancer connection closed");
            return;
        }
        info!(
            conn = self.id,
            peer = %self.peer,
            requests,
            duration_ms,
            reason = reason.label(),
            "connection closed"
        );
    }
}

/// What one step of a connection's handling decided.
enum Step {
    /// Wait for the next event or deadline.
    Wait,
    /// This turn's reads are used up, with more to read.
    Yield,
    /// Go on: something changed that may allow more.
    Again,
    /// Start the close path for this reason.
    Close(CloseReason),
    /// Drop the connection now (nothing owed).
    Drop,
}

impl Session {
    /// Answers the requests in `input` into `out` (up to the output cap) and updates the
    /// session's deadlines. Returns how many bytes were used.
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>, shared: &Shared, now: Instant) -> usize {
        let batch = self
            .responder
            .respond(input, out, &shared.clock, shared.config.max_output);
        if batch.end.is_some() {
            self.ending = batch.end;
        }
        // Idle means no complete request: a blank line ends a line but keeps no one's slot.
        if batch.requested {
            self.last_request = now;
        }
        if batch.completed_line {
            self.line_started = None;
        }
        if self.line_started.is_none() && self.responder.in_line() {
            self.line_started = Some(now);
        }
        batch.used
    }

    fn hold(&mut self, rest: &[u8]) {
        if self.ending.is_none() && !rest.is_empty() {
            self.held.extend_from_slice(rest);
        }
    }

    /// Hands what was answered and the bytes moved since the last call to the server's metrics.
    fn count(&mut self, ctx: &Ctx<'_>) {
        self.counted_at = ctx.now;
        self.uncounted = false;
        let t = self.responder.take_tally();
        ctx.shared.metrics.add_all(&COMMANDS.map(|spec| {
            let n = t.commands[spec.command as usize];
            (Count::Request(RequestKind::Command(spec.command)), n.into())
        }));
        ctx.shared.metrics.add_all(&[
            (Count::Request(RequestKind::Other), t.other.into()),
            (Count::ReceivedBytes, std::mem::take(&mut self.received)),
            (Count::SentBytes, std::mem::take(&mut self.sent)),
        ]);
        ctx.shared.metrics.add_all(
            &ErrorKind::ALL.map(|kind| (Count::Error(kind), t.errors[kind as usize].into())),
        );
    }
}

/// Writes as much of `out` as the socket takes; returns how many bytes went.
fn flush(stream: &TcpStream, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0;
    while !out.is_empty() {
        match (&*stream).write(out) {
            Ok(n) => {
                out.drain(..n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        *out = Vec::new();
    }
    Ok(total)
}

/// One read from an edge-triggered socket, telling whether it drained the receive queue.
///
/// It relies on what epoll(7) documents for edge-triggered mode: an event is reported when new
/// data arrives. A read that returns fewer bytes than asked for emptied the queue at that
/// instant, so data arriving later raises a new event, and the loop may wait instead of paying
/// one more `read()` that would fail with EAGAIN (one system call per request at depth 1).
enum ReadDrained {
    /// `n` bytes; `drained` when the read was short.
    Data { n: usize, drained: bool },
    /// Nothing to read now (EAGAIN).
    Empty,
    /// The client closed its side.
    Eof,
}

impl ReadDrained {
    fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<ReadDrained> {
        loop {
            return match (&*stream).read(buf) {
                Ok(0) => Ok(ReadDrained::Eof),
                Ok(n) => Ok(ReadDrained::Data {
                    n,
                    drained: n < buf.len(),
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadDrained::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_is_small() {
        // What an idle connection costs in its loop's slab (see docs/benchmarks.md, memory).
        let size = std::mem::size_of::<super::Conn>();
        println!("Conn: {size} bytes");
        assert!(size <= 448, "{size}");
    }
}
