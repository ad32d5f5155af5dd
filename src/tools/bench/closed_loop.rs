//! The closed loop of `jam bench` on a plain mio event loop, one per load thread.
//!
//! Between a reply and the next request there is nothing but epoll, `read` and `write`: no task
//! wakeup, no future, no timer. Reply timeouts are found by scanning the thread's connections a
//! few times per timeout period instead of arming a timer per read, which at pipeline depth 1
//! would cost more than the request itself.

use std::io::{self, Read, Write};
use std::time::Duration;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::time::Instant;

use super::{
    BenchConfig, Checker, Control, ErrorKind, InFlight, LineReader, Stats, fail, io_kind,
    request_block, take_replies,
};

/// Runs this thread's connections (`mine`, by connection number) until each one is done.
pub(super) fn run(mine: &[usize], config: &BenchConfig, control: &Control, stats: &Stats) {
    let depth = config.pipeline.max(1);
    let Ok(mut poll) = Poll::new() else {
        // No event loop, no connections: count the requests they would have sent.
        for _ in mine {
            fail(
                stats,
                control,
                ErrorKind::Connect,
                control.take(depth) as u64,
            );
        }
        return;
    };
    let block = request_block(config, depth);
    let ctx = Context {
        block: &block,
        line_len: config.request.len() + 2,
        control,
        stats,
    };
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(mine.len());
    for &number in mine {
        let first = control.take(depth);
        if first == 0 {
            break;
        }
        let token = Token(conns.len());
        match Conn::connect(number, first, config, poll.registry(), token) {
            Ok(conn) => conns.push(Some(conn)),
            Err(kind) => fail(stats, control, kind, first as u64),
        }
    }
    let mut live = conns.len();
    // Timeouts are checked this often: late by at most an eighth of the timeout, and never more
    // than 100 ms, without a wakeup per connection.
    let scan_every =
        (config.timeout / 8).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let mut now = Instant::now();
    let mut next_scan = now + scan_every;
    let mut events = Events::with_capacity(1024);
    while live > 0 {
        let wait = next_scan.saturating_duration_since(now);
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // epoll_wait itself failed (not seen in practice): count what is outstanding rather
            // than hang or lose it.
            for conn in conns.iter_mut().filter_map(Option::take) {
                fail(stats, control, ErrorKind::Closed, conn.outstanding() as u64);
            }
            return;
        }
        for event in &events {
            let slot = &mut conns[event.token().0];
            let Some(conn) = slot else { continue };
            if let Err(end) = conn.on_event(event, &ctx) {
                end.count(&ctx);
                *slot = None;
                live -= 1;
            }
        }
        now = Instant::now();
        if now >= next_scan {
            next_scan = now + scan_every;
            for slot in &mut conns {
                if let Some(end) = slot.as_ref().and_then(|c| c.overdue(now, config.timeout)) {
                    end.count(&ctx);
                    *slot = None;
                    live -= 1;
                }
            }
        }
    }
}

/// What every connection of the thread shares.
struct Context<'a> {
    /// `pipeline` request lines back to back; what is owed is always a tail of it.
    block: &'a [u8],
    line_len: usize,
    control: &'a Control,
    stats: &'a Stats,
}

/// Why a connection is closed.
enum End {
    /// Every request it was granted is answered, and the run grants no more.
    Finished,
    /// It failed; `count` requests are lost to it.
    Failed(ErrorKind, usize),
}

impl End {
    fn count(self, ctx: &Context) {
        if let End::Failed(kind, count) = self {
            fail(ctx.stats, ctx.control, kind, count as u64);
        }
    }
}

/// One connection of the closed loop.
struct Conn {
    stream: TcpStream,
    /// Requests granted before the connection was up (0 once it is).
    first: usize,
    /// When connecting started, then when the last reply bytes came in.
    last_progress: Instant,
    reader: LineReader,
    checker: Checker,
    /// Every granted request, written or not, stamped with when it was due.
    sent: InFlight,
    /// Request bytes granted but not yet taken by the socket.
    owed: usize,
}

impl Conn {
    /// Starts a non-blocking connect (from the connection's source address, if any) and
    /// registers the socket; `first` requests go out once it is connected.
    fn connect(
        number: usize,
        first: usize,
        config: &BenchConfig,
        registry: &mio::Registry,
        token: Token,
    ) -> Result<Conn, ErrorKind> {
        let refused = |e: io::Error| {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                ErrorKind::Refused
            } else {
                ErrorKind::Connect
            }
        };
        let socket = Socket::new(
            Domain::for_address(config.target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(refused)?;
        socket.set_nonblocking(true).map_err(refused)?;
        if !config.sources.is_empty() {
            let source = config.sources[number % config.sources.len()];
            socket.set_reuse_address(true).map_err(refused)?;
            socket
                .bind(&SockAddr::from(std::net::SocketAddr::new(source, 0)))
                .map_err(refused)?;
        }
        match socket.connect(&SockAddr::from(config.target)) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(refused(e)),
        }
        let mut stream = TcpStream::from_std(socket.into());
        registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(refused)?;
        Ok(Conn {
            stream,
            first,
            last_progress: Instant::now(),
            reader: LineReader::new(),
            checker: Checker::new(&config.expect),
            sent: InFlight::default(),
            owed: 0,
        })
    }

    /// Requests this connection holds that have not been answered.
    fn outstanding(&self) -> usize {
        if self.first > 0 {
            self.first
        } else {
            self.sent.len()
        }
    }

    /// Handles one readiness event; `Err` when the connection is to be closed.
    fn on_event(&mut self, event: &Event, ctx: &Context) -> Result<(), End> {
        if self.first > 0 && !self.finish_connect(ctx)? {
            return Ok(());
        }
        let closing = event.is_read_closed() || event.is_error();
        if event.is_readable() || closing {
            self.read_replies(closing, ctx)?;
        }
        if self.owed > 0 {
            self.flush(ctx)?;
        }
        if self.sent.is_empty() {
            return Err(End::Finished);
        }
        Ok(())
    }

    /// Checks a connect in progress; once it is up, sends the first requests. `Ok(false)`: not
    /// yet (a spurious wakeup).
    fn finish_connect(&mut self, ctx: &Context) -> Result<bool, End> {
        let failed = |e: io::Error| {
            let kind = if e.kind() == io::ErrorKind::ConnectionRefused {
                ErrorKind::Refused
            } else {
                ErrorKind::Connect
            };
            End::Failed(kind, self.first)
        };
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => return Err(failed(e)),
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(failed(e)),
        }
        let _ = self.stream.set_nodelay(true);
        ctx.stats.borrow_mut().connections += 1;
        let now = Instant::now();
        self.last_progress = now;
        self.sent.push(now, self.first);
        self.owed = self.first * ctx.line_len;
        self.sent.unwritten = self.first;
        self.first = 0;
        Ok(true)
    }

    /// Reads and checks replies until the socket is drained, granting a new request for each
    /// one answered (the writes follow in one go).
    fn read_replies(&mut self, closing: bool, ctx: &Context) -> Result<(), End> {
        loop {
            let space = match self.reader.spare() {
                Ok(space) => space,
                Err(e) => return Err(End::Failed(io_kind(&e), self.sent.len())),
            };
            let room = space.len();
            let n = match (&self.stream).read(space) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(End::Failed(io_kind(&e), self.sent.len())),
            };
            if n == 0 {
                return Err(End::Failed(ErrorKind::Closed, self.sent.len()));
            }
            self.reader.end += n;
            let now = Instant::now();
            self.last_progress = now;
            let before = self.sent.len();
            let sent = &mut self.sent;
            if !take_replies(
                &mut self.reader,
                sent,
                &mut self.checker,
                now,
                ctx.stats,
                ctx.control,
            ) {
                // A wrong reply may mean replies and requests no longer line up: give up on this
                // connection (take_replies counted the wrong ones).
                return Err(End::Failed(ErrorKind::InvalidReply, 0));
            }
            let answered = before - sent.len();
            if answered > 0 {
                // The new requests are due now: the write follows before the next wait.
                let grant = ctx.control.take_at(answered, now);
                sent.push(now, grant);
                self.owed += grant * ctx.line_len;
                sent.unwritten = self.owed.div_ceil(ctx.line_len);
            }
            if sent.is_empty() {
                return Ok(());
            }
            // A short read emptied the receive queue: data arriving later raises a new
            // edge-triggered event, so another read now would only return WouldBlock (one
            // system call per reply at depth 1). Unless the peer has closed, which raises no
            // further event: then read on to the end of file.
            if n < room && !closing {
                return Ok(());
            }
        }
    }

    /// Writes owed requests until done or the socket is full (a writable event resumes).
    fn flush(&mut self, ctx: &Context) -> Result<(), End> {
        // Replies only ever answer written requests, so no more than the whole block is owed.
        debug_assert!(self.owed <= ctx.block.len());
        while self.owed > 0 {
            // The block repeats one line, so the owed bytes are exactly its tail.
            let tail = &ctx.block[ctx.block.len() - self.owed..];
            match (&self.stream).write(tail) {
                Ok(0) => return Err(End::Failed(ErrorKind::Closed, self.sent.len())),
                Ok(n) => {
                    self.owed -= n;
                    self.sent.unwritten = self.owed.div_ceil(ctx.line_len);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Failed(io_kind(&e), self.sent.len())),
            }
        }
        Ok(())
    }

    /// The failure, if the connect or the oldest reply has taken longer than `timeout`.
    fn overdue(&self, now: Instant, timeout: Duration) -> Option<End> {
        // A timeout too large to add to an instant means "never".
        if self
            .last_progress
            .checked_add(timeout)
            .is_none_or(|deadline| now < deadline)
        {
            return None;
        }
        if self.first > 0 {
            Some(End::Failed(ErrorKind::Connect, self.first))
        } else {
            Some(End::Failed(ErrorKind::Timeout, self.sent.len()))
        }
    }
}
