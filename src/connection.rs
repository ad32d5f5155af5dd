//! One client's session: read, answer in order, enforce the deadlines and the output cap, and close
//! without losing a reply.
//!
//! An idle session owns no buffers: reads go into a per-thread scratch buffer, replies are built in
//! a per-thread scratch buffer and written at once. Only what a client leaves unfinished (part of a
//! line, replies it is not reading, input read while its replies are backed up) is copied into the
//! session, and that is bounded by the line cap, the output cap and one read.

use std::cell::RefCell;
use std::fmt;
use std::future::Future as _;
use std::io::{self, Read as _};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, info};

use crate::config::{LINGER_MAX_BYTES, ServerConfig};
use crate::metrics::Count;
use crate::parker::{Meta, Parked, Parker, Wake};
use crate::protocol::ErrorReply;
use crate::responder::{End, Responder};
use crate::server::Shared;

/// Bytes taken from the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// How often a busy session hands its counts to the metrics (also on parking and on close):
/// per-request counting stays in the session, so the shared counters cost nothing per request.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// Quiet time before a connection that has sent no request yet is parked.
const FIRST_PARK_AFTER: Duration = Duration::from_millis(10);

/// A deadline far enough away to mean "never" (tokio caps timers at about two years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365);

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `QUIT` (or telnet end-of-file).
    Quit,
    /// The client closed its side of the connection.
    ClientClosed,
    /// No complete request within the idle timeout.
    IdleTimeout,
    /// A partial line was not completed within the line timeout.
    LineTimeout,
    /// A line exceeded the maximum length.
    LineTooLong,
    /// The client stopped reading and pending replies made no progress within the write timeout.
    WriteTimeout,
    /// The client sent an HTTP request.
    NotHttp,
    /// The server is shutting down.
    Shutdown,
    /// The connection was reset or broken by the peer.
    Reset,
    /// Another I/O error.
    Error(io::ErrorKind),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            CloseReason::Quit => "quit",
            CloseReason::ClientClosed => "client closed",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::LineTimeout => "line timeout",
            CloseReason::LineTooLong => "line too long",
            CloseReason::WriteTimeout => "write timeout",
            CloseReason::NotHttp => "http request",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Reset => "connection reset",
            CloseReason::Error(kind) => return write!(f, "i/o error: {kind}"),
        };
        f.write_str(text)
    }
}

impl CloseReason {
    fn from_error(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => CloseReason::Reset,
            kind => CloseReason::Error(kind),
        }
    }

    /// The metric this close is counted under.
    fn count(self) -> Count {
        match self {
            CloseReason::Quit => Count::ClosedQuit,
            CloseReason::ClientClosed => Count::ClosedClientClosed,
            CloseReason::IdleTimeout => Count::ClosedIdleTimeout,
            CloseReason::LineTimeout => Count::ClosedLineTimeout,
            CloseReason::LineTooLong => Count::ClosedLineTooLong,
            CloseReason::WriteTimeout => Count::ClosedWriteTimeout,
            CloseReason::NotHttp => Count::ClosedHttp,
            CloseReason::Shutdown => Count::ClosedShutdown,
            CloseReason::Reset => Count::ClosedReset,
            CloseReason::Error(_) => Count::ClosedError,
        }
    }

    /// The error line the server sent on its own before this close, if any.
    fn error_line(self) -> Option<Count> {
        match self {
            CloseReason::IdleTimeout => Some(Count::ErrorIdleTimeout),
            CloseReason::LineTimeout => Some(Count::ErrorLineTimeout),
            _ => None,
        }
    }

    /// Whether the server still owes the client its pending output and an orderly close.
    fn closes_gracefully(self) -> bool {
        !matches!(
            self,
            CloseReason::WriteTimeout | CloseReason::Reset | CloseReason::Error(_)
        )
    }
}

struct Scratch {
    input: Vec<u8>,
    output: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: vec![0; READ_CHUNK],
        output: Vec::with_capacity(READ_CHUNK),
    });
}

/// Serves a newly accepted connection until it closes or parks.
///
/// `via` is the load balancer a PROXY header came through; `initial` holds client bytes already
/// read (those that followed the header).
pub(crate) async fn serve(
    stream: TcpStream,
    meta: Meta,
    via: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    initial: Vec<u8>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(conn = meta.id, peer = %meta.peer, error = %e, "could not set TCP_NODELAY");
    }
    match (via, meta.from_balancer) {
        (Some(via), _) => info!(conn = meta.id, peer = %meta.peer, %via, "connection opened"),
        (None, false) => info!(conn = meta.id, peer = %meta.peer, "connection opened"),
        (None, true) => debug!(conn = meta.id, peer = %meta.peer, "balancer connection opened"),
    }
    let mut session = Session::new(&meta, &shared.config, meta.opened);
    session.received = initial.len() as u64;
    session.held = initial;
    drive(stream, session, meta, shared, shutdown).await;
}

/// Serves a session the parker handed back.
pub(crate) async fn resume(
    parked: Parked,
    wake: Wake,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let Parked {
        stream,
        meta,
        requests,
        last_request,
    } = parked;
    let mut session = Session::new(&meta, &shared.config, last_request);
    session.responder.set_requests(requests);
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(e) => return log_closed(&meta, &mut session, &shared, CloseReason::from_error(&e)),
    };
    if wake == Wake::IdleExpired {
        session.queue_error(ErrorReply::IdleTimeout);
        session.ending = Some(CloseReason::IdleTimeout);
    }
    drive(stream, session, meta, shared, shutdown).await;
}

async fn drive(
    mut stream: TcpStream,
    mut session: Session,
    mut meta: Meta,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let reason = loop {
        match session.run(&stream, &shared, &shutdown).await {
            Outcome::Close(reason) => break reason,
            Outcome::Park => {
                session.count(&shared, Instant::now());
                let Some(parker) = shared.parker.get() else {
                    session.park_after = Duration::ZERO;
                    continue;
                };
                match park(stream, meta, &session, parker) {
                    Ok(None) => return,
                    // The parker has stopped: the server is shutting down; finish here.
                    Ok(Some((back, back_meta))) => {
                        stream = back;
                        meta = back_meta;
                        session.park_after = Duration::ZERO;
                    }
                    Err((meta, reason)) => return log_closed(&meta, &mut session, &shared, reason),
                }
            }
        }
    };
    let reason = session.close(&stream, &shared, reason).await;
    log_closed(&meta, &mut session, &shared, reason);
}

/// Hands the socket to the parker: `Ok(None)` once parked, `Ok(Some(..))` with the socket back
/// if the parker has stopped, `Err` if the socket could not leave tokio.
fn park(
    stream: TcpStream,
    meta: Meta,
    session: &Session,
    parker: &Parker,
) -> Result<Option<(TcpStream, Meta)>, (Meta, CloseReason)> {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => return Err((meta, CloseReason::from_error(&e))),
    };
    let parked = Parked {
        stream,
        meta,
        requests: session.responder.requests(),
        last_request: session.last_request,
    };
    let Err(parked) = parker.park(parked) else {
        return Ok(None);
    };
    match TcpStream::from_std(parked.stream) {
        Ok(stream) => Ok(Some((stream, parked.meta))),
        Err(e) => Err((parked.meta, CloseReason::from_error(&e))),
    }
}

fn log_closed(meta: &Meta, session: &mut Session, shared: &Shared, reason: CloseReason) {
    session.count(shared, Instant::now());
    shared.metrics.add(reason.count(), 1);
    if let Some(line) = reason.error_line() {
        shared.metrics.add(line, 1);
    }
    let requests = session.responder.requests();
    let duration_ms = meta.opened.elapsed().as_millis() as u64;
    if meta.from_balancer {
        debug!(conn = meta.id, peer = %meta.peer, requests, duration_ms, reason = %reason, "balancer connection closed");
        return;
    }
    info!(
        conn = meta.id,
        peer = %meta.peer,
        requests,
        duration_ms,
        reason = %reason,
        "connection closed"
    );
}

/// How a session's run ends.
enum Outcome {
    /// Close the connection (after sending what is owed, for graceful reasons).
    Close(CloseReason),
    /// Nothing is in progress and the client is quiet: hand the socket to the parker.
    Park,
}

enum Read {
    /// Bytes were read and handled.
    Data,
    /// Nothing to read right now.
    WouldBlock,
}

struct Session {
    responder: Responder,
    /// Replies not yet accepted by the socket.
    out: Vec<u8>,
    /// Input read but not yet handled, because `out` reached the output cap.
    held: Vec<u8>,
    last_request: Instant,
    line_started: Option<Instant>,
    /// When pending output last made progress (or became pending).
    write_progress: Instant,
    /// A deadline may have moved earlier: re-arm the timer.
    rearm: bool,
    /// Set when a request or event ends the session.
    ending: Option<CloseReason>,
    /// The client closed its side: no lingering needed.
    peer_closed: bool,
    /// Park after this long without a complete request (zero: never).
    park_after: Duration,
    /// When bytes last arrived or the session (re)started: parking needs quiet since then.
    last_activity: Instant,
    /// Bytes read and written since the metrics last took them.
    received: u64,
    sent: u64,
    /// When the metrics last took this session's counts.
    counted_at: Instant,
}

impl Session {
    fn new(meta: &Meta, config: &ServerConfig, now: Instant) -> Self {
        Session {
            responder: Responder::new(
                config.max_line,
                debug_span!("conn", id = meta.id, peer = %meta.peer),
            ),
            out: Vec::new(),
            held: Vec::new(),
            last_request: now,
            line_started: None,
            write_progress: now,
            rearm: false,
            ending: None,
            peer_closed: false,
            park_after: config.park_after,
            last_activity: Instant::now(),
            received: 0,
            sent: 0,
            counted_at: now,
        }
    }

    async fn run(
        &mut self,
        stream: &TcpStream,
        shared: &Shared,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let config = &shared.config;
        let timer = sleep_until(self.next_deadline(config));
        tokio::pin!(timer);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut registered = false;
        let mut draining = false;
        loop {
            if let Some(reason) = self.ending {
                return Outcome::Close(reason);
            }
            if self.rearm {
                self.rearm = false;
                let next = self.next_deadline(config);
                if next < timer.deadline() {
                    timer.as_mut().reset(next);
                }
            }
            // Checked on every pass, so a client that never stops sending still sees shutdown.
            draining = draining || shutdown.is_cancelled();
            let room = self.out.len() < config.max_output;
            if room && !self.held.is_empty() {
                self.process_held(shared);
                continue;
            }
            if draining && room {
                // Shutting down: answer what the client already sent, without waiting for more.
                match self.read(stream, shared, true) {
                    Ok(Read::Data) => continue,
                    Ok(Read::WouldBlock) if self.ending.is_none() => {
                        return Outcome::Close(CloseReason::Shutdown);
                    }
                    Ok(Read::WouldBlock) => continue,
                    Err(e) => return Outcome::Close(CloseReason::from_error(&e)),
                }
            }
            let want_read = !draining && room;
            let want_write = !self.out.is_empty();
            let interest = match (want_read, want_write) {
                (true, true) => Interest::READABLE | Interest::WRITABLE,
                (true, false) => Interest::READABLE,
                (false, true) => Interest::WRITABLE,
                (false, false) => return Outcome::Close(CloseReason::Shutdown),
            };
            tokio::select! {
                biased;
                ready = stream.ready(interest) => {
                    let ready = match ready {
                        Ok(ready) => ready,
                        Err(e) => return Outcome::Close(CloseReason::from_error(&e)),
                    };
                    if want_write && ready.is_writable() {
                        if let Err(e) = self.flush(stream) {
                            return Outcome::Close(CloseReason::from_error(&e));
                        }
                    }
                    if want_read && (ready.is_readable() || ready.is_read_closed()) {
                        if let Err(e) = self.read(stream, shared, false) {
                            return Outcome::Close(CloseReason::from_error(&e));
                        }
                    }
                }
                () = &mut timer => {
                    if let Some(outcome) = self.expired(config, timer.as_mut(), draining) {
                        return outcome;
                    }
                }
                // Every session waits on the same token, and polling its `Notified` takes a lock
                // shared by all of them; register this task's waker once, then rely on the
                // atomic check above. Cancellation wakes the registered waker.
                () = std::future::poll_fn(|cx| {
                    if shutdown.is_cancelled() {
                        return Poll::Ready(());
                    }
                    if !registered {
                        registered = true;
                        return cancelled.as_mut().poll(cx);
                    }
                    Poll::Pending
                }), if !draining => draining = true,
            }
        }
    }

    /// Reads once and handles what arrived. With `bypass_readiness` the read goes straight to the
    /// socket, so data already in its buffer is seen even if its readiness event is not processed
    /// yet (used when draining at shutdown).
    fn read(
        &mut self,
        stream: &TcpStream,
        shared: &Shared,
        bypass_readiness: bool,
    ) -> io::Result<Read> {
        SCRATCH.with_borrow_mut(|scratch| {
            let result = if bypass_readiness {
                (&*SockRef::from(stream)).read(&mut scratch.input)
            } else {
                read_marking_drained(stream, &mut scratch.input)
            };
            let n = match result {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Read::Data),
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.end_of_input();
                return Ok(Read::Data);
            }
            let input = &scratch.input[..n];
            let now = Instant::now();
            self.last_activity = now;
            let mut sent = 0;
            if self.out.is_empty() {
                scratch.output.clear();
                let used = self.process(input, &mut scratch.output, shared, now);
                self.hold(&input[used..]);
                sent = self.send(stream, &scratch.output, now)?;
            } else {
                let mut out = std::mem::take(&mut self.out);
                let used = self.process(input, &mut out, shared, now);
                self.out = out;
                self.hold(&input[used..]);
            }
            self.received += n as u64;
            self.sent += sent as u64;
            if now.duration_since(self.counted_at) >= COUNT_EVERY {
                self.count(shared, now);
            }
            Ok(Read::Data)
        })
    }

    fn process_held(&mut self, shared: &Shared) {
        let held = std::mem::take(&mut self.held);
        if self.out.is_empty() {
            self.write_progress = Instant::now();
        }
        let mut out = std::mem::take(&mut self.out);
        let used = self.process(&held, &mut out, shared, Instant::now());
        self.out = out;
        self.hold(&held[used..]);
        if self.out.is_empty() {
            self.out = Vec::new();
        }
    }

    fn hold(&mut self, rest: &[u8]) {
        if self.ending.is_none() && !rest.is_empty() {
            self.held.extend_from_slice(rest);
        }
    }

    /// Queues an error line the server sends on its own (timeouts).
    fn queue_error(&mut self, error: ErrorReply<'_>) {
        if self.out.is_empty() {
            self.write_progress = Instant::now();
        }
        error.encode(&mut self.out);
    }

    /// The client closed its side: a partial request gets an error, then the session ends.
    fn end_of_input(&mut self) {
        self.peer_closed = true;
        if self.ending.is_some() {
            return;
        }
        if self.out.is_empty() {
            self.write_progress = Instant::now();
        }
        self.responder.finish(&mut self.out);
        self.ending = Some(CloseReason::ClientClosed);
    }

    /// Answers the requests in `input` into `out` (up to the output cap) and updates the
    /// session's deadlines. Returns how many bytes were used.
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>, shared: &Shared, now: Instant) -> usize {
        let batch = self
            .responder
            .respond(input, out, &shared.clock, shared.config.max_output);
        if let Some(end) = batch.end {
            self.ending = Some(match end {
                End::Quit => CloseReason::Quit,
                End::LineTooLong => CloseReason::LineTooLong,
                End::NotHttp => CloseReason::NotHttp,
            });
        }
        if batch.completed_line {
            self.last_request = now;
            self.line_started = None;
        }
        if self.line_started.is_none() && self.responder.in_line() {
            self.line_started = Some(now);
        }
        // Any batch can change which deadline comes first (a line started or ended, replies
        // backed up): have the timer checked. It is only reset when a deadline moved earlier.
        self.rearm = true;
        batch.used
    }

    /// Hands what was answered and the bytes moved since the last call to the server's metrics.
    fn count(&mut self, shared: &Shared, now: Instant) {
        self.counted_at = now;
        let t = self.responder.take_tally();
        shared.metrics.add_all(&[
            (Count::RequestTime, t.time),
            (Count::RequestQuit, t.quit),
            (Count::RequestOther, t.other),
            (Count::ErrorUnknownCommand, t.unknown_command),
            (Count::ErrorExtraArguments, t.extra_arguments),
            (Count::ErrorNotHttp, t.not_http),
            (Count::ErrorLineTooLong, t.line_too_long),
            (Count::ErrorMissingLineEnd, t.missing_line_end),
            (Count::ReceivedBytes, std::mem::take(&mut self.received)),
            (Count::SentBytes, std::mem::take(&mut self.sent)),
        ]);
    }

    /// Writes `bytes` now if the socket takes them; keeps what it does not. Returns how many
    /// were written.
    fn send(&mut self, stream: &TcpStream, bytes: &[u8], now: Instant) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let written = match stream.try_write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written < bytes.len() {
            if self.out.is_empty() {
                self.write_progress = now;
                self.rearm = true;
            }
            self.out.extend_from_slice(&bytes[written..]);
        }
        Ok(written)
    }

    /// Writes as much pending output as the socket takes.
    fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        while !self.out.is_empty() {
            match stream.try_write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                    self.write_progress = Instant::now();
                    self.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.out = Vec::new();
        // The write deadline is gone and parking may now be possible.
        self.rearm = true;
        Ok(())
    }

    fn next_deadline(&self, config: &ServerConfig) -> Instant {
        let after = |start: Instant, limit: Duration| (!limit.is_zero()).then(|| start + limit);
        [
            after(self.last_request, config.idle_timeout),
            self.line_started
                .and_then(|start| after(start, config.line_timeout)),
            (!self.out.is_empty())
                .then(|| after(self.write_progress, config.write_timeout))
                .flatten(),
            self.parkable()
                .then(|| after(self.last_activity, self.park_delay()))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + FAR_FUTURE)
    }

    /// The timer fired: end the session if a deadline passed, or re-arm for the next one.
    fn expired(
        &mut self,
        config: &ServerConfig,
        timer: Pin<&mut Sleep>,
        draining: bool,
    ) -> Option<Outcome> {
        let now = Instant::now();
        let passed = |start: Instant, limit: Duration| !limit.is_zero() && now >= start + limit;
        if !self.out.is_empty() && passed(self.write_progress, config.write_timeout) {
            return Some(Outcome::Close(CloseReason::WriteTimeout));
        }
        if let Some(start) = self.line_started {
            if passed(start, config.line_timeout) {
                self.queue_error(ErrorReply::LineTimeout);
                return Some(Outcome::Close(CloseReason::LineTimeout));
            }
        }
        if passed(self.last_request, config.idle_timeout) {
            self.queue_error(ErrorReply::IdleTimeout);
            return Some(Outcome::Close(CloseReason::IdleTimeout));
        }
        if !draining && self.parkable() && passed(self.last_activity, self.park_delay()) {
            return Some(Outcome::Park);
        }
        timer.reset(self.next_deadline(config));
        None
    }

    /// Whether nothing is in progress, so the session could be parked.
    fn parkable(&self) -> bool {
        !self.park_after.is_zero()
            && self.out.is_empty()
            && self.held.is_empty()
            && self.ending.is_none()
            && !self.responder.in_line()
    }

    /// Quiet time before parking: short for a connection that has not asked anything yet (a
    /// program sends at once; a person or an idle pool takes seconds), longer afterwards.
    fn park_delay(&self) -> Duration {
        if self.responder.requests() == 0 {
            self.park_after.min(FIRST_PARK_AFTER)
        } else {
            self.park_after
        }
    }

    /// Ends the session: sends what is owed, closes our side, and keeps reading briefly so that
    /// late client bytes cannot turn the close into a reset that destroys replies in flight.
    async fn close(
        &mut self,
        stream: &TcpStream,
        shared: &Shared,
        reason: CloseReason,
    ) -> CloseReason {
        let config = &shared.config;
        if !reason.closes_gracefully() {
            return reason;
        }
        while !self.out.is_empty() {
            let deadline = if config.write_timeout.is_zero() {
                Instant::now() + FAR_FUTURE
            } else {
                self.write_progress + config.write_timeout
            };
            match timeout_at(deadline, stream.writable()).await {
                Err(_) => return CloseReason::WriteTimeout,
                Ok(Err(e)) => return CloseReason::from_error(&e),
                Ok(Ok(())) => {
                    if let Err(e) = self.flush(stream) {
                        return CloseReason::from_error(&e);
                    }
                }
            }
        }
        if SockRef::from(stream).shutdown(Shutdown::Write).is_err() || self.peer_closed {
            return reason;
        }
        linger(stream, config.linger).await;
        reason
    }
}

/// Reads once; after a short read (the socket is drained) it also marks the socket not readable,
/// so the next wait goes to epoll instead of costing a read() that fails with EAGAIN.
///
/// The mark must be made against the readiness seen *before* the read: tokio only clears
/// readiness whose tick still matches, so an event that arrives during or after the read
/// survives. Clearing with a snapshot taken after the read would erase such an event, and with
/// edge-triggered epoll the session would then wait for data that is already there (a client
/// blocked on a full window sends nothing more to wake it).
fn read_marking_drained(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = None;
    let result = stream.try_io(Interest::READABLE, || {
        let n = (&*SockRef::from(stream)).read(buf)?;
        got = Some(n);
        if n > 0 && n < buf.len() {
            // Reported as WouldBlock only so that try_io clears the readiness it saw.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match got {
        Some(n) => Ok(n),
        None => result,
    }
}

/// Reads and discards until the client closes, for at most `limit` or [`LINGER_MAX_BYTES`].
pub(crate) async fn linger(stream: &TcpStream, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut discarded = 0;
    while discarded < LINGER_MAX_BYTES {
        match timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        let read = SCRATCH.with_borrow_mut(|scratch| stream.try_read(&mut scratch.input));
        match read {
            Ok(0) => return,
            Ok(n) => discarded += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
