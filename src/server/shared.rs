//! What every event loop shares: the limits, the counters, the refusal and warning state, and
//! the rules for `accept()` errors and for admitting a client address.

use super::deadlines::{Epoch, Limits, Tick};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::LocalClock;
use crate::config::ServerConfig;
use crate::metrics::{AcceptError, Count, Metrics, Refusal};
use crate::per_ip::PerIp;
use crate::service::Service;

/// How often a warning of one kind (accept errors, busy refusals) may be logged.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// State shared by every event loop.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// The timeouts of `config` as the deadline rules take them (made once, read per event).
    pub(super) limits: Limits,
    /// Where the loops' ticks count from.
    pub(super) epoch: Epoch,
    pub(crate) clock: LocalClock,
    /// Connections open now (sessions, answers and refusals being closed).
    pub(crate) active: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    /// Refusals lingering now: past [`conn::MAX_LINGERING_REFUSALS`] a refusal closes at once,
    /// so a flood cannot use the descriptors kept free for them.
    pub(crate) refusing: AtomicUsize,
    pub(crate) busy_warning: Mutex<RateLimit>,
    pub(crate) proxy_warning: Mutex<RateLimit>,
    /// Open connections per client address, when that limit is on.
    pub(crate) per_ip: Option<PerIp>,
    /// Counters for the metrics endpoint.
    pub(crate) metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins; the loops check it before every accept and are woken to
    /// see it.
    pub(crate) shutdown: OnceLock<CancellationToken>,
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

impl Shared {
    /// The state of a server with `config` limits, reading `clock`.
    pub(crate) fn new(config: ServerConfig, clock: LocalClock) -> Self {
        Shared {
            per_ip: config.per_ip_limit().map(PerIp::new),
            limits: Limits::new(
                config.idle_timeout,
                config.line_timeout,
                config.write_timeout,
            ),
            epoch: Epoch::now(),
            config,
            clock,
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            refusing: AtomicUsize::new(0),
            busy_warning: Mutex::new(RateLimit::new(WARN_INTERVAL)),
            proxy_warning: Mutex::new(RateLimit::new(WARN_INTERVAL)),
            metrics: Arc::new(Metrics::default()),
            shutdown: OnceLock::new(),
        }
    }

    /// Shutdown has begun.
    pub(crate) fn stopping(&self) -> bool {
        self.shutdown
            .get()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// The counts so far, read from the metrics (the one place they are kept).
    pub(crate) fn stats(&self) -> Stats {
        let total = |counts: &[Count]| counts.iter().map(|&c| self.metrics.total(c)).sum();
        Stats {
            active: self.active.load(Ordering::Relaxed),
            accepted: total(&[
                Count::Accepted(Service::Jam),
                Count::Accepted(Service::Time),
                Count::Accepted(Service::Daytime),
            ]),
            rejected: total(&[
                Count::Refused(Refusal::Busy),
                Count::Refused(Refusal::PerIp),
            ]),
        }
    }
}

/// `::ffff:a.b.c.d` (an IPv4 client on a dual-stack socket) shown as `a.b.c.d`.
pub(crate) fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
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
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let pause = Duration::from_millis(10) * 2u32.pow(self.failures.min(7));
        self.failures = self.failures.saturating_add(1);
        pause.min(Duration::from_secs(1))
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Allows one event per interval and counts the ones it suppressed in between.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval: Duration,
    last: Option<Tick>,
    suppressed: u64,
}

impl RateLimit {
    pub(crate) fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last allowed one)` if the event may be logged now.
    pub(crate) fn allow(&mut self, now: Tick) -> Option<u64> {
        match self.last {
            Some(last) if now - last < self.interval => {
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

/// Counts a connection from `peer` under the per-address limit. Over the limit: counted, logged,
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
        let t0 = Tick::from_nanos(1);
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
