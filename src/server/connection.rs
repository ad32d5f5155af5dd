//! One connection from accept to close as a pure state machine (sans I/O): the event loop tells
//! it what happened (bytes received, the socket became writable, a deadline passed, the server
//! began to drain) at an explicit [`Tick`], and asks it what to do next ([`Connection::poll`]:
//! write these bytes, read, shut down writing, wait, or close). It owns no socket and reads no
//! clock of its own, so every rule is tested here by feeding events at chosen instants; the
//! loop's adapter (`conn.rs`) performs the actions on a real socket.
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
//!
//! Counting into the metrics, admission behind a load balancer and logging happen here too: they
//! touch only memory (the shared counters and tables), never a socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{debug, debug_span, error, info, warn};

use super::admission::{self, ActiveSlot};
use super::deadlines::{Clocks, Rule, Stage, Tick, drain_end, header_limit};
use super::shared::{Shared, canonical};
use crate::clock::TimeOfDaySource;
use crate::config::LINGER_MAX_BYTES;
use crate::metrics::{Count, Refusal, RequestKind};
use crate::per_ip::PerIpGuard;
use crate::protocol::{COMMANDS, ErrorKind, ErrorReply};
use crate::proxy::{self, ProxyError};
use crate::responder::{CloseReason, Responder};
use crate::service::{self, Service};

/// Refusals that may linger at once; past that a refusal closes right after its error line.
pub(super) const MAX_LINGERING_REFUSALS: usize = 32;

/// What the connection asks its event loop to do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action<'a> {
    /// Write these bytes; report with [`Connection::wrote`], [`Connection::write_blocked`] or
    /// [`Connection::failed`].
    Write(&'a [u8]),
    /// Read at most this many bytes; report with [`Connection::received`],
    /// [`Connection::read_empty`], [`Connection::eof`] or [`Connection::failed`].
    Read(usize),
    /// Shut down the sending side; report with [`Connection::shut`].
    ShutdownWrite,
    /// Nothing to do until the socket is ready again or [`Connection::deadline`] passes.
    Wait,
    /// The connection is finished (counted and logged): close the socket.
    Close,
}

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

/// Where a connection is in its life. An explicit tag byte: every event matches on the phase,
/// and a tag is one compare where a niche in `Session` would be several.
#[repr(u8)]
enum Phase {
    /// Waiting for the PROXY header (with `--proxy-protocol`); the bytes so far.
    Header(Vec<u8>),
    /// A jam session.
    Serving(Session),
    /// The one close path: owed output, then shut down, then linger.
    Closing(Closing),
    /// Counted and logged: only the socket is left to close.
    Done,
}

/// A jam session's state between events.
struct Session {
    responder: Responder,
    /// Input received but not yet handled, because the output reached its cap.
    held: Vec<u8>,
    last_request: Tick,
    /// Since when reads have found the receive queue empty (`None` once bytes came after).
    quiet_since: Option<Tick>,
    line_started: Option<Tick>,
    /// Since when requests or bytes wait to be handed to the metrics.
    uncounted_since: Option<Tick>,
    /// Set when a request or event ends the session.
    ending: Option<CloseReason>,
    /// The client closed its side: no lingering needed.
    peer_closed: bool,
    received: u64,
    sent: u64,
    /// A load balancer's own connection (a PROXY header without a client address, as health
    /// checks send): logged at debug level, since it comes every few hundred milliseconds.
    from_balancer: bool,
}

struct Closing {
    reason: CloseReason,
    report: Report,
    /// The shutdown of the sending side was asked for.
    shutting: bool,
    /// The sending side is shut down; now lingering until this instant.
    linger_until: Option<Tick>,
    discarded: usize,
    /// Bytes of a session's replies sent on the close path (counted when it is done).
    sent: u64,
    /// Lingering is allowed (refusals past the cap close at once).
    linger: bool,
    peer_closed: bool,
    /// Counts the refusal among those lingering, released on drop.
    _refusal: Option<RefusalSlot>,
}

/// One connection: who it is, where it is in its life, and what it owes.
pub(super) struct Connection {
    id: u64,
    peer: SocketAddr,
    opened: Tick,
    service: Service,
    phase: Phase,
    /// Replies not yet taken by the socket. While the loop handles the connection, this is the
    /// loop's own buffer, lent ([`Connection::lend_output`]): the usual reply is built and
    /// written without an allocation of the connection's own, and only what the socket did not
    /// take is kept, in a buffer of exactly its size, when the buffer goes back. A connection
    /// with nothing owed holds no buffer (what an idle connection costs).
    out: Vec<u8>,
    /// `out` is the loop's buffer.
    out_lent: bool,
    /// When waiting output last made progress (or began to wait).
    write_since: Tick,
    /// A read may find bytes: set by a readiness event, cleared by a read that found the queue
    /// empty (the loop's sockets are edge-triggered: new bytes raise a new event).
    readable: bool,
    /// A write may be taken: cleared when the socket's send buffer is full until it is writable.
    writable: bool,
    /// The server is shutting down: answer what was sent, then close.
    draining: bool,
    /// The connection's place under the connection limit (refusals have none).
    active: Option<ActiveSlot>,
    per_ip: Option<PerIpGuard>,
}

/// A lingering refusal's place under [`MAX_LINGERING_REFUSALS`].
struct RefusalSlot(Arc<Shared>);

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connection {
    /// A newly accepted connection that holds a slot under the connection limit.
    pub(super) fn accepted(
        shared: &Arc<Shared>,
        peer: SocketAddr,
        service: Service,
        slot: ActiveSlot,
        per_ip: Option<PerIpGuard>,
        now: Tick,
    ) -> Connection {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conn = Connection::new(id, peer, service, now);
        conn.active = Some(slot);
        conn.per_ip = per_ip;
        if !shared.config.proxy_protocol {
            conn.start(None, false, Vec::new(), shared, now);
        }
        conn
    }

    /// A connection turned away: `line` (if any) is sent, then it goes the close path.
    pub(super) fn refused(
        shared: &Arc<Shared>,
        peer: SocketAddr,
        line: Option<ErrorReply<'_>>,
        now: Tick,
    ) -> Connection {
        let mut conn = Connection::new(0, peer, Service::Jam, now);
        conn.refuse(line, shared, now);
        conn
    }

    fn new(id: u64, peer: SocketAddr, service: Service, now: Tick) -> Connection {
        Connection {
            id,
            peer,
            opened: now,
            service,
            phase: Phase::Header(Vec::new()),
            out: Vec::new(),
            out_lent: false,
            write_since: now,
            // A new socket may already hold bytes that raised their event before it was watched.
            readable: true,
            writable: true,
            draining: false,
            active: None,
            per_ip: None,
        }
    }

    /// The connection's number in the logs (0 for a refusal).
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Turns this connection into a refusal: `line` (if any), then the close path, lingering
    /// only while few refusals do.
    fn refuse(&mut self, line: Option<ErrorReply<'_>>, shared: &Arc<Shared>, now: Tick) {
        let refusal = (shared.refusing.fetch_add(1, Ordering::AcqRel) < MAX_LINGERING_REFUSALS)
            .then(|| RefusalSlot(shared.clone()));
        if refusal.is_none() {
            shared.refusing.fetch_sub(1, Ordering::AcqRel);
        }
        self.active = None;
        if let Some(line) = &line {
            shared.metrics.add(Count::Error(line.kind()), 1);
        }
        // Appended, not assigned: `out` may be the loop's lent buffer.
        self.out.clear();
        if let Some(line) = line {
            line.encode(&mut self.out);
        }
        self.write_since = now;
        self.phase = Phase::Closing(Closing {
            reason: CloseReason::Shutdown,
            report: Report::Nothing,
            shutting: false,
            linger_until: None,
            discarded: 0,
            sent: 0,
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
        shared: &Arc<Shared>,
        now: Tick,
    ) {
        match self.service {
            Service::Jam => {
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
                    uncounted_since: None,
                    ending: None,
                    peer_closed: false,
                    sent: 0,
                    from_balancer,
                });
            }
            Service::Time | Service::Daytime => {
                let time = shared.clock.now();
                match self.service {
                    Service::Time => self.out.extend_from_slice(&service::rfc868_answer(time)),
                    _ => self.out.extend_from_slice(
                        service::daytime_answer(time, shared.clock.zone()).as_bytes(),
                    ),
                }
                self.write_since = now;
                self.phase = Phase::Closing(Closing {
                    reason: CloseReason::Answered,
                    report: Report::Answer {
                        service: self.service,
                        bytes: self.out.len(),
                        sent: false,
                    },
                    shutting: false,
                    linger_until: None,
                    discarded: 0,
                    sent: 0,
                    linger: true,
                    peer_closed: false,
                    _refusal: None,
                });
            }
        }
    }

    /// What to do next. Called again after each action is reported, until it says wait or close.
    pub(super) fn poll(
        &mut self,
        shared: &Arc<Shared>,
        now: Tick,
        time: &impl TimeOfDaySource,
    ) -> Action<'_> {
        loop {
            match &mut self.phase {
                Phase::Header(buf) => {
                    if !self.readable {
                        return Action::Wait;
                    }
                    return Action::Read((proxy::MAX_HEADER - buf.len()).max(1));
                }
                Phase::Serving(s) => {
                    // Replies go out before an ending is acted on, so the session counts them.
                    if !self.out.is_empty() && self.writable {
                        return Action::Write(&self.out);
                    }
                    if let Some(reason) = s.ending {
                        self.begin_close(reason, shared);
                        continue;
                    }
                    if self.out.len() >= shared.config.max_output {
                        // Wait until the client reads: TCP pushes back meanwhile.
                        return Action::Wait;
                    }
                    if !s.held.is_empty() {
                        let held = std::mem::take(&mut s.held);
                        if self.out.is_empty() {
                            self.write_since = now;
                        }
                        let used = s.process(&held, &mut self.out, shared, now, time);
                        s.hold(&held[used..]);
                        continue;
                    }
                    if !self.readable {
                        return Action::Wait;
                    }
                    return Action::Read(usize::MAX);
                }
                Phase::Closing(c) => {
                    if c.linger_until.is_some() {
                        // Lingering: read and discard until the client closes.
                        return if self.readable {
                            Action::Read(usize::MAX)
                        } else {
                            Action::Wait
                        };
                    }
                    if !c.reason.closes_gracefully() {
                        let reason = c.reason;
                        self.finish(reason, shared, now);
                        continue;
                    }
                    if !self.out.is_empty() {
                        return if self.writable {
                            Action::Write(&self.out)
                        } else {
                            Action::Wait
                        };
                    }
                    if c.shutting {
                        return Action::Wait;
                    }
                    if let Report::Answer {
                        service,
                        bytes,
                        sent,
                    } = &mut c.report
                    {
                        *sent = true;
                        shared.metrics.add_all(&[
                            (Count::Closed(CloseReason::Answered), 1),
                            (Count::SentBytes, *bytes as u64),
                        ]);
                        info!(conn = self.id, peer = %self.peer, service = service.label(), "time sent");
                    }
                    c.shutting = true;
                    return Action::ShutdownWrite;
                }
                Phase::Done => return Action::Close,
            }
        }
    }

    /// Lends the loop's reply buffer (empty) for one turn, unless output is already waiting.
    #[inline(always)]
    pub(super) fn lend_output(&mut self, buffer: &mut Vec<u8>) {
        if self.out.is_empty() && !self.out_lent {
            std::mem::swap(&mut self.out, buffer);
            self.out_lent = true;
        }
    }

    /// Gives the lent buffer back, empty; what it held that the socket did not take stays, in
    /// a buffer of the connection's own.
    #[inline(always)]
    pub(super) fn return_output(&mut self, buffer: &mut Vec<u8>) {
        if !self.out_lent {
            return;
        }
        self.out_lent = false;
        std::mem::swap(&mut self.out, buffer);
        if !buffer.is_empty() {
            self.out.extend_from_slice(buffer);
            buffer.clear();
        }
    }

    /// The socket may be readable (a readiness event, or the client closed its side).
    pub(super) fn readable(&mut self) {
        self.readable = true;
    }

    /// The socket may take writes again.
    pub(super) fn writable(&mut self) {
        self.writable = true;
    }

    /// Bytes were read; `drained` when the read emptied the receive queue (no further read
    /// until the next readiness event).
    pub(super) fn received(
        &mut self,
        bytes: &[u8],
        drained: bool,
        shared: &Arc<Shared>,
        now: Tick,
        time: &impl TimeOfDaySource,
    ) {
        self.readable = !drained;
        match &mut self.phase {
            Phase::Header(buf) => {
                buf.extend_from_slice(bytes);
                match proxy::parse(buf) {
                    Ok(None) => {}
                    Ok(Some(header)) => {
                        let rest = buf.split_off(header.len);
                        self.header_done(header.client, rest, shared, now);
                    }
                    Err(e) => self.header_refused(e, shared, now),
                }
            }
            Phase::Serving(s) => {
                s.received += bytes.len() as u64;
                s.quiet_since = drained.then_some(now);
                if self.out.is_empty() {
                    self.write_since = now;
                }
                let used = s.process(bytes, &mut self.out, shared, now, time);
                s.hold(&bytes[used..]);
            }
            Phase::Closing(c) => {
                c.discarded += bytes.len();
                if c.discarded >= LINGER_MAX_BYTES {
                    let reason = c.reason;
                    self.finish(reason, shared, now);
                }
            }
            Phase::Done => {}
        }
    }

    /// A read found nothing to read.
    pub(super) fn read_empty(&mut self, now: Tick) {
        self.readable = false;
        if let Phase::Serving(s) = &mut self.phase {
            let since = *s.quiet_since.get_or_insert(now);
            if self.draining && now >= drain_end(since) {
                s.ending = Some(CloseReason::Shutdown);
            }
        }
    }

    /// The client closed its sending side.
    pub(super) fn eof(&mut self, shared: &Arc<Shared>, now: Tick) {
        match &mut self.phase {
            Phase::Header(_) => self.header_refused(ProxyError::Closed, shared, now),
            Phase::Serving(s) => {
                s.peer_closed = true;
                if self.out.is_empty() {
                    self.write_since = now;
                }
                s.responder.finish(&mut self.out);
                s.ending = Some(CloseReason::ClientClosed);
            }
            Phase::Closing(c) => {
                let reason = c.reason;
                self.finish(reason, shared, now);
            }
            Phase::Done => {}
        }
    }

    /// The socket took `n` of the bytes [`Action::Write`] offered.
    pub(super) fn wrote(&mut self, n: usize, now: Tick) {
        if n == 0 {
            self.writable = false;
            return;
        }
        if n == self.out.len() {
            if self.out_lent {
                self.out.clear();
            } else {
                self.out = Vec::new();
            }
        } else {
            self.out.drain(..n);
        }
        self.write_since = now;
        match &mut self.phase {
            Phase::Serving(s) => s.sent += n as u64,
            Phase::Closing(c) => c.sent += n as u64,
            Phase::Header(_) | Phase::Done => {}
        }
    }

    /// The socket's send buffer is full: wait until it is writable.
    pub(super) fn write_blocked(&mut self) {
        self.writable = false;
    }

    /// A read, write or shutdown failed with `e`: the connection ends for that reason.
    pub(super) fn failed(&mut self, e: &io::Error, shared: &Arc<Shared>, now: Tick) {
        match &mut self.phase {
            Phase::Header(_) => self.header_refused(ProxyError::Io(e.to_string()), shared, now),
            Phase::Serving(_) => self.begin_close(CloseReason::from_error(e), shared),
            Phase::Closing(c) => {
                // Lingering, the session's own reason stands; a failed send is the reason.
                let reason = match c.linger_until {
                    Some(_) => c.reason,
                    None => CloseReason::from_error(e),
                };
                self.finish(reason, shared, now);
            }
            Phase::Done => {}
        }
    }

    /// The sending side was shut down (`ok`), or could not be: linger, or be done.
    pub(super) fn shut(&mut self, ok: bool, shared: &Arc<Shared>, now: Tick) {
        let Phase::Closing(c) = &mut self.phase else {
            return;
        };
        let linger = shared.config.linger;
        if !ok || c.peer_closed || !c.linger || linger.is_zero() {
            let reason = c.reason;
            self.finish(reason, shared, now);
            return;
        }
        c.linger_until = Some(now + linger);
    }

    /// When things last happened, as the deadline rules read them.
    #[inline(always)]
    fn clocks(&self) -> Clocks {
        let stage = match &self.phase {
            Phase::Header(_) => Stage::Header,
            Phase::Serving(s) => Stage::Serving {
                last_request: s.last_request,
                line_started: s.line_started,
                uncounted_since: s.uncounted_since,
                quiet_since: s
                    .quiet_since
                    .filter(|_| self.draining && s.ending.is_none()),
            },
            Phase::Closing(c) => Stage::Closing {
                linger_until: c.linger_until,
            },
            Phase::Done => Stage::Closing { linger_until: None },
        };
        Clocks {
            opened: self.opened,
            write_waiting: (!self.out.is_empty()).then_some(self.write_since),
            stage,
        }
    }

    /// The earliest deadline this connection waits for (the rules are in `deadlines.rs`).
    #[inline(always)]
    pub(super) fn deadline(&self, shared: &Arc<Shared>) -> Option<Tick> {
        self.clocks().next(&shared.limits)
    }

    /// A deadline passed: act on every rule that is due by `now`, in the rules' order.
    pub(super) fn timer(&mut self, shared: &Arc<Shared>, now: Tick) {
        let limits = shared.limits;
        for rule in self.clocks().due(&limits, now) {
            match rule {
                Rule::Write => {
                    self.begin_close(CloseReason::WriteTimeout, shared);
                    self.finish(CloseReason::WriteTimeout, shared, now);
                    return;
                }
                Rule::Header => {
                    self.header_refused(
                        ProxyError::Timeout(header_limit(shared.config.line_timeout)),
                        shared,
                        now,
                    );
                    return;
                }
                Rule::Count => {
                    if let Phase::Serving(s) = &mut self.phase {
                        s.count(shared);
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
                                after: shared.config.line_timeout,
                            },
                            CloseReason::LineTimeout,
                        ),
                        _ => (ErrorReply::IdleTimeout, CloseReason::IdleTimeout),
                    };
                    if self.out.is_empty() {
                        self.write_since = now;
                    }
                    shared.metrics.add(Count::Error(line.kind()), 1);
                    line.encode(&mut self.out);
                    s.ending = Some(reason);
                }
                // The queue stayed empty: the next read decides whether the session ends. At the
                // output cap there is no read until the client takes some: the quiet time starts
                // again at the next empty read (else the rule would stay due and spin the loop).
                Rule::Drain => {
                    if let Phase::Serving(s) = &mut self.phase
                        && self.out.len() >= shared.config.max_output
                    {
                        s.quiet_since = None;
                    } else {
                        self.readable = true;
                    }
                }
                Rule::Linger => {
                    if let Phase::Closing(c) = &self.phase {
                        let reason = c.reason;
                        self.finish(reason, shared, now);
                        return;
                    }
                }
            }
        }
    }

    /// The server began shutting down: a session answers what is there and closes; a connection
    /// still waiting for its PROXY header closes now.
    pub(super) fn drain(&mut self, shared: &Arc<Shared>) {
        self.draining = true;
        // Requests may wait unread: the next read tells (no further event comes for them).
        self.readable = true;
        if let Phase::Header(_) = self.phase {
            shared.metrics.add(Count::Closed(CloseReason::Shutdown), 1);
            self.phase = Phase::Done;
        }
    }

    /// The grace period is over: the connection ends as it is (counted and logged).
    pub(super) fn abandon(&mut self, shared: &Arc<Shared>, now: Tick) {
        let reason = match &self.phase {
            Phase::Serving(s) => s.ending.unwrap_or(CloseReason::Shutdown),
            Phase::Closing(c) => c.reason,
            Phase::Header(_) => {
                shared.metrics.add(Count::Closed(CloseReason::Shutdown), 1);
                self.phase = Phase::Done;
                return;
            }
            Phase::Done => return,
        };
        self.begin_close(reason, shared);
        self.finish(reason, shared, now);
    }

    /// Handling this connection panicked (a bug): it is counted and logged before it is dropped.
    pub(super) fn crashed(&self, shared: &Arc<Shared>) {
        // A refusal was never counted as accepted, so its close is not counted either; a
        // finished connection was counted when it finished.
        if self.active.is_some() && !matches!(self.phase, Phase::Done) {
            shared.metrics.add(Count::Closed(CloseReason::Internal), 1);
        }
        error!(
            conn = self.id,
            peer = %self.peer,
            reason = CloseReason::Internal.label(),
            "a bug ended this connection (please report it); the others are served on"
        );
    }

    fn header_done(
        &mut self,
        client: Option<SocketAddr>,
        rest: Vec<u8>,
        shared: &Arc<Shared>,
        now: Tick,
    ) {
        let Some(client) = client else {
            self.start(None, true, rest, shared, now);
            return;
        };
        let via = self.peer;
        self.peer = canonical(client);
        // The client behind the balancer counts under the per-address limit, not the balancer.
        match admission::after_header(shared, self.peer, self.service) {
            Ok(guard) => {
                self.per_ip = guard;
                self.start(Some(via), false, rest, shared, now);
            }
            Err(line) => self.refuse(line, shared, now),
        }
    }

    fn header_refused(&mut self, error: ProxyError, shared: &Arc<Shared>, now: Tick) {
        shared.metrics.add_all(&[
            (Count::Refused(Refusal::ProxyHeader), 1),
            (Count::Closed(CloseReason::ProxyHeader), 1),
        ]);
        debug!(conn = self.id, peer = %self.peer, error = %error, "PROXY header refused");
        if let Ok(mut limit) = shared.proxy_warning.lock()
            && let Some(suppressed) = limit.allow(now)
        {
            warn!(
                peer = %self.peer,
                error = %error,
                suppressed,
                "closing a connection without a valid PROXY protocol header (--proxy-protocol is on: only the load balancer should connect)"
            );
        }
        self.phase = Phase::Done;
    }

    /// Enters the close path with `reason`.
    fn begin_close(&mut self, reason: CloseReason, shared: &Shared) {
        let (report, peer_closed) = match &mut self.phase {
            Phase::Serving(s) => {
                s.count(shared);
                let report = Report::Session {
                    requests: s.responder.requests(),
                    from_balancer: s.from_balancer,
                };
                (report, s.peer_closed)
            }
            Phase::Closing(_) | Phase::Done => return,
            Phase::Header(_) => (Report::Nothing, false),
        };
        if !reason.closes_gracefully() {
            self.out.clear();
        }
        self.phase = Phase::Closing(Closing {
            reason,
            report,
            shutting: false,
            linger_until: None,
            discarded: 0,
            sent: 0,
            linger: reason.closes_gracefully(),
            peer_closed,
            _refusal: None,
        });
    }

    /// The connection is done, ending for `reason`: what it was is counted and logged once.
    fn finish(&mut self, reason: CloseReason, shared: &Arc<Shared>, now: Tick) {
        let Phase::Closing(c) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        match c.report {
            Report::Session {
                requests,
                from_balancer,
            } => {
                shared
                    .metrics
                    .add_all(&[(Count::Closed(reason), 1), (Count::SentBytes, c.sent)]);
                let duration_ms = (now - self.opened).as_millis() as u64;
                if from_balancer {
                    debug!(conn = self.id, peer = %self.peer, requests, duration_ms, reason = reason.label(), "balancer connection closed");
                } else {
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
                shared.metrics.add(Count::Closed(reason), 1);
                debug!(conn = self.id, peer = %self.peer, service = service.label(), reason = reason.label(), "answer not sent");
            }
            Report::Answer { .. } | Report::Nothing => {}
        }
    }
}

impl Session {
    /// Answers the requests in `input` into `out` (up to the output cap) and updates the
    /// session's clocks. Returns how many bytes were used.
    #[inline(always)]
    fn process(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        shared: &Shared,
        now: Tick,
        time: &impl TimeOfDaySource,
    ) -> usize {
        let batch = self
            .responder
            .respond(input, out, time, shared.config.max_output);
        self.uncounted_since.get_or_insert(now);
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
    fn count(&mut self, shared: &Shared) {
        self.uncounted_since = None;
        let t = self.responder.take_tally();
        shared.metrics.add_all(&COMMANDS.map(|spec| {
            let n = t.commands[spec.command as usize];
            (Count::Request(RequestKind::Command(spec.command)), n.into())
        }));
        shared.metrics.add_all(&[
            (Count::Request(RequestKind::Other), t.other.into()),
            (Count::ReceivedBytes, std::mem::take(&mut self.received)),
            (Count::SentBytes, std::mem::take(&mut self.sent)),
        ]);
        shared.metrics.add_all(
            &ErrorKind::ALL.map(|kind| (Count::Error(kind), t.errors[kind as usize].into())),
        );
    }
}

#[cfg(test)]
mod tests {
    //! Each timeout rule, driven through the connection's own events at chosen instants: no
    //! socket and no sleep. `Wire` plays the event loop and the client's end of the socket.

    use std::collections::VecDeque;
    use std::time::Duration;

    use super::*;
    use crate::clock::{LocalClock, ManualClock, zone_by_name};
    use crate::config::ServerConfig;
    use crate::protocol::Command;
    use crate::server::admission::{Admission, at_accept};

    const T0: Tick = Tick::from_nanos(1_000_000_000);
    const TIME_REPLY: &str = "JAM 08:05:09\r\n";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// A connection with the loop's side and the client's side of its socket, simulated.
    struct Wire {
        shared: Arc<Shared>,
        conn: Connection,
        now: Tick,
        /// What the client sent that the server has not read yet (`None`: the client closed).
        queue: VecDeque<Option<Vec<u8>>>,
        /// What the server wrote and the test has not looked at yet.
        sent: Vec<u8>,
        /// The client reads nothing: the socket takes no more writes.
        full: bool,
        shut: bool,
        closed: bool,
        /// How much each read asked for.
        reads: Vec<usize>,
        /// The client reset the connection: reads and writes fail.
        reset: bool,
        /// Shutting down the sending side fails.
        shutdown_fails: bool,
    }

    /// A server with `config` whose clock reads 08:05:09 UTC.
    fn server(config: ServerConfig) -> Arc<Shared> {
        let at = "2026-01-01T08:05:09Z".parse().expect("timestamp");
        let clock = LocalClock::new(
            Arc::new(ManualClock::new(at)),
            zone_by_name("UTC").expect("zone"),
        );
        Arc::new(Shared::new(config, clock))
    }

    fn peer() -> SocketAddr {
        "192.0.2.7:50000".parse().expect("address")
    }

    impl Wire {
        /// A connection accepted at `T0` on a jam listener of a server with `config`.
        fn accept(config: ServerConfig) -> Wire {
            Wire::accept_on(&server(config), Service::Jam)
        }

        /// A connection accepted at `T0` on a `service` listener of `shared`'s server.
        fn accept_on(shared: &Arc<Shared>, service: Service) -> Wire {
            let Admission::Admitted { slot, per_ip } = at_accept(shared, peer(), service, T0)
            else {
                panic!("admitted");
            };
            let conn = Connection::accepted(shared, peer(), service, slot, per_ip, T0);
            Wire::over(shared, conn)
        }

        /// The simulated socket of `conn`, then what it asks done.
        fn over(shared: &Arc<Shared>, conn: Connection) -> Wire {
            let mut wire = Wire {
                shared: shared.clone(),
                conn,
                now: T0,
                queue: VecDeque::new(),
                sent: Vec::new(),
                full: false,
                shut: false,
                closed: false,
                reads: Vec::new(),
                reset: false,
                shutdown_fails: false,
            };
            wire.run();
            wire
        }

        /// Performs what the connection asks until it waits or closes.
        fn run(&mut self) {
            let (shared, now) = (&self.shared, self.now);
            let reset = io::Error::from(io::ErrorKind::ConnectionReset);
            for step in 0.. {
                assert!(
                    step < 100_000,
                    "the connection asks for the same thing forever"
                );
                match self.conn.poll(shared, now, &shared.clock) {
                    Action::Write(_) | Action::Read(_) if self.reset => {
                        self.conn.failed(&reset, shared, now)
                    }
                    Action::Write(_) if self.full => self.conn.write_blocked(),
                    Action::Write(bytes) => {
                        let n = bytes.len();
                        self.sent.extend_from_slice(bytes);
                        self.conn.wrote(n, now);
                    }
                    Action::Read(max) => {
                        self.reads.push(max);
                        match self.queue.pop_front() {
                            Some(Some(mut chunk)) => {
                                if chunk.len() > max {
                                    self.queue.push_front(Some(chunk.split_off(max)));
                                }
                                let drained = self.queue.is_empty();
                                self.conn
                                    .received(&chunk, drained, shared, now, &shared.clock);
                            }
                            Some(None) => self.conn.eof(shared, now),
                            None => self.conn.read_empty(now),
                        }
                    }
                    Action::ShutdownWrite => {
                        self.shut = !self.shutdown_fails;
                        self.conn.shut(self.shut, shared, now);
                    }
                    Action::Wait => return,
                    Action::Close => {
                        self.closed = true;
                        return;
                    }
                }
            }
        }

        /// The client sends `bytes` now.
        fn send(&mut self, bytes: &[u8]) {
            self.queue.push_back(Some(bytes.to_vec()));
            self.conn.readable();
            self.run();
        }

        /// The client closes its side now.
        fn client_closes(&mut self) {
            self.queue.push_back(None);
            self.conn.readable();
            self.run();
        }

        /// The client reads again: the socket takes writes.
        fn client_reads(&mut self) {
            self.full = false;
            self.conn.writable();
            self.run();
        }

        /// Moves the clock to `at`, firing every deadline that comes by then as the loop does.
        fn at(&mut self, at: Tick) {
            assert!(at >= self.now, "time moves forward");
            let mut fired = 0;
            while !self.closed
                && let Some(due) = self.deadline().filter(|&due| due <= at)
            {
                fired += 1;
                assert!(fired < 1000, "a deadline stays due: the loop would spin");
                self.now = due;
                self.conn.timer(&self.shared, due);
                self.run();
            }
            self.now = at;
        }

        fn deadline(&self) -> Option<Tick> {
            self.conn.deadline(&self.shared)
        }

        /// What the server wrote since the last look.
        fn take_sent(&mut self) -> String {
            String::from_utf8(std::mem::take(&mut self.sent)).expect("UTF-8")
        }

        fn closed_for(&self, reason: CloseReason) -> u64 {
            self.shared.metrics.total(Count::Closed(reason))
        }
    }

    fn reply(line: ErrorReply<'_>) -> String {
        String::from_utf8(line.to_bytes()).expect("UTF-8")
    }

    #[test]
    fn idle_ends_a_session_that_sends_no_complete_request_within_the_idle_timeout() {
        let mut w = Wire::accept(ServerConfig::default());
        assert_eq!(w.deadline(), Some(T0 + secs(300)), "idle from the accept");
        w.at(T0 + secs(100));
        w.send(b"TIME\r\n");
        assert_eq!(w.take_sent(), TIME_REPLY);
        // Neither a blank line nor telnet negotiation is a request: the clock runs on.
        w.at(T0 + secs(150));
        w.send(b"\r\n");
        w.send(&[255, 253, 1]);
        assert_eq!(std::mem::take(&mut w.sent), [255, 252, 1], "IAC WONT ECHO");
        w.at(T0 + secs(400) - ms(1));
        assert_eq!((w.take_sent(), w.shut), (String::new(), false));
        w.at(T0 + secs(400));
        assert_eq!(w.take_sent(), reply(ErrorReply::IdleTimeout));
        assert!(w.shut && !w.closed, "sent, shut down, lingering");
        w.client_closes();
        assert!(w.closed);
        assert_eq!(w.closed_for(CloseReason::IdleTimeout), 1);
    }

    #[test]
    fn idle_zero_is_off() {
        let mut w = Wire::accept(ServerConfig {
            idle_timeout: Duration::ZERO,
            ..ServerConfig::default()
        });
        assert_eq!(w.deadline(), None);
        w.at(T0 + secs(86_400 * 365));
        assert!(!w.shut && !w.closed);
    }

    #[test]
    fn line_ends_a_session_whose_started_line_is_not_finished_within_the_line_timeout() {
        let mut w = Wire::accept(ServerConfig::default());
        w.at(T0 + secs(5));
        w.send(b"TI");
        w.at(T0 + secs(20));
        w.send(b"ME\r\n");
        assert_eq!(w.take_sent(), TIME_REPLY, "a finished line stops the timer");
        w.at(T0 + secs(30));
        w.send(b"QU");
        w.at(T0 + secs(60) - ms(1));
        assert_eq!(w.take_sent(), "");
        w.at(T0 + secs(60));
        let expected = ErrorReply::LineTimeout {
            held: 2,
            after: secs(30),
        };
        assert_eq!(w.take_sent(), reply(expected));
        assert!(w.shut);
        w.client_closes();
        assert_eq!(w.closed_for(CloseReason::LineTimeout), 1);
    }

    #[test]
    fn write_drops_a_client_that_reads_nothing_for_the_write_timeout() {
        let mut w = Wire::accept(ServerConfig::default());
        w.full = true;
        w.at(T0 + secs(1));
        w.send(b"TIME\r\n");
        w.at(T0 + secs(20));
        w.client_reads();
        assert_eq!(
            w.take_sent(),
            TIME_REPLY,
            "progress restarts the write clock"
        );
        w.full = true;
        w.send(b"TIME\r\n");
        w.at(T0 + secs(50) - ms(1));
        assert!(!w.closed);
        w.at(T0 + secs(50));
        assert!(
            w.closed && !w.shut,
            "dropped at once: nothing more can be sent"
        );
        assert_eq!(w.closed_for(CloseReason::WriteTimeout), 1);
    }

    #[test]
    fn header_closes_a_connection_whose_proxy_header_does_not_come_in_time() {
        let config = ServerConfig {
            proxy_protocol: true,
            line_timeout: secs(10),
            ..ServerConfig::default()
        };
        let mut w = Wire::accept(config.clone());
        w.send(b"PROXY TCP4 198.51.100.1 ");
        assert_eq!(w.deadline(), Some(T0 + secs(10)));
        w.at(T0 + secs(10) - ms(1));
        assert!(!w.closed);
        w.at(T0 + secs(10));
        assert!(w.closed);
        assert_eq!(w.take_sent(), "", "a balancer gets no error line");
        let refused = w.shared.metrics.total(Count::Refused(Refusal::ProxyHeader));
        assert_eq!((refused, w.closed_for(CloseReason::ProxyHeader)), (1, 1));

        let mut w = Wire::accept(config);
        w.at(T0 + secs(9));
        w.send(b"PROXY TCP4 198.51.100.1 198.51.100.2 5000 45000\r\nTIME\r\n");
        assert_eq!(w.take_sent(), TIME_REPLY, "in time, the session is served");
        assert_eq!(w.deadline(), Some(T0 + secs(10)), "the count rule");
        w.at(T0 + secs(10));
        assert!(!w.closed);
    }

    #[test]
    fn linger_reads_and_discards_until_the_client_closes_or_the_linger_time_ends() {
        let mut w = Wire::accept(ServerConfig::default());
        w.at(T0 + secs(1));
        w.send(b"TIME\r\nQUIT\r\nTIME\r\n");
        assert_eq!(w.take_sent(), TIME_REPLY, "nothing after QUIT is answered");
        assert!(w.shut && !w.closed);
        assert_eq!(w.deadline(), Some(T0 + secs(3)), "two seconds of linger");
        w.at(T0 + secs(2));
        w.send(b"TIME\r\n");
        assert_eq!(w.take_sent(), "", "late bytes are discarded");
        w.at(T0 + secs(3) - ms(1));
        assert!(!w.closed);
        w.at(T0 + secs(3));
        assert!(w.closed);
        assert_eq!(w.closed_for(CloseReason::Quit), 1);

        let mut w = Wire::accept(ServerConfig::default());
        w.send(b"QUIT\r\n");
        w.send(&vec![b'x'; LINGER_MAX_BYTES]);
        assert!(w.closed, "at most LINGER_MAX_BYTES are discarded");

        let mut w = Wire::accept(ServerConfig {
            linger: Duration::ZERO,
            ..ServerConfig::default()
        });
        w.send(b"QUIT\r\n");
        assert!(w.shut && w.closed, "0 is off: closed once shut down");
    }

    #[test]
    fn drain_answers_what_arrives_and_ends_once_the_queue_stays_empty() {
        let mut w = Wire::accept(ServerConfig::default());
        w.at(T0 + secs(1));
        w.send(b"TIME\r\n");
        assert_eq!(w.take_sent(), TIME_REPLY);
        w.at(T0 + secs(1) + ms(20));
        w.conn.drain(&w.shared);
        w.run();
        assert!(
            !w.shut,
            "quiet for 20 ms only: requests may still be on their way"
        );
        assert_eq!(w.deadline(), Some(T0 + secs(1) + ms(100)));
        w.at(T0 + secs(1) + ms(60));
        w.send(b"TIME\r\n");
        assert_eq!(
            w.take_sent(),
            TIME_REPLY,
            "a request still arriving is answered"
        );
        let quiet_end = T0 + secs(1) + ms(160);
        assert_eq!(w.deadline(), Some(quiet_end));
        w.at(quiet_end - ms(1));
        assert!(!w.shut);
        w.at(quiet_end);
        assert!(w.shut, "the queue stayed empty: the session ends");
        w.client_closes();
        assert_eq!(w.closed_for(CloseReason::Shutdown), 1);

        let mut idle = Wire::accept(ServerConfig::default());
        idle.at(T0 + secs(1));
        idle.conn.drain(&idle.shared);
        idle.run();
        assert!(idle.shut, "a session quiet for longer ends at once");
    }

    #[test]
    fn drain_closes_a_connection_still_waiting_for_its_proxy_header() {
        let mut w = Wire::accept(ServerConfig {
            proxy_protocol: true,
            ..ServerConfig::default()
        });
        w.conn.drain(&w.shared);
        w.run();
        assert!(w.closed);
        assert_eq!(w.closed_for(CloseReason::Shutdown), 1);
    }

    #[test]
    fn count_hands_a_sessions_requests_to_the_metrics_a_second_after_the_first() {
        let mut w = Wire::accept(ServerConfig::default());
        let times = |w: &Wire| {
            let kind = RequestKind::Command(Command::Time);
            w.shared.metrics.total(Count::Request(kind))
        };
        w.at(T0 + secs(5));
        w.send(b"TIME\r\n");
        w.at(T0 + secs(5) + ms(500));
        w.send(b"TIME\r\n");
        w.at(T0 + secs(6) - ms(1));
        assert_eq!(times(&w), 0, "counted in the session meanwhile");
        w.at(T0 + secs(6));
        assert_eq!(times(&w), 2);
        w.send(b"TIME\r\nQUIT\r\n");
        assert_eq!(times(&w), 3, "and when the session ends");
    }

    #[test]
    fn output_waits_at_its_cap_and_the_rest_of_the_input_is_answered_once_the_client_reads() {
        let mut w = Wire::accept(ServerConfig {
            max_output: 64,
            ..ServerConfig::default()
        });
        w.full = true;
        w.send(&b"TIME\r\n".repeat(10));
        assert_eq!(w.conn.out.len(), 5 * TIME_REPLY.len(), "stops at the cap");
        w.client_reads();
        assert_eq!(
            w.take_sent(),
            TIME_REPLY.repeat(10),
            "every request, in order"
        );
    }

    #[test]
    fn draining_at_the_output_cap_waits_for_the_client_without_spinning() {
        let mut w = Wire::accept(ServerConfig {
            max_output: 64,
            ..ServerConfig::default()
        });
        w.full = true;
        w.send(&b"TIME\r\n".repeat(10));
        w.at(T0 + secs(1));
        w.conn.drain(&w.shared);
        w.run();
        w.at(T0 + secs(2));
        let next = w.deadline().expect("the write timeout");
        assert!(next > w.now, "no deadline left in the past: {next:?}");
        w.client_reads();
        assert_eq!(w.take_sent(), TIME_REPLY.repeat(10), "answered in full");
        w.at(T0 + secs(2) + ms(100));
        assert!(w.shut, "then the quiet queue ends it");
    }

    #[test]
    fn replies_sent_on_the_close_path_are_counted_as_sent() {
        let mut w = Wire::accept(ServerConfig::default());
        w.full = true;
        w.send(b"TIME\r\nQUIT\r\n");
        w.client_reads();
        w.client_closes();
        assert!(w.closed);
        let sent = w.shared.metrics.total(Count::SentBytes);
        assert_eq!(sent, TIME_REPLY.len() as u64);
    }

    #[test]
    fn a_lent_buffer_goes_back_empty_and_an_idle_connection_keeps_no_buffer() {
        let mut w = Wire::accept(ServerConfig::default());
        let mut loop_buffer = Vec::with_capacity(1024);
        w.conn.lend_output(&mut loop_buffer);
        assert_eq!(
            loop_buffer.capacity(),
            0,
            "the connection holds the loop's buffer"
        );
        w.send(b"TIME\r\n");
        w.conn.return_output(&mut loop_buffer);
        assert_eq!((loop_buffer.len(), loop_buffer.capacity()), (0, 1024));
        assert_eq!(w.conn.out.capacity(), 0, "nothing owed, no buffer");

        // What the socket refused stays with the connection, in a buffer of its own.
        w.conn.lend_output(&mut loop_buffer);
        w.full = true;
        w.send(b"TIME\r\n");
        w.conn.return_output(&mut loop_buffer);
        assert_eq!((loop_buffer.len(), loop_buffer.capacity()), (0, 1024));
        assert_eq!(w.conn.out, TIME_REPLY.as_bytes());
        // Output already waits: nothing is lent until it is sent.
        w.conn.lend_output(&mut loop_buffer);
        assert_eq!(loop_buffer.capacity(), 1024);
        w.client_reads();
        assert_eq!(w.take_sent(), TIME_REPLY.repeat(2));
        assert_eq!(w.conn.out.capacity(), 0);
    }

    #[test]
    fn one_read_per_request_when_a_read_drains_the_socket_and_bytes_are_counted() {
        let mut w = Wire::accept(ServerConfig::default());
        w.reads.clear();
        for _ in 0..3 {
            w.send(b"TIME\r\n");
        }
        assert_eq!(w.take_sent(), TIME_REPLY.repeat(3));
        assert_eq!(
            w.reads.len(),
            3,
            "no read after one that drained the socket"
        );
        w.send(b"QUIT\r\n");
        w.client_closes();
        let received = w.shared.metrics.total(Count::ReceivedBytes);
        assert_eq!(received, 3 * 6 + 6);
        let sent = w.shared.metrics.total(Count::SentBytes);
        assert_eq!(sent, 3 * TIME_REPLY.len() as u64);
    }

    #[test]
    fn a_proxy_header_is_read_at_most_its_longest_at_a_time_and_then_the_session_starts() {
        let shared = server(ServerConfig {
            proxy_protocol: true,
            ..ServerConfig::default()
        });
        let mut w = Wire::accept_on(&shared, Service::Jam);
        assert_eq!(
            w.reads,
            [proxy::MAX_HEADER],
            "nothing past a header's longest"
        );
        w.reads.clear();
        w.queue.push_back(Some(b"PROXY TCP4 ".to_vec()));
        w.send(b"198.51.100.1 198.51.100.2 5000 45000\r\nTIME\r\n");
        assert_eq!(w.reads[..2], [proxy::MAX_HEADER, proxy::MAX_HEADER - 11]);
        assert_eq!(w.take_sent(), TIME_REPLY);
        assert_eq!(
            w.conn.peer.to_string(),
            "198.51.100.1:5000",
            "the client it names"
        );
    }

    #[test]
    fn rfc868_and_daytime_answer_once_then_take_the_close_path() {
        let shared = server(ServerConfig::default());
        let mut time = Wire::accept_on(&shared, Service::Time);
        // 2026-01-01T08:05:09Z is 3,976,243,509 seconds after 1900.
        assert_eq!(time.sent, 3_976_243_509_u32.to_be_bytes());
        assert!(time.shut);
        let mut daytime = Wire::accept_on(&shared, Service::Daytime);
        let line = daytime.take_sent();
        assert!(line.ends_with("08:05:09 +00:00 (UTC)\r\n"), "{line:?}");
        time.client_closes();
        daytime.client_closes();
        assert_eq!(
            shared.metrics.total(Count::Closed(CloseReason::Answered)),
            2
        );
        let ids = (time.conn.id(), daytime.conn.id());
        assert_eq!(ids, (1, 2), "numbered in accept order");
    }

    #[test]
    fn a_refusal_sends_its_line_and_lingers_only_while_few_do() {
        let shared = server(ServerConfig::default());
        let refuse = || {
            let conn = Connection::refused(&shared, peer(), Some(ErrorReply::ServerBusy), T0);
            Wire::over(&shared, conn)
        };
        let mut lingering: Vec<Wire> = (0..MAX_LINGERING_REFUSALS).map(|_| refuse()).collect();
        for w in &mut lingering {
            assert_eq!(w.take_sent(), reply(ErrorReply::ServerBusy));
            assert!(w.shut && !w.closed, "lingers");
            assert_eq!(w.conn.id(), 0, "a refusal has no number");
        }
        let mut past_cap = refuse();
        assert_eq!(past_cap.take_sent(), reply(ErrorReply::ServerBusy));
        assert!(
            past_cap.closed,
            "past the cap a refusal closes once its line is out"
        );
        drop(past_cap);
        lingering.pop();
        let mut again = refuse();
        assert!(!again.closed, "a place was given back");
        again.client_closes();
        assert_eq!(
            shared.metrics.total(Count::Error(ErrorKind::ServerBusy)),
            34
        );
    }

    #[test]
    fn a_reset_ends_the_session_at_once_and_is_counted_as_one() {
        let mut w = Wire::accept(ServerConfig::default());
        w.reset = true;
        w.send(b"TIME\r\n");
        assert!(w.closed && !w.shut, "nothing more can be sent");
        assert_eq!(w.closed_for(CloseReason::Reset), 1);

        // On the close path, a failed send is the reason too.
        let mut w = Wire::accept(ServerConfig::default());
        w.full = true;
        w.send(b"TIME\r\nQUIT\r\n");
        w.reset = true;
        w.client_reads();
        assert!(w.closed);
        assert_eq!(w.closed_for(CloseReason::Reset), 1);
        assert_eq!(w.closed_for(CloseReason::Quit), 0);
    }

    #[test]
    fn no_linger_once_the_client_has_closed_or_the_shutdown_failed() {
        let mut w = Wire::accept(ServerConfig::default());
        w.queue.push_back(Some(b"TIME\r\n".to_vec()));
        w.client_closes();
        assert_eq!(w.take_sent(), TIME_REPLY);
        assert!(
            w.shut && w.closed,
            "the client closed first: done once shut down"
        );
        assert_eq!(w.closed_for(CloseReason::ClientClosed), 1);

        let mut w = Wire::accept(ServerConfig::default());
        w.shutdown_fails = true;
        w.send(b"QUIT\r\n");
        assert!(w.closed, "cannot shut down: nothing to linger for");
        assert_eq!(w.closed_for(CloseReason::Quit), 1);
    }

    #[test]
    fn abandoned_when_the_grace_period_ends_a_connection_is_counted_once() {
        let mut w = Wire::accept(ServerConfig::default());
        w.send(b"TI");
        w.conn.abandon(&w.shared, w.now);
        w.run();
        assert!(w.closed && !w.shut);
        assert_eq!(w.closed_for(CloseReason::Shutdown), 1);
        w.conn.abandon(&w.shared, w.now);
        assert_eq!(w.closed_for(CloseReason::Shutdown), 1, "once");

        let mut header = Wire::accept(ServerConfig {
            proxy_protocol: true,
            ..ServerConfig::default()
        });
        header.conn.abandon(&header.shared, header.now);
        header.run();
        assert!(header.closed);
        assert_eq!(header.closed_for(CloseReason::Shutdown), 1);
    }

    #[test]
    fn a_crash_is_counted_once_and_only_for_a_connection_that_was_accepted() {
        let shared = server(ServerConfig::default());
        let internal = || shared.metrics.total(Count::Closed(CloseReason::Internal));
        let serving = Wire::accept_on(&shared, Service::Jam);
        serving.conn.crashed(&shared);
        assert_eq!(internal(), 1);
        let refusal = Wire::over(
            &shared,
            Connection::refused(&shared, peer(), Some(ErrorReply::ServerBusy), T0),
        );
        refusal.conn.crashed(&shared);
        assert_eq!(internal(), 1, "a refusal was never counted as accepted");
        let mut done = Wire::accept_on(&shared, Service::Jam);
        done.send(b"QUIT\r\n");
        done.client_closes();
        assert!(done.closed);
        done.conn.crashed(&shared);
        assert_eq!(
            internal(),
            1,
            "a finished connection was counted when it finished"
        );
    }
}
