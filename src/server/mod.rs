//! The server: one event model from accept to close.
//!
//! `jamd` runs one event loop per worker thread ([`worker`]), each a plain `mio` poll over its
//! own copies of the listeners and a slab of connections ([`conn`]); a connection lives in the
//! loop that accepted it from accept to close. Deadlines (idle, line, write, PROXY header,
//! linger, shutdown grace) are one rule set in [`conn::Conn::deadline`], kept in a per-loop
//! heap. The pure protocol core ([`crate::responder`]) turns input bytes into reply bytes.
//! tokio stays off this path: it runs the metrics endpoint, the clock watch and the clients.
//!
//! See docs/ARCHITECTURE.md for the picture.

mod conn;
mod worker;

pub use conn::CloseReason;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::LocalClock;
use crate::config::ServerConfig;
use crate::metrics::{self, Gauges, Metrics};
use crate::per_ip::PerIp;
use crate::service::Service;

/// How often a warning of one kind (accept errors, busy refusals) may be logged.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// State shared by every event loop.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) clock: LocalClock,
    /// Connections open now (sessions, answers and refusals being closed).
    active: AtomicUsize,
    next_id: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    /// Refusals lingering now: past [`conn::MAX_LINGERING_REFUSALS`] a refusal closes at once,
    /// so a flood cannot use the descriptors kept free for them.
    refusing: AtomicUsize,
    busy_warning: Mutex<RateLimit>,
    proxy_warning: Mutex<RateLimit>,
    /// Open connections per client address, when that limit is on.
    per_ip: Option<PerIp>,
    /// Counters for the metrics endpoint.
    pub(crate) metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins; the loops check it before every accept and are woken to
    /// see it.
    shutdown: OnceLock<CancellationToken>,
}

/// Counts kept by a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub active: usize,
    /// Connections accepted and served so far.
    pub accepted: u64,
    /// Connections turned away (server busy, or too many from one address).
    pub rejected: u64,
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
    /// Shutdown has begun.
    fn stopping(&self) -> bool {
        self.shutdown
            .get()
            .is_some_and(CancellationToken::is_cancelled)
    }

    fn stats(&self) -> Stats {
        Stats {
            active: self.active.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// A jam server over already-bound listeners.
pub struct Server {
    listeners: Vec<(std::net::TcpListener, Service)>,
    shared: Arc<Shared>,
}

impl Server {
    /// A server that will accept on `listeners`, with `config` limits, reading `clock`.
    pub fn new(listeners: Vec<TcpListener>, config: ServerConfig, clock: LocalClock) -> Self {
        let mut server = Server {
            listeners: Vec::new(),
            shared: Arc::new(Shared {
                per_ip: config.per_ip_limit().map(PerIp::new),
                config,
                clock,
                active: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                accepted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                refusing: AtomicUsize::new(0),
                busy_warning: Mutex::new(RateLimit::new(WARN_INTERVAL)),
                proxy_warning: Mutex::new(RateLimit::new(WARN_INTERVAL)),
                metrics: Arc::new(Metrics::default()),
                shutdown: OnceLock::new(),
            }),
        };
        for listener in listeners {
            server = server.with_listener(listener, Service::Jam);
        }
        server
    }

    /// Also accepts on `listener`, speaking `service` there.
    pub fn with_listener(mut self, listener: TcpListener, service: Service) -> Self {
        match listener.into_std() {
            Ok(listener) => self.listeners.push((listener, service)),
            Err(e) => warn!(error = %e, "cannot take over a listener; it is not served"),
        }
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
        // The loops watch the caller's token itself, so that shutdown is seen at once.
        let _ = self.shared.shutdown.set(shutdown.clone());
        let threads = match self.shared.config.threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        let mut wakers = Vec::new();
        let mut done = Vec::new();
        for index in 0..threads {
            let loop_ = match worker::Worker::new(index, &self.listeners, self.shared.clone()) {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "cannot start an event loop");
                    continue;
                }
            };
            wakers.push(loop_.waker());
            let (tx, rx) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name(format!("jamd-loop-{index}"))
                .spawn(move || {
                    let expired = loop_.run();
                    let _ = tx.send(expired);
                });
            match spawned {
                Ok(_) => done.push(rx),
                Err(e) => warn!(error = %e, "cannot start an event-loop thread"),
            }
        }
        // The loops hold their own copies of the listeners.
        drop(self.listeners);
        shutdown.cancelled().await;
        let grace = self.shared.config.shutdown_grace;
        info!(
            sessions = self.shared.active.load(Ordering::Relaxed),
            grace = %crate::config::format_duration(grace),
            "stopped accepting; answering what clients already sent"
        );
        for waker in &wakers {
            let _ = waker.wake();
        }
        let mut grace_over = false;
        for rx in done {
            grace_over |= rx.await.unwrap_or(false);
        }
        if grace_over {
            warn!(
                sessions = self.shared.active.load(Ordering::Relaxed),
                "grace period over; closed the remaining sessions"
            );
        }
        self.shared.stats()
    }
}

/// `::ffff:a.b.c.d` (an IPv4 client on a dual-stack socket) shown as `a.b.c.d`.
pub(super) fn canonical(peer: SocketAddr) -> SocketAddr {
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
pub(super) struct Backoff {
    failures: u32,
}

impl Backoff {
    pub(super) fn next(&mut self) -> Duration {
        let pause = Duration::from_millis(10) * 2u32.pow(self.failures.min(7));
        self.failures = self.failures.saturating_add(1);
        pause.min(Duration::from_secs(1))
    }

    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Allows one event per interval and counts the ones it suppressed in between.
#[derive(Debug)]
pub(super) struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub(super) fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last allowed one)` if the event may be logged now.
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
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
