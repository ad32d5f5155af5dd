//! The load generator behind `jam bench`: closed loop (`-c` connections × `-P` pipeline depth),
//! open loop at a fixed `--rate` (latency from each request's intended send time, so a stalled
//! server cannot hide its tail: no coordinated omission), or a new connection per request.
//!
//! Each load thread has its share of the connections and its own histogram; nothing is shared per
//! request except one atomic add per batch of replies. The closed loop, the mode that measures a
//! server's peak, runs on a plain mio event loop per thread ([`closed_loop`]), so the load
//! generator's own cost per request stays close to the system calls; the other modes, bounded by
//! their rate or by connecting, run on a single-threaded tokio runtime per thread.

mod closed_loop;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::reply::{LineEnd, Reply};

/// What counts as a good reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A time reply: exactly `JAM hh:mm:ss` CR LF when `strict` (benchmarks), else also the
    /// variants course servers send ([`crate::reply`]), counted apart as not exact.
    JamTime {
        /// Only the exact form is good.
        strict: bool,
    },
    /// A line starting with these bytes (e.g. `+PONG` for Redis).
    Prefix(Vec<u8>),
}

/// A good reply: in the exact form, or a variant of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Good {
    Exact,
    Variant,
}

impl Expect {
    /// Checks one raw reply line, its line end included.
    fn check(&self, raw: &[u8]) -> Result<Good, ErrorKind> {
        match self {
            Expect::JamTime { strict } => match Reply::parse(raw) {
                Reply::Time(t) if t.is_exact() => Ok(Good::Exact),
                Reply::Time(_) if !strict => Ok(Good::Variant),
                Reply::Time(_) | Reply::Invalid(_) => Err(ErrorKind::InvalidReply),
                Reply::Error(_) => Err(ErrorKind::ServerError),
            },
            Expect::Prefix(prefix) => {
                let (line, _) = LineEnd::split(raw);
                if line.starts_with(prefix) {
                    Ok(Good::Exact)
                } else if line.starts_with(b"ERR") || line.starts_with(b"-ERR") {
                    Err(ErrorKind::ServerError)
                } else {
                    Err(ErrorKind::InvalidReply)
                }
            }
        }
    }
}

/// How the load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Each connection keeps `pipeline` requests in flight.
    ClosedLoop,
    /// Requests are sent at this total rate (per second), whatever the replies do.
    OpenLoop(f64),
    /// Each request on a new connection: connect, request, reply, quit.
    ConnectPerRequest,
}

/// A benchmark run's settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Server address.
    pub target: SocketAddr,
    /// Concurrent connections (workers, with [`Mode::ConnectPerRequest`]).
    pub connections: usize,
    /// Requests in flight per connection (closed loop).
    pub pipeline: usize,
    /// Stop after this many requests…
    pub requests: Option<u64>,
    /// …or after this long.
    pub duration: Option<Duration>,
    /// How load is offered.
    pub mode: Mode,
    /// The request line, without CR LF.
    pub request: Vec<u8>,
    /// The goodbye line for connect-per-request (empty: just close).
    pub quit: Vec<u8>,
    /// What a good reply looks like.
    pub expect: Expect,
    /// Load threads.
    pub threads: usize,
    /// Longest wait for a reply or a connection.
    pub timeout: Duration,
    /// Local addresses to connect from, round robin (empty: let the kernel choose).
    pub sources: Vec<IpAddr>,
}

/// Kinds of failure, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// Connection refused.
    Refused,
    /// Connecting failed otherwise (timeout, no ports…).
    Connect,
    /// The connection was reset.
    Reset,
    /// The server closed the connection with requests outstanding.
    Closed,
    /// No reply within the timeout.
    Timeout,
    /// A reply that does not match `--expect`.
    InvalidReply,
    /// An error line from the server.
    ServerError,
}

impl ErrorKind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "connection refused",
            ErrorKind::Connect => "connect failed",
            ErrorKind::Reset => "connection reset",
            ErrorKind::Closed => "closed by server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidReply => "invalid reply",
            ErrorKind::ServerError => "server error",
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Valid replies.
    pub ok: u64,
    /// Valid replies that were a variant of the exact form (counted in `ok` too).
    pub variants: u64,
    /// Failures by kind (a failed connection counts the requests it could not send once).
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Wall time of the measurement.
    pub elapsed: Duration,
    /// Latency of valid replies, in nanoseconds.
    pub latency: Histogram<u64>,
    /// CPU time the load generator itself used (user + system).
    pub cpu: Duration,
    /// Connections that were established.
    pub connections: u64,
    /// The run was ended early through [`Progress::interrupt`].
    pub interrupted: bool,
}

impl BenchReport {
    /// Valid replies per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The load generator's CPU use as a share of one core.
    pub fn cpu_share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Progress counters, readable while a run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    /// Valid replies so far.
    pub ok: AtomicU64,
    /// Failures so far.
    pub errors: AtomicU64,
    /// Set (e.g. on Ctrl-C) to end the run early: no new requests are sent, those in flight are
    /// awaited (within the timeout), and the report covers what was done.
    pub interrupt: Arc<AtomicBool>,
}

/// Shared run state: the request budget and the stop flag.
struct Control {
    /// Requests not yet handed out (with `-n`); unused with `-z`.
    budget: Option<AtomicI64>,
    stop: AtomicBool,
    progress: Arc<Progress>,
    deadline: Option<Instant>,
}

impl Control {
    /// Takes up to `want` requests from the budget; 0 when the run is over.
    fn take(&self, want: usize) -> usize {
        self.take_with(want, Instant::now)
    }

    /// [`Control::take`] for a caller that has just read the clock anyway.
    fn take_at(&self, want: usize, now: Instant) -> usize {
        self.take_with(want, || now)
    }

    /// [`Control::take`], reading the clock only if the run has a deadline.
    fn take_with(&self, want: usize, now: impl FnOnce() -> Instant) -> usize {
        if self.stop.load(Ordering::Relaxed) {
            return 0;
        }
        if self.progress.interrupt.load(Ordering::Relaxed) {
            self.stop.store(true, Ordering::Relaxed);
            return 0;
        }
        if self.deadline.is_some_and(|d| now() >= d) {
            self.stop.store(true, Ordering::Relaxed);
            return 0;
        }
        match &self.budget {
            None => want,
            Some(budget) => {
                let want = want as i64;
                let before = budget.fetch_sub(want, Ordering::Relaxed);
                before.clamp(0, want) as usize
            }
        }
    }
}

/// Per-thread results, merged at the end.
struct ThreadStats {
    ok: u64,
    variants: u64,
    errors: BTreeMap<ErrorKind, u64>,
    latency: Histogram<u64>,
    connections: u64,
}

impl ThreadStats {
    fn new() -> Self {
        ThreadStats {
            ok: 0,
            variants: 0,
            errors: BTreeMap::new(),
            latency: new_histogram(),
            connections: 0,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 100 s at 3 significant digits; values are clamped into range.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

type Stats = Rc<RefCell<ThreadStats>>;

/// Runs a benchmark to completion. `progress` is updated as replies arrive.
pub fn run(config: &BenchConfig, progress: Arc<Progress>) -> BenchReport {
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    let control = Arc::new(Control {
        budget: config.requests.map(|n| AtomicI64::new(n as i64)),
        stop: AtomicBool::new(false),
        progress,
        deadline: config.duration.map(|d| start + d),
    });
    let threads = config.threads.clamp(1, config.connections.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let config = config.clone();
            let control = control.clone();
            std::thread::Builder::new()
                .name(format!("jam-bench-{t}"))
                .spawn(move || run_thread(t, threads, &config, &control))
        })
        .collect();
    let mut report = BenchReport {
        ok: 0,
        variants: 0,
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
        latency: new_histogram(),
        cpu: Duration::ZERO,
        connections: 0,
        interrupted: false,
    };
    for handle in handles {
        let Ok(handle) = handle else { continue };
        let Ok(stats) = handle.join() else { continue };
        report.ok += stats.ok;
        report.variants += stats.variants;
        report.connections += stats.connections;
        for (kind, n) in stats.errors {
            *report.errors.entry(kind).or_default() += n;
        }
        let _ = report.latency.add(&stats.latency);
    }
    report.elapsed = start.elapsed();
    report.cpu = process_cpu_time().saturating_sub(cpu_before);
    report.interrupted = control.progress.interrupt.load(Ordering::Relaxed);
    report
}

fn run_thread(
    index: usize,
    threads: usize,
    config: &BenchConfig,
    control: &Arc<Control>,
) -> ThreadStats {
    let stats: Stats = Rc::new(RefCell::new(ThreadStats::new()));
    // This thread's connections: index, index + threads, …
    let mine: Vec<usize> = (index..config.connections).step_by(threads).collect();
    if config.mode == Mode::ClosedLoop {
        closed_loop::run(&mine, config, control, &stats);
        return Rc::try_unwrap(stats)
            .map(RefCell::into_inner)
            .unwrap_or_else(|_| ThreadStats::new());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return ThreadStats::new(),
    };
    let local = tokio::task::LocalSet::new();
    let per_conn_rate = match config.mode {
        Mode::OpenLoop(rate) => rate / config.connections.max(1) as f64,
        _ => 0.0,
    };
    local.block_on(&runtime, async {
        let mut tasks = Vec::new();
        for conn in mine {
            let config = config.clone();
            let control = control.clone();
            let stats = stats.clone();
            tasks.push(tokio::task::spawn_local(async move {
                if let Mode::OpenLoop(_) = config.mode {
                    open_loop(conn, per_conn_rate, &config, &control, &stats).await;
                } else {
                    // The closed loop returned above: this is connect-per-request.
                    connect_per_request(conn, &config, &control, &stats).await;
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .unwrap_or_else(|_| ThreadStats::new())
}

fn fail(stats: &Stats, control: &Control, kind: ErrorKind, count: u64) {
    if count == 0 {
        return;
    }
    *stats.borrow_mut().errors.entry(kind).or_default() += count;
    control.progress.errors.fetch_add(count, Ordering::Relaxed);
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => ErrorKind::Reset,
        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Closed,
    }
}

async fn connect(conn: usize, config: &BenchConfig) -> Result<TcpStream, ErrorKind> {
    let deadline = Instant::now() + config.timeout;
    let attempt = async {
        let socket = match config.target {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }?;
        if !config.sources.is_empty() {
            let source = config.sources[conn % config.sources.len()];
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(source, 0))?;
        }
        socket.connect(config.target).await
    };
    match timeout_at(deadline, attempt).await {
        Err(_) => Err(ErrorKind::Connect),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(ErrorKind::Refused),
        Ok(Err(_)) => Err(ErrorKind::Connect),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// `copies` request lines back to back, ready to be sliced for any batch size.
fn request_block(config: &BenchConfig, copies: usize) -> Vec<u8> {
    let mut line = config.request.clone();
    line.extend_from_slice(b"\r\n");
    line.repeat(copies.max(1))
}

/// Reply lines found in a read buffer, handed out one at a time; keeps a partial line.
struct LineReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl LineReader {
    fn new() -> Self {
        LineReader {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Room for more bytes after the partial line kept (moved to the front); the caller adds what
    /// it reads there to `end`. An error if a single line fills the whole buffer.
    fn spare(&mut self) -> std::io::Result<&mut [u8]> {
        if self.start == self.end {
            // Nothing kept (the usual case): no copy needed.
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "reply line too long",
            ));
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Reads more bytes; `Ok(false)` at EOF.
    async fn fill(&mut self, stream: &mut TcpStream) -> std::io::Result<bool> {
        let n = stream.read(self.spare()?).await?;
        self.end += n;
        Ok(n > 0)
    }
}

/// Requests in flight, oldest first, as runs of requests sent (or due) at the same instant, so a
/// pipelined batch costs one entry and one histogram record, not one per request.
#[derive(Debug, Default)]
struct InFlight {
    runs: VecDeque<(Instant, u64)>,
    len: usize,
    /// How many of the newest requests are due but not yet fully written (a loop that counts
    /// requests when they are granted, before the write): no reply can answer those.
    unwritten: usize,
}

impl InFlight {
    fn push(&mut self, at: Instant, n: usize) {
        if n == 0 {
            return;
        }
        match self.runs.back_mut() {
            Some((last, count)) if *last == at => *count += n as u64,
            _ => self.runs.push_back((at, n as u64)),
        }
        self.len += n;
    }

    /// Removes the `n` newest requests (ones the budget did not allow after all).
    fn drop_newest(&mut self, mut n: usize) {
        while n > 0 {
            let Some((_, count)) = self.runs.back_mut() else {
                return;
            };
            let take = (n as u64).min(*count);
            *count -= take;
            self.len -= take as usize;
            n -= take as usize;
            if *count == 0 {
                self.runs.pop_back();
            }
        }
    }

    /// Removes the `n` oldest requests, calling `record(sent_at, count)` once per run.
    fn take_oldest(&mut self, mut n: usize, mut record: impl FnMut(Instant, u64)) {
        while n > 0 {
            let Some((at, count)) = self.runs.front_mut() else {
                return;
            };
            let take = (n as u64).min(*count);
            record(*at, take);
            *count -= take;
            self.len -= take as usize;
            n -= take as usize;
            if *count == 0 {
                self.runs.pop_front();
            }
        }
    }

    #[cfg(test)]
    fn pop_oldest(&mut self) -> Option<Instant> {
        let (at, count) = self.runs.front_mut()?;
        let at = *at;
        *count -= 1;
        if *count == 0 {
            self.runs.pop_front();
        }
        self.len -= 1;
        Some(at)
    }

    fn oldest(&self) -> Option<Instant> {
        self.runs.front().map(|&(at, _)| at)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Checks replies against the expectation; a line equal to the last good one is good at once
/// (a jam server's reply changes once a second).
struct Checker {
    expect: Expect,
    /// The last good raw line, its line end included (so a match is a whole line).
    last_good: Vec<u8>,
    last_verdict: Good,
}

impl Checker {
    fn new(expect: &Expect) -> Self {
        Checker {
            expect: expect.clone(),
            last_good: Vec::new(),
            last_verdict: Good::Exact,
        }
    }

    /// Checks one raw line, its line end included.
    fn check(&mut self, raw: &[u8]) -> Result<Good, ErrorKind> {
        if !self.last_good.is_empty() && same_bytes(raw, &self.last_good) {
            return Ok(self.last_verdict);
        }
        let verdict = self.expect.check(raw)?;
        self.last_good.clear();
        self.last_good.extend_from_slice(raw);
        self.last_verdict = verdict;
        Ok(verdict)
    }
}

/// Byte equality that compares short lines (8–16 bytes, like `JAM hh:mm:ss`) with two 8-byte
/// loads instead of a call to `memcmp`.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word =
            |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Counts one more bad line of `kind`.
fn count_kind(counts: &mut Vec<(ErrorKind, u64)>, kind: ErrorKind) {
    match counts.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += 1,
        None => counts.push((kind, 1)),
    }
}

/// Checks each complete reply line (in order, against the requests in flight) and records the
/// latencies of the answered requests. Returns false if any reply was wrong.
fn take_replies(
    reader: &mut LineReader,
    in_flight: &mut InFlight,
    checker: &mut Checker,
    now: Instant,
    stats: &Stats,
    control: &Control,
) -> bool {
    let window = &reader.buf[reader.start..reader.end];
    let mut pos = 0;
    let mut lines = 0;
    let mut bad_lines = 0u64;
    let mut variants = 0u64;
    // Bad lines by kind: a Vec, empty and free in the usual case (a map costs a visible share of
    // a request at depth 1 just to be created and dropped).
    let mut bad: Vec<(ErrorKind, u64)> = Vec::new();
    while pos < window.len() {
        let rest = &window[pos..];
        // Fast path: the same reply as the last good one, line end included (no search needed).
        let known = checker.last_good.len();
        let repeat =
            known > 0 && rest.len() >= known && same_bytes(&rest[..known], &checker.last_good);
        let end = if repeat {
            known
        } else {
            match memchr::memchr(b'\n', rest) {
                Some(i) => i + 1,
                None => break,
            }
        };
        if lines == in_flight.len().saturating_sub(in_flight.unwritten) {
            // More replies than requests written: the stream no longer lines up.
            count_kind(&mut bad, ErrorKind::InvalidReply);
            break;
        }
        lines += 1;
        let verdict = if repeat {
            Ok(checker.last_verdict)
        } else {
            checker.check(&rest[..end])
        };
        match verdict {
            Ok(Good::Exact) => {}
            Ok(Good::Variant) => variants += 1,
            Err(kind) => {
                count_kind(&mut bad, kind);
                bad_lines += 1;
            }
        }
        pos += end;
    }
    reader.start += pos;
    // An extra reply (more than were asked for) is an error but not one of the `lines`.
    let good = lines as u64 - bad_lines.min(lines as u64);
    let mut stats_ref = stats.borrow_mut();
    // Latencies are recorded when the whole batch was good (the usual case); a batch with a bad
    // reply ends the connection anyway.
    let clean = bad.is_empty();
    in_flight.take_oldest(lines, |at, n| {
        if clean {
            stats_ref
                .latency
                .saturating_record_n(nanos(now.saturating_duration_since(at)), n);
        }
    });
    stats_ref.ok += good;
    stats_ref.variants += variants;
    drop(stats_ref);
    control.progress.ok.fetch_add(good, Ordering::Relaxed);
    if clean {
        return true;
    }
    for (kind, n) in bad {
        fail(stats, control, kind, n);
    }
    false
}

async fn open_loop(conn: usize, rate: f64, config: &BenchConfig, control: &Control, stats: &Stats) {
    if rate <= 0.0 {
        return;
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut stream = match connect(conn, config).await {
        Ok(s) => s,
        Err(kind) => return fail(stats, control, kind, 1),
    };
    stats.borrow_mut().connections += 1;
    let line_len = config.request.len() + 2;
    let block = request_block(config, 64);
    let mut reader = LineReader::new();
    let mut checker = Checker::new(&config.expect);
    let mut sent = InFlight::default();
    // Spread the connections' schedules over one interval.
    let phase = interval.mul_f64((conn % 1024) as f64 / 1024.0);
    let mut next = Instant::now() + phase;
    let mut done = false;
    loop {
        if !done && Instant::now() >= next {
            // Send every request whose intended time has come, stamped with that time.
            let now = Instant::now();
            let mut due = 0;
            while next <= now && due < 64 {
                sent.push(next, 1);
                next += interval;
                due += 1;
            }
            let granted = control.take(due);
            sent.drop_newest(due - granted);
            if granted == 0 {
                done = true;
            } else if let Err(e) = stream.write_all(&block[..granted * line_len]).await {
                return fail(stats, control, io_kind(&e), sent.len() as u64);
            }
        }
        if done && sent.is_empty() {
            return;
        }
        let reply_deadline = sent.oldest().map(|t| t + config.timeout);
        let wake = match (done, reply_deadline) {
            (false, Some(d)) => d.min(next),
            (false, None) => next,
            (true, Some(d)) => d,
            (true, None) => return,
        };
        tokio::select! {
            filled = reader.fill(&mut stream) => match filled {
                Err(e) => return fail(stats, control, io_kind(&e), sent.len() as u64),
                Ok(false) => return fail(stats, control, ErrorKind::Closed, sent.len() as u64),
                Ok(true) => {
                    if !take_replies(&mut reader, &mut sent, &mut checker, Instant::now(), stats, control) {
                        return fail(stats, control, ErrorKind::InvalidReply, sent.len() as u64);
                    }
                }
            },
            () = sleep_until(wake) => {
                if reply_deadline.is_some_and(|d| Instant::now() >= d) {
                    return fail(stats, control, ErrorKind::Timeout, sent.len() as u64);
                }
            }
        }
    }
}

async fn connect_per_request(conn: usize, config: &BenchConfig, control: &Control, stats: &Stats) {
    let mut request = config.request.clone();
    request.extend_from_slice(b"\r\n");
    let mut quit = config.quit.clone();
    if !quit.is_empty() {
        quit.extend_from_slice(b"\r\n");
    }
    let mut reader = LineReader::new();
    let mut checker = Checker::new(&config.expect);
    let mut attempt = conn;
    while control.take(1) == 1 {
        let start = Instant::now();
        let mut stream = match connect(attempt, config).await {
            Ok(s) => s,
            Err(kind) => {
                fail(stats, control, kind, 1);
                continue;
            }
        };
        attempt = attempt.wrapping_add(config.connections.max(1));
        stats.borrow_mut().connections += 1;
        reader.start = 0;
        reader.end = 0;
        if let Err(e) = stream.write_all(&request).await {
            fail(stats, control, io_kind(&e), 1);
            continue;
        }
        let mut sent = InFlight::default();
        sent.push(start, 1);
        let deadline = start + config.timeout;
        while !sent.is_empty() {
            match timeout_at(deadline, reader.fill(&mut stream)).await {
                Err(_) => fail(stats, control, ErrorKind::Timeout, 1),
                Ok(Err(e)) => fail(stats, control, io_kind(&e), 1),
                Ok(Ok(false)) => fail(stats, control, ErrorKind::Closed, 1),
                Ok(Ok(true)) => {
                    let now = Instant::now();
                    take_replies(&mut reader, &mut sent, &mut checker, now, stats, control);
                    continue;
                }
            }
            break;
        }
        if !quit.is_empty() && stream.write_all(&quit).await.is_ok() {
            // Wait for the server to close first, as a polite client does: the TIME_WAIT state
            // then stays with the server's port, and the client's ports are free at once for
            // the next connections (with thousands in TIME_WAIT, bind() slows down markedly).
            let mut sink = [0u8; 256];
            let _ = timeout_at(Instant::now() + config.timeout, async {
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }
}

/// Local addresses 127.0.0.1 … 127.0.0.n, to spread many connections to a loopback server over
/// several source addresses, each with its own ephemeral ports.
pub fn loopback_sources(target: SocketAddr, n: u8) -> Vec<IpAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => (1..=n.max(1))
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect(),
        _ => Vec::new(),
    }
}

/// CPU time (user + system) used by this process so far, from /proc (zero where unavailable).
fn process_cpu_time() -> Duration {
    cpu_time_of("self")
}

/// CPU time (user + system) used so far by process `pid` (a number or `self`), from /proc.
fn cpu_time_of(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start at field 3.
    let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name; USER_HZ is 100.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strict_jam_expectation_takes_only_the_exact_form() {
        let e = Expect::JamTime { strict: true };
        assert_eq!(e.check(b"JAM 08:05:09\r\n"), Ok(Good::Exact));
        assert_eq!(e.check(b"JAM 8:05:09\r\n"), Err(ErrorKind::InvalidReply));
        assert_eq!(e.check(b"JAM 08:05:09\n"), Err(ErrorKind::InvalidReply));
        assert_eq!(e.check(b"ERR server busy\r\n"), Err(ErrorKind::ServerError));
        let redis = Expect::Prefix(b"+PONG".to_vec());
        assert_eq!(redis.check(b"+PONG\r\n"), Ok(Good::Exact));
        assert_eq!(redis.check(b"-ERR x\r\n"), Err(ErrorKind::ServerError));
        assert_eq!(redis.check(b"+OK\r\n"), Err(ErrorKind::InvalidReply));
    }

    #[test]
    fn a_tolerant_jam_expectation_takes_variants_as_good_but_not_exact() {
        let e = Expect::JamTime { strict: false };
        assert_eq!(e.check(b"JAM 08:05:09\r\n"), Ok(Good::Exact));
        assert_eq!(e.check(b"JAM 30-11-2026 08:05:09\r\n"), Ok(Good::Variant));
        assert_eq!(e.check(b"JAM 08:05:09\n"), Ok(Good::Variant));
        assert_eq!(e.check(b"08:05:09\r\n"), Ok(Good::Variant));
        assert_eq!(
            e.check(b"WARNING: Invalid Command!\r\n"),
            Err(ErrorKind::InvalidReply)
        );
    }

    #[test]
    fn budget_is_never_overdrawn() {
        let control = Control {
            budget: Some(AtomicI64::new(10)),
            stop: AtomicBool::new(false),
            progress: Arc::default(),
            deadline: None,
        };
        assert_eq!(control.take(4), 4);
        assert_eq!(control.take(4), 4);
        assert_eq!(control.take(4), 2);
        assert_eq!(control.take(4), 0);
    }

    #[test]
    fn in_flight_runs_pop_in_order_and_drop_from_the_back() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let mut f = InFlight::default();
        f.push(t0, 2);
        f.push(t0, 1);
        f.push(t1, 2);
        assert_eq!(f.len(), 5);
        f.drop_newest(3);
        assert_eq!(f.len(), 2);
        assert_eq!(f.pop_oldest(), Some(t0));
        assert_eq!(f.pop_oldest(), Some(t0));
        assert_eq!(f.pop_oldest(), None);
        assert!(f.is_empty());
    }

    #[test]
    fn same_bytes_matches_slice_equality() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"JAM 01:02:03", b"JAM 01:02:03"),
            (b"JAM 01:02:03", b"JAM 01:02:04"),
            (b"JAM 01:02:03", b"XAM 01:02:03"),
            (b"JAM 01:02:0", b"JAM 01:02:03"),
            (b"+PONG", b"+PONG"),
            (b"VERSION 1.6.18 x", b"VERSION 1.6.18 y"),
        ];
        for (a, b) in cases {
            assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn checker_accepts_a_repeat_of_the_last_good_line_and_still_rejects_bad_ones() {
        let mut c = Checker::new(&Expect::JamTime { strict: false });
        assert_eq!(c.check(b"JAM 01:02:03\r\n"), Ok(Good::Exact));
        assert_eq!(c.check(b"JAM 01:02:03\r\n"), Ok(Good::Exact));
        assert_eq!(c.check(b"JAM 01:02:63\r\n"), Err(ErrorKind::InvalidReply));
        assert_eq!(c.check(b"JAM 01:02:04\n"), Ok(Good::Variant));
        assert_eq!(c.check(b"JAM 01:02:04\n"), Ok(Good::Variant));
        assert_eq!(c.check(b"JAM 01:02:04\r\n"), Ok(Good::Exact));
    }

    /// Runs `take_replies` on `data` with `in_flight`; returns whether it was clean, the stats
    /// and the reader.
    fn take(data: &[u8], in_flight: &mut InFlight) -> (bool, Stats, LineReader) {
        let mut reader = LineReader::new();
        reader.buf[..data.len()].copy_from_slice(data);
        reader.end = data.len();
        let mut checker = Checker::new(&Expect::JamTime { strict: false });
        let stats: Stats = Rc::new(RefCell::new(ThreadStats::new()));
        let control = Control {
            budget: None,
            stop: AtomicBool::new(false),
            progress: Arc::default(),
            deadline: None,
        };
        let clean = take_replies(
            &mut reader,
            in_flight,
            &mut checker,
            Instant::now(),
            &stats,
            &control,
        );
        (clean, stats, reader)
    }

    #[test]
    fn replies_are_taken_whole_and_a_partial_one_waits_for_the_next_read() {
        let mut in_flight = InFlight::default();
        in_flight.push(Instant::now(), 3);
        let (clean, stats, reader) =
            take(b"JAM 01:02:03\r\nJAM 01:02:03\r\nJAM 01:0", &mut in_flight);
        assert!(clean);
        assert_eq!(stats.borrow().ok, 2);
        assert_eq!(in_flight.len(), 1);
        assert_eq!(&reader.buf[reader.start..reader.end], b"JAM 01:0");
    }

    #[test]
    fn variant_replies_are_good_and_counted_as_not_exact_also_when_repeated() {
        let mut in_flight = InFlight::default();
        in_flight.push(Instant::now(), 4);
        let data =
            b"JAM 01:02:03\r\nJAM 30-11-2026 01:02:03\r\nJAM 30-11-2026 01:02:03\r\nJAM 01:02:03\n";
        let (clean, stats, _) = take(data, &mut in_flight);
        assert!(clean);
        assert_eq!(stats.borrow().ok, 4);
        assert_eq!(stats.borrow().variants, 3);
    }

    #[test]
    fn a_reply_to_a_request_not_yet_written_is_invalid() {
        // Three requests are due but only one is written: a second reply cannot be an answer.
        let mut in_flight = InFlight::default();
        in_flight.push(Instant::now(), 3);
        in_flight.unwritten = 2;
        let (clean, stats, _) = take(b"JAM 01:02:03\r\nJAM 01:02:03\r\n", &mut in_flight);
        assert!(!clean);
        assert_eq!(stats.borrow().ok, 1);
        assert_eq!(
            stats.borrow().errors.get(&ErrorKind::InvalidReply),
            Some(&1)
        );
    }

    #[test]
    fn cpu_time_is_readable() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_time() > Duration::ZERO);
    }
}
