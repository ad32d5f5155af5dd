//! The accept loop: take a connection, check the connection limit, spawn its session. Nothing else.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::clock::LocalClock;
use crate::config::ServerConfig;
use crate::connection;
use crate::metrics::{self, Count, Gauges, Metrics};
use crate::parker::{Meta, Parker};
use crate::per_ip::{OverLimit, PerIp, PerIpGuard};
use crate::protocol::ErrorReply;
use crate::proxy;
use crate::service::{self, Service};

/// How many "server busy" replies may be in progress at once; past that, excess connections are
/// closed without one, so a flood cannot use the descriptors kept free for them.
const MAX_REJECTING: usize = 32;

/// How long a PROXY header may take when the line timeout is off.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a warning of one kind (accept errors, busy rejections) may be logged.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// State shared by the accept loops and every session.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) clock: LocalClock,
    active: AtomicUsize,
    next_id: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    rejecting: Arc<Semaphore>,
    busy_warning: std::sync::Mutex<RateLimit>,
    proxy_warning: std::sync::Mutex<RateLimit>,
    /// Holds idle sessions; set when the server starts running.
    pub(crate) parker: OnceLock<Parker>,
    /// Sessions parked now.
    pub(crate) parked: AtomicUsize,
    /// Counters for the metrics endpoint.
    pub(crate) metrics: Arc<Metrics>,
    /// Open connections per client address, when that limit is on.
    per_ip: Option<PerIp>,
}

/// Counts kept by a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sessions open now.
    pub active: usize,
    /// Connections accepted and served so far.
    pub accepted: u64,
    /// Connections turned away (server busy, or too many from one address).
    pub rejected: u64,
    /// Sessions that are quiet and parked (counted in `active` too).
    pub parked: usize,
}

/// A handle to read a running server's counts.
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl StatsHandle {
    /// The counts now.
    pub fn get(&self) -> Stats {
        self.0.stats()
    }

    /// The server's metrics in the OpenMetrics text format.
    pub fn render_metrics(&self) -> String {
        let stats = self.0.stats();
        metrics::render(
            &self.0.metrics,
            Gauges {
                active: stats.active,
                parked: stats.parked,
                max_connections: self.0.config.max_connections,
            },
        )
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
}

impl Shared {
    fn stats(&self) -> Stats {
        Stats {
            active: self.active.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
        }
    }
}

/// A jam server over already-bound listeners.
pub struct Server {
    listeners: Vec<(TcpListener, Service)>,
    shared: Arc<Shared>,
}

impl Server {
    /// A server that will accept on `listeners`, with `config` limits, reading `clock`.
    pub fn new(listeners: Vec<TcpListener>, config: ServerConfig, clock: LocalClock) -> Self {
        Server {
            listeners: listeners
                .into_iter()
                .map(|listener| (listener, Service::Jam))
                .collect(),
            shared: Arc::new(Shared {
                per_ip: config.per_ip_limit().map(PerIp::new),
                config,
                clock,
                active: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                accepted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                rejecting: Arc::new(Semaphore::new(MAX_REJECTING)),
                busy_warning: std::sync::Mutex::new(RateLimit::new(WARN_INTERVAL)),
                proxy_warning: std::sync::Mutex::new(RateLimit::new(WARN_INTERVAL)),
                parker: OnceLock::new(),
                parked: AtomicUsize::new(0),
                metrics: Arc::new(Metrics::default()),
            }),
        }
    }

    /// Also accepts on `listener`, speaking `service` there.
    pub fn with_listener(mut self, listener: TcpListener, service: Service) -> Self {
        self.listeners.push((listener, service));
        self
    }

    /// The addresses the server accepts jam sessions on.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.addrs_of(Service::Jam)
    }

    /// The addresses the server accepts `service` on.
    pub fn addrs_of(&self, service: Service) -> io::Result<Vec<SocketAddr>> {
        self.listeners
            .iter()
            .filter(|(_, s)| *s == service)
            .map(|(listener, _)| listener.local_addr())
            .collect()
    }

    /// A handle to the server's counts, usable while it runs.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }

    /// Serves until `shutdown` is cancelled. Then stops accepting at once (the listeners are
    /// closed, so new connections are refused), lets every session answer what its client already
    /// sent, and returns when all sessions have closed or the grace period has passed.
    pub async fn run(self, shutdown: CancellationToken) -> Stats {
        let tracker = TaskTracker::new();
        if !self.shared.config.park_after.is_zero() {
            let started = Parker::start(
                self.shared.clone(),
                Handle::current(),
                tracker.clone(),
                shutdown.clone(),
            );
            match started {
                Ok(parker) => {
                    let _ = self.shared.parker.set(parker);
                }
                Err(e) => {
                    warn!(error = %e, "cannot start the parker; idle sessions keep their tasks")
                }
            }
        }
        let accept_loops: Vec<_> = self
            .listeners
            .into_iter()
            .map(|(listener, service)| {
                tokio::spawn(accept_loop(
                    listener,
                    service,
                    self.shared.clone(),
                    tracker.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        shutdown.cancelled().await;
        for accept_loop in accept_loops {
            let _ = accept_loop.await;
        }
        if let Some(parker) = self.shared.parker.get() {
            parker.drain().await;
        }
        tracker.close();
        let grace = self.shared.config.shutdown_grace;
        let open = self.shared.active.load(Ordering::Relaxed);
        info!(
            sessions = open,
            grace = %crate::config::format_duration(grace),
            "stopped accepting; answering what clients already sent"
        );
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            warn!(
                sessions = self.shared.active.load(Ordering::Relaxed),
                "grace period over; closing the remaining sessions"
            );
        }
        self.shared.stats()
    }
}

async fn accept_loop(
    listener: TcpListener,
    service: Service,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::default();
    let mut warning = RateLimit::new(WARN_INTERVAL);
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                admit(
                    stream,
                    canonical(peer),
                    service,
                    &shared,
                    &tracker,
                    &shutdown,
                );
            }
            Err(e) if classify(&e) == AcceptError::Connection => {
                shared.metrics.add(Count::AcceptErrorConnection, 1);
                debug!(error = %e, "accept failed for one connection; continuing");
            }
            Err(e) => {
                shared.metrics.add(Count::AcceptErrorResources, 1);
                let pause = backoff.next();
                if let Some(suppressed) = warning.allow(Instant::now()) {
                    warn!(
                        error = %e,
                        pause_ms = pause.as_millis() as u64,
                        suppressed,
                        "cannot accept connections (out of descriptors or memory?); pausing accepts"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Starts a session for `stream`, or turns it away if the server is full.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    service: Service,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let max = shared.config.max_connections;
    if shared.active.fetch_add(1, Ordering::AcqRel) >= max {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.add(Count::RefusedBusy, 1);
        let rejected = shared.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        debug!(%peer, %service, reason = "busy", "server busy; turning connection away");
        if let Ok(mut limit) = shared.busy_warning.lock()
            && let Some(suppressed) = limit.allow(Instant::now())
        {
            warn!(
                max_connections = shared.config.max_connections,
                rejected_total = rejected,
                suppressed,
                "connection limit reached; new connections get ERR server busy"
            );
        }
        if service == Service::Jam {
            shared.metrics.add(Count::ErrorServerBusy, 1);
            refuse(stream, ErrorReply::ServerBusy, shared, tracker);
        }
        // An RFC 868 client would read "ERR server busy" as a time: it is just closed.
        return;
    }
    // Behind a load balancer the client's address is known only once the PROXY header is read.
    let per_ip = if shared.config.proxy_protocol {
        None
    } else {
        match admit_address(peer, service, shared) {
            Ok(guard) => guard,
            Err(refusal) => {
                shared.active.fetch_sub(1, Ordering::AcqRel);
                if let Some(reply) = refusal {
                    refuse(stream, reply, shared, tracker);
                }
                return;
            }
        }
    };
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    shared.metrics.add(
        match service {
            Service::Jam => Count::AcceptedJam,
            Service::Time => Count::AcceptedTime,
            Service::Daytime => Count::AcceptedDaytime,
        },
        1,
    );
    let meta = Meta {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        peer,
        from_balancer: false,
        opened: Instant::now(),
        _active: ActiveGuard(shared.clone()),
        _per_ip: per_ip,
    };
    tracker.spawn(start(
        service,
        stream,
        meta,
        shared.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
}

/// Counts a connection from `peer` under the per-address limit. Over the limit: counted, logged,
/// and the error line to send, if the service speaks jam (`Err(None)`: just close).
fn admit_address(
    peer: SocketAddr,
    service: Service,
    shared: &Shared,
) -> Result<Option<PerIpGuard>, Option<ErrorReply<'static>>> {
    let Some(per_ip) = &shared.per_ip else {
        return Ok(None);
    };
    match per_ip.admit(peer.ip()) {
        Ok(guard) => Ok(Some(guard)),
        Err(OverLimit { key, warn }) => {
            let max = per_ip.max();
            shared.metrics.add(Count::RefusedPerIp, 1);
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, %service, reason = "per_ip", "too many connections from this address; turning connection away");
            if warn {
                warn!(
                    address = %key,
                    max_connections_per_ip = max,
                    "one address holds as many connections as it may; its further connections are refused (at most one warning per 10 s per address)"
                );
            }
            if service == Service::Jam {
                shared.metrics.add(Count::ErrorPerIp, 1);
                Err(Some(ErrorReply::TooManyFromAddress { max }))
            } else {
                Err(None)
            }
        }
    }
}

/// Takes the PROXY header off the connection if the server requires one, then serves `service`.
async fn start(
    service: Service,
    mut stream: TcpStream,
    mut meta: Meta,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut initial = Vec::new();
    let mut via = None;
    if shared.config.proxy_protocol {
        let limit = match shared.config.line_timeout {
            Duration::ZERO => PROXY_HEADER_TIMEOUT,
            limit => limit,
        };
        let read = tokio::select! {
            () = shutdown.cancelled() => {
                shared.metrics.add(Count::ClosedShutdown, 1);
                return;
            }
            read = proxy::read_header(&mut stream, limit) => read,
        };
        match read {
            Ok((header, rest)) => {
                match header.client {
                    Some(client) => {
                        via = Some(meta.peer);
                        meta.peer = canonical(client);
                        // The client behind the balancer counts, not the balancer.
                        match admit_address(meta.peer, service, &shared) {
                            Ok(guard) => meta._per_ip = guard,
                            Err(refusal) => {
                                // Counted as accepted before the header named the client: it
                                // is closed for its address, so the counts still add up.
                                shared.metrics.add(Count::ClosedPerIp, 1);
                                drop(meta);
                                if let Some(reply) = refusal {
                                    refuse(stream, reply, &shared, &tracker);
                                }
                                return;
                            }
                        }
                    }
                    None => meta.from_balancer = true,
                }
                initial = rest;
            }
            Err(e) => {
                shared.metrics.add_all(&[
                    (Count::RefusedProxyHeader, 1),
                    (Count::ClosedProxyHeader, 1),
                ]);
                debug!(conn = meta.id, peer = %meta.peer, error = %e, "PROXY header refused");
                if let Ok(mut limit) = shared.proxy_warning.lock() {
                    if let Some(suppressed) = limit.allow(Instant::now()) {
                        warn!(
                            peer = %meta.peer,
                            error = %e,
                            suppressed,
                            "closing a connection without a valid PROXY protocol header (--proxy-protocol is on: only the load balancer should connect)"
                        );
                    }
                }
                return;
            }
        }
    }
    match service {
        Service::Jam => connection::serve(stream, meta, via, shared, shutdown, initial).await,
        Service::Time | Service::Daytime => {
            service::serve_once(service, stream, meta, shared).await;
        }
    }
}

/// Sends `reply` (a refusal: busy, or too many from one address) and closes, without ever
/// waiting on the client for long.
fn refuse(stream: TcpStream, reply: ErrorReply<'_>, shared: &Shared, tracker: &TaskTracker) {
    let line = reply.to_bytes();
    let _ = stream.set_nodelay(true);
    let _ = stream.try_write(&line);
    let _ = SockRef::from(&stream).shutdown(std::net::Shutdown::Write);
    // Keep the socket briefly so a request the client already sent does not make the close a
    // reset that destroys the busy line; if many are pending, just close.
    if let Ok(permit) = shared.rejecting.clone().try_acquire_owned() {
        tracker.spawn(async move {
            let _permit = permit;
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut buf = [0u8; 512];
            while let Ok(Ok(())) = tokio::time::timeout_at(deadline, stream.readable()).await {
                match stream.try_read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => break,
                    _ => {}
                }
            }
        });
    }
}

/// Keeps the active-session count right however a session ends (panics included).
pub(crate) struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `::ffff:a.b.c.d` (an IPv4 client on a dual-stack socket) shown as `a.b.c.d`.
fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// How an `accept()` error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// Only the connection being accepted failed: accept the next one at once.
    Connection,
    /// The process or system is out of something (descriptors, memory): pause, then retry.
    Resources,
}

/// Sorts an `accept()` error. Anything not known to concern one connection is treated as a
/// resource problem, so an unexpected persistent error makes the loop pause instead of spin.
pub(crate) fn classify(e: &io::Error) -> AcceptError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Resources,
        Some(
            libc::ECONNABORTED
            | libc::EAGAIN
            | libc::ECONNRESET
            | libc::EPROTO
            | libc::EPERM
            | libc::EINTR
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENOPROTOOPT
            | libc::EOPNOTSUPP
            | libc::ETIMEDOUT,
        ) => AcceptError::Connection,
        _ => match e.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock => AcceptError::Connection,
            _ => AcceptError::Resources,
        },
    }
}

/// Accept-pause lengths: 10 ms, doubling to 1 s; back to 10 ms after a successful accept.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = Duration::from_millis(10) * 2u32.pow(self.failures.min(7));
        self.failures = self.failures.saturating_add(1);
        pause.min(Duration::from_secs(1))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Allows one event per interval and counts the ones it suppressed in between.
#[derive(Debug)]
struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last allowed one)` if the event may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_sorted_by_errno() {
        let err = io::Error::from_raw_os_error;
        assert_eq!(classify(&err(libc::EMFILE)), AcceptError::Resources);
        assert_eq!(classify(&err(libc::ENFILE)), AcceptError::Resources);
        assert_eq!(classify(&err(libc::ENOBUFS)), AcceptError::Resources);
        assert_eq!(classify(&err(libc::ENOMEM)), AcceptError::Resources);
        assert_eq!(classify(&err(libc::ECONNABORTED)), AcceptError::Connection);
        assert_eq!(classify(&err(libc::ECONNRESET)), AcceptError::Connection);
        assert_eq!(classify(&err(libc::EPROTO)), AcceptError::Connection);
        assert_eq!(classify(&err(libc::EAGAIN)), AcceptError::Connection);
        assert_eq!(classify(&err(libc::EBADF)), AcceptError::Resources);
    }

    #[test]
    fn backoff_doubles_to_one_second_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..9).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(10));
    }

    #[test]
    fn rate_limit_allows_one_per_interval_and_counts_the_rest() {
        let mut limit = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(11)), Some(2));
    }

    #[test]
    fn mapped_ipv4_peers_are_shown_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().expect("addr");
        assert_eq!(canonical(mapped).to_string(), "127.0.0.1:5000");
        let v6: SocketAddr = "[::1]:5000".parse().expect("addr");
        assert_eq!(canonical(v6), v6);
    }
}
